"""Training throughput of four batchings at 4 sequences per optimizer step, side by side.

    python benchmarks/training.py [WORKSPACE] [--steps 40] [--repeats 3] [--threads 1] [--profile seed,packed]
                                  [--out FILE] [--data DIALOGSUM_DIR [--scratch DIR]]

WORKSPACE: the workspace `make demo` builds (default demo). With --data, the runs use a local dataset
instead (a DialogSum copy): WORKSPACE's git repository is cloned into --scratch and switched to the CPU
profile on that data there, as `make demo DATA=<dir>` would (a tiny model trained on its dialogues),
then prepared with `dvc repro prepare`; WORKSPACE itself is not touched. Each run is the train stage's
model and SFTTrainer (4-bit, fp32 LoRA, paged 8-bit AdamW, gradient checkpointing, completion-only
loss); only the batching differs: seed 1 x 4 accumulation; batched 4 x 1, random order, padded;
grouped 4 x 1 by length; packed: TRL best-fit packing, padding-free, into rows of ~4 mean sequence
lengths.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import click
import datasets
import torch
from transformers import PrinterCallback, set_seed
from trl import SFTTrainer

from phisum.cli import UserErrorCommand
from phisum.files import read_jsonl
from phisum.modeling import load_tokenizer, resolve_compute_dtype
from phisum.params import Params, load_params
from phisum.training import build_sft_config, build_trainer, load_trainable_model, to_dataset

BATCHINGS = {
    "seed": {"per_device_train_batch_size": 1, "gradient_accumulation_steps": 4},
    "batched": {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 1},
    "grouped": {
        "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 1,
        "train_sampling_strategy": "group_by_length",
    },
    "packed": {
        "per_device_train_batch_size": 1,
        "gradient_accumulation_steps": 1,
        "packing": True,
        "padding_free": True,
    },
}
WARMUP_STEPS = 5  # excluded from tokens/s: first-call allocations, optimizer state creation


class CountingSFTTrainer(SFTTrainer):
    """SFTTrainer that counts real tokens, tensor slots and sequences, and clocks each optimizer step's start."""

    def training_step(self, model, inputs, num_items_in_batch=None):
        if self.state.global_step + 1 not in self.counts:  # the first micro-batch of a new optimizer step
            self.step_starts.append(time.perf_counter())
        step = self.counts.setdefault(self.state.global_step + 1, {"real": 0, "slots": 0, "seqs": 0})
        ids = inputs["input_ids"]
        step["slots"] += ids.numel()
        step["real"] += int(inputs.get("attention_mask", torch.ones_like(ids)).sum())  # padding-free: no pads
        packed = "position_ids" in inputs  # packed rows: every sequence starts at position 0
        step["seqs"] += int((inputs["position_ids"] == 0).sum()) if packed else ids.shape[0]
        return super().training_step(model, inputs, num_items_in_batch)


def batching_trainer(params: Params, batching: str, steps: int, rows: list[dict], eval_rows: list[dict], out_dir: str):
    """The train stage's model and SFTTrainer, with the given batching."""
    set_seed(params.seed)
    compute_dtype = resolve_compute_dtype(params.quantization.compute_dtype, params.model.device)
    model = load_trainable_model(params, compute_dtype)
    config = build_sft_config(
        params,
        compute_dtype,
        out_dir,
        max_steps=steps,
        per_device_eval_batch_size=1,  # the same validation loss whatever the training batching
        eval_packing=False,
        save_strategy="no",
        disable_tqdm=True,
        **BATCHINGS[batching],
    )
    tokenizer = load_tokenizer(params.model)
    trainer = build_trainer(
        params, model, tokenizer, config, to_dataset(rows), to_dataset(eval_rows), trainer_class=CountingSFTTrainer
    )
    trainer.remove_callback(PrinterCallback)
    trainer.counts, trainer.step_starts = {}, []
    return trainer


def check_completion_only(trainer, rows: list[dict]) -> tuple[int, float]:
    """Labels of the first batch: -100 on every prompt token, summary + EOS supervised (rows matched by token ids).

    Returns how many sequences were checked and, for a packed batch, its loss gap against them run separately.
    """
    tokenizer, eos = trainer.processing_class, trainer.processing_class.eos_token_id
    expected = {}
    for row in rows:
        prompt_ids = tokenizer(row["prompt"])["input_ids"]
        completion_ids = tokenizer(row["prompt"] + row["completion"])["input_ids"][len(prompt_ids) :]
        expected[tuple(prompt_ids + completion_ids + [eos])] = [-100] * len(prompt_ids) + completion_ids + [eos]
    batch = next(iter(trainer.get_train_dataloader()))
    checked, packed = 0, "position_ids" in batch
    for i, (ids, labels) in enumerate(zip(batch["input_ids"].tolist(), batch["labels"].tolist(), strict=True)):
        # Packed rows: a sequence starts where the position restarts at 0. Padded rows: one, then right padding.
        starts = (batch["position_ids"][i] == 0).nonzero().flatten().tolist() if packed else [0]
        starts.append(len(ids) if packed else int(batch["attention_mask"][i].sum()))
        for start, end in zip(starts, starts[1:], strict=False):
            assert labels[start:end] == expected[tuple(ids[start:end])], f"labels differ at tokens {start}-{end}"
            checked += 1
    return checked, packed_loss_gap(trainer.model, batch) if packed else 0.0


@torch.no_grad()
def packed_loss_gap(model, batch: dict) -> float:
    """|loss of the packed row - loss of its sequences run one by one|: 0 when attention stays inside each sequence."""
    model.eval()  # no dropout
    ids, labels, positions = batch["input_ids"], batch["labels"], batch["position_ids"]
    packed = model(**batch).loss  # what the trainer passes: position ids and sequence boundaries
    starts = (positions[0] == 0).nonzero().flatten().tolist() + [ids.shape[1]]
    total = count = 0
    for start, end in zip(starts, starts[1:], strict=False):
        n = int((labels[0, start + 1 : end] != -100).sum())  # the model shifts labels: the first is never scored
        total += model(input_ids=ids[:, start:end], labels=labels[:, start:end]).loss * n
        count += n
    model.train()
    return float((packed - total / count).abs())


def prepared_clone(workspace: Path, data_dir: Path, scratch: Path) -> Path:
    """A git clone of workspace on the CPU profile with data_dir and prepare done: `make demo DATA=`'s first steps."""
    if scratch.exists() and any(scratch.iterdir()):
        raise click.ClickException(f"--scratch {scratch}: not empty; give a new directory")
    scratch.mkdir(parents=True, exist_ok=True)
    venv_bin = Path(sys.executable).parent  # the stages run with this interpreter, the clone's phisum first
    env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(scratch)}
    commands = (
        ["git", "clone", "-q", str(workspace), str(scratch)],
        [sys.executable, "-m", "phisum.profile", "--data", str(data_dir)],
        ["dvc", "repro", "prepare"],
    )
    for command in commands:
        click.echo(f"  $ {' '.join(command)}")
        done = subprocess.run(command, cwd=scratch, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            output = (done.stdout + done.stderr)[-3000:]
            raise click.ClickException(f"{' '.join(command)} failed in {scratch}:\n{output}")
    return scratch


def run_one(params, batching, steps, rows, eval_rows, profile: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"phisum-bench-{batching}-") as out_dir:  # nothing is saved there
        trainer = batching_trainer(params, batching, steps, rows, eval_rows, out_dir)
        checked, loss_gap = check_completion_only(trainer, rows)
        profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
        with profiler if profile else nullcontext() as prof:
            trainer.train()
        eval_loss = trainer.evaluate()["eval_loss"]
    if profile:
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)
        click.echo(f"--- {batching}: top ops by self CPU time ---\n{table}")
    timed = [trainer.counts[s] for s in range(WARMUP_STEPS + 1, steps)]  # steps between two clocked starts
    real, slots = sum(c["real"] for c in timed), sum(c["slots"] for c in timed)
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    return {
        "tokens_per_s": real / (trainer.step_starts[steps - 1] - trainer.step_starts[WARMUP_STEPS]),
        "pad_share": 1 - real / slots,
        "seqs_per_step": statistics.mean(c["seqs"] for c in trainer.counts.values()),
        "loss_last10": statistics.mean(losses[-10:]),
        "eval_loss": eval_loss,
        "labels_checked": checked,
        "packed_loss_gap": loss_gap,
    }


@click.command(cls=UserErrorCommand)
@click.argument("workspace", default="demo", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--steps", default=40, show_default=True, help="Optimizer steps per run.")
@click.option("--repeats", default=3, show_default=True)
@click.option("--threads", default=0, help="torch threads; 0 = torch's default. 1 is steadier on a shared CPU.")
@click.option("--profile", "profiled", default="", help="Comma-separated batchings to run once under torch.profiler.")
@click.option("--data", "data_dir", default="", help="A local dataset (DialogSum copy) to benchmark on instead.")
@click.option("--scratch", "scratch_dir", default="", help="With --data: clone into this new dir; default: a temp dir.")
@click.option("--out", "out_path", default="", type=click.Path(dir_okay=False), help="Also write the JSON here.")
def main(workspace: Path, steps: int, repeats: int, threads: int, profiled: str, **where: str) -> None:
    torch.set_num_threads(threads or torch.get_num_threads())
    datasets.disable_progress_bars()
    out = Path(where["out_path"]).resolve() if where["out_path"] else None  # relative to where it was started
    if where["data_dir"]:
        scratch = Path(where["scratch_dir"] or tempfile.mkdtemp(prefix="phisum-bench-data-")).resolve()
        workspace = prepared_clone(workspace.resolve(), Path(where["data_dir"]).resolve(), scratch)
    os.chdir(workspace)
    if not Path("data/prepared/train.jsonl").is_file():
        raise click.ClickException(
            f"{workspace}: no data/prepared/train.jsonl; run `make demo` first (it builds demo/)"
        )
    params = load_params()
    rows = read_jsonl(Path("data/prepared/train.jsonl"))
    eval_rows = read_jsonl(Path("data/prepared/validation.jsonl"))[: params.train.eval_rows]
    tokenizer = load_tokenizer(params.model)
    mean_length = statistics.mean(len(tokenizer(r["prompt"] + r["completion"])["input_ids"]) + 1 for r in rows)
    # Packed rows hold ~4 sequences, as the other batchings' steps do, and never cut one (bfd truncates overflow).
    BATCHINGS["packed"]["max_length"] = pack_length = max(params.prompt.max_length, round(4 * mean_length))
    click.echo(f"{params.model.name}, {len(rows)} rows, pack length {pack_length}, {torch.get_num_threads()} threads")
    for batching in filter(None, profiled.split(",")):
        run_one(params, batching, steps, rows, eval_rows, profile=True)
    runs, summary = {name: [] for name in BATCHINGS}, {}
    for _ in range(repeats):
        for name in BATCHINGS:  # interleaved, so load from other processes hits every batching alike
            runs[name].append(run_one(params, name, steps, rows, eval_rows, profile=False))
    for name, results in filter(lambda item: item[1], runs.items()):  # --repeats 0: only the profiles
        ratios = [round(r["tokens_per_s"] / s["tokens_per_s"], 2) for r, s in zip(results, runs["seed"], strict=True)]
        summary[name] = {key: round(statistics.median(r[key] for r in results), 4) for key in results[0]}
        summary[name].update(speedup_vs_seed=statistics.median(ratios), speedups=ratios)
        click.echo(f"{name:>8}: " + ", ".join(f"{key} {value}" for key, value in summary[name].items()))
    results = {"steps": steps, "pack_length": pack_length, "data": params.data.source, "results": summary}
    click.echo(json.dumps(results, sort_keys=True))
    if out:
        out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
