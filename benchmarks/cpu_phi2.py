"""Full-size Phi-2 (random weights) through the train and generate stages' own code, on the CPU.

    python benchmarks/cpu_phi2.py [--workdir DIR] [--steps 2] [--threads 1] [--out results.json]

No download: phisum.fullsize writes Phi-2's architecture with random fp16 weights (shard by shard)
and a small tokenizer. Then phisum.training's `train_adapter()` (the train stage's own run) runs the committed
params.yaml's recipe (4-bit NF4 + double quant, LoRA r=32 on q/k/v/dense, paged 8-bit AdamW, batch 1 x 4, gradient
checkpointing) for a couple of optimizer steps on short synthetic rows, with model.device cpu; and
phisum.generation's `generate()` (the generate stage's) loads a fresh 4-bit model plus the saved adapter and generates a
few tokens. Reports trainable parameters, adapter and checkpoint sizes, peak RAM and seconds per step.
Not a CI test: it needs ~6 GB of disk and minutes of CPU.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import click
import torch
from transformers import TrainerCallback

from phisum.cli import UserErrorCommand
from phisum.fullsize import load_recipe, synthetic_texts, write_random_phi2
from phisum.generation import generate
from phisum.params import ModelParams
from phisum.prompt import build_prompt, check_adapter_prompt, save_adapter_prompt
from phisum.training import CheckedSFTTrainer, train_adapter

ROOT = Path(__file__).resolve().parents[1]


def peak_rss_gb() -> float:
    """This process's peak resident memory so far (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9, 2)


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class StepClock(TrainerCallback):
    """Wall time of each optimizer step (forward + backward of its micro-batches and the update)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_step_begin(self, args, state, control, **kwargs):
        self.started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.seconds.append(round(time.perf_counter() - self.started, 1))


def benchmark_params(model_dir: Path, steps: int, new_tokens: int):
    """The committed recipe, shortened: `steps` optimizer steps, short rows, a few new tokens, on the CPU."""
    params = load_recipe(ROOT / "params.yaml")
    train = dataclasses.replace(
        params.train, max_steps=steps, eval_steps=steps, eval_rows=2, save_steps=steps, save_total_limit=1
    )
    generate = dataclasses.replace(params.generate, max_new_tokens=new_tokens, batch_size=2, stress_cases=1)
    return dataclasses.replace(
        params,
        model=ModelParams(name=str(model_dir), revision=None, device="cpu"),
        prompt=dataclasses.replace(params.prompt, max_length=256),
        train=train,
        generate=generate,
    )


def make_rows(template: str, count: int, seed: int) -> list[dict]:
    texts = synthetic_texts(count, seed)
    rows = []
    for i in range(count):
        dialogue, summary = texts[2 * i], texts[2 * i + 1]
        prompt = build_prompt(template, dialogue)
        rows.append({"id": f"row_{i}", "prompt": prompt, "completion": summary, "summary": summary})
    return rows


@click.command(cls=UserErrorCommand)
@click.option("--workdir", type=click.Path(path_type=Path), default=None, help="Keep files here (default: temp dir).")
@click.option("--steps", default=2, show_default=True, help="Optimizer steps (of batch_size x grad_accum rows).")
@click.option("--new-tokens", default=4, show_default=True, help="Tokens generated per prompt.")
@click.option("--threads", default=1, show_default=True, help="torch intra-op threads.")
@click.option("--out", "out_path", default="", help="Also write the results as JSON here.")
def main(workdir: Path | None, steps: int, new_tokens: int, threads: int, out_path: str) -> None:
    torch.set_num_threads(threads)
    load_recipe(ROOT / "params.yaml")  # before the 37 minutes
    out = Path(out_path).resolve() if out_path else None  # before the chdir below
    with tempfile.TemporaryDirectory() as tmp:
        work = (workdir or Path(tmp)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        os.chdir(work)  # the stages write metrics/curves and models/ relative to the working directory
        results = run(work, steps, new_tokens)
    click.echo(json.dumps(results))
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


def run(work: Path, steps: int, new_tokens: int) -> dict:
    started = time.perf_counter()
    model_dir = work / "random-phi2"
    write_random_phi2(model_dir, seed=0)
    results = {"checkpoint_fp16_bytes": dir_bytes(model_dir), "build_s": round(time.perf_counter() - started)}
    results["peak_rss_gb_after_build"] = peak_rss_gb()
    click.echo(f"random Phi-2 written in {results['build_s']} s ({results['checkpoint_fp16_bytes']:,} bytes)")

    params = benchmark_params(model_dir, steps, new_tokens)
    per_step = params.train.batch_size * params.train.grad_accum
    rows = make_rows(params.prompt.template, per_step * steps + 4, seed=1)
    clock = StepClock()

    class TimedTrainer(CheckedSFTTrainer):  # the stage's own trainer, plus a step clock
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.add_callback(clock)

    run_dir, adapter_dir = work / "models/checkpoints/run", work / "models/adapter"
    phase = time.perf_counter()
    curves_dir = work / "metrics/curves"
    train_rows, eval_rows = rows[: per_step * steps], rows[-4:-2]
    metrics = train_adapter(params, train_rows, eval_rows, run_dir, adapter_dir, curves_dir, trainer_class=TimedTrainer)
    checkpoint = next(run_dir.glob("checkpoint-*"))
    results["train"] = {
        "metrics": metrics,
        "wall_s": round(time.perf_counter() - phase),
        "seconds_per_step": clock.seconds,
        "adapter_dir_bytes": dir_bytes(adapter_dir),
        "adapter_weights_bytes": (adapter_dir / "adapter_model.safetensors").stat().st_size,
        "checkpoint": checkpoint.name,
        "checkpoint_bytes": dir_bytes(checkpoint),
        "checkpoint_files": {p.name: p.stat().st_size for p in sorted(checkpoint.iterdir()) if p.is_file()},
        "peak_rss_gb": peak_rss_gb(),
    }
    click.echo(f"train: {results['train']}")
    del metrics
    # The generate stage needs the adapter's prompt record, as the train stage's main() writes it.
    save_adapter_prompt(adapter_dir, params.prompt)
    check_adapter_prompt(adapter_dir, params.prompt.template)
    phase = time.perf_counter()
    sets, stats = generate(params, rows[-2:], adapter_dir)
    results["generate"] = {
        "wall_s": round(time.perf_counter() - phase),
        "stats": stats,
        "new_tokens": [row["new_tokens"] for name in sets for row in sets[name]],
        "peak_rss_gb": peak_rss_gb(),
    }
    click.echo(f"generate: {results['generate']}")
    results["peak_rss_gb"] = peak_rss_gb()
    results["wall_s"] = round(time.perf_counter() - started)
    results["torch_threads"] = torch.get_num_threads()
    return results


if __name__ == "__main__":
    main()
