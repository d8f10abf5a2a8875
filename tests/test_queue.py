"""Queued experiments (`dvc exp run --queue` + `dvc queue start -j 2`) run in a copy of the git repository:
everything a stage reads must be a hub id or tracked by git/DVC. The CPU profile's tiny model and data are."""

import json
import shutil
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers import VENV_BIN, copy_project, run

pytestmark = pytest.mark.slow
DVC = str(VENV_BIN / "dvc")
# The queue mechanics are under test here, not the model: a random-weight tiny model (no pretraining), few
# steps, short summaries, and ROUGE only (no BERTScore model).
EXPERIMENTS = {"queued-r8": 8, "queued-r4": 4}
QUICK = ["-S", "train.max_steps=20", "-S", "train.save_steps=20", "-S", "train.eval_steps=20"]
QUICK += ["-S", "generate.max_new_tokens=8", "-S", "generate.stress_cases=4", "-S", "evaluate.metrics=[rouge,length]"]
QUICK += ["-S", "train.eval_rows=4"]


@pytest.fixture(scope="module")
def profiled(tmp_path_factory) -> Path:
    """A fresh clone-like copy switched to the CPU profile as `make demo` does it, without the pretraining."""
    repo = copy_project(tmp_path_factory.mktemp("queue") / "repo")
    run([sys.executable, "-m", "phisum.profile", "--pretrain-steps", "0"], repo)
    return repo


def test_a_local_data_directory_inside_the_repository_is_tracked_too(profiled, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(profiled, repo, symlinks=True)
    shutil.copytree(repo / "data/synthetic", repo / "my_dialogues")
    output = run([sys.executable, "-m", "phisum.profile", "--data", "my_dialogues", "--pretrain-steps", "0"], repo)
    assert "dvc add models/tiny-phi my_dialogues" in output
    assert "my_dialogues.dvc" in run(["git", "diff", "--cached", "--name-only"], repo).split()
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert params["data"]["source"] == "my_dialogues"  # relative: the same path in a queued copy


def test_two_queued_experiments_both_finish_with_metrics(profiled, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(profiled, repo, symlinks=True)
    for name, rank in EXPERIMENTS.items():
        run([DVC, "exp", "run", "--queue", "-n", name, "-S", f"lora.r={rank}", *QUICK], repo)
    run([DVC, "queue", "start", "-j", "2"], repo)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        status = run([DVC, "queue", "status"], repo)
        if not any(word in status for word in ("Queued", "Running")):
            break
        time.sleep(2)
    run([DVC, "queue", "stop"], repo, check=False)  # no idle worker outlives the test
    for name in EXPERIMENTS:
        assert any(name in line and "Success" in line for line in status.splitlines()), status
    shown = json.loads(run([DVC, "exp", "show", "--json"], repo))
    found = {}
    for baseline in shown:
        for experiment in baseline.get("experiments") or []:
            for revision in experiment["revs"]:
                if revision.get("name") in EXPERIMENTS:
                    found[revision["name"]] = revision["data"]
    assert set(found) == set(EXPERIMENTS)
    for name, rank in EXPERIMENTS.items():
        metrics = found[name]["metrics"]
        train = metrics["metrics/train.json"]["data"]
        assert train["steps"] == 20
        # LoRA r on q/k/v/dense of the tiny model's 2 layers: r * (in + out) per matrix, 2048 parameters per r
        assert train["trainable_params"] == 2048 * rank
        peft = metrics["metrics/peft.json"]["data"]
        assert peft["dialogues"] == 60 and 0 <= peft["pooled_reference"]["rouge1"] <= 1
