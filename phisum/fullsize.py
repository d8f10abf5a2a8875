"""Full-size models without a download: their architectures (the one home of their dimensions) and random weights.

The benchmarks build Phi-2 and the other families (FAMILIES) from here only: on the meta device for
parameter and byte counts, and as a random-weight checkpoint for the CPU and GPU runs. The checkpoint
is written shard by shard in 16-bit, so no fp32 copy of the 2.78B parameters (11 GB) is ever held: peak
memory is one shard. Loading it back goes through phisum.modeling.load_base_model, exactly as
microsoft/phi-2 would (4-bit NF4).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import AutoConfig, AutoModelForCausalLM, PhiConfig, PretrainedConfig

from phisum.families import FAMILIES as PRESETS  # the hub ids and LoRA targets, one table for both
from phisum.params import Params, ParamsError, load_params
from phisum.synthetic import make_example
from phisum.tiny_model import train_tokenizer

# microsoft/phi-2's config.json, the keys where it differs from PhiConfig's defaults.
PHI2_DIMS = {
    "vocab_size": 51200,
    "hidden_size": 2560,
    "intermediate_size": 10240,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "max_position_embeddings": 2048,
    "partial_rotary_factor": 0.4,
    "resid_pdrop": 0.1,
}
PHI2_PARAMS = 2_779_683_840  # microsoft/phi-2's parameter count (its model card: 2.7B), to check PHI2_DIMS against
# A 16 GB T4 as torch sees it: torch.cuda.get_device_properties(0).total_memory, reported as 15,095 MiB
# (torch 2.x on Colab; other public reports: 15,079-15,109 MiB). nvidia-smi says 15,360 MiB, but what
# cudaMemGetInfo calls total is all a process can allocate, the CUDA context included.
T4_TOTAL_MIB = 15_095
# The CUDA context with lazy module loading (CUDA >= 11.7, PyTorch's default): "around 400MB" (ptrblck,
# pytorch/pytorch#109888); it was > 1,000 MB before lazy loading. benchmarks/gpu_phi2.py measures it.
CUDA_CONTEXT_MIB = 400
LAYERS_PER_SHARD = 4  # ~0.6 GB of fp16 per shard (Phi-2; ~0.9-1.2 GB for the 7-8B families)


@dataclass(frozen=True)
class Family:
    """One model family at the size the seed's question compares: its config.json's shapes and their source.

    `dims` holds the keys where the model's config.json differs from the transformers config class's
    defaults (the hub is not reachable here, so each value is cited instead of read). `params` is the
    parameter count the meta-device build must give (the published size, checked in tests); `attention`
    are the LoRA targets equivalent to Phi-2's q_proj/k_proj/v_proj/dense, `all_linear` every Linear of a
    decoder layer (what peft's "all-linear" selects: lm_head excluded).
    """

    name: str
    model_type: str
    dims: dict
    params: int
    attention: tuple[str, ...]
    all_linear: tuple[str, ...]
    source: str


LLAMA_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
FAMILIES = {
    "phi-2": Family(
        name=PRESETS["phi-2"].model,
        model_type="phi",
        dims=PHI2_DIMS,
        params=PHI2_PARAMS,
        attention=tuple(PRESETS["phi-2"].target_modules),
        all_linear=("q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"),
        source="microsoft/phi-2 config.json (see PHI2_DIMS; ../shared/REFERENCE.md lists the same dims)",
    ),
    "llama-3-8b": Family(
        name=PRESETS["llama-3-8b"].model,
        model_type="llama",
        dims={
            "vocab_size": 128256,
            "hidden_size": 4096,
            "intermediate_size": 14336,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "max_position_embeddings": 8192,
            "rope_theta": 500000.0,
            "rms_norm_eps": 1e-5,
            "tie_word_embeddings": False,
        },
        params=8_030_261_248,  # model card: 8B; 8.03B as the hub's safetensors metadata counts it
        attention=tuple(PRESETS["llama-3-8b"].target_modules),
        all_linear=LLAMA_LINEAR,
        source="pytorch/torchtune torchtune/models/llama3/_model_builders.py llama3_8b() (commit dcb6dc4): "
        "vocab_size=128_256, num_layers=32, num_heads=32, num_kv_heads=8, embed_dim=4096, "
        "intermediate_dim=14336, max_seq_len=8192, norm_eps=1e-5, rope_base=500000.0; untied output",
    ),
    "mistral-7b-v0.3": Family(
        name=PRESETS["mistral-7b-v0.3"].model,
        model_type="mistral",
        dims={
            "vocab_size": 32768,
            "hidden_size": 4096,
            "intermediate_size": 14336,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "max_position_embeddings": 32768,
            "rope_theta": 1000000.0,
            "sliding_window": None,
            "rms_norm_eps": 1e-5,
            "tie_word_embeddings": False,
        },
        params=7_248_023_552,  # 7.25B
        attention=tuple(PRESETS["mistral-7b-v0.3"].target_modules),
        all_linear=LLAMA_LINEAR,
        source="pytorch/torchtune torchtune/models/mistral/_model_builders.py mistral_7b() (commit 6adf934): "
        "num_layers=32, num_heads=32, num_kv_heads=8, embed_dim=4096, intermediate_dim=14336, "
        "max_seq_len=32768, norm_eps=1e-5; Mistral's model table (docs.mistral.ai, and the "
        "Mistral-7B-Instruct-v0.3 model card): v0.2 = rope theta 1e6, no sliding window; "
        "v0.3 = 'Extended vocabulary to 32768'",
    ),
    "qwen2.5-7b": Family(
        name=PRESETS["qwen2.5-7b"].model,
        model_type="qwen2",
        dims={
            "vocab_size": 152064,
            "hidden_size": 3584,
            "intermediate_size": 18944,
            "num_hidden_layers": 28,
            "num_attention_heads": 28,
            "num_key_value_heads": 4,
            "max_position_embeddings": 131072,
            "rope_theta": 1000000.0,
            "rms_norm_eps": 1e-6,
            "tie_word_embeddings": False,
        },
        params=7_615_616_512,  # 7.62B (q/k/v carry biases in Qwen2)
        attention=tuple(PRESETS["qwen2.5-7b"].target_modules),
        all_linear=LLAMA_LINEAR,
        source="pytorch/torchtune torchtune/models/qwen2_5/_model_builders.py qwen2_5_7b_base() (commit fa59233): "
        "vocab_size=152064, num_layers=28, num_heads=28, num_kv_heads=4, embed_dim=3584, "
        "intermediate_dim=18944, max_seq_len=131072, norm_eps=1e-6, rope_base=1000000.0; untied output "
        "(tie_word_embeddings only for 0.5B-3B)",
    ),
}


def load_recipe(params_path: Path) -> Params:
    """The params file's recipe, which the full-size runs measure; a file on the CPU profile is refused.

    The demo workspace holds the CPU profile (its learning rate, lengths and steps are the tiny model's), and
    a GPU run carries the working tree as it is: measuring that would cost the run.
    """
    from phisum.profile import TINY_MODEL_DIR

    params = load_params(params_path)
    if Path(params.model.name) == TINY_MODEL_DIR:
        raise ParamsError(
            f"{params_path} holds the CPU profile (model.name: {params.model.name}); the full-size runs "
            "measure the T4 recipe: run them on the committed params.yaml, not in the demo workspace"
        )
    return params


def phi2_config(**overrides) -> PhiConfig:
    """Phi-2's architecture, plus overrides that are not shapes (token ids, dtype)."""
    return PhiConfig(**PHI2_DIMS, **overrides)  # a shape key in overrides is a TypeError


def family_config(family: str, **overrides) -> PretrainedConfig:
    """A family's full-size architecture (FAMILIES), plus overrides (token ids, dtype, or smaller shapes)."""
    spec = FAMILIES[family]
    return AutoConfig.for_model(spec.model_type, **{**spec.dims, **overrides})


def meta_model(config: PretrainedConfig | None = None):
    """A causal LM (by default Phi-2) with names and shapes but no storage: billions of parameters cost nothing."""
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config or phi2_config())


def synthetic_texts(count: int, seed: int) -> list[str]:
    """Dialogues and summaries from phisum.synthetic (to train a tokenizer and make short training rows)."""
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        dialogue, summaries, _ = make_example(rng)
        texts += [dialogue, summaries[0]]
    return texts


def random_tensor(name: str, shape: torch.Size, generator: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    """Norm weights 1, biases 0, everything else N(0, 0.02) as the families' initializer_range (on the CPU)."""
    if name.endswith("bias"):
        return torch.zeros(shape, dtype=dtype)
    if "layernorm" in name or name.endswith("norm.weight"):  # Phi's final_layernorm, Llama's model.norm
        return torch.ones(shape, dtype=dtype)
    values = torch.empty(shape, dtype=torch.float32, device=generator.device).normal_(0.0, 0.02, generator=generator)
    return values.to(dtype).cpu()


def write_random_phi2(out_dir: Path, seed: int, dtype: torch.dtype = torch.float16, device: str = "cpu") -> None:
    """Write Phi-2's architecture with random weights (sharded safetensors), its config and a small BPE tokenizer."""
    write_random_model(out_dir, "phi-2", seed, dtype, device)


def write_random_model(
    out_dir: Path, family: str, seed: int, dtype: torch.dtype = torch.float16, device: str = "cpu", **shapes
) -> None:
    """Write a family's architecture (FAMILIES; `shapes` overrides dims) with random weights, config and tokenizer.

    The tokenizer (2,048 tokens, trained on phisum.synthetic texts) only needs ids inside the family's
    vocabulary; the model's shapes are the family's. Random weights serve memory measurements, not the
    family's tokenizer conventions. `device` only draws the random numbers.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(synthetic_texts(200, seed), vocab_size=2048)
    tokenizer.save_pretrained(out_dir)
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id, "pad_token_id": None}
    config = family_config(family, **shapes, **ids)
    shapes = {name: tensor.shape for name, tensor in meta_model(config).state_dict().items()}

    def shard_of(name: str) -> int:
        parts = name.split(".")
        return 1 + int(parts[2]) // LAYERS_PER_SHARD if parts[1] == "layers" else 0  # 0: embeddings, head, norm

    shards = sorted({shard_of(name) for name in shapes})
    generator = torch.Generator(device=device).manual_seed(seed)  # "cuda": much faster random numbers
    weight_map, total_bytes = {}, 0
    for shard in shards:
        file_name = f"model-{shard + 1:05d}-of-{len(shards):05d}.safetensors"
        names = [name for name in shapes if shard_of(name) == shard]
        tensors = {name: random_tensor(name, shapes[name], generator, dtype) for name in names}
        save_file(tensors, out_dir / file_name, metadata={"format": "pt"})
        total_bytes += sum(t.numel() * t.element_size() for t in tensors.values())
        weight_map.update(dict.fromkeys(tensors, file_name))
        del tensors
    index = {"metadata": {"total_size": total_bytes}, "weight_map": weight_map}
    (out_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2), encoding="utf-8")
    config.dtype = dtype
    config.save_pretrained(out_dir)
