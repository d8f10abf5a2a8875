"""One name per score, wherever a person reads it: the review, the plots and the evaluate summary table.

Keys are the score's path in metrics/<model>.json (protocol.metric, or stress.<rate>); the per-dialogue score
names of data/scored and metrics/compare.json map onto the same keys (phisum.significance.COMPARISONS).
The choices of evaluate.primary_metric are in phisum/params.py (PRIMARY_METRICS), labelled here too.
"""

from __future__ import annotations

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
