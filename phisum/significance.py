"""Is a difference between two systems more than noise: paired bootstrap over the dialogues both scored.

Both systems are resampled with the same dialogues (paired), so variation between dialogues cancels. A mean
metric resamples per-dialogue scores; a corpus metric (phisum.metrics.CORPUS_METRICS: sacreBLEU, the length
ratio) is recomputed from the summed statistics of each resampled dialogue set (Koehn 2004).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from phisum.metrics import BERTSCORE_PARTS, CORPUS_METRICS, POOLED_ROUGE_TYPES, ROUGE_TYPES, Scored, statistic_matrix

# What metrics/compare.json compares: per protocol, {reported name: per-dialogue score or corpus metric}.
COMPARISONS = {
    "best_reference": {
        **{name: name for name in ROUGE_TYPES},
        "meteor": "meteor",
        **{f"bertscore_{part}": f"bertscore_{part}" for part in BERTSCORE_PARTS},
    },
    "pooled_reference": {name: f"pooled_{name}" for name in POOLED_ROUGE_TYPES},
    "all_references": {
        "bleu": "bleu",
        "length_ratio": "length_ratio",
        "word_length_ratio": "word_length_ratio",
        "prediction_words": "prediction_words",
    },
}


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


def paired_bootstrap(base_scores: list[float], peft_scores: list[float], resamples: int, seed: int) -> dict:
    """Mean per-dialogue difference peft - base, with a 95% percentile interval over resampled dialogue sets."""
    base, peft = np.asarray(base_scores, dtype=float), np.asarray(peft_scores, dtype=float)
    if base.shape != peft.shape or base.ndim != 1 or not len(base):
        raise ValueError(f"need two equally long, non-empty score lists, got {base.shape} and {peft.shape}")
    difference = peft - base
    counts = _resample_counts(len(difference), resamples, seed)
    return _interval(difference.mean(), counts @ difference / len(difference), resamples)


def compare_systems(base: Scored, peft: Scored, metrics: Sequence[str], resamples: int, seed: int) -> dict:
    """{metric: {delta, ci_low, ci_high, resamples}} for peft - base, scored on the same dialogues.

    metrics: per-dialogue score names, or corpus metrics of CORPUS_METRICS ("bleu", "length_ratio"),
    recomputed from the summed statistics of each resampled dialogue set, not a mean of per-dialogue values.
    Every metric uses the same resampled sets (same seed).
    """
    if len(base.scores) != len(peft.scores):
        raise ValueError(f"base has {len(base.scores)} dialogues, peft {len(peft.scores)}")
    results = {}
    for metric in metrics:
        if not (base.computed(metric) and peft.computed(metric)):
            raise ValueError(f"per-dialogue scores lack {metric!r}: was it disabled when scoring?")
        if metric in CORPUS_METRICS:
            keys, from_statistics = CORPUS_METRICS[metric]
            base_stats, peft_stats = statistic_matrix(base.statistics, keys), statistic_matrix(peft.statistics, keys)
            counts = _resample_counts(len(base_stats), resamples, seed)
            observed = from_statistics(peft_stats.sum(axis=0)) - from_statistics(base_stats.sum(axis=0))
            resampled = np.array(
                [
                    from_statistics(p) - from_statistics(b)
                    for p, b in zip(counts @ peft_stats, counts @ base_stats, strict=True)
                ]
            )
            results[metric] = _interval(observed, resampled, resamples)
        else:
            base_scores = [scores[metric] for scores in base.scores]
            peft_scores = [scores[metric] for scores in peft.scores]
            results[metric] = paired_bootstrap(base_scores, peft_scores, resamples, seed)
    return results
