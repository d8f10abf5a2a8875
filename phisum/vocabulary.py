"""The run's vocabulary, in one place: the model variants, the sets each is run on, the headline scores and
their labels, and how a text goes into a markdown table cell. The stages, the plots and the review read it here.

Score labels: one name per score, wherever a person reads it (the review, the plots, the evaluate summary).
Keys are the score's path in metrics/<model>.json (protocol.metric, or stress.<rate>); the per-dialogue score
names of data/scored and metrics/compare.json map onto the same keys (phisum.significance.COMPARISONS).
The choices of evaluate.primary_metric are in phisum/params.py (PRIMARY_METRICS), labelled here too.
"""

from __future__ import annotations

# The two models every run compares: the base model as loaded, and base + the trained LoRA adapter.
# dvc.yaml's `generate` foreach has one item per variant (tests/test_dvc_consistency.py holds it to this).
VARIANTS = ("base", "peft")
VARIANT_NAMES = {"base": "base", "peft": "PEFT"}  # as a reader sees them in reports
# The sets generate writes per variant (<predictions>/<variant>/<set>.jsonl): the test dialogues, the stress
# benchmark (phisum/stress.py) and your own dialogues (generate.extra_dialogues). Evaluate scores the first two.
SETS = ("test", "stress", "extra")
SCORED_SETS = ("test", "stress")

_ROUGE = {"rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L", "rougeLsum": "ROUGE-Lsum"}

LABELS = {
    **{f"pooled_reference.{key}": f"{name} pooled" for key, name in _ROUGE.items() if key != "rougeLsum"},
    **{f"best_reference.{key}": f"{name} best-ref" for key, name in _ROUGE.items()},
    **{f"per_row.{key}": f"{name} per row" for key, name in _ROUGE.items()},
    "best_reference.meteor": "METEOR best-ref",
    "per_row.meteor": "METEOR per row",
    "best_reference.bertscore.f1": "BERTScore F1 best-ref",
    "best_reference.bertscore_f1": "BERTScore F1 best-ref",
    "best_reference.bertscore_precision": "BERTScore precision best-ref",
    "best_reference.bertscore_recall": "BERTScore recall best-ref",
    "all_references.bleu": "sacreBLEU",
    "per_row.bleu": "sacreBLEU per row",
    "all_references.length_ratio": "length ratio (13a tokens)",
    "per_row.length_ratio": "length ratio per row (13a tokens)",
    "all_references.word_length_ratio": "word length ratio",
    "all_references.prediction_words": "summary words",
    "empty_predictions": "empty summaries",
    "cut_off_predictions": "cut-off summaries",
    "stress.final_time_accuracy": "stress: final time",
    "stress.red_herring_rate": "stress: red herring",
    "stress.action_item_recall": "stress: action items",
    # the per-case stress scores (phisum.stress.PAIRED_SCORES) whose means are the rates above
    "stress.final_time_correct": "stress: final time",
    "stress.red_herring": "stress: red herring",
    "train.last_loss": "last train loss",
    "train.last_eval_loss": "last validation loss",
}


# The headline scores: key paths in metrics/<variant>.json, in the order every table and chart shows them.
# The review's headline table shows them all; the plots the scores on a 0-1 scale (PLOTTED: no counts; the
# stress rates are drawn from the metrics file's stress block); the evaluate summary the few that fit a
# terminal row beside the human ceiling (SUMMARY). A key a revision lacks shows as "n/a" or "-".
HEADLINE = (
    "pooled_reference.rouge1",
    "pooled_reference.rouge2",
    "pooled_reference.rougeL",
    "best_reference.rouge1",
    "best_reference.rougeLsum",
    "best_reference.meteor",
    "all_references.bleu",
    "all_references.length_ratio",
    "best_reference.bertscore.f1",
    "empty_predictions",
    "cut_off_predictions",
    "stress.final_time_accuracy",
    "stress.red_herring_rate",
    "stress.action_item_recall",
)
COUNTS = ("empty_predictions", "cut_off_predictions")
PLOTTED = tuple(key for key in HEADLINE if key not in COUNTS and not key.startswith("stress."))
SUMMARY = (
    "pooled_reference.rouge1",
    "pooled_reference.rougeL",
    "best_reference.rouge1",
    "all_references.bleu",
    "all_references.length_ratio",
    "empty_predictions",
    "cut_off_predictions",
    "stress.final_time_accuracy",
)


def label(key: str) -> str:
    """The label of a score key; a key without one (a score a newer revision added) shows as itself."""
    return LABELS.get(key, key)


def score_at(metrics: dict, key: str) -> float | None:
    """The number at a score key's path in a metrics file's dict; None where it has none (a metric switched off,
    a score an older revision lacks)."""
    node = metrics
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, int | float) and not isinstance(node, bool) else None


def cell(text: str) -> str:
    """Text as one markdown table cell: whitespace runs (newlines too) as one space, `|` escaped; "(empty)" for
    nothing but whitespace, as the metrics count an empty summary."""
    flat = " ".join(str(text).split())
    return flat.replace("|", "\\|") if flat else "(empty)"
