"""Batched against one-at-a-time greedy generation, side by side, on the pipeline's own model and prompts.

    python benchmarks/generation.py [WORKSPACE] [--batch-sizes 8,16,32] [--repeats 3] [--threads 1] [--out FILE]

WORKSPACE is the workspace `make demo` builds (default demo): its params.yaml, data/prepared/test.jsonl
and models/adapter. The model is loaded as phisum.generation.generate loads it (4-bit base + PeftModel adapter)
and generation goes through phisum.generation.generate_summaries; batch size 1 is the seed's way.
The sizes run interleaved in each repeat, so load from other processes hits them alike.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import click
import torch
from peft import PeftModel

from phisum.cli import UserErrorCommand
from phisum.data import group_by_dialogue
from phisum.files import read_jsonl
from phisum.generation import generate_summaries
from phisum.modeling import load_base_model, load_tokenizer, resolve_compute_dtype
from phisum.params import load_params


def first_divergence(model, tokenizer, prompt: str, batch_prompts: list[str], text: str, other: str) -> dict:
    """Where two greedy outputs part, and how close the model was to a tie there.

    Re-runs the prompt + the shared prefix alone and left-padded among its batch's prompts (their own
    generated prefixes left out), and reports the gap between the two best next-token logits and how
    much padding moved the logits at that position.
    """
    ids_a = tokenizer(text, add_special_tokens=False)["input_ids"]
    ids_b = tokenizer(other, add_special_tokens=False)["input_ids"]
    shared = next(
        (k for k, (a, b) in enumerate(zip(ids_a, ids_b, strict=False)) if a != b), min(len(ids_a), len(ids_b))
    )
    # Generation sees "Output:\n" + tokens; the stripped text is close enough to locate the tie.
    prefix = tokenizer.decode(ids_a[:shared])
    device = next(model.parameters()).device
    tokenizer.padding_side = "left"
    batch = [p + prefix if p == prompt else p for p in batch_prompts]
    with torch.inference_mode():
        alone = model(**tokenizer([prompt + prefix], return_tensors="pt").to(device)).logits[0, -1].float()
        padded_inputs = tokenizer(batch, return_tensors="pt", padding=True).to(device)
        # Positions count real tokens only, as generate() derives them from the attention mask.
        positions = (padded_inputs["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        padded = model(**padded_inputs, position_ids=positions).logits[batch.index(prompt + prefix), -1].float()
    top2 = alone.topk(2).values
    return {
        "token": shared,
        "top2_logit_gap": round(float(top2[0] - top2[1]), 6),
        "padding_logit_shift": round(float((alone - padded).abs().max()), 6),
    }


def batch_of(prompts: list[str], index: int, batch_size: int) -> list[str]:
    """The prompts generate_summaries batches together with prompts[index] (longest first)."""
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    start = order.index(index) // batch_size * batch_size
    return [prompts[i] for i in order[start : start + batch_size]]


@click.command(cls=UserErrorCommand)
@click.argument("workspace", default="demo", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--batch-sizes", default="8,16,32", help="Batched sizes compared against batch size 1.")
@click.option("--repeats", default=3, show_default=True)
@click.option("--adapter", "adapter_dir", default="models/adapter", show_default=True)
@click.option("--threads", default=0, help="torch threads; 0 = torch's default. 1 is steadier on a shared CPU.")
@click.option("--out", "out_path", default="", type=click.Path(dir_okay=False), help="Also write the JSON here.")
def main(workspace: Path, batch_sizes: str, repeats: int, adapter_dir: str, threads: int, out_path: str) -> None:
    if threads:
        torch.set_num_threads(threads)
    out = Path(out_path).resolve() if out_path else None  # relative to where it was started
    os.chdir(workspace)
    missing = [name for name in ("data/prepared/test.jsonl", adapter_dir) if not Path(name).exists()]
    if missing:
        raise click.ClickException(f"{workspace}: no {', '.join(missing)}; run `make demo` first (it builds demo/)")
    params = load_params()
    compute_dtype = resolve_compute_dtype(params.quantization.compute_dtype, params.model.device)
    tokenizer = load_tokenizer(params.model)
    model = PeftModel.from_pretrained(load_base_model(params.model, params.quantization, compute_dtype), adapter_dir)
    model.eval()
    prompts = [group["prompt"] for group in group_by_dialogue(read_jsonl(Path("data/prepared/test.jsonl")))]
    max_new_tokens = params.generate.max_new_tokens
    sizes = [1] + [int(size) for size in batch_sizes.split(",")]
    click.echo(
        f"{len(prompts)} test prompts, max_new_tokens={max_new_tokens}, {params.model.name} 4-bit "
        f"{params.quantization.quant_type} + {adapter_dir}, compute {compute_dtype}, {torch.get_num_threads()} threads"
    )
    generate_summaries(model, tokenizer, prompts[:2], 4, 2)  # warm-up: first-call allocations and kernel setup
    seconds: dict[int, list[float]] = {size: [] for size in sizes}
    outputs: dict[int, list[dict]] = {}
    for repeat in range(repeats):
        for size in sizes:
            started = time.perf_counter()
            outputs[size] = generate_summaries(model, tokenizer, prompts, max_new_tokens, size)
            seconds[size].append(time.perf_counter() - started)
        click.echo(f"  repeat {repeat + 1}: " + ", ".join(f"b{s} {seconds[s][-1]:.1f} s" for s in sizes))
    reference = [row["text"] for row in outputs[1]]
    results = {}
    for size in sizes:
        differ = [i for i, row in enumerate(outputs[size]) if row["text"] != reference[i]]
        speedups = [one / many for one, many in zip(seconds[1], seconds[size], strict=True)]
        results[size] = {
            "prompts_per_s": round(len(prompts) / statistics.median(seconds[size]), 2),
            "speedup_vs_1": round(statistics.median(speedups), 2),
            "speedups": [round(s, 2) for s in speedups],
            "differ_from_1": len(differ),
            "new_tokens": sum(row["new_tokens"] for row in outputs[size]),
            "divergences": [
                first_divergence(
                    model, tokenizer, prompts[i], batch_of(prompts, i, size), reference[i], outputs[size][i]["text"]
                )
                for i in differ[:3]
            ],
        }
        row = results[size]
        click.echo(
            f"batch {size:>2}: {row['prompts_per_s']:6.2f} prompts/s, speedup {row['speedup_vs_1']}x"
            f" (per repeat {row['speedups']}), {len(differ)}/{len(prompts)} outputs differ from batch 1"
        )
        for detail in results[size]["divergences"]:
            click.echo(f"    diverges at token {detail['token']}: {detail}")
    summary = {"prompts": len(prompts), "max_new_tokens": max_new_tokens, "results": results}
    click.echo(json.dumps(summary))
    if out:
        out.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
