"""The plot data phisum.plots writes: rows and CSV text (tests/test_plots_on_demo.py: the charts DVC shows)."""

import csv
import io

from phisum.plots import length_rows, plot_texts, score_rows


def test_score_rows_take_headline_scores_bertscore_f1_and_stress_rates():
    metrics = {
        "pooled_reference": {"definition": "...", "rouge1": 0.5, "rouge2": "disabled"},
        "best_reference": {"meteor": 0.25, "bertscore": {"f1": 0.7, "model": "m"}},
        "all_references": {"bleu": 12.5, "bleu_signature": "nrefs:2|...", "length_ratio": 1.5},
        "stress": {"cases": 40, "final_time_accuracy": 0.25},
    }
    # The labels of the review and the evaluate summary (phisum/vocabulary.py), not raw keys.
    assert score_rows(metrics) == [
        ("ROUGE-1 pooled", 0.5),
        ("METEOR best-ref", 0.25),
        ("sacreBLEU / 100", 0.125),
        ("length ratio (13a tokens)", 1.5),
        ("BERTScore F1 best-ref", 0.7),
        ("stress: final time", 0.25),
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
    "stress": {"cases": 4, 'odd, "quoted" rate': 0.75},  # no label: shown as its key
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
        "ROUGE-1 pooled,0.5\n"
        "sacreBLEU / 100,0.125\n"
        "length ratio (13a tokens),1.25\n"
        '"stress.odd, ""quoted"" rate",0.75\n'
    )
    assert lengths == 'dialogue,reference_words,prediction_words\n"test_1,""x""",2.0,2\n'
    assert list(csv.DictReader(io.StringIO(scores)))[-1] == {"metric": 'stress.odd, "quoted" rate', "value": "0.75"}
    assert list(csv.DictReader(io.StringIO(lengths))) == [
        {"dialogue": 'test_1,"x"', "reference_words": "2.0", "prediction_words": "2"}
    ]


def test_templates_draw_the_loss_on_a_log_axis_and_never_cut_a_legend():
    """Seen in headless Chromium (`dvc plots diff` with --html-template): on a linear axis the first 20 steps
    flattened both revisions' curves into one line, and the bar legend's title read "model (revisio"."""
    import json

    from tests.helpers import ROOT

    loss = json.loads((ROOT / ".dvc/plots/train_and_validation.json").read_text())
    assert loss["encoding"]["y"]["scale"]["type"] == "log"
    points = next(layer for layer in loss["layer"] if layer["mark"]["type"] == "point")
    assert points["mark"]["size"] >= 60 and points["mark"]["stroke"] == "black"  # validation points stand out
    for name in ("train_and_validation", "bars_by_file"):
        legend = json.loads((ROOT / f".dvc/plots/{name}.json").read_text())["encoding"]["color"]["legend"]
        assert legend["titleLimit"] == legend["labelLimit"] == 0, name  # 0: no limit
