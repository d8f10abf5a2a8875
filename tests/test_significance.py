"""Paired bootstrap intervals on inputs small enough to work the interval out by hand."""

import numpy as np
import pytest

from phisum.metrics import Scored, score_groups
from phisum.significance import PairingError, bootstrap_p_value, check_paired, compare_systems, holm, paired_bootstrap
from tests.helpers import GROUPS


def interval(delta: float, low: float, high: float, resamples: int) -> dict:
    return {"delta": delta, "ci_low": low, "ci_high": high, "resamples": resamples}


def test_identical_systems_differ_by_zero_with_interval_zero():
    scores = [0.2, 0.7, 0.4, 0.1, 0.9]
    assert paired_bootstrap(scores, scores, resamples=1000, seed=0) == interval(0.0, 0.0, 0.0, 1000)


def test_a_constant_shift_is_the_delta_and_the_whole_interval():
    base = [0.1, 0.5, 0.3, 0.9]
    assert paired_bootstrap(base, [score + 0.25 for score in base], resamples=1000, seed=0) == interval(
        0.25, 0.25, 0.25, 1000
    )


def test_two_dialogues_give_the_interval_of_their_three_possible_means():
    # Differences 0 and 1: a resample of two dialogues has mean 0 (p 1/4), 0.5 (p 1/2) or 1 (p 1/4), so the
    # 2.5th and 97.5th percentiles of 1000 resamples are 0 and 1.
    assert paired_bootstrap([0.0, 0.0], [0.0, 1.0], resamples=1000, seed=0) == interval(0.5, 0.0, 1.0, 1000)


def test_a_clearly_better_system_has_an_interval_above_zero():
    rng = np.random.default_rng(3)
    base = rng.uniform(0.2, 0.6, size=50)
    peft = base + 0.2 + rng.normal(0, 0.1, size=50)
    result = paired_bootstrap(base.tolist(), peft.tolist(), resamples=2000, seed=7)
    assert 0 < result["ci_low"] < result["delta"] < result["ci_high"]
    assert paired_bootstrap(peft.tolist(), base.tolist(), resamples=2000, seed=7)["ci_high"] < 0


def test_score_lists_of_different_lengths_are_an_error():
    with pytest.raises(ValueError, match="equally long"):
        paired_bootstrap([0.1, 0.2], [0.1], resamples=10, seed=0)


def lengths(*counts: tuple[int, int]) -> Scored:
    """A system scored on dialogues with these (prediction, shortest reference) 13a token counts."""
    statistics = [{"tokens_13a_prediction": p, "tokens_13a_shortest_reference": r} for p, r in counts]
    return Scored(summary={}, scores=[{} for _ in counts], statistics=statistics)


def test_a_corpus_metric_is_recomputed_from_summed_statistics_on_each_resample():
    # base: 1/4 and 9/6, corpus ratio (1 + 9) / (4 + 6) = 1 (a mean of ratios would be 0.875); peft: 1 on both.
    # A resample holds dialogue 1 twice (base 2/8 = 0.25), once (1) or never (18/12 = 1.5): PEFT - base is
    # 0.75 (p 1/4), 0 (p 1/2) or -0.5 (p 1/4).
    result = compare_systems(lengths((1, 4), (9, 6)), lengths((4, 4), (6, 6)), ["length_ratio"], 1000, seed=0)
    assert result == {"length_ratio": interval(0.0, -0.5, 0.75, 1000)}


def test_compare_systems_on_scored_groups_for_a_mean_and_a_corpus_metric():
    # Each prediction is one of its references (ROUGE-1 1, BLEU 100) against a disjoint one (0 and 0).
    perfect = [{**group, "prediction": group["references"][0]} for group in GROUPS]
    disjoint = [{**group, "prediction": "xyzzy plugh"} for group in GROUPS]
    base, peft = score_groups(perfect, ["rouge", "bleu"]), score_groups(disjoint, ["rouge", "bleu"])
    assert compare_systems(base, peft, ["rouge1", "bleu"], resamples=100, seed=0) == {
        "rouge1": interval(-1.0, -1.0, -1.0, 100),
        "bleu": interval(-100.0, -100.0, -100.0, 100),
    }
    same = compare_systems(base, base, ["rouge1", "bleu"], resamples=100, seed=0)
    assert same == {"rouge1": interval(0.0, 0.0, 0.0, 100), "bleu": interval(0.0, 0.0, 0.0, 100)}


def test_holm_multiplies_the_kth_smallest_p_by_m_minus_k_plus_1_and_keeps_the_order():
    # m = 4. Sorted: a 0.01 x 4 = 0.04; c 0.03 x 3 = 0.09; b 0.04 x 2 = 0.08, raised to 0.09 (monotone);
    # d 0.2 x 1 = 0.2. Only a stays below 0.05 although a, b and c are each below it unadjusted.
    adjusted = holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.2})
    assert list(adjusted) == ["a", "b", "c", "d"]
    assert adjusted == pytest.approx({"a": 0.04, "b": 0.09, "c": 0.09, "d": 0.2})
    assert holm({"x": 0.6, "y": 0.5}) == {"x": 1.0, "y": 1.0}  # 0.5 x 2 = 1.0; 0.6 x 1 raised to 1.0


def test_bootstrap_p_value_of_a_constant_shift_and_of_no_difference():
    base = [0.1, 0.5, 0.3, 0.9]
    # Every one of 999 resampled deltas is 0.25 > 0: none at or below 0, so p = 2 * (0 + 1) / (999 + 1).
    shifted = paired_bootstrap(base, [score + 0.25 for score in base], resamples=999, seed=0, p_value=True)
    assert shifted["p_value"] == 0.002
    # All deltas 0: every resample is on both sides of 0, so p = 2 * 1000 / 1000 capped at 1.
    assert paired_bootstrap(base, base, resamples=999, seed=0, p_value=True)["p_value"] == 1.0
    assert bootstrap_p_value(np.array([-1.0, 1.0, 2.0, 3.0])) == 2 * 2 / 5  # one at or below 0: 2 * (1 + 1) / 5


def test_compare_systems_pairs_by_id_and_names_the_first_differing_id():
    base, peft = lengths((1, 4), (9, 6), (2, 2)), lengths((4, 4), (6, 6), (2, 2))
    same = compare_systems(base, peft, ["length_ratio"], 10, seed=0, ids=(["a", "b", "c"], ["a", "b", "c"]))
    assert same["length_ratio"]["delta"] == 0.0
    with pytest.raises(PairingError, match="row 2 is 'b' in the first, 'c' in the second"):
        compare_systems(base, peft, ["length_ratio"], 10, seed=0, ids=(["a", "b", "c"], ["a", "c", "b"]))
    with pytest.raises(PairingError, match="'c' is only in the first"):
        check_paired(["a", "b", "c"], ["a", "b"])
    with pytest.raises(PairingError, match="'z' is only in the second"):
        check_paired(["a"], ["a", "z"])
