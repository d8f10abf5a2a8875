"""Weight memory of the 4-bit NF4 model against fp16: measured on the tiny model, computed for Phi-2.

    python benchmarks/memory.py [WORKSPACE] [--out FILE]    (WORKSPACE: a phisum workspace after `make demo`; default .)

Phi-2 is never downloaded nor allocated: its architecture is built on the meta device and the bytes
are computed from the parameter shapes. The same computation is checked against the real 4-bit tiny
model, whose packed weights and quantization constants are read from bitsandbytes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

import click
import torch
from torch import nn
from transformers import AutoModelForCausalLM

from phisum.cli import UserErrorCommand
from phisum.fullsize import meta_model
from phisum.modeling import load_base_model
from phisum.params import ModelParams, QuantizationParams, load_params

BLOCK = 64  # bitsandbytes' 4-bit blocksize: one absmax per 64 weights
NESTED_BLOCK = 256  # double quant: the absmaxes are quantized to 8 bit in blocks of 256


def quantized_weights(model: nn.Module) -> list[int]:
    """Sizes of the weight matrices bitsandbytes quantizes: every Linear except the output head.

    transformers keeps the output embedding (lm_head) in 16 bit; embeddings, norms and biases are not
    Linear weights, so they stay 16 bit too.
    """
    head = model.get_output_embeddings()
    sizes = []
    for module in model.modules():
        if module is head:
            continue
        if isinstance(module, nn.Linear) or type(module).__name__ == "Linear4bit":
            state = getattr(module.weight, "quant_state", None)  # a 4-bit weight keeps its original shape here
            sizes.append(state.shape.numel() if state is not None else module.weight.numel())
    return sizes


def nf4_bytes(numel: int, double_quant: bool = True) -> int:
    """Bytes of one NF4 matrix: packed 4-bit weights plus its quantization constants."""
    blocks = math.ceil(numel / BLOCK)
    packed = math.ceil(numel / 2) + 4 * 16  # two weights per byte, plus the 16-entry fp32 NF4 code table
    if not double_quant:
        return packed + 4 * blocks  # one fp32 absmax per block
    # 8-bit absmax per block, one fp32 absmax per 256 of those, a 256-entry fp32 code table and an fp32 offset.
    return packed + blocks + 4 * math.ceil(blocks / NESTED_BLOCK) + 4 * 256 + 4


def weight_bytes(model: nn.Module, double_quant: bool = True) -> dict:
    """fp16 and NF4 bytes of all weights, from shapes alone (works on the meta device)."""
    total = sum(p.numel() if not hasattr(p, "quant_state") else p.quant_state.shape.numel() for p in model.parameters())
    sizes = quantized_weights(model)
    quantized = sum(sizes)
    quantized_nf4 = sum(nf4_bytes(n, double_quant) for n in sizes)
    rest_16bit = 2 * (total - quantized)
    return {
        "params": total,
        "quantized_params": quantized,
        "fp16_bytes": 2 * total,
        "nf4_bytes": quantized_nf4 + rest_16bit,
        "quantized_fp16_bytes": 2 * quantized,
        "quantized_nf4_bytes": quantized_nf4,
        "nf4_bits_per_quantized_weight": round(8 * quantized_nf4 / quantized, 4),
    }


def quant_state_bytes(model: nn.Module) -> int:
    """Bytes of the quantization constants bitsandbytes holds outside the parameters."""
    total = 0
    for param in model.parameters():
        state = getattr(param, "quant_state", None)
        if state is None:
            continue
        total += state.absmax.nbytes + state.code.nbytes  # each layer holds its own copies (measured)
        if state.nested:
            total += state.state2.absmax.nbytes + state.state2.code.nbytes + state.offset.nbytes
    return total


def measure_tiny(model: ModelParams, quant: QuantizationParams) -> dict:
    """get_memory_footprint() of the tiny model in fp16 and in 4-bit (16-bit rest, as on a GPU).

    The 4-bit model is the pipeline's (phisum.modeling.load_base_model), on the CPU with fp16 compute:
    the stages would refuse fp16 there, but the bytes do not depend on where the model runs.
    """
    fp16 = AutoModelForCausalLM.from_pretrained(model.name, revision=model.revision, dtype=torch.float16)
    nf4 = load_base_model(dataclasses.replace(model, device="cpu"), quant, torch.float16)
    computed = weight_bytes(nf4, quant.double_quant)
    measured_nf4 = nf4.get_memory_footprint(return_buffers=False)
    return {
        "fp16_footprint": fp16.get_memory_footprint(return_buffers=False),
        # get_memory_footprint counts the packed uint8 weights but not the absmax constants.
        "nf4_footprint": measured_nf4,
        "nf4_footprint_with_constants": measured_nf4 + quant_state_bytes(nf4),
        "computed": computed,
    }


@click.command(cls=UserErrorCommand)
@click.argument("workspace", default=".", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "out_path", default="", type=click.Path(dir_okay=False), help="Also write the JSON here.")
def main(workspace: Path, out_path: str) -> None:
    out = Path(out_path).resolve() if out_path else None  # relative to where it was started
    os.chdir(workspace)
    params = load_params()
    if params.model.device != "cpu":
        raise click.ClickException(f"{workspace}: params.yaml is not the CPU profile; run `make demo` there first")
    tiny = measure_tiny(params.model, params.quantization)
    phi2 = weight_bytes(meta_model(), params.quantization.double_quant)
    mib = 2**20
    click.echo(f"tiny model ({params.model.name}): {tiny['computed']['params']:,} params")
    click.echo(
        f"  fp16 {tiny['fp16_footprint'] / mib:.3f} MiB, nf4 {tiny['nf4_footprint_with_constants'] / mib:.3f} MiB "
        f"(get_memory_footprint {tiny['nf4_footprint'] / mib:.3f} MiB + constants; computed "
        f"{tiny['computed']['nf4_bytes'] / mib:.3f} MiB): "
        f"{tiny['fp16_footprint'] / tiny['nf4_footprint_with_constants']:.2f}x smaller"
    )
    click.echo(
        f"phi-2 (meta device): {phi2['params']:,} params, {phi2['quantized_params']:,} in quantized Linear layers"
    )
    click.echo(
        f"  fp16 {phi2['fp16_bytes'] / 1e9:.3f} GB, nf4 {phi2['nf4_bytes'] / 1e9:.3f} GB "
        f"({phi2['fp16_bytes'] / phi2['nf4_bytes']:.2f}x); quantized layers {phi2['quantized_fp16_bytes'] / 1e9:.3f}"
        f" -> {phi2['quantized_nf4_bytes'] / 1e9:.3f} GB ({phi2['nf4_bits_per_quantized_weight']} bits/weight)"
    )
    click.echo(json.dumps({"tiny": tiny, "phi2": phi2}, sort_keys=True))
    if out:
        out.write_text(json.dumps({"tiny": tiny, "phi2": phi2}, indent=2, sort_keys=True) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
