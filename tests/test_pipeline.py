"""The real pipeline, end to end, on the CPU profile: `make demo` in a fresh git repo, then its promises."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

pytestmark = pytest.mark.slow
VENV = Path(sys.executable).parents[1]


def run(args: list[str], cwd: Path, timeout: int = 900) -> str:
    env = {**os.environ, "PATH": f"{VENV / 'bin'}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    env.update(
        GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t.invalid", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t.invalid"
    )
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{output[-4000:]}"
    return output


@pytest.fixture(scope="module")
def demo_repo(tmp_path_factory) -> tuple[Path, str]:
    """A fresh clone-like copy of the project (committed + new files) after `make demo`."""
    repo = tmp_path_factory.mktemp("clone")
    listed = run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], ROOT).splitlines()
    # Results of an earlier local run are not part of a clone.
    local_results = ("dvc.lock", "metrics/", "reports/", "data/predictions/")
    for name in listed:
        if (ROOT / name).is_file() and not name.startswith(local_results):
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, repo / name)
    (repo / "params.yaml").write_text(run(["git", "show", "HEAD:params.yaml"], ROOT))
    run(["git", "init", "-q"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "clone"], repo)
    output = run(["make", "demo", f"VENV={VENV}"], repo)
    return repo, output


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def test_demo_fine_tune_beats_base_by_a_clear_margin(demo_repo):
    repo, _ = demo_repo
    base, peft = read_json(repo / "metrics/base.json"), read_json(repo / "metrics/peft.json")
    for metrics in (base, peft):
        assert set(metrics["multi_ref"]) == {"rouge1", "rouge2", "rougeL", "rougeLsum"}
        assert metrics["dialogues"] == 60 and metrics["rows"] == 120
    assert peft["multi_ref"]["rouge1"] >= base["multi_ref"]["rouge1"] + 0.2
    train = read_json(repo / "metrics/train.json")
    assert train["steps"] == 400 and train["last_loss"] < train["first_loss"]
    assert (repo / "models/adapter/adapter_model.safetensors").exists()
    assert read_json(repo / "models/adapter/prompt.json")["template"].startswith("Instruct: Summarize")
    report = (repo / "reports/qualitative.md").read_text()
    assert report.count("| PEFT |") == 3


def test_lora_experiment_reruns_only_training_and_peft_evaluation(demo_repo):
    _, output = demo_repo
    experiment = output[output.index("dvc exp run") :]
    for stage in ("prepare", "evaluate@base"):
        assert f"Stage '{stage}' didn't change, skipping" in experiment
    for stage in ("train", "evaluate@peft"):
        assert f"Running stage '{stage}'" in experiment


def test_metrics_diff_shows_the_rank_change(demo_repo):
    repo, output = demo_repo
    assert "cpu-r16" in run([str(VENV / "bin/dvc"), "exp", "list", "--name-only"], repo)
    diff = output[output.index("dvc metrics diff") :]
    trainable = next(line for line in diff.splitlines() if "trainable_params" in line)
    assert "65536" in trainable and "32768" in trainable  # LoRA parameters halve with r


def test_workspace_ends_on_the_r32_run_and_a_second_repro_does_nothing(demo_repo):
    repo, _ = demo_repo
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert params["lora"]["r"] == 32 and params["model"]["name"] == "models/tiny-phi"
    assert "Data and pipelines are up to date." in run([str(VENV / "bin/dvc"), "repro"], repo)
