"""Plots that read right: what `dvc plots show --json` gives for the demo run, chart by chart."""

import csv
import io
import json
from pathlib import Path

import pytest

from phisum.plots import length_rows, plot_texts, score_rows
from tests.conftest import VENV_BIN, run

DVC = str(VENV_BIN / "dvc")
LOSS = "Loss per optimizer step (train and validation)"
SCORES = "Base vs PEFT (headline scores and stress rates)"
LENGTHS = "Summary length per test dialogue, words (on the dashed y = x line the length is right)"


def test_score_rows_take_headline_scores_bertscore_f1_and_stress_rates():
    metrics = {
        "pooled_reference": {"definition": "...", "rouge1": 0.5, "rouge2": "disabled"},
        "best_reference": {"meteor": 0.25, "bertscore": {"f1": 0.7, "model": "m"}},
        "all_references": {"bleu": 12.5, "bleu_signature": "nrefs:2|...", "length_ratio": 1.5},
        "stress": {"cases": 40, "final_time_accuracy": 0.25},
    }
    assert score_rows(metrics) == [
        ("pooled_rouge1", 0.5),
        ("best_ref_meteor", 0.25),
        ("sacrebleu_div_100", 0.125),
        ("length_ratio", 1.5),
        ("best_ref_bertscore_f1", 0.7),
        ("stress_final_time_accuracy", 0.25),
    ]


def test_length_rows_pair_prediction_words_with_mean_reference_words():
    rows = [
        {"id": "d1", "prediction": "a b c", "references": ["a b", "a b c d e"]},
        # Words as the length metric counts them: runs between whitespace, punctuation attached.
        {"id": "d2", "prediction": " Tom  meets\nAnn. ", "references": ["Tom, Ann and Bob meet.", "They meet.", "x"]},
        {"id": "d3", "prediction": "", "references": ["one two three"]},
    ]
    assert length_rows(rows) == [("d1", 3.5, 3), ("d2", 2.67, 3), ("d3", 3.0, 0)]


# Ids and metric names with a comma or a quote must stay one field each.
PLOT_METRICS = {
    "pooled_reference": {"rouge1": 0.5},
    "all_references": {"bleu": 12.5, "length_ratio": 1.25},
    "stress": {"cases": 4, 'odd, "quoted" rate': 0.75},
}
PLOT_SCORED = {"test": [{"id": 'test_1,"x"', "prediction": "a b", "references": ["a b c", "a"]}]}


def test_plot_texts_are_csv_files_that_read_back_field_for_field(tmp_path):
    texts = plot_texts(
        tmp_path, {"base": PLOT_METRICS, "peft": PLOT_METRICS}, {"base": PLOT_SCORED, "peft": PLOT_SCORED}
    )
    assert sorted(texts) == [
        tmp_path / chart / f"{model}.csv" for chart in ("lengths", "scores") for model in ("base", "peft")
    ]
    scores, lengths = texts[tmp_path / "scores/peft.csv"], texts[tmp_path / "lengths/peft.csv"]
    assert scores == (
        "metric,value\n"
        "pooled_rouge1,0.5\n"
        "sacrebleu_div_100,0.125\n"
        "length_ratio,1.25\n"
        '"stress_odd, ""quoted"" rate",0.75\n'
    )
    assert lengths == 'dialogue,reference_words,prediction_words\n"test_1,""x""",2.0,2\n'
    assert list(csv.DictReader(io.StringIO(scores)))[-1] == {"metric": 'stress_odd, "quoted" rate', "value": "0.75"}
    assert list(csv.DictReader(io.StringIO(lengths))) == [
        {"dialogue": 'test_1,"x"', "reference_words": "2.0", "prediction_words": "2"}
    ]


@pytest.fixture(scope="module")
def shown(demo_repo) -> dict:
    repo, _ = demo_repo
    return json.loads(run([DVC, "plots", "show", "--json"], repo))["data"]


def values(shown: dict, title: str) -> list[dict]:
    (plot,) = shown[title]
    return plot["content"]["data"]["values"]


def read_scored(repo: Path, model: str) -> list[dict]:
    return [json.loads(line) for line in (repo / f"data/scored/{model}/test.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_only_the_defined_charts_no_default_renderings(shown):
    assert set(shown) == {LOSS, "Learning rate", "Gradient norm", SCORES, LENGTHS}


@pytest.mark.slow
def test_loss_chart_has_train_and_validation_series(shown):
    points = values(shown, LOSS)
    steps = {
        name: [int(p["step"]) for p in points if p["filename"] == name] for name in {p["filename"] for p in points}
    }
    assert steps == {"train/loss.tsv": list(range(1, 401)), "eval/loss.tsv": list(range(50, 401, 50))}


@pytest.mark.slow
def test_base_and_peft_scores_are_two_series_with_the_metrics_file_values(shown, demo_repo):
    repo, _ = demo_repo
    points = values(shown, SCORES)
    assert {p["filename"] for p in points} == {"base.csv", "peft.csv"}
    for model in ("base", "peft"):
        metrics = json.loads((repo / f"metrics/{model}.json").read_text())
        by_metric = {p["metric"]: float(p["value"]) for p in points if p["filename"] == f"{model}.csv"}
        assert by_metric["pooled_rouge1"] == metrics["pooled_reference"]["rouge1"]
        assert by_metric["sacrebleu_div_100"] == round(metrics["all_references"]["bleu"] / 100, 4)
        assert by_metric["best_ref_bertscore_f1"] == metrics["best_reference"]["bertscore"]["f1"]
        assert by_metric["stress_red_herring_rate"] == metrics["stress"]["red_herring_rate"]
    spec = shown[SCORES][0]["content"]
    assert spec["encoding"]["color"]["field"] == spec["encoding"]["yOffset"]["field"] == "series"


@pytest.mark.slow
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
