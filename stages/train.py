"""train: Phi-2 in 4-bit NF4 + a LoRA adapter, trained with TRL's SFTTrainer on summary tokens only.

    python -m stages.train --train-path FILE --validation-path FILE --adapter-dir DIR --metrics-path FILE \
        --curves-dir DIR --checkpoint-dir DIR    (dvc.yaml stage `train` gives the paths)

Writes the adapter directory (adapter safetensors, tokenizer, prompt.json, params.json), the training
metrics and the DVCLive curves. Checkpoints go to <checkpoint-dir>/<run>/, outside DVC's outputs so a
killed run resumes from them on the next `dvc repro`; they are deleted once the adapter is written.
The environment variable PHISUM_CHECKPOINT_DIR, where set, replaces --checkpoint-dir: persistent storage
(a Drive mount, /kaggle/working) that outlives a notebook runtime, resumed from by a fresh clone.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
from pathlib import Path

import click

from phisum.checkpoints import (
    CHECKPOINT_DIR_VARIABLE,
    checkpoint_dir_in_use,
    interrupted_message,
    run_fingerprint,
    stale_run_dirs,
)
from phisum.cli import UserErrorCommand
from phisum.files import (
    INPUT_FILE,
    OUTPUT_DIR,
    OUTPUT_FILE,
    WriteError,
    atomic_outputs,
    json_text,
    read_jsonl,
    write_json,
)
from phisum.params import load_params, to_dict
from phisum.processes import TORCHRUN, run_child
from phisum.prompt import save_adapter_prompt

PARAMS = ("seed", "model", "prompt", "quantization", "lora", "train")  # = checkpoints.TRAINING_PARAMS (tested)
# Relaunched as dvc.yaml runs it: `python -m` puts the working directory first on sys.path, so the copy of the
# stages and of phisum in a queued experiment's directory runs, not the editable install's.
MODULE = "stages.train"


class TrainingInterrupted(click.ClickException):
    """Ctrl-C or SIGTERM during training: say what is kept, exit with the shell's code for the signal (130, 143)."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


class Terminated(KeyboardInterrupt):
    """SIGTERM (a notebook's or a job scheduler's stop), handled as Ctrl-C is: the kept checkpoint is named."""


def raise_terminated(signum, frame) -> None:
    raise Terminated


def relaunch_data_parallel(num_processes: int, args: list[str]) -> int:
    """Run this stage once per process under torchrun; the Trainer then trains data parallel (DDP).

    On GPUs each process takes one card; on CPU the processes use the gloo backend. torchrun passes the signals
    it gets from run_child on to its workers and waits for them.
    """
    command = ["-c", TORCHRUN, "--standalone", f"--nproc-per-node={num_processes}"]
    return run_child([*command, "-m", MODULE, *args])


def relaunch_on_one_gpu(env: dict[str, str], gpu_count: int, args: list[str]) -> int:
    """Run this stage again with only one GPU visible (CUDA reads CUDA_VISIBLE_DEVICES once, at start)."""
    click.echo(f"train: 1 process and {gpu_count} GPUs visible: training on GPU {env['CUDA_VISIBLE_DEVICES']} only")
    return run_child(["-m", MODULE, *args], env={**os.environ, **env})


def command_line(context: click.Context) -> list[str]:
    """The options this stage was given, to give a relaunched copy of it the same paths."""
    return [arg for name, value in context.params.items() for arg in (f"--{name.replace('_', '-')}", str(value))]


@click.command(cls=UserErrorCommand)
@click.option("--train-path", type=INPUT_FILE, required=True, help="Prepared training rows (.jsonl).")
@click.option("--validation-path", type=INPUT_FILE, required=True, help="Prepared validation rows (.jsonl).")
@click.option("--adapter-dir", type=OUTPUT_DIR, required=True, help="The trained adapter.")
@click.option("--metrics-path", type=OUTPUT_FILE, required=True, help="Training metrics (JSON).")
@click.option("--curves-dir", type=OUTPUT_DIR, required=True, help="DVCLive directory of the training curves.")
@click.option(
    "--checkpoint-dir",
    type=OUTPUT_DIR,
    required=True,
    help=f"Checkpoints to resume from (not a DVC output); ${CHECKPOINT_DIR_VARIABLE}, where set, replaces it.",
)
@click.pass_context
def main(
    context: click.Context,
    train_path: Path,
    validation_path: Path,
    adapter_dir: Path,
    metrics_path: Path,
    curves_dir: Path,
    checkpoint_dir: Path,
) -> None:
    params = load_params()  # a params typo stops here, before torch and transformers load (seconds)
    import torch

    from phisum.modeling import check_device, check_model_source
    from phisum.training import plan_processes, train_adapter

    check_device(params.model.device)
    gpu_count = torch.cuda.device_count() if params.model.device == "cuda" else 0
    env = plan_processes(
        params.train.num_processes, params.model.device, gpu_count, os.environ.get("CUDA_VISIBLE_DEVICES")
    )
    if not env:  # a relaunched process checks the model itself
        check_model_source(params.model)
    checkpoint_dir, from_variable = checkpoint_dir_in_use(checkpoint_dir)
    if env:
        raise SystemExit(relaunch_on_one_gpu(env, gpu_count, command_line(context)))
    if params.train.num_processes > 1 and "LOCAL_RANK" not in os.environ:
        raise SystemExit(relaunch_data_parallel(params.train.num_processes, command_line(context)))
    is_main = int(os.environ.get("RANK", "0")) == 0
    data_paths = [train_path, validation_path]
    train_rows = read_jsonl(data_paths[0])
    eval_rows = read_jsonl(data_paths[1])[: params.train.eval_rows]
    if is_main:
        click.echo(
            f"train: {params.model.name}, {len(train_rows)} rows ({len(eval_rows)} for validation loss), "
            f"{params.train.max_steps} steps, lora r={params.lora.r}, {params.train.num_processes} process(es)"
        )
    fingerprint = run_fingerprint(params, data_paths)
    run_dir = checkpoint_dir / fingerprint
    if is_main:
        if from_variable:
            click.echo(f"  checkpoints in {run_dir} ({CHECKPOINT_DIR_VARIABLE})")
        # Checkpoints of other configurations can never be resumed by this one: free their disk.
        for stale in stale_run_dirs(checkpoint_dir, fingerprint):
            shutil.rmtree(stale, ignore_errors=True)
    previous_sigterm = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        if not is_main:  # only process zero saves (the Trainer's rule); the others train and leave
            train_adapter(params, train_rows, eval_rows, run_dir, adapter_dir, curves_dir)
            return
        with atomic_outputs(adapter_dir) as outputs:
            tmp_dir = outputs.dirs[adapter_dir]
            metrics = train_adapter(params, train_rows, eval_rows, run_dir, tmp_dir, curves_dir)
            # The adapter records how it was made, so generation can check it uses the training prompt.
            save_adapter_prompt(tmp_dir, params.prompt)
            write_json(tmp_dir / "params.json", to_dict(params))
            outputs.texts[metrics_path] = json_text(metrics)  # swapped in together with the adapter
    except KeyboardInterrupt as interrupt:
        signum = signal.SIGTERM if isinstance(interrupt, Terminated) else signal.SIGINT
        if not is_main:  # process zero says what is kept, once
            raise SystemExit(128 + signum) from None
        click.echo(err=True)  # end the progress bar's line: the error gets its own
        raise TrainingInterrupted(interrupted_message(run_dir, params.train.save_steps), signum) from None
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES):
            raise
        # What this run wrote is gone with the temp dir; checkpoints stay for resuming.
        raise WriteError(Path(error.filename or run_dir), error) from None
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)
    shutil.rmtree(run_dir, ignore_errors=True)  # the adapter is the result; checkpoints were only for resuming
    if not from_variable:  # and their directory, unless something else is in it or it is the user's storage
        with contextlib.suppress(OSError):
            checkpoint_dir.rmdir()
    click.echo(f"  loss {metrics['first_loss']} -> {metrics['last_loss']}")


if __name__ == "__main__":
    main()
