"""train: Phi-2 in 4-bit NF4 + a LoRA adapter, trained with TRL's SFTTrainer on summary tokens only.

    python stages/train.py    (dvc.yaml stage `train`)

Writes models/adapter/ (adapter safetensors, tokenizer, prompt.json, params.json) and metrics/train.json.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import click
import torch
from datasets import Dataset
from peft import prepare_model_for_kbit_training
from transformers import TrainerCallback, set_seed
from trl import SFTConfig, SFTTrainer

from phisum.files import read_jsonl, replace_dir, write_json
from phisum.modeling import build_lora_config, load_base_model, load_tokenizer, resolve_compute_dtype
from phisum.params import Params, ParamsError, load_params, to_dict

PARAMS = ("seed", "model", "prompt", "quantization", "lora", "train")
DATA_DIR = Path("data/prepared")
ADAPTER_DIR = Path("models/adapter")
METRICS_PATH = Path("metrics/train.json")


class StopOnNonFiniteLoss(TrainerCallback):
    """The Trainer's log filter hides NaN steps; fp16 overflow in Phi-2 attention shows up exactly so."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            raise RuntimeError(
                f"non-finite training loss {loss} at step {state.global_step}: likely fp16 overflow; "
                "use bfloat16 (compute capability >= 8.0) or float32 (quantization.compute_dtype)"
            )


def train(params: Params, train_rows: list[dict], out_dir: Path) -> dict:
    """Train the adapter into out_dir; return training metrics."""
    set_seed(params.seed)
    compute_dtype = resolve_compute_dtype(params.quantization.compute_dtype)
    tokenizer = load_tokenizer(params.model)
    model = load_base_model(params.model, params.quantization, compute_dtype)
    checkpointing = {"use_reentrant": False}  # explicit: the reentrant default changed across torch versions
    model = prepare_model_for_kbit_training(
        model,
        use_gradient_checkpointing=params.train.gradient_checkpointing,
        gradient_checkpointing_kwargs=checkpointing,
    )
    dataset = Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in train_rows])
    with tempfile.TemporaryDirectory() as scratch:
        config = SFTConfig(
            output_dir=scratch,
            seed=params.seed,
            max_steps=params.train.max_steps,
            per_device_train_batch_size=params.train.batch_size,
            gradient_accumulation_steps=params.train.grad_accum,
            learning_rate=params.train.learning_rate,
            optim=params.train.optim,
            gradient_checkpointing=params.train.gradient_checkpointing,
            gradient_checkpointing_kwargs=checkpointing,
            fp16=compute_dtype == torch.float16,
            bf16=compute_dtype == torch.bfloat16,
            use_cpu=not torch.cuda.is_available(),
            # Prepare already cut dialogues to fit, so this never cuts a summary.
            max_length=params.prompt.max_length,
            completion_only_loss=True,
            logging_steps=params.train.logging_steps,
            logging_nan_inf_filter=False,
            save_strategy="no",
            report_to="none",
        )
        trainer = SFTTrainer(
            model=model,
            args=config,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=build_lora_config(params.lora),
            callbacks=[StopOnNonFiniteLoss()],
        )
        trainable, total = trainer.model.get_nb_trainable_parameters()
        started = time.perf_counter()
        trainer.train()
        runtime = time.perf_counter() - started
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    trainer.model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return {
        "first_loss": round(losses[0], 4),
        "last_loss": round(losses[-1], 4),
        "steps": trainer.state.global_step,
        "trainable_params": trainable,
        "total_params_peft": total,
        "runtime_s": round(runtime, 1),
        "compute_dtype": str(compute_dtype).removeprefix("torch."),
    }


@click.command()
def main() -> None:
    try:
        params = load_params()
    except ParamsError as error:
        raise click.ClickException(str(error)) from None
    train_rows = read_jsonl(DATA_DIR / "train.jsonl")
    click.echo(
        f"train: {params.model.name}, {len(train_rows)} rows, {params.train.max_steps} steps, lora r={params.lora.r}"
    )
    ADAPTER_DIR.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(dir=ADAPTER_DIR.parent, prefix=".adapter-"))
    metrics = train(params, train_rows, tmp_dir)
    # The adapter records how it was made, so generation can check it uses the training prompt.
    write_json(tmp_dir / "prompt.json", {"template": params.prompt.template, "max_length": params.prompt.max_length})
    write_json(tmp_dir / "params.json", to_dict(params))
    replace_dir(tmp_dir, ADAPTER_DIR)
    write_json(METRICS_PATH, metrics)
    click.echo(f"  loss {metrics['first_loss']} -> {metrics['last_loss']} in {metrics['runtime_s']} s")


if __name__ == "__main__":
    main()
