"""Queued experiments (`dvc exp run --queue` + `dvc queue start -j 2`) run in a copy of the git repository:
everything a stage reads must be a hub id or tracked by git/DVC. The CPU profile's tiny model and data are."""

import json
import shutil
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import VENV_BIN, copy_project, run

pytestmark = pytest.mark.slow
DVC = str(VENV_BIN / "dvc")
# The queue mechanics are under test here, not the model: a random-weight tiny model (no pretraining), few
# steps, short summaries, and ROUGE only (no BERTScore model).
EXPERIMENTS = {"queued-r8": 8, "queued-r4": 4}
QUICK = ["-S", "train.max_steps=20", "-S", "train.save_steps=20", "-S", "train.eval_steps=20"]
QUICK += ["-S", "generate.max_new_tokens=8", "-S", "evaluate.metrics=[rouge,length]"]


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


# What each stage writes, as files: after the round trip r=32 -> r=16 -> r=32 they must be byte-identical.
OUTPUTS = ("models/adapter", "metrics", "data/predictions", "data/scored", "reports/qualitative.md")
RESTORED = ("train", "generate@peft", "evaluate", "qualitative")  # prepare and generate@base never changed


def output_bytes(repo: Path) -> dict[str, bytes]:
    files = {}
    for name in OUTPUTS:
        path = repo / name
        for file in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if file.is_file() and file.name != ".gitignore":
                files[str(file.relative_to(repo))] = file.read_bytes()
    return files


def test_going_back_to_a_configuration_restores_every_stage_from_the_run_cache(profiled, tmp_path):
    """r=32, r=16, r=32 again: the third run restores train, the PEFT generation, evaluate and qualitative."""
    repo = tmp_path / "repo"
    shutil.copytree(profiled, repo, symlinks=True)
    outputs, seconds = [], []
    for rank in (32, 16, 32):
        started = time.monotonic()
        log = run([DVC, "exp", "run", "-S", f"lora.r={rank}", *QUICK], repo)
        seconds.append(time.monotonic() - started)
        outputs.append(output_bytes(repo))
    print(f"dvc exp run r=32, r=16, r=32 again: {', '.join(f'{s:.1f} s' for s in seconds)}")
    for stage in RESTORED:
        assert f"Stage '{stage}' is cached - skipping run, checking out outputs" in log, log
    assert "Stage 'generate@base' didn't change, skipping" in log and "Running stage" not in log, log
    assert set(outputs[2]) == set(outputs[0]) and len(outputs[0]) > 20
    assert [name for name in outputs[0] if outputs[2][name] != outputs[0][name]] == []
    assert outputs[1]["models/adapter/adapter_config.json"] != outputs[0]["models/adapter/adapter_config.json"]
