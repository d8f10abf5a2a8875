import json

import pytest
import yaml

from phisum.params import PromptParams
from phisum.prompt import PromptError, build_prompt, check_adapter_prompt, save_adapter_prompt
from tests.helpers import ROOT

SEED_TEMPLATE = "Instruct: Summarize the below conversation.\n\n{dialogue}\nOutput:\n"


def test_committed_template_is_the_seeds_prompt():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert params["prompt"]["template"] == SEED_TEMPLATE


def test_build_prompt_fills_the_dialogue_exactly():
    dialogue = "#Person1#: Hi.\n#Person2#: Hello."
    assert build_prompt(SEED_TEMPLATE, dialogue) == (
        "Instruct: Summarize the below conversation.\n\n#Person1#: Hi.\n#Person2#: Hello.\nOutput:\n"
    )


def test_build_prompt_keeps_braces_and_backslashes_in_the_dialogue():
    dialogue = "#Person1#: use {x} and C:\\temp"
    assert build_prompt("A {dialogue} B", dialogue) == "A #Person1#: use {x} and C:\\temp B"


def test_an_adapter_trained_on_another_prompt_is_refused_naming_both_templates(tmp_path):
    save_adapter_prompt(tmp_path, PromptParams(template="Summarize: {dialogue}\n", max_length=512))
    assert json.loads((tmp_path / "prompt.json").read_text()) == {
        "max_length": 512,
        "template": "Summarize: {dialogue}\n",
    }
    check_adapter_prompt(tmp_path, "Summarize: {dialogue}\n")  # the training prompt passes
    with pytest.raises(PromptError) as error:
        check_adapter_prompt(tmp_path, SEED_TEMPLATE)
    assert str(error.value) == (
        f"{tmp_path} was trained with prompt.template 'Summarize: {{dialogue}}\\n', params.yaml has "
        "'Instruct: Summarize the below conversation.\\n\\n{dialogue}\\nOutput:\\n'; run `dvc repro` to retrain"
    )


def test_an_adapter_without_its_prompt_record_is_refused(tmp_path):
    with pytest.raises(PromptError, match=r"prompt.json is missing or unreadable: .* was not written by the train"):
        check_adapter_prompt(tmp_path, SEED_TEMPLATE)
