"""Turn params into library objects: tokenizer, 4-bit base model, LoRA config. One path, no flag matrix."""

from __future__ import annotations

import torch
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

from phisum.params import LoraParams, ModelParams, QuantizationParams

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def resolve_compute_dtype(name: str) -> torch.dtype:
    """`auto`: bf16 from compute capability 8.0, fp16 below, fp32 on CPU.

    Not torch.cuda.is_bf16_supported(): it says True on a T4, which only emulates bf16 (slowly).
    """
    if name != "auto":
        return DTYPES[name]
    if not torch.cuda.is_available():
        return torch.float32
    return torch.bfloat16 if torch.cuda.get_device_capability() >= (8, 0) else torch.float16


def build_quantization_config(quant: QuantizationParams, compute_dtype: torch.dtype) -> BitsAndBytesConfig:
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quant.quant_type,
        bnb_4bit_use_double_quant=quant.double_quant,
        bnb_4bit_compute_dtype=compute_dtype,
    )


def load_tokenizer(model: ModelParams):
    """Phi-2 has no pad token; padding reuses EOS, and labels are masked by position, not by id."""
    tokenizer = AutoTokenizer.from_pretrained(model.name, revision=model.revision)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base_model(model: ModelParams, quant: QuantizationParams, compute_dtype: torch.dtype):
    """The base model in 4-bit, from safetensors only, on the GPU when there is one."""
    return AutoModelForCausalLM.from_pretrained(
        model.name,
        revision=model.revision,
        quantization_config=build_quantization_config(quant, compute_dtype),
        dtype=compute_dtype,
        device_map={"": 0} if torch.cuda.is_available() else None,
        use_safetensors=True,
        trust_remote_code=False,
    )


def build_lora_config(lora: LoraParams) -> LoraConfig:
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
