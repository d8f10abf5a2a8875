"""Merge a trained adapter into a full-precision copy of its base model and save it as safetensors.

    python -m phisum.export [--adapter-dir models/adapter] [--out-dir models/merged] [--dtype float32]

The default is float32 (full precision: what merging computes in). For serving on a GPU, `--dtype bfloat16`
(compute capability 8.0 and up) or `--dtype float16` (a T4) halves the size; Phi-2 in float16 can overflow
in attention, which is why the pipeline computes in bfloat16 where it can.

Not a pipeline stage: the adapter is the product; merging is for serving without peft. The base
model (name and revision) is read from the adapter's params.json, so it is the one trained on.
The merged weights are not quantized: the adapter was trained against the 4-bit base, so merged
outputs differ from 4-bit + adapter by the quantization error (and agree with full-precision
base + adapter).
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from phisum.cli import UserErrorCommand
from phisum.files import atomic_dir


def load_unquantized_with_adapter(adapter_dir: Path, dtype: torch.dtype = torch.float32):
    """Full-precision base model + the adapter, unmerged."""
    model_params = json.loads((adapter_dir / "params.json").read_text(encoding="utf-8"))["model"]
    base = AutoModelForCausalLM.from_pretrained(
        model_params["name"], revision=model_params["revision"], dtype=dtype, use_safetensors=True
    )
    return PeftModel.from_pretrained(base, adapter_dir)


def merge_adapter(adapter_dir: Path, out_dir: Path, dtype: torch.dtype = torch.float32) -> None:
    """Write the merged model and the adapter's tokenizer to out_dir (atomically)."""
    merged = load_unquantized_with_adapter(adapter_dir, dtype).merge_and_unload()
    with atomic_dir(out_dir) as tmp_dir:
        merged.save_pretrained(tmp_dir, safe_serialization=True)
        AutoTokenizer.from_pretrained(adapter_dir).save_pretrained(tmp_dir)


@click.command(cls=UserErrorCommand)
@click.option("--adapter-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default="models/adapter")
@click.option("--out-dir", type=click.Path(path_type=Path), default="models/merged")
@click.option("--dtype", type=click.Choice(["float32", "float16", "bfloat16"]), default="float32", show_default=True)
def main(adapter_dir: Path, out_dir: Path, dtype: str) -> None:
    merge_adapter(adapter_dir, out_dir, getattr(torch, dtype))
    click.echo(f"merged {adapter_dir} into its base model: {out_dir}/")


if __name__ == "__main__":
    main()
