"""Turn params into library objects: tokenizer, 4-bit base model, LoRA config. One path, no flag matrix."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from peft import LoraConfig
from torch.nn import Linear
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

from phisum.hub import hub_lookup
from phisum.params import LoraParams, ModelParams, ParamsError, QuantizationParams

ATTENTION = "sdpa"  # see load_base_model
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def check_device(device: str) -> None:
    """model.device `cuda` needs a usable GPU: stop, rather than start a run that takes days on the CPU."""
    if device == "cuda" and not torch.cuda.is_available():
        raise ParamsError(
            f"model.device: cuda, but CUDA is not usable here (torch {torch.__version__}, built for CUDA "
            f"{torch.version.cuda}); Phi-2 on the CPU takes days: fix the GPU setup, or set model.device: cpu "
            "to run on the CPU anyway"
        )


def resolve_compute_dtype(name: str, device: str) -> torch.dtype:
    """`auto`: bf16 from compute capability 8.0, fp16 below, fp32 on CPU.

    Not torch.cuda.is_bf16_supported(): it says True on a T4, which only emulates bf16 (slowly).
    """
    on_gpu = device == "cuda"
    capability = torch.cuda.get_device_capability() if on_gpu else None
    if name == "auto":
        if not on_gpu:
            return torch.float32
        return torch.bfloat16 if capability >= (8, 0) else torch.float16
    if name == "bfloat16" and on_gpu and capability < (8, 0):
        raise ParamsError(
            f"quantization.compute_dtype: bfloat16 needs compute capability 8.0, this GPU has "
            f"{capability[0]}.{capability[1]} (a T4 is 7.5); use auto or float16"
        )
    if name == "float16" and not on_gpu:
        raise ParamsError("quantization.compute_dtype: float16 has no fast CPU kernels here; use auto or float32")
    return DTYPES[name]


def stable_dtype_advice(device: str, compute_dtype: torch.dtype) -> str | None:
    """The compute dtype to try after NaN/inf at compute_dtype on this device; None when it already is float32.

    bfloat16 has float32's range, so it cures fp16 overflow, but needs compute capability 8.0 (a T4, 7.5, refuses
    it: resolve_compute_dtype): below that, and after bfloat16 itself, float32 is what is left.
    """
    if compute_dtype == torch.float32:
        return None
    if compute_dtype == torch.float16 and device == "cuda":
        major, minor = torch.cuda.get_device_capability()
        if (major, minor) >= (8, 0):
            return "quantization.compute_dtype: bfloat16"
        return f"quantization.compute_dtype: float32 (compute capability {major}.{minor} has no bfloat16)"
    return "quantization.compute_dtype: float32"


def precision_cause(device: str, compute_dtype: torch.dtype) -> tuple[str, str] | None:
    """(the likely cause of NaN/inf at compute_dtype, the setting that avoids it); None at float32."""
    advice = stable_dtype_advice(device, compute_dtype)
    if advice is None:
        return None
    return ("fp16 overflow" if compute_dtype == torch.float16 else "low bfloat16 precision"), advice


def build_quantization_config(quant: QuantizationParams, compute_dtype: torch.dtype) -> BitsAndBytesConfig:
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quant.quant_type,
        bnb_4bit_use_double_quant=quant.double_quant,
        bnb_4bit_compute_dtype=compute_dtype,
    )


def check_max_length(model: ModelParams, max_length: int) -> None:
    """prompt.max_length must fit the model's position embeddings (reads only the config)."""
    config = AutoConfig.from_pretrained(model.name, revision=model.revision)
    limit = getattr(config, "max_position_embeddings", None)
    if limit is not None and max_length > limit:
        raise ParamsError(f"prompt.max_length: {max_length} exceeds {model.name}'s limit of {limit} tokens")


def load_tokenizer(model: ModelParams):
    """Phi-2 has no pad token; padding reuses EOS, and labels are masked by position, not by id."""
    tokenizer = AutoTokenizer.from_pretrained(model.name, revision=model.revision)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base_model(model: ModelParams, quant: QuantizationParams, compute_dtype: torch.dtype):
    """The base model in 4-bit, from safetensors only, on model.device, with SDPA attention.

    SDPA by name: eager attention in transformers 5 no longer upcasts to fp32, which brings back
    Phi-2's fp16 overflow (NaN logits, "!!!!" outputs) on a T4.
    """
    return AutoModelForCausalLM.from_pretrained(
        model.name,
        revision=model.revision,
        quantization_config=build_quantization_config(quant, compute_dtype),
        dtype=compute_dtype,
        attn_implementation=ATTENTION,
        # Under torchrun each process holds its own copy on its own GPU.
        device_map={"": int(os.environ.get("LOCAL_RANK", 0))} if model.device == "cuda" else None,
        use_safetensors=True,
        trust_remote_code=False,
    )


def describe_runtime(model, compute_dtype: torch.dtype) -> str:
    """Where and how a loaded model runs: device (GPU name and compute capability), dtype, attention."""
    device = next(model.parameters()).device
    where = str(device)
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        where += f" ({torch.cuda.get_device_name(device)}, compute capability {major}.{minor})"
    dtype = str(compute_dtype).removeprefix("torch.")
    return f"device {where}, compute dtype {dtype}, attention {model.config._attn_implementation}"


def build_lora_config(lora: LoraParams) -> LoraConfig:
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )


class TargetModuleError(ParamsError):
    """lora.target_modules names a layer the model does not have."""


def linear_layer_names(model) -> list[str]:
    """Distinct last-name components of the model's Linear layers (what LoRA can target)."""
    return sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, Linear)})


def check_target_modules(model, target_modules: list[str]) -> None:
    """Fail before training when a target matches no Linear layer; list the ones that exist."""
    available = linear_layer_names(model)
    unknown = [name for name in target_modules if name not in available]
    if unknown:
        raise TargetModuleError(
            f"lora.target_modules: {', '.join(unknown)} not found in {model.config.model_type}; "
            f"its linear layers are: {', '.join(available)}"
        )


def count_parameters(model) -> dict:
    """Trainable and total parameters, as peft prints them and as true counts.

    bitsandbytes packs two 4-bit weights per byte, so a plain numel() counts each quantized matrix at
    half its size (older peft printed that); the true count reads the original shape from quant_state.
    """
    trainable_peft, total_peft = model.get_nb_trainable_parameters()
    total = trainable = 0
    for param in model.parameters():
        quant_state = getattr(param, "quant_state", None)
        count = quant_state.shape.numel() if quant_state is not None else param.numel()
        total += count
        trainable += count if param.requires_grad else 0
    return {
        "trainable_params": trainable,
        "total_params": total,
        "trainable_params_peft": trainable_peft,
        "total_params_peft": total_peft,
    }


# A local model directory that a queued experiment cannot see looks exactly like a name that exists nowhere.
WHERE_MODELS_LIVE = (
    "set a hub id (e.g. microsoft/phi-2) or a local model directory; a queued experiment "
    "(dvc exp run --queue) sees only git- or DVC-tracked files"
)


def check_model_source(model: ModelParams) -> None:
    """One ParamsError naming model.name / model.revision when they resolve to nothing, before any work (a
    HubNameError, as for data.source, when the hub has nothing by that name).

    Fetches config.json the way from_pretrained does first (local directory, else hub or hub cache), so
    the load that follows finds it cached; the hub's own errors say which part was wrong.
    """
    from huggingface_hub import hf_hub_download

    name, revision = model.name, model.revision
    if not name.strip():
        raise ParamsError(f"model.name: empty; {WHERE_MODELS_LIVE}")
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ParamsError(f"model.name: {name} has no config.json; use a directory saved by save_pretrained")
        return
    if path.exists():
        raise ParamsError(f"model.name: {name} is a file, not a model directory; {WHERE_MODELS_LIVE}")
    with hub_lookup("model.name", name, revision, WHERE_MODELS_LIVE, "config.json; not a transformers model"):
        hf_hub_download(name, "config.json", revision=revision)
