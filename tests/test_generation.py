"""Generation on the tiny model in 4-bit, as the generate stage runs it."""

import importlib.util
import json

import click
import pytest

from phisum.generation import cut_at_stop_string, generate_summaries
from phisum.modeling import check_max_length, load_base_model, load_tokenizer
from phisum.params import ModelParams, ParamsError, QuantizationParams
from tests.conftest import ROOT


def load_stage(name: str):
    spec = importlib.util.spec_from_file_location(f"stage_{name}", ROOT / "stages" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cut_at_stop_string_keeps_the_text_before_the_first_one():
    assert cut_at_stop_string("Tom meets Ann.\n\nInstruct: more", ["\nInstruct:", "\n\n"]) == ("Tom meets Ann.", True)
    assert cut_at_stop_string("Tom meets Ann.", ["\nInstruct:"]) == ("Tom meets Ann.", False)


def test_batched_greedy_generation_equals_one_at_a_time(tiny_model_dir):
    model_params = ModelParams(name=str(tiny_model_dir), revision=None)
    tokenizer = load_tokenizer(model_params)
    quant = QuantizationParams(quant_type="nf4", double_quant=True, compute_dtype="float32")
    model = load_base_model(model_params, quant, __import__("torch").float32).eval()
    prompts = [f"Instruct: Summarize.\n\n#Person1#: Meet on day {i}{' please' * i}?\nOutput:\n" for i in range(6)]
    batched = generate_summaries(model, tokenizer, prompts, 12, batch_size=4, stop_strings=["\n\n"])
    single = generate_summaries(model, tokenizer, prompts, 12, batch_size=1, stop_strings=["\n\n"])
    assert batched == single
    assert all(0 < row["new_tokens"] <= 12 and "\n\n" not in row["text"] for row in batched)


def test_max_length_above_the_models_positions_is_a_params_error(tiny_model_dir):
    check_max_length(ModelParams(name=str(tiny_model_dir), revision=None), 2048)
    with pytest.raises(ParamsError, match="prompt.max_length: 4096 exceeds .* limit of 2048 tokens"):
        check_max_length(ModelParams(name=str(tiny_model_dir), revision=None), 4096)


def test_your_own_dialogues_file_is_read_and_checked(tmp_path):
    generate = load_stage("generate")
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps({"dialogue": "#Person1#: Hi."}) + "\n" + json.dumps({"id": "x", "dialogue": "B"}) + "\n")
    assert generate.read_extra_dialogues(str(path)) == [
        {"id": "extra_0", "dialogue": "#Person1#: Hi."},
        {"id": "x", "dialogue": "B"},
    ]
    assert generate.read_extra_dialogues("") == []
    path.write_text(json.dumps({"id": "y", "dialogue": " "}) + "\n")
    with pytest.raises(click.ClickException, match="line 1 has no `dialogue`"):
        generate.read_extra_dialogues(str(path))
