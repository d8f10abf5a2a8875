"""The stages through their click mains, in this process, in a temporary working directory (CliRunner)."""

import json
import os
import shutil
import subprocess
import sys

from phisum.modeling import load_tokenizer
from phisum.params import load_params
from phisum.prompt import build_prompt
from tests.helpers import (
    ROOT,
    invoke_stage,
    one_error_line,
    set_params,
    stage_args,
    stage_command,
    stage_env,
)

LONG_DIALOGUE = "#Person1#: " + "Let us meet on Monday at noon and bring the report. " * 100


def test_stress_cases_and_your_own_dialogues_are_cut_to_fit_like_test_prompts(tiny_stage_dir):
    mine = tiny_stage_dir / "mine.jsonl"
    mine.write_text(
        json.dumps({"id": "short", "dialogue": "#Person1#: Hi."}) + "\n\n" + json.dumps({"dialogue": LONG_DIALOGUE})
    )
    set_params(
        tiny_stage_dir,
        {
            "generate": {"max_new_tokens": 8, "stress_cases": 2, "extra_dialogues": str(mine)},
            "prompt": {"max_length": 128},
        },
    )
    assert invoke_stage("prepare").exit_code == 0
    result = invoke_stage("generate@base")
    assert result.exit_code == 0, result.output
    assert "  cut to prompt.max_length - generate.max_new_tokens tokens: 2 stress, 1 extra\n" in result.output
    out_dir = tiny_stage_dir / "data/predictions/base"
    assert json.loads((out_dir / "meta.json").read_text())["truncated_dialogues"] == {"stress": 2, "extra": 1}
    extra = [json.loads(line) for line in (out_dir / "extra.jsonl").read_text().splitlines()]
    assert [row["id"] for row in extra] == ["short", "extra_1"]
    assert extra[0]["dialogue"] == "#Person1#: Hi."
    assert LONG_DIALOGUE.startswith(extra[1]["dialogue"]) and len(extra[1]["dialogue"]) < len(LONG_DIALOGUE) / 4
    params = load_params()
    tokenizer = load_tokenizer(params.model)
    stress = [json.loads(line) for line in (out_dir / "stress.jsonl").read_text().splitlines()]
    for row in extra + stress:
        prompt = build_prompt(params.prompt.template, row["dialogue"])
        assert len(tokenizer(prompt)["input_ids"]) <= 128 - 8, row["id"]


def test_a_bad_line_in_your_own_dialogues_stops_generate_naming_file_and_line(tiny_stage_dir):
    mine = tiny_stage_dir / "mine.jsonl"
    set_params(tiny_stage_dir, {"generate": {"extra_dialogues": str(mine)}})
    cases = [
        ('{"dialogue": "#Person1#: Hi."}\n\n{"dialogue": "#Person1#: Yo."\n', "line 3: not valid JSON (Expecting"),
        ('{"dialogue": "#Person1#: Hi."}\n\n{"id": "x"}\n', "line 3: no `dialogue` text; give every line a"),
    ]
    for content, expected in cases:
        mine.write_text(content)
        error = one_error_line(invoke_stage("generate@base"))
        assert error.startswith(f"Error: generate.extra_dialogues: {mine} {expected}"), error
    assert not (tiny_stage_dir / "data").exists()


def test_generate_refuses_an_adapter_trained_on_another_prompt_in_one_line(tiny_stage_dir):
    adapter_dir = tiny_stage_dir / "models/adapter"
    adapter_dir.mkdir(parents=True)
    (adapter_dir / "prompt.json").write_text(json.dumps({"template": "Summarize: {dialogue}", "max_length": 256}))
    error = one_error_line(invoke_stage("generate@peft"))
    assert error.startswith("Error: models/adapter was trained with prompt.template 'Summarize: {dialogue}', params")
    assert not (tiny_stage_dir / "data").exists()


def test_a_stage_run_as_dvc_yaml_runs_it_imports_the_phisum_of_its_working_directory(tmp_path):
    """A queued experiment runs in a copy of the repository; its stages must not import the editable install."""
    for package in ("stages", "phisum"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    with (tmp_path / "phisum/__init__.py").open("a") as handle:
        handle.write("print('phisum:', __file__)\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    command = [*stage_command("prepare"), "--help"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.stdout.splitlines()[:1] == [f"phisum: {tmp_path / 'phisum/__init__.py'}"], done.stdout + done.stderr


LAZY = """
import importlib, json, sys
from click.testing import CliRunner
for run, args in json.loads(sys.argv[1]):
    result = CliRunner().invoke(importlib.import_module("stages." + run.split("@")[0]).main, args)
    heavy = [m for m in ("torch", "transformers", "peft", "trl", "datasets", "bitsandbytes") if m in sys.modules]
    print(run, result.exit_code, result.output.strip().splitlines()[-1], heavy)
"""


def test_a_params_typo_stops_every_stage_before_torch_or_transformers_load(tmp_path):
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text().replace("  r: 32  #", "  r: 0  #", 1))
    runs = ["prepare", "train", "generate@base", "generate@peft", "evaluate", "qualitative"]
    command = [sys.executable, "-c", LAZY, json.dumps([(run, stage_args(run)) for run in runs])]
    done = subprocess.run(command, cwd=tmp_path, env=stage_env(), capture_output=True, text=True, timeout=300)
    assert done.stdout.splitlines() == [f"{run} 1 Error: lora.r: must be > 0, got 0 []" for run in runs], done.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["params.yaml"]
