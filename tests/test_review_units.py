"""The review's parts that need no demo run: params diff, pairing by id, the verdict line (tests/test_review.py
runs the whole review on the demo's revisions)."""

from pathlib import Path

import pytest

from phisum.review import ReviewError, headline_verdict, paired_deltas, param_changes, verdict
from tests.conftest import VENV_BIN, run

DVC = str(VENV_BIN / "dvc")


@pytest.fixture()
def dvc_repo(tmp_path, monkeypatch) -> Path:
    """A git + DVC repository whose main holds params.yaml (read by a stage) and a code file."""
    run(["git", "init", "-q", "-b", "main"], tmp_path)
    run([DVC, "init", "-q"], tmp_path)
    (tmp_path / "params.yaml").write_text("lora:\n  r: 32\n  alpha: 32\n")
    (tmp_path / "dvc.yaml").write_text("stages:\n  train:\n    cmd: echo\n    params:\n      - lora\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    run(["git", "add", "-A"], tmp_path)
    run(["git", "commit", "-qm", "main"], tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def commit(repo: Path, path: str, text: str) -> None:
    (repo / path).write_text(text)
    run(["git", "commit", "-qam", f"change {path}"], repo)


def test_params_of_a_code_only_branch_and_of_main_against_itself_are_none(dvc_repo):
    assert param_changes("main") == []  # main against itself
    run(["git", "checkout", "-qb", "code-only"], dvc_repo)
    commit(dvc_repo, "code.py", "x = 2\n")
    assert param_changes("main") == []


def test_params_of_a_branch_that_changes_one_are_listed(dvc_repo):
    run(["git", "checkout", "-qb", "r16"], dvc_repo)
    commit(dvc_repo, "params.yaml", "lora:\n  r: 16\n  alpha: 32\n")
    assert param_changes("main") == ["`lora.r`: 32 -> 16"]


def test_revisions_that_scored_other_dialogues_are_one_error_naming_the_first_differing_id():
    scores = {i: {"rouge1": 0.5} for i in ("d1", "d2", "d3")}
    other = {i: {"rouge1": 0.5} for i in ("d1", "d3", "d4")}
    with pytest.raises(ReviewError, match="row 2 is 'd2' in the first, 'd3' in the second") as error:
        paired_deltas(scores, other, ["rouge1"], resamples=10, seed=0)
    assert "\n" not in str(error.value)
    results, count = paired_deltas(scores, dict(reversed(scores.items())), ["rouge1"], resamples=10, seed=0)
    assert count == 3 and results["rouge1"]["delta"] == 0.0  # the same ids in another order pair by id


def test_the_verdict_line_reads_the_primary_interval():
    better = {"delta": 0.02, "ci_low": 0.005, "ci_high": 0.031, "resamples": 1000}
    assert headline_verdict("pooled_reference.rouge1", better, "main") == (
        "**Verdict: better** on ROUGE-1 pooled (primary metric): this revision minus `main` +0.0200, "
        "95% CI [+0.0050, +0.0310]"
    )
    noise = {"delta": -0.01, "ci_low": -0.03, "ci_high": 0.004, "resamples": 1000}
    assert headline_verdict("best_reference.meteor", noise, "main").startswith(
        "**Verdict: no difference beyond noise** on METEOR best-ref (primary metric)"
    )
    assert headline_verdict("best_reference.meteor", None, "main").startswith("**Verdict: none**")


def test_an_exploratory_score_is_beyond_noise_only_by_its_holm_adjusted_p():
    result = {"delta": 0.02, "ci_low": 0.001, "ci_high": 0.04, "resamples": 1000, "p_value": 0.03}
    assert verdict("rouge1", result) == "better by 0.0200 [+0.0010, +0.0400], beyond noise"
    assert verdict("rouge1", result, adjusted_p=0.12) == (
        "better by 0.0200 [+0.0010, +0.0400], p 0.03, Holm 0.12: within noise"
    )
    assert verdict("red_herring", result, adjusted_p=0.01).startswith("worse by 0.0200")  # lower is better
