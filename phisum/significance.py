"""Is a difference between two systems more than noise: paired bootstrap over the dialogues both scored.

Both systems are resampled with the same dialogues (paired), so variation between dialogues cancels. A mean
metric resamples per-dialogue scores; a corpus metric (phisum.metrics.CORPUS_METRICS: sacreBLEU, the length
ratio) is recomputed from the summed statistics of each resampled dialogue set (Koehn 2004).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from phisum.errors import UserError
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


class PairingError(UserError, ValueError):
    """Two score lists that are not the same dialogues in the same order; the message names the first differing id."""


def check_paired(base_ids: Sequence[str], peft_ids: Sequence[str], what: str = "base and peft") -> None:
    """Raise PairingError unless both systems scored the same ids in the same order (pairs are checked by id)."""
    for position, (base_id, peft_id) in enumerate(zip(base_ids, peft_ids, strict=False)):
        if base_id != peft_id:
            raise PairingError(
                f"{what} are not the same dialogues in the same order: row {position + 1} is {base_id!r} in the "
                f"first, {peft_id!r} in the second; score both on the same test set"
            )
    if len(base_ids) != len(peft_ids):
        longer, extra = ("first", base_ids) if len(base_ids) > len(peft_ids) else ("second", peft_ids)
        raise PairingError(
            f"{what} are not the same dialogues: {extra[min(len(base_ids), len(peft_ids))]!r} is only in the {longer} "
            f"({len(base_ids)} vs {len(peft_ids)} rows); score both on the same test set"
        )


def bootstrap_p_value(resampled: np.ndarray) -> float:
    """Two-sided p-value of "no difference" from the resampled deltas: twice the smaller share of resamples on
    either side of 0 (0 counts on both), with the +1 of Davison & Hinkley so that it is never 0; at most 1."""
    below, above = int(np.sum(resampled <= 0)), int(np.sum(resampled >= 0))
    return min(1.0, 2 * (min(below, above) + 1) / (len(resampled) + 1))


def holm(p_values: dict[str, float]) -> dict[str, float]:
    """Holm's step-down adjustment: the k-th smallest of m p-values times (m - k + 1), made monotone, capped at 1.
    A family of m tests keeps the chance of any false "beyond noise" at 5% when each adjusted p is read at 0.05."""
    ordered = sorted(p_values, key=lambda name: p_values[name])
    adjusted, running = {}, 0.0
    for rank, name in enumerate(ordered):
        running = max(running, min(1.0, (len(ordered) - rank) * p_values[name]))
        adjusted[name] = running
    return {name: adjusted[name] for name in p_values}


def _interval(observed: float, resampled: np.ndarray, resamples: int) -> dict:
    low, high = np.percentile(resampled, [2.5, 97.5])
    return {
        "delta": round(float(observed), 4),
        "ci_low": round(float(low), 4),
        "ci_high": round(float(high), 4),
        "resamples": resamples,
    }


def paired_bootstrap(
    base_scores: list[float], peft_scores: list[float], resamples: int, seed: int, p_value: bool = False
) -> dict:
    """Mean per-dialogue difference peft - base, with a 95% percentile interval over resampled dialogue sets.

    p_value: also "p_value" (bootstrap_p_value of the same resamples), for a Holm adjustment over many scores.
    """
    base, peft = np.asarray(base_scores, dtype=float), np.asarray(peft_scores, dtype=float)
    if base.shape != peft.shape or base.ndim != 1 or not len(base):
        raise ValueError(f"need two equally long, non-empty score lists, got {base.shape} and {peft.shape}")
    difference = peft - base
    counts = _resample_counts(len(difference), resamples, seed)
    resampled = counts @ difference / len(difference)
    result = _interval(difference.mean(), resampled, resamples)
    if p_value:
        result["p_value"] = round(bootstrap_p_value(resampled), 4)
    return result


def compare_systems(
    base: Scored,
    peft: Scored,
    metrics: Sequence[str],
    resamples: int,
    seed: int,
    ids: tuple[Sequence[str], Sequence[str]] | None = None,
) -> dict:
    """{metric: {delta, ci_low, ci_high, resamples}} for peft - base, scored on the same dialogues.

    metrics: per-dialogue score names, or corpus metrics of CORPUS_METRICS ("bleu", "length_ratio"),
    recomputed from the summed statistics of each resampled dialogue set, not a mean of per-dialogue values.
    Every metric uses the same resampled sets (same seed).
    ids: (base ids, peft ids), the dialogue id of each row: the pairs are checked by id (PairingError naming
    the first differing id). Without them only the row counts are checked (both Scored from the same groups).
    """
    if ids is not None:
        check_paired(*ids)
        if len(ids[0]) != len(base.scores) or len(ids[1]) != len(peft.scores):
            raise ValueError(f"{len(ids[0])} and {len(ids[1])} ids for {len(base.scores)} and {len(peft.scores)} rows")
    if len(base.scores) != len(peft.scores):
        raise PairingError(f"base has {len(base.scores)} dialogues, peft {len(peft.scores)}")
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
