"""One command per model family (#22 item 1): phisum/families.py's `dvc exp run -S` overrides, applied by DVC's own
override code to the committed params.yaml, give valid params naming the family's model and LoRA targets.

Then every family through the same guarantees: tiny random models of each architecture, trained and generated
from in 4-bit."""

import json
import os

import pytest
import torch
from click.testing import CliRunner
from dvc.utils.hydra import apply_overrides
from transformers import AutoTokenizer, GenerationConfig

from phisum import families
from phisum.families import FAMILIES as PRESETS
from phisum.generation import generate_summaries
from phisum.modeling import load_base_model, load_tokenizer
from phisum.params import ModelParams, QuantizationParams, load_params, read_yaml
from phisum.tiny_model import TINY_FAMILIES, build_family_model
from phisum.training import build_sft_config, build_trainer, load_trainable_model, to_dataset
from tests.helpers import ROOT, cpu_profile_params


@pytest.mark.parametrize("name", list(families.FAMILIES))
def test_dvc_applies_each_familys_overrides_to_params_yaml(name, tmp_path, monkeypatch):
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    apply_overrides(tmp_path / "params.yaml", families.overrides(name))  # what `dvc exp run -S ...` does
    monkeypatch.chdir(tmp_path)
    params = load_params()
    expected = {
        "phi-2": (
            "microsoft/phi-2",
            "ef382358ec9e382308935a992d908de099b64c23",
            ["q_proj", "k_proj", "v_proj", "dense"],
        ),
        "llama-3-8b": ("meta-llama/Meta-Llama-3-8B", None, ["q_proj", "k_proj", "v_proj", "o_proj"]),
        "mistral-7b-v0.3": ("mistralai/Mistral-7B-v0.3", None, ["q_proj", "k_proj", "v_proj", "o_proj"]),
        "qwen2.5-7b": ("Qwen/Qwen2.5-7B", None, ["q_proj", "k_proj", "v_proj", "o_proj"]),
    }[name]
    assert (params.model.name, params.model.revision, params.lora.target_modules) == expected
    # Only those keys change: r, the prompt, the optimizer stay the recipe's.
    before, after = read_yaml((ROOT / "params.yaml").read_text()), read_yaml((tmp_path / "params.yaml").read_text())
    before["model"].update(name=expected[0], revision=expected[1])
    before["lora"]["target_modules"] = expected[2]
    assert after == before


def test_phi2s_preset_is_the_committed_recipe():
    params = read_yaml((ROOT / "params.yaml").read_text())
    phi2 = families.FAMILIES["phi-2"]
    assert (params["model"]["name"], params["model"]["revision"], params["lora"]["target_modules"]) == (
        phi2.model,
        phi2.revision,
        phi2.target_modules,
    )


def test_the_command_prints_the_experiment_it_runs():
    result = CliRunner().invoke(families.main, ["llama-3-8b", "--print", "--", "--queue"])
    assert result.exit_code == 0, result.output
    assert result.output == (
        "dvc exp run -n llama-3-8b -S model.name=meta-llama/Meta-Llama-3-8B -S model.revision=null "
        "-S 'lora.target_modules=[q_proj,k_proj,v_proj,o_proj]' --queue\n"
    )


def test_the_command_runs_dvc_exp_run_with_the_familys_overrides_and_passes_its_exit_code(tmp_path, monkeypatch):
    # A stand-in dvc on PATH that records its arguments, one a line, and fails as DVC does on a used name.
    (tmp_path / "dvc").write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$0.args"\nexit 3\n')
    (tmp_path / "dvc").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    result = CliRunner().invoke(families.main, ["qwen2.5-7b"])
    assert result.exit_code == 3
    assert (tmp_path / "dvc.args").read_text().splitlines() == [
        "exp",
        "run",
        "-n",
        "qwen2.5-7b",
        "-S",
        "model.name=Qwen/Qwen2.5-7B",
        "-S",
        "model.revision=null",
        "-S",
        "lora.target_modules=[q_proj,k_proj,v_proj,o_proj]",
    ]


FAMILIES = list(TINY_FAMILIES)
# What the real tokenizer_config.json / generation_config.json say (sources in docs/families.md):
# (BOS the tokenizer adds or None, pad token or None, EOS, every EOS generation_config.json lists).
CONVENTIONS = {
    "phi-2": (None, None, "<|endoftext|>", ["<|endoftext|>"]),
    "llama-3": ("<|begin_of_text|>", None, "<|end_of_text|>", ["<|end_of_text|>"]),
    "llama-3-instruct": ("<|begin_of_text|>", None, "<|end_of_text|>", ["<|end_of_text|>", "<|eot_id|>"]),
    "mistral": ("<s>", None, "</s>", ["</s>"]),
    "qwen2.5": (None, "<|endoftext|>", "<|endoftext|>", ["<|endoftext|>"]),
    "qwen2.5-instruct": (None, "<|endoftext|>", "<|im_end|>", ["<|im_end|>", "<|endoftext|>"]),
}
# The last EOS generation_config.json lists: for the instruct models, one the tokenizer's eos_token is not.
LAST_EOS = {family: CONVENTIONS[family][3][-1] for family in FAMILIES}
TEMPLATE = "Instruct: Summarize the below conversation.\n\n{dialogue}\nOutput:\n"
QUANT = QuantizationParams(quant_type="nf4", double_quant=True, compute_dtype="float32")


@pytest.fixture(scope="session")
def family_dirs(tmp_path_factory) -> dict:
    """One tiny model per family, scripted: after the prompt's last "\\n" it says "Hi." and the family's last EOS."""
    dirs = {}
    for family in FAMILIES:
        out_dir = tmp_path_factory.mktemp(family)
        build_family_model(family, out_dir, script={"\n": "H", "H": "i", "i": ".", ".": LAST_EOS[family]})
        dirs[family] = out_dir
    return dirs


def char_ids(tokenizer, text: str, metaspace: bool) -> list[int]:
    """One id per character, as the tiny vocabularies have them: byte-level (" " is "Ġ", "\\n" is "Ċ"), or Metaspace
    ("▁" before the first character and for each space, "\\n" by byte fallback)."""
    vocab = tokenizer.get_vocab()
    if not metaspace:
        byte_level = {" ": "Ġ", "\n": "Ċ"}
        return [vocab[byte_level.get(char, char)] for char in text]
    pieces = ["▁" if char == " " else "<0x0A>" if char == "\n" else char for char in text]
    return [vocab[piece] for piece in ["▁", *pieces]]


@pytest.mark.parametrize("family", FAMILIES)
def test_the_tiny_tokenizer_has_the_real_models_conventions(family_dirs, family):
    bos, pad, eos, generation_eos = CONVENTIONS[family]
    tokenizer = AutoTokenizer.from_pretrained(family_dirs[family])
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("Hi.")["input_ids"])
    assert [token for token in tokens if token in tokenizer.all_special_tokens] == ([bos] if bos else [])
    assert tokenizer.pad_token == pad
    assert tokenizer.eos_token == eos
    listed = GenerationConfig.from_pretrained(family_dirs[family]).eos_token_id
    assert tokenizer.convert_ids_to_tokens(listed if isinstance(listed, list) else [listed]) == generation_eos


def preset_of(family: str) -> str:
    return next(name for name, preset in PRESETS.items() if family in preset.tiny)


def family_params(model_dir, family: str, overrides: dict | None = None):
    """The CPU profile on the family's tiny model with the family's preset LoRA targets (phisum/families.py)."""
    lora = {"r": 8, "target_modules": PRESETS[preset_of(family)].target_modules}
    return cpu_profile_params(model_dir, {"lora": lora, **(overrides or {})})


@pytest.mark.parametrize("family", FAMILIES)
def test_the_prompt_is_masked_and_the_summary_and_the_eos_supervised_with_one_bos(family_dirs, family, tmp_path):
    params = family_params(family_dirs[family], family)
    tokenizer = load_tokenizer(params.model)
    model = load_trainable_model(params, torch.float32)
    prompt = TEMPLATE.replace("{dialogue}", "#Person1#: Hi.")
    rows = [{"prompt": prompt, "completion": "Ok."}, {"prompt": prompt + "x", "completion": "Bye now."}]
    config = build_sft_config(params, torch.float32, str(tmp_path))
    trainer = build_trainer(params, model, tokenizer, config, to_dataset(rows))
    batch = trainer.data_collator([trainer.train_dataset[0], trainer.train_dataset[1]])
    bos, pad, eos, _ = CONVENTIONS[family]
    metaspace = TINY_FAMILIES[family]["style"] == "metaspace"
    vocab = tokenizer.get_vocab()
    start = [vocab[bos]] if bos else []  # once, at the start of prompt + summary; none before the summary
    prompt_ids = start + char_ids(tokenizer, prompt, metaspace)
    summary = char_ids(tokenizer, "Ok.", metaspace)[metaspace:]  # mid-text: no "▁" of a first word
    longer = char_ids(tokenizer, "Bye now.", metaspace)[metaspace:]
    assert batch["input_ids"][1].tolist() == prompt_ids + [vocab["x"]] + longer + [vocab[eos]]
    assert batch["labels"][1].tolist() == [-100] * (len(prompt_ids) + 1) + longer + [vocab[eos]]
    # The first row is 6 tokens shorter: right-padded with the pad token (the EOS where the family has none, and
    # Qwen2.5 base's pad is its EOS), and padding is never supervised: its one supervised EOS ends the summary.
    padding = [vocab[pad or eos]] * 6
    assert batch["input_ids"][0].tolist() == prompt_ids + summary + [vocab[eos]] + padding
    assert batch["labels"][0].tolist() == [-100] * len(prompt_ids) + summary + [vocab[eos]] + [-100] * 6


@pytest.mark.parametrize("family", FAMILIES)
def test_generation_stops_at_every_eos_the_family_lists_and_no_pad_reaches_the_text(family_dirs, family):
    tokenizer = load_tokenizer(ModelParams(name=str(family_dirs[family]), revision=None, device="cpu"))
    model = load_base_model(
        ModelParams(name=str(family_dirs[family]), revision=None, device="cpu"), QUANT, torch.float32
    )
    prompts = [
        TEMPLATE.replace("{dialogue}", "#Person1#: Hi."),
        TEMPLATE.replace("{dialogue}", "#Person1#: Hello there, how are you today?"),  # longer: left padding
        TEMPLATE.replace("{dialogue}", "#Person1#: Hi.") + "Z",  # ends in "Z", not "\n": "xxxxxx", no EOS
    ]
    results = generate_summaries(model.eval(), tokenizer, prompts, 6, 3, ["\nInstruct:", "\n\n"])
    # The model scripted to say "Hi." then the family's last listed EOS: Llama-3-Instruct's <|eot_id|> and
    # Qwen2.5-Instruct's <|endoftext|> are not the tokenizer's eos_token; generation must stop there too. The rows
    # that stopped are padded to the third's 6 tokens with the pad token, which must not reach the text.
    assert results == [
        {"text": "Hi.", "new_tokens": 3, "stopped": True},
        {"text": "Hi.", "new_tokens": 3, "stopped": True},
        {"text": "xxxxxx", "new_tokens": 6, "stopped": False},
    ]


# LoRA r=8 on the preset targets of 2 layers, r * (in + out) each (TINY_FAMILY_DIMS: hidden 64, 4 heads of 16):
# Phi-2 (4 heads for k and v too): q, k, v, dense 64 -> 64: 4 * 8 * 128 = 4,096 a layer, 8,192 in all.
# The others (2 key/value heads: k and v 64 -> 32): q 8 * 128 + k 8 * 96 + v 8 * 96 + o 8 * 128 = 3,584 a layer.
TRAINABLE = {"phi-2": 8_192, "llama-3": 7_168, "llama-3-instruct": 7_168, "mistral": 7_168}
TRAINABLE |= {"qwen2.5": 7_168, "qwen2.5-instruct": 7_168}


# One tiny model per preset (the instruct variants differ only in their EOS, which the tests above cover).
@pytest.mark.parametrize("family", ["phi-2", "llama-3-instruct", "mistral", "qwen2.5"])
def test_each_family_runs_prepare_train_and_generate_through_the_stages(family_dirs, family, tmp_path, monkeypatch):
    from phisum.synthetic import write_dataset
    from tests.helpers import ROOT, invoke_stage, set_params

    write_dataset(tmp_path / "dialogsum", seed=0, sizes={"train": 4, "validation": 2, "test": 2})
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    preset = PRESETS[preset_of(family)]
    set_params(
        tmp_path,
        {
            "model": {"name": str(family_dirs[family]), "revision": None, "device": "cpu"},
            "data": {"source": str(tmp_path / "dialogsum"), "revision": None},
            "prompt": {"max_length": 320},
            "lora": {"r": 8, "target_modules": preset.target_modules},
            "train": {"max_steps": 1, "grad_accum": 2, "save_steps": 1, "eval_steps": 1, "eval_rows": 1},
            "generate": {"max_new_tokens": 8, "stress_cases": 1},
        },
    )
    monkeypatch.chdir(tmp_path)
    for stage in ("prepare", "train", "generate@peft"):
        result = invoke_stage(stage)
        assert result.exit_code == 0, result.output
    # Each training row as TRL tokenizes it (prompt + summary + EOS, test above) fits prompt.max_length: prepare's
    # token count leaves room for the EOS, which TRL would otherwise cut off with the summary's end.
    tokenizer = load_tokenizer(ModelParams(name=str(family_dirs[family]), revision=None, device="cpu"))
    for line in (tmp_path / "data/prepared/train.jsonl").read_text().splitlines():
        row = json.loads(line)
        ids = tokenizer(row["prompt"] + row["completion"] + tokenizer.eos_token)["input_ids"]
        assert len(ids) <= 320 and ids[-1] == tokenizer.eos_token_id, (row["id"], len(ids))
    assert json.loads((tmp_path / "models/adapter/prompt.json").read_text()) == {
        "template": TEMPLATE,
        "max_length": 320,
    }
    metrics = json.loads((tmp_path / "metrics/train.json").read_text())
    assert (metrics["trainable_params"], metrics["trainable_params_peft"]) == (TRAINABLE[family], TRAINABLE[family])
    predictions = [
        json.loads(line) for line in (tmp_path / "data/predictions/peft/test.jsonl").read_text().splitlines()
    ]
    assert predictions and all(tokenizer.pad_token not in row["prediction"] for row in predictions)
