"""Queued experiments (`dvc exp run --queue` + `dvc queue start -j 2`) run in a copy of the git repository:
everything a stage reads must be a hub id or tracked by git/DVC. The demo's tiny model and data are."""

import json
import shutil
import sys
import time

import pytest
import yaml

from tests.conftest import VENV_BIN, copy_demo, run

pytestmark = pytest.mark.slow
DVC = str(VENV_BIN / "dvc")
# The queue mechanics are under test here, not the model: few steps, and ROUGE only (no BERTScore model).
EXPERIMENTS = {"queued-r8": 8, "queued-r4": 4}
QUICK = ["-S", "train.max_steps=20", "-S", "train.save_steps=20", "-S", "train.eval_steps=20"]
QUICK += ["-S", "evaluate.metrics=[rouge,length]"]


def test_profile_tracks_the_tiny_model_and_data_with_dvc(demo_repo):
    repo, _ = demo_repo
    staged = run(["git", "diff", "--cached", "--name-only"], repo).split()
    assert {"models/tiny-phi.dvc", "data/synthetic.dvc"} <= set(staged)
    assert "Data and pipelines are up to date." in run([DVC, "status"], repo)


def test_a_local_data_directory_inside_the_repository_is_tracked_too(demo_repo, tmp_path):
    repo = copy_demo(demo_repo[0], tmp_path / "repo")
    shutil.copytree(repo / "data/synthetic", repo / "my_dialogues")
    output = run([sys.executable, "-m", "phisum.profile", "--data", "my_dialogues", "--pretrain-steps", "0"], repo)
    assert "dvc add models/tiny-phi my_dialogues" in output
    assert "my_dialogues.dvc" in run(["git", "diff", "--cached", "--name-only"], repo).split()
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert params["data"]["source"] == "my_dialogues"  # relative: the same path in a queued copy


def test_two_queued_experiments_both_finish_with_metrics(demo_repo, tmp_path):
    repo = copy_demo(demo_repo[0], tmp_path / "repo")
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
