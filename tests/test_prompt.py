import yaml

from phisum.prompt import build_prompt
from tests.conftest import ROOT

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
