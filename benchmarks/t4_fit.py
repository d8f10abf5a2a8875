"""Will the seed's recipe fit a 16 GB T4? Per model family, computed on the meta device (no download).

    python benchmarks/t4_fit.py [--params params.yaml] [--out benchmarks/results/t4_fit.json]

For Phi-2 and each family of phisum.fullsize.FAMILIES (Llama-3-8B, Mistral-7B-v0.3, Qwen2.5-7B), the
architecture is built on the meta device from its cited config values and benchmarks/memory.py's
training_bytes estimates one training step of params.yaml's recipe (4-bit NF4 with its double-quant
setting, LoRA rank lora.r, paged 8-bit AdamW, gradient checkpointing, fp16 compute as on a T4) at batch 1
and prompt.max_length tokens, plus the CUDA context, against what torch reports a T4 holds. LoRA goes on
lora.target_modules for Phi-2 and on the equivalent attention projections (q/k/v/o_proj) for the others;
each family is also computed with LoRA on every Linear of its decoder layers ("all-linear"). Where the
length does not fit, the largest prompt.max_length that does is solved for; where it fits, the largest
length up to the model's max_position_embeddings is reported as the headroom.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from phisum.cli import UserErrorCommand
from phisum.fullsize import CUDA_CONTEXT_MIB, FAMILIES, T4_TOTAL_MIB, family_config, load_recipe, meta_model

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as `python benchmarks/t4_fit.py`: memory.py beside it
from memory import training_bytes, unquantized_params  # noqa: E402

MIB = 2**20
PARTS = ("weights_nf4", "weights_rest", "lora_weights", "lora_gradients", "optimizer_8bit", "activations")


def needed_mib(model, targets, r: int, seq_len: int, double_quant: bool) -> float:
    """Training bytes at seq_len plus the CUDA context, in MiB."""
    return training_bytes(model, targets, r, seq_len, double_quant)["total"] / MIB + CUDA_CONTEXT_MIB


def largest_fitting_length(model, targets, r: int, double_quant: bool, budget_mib: float, cap: int) -> int:
    """The longest sequence (<= cap) whose step fits budget_mib; 0 if not even one token fits.

    The need grows with the length (every activation term does), so a bisection finds it.
    """
    low, high = 0, cap
    while low < high:
        middle = (low + high + 1) // 2
        if needed_mib(model, targets, r, middle, double_quant) <= budget_mib:
            low = middle
        else:
            high = middle - 1
    return low


def fit_row(family: str, targets, params, budget_mib: float = T4_TOTAL_MIB) -> dict:
    """One model with one set of LoRA targets: the parts in MiB, whether max_length fits, and the longest that does."""
    model = meta_model(family_config(family))
    seq_len, r, double_quant = params.prompt.max_length, params.lora.r, params.quantization.double_quant
    estimate = training_bytes(model, targets, r, seq_len, double_quant)
    total = estimate["total"] / MIB + CUDA_CONTEXT_MIB
    cap = model.config.max_position_embeddings
    return {
        "family": family,
        "model": FAMILIES[family].name,
        "params": sum(p.numel() for p in model.parameters()),
        "targets": list(targets),
        "trainable_params": estimate["trainable_params"],
        "unquantized_params": unquantized_params(model),
        "seq_len": seq_len,
        **{f"{part}_mib": round(estimate[part] / MIB, 1) for part in PARTS},
        "activation_parts_mib": {key: round(value / MIB, 1) for key, value in estimate["activation_parts"].items()},
        "cuda_context_mib": CUDA_CONTEXT_MIB,
        "total_mib": round(total, 1),
        "budget_mib": budget_mib,
        "fits": total <= budget_mib,
        "headroom_mib": round(budget_mib - total, 1),
        "largest_max_length": largest_fitting_length(model, targets, r, double_quant, budget_mib, cap),
        "max_position_embeddings": cap,
    }


def rows_for(params) -> list[dict]:
    """Per family: the recipe's targets (Phi-2) or the attention equivalent, then all-linear."""
    rows = []
    for family, spec in FAMILIES.items():
        attention = params.lora.target_modules if family == "phi-2" else spec.attention
        rows += [fit_row(family, attention, params), fit_row(family, spec.all_linear, params)]
    return rows


def markdown(rows: list[dict]) -> str:
    """The table BENCHMARKS.md shows (MiB; "x" marks a total over the budget)."""
    lines = [
        "| model | LoRA targets | trainable | NF4 weights | rest (fp32) | LoRA + grads + 8-bit AdamW | activations "
        "| + context | total | fits? | largest `prompt.max_length` |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for row in rows:
        adapter = row["lora_weights_mib"] + row["lora_gradients_mib"] + row["optimizer_8bit_mib"]
        fits = f"yes ({row['headroom_mib']:,.0f} free)" if row["fits"] else f"**no** ({-row['headroom_mib']:,.0f} over)"
        longest = row["largest_max_length"]
        cap = " (its max positions)" if longest == row["max_position_embeddings"] else ""
        lines.append(
            f"| {row['model']} | {','.join(row['targets'])} | {row['trainable_params']:,} "
            f"| {row['weights_nf4_mib']:,.0f} | {row['weights_rest_mib']:,.0f} | {adapter:,.0f} "
            f"| {row['activations_mib']:,.0f} | {row['cuda_context_mib']} | **{row['total_mib']:,.0f}** | {fits} "
            f"| {longest:,}{cap} |"
        )
    return "\n".join(lines)


@click.command(cls=UserErrorCommand)
@click.option("--params", "params_path", default="params.yaml", show_default=True, type=click.Path(path_type=Path))
@click.option("--out", "out_path", default="", help="Also write the rows as JSON here.")
def main(params_path: Path, out_path: str) -> None:
    params = load_recipe(params_path)
    rows = rows_for(params)
    click.echo(
        f"T4: {T4_TOTAL_MIB:,} MiB (torch's total), CUDA context {CUDA_CONTEXT_MIB} MiB; batch 1, "
        f"{params.prompt.max_length:,} tokens, r={params.lora.r}, fp16 compute, gradient checkpointing"
    )
    click.echo(markdown(rows))
    if out_path:
        Path(out_path).parent.mkdir(parents=True, exist_ok=True)
        Path(out_path).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
