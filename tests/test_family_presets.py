"""One command per model family (#22 item 1): phisum/families.py's `dvc exp run -S` overrides, applied by DVC's own
override code to the committed params.yaml, give valid params naming the family's model and LoRA targets."""

import os

import pytest
from click.testing import CliRunner
from dvc.utils.hydra import apply_overrides

from phisum import families
from phisum.params import load_params, read_yaml
from tests.conftest import ROOT


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
