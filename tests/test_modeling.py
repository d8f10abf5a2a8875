"""Params turned into library objects: the compute dtype per GPU, the LoRA target check, parameter counts."""

import pytest
import torch
from peft import get_peft_model

from phisum.fullsize import meta_model
from phisum.modeling import (
    TargetModuleError,
    build_lora_config,
    check_target_modules,
    count_parameters,
    resolve_compute_dtype,
)
from phisum.params import LoraParams, ParamsError

SEED_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "dense"]


@pytest.fixture()
def gpu_capability(monkeypatch):
    """Set the compute capability torch.cuda reports (no GPU needed)."""

    def set_capability(major: int, minor: int) -> None:
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *args: (major, minor))

    return set_capability


@pytest.fixture()
def no_gpu(monkeypatch):
    """A CPU run must never ask CUDA (on a machine without a driver that call raises)."""

    def fail(*args):
        raise AssertionError("resolve_compute_dtype asked CUDA for the capability on a CPU run")

    monkeypatch.setattr(torch.cuda, "get_device_capability", fail)


@pytest.mark.parametrize(
    ("capability", "expected"),
    [((7, 5), torch.float16), ((7, 0), torch.float16), ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)],
    ids=["T4", "V100", "A100", "H100"],
)
def test_auto_is_float16_below_compute_capability_8_and_bfloat16_from_it(gpu_capability, capability, expected):
    gpu_capability(*capability)
    assert resolve_compute_dtype("auto", "cuda") == expected


def test_auto_on_the_cpu_is_float32(no_gpu):
    assert resolve_compute_dtype("auto", "cpu") == torch.float32


@pytest.mark.parametrize(
    ("name", "device", "capability", "expected"),
    [
        ("float32", "cuda", (7, 5), torch.float32),
        ("float16", "cuda", (8, 0), torch.float16),
        ("bfloat16", "cuda", (8, 0), torch.bfloat16),
        ("float32", "cpu", None, torch.float32),
        ("bfloat16", "cpu", None, torch.bfloat16),
    ],
)
def test_an_explicit_dtype_is_honoured(gpu_capability, no_gpu, name, device, capability, expected):
    if capability:
        gpu_capability(*capability)
    assert resolve_compute_dtype(name, device) == expected


def test_bfloat16_on_a_t4_is_a_params_error(gpu_capability):
    gpu_capability(7, 5)
    with pytest.raises(ParamsError) as error:
        resolve_compute_dtype("bfloat16", "cuda")
    assert str(error.value) == (
        "quantization.compute_dtype: bfloat16 needs compute capability 8.0, this GPU has 7.5 (a T4 is 7.5); "
        "use auto or float16"
    )


def test_float16_on_the_cpu_is_a_params_error(no_gpu):
    with pytest.raises(ParamsError) as error:
        resolve_compute_dtype("float16", "cpu")
    assert str(error.value) == "quantization.compute_dtype: float16 has no fast CPU kernels here; use auto or float32"


def test_unknown_target_module_lists_the_models_linear_layers(tiny_4bit):
    _, model = tiny_4bit
    check_target_modules(model, SEED_LORA_TARGETS)
    with pytest.raises(TargetModuleError) as error:
        check_target_modules(model, ["Wqkv", "q_proj", "out_proj"])
    assert str(error.value) == (
        "lora.target_modules: Wqkv, out_proj not found in phi; its linear layers are: "
        "dense, fc1, fc2, k_proj, lm_head, q_proj, v_proj"
    )


def test_4bit_tiny_model_with_lora_r8_counts_true_parameters(tiny_4bit):
    tokenizer, model = tiny_4bit
    vocab = len(tokenizer)
    assert vocab == 867  # the BPE the tiny_model_dir fixture trains; the counts below follow from it
    lora = LoraParams(r=8, alpha=16, dropout=0.0, target_modules=SEED_LORA_TARGETS)
    counts = count_parameters(get_peft_model(model, build_lora_config(lora)))
    # TINY_DIMS: hidden 128, intermediate 512, 2 layers; Phi's Linear layers and LayerNorms all have biases.
    # Per layer: LayerNorm 2*128 = 256; q, k, v, dense 4*(128*128 + 128) = 66,048;
    #   fc1 128*512 + 512 = 66,048; fc2 512*128 + 128 = 65,664; together 198,016, x2 layers = 396,032.
    # Final LayerNorm 256; embeddings 867*128 = 110,976; lm_head 867*128 + 867 = 111,843.
    # Base: 396,032 + 256 + 110,976 + 111,843 = 619,107 (the 4-bit matrices count in full, not packed in halves).
    # LoRA r=8 on 4 modules x 2 layers: A (8x128) + B (128x8) = 2,048 each, 8 x 2,048 = 16,384.
    assert counts == {
        "trainable_params": 16_384,
        "total_params": 619_107 + 16_384,
        "trainable_params_peft": 16_384,
        "total_params_peft": 619_107 + 16_384,
    }


def test_full_size_phi2_with_seed_lora_has_20971520_trainable_parameters():
    model = meta_model()  # Phi-2's architecture without allocating 2.7B weights
    lora = LoraParams(r=32, alpha=32, dropout=0.05, target_modules=SEED_LORA_TARGETS)
    counts = count_parameters(get_peft_model(model, build_lora_config(lora)))
    # r=32 on q, k, v, dense of 32 layers of width 2560: 4 * 32 * (32*2560 + 2560*32) = 20,971,520.
    assert counts["trainable_params"] == 20_971_520
    assert counts["total_params"] == 2_779_683_840 + 20_971_520
