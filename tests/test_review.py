"""The review's parts that need no demo run: params diff, pairing by id, the verdict line, the paths from
dvc.yaml, the cross-family gains on hand-made scores (tests/test_review_on_demo.py runs the whole review on the
demo's revisions)."""

from pathlib import Path

import pytest

from phisum.review import (
    ReviewError,
    Run,
    gains,
    headline_verdict,
    paired_deltas,
    param_changes,
    render_review,
    stage_paths,
    verdict,
)
from phisum.vocabulary import cell
from tests.helpers import VENV_BIN, run

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


def test_the_review_reads_each_revision_s_paths_from_its_dvc_yaml_stage_cmds():
    dvc_yaml = (
        "stages:\n  train:\n    cmd: python -m stages.train --metrics-path out/train.json --adapter-dir a\n"
        "  evaluate:\n    cmd: >-\n      python -m stages.evaluate --scored-dir out/scored/\n"
        "      --metrics-dir=out/metrics --plots-dir p\n"
    )
    assert stage_paths(dvc_yaml, "revision 'main'") == {
        "metrics_dir": "out/metrics",
        "scored_dir": "out/scored",
        "train_metrics": "out/train.json",
    }
    with pytest.raises(ReviewError) as error:
        stage_paths(dvc_yaml.replace("--metrics-path", "--metrics"), "revision 'main'")
    assert str(error.value) == (
        "dvc.yaml of revision 'main': stage train's cmd has no --metrics-path; the review reads its outputs from there"
    )


def test_a_text_is_one_markdown_table_cell():
    assert cell("Tom  |\tAnn\n\nmeet. ") == "Tom \\| Ann meet."
    assert cell(" \n") == cell("") == "(empty)"


# Three dialogues, two model families (revision "main": family A, this revision: family B), hand-made scores.
# Per dialogue d1, d2, d3:        base          PEFT          gain = PEFT - base
#   A (main)                      .2 .4 .3      .5 .5 .6      .3 .1 .3   mean .7/3
#   B (this revision)             .1 .1 .4      .6 .3 .5      .5 .2 .1   mean .8/3
#   B - A, base:  -.1 -.3 .1 (mean -.1); PEFT: .1 -.2 -.1 (mean -.2/3); gains: .2 .1 -.2 (mean .1/3)
SCORES = {
    "main": {"base": (0.2, 0.4, 0.3), "peft": (0.5, 0.5, 0.6)},
    "this": {"base": (0.1, 0.1, 0.4), "peft": (0.6, 0.3, 0.5)},
}
IDS = ("d1", "d2", "d3")


def by_id(values: tuple, ids: tuple = IDS) -> dict[str, dict]:
    # Stored in reverse order: pairs are made by id, not by position.
    return {i: {"pooled_rouge1": v} for i, v in reversed(list(zip(ids, values, strict=True)))}


def test_gains_of_two_models_over_the_same_dialogues_by_hand():
    scores = {
        rev: {v: by_id(SCORES[name][v]) for v in ("base", "peft")} for rev, name in (("main", "main"), (None, "this"))
    }
    result = gains(scores, ("main", None), ["pooled_rouge1", "meteor"], resamples=500, seed=0)["pooled_rouge1"]
    expected = {"base": -0.1, "peft": -0.2 / 3, "gain_a": 0.7 / 3, "gain_b": 0.8 / 3, "gain_difference": 0.1 / 3}
    assert {part: result[part]["delta"] for part in expected} == {k: round(v, 4) for k, v in expected.items()}
    # A resampled mean lies between the smallest and the largest per-dialogue difference.
    low, high = result["gain_difference"]["ci_low"], result["gain_difference"]["ci_high"]
    assert -0.2 <= low < 0.1 / 3 < high <= 0.2
    # A gain difference that is the same on every dialogue has no spread.
    shifted = {None: {v: by_id(tuple(s + 0.05 for s in SCORES["main"][v])) for v in ("base", "peft")}}
    shifted["main"] = scores["main"]
    same = gains(shifted, ("main", None), ["pooled_rouge1"], resamples=500, seed=0)["pooled_rouge1"]
    assert same["base"] == {"delta": 0.05, "ci_low": 0.05, "ci_high": 0.05, "resamples": 500}
    assert same["gain_difference"] == {"delta": 0.0, "ci_low": 0.0, "ci_high": 0.0, "resamples": 500}


def hand_run(model: str, scores: dict, ids: tuple = IDS) -> Run:
    rows = {
        v: {
            "test": {
                i: {"id": i, "prediction": f"{v} summary of {i}", "references": ["ref"], "scores": s}
                for i, s in by_id(scores[v], ids).items()
            },
            "stress": {f"s{k}": {"id": f"s{k}", "final_time_correct": k % 2, "red_herring": 0} for k in range(3)},
        }
        for v in ("base", "peft")
    }
    metrics = {v: {"pooled_reference": {"rouge1": sum(scores[v]) / 3}} for v in ("base", "peft")}
    return Run(model, {**metrics, "train": {"last_loss": 1.5}}, rows)


def render(runs: dict) -> list[str]:
    return render_review("main", runs, [], 2, 500, 0, "pooled_reference.rouge1").splitlines()


def test_a_review_across_model_families_compares_base_peft_and_the_gains():
    lines = render({"main": hand_run("org/model-a", SCORES["main"]), None: hand_run("org/model-b", SCORES["this"])})
    # PEFT of this revision minus PEFT of main, the verdict as before.
    assert lines[0].startswith("**Verdict: no difference beyond noise** on ROUGE-1 pooled (primary metric): ")
    assert "this revision minus `main` -0.0667" in lines[0]
    differ = "**The base models differ**: `main` runs `org/model-a`, this revision `org/model-b` (`model.name`"
    assert [line for line in lines if line.startswith("**The base models differ**")][0].startswith(differ)
    assert "| metric | base model (org/model-a) @ main | base model (org/model-b) @ this revision " in "\n".join(lines)
    start = lines.index("## Across models: base vs base, PEFT vs PEFT, and each model's gain")
    assert lines[start + 4] == (
        "| score | base: org/model-b - org/model-a | PEFT: this revision - `main` | gain of org/model-a "
        "| gain of org/model-b | gain difference |"
    )
    row = lines[start + 6].split(" | ")
    assert row[0] == "| ROUGE-1 pooled (primary)"
    assert [cell.split(" [")[0] for cell in row[1:]] == ["-0.1000", "-0.0667", "+0.2333", "+0.2667", "+0.0333"]
    assert lines[start + 7].startswith("| stress: final time | +0.0000 [+0.0000, +0.0000] |")
    assert lines.index("## PEFT: this revision minus `main`") > start  # the PEFT-vs-PEFT section follows
    # One family on both sides: no cross-family section.
    same = render({"main": hand_run("org/model-a", SCORES["main"]), None: hand_run("org/model-a", SCORES["this"])})
    assert not [line for line in same if "Across models" in line or "base models differ" in line]


def test_revisions_that_scored_other_test_dialogues_are_reported_unpaired_in_one_line():
    other = hand_run("org/model-b", SCORES["this"], ids=("d1", "d2", "d4"))
    lines = render({"main": hand_run("org/model-a", SCORES["main"]), None: other})
    why = (
        "cannot pair the two revisions: the test dialogues of `main` (first) and this revision (second), sorted by "
        "id, are not the same dialogues in the same order: row 3 is 'd3' in the first, 'd4' in the second; score "
        "both on the same test set"
    )
    assert lines[0] == f"**Verdict: none**: {why}"
    assert [line for line in lines if line.startswith("No paired comparison")] == [f"No paired comparison: {why}."]
    assert "## Headline metrics" in lines and "| ROUGE-1 pooled | 0.3 | 0.2 | 0.5333 | 0.4667 |" in lines
    assert not [line for line in lines if line.startswith("## ") and line != "## Headline metrics"]
