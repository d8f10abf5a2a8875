"""What `dvc plots show --json` gives for the demo run, chart by chart (phisum.plots writes the data)."""

import json
from pathlib import Path

import pytest

from tests.helpers import VENV_BIN, run

pytestmark = pytest.mark.slow
DVC = str(VENV_BIN / "dvc")
LOSS = "Loss per optimizer step (train and validation)"
SCORES = "Base vs PEFT (headline scores and stress rates)"
LENGTHS = "Summary length per test dialogue, words (on the dashed y = x line the length is right)"


@pytest.fixture(scope="module")
def shown(demo_repo) -> dict:
    repo, _ = demo_repo
    return json.loads(run([DVC, "plots", "show", "--json"], repo))["data"]


def values(shown: dict, title: str) -> list[dict]:
    (plot,) = shown[title]
    return plot["content"]["data"]["values"]


def read_scored(repo: Path, model: str) -> list[dict]:
    return [json.loads(line) for line in (repo / f"data/scored/{model}/test.jsonl").read_text().splitlines()]


def test_only_the_defined_charts_no_default_renderings(shown):
    assert set(shown) == {LOSS, "Learning rate", "Gradient norm", SCORES, LENGTHS}


def test_loss_chart_has_train_and_validation_series(shown):
    points = values(shown, LOSS)
    steps = {
        name: [int(p["step"]) for p in points if p["filename"] == name] for name in {p["filename"] for p in points}
    }
    assert steps == {"train/loss.tsv": list(range(1, 301)), "eval/loss.tsv": list(range(50, 301, 50))}


def test_base_and_peft_scores_are_two_series_with_the_metrics_file_values(shown, demo_repo):
    repo, _ = demo_repo
    points = values(shown, SCORES)
    assert {p["filename"] for p in points} == {"base.csv", "peft.csv"}
    for model in ("base", "peft"):
        metrics = json.loads((repo / f"metrics/{model}.json").read_text())
        by_metric = {p["metric"]: float(p["value"]) for p in points if p["filename"] == f"{model}.csv"}
        assert by_metric["ROUGE-1 pooled"] == metrics["pooled_reference"]["rouge1"]
        assert by_metric["sacreBLEU / 100"] == round(metrics["all_references"]["bleu"] / 100, 4)
        assert by_metric["BERTScore F1 best-ref"] == metrics["best_reference"]["bertscore"]["f1"]
        assert by_metric["stress: red herring"] == metrics["stress"]["red_herring_rate"]
    spec = shown[SCORES][0]["content"]
    assert spec["encoding"]["color"]["field"] == spec["encoding"]["yOffset"]["field"] == "series"


def test_length_chart_is_prediction_against_reference_words_per_dialogue_for_both_models(shown, demo_repo):
    repo, _ = demo_repo
    points = values(shown, LENGTHS)
    for model in ("base", "peft"):
        expected = {
            row["id"]: (
                round(sum(len(r.split()) for r in row["references"]) / len(row["references"]), 2),
                len(row["prediction"].split()),
            )
            for row in read_scored(repo, model)
        }
        got = {
            p["dialogue"]: (float(p["reference_words"]), int(p["prediction_words"]))
            for p in points
            if p["filename"] == f"{model}.csv"
        }
        assert len(got) == 60 and got == expected
    layers = shown[LENGTHS][0]["content"]["layer"]
    assert layers[1]["mark"]["type"] == "line" and layers[1]["encoding"]["x"] == layers[1]["encoding"]["y"]  # y = x
