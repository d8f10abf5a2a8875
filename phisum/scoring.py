"""ROUGE scoring, per dialogue against all its references (headline) and per row (the seed's protocol)."""

from __future__ import annotations

import re

import numpy as np
from rouge_score import rouge_scorer

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def split_sentences(text: str) -> str:
    """rougeLsum reads sentences from newlines."""
    return "\n".join(s for s in _SENTENCE_END.split(text.strip()) if s)


def _scorer() -> rouge_scorer.RougeScorer:
    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)


def score_rouge(prediction: str, reference: str, scorer: rouge_scorer.RougeScorer | None = None) -> dict:
    """F-measures of one prediction against one reference."""
    scores = (scorer or _scorer()).score(split_sentences(reference), split_sentences(prediction))
    return {name: scores[name].fmeasure for name in ROUGE_TYPES}


def score_multi_reference(prediction: str, references: list[str], scorer=None) -> dict:
    """Each metric's best score over the references (DialogSum's multi-reference practice)."""
    scorer = scorer or _scorer()
    per_reference = [score_rouge(prediction, ref, scorer) for ref in references]
    return {name: max(s[name] for s in per_reference) for name in ROUGE_TYPES}


def score_groups(groups: list[dict]) -> tuple[dict, list[dict]]:
    """Score groups ({"prediction", "references"}); return (summary metrics, per-group scores).

    Headline (`multi_ref`): mean over distinct dialogues of the best score against any reference.
    `per_row`: every reference is its own example, which is how the seed's table was computed.
    """
    scorer = _scorer()
    multi, per_row = [], []
    for group in groups:
        multi.append(score_multi_reference(group["prediction"], group["references"], scorer))
        per_row.extend(score_rouge(group["prediction"], ref, scorer) for ref in group["references"])

    def mean(rows: list[dict]) -> dict:
        return {name: round(float(np.mean([r[name] for r in rows])), 4) for name in ROUGE_TYPES}

    summary = {"multi_ref": mean(multi), "per_row": mean(per_row), "dialogues": len(multi), "rows": len(per_row)}
    return summary, multi
