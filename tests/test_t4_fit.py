"""Will it fit a T4 (#22 item 3): the family configs, the training-memory estimate, benchmarks/t4_fit.py."""

import dataclasses
import json

import pytest
import torch
from click.testing import CliRunner
from transformers import AutoConfig

from phisum.fullsize import FAMILIES, family_config, meta_model, write_random_model
from phisum.params import ModelParams, load_params
from tests.helpers import ROOT, load_script

# Small shapes of each family's architecture: hidden 128 puts r=32's LoRA A matrices (32 x 128 = 4,096 values)
# exactly on bitsandbytes' 8-bit threshold, and 2 KV heads make Llama-type B matrices (64 x 32) fall under it.
TINY = {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4}


@pytest.fixture()
def committed_params():
    """params.yaml as committed: the T4 recipe (`make demo` works in a workspace of its own)."""
    return ROOT / "params.yaml"


def test_family_configs_give_the_published_parameter_counts():
    """Built on the meta device from the cited config values: 2.78B, 8.03B, 7.25B, 7.62B."""
    counts = {family: sum(p.numel() for p in meta_model(family_config(family)).parameters()) for family in FAMILIES}
    assert counts == {
        "phi-2": 2_779_683_840,
        "llama-3-8b": 8_030_261_248,
        "mistral-7b-v0.3": 7_248_023_552,
        "qwen2.5-7b": 7_615_616_512,
    }
    assert [round(n / 1e9, 2) for n in counts.values()] == [2.78, 8.03, 7.25, 7.62]
    assert {family: spec.params for family, spec in FAMILIES.items()} == counts
    memory = load_script("memory")
    for family in FAMILIES:  # the un-quantized kinds account for every parameter outside the 4-bit layers
        model = meta_model(family_config(family))
        sizes = memory.weight_bytes(model)
        assert sum(memory.unquantized_params(model).values()) == sizes["params"] - sizes["quantized_params"]
    assert [type(meta_model(family_config(f))).__name__ for f in FAMILIES] == [
        "PhiForCausalLM",
        "LlamaForCausalLM",
        "MistralForCausalLM",
        "Qwen2ForCausalLM",
    ]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_estimated_training_state_equals_a_real_4bit_model(family, tmp_path, committed_params):
    """Weights (NF4 + constants, fp32 rest), LoRA weights, gradients and 8-bit AdamW state, byte for byte.

    A small random model of the family's architecture goes through the pipeline's loading (4-bit, k-bit
    preparation), peft, one backward pass and one PagedAdamW8bit step on the CPU; the tensors' bytes must
    equal what training_bytes computes from the meta-device shapes.
    """
    memory = load_script("memory")
    kv_heads = {} if family == "phi-2" else {"num_key_value_heads": 2}
    write_random_model(tmp_path / "model", family, seed=0, dtype=torch.float16, vocab_size=2048, **TINY, **kv_heads)
    targets = list(FAMILIES[family].attention)
    params = load_params(committed_params)
    params = dataclasses.replace(
        params,
        model=ModelParams(name=str(tmp_path / "model"), revision=None, device="cpu"),
        lora=dataclasses.replace(params.lora, target_modules=targets),
    )
    measured = memory.measure_training_state(params)
    shapes = meta_model(AutoConfig.from_pretrained(tmp_path / "model"))
    computed = memory.training_bytes(shapes, targets, params.lora.r, 16)
    parts = ("weights_nf4", "weights_rest", "lora_weights", "lora_gradients", "optimizer_8bit", "trainable_params")
    assert {part: measured[part] for part in parts} == {part: computed[part] for part in parts}
    # By hand, r=32 on 2 layers: Phi q/k/v/dense are 128 -> 128; Llama-type k/v are 128 -> 64 (2 KV heads x 32).
    outs = [128, 128, 128, 128] if family == "phi-2" else [128, 64, 64, 128]
    assert measured["trainable_params"] == 2 * sum(32 * 128 + out * 32 for out in outs)
    assert "torch.float32" in measured["rest_dtypes"]  # the embeddings and lm_head were cast


def test_phi2_estimate_parts_by_hand():
    memory = load_script("memory")

    estimate = memory.training_bytes(meta_model(), ["q_proj", "k_proj", "v_proj", "dense"], 32, 2048)
    assert estimate["trainable_params"] == 20_971_520
    assert estimate["lora_weights"] == estimate["lora_gradients"] == 4 * 20_971_520
    # 8 LoRA tensors of 81,920 values per layer (32 x 2560 and 2560 x 32), 320 blocks of 256 each, 32 layers.
    assert estimate["optimizer_8bit"] == 2 * 20_971_520 + 2 * 4 * (32 * 8 * 320)
    # Not quantized: 263,101,440 values (embeddings, lm_head + bias, norms, biases) in fp32, except the
    # quantized layers' biases (4 x 2560 + 10240 + 2560 per layer), 16-bit.
    assert estimate["weights_rest"] == 4 * 263_101_440 - 2 * 32 * 23_040
    # What stays un-quantized, by hand: 51,200 x 2560 embeddings; lm_head with its bias; 33 LayerNorms
    # (weight + bias); the biases of the quantized layers. Together: the 263,101,440 above.
    assert memory.unquantized_params(meta_model()) == {
        "embeddings": 51_200 * 2560,
        "lm_head": 51_200 * 2560 + 51_200,
        "norms": 33 * 2 * 2560,
        "quantized_layer_biases": 32 * 23_040,
    }
    assert sum(memory.unquantized_params(meta_model()).values()) == 263_101_440
    parts = estimate["activation_parts"]
    assert parts["checkpoints"] == 32 * 2048 * 2560 * 4
    assert parts["loss_tile"] == 2048 * 32768 * 15 + 32768 * 2560 * 2  # one [2048 x 32768] tile, fp16 lm_head chunk
    assert parts["dequantized_matrix"] == 2 * 2560 * 10240


def test_fit_row_solves_for_the_longest_length_that_fits(committed_params):
    t4_fit = load_script("t4_fit")
    memory = load_script("memory")

    params = load_params(committed_params)
    row = t4_fit.fit_row("llama-3-8b", FAMILIES["llama-3-8b"].attention, params, budget_mib=9_000)
    assert not row["fits"] and row["total_mib"] > 9_000 and 0 < row["largest_max_length"] < 2048
    model = meta_model(family_config("llama-3-8b"))
    targets, longest = FAMILIES["llama-3-8b"].attention, row["largest_max_length"]
    need = [memory.training_bytes(model, targets, 32, n)["total"] / 2**20 + 400 for n in (longest, longest + 1)]
    assert need[0] <= 9_000 < need[1]
    assert "**no** (" in t4_fit.markdown([row])


def test_t4_fit_script_rows_and_the_table_in_benchmarks_md(committed_params, tmp_path):
    t4_fit = load_script("t4_fit")

    out = tmp_path / "t4.json"
    result = CliRunner().invoke(t4_fit.main, ["--params", str(committed_params), "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    assert [(row["family"], len(row["targets"])) for row in rows] == [
        ("phi-2", 4),
        ("phi-2", 6),
        ("llama-3-8b", 4),
        ("llama-3-8b", 7),
        ("mistral-7b-v0.3", 4),
        ("mistral-7b-v0.3", 7),
        ("qwen2.5-7b", 4),
        ("qwen2.5-7b", 7),
    ]
    assert rows[0]["targets"] == ["q_proj", "k_proj", "v_proj", "dense"] and rows[0]["trainable_params"] == 20_971_520
    assert all(row["seq_len"] == 2048 and row["budget_mib"] == 15_095 for row in rows)
    table = t4_fit.markdown(rows)
    assert table in result.output
    section = (ROOT / "BENCHMARKS.md").read_text().split("\n## Will it fit a T4?\n", 1)[1]
    assert table in section, "BENCHMARKS.md's T4 table is stale: rerun benchmarks/t4_fit.py and paste its table"
