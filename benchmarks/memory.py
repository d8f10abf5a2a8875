"""Weight memory of the 4-bit NF4 model against fp16: measured on the tiny model, computed for Phi-2.

    python benchmarks/memory.py [WORKSPACE] [--out FILE]    (WORKSPACE: the one `make demo` builds; default demo)

It also holds the training-memory estimate that benchmarks/t4_fit.py reports per model family
(`training_bytes`): the 4-bit weights, LoRA weights, gradients, 8-bit optimizer state and activations
under gradient checkpointing of the seed's recipe, computed from a meta-device model's shapes.

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
from trl.kernels.chunked_logprob import TOKEN_CHUNK_SIZE
from trl.trainer.utils import _CHUNKED_LOGPROB_CHUNK_SIZE

from phisum.cli import UserErrorCommand
from phisum.fullsize import meta_model
from phisum.modeling import load_base_model
from phisum.params import ModelParams, QuantizationParams, load_params

BLOCK = 64  # bitsandbytes' 4-bit blocksize: one absmax per 64 weights
NESTED_BLOCK = 256  # double quant: the absmaxes are quantized to 8 bit in blocks of 256
# bitsandbytes' 8-bit optimizers (bitsandbytes/optim/optimizer.py, 0.50): two uint8 states per parameter with
# one fp32 absmax each per 256 values; a tensor under min_8bit_size values keeps two fp32 states instead.
OPTIMIZER_BLOCK = 256
MIN_8BIT_SIZE = 4096
# Gradients in flight while one recomputed layer runs backward, as a multiple of what it saved (an assumption
# the GPU check measures: autograd holds the saved tensors plus gradients of about the same size).
BACKWARD_FACTOR = 2
# TRL's fused LM head on the torch path (every CPU, and a T4: no Triton below compute capability 8.0) holds, per
# [tokens x vocab] tile: the fp16 matmul tile (2 B), its fp32 copy z (4), the bool "before target" mask (1),
# exp(z - max) (4) and e * z for the entropy (4): 15 bytes per tile element (trl/kernels/chunked_logprob.py).
LOSS_TILE_BYTES = 15


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


def quantized_biases(model: nn.Module) -> int:
    """Bias values of the quantized Linear layers: they stay 16-bit through k-bit preparation (measured)."""
    head = model.get_output_embeddings()
    return sum(
        module.bias.numel()
        for module in model.modules()
        if module is not head and isinstance(module, nn.Linear) and module.bias is not None
    )


def unquantized_params(model: nn.Module) -> dict:
    """The parameters bitsandbytes leaves un-quantized, by kind: what weight_bytes counts as the rest."""
    head = model.get_output_embeddings()
    parts = {"embeddings": 0, "lm_head": sum(p.numel() for p in head.parameters()), "norms": 0}
    for module in model.modules():
        if isinstance(module, nn.Embedding) and module is not head:
            parts["embeddings"] += module.weight.numel()
        elif type(module).__name__.endswith("Norm"):
            parts["norms"] += sum(p.numel() for p in module.parameters(recurse=False))
    return {**parts, "quantized_layer_biases": quantized_biases(model)}


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


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder layers of a causal LM (Phi, Llama, Mistral and Qwen2 all keep them at model.model.layers)."""
    return model.get_base_model().model.layers if hasattr(model, "get_base_model") else model.model.layers


def layer_linears(layer: nn.Module) -> dict[str, tuple[int, int]]:
    """(in_features, out_features) of each Linear in one decoder layer, by its short name (q_proj, fc1, ...)."""
    return {
        name.rsplit(".", 1)[-1]: (module.in_features, module.out_features)
        for name, module in layer.named_modules()
        if isinstance(module, nn.Linear)
    }


def lora_tensors(model: nn.Module, targets, r: int) -> list[int]:
    """Sizes of the LoRA A (r x in) and B (out x r) matrices peft adds for these targets, over all layers."""
    sizes = []
    for layer in decoder_layers(model):
        for name, (fan_in, fan_out) in layer_linears(layer).items():
            if name in targets:
                sizes += [r * fan_in, fan_out * r]
    return sizes


def optimizer_bytes(sizes: list[int]) -> int:
    """bitsandbytes 8-bit AdamW state for trainable tensors of these sizes (its 256-entry code tables left out)."""
    return sum(2 * n + 2 * 4 * math.ceil(n / OPTIMIZER_BLOCK) if n >= MIN_8BIT_SIZE else 2 * 4 * n for n in sizes)


def layer_activation_bytes(model: nn.Module, targets) -> dict:
    """Bytes one decoder layer saves for backward, per token, when it is recomputed under gradient checkpointing.

    The walk, for fp16 compute (autocast) on the pipeline's prepared model, whose residual stream is fp32
    (prepare_model_for_kbit_training casts the embeddings to fp32): every 4-bit Linear saves its input cast
    to fp16 (2 B per input feature) and returns its output in the input's dtype (4 B per output feature);
    every LoRA target adds a dropout output in fp32 (4), its mask (1) and lora_A's fp16 input (2) per input
    feature (the r-wide parts are negligible); RoPE writes new fp32 q and k; SDPA saves fp16 q, k, v and its
    fp16 output (GQA's repeated k/v are not counted); the MLP's activation (and a gated MLP's product) is
    fp32; each norm keeps an fp32 input and output; two fp32 residual sums.
    """
    config = model.config
    layer = decoder_layers(model)[0]
    linears = layer_linears(layer)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    q_dim = config.num_attention_heads * head_dim
    kv_dim = (getattr(config, "num_key_value_heads", None) or config.num_attention_heads) * head_dim
    hidden, inner = config.hidden_size, config.intermediate_size
    norms = sum(1 for module in layer.modules() if type(module).__name__.endswith("Norm"))
    parts = {
        "linear_inputs_fp16": sum(2 * fan_in for fan_in, _ in linears.values()),
        "linear_outputs_fp32": sum(4 * fan_out for _, fan_out in linears.values()),
        "lora": sum(7 * fan_in for name, (fan_in, _) in linears.items() if name in targets),
        "rope_fp32": 4 * (q_dim + kv_dim),
        "sdpa_fp16": 2 * (q_dim + 2 * kv_dim) + 2 * q_dim,
        "mlp_activation_fp32": 4 * inner * (2 if "gate_proj" in linears else 1),
        "norms_fp32": norms * 2 * 4 * hidden,
        "residual_fp32": 2 * 4 * hidden,
    }
    return {**parts, "total": sum(parts.values())}


def training_bytes(model: nn.Module, targets, r: int, seq_len: int, double_quant: bool = True) -> dict:
    """GPU bytes of one QLoRA training step at batch 1 and seq_len tokens (the CUDA context not included).

    model: the architecture on the meta device. Weights: NF4 (with the constants) for the quantized Linear
    layers, the rest (embeddings, lm_head, norms, biases) in fp32 as prepare_model_for_kbit_training casts
    them. LoRA weights and gradients fp32; 8-bit paged AdamW state. Activations under gradient
    checkpointing: each layer's fp32 input hidden state, the final norm's input and output, and the larger
    of the loss tile (TRL's fused LM head, with its fp16 copy of one vocabulary chunk of lm_head) and one
    recomputed layer with its gradients (BACKWARD_FACTOR), since the two are never alive together, and the
    largest 4-bit matrix dequantized to fp16 for its matmul.
    """
    counts = weight_bytes(model, double_quant)
    config = model.config
    lora = lora_tensors(model, targets, r)
    checkpoints = config.num_hidden_layers * seq_len * config.hidden_size * 4
    final_norm = 2 * seq_len * config.hidden_size * 4
    vocab_tile = min(config.vocab_size, _CHUNKED_LOGPROB_CHUNK_SIZE)
    loss = min(seq_len, TOKEN_CHUNK_SIZE) * vocab_tile * LOSS_TILE_BYTES + vocab_tile * config.hidden_size * 2
    layer = BACKWARD_FACTOR * seq_len * layer_activation_bytes(model, targets)["total"]
    dequantized = 2 * max(quantized_weights(model))  # a 4-bit matrix dequantized to fp16 for its matmul
    parts = {
        "weights_nf4": counts["quantized_nf4_bytes"],
        "weights_rest": 4 * (counts["params"] - counts["quantized_params"]) - 2 * quantized_biases(model),
        "lora_weights": 4 * sum(lora),
        "lora_gradients": 4 * sum(lora),
        "optimizer_8bit": optimizer_bytes(lora),
        "activations": checkpoints + final_norm + max(loss, layer) + dequantized,
    }
    return {
        **parts,
        "total": sum(parts.values()),
        "trainable_params": sum(lora),
        "activation_parts": {
            "checkpoints": checkpoints,
            "final_norm": final_norm,
            "loss_tile": loss,
            "layer": layer,
            "dequantized_matrix": dequantized,
        },
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


def measure_training_state(params, seq_len: int = 16) -> dict:
    """What training_bytes computes, measured on a (small) real model: the pipeline's own loading, one step.

    params.model names a local model directory. The model is loaded 4-bit and prepared as the train stage
    does (phisum.training.load_trainable_model, fp16 compute: prepare_model_for_kbit_training casts the
    rest to fp32), wrapped by peft, run forward and backward on random tokens and stepped once by
    bitsandbytes' PagedAdamW8bit (non-paged on the CPU). Returns the bytes of each part, read off the tensors.
    """
    import bitsandbytes
    from peft import get_peft_model

    from phisum.modeling import build_lora_config
    from phisum.training import keep_lora_weights_fp32, load_trainable_model

    model = get_peft_model(load_trainable_model(params, torch.float16), build_lora_config(params.lora))
    keep_lora_weights_fp32(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    frozen = [p for p in model.parameters() if not p.requires_grad]
    ids = torch.randint(0, model.config.vocab_size, (1, seq_len), generator=torch.Generator().manual_seed(0))
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer = bitsandbytes.optim.PagedAdamW8bit(trainable, lr=1e-4)
    optimizer.step()
    state_keys = ("state1", "state2", "absmax1", "absmax2")  # the 256-entry qmaps are shared code tables
    return {
        "weights_nf4": quant_state_bytes(model) + sum(p.nbytes for p in frozen if hasattr(p, "quant_state")),
        "weights_rest": sum(p.nbytes for p in frozen if not hasattr(p, "quant_state")),
        "rest_dtypes": sorted({str(p.dtype) for p in frozen if not hasattr(p, "quant_state")}),
        "lora_weights": sum(p.nbytes for p in trainable),
        "lora_gradients": sum(p.grad.nbytes for p in trainable),
        "optimizer_8bit": sum(
            optimizer.state[p][key].nbytes for p in trainable for key in state_keys if key in optimizer.state[p]
        ),
        "trainable_params": sum(p.numel() for p in trainable),
    }


@click.command(cls=UserErrorCommand)
@click.argument("workspace", default="demo", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "out_path", default="", type=click.Path(dir_okay=False), help="Also write the JSON here.")
def main(workspace: Path, out_path: str) -> None:
    out = Path(out_path).resolve() if out_path else None  # relative to where it was started
    os.chdir(workspace)
    params = load_params()
    if params.model.device != "cpu":
        raise click.ClickException(
            f"{workspace}: params.yaml is not the CPU profile; run `make demo` first (it builds demo/)"
        )
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
