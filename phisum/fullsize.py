"""Full-size Phi-2 without a download: its architecture (the one home of its dimensions) and random weights.

The benchmarks build Phi-2 from here only: on the meta device for parameter and byte counts, and as a
random-weight checkpoint for the CPU and GPU runs. The checkpoint is written shard by shard in 16-bit,
so no fp32 copy of the 2.78B parameters (11 GB) is ever held: peak memory is one shard. Loading it
back goes through phisum.modeling.load_base_model, exactly as microsoft/phi-2 would (4-bit NF4).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import PhiConfig, PhiForCausalLM

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
LAYERS_PER_SHARD = 4  # ~0.6 GB of fp16 per shard


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


def meta_model(config: PhiConfig | None = None) -> PhiForCausalLM:
    """A Phi model (by default Phi-2) with names and shapes but no storage: 2.78B parameters cost nothing."""
    with torch.device("meta"):
        return PhiForCausalLM(config or phi2_config())


def synthetic_texts(count: int, seed: int) -> list[str]:
    """Dialogues and summaries from phisum.synthetic (to train a tokenizer and make short training rows)."""
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        dialogue, summaries, _ = make_example(rng)
        texts += [dialogue, summaries[0]]
    return texts


def random_tensor(name: str, shape: torch.Size, generator: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    """LayerNorm weights 1, biases 0, everything else N(0, 0.02) as Phi-2's initializer_range (on the CPU)."""
    if name.endswith("bias"):
        return torch.zeros(shape, dtype=dtype)
    if "layernorm" in name:
        return torch.ones(shape, dtype=dtype)
    values = torch.empty(shape, dtype=torch.float32, device=generator.device).normal_(0.0, 0.02, generator=generator)
    return values.to(dtype).cpu()


def write_random_phi2(out_dir: Path, seed: int, dtype: torch.dtype = torch.float16, device: str = "cpu") -> None:
    """Write Phi-2's architecture with random weights (sharded safetensors), its config and a small BPE tokenizer.

    The tokenizer (2,048 tokens, trained on phisum.synthetic texts) only needs ids inside Phi-2's
    51,200-token vocabulary; the model's shapes are Phi-2's. `device` only draws the random numbers.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(synthetic_texts(200, seed), vocab_size=2048)
    tokenizer.save_pretrained(out_dir)
    config = phi2_config(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
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
