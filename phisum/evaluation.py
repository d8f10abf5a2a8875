"""Scoring both models' predictions the same way: the metrics files, the human ceiling, PEFT minus base with
paired bootstrap intervals, and the headline table (the evaluate stage's work)."""

from __future__ import annotations

import numpy as np

from phisum.metrics import (
    ALL_REFERENCES_DEFINITION,
    HUMAN_DEFINITION,
    HUMAN_PER_ROW_UNITY,
    LEAVE_ONE_OUT_DEFINITION,
    BertScoreSettings,
    Scored,
    leave_one_out_groups,
    score_groups,
)
from phisum.params import Params
from phisum.significance import COMPARISONS, check_paired, compare_systems, paired_bootstrap
from phisum.stress import PAIRED_SCORES, aggregate_scores, score_summary
from phisum.vocabulary import SUMMARY, VARIANTS, label, score_at


def score_test(params: Params, groups: list[dict]) -> Scored:
    """score_groups with the evaluate params."""
    evaluate = params.evaluate
    bertscore = BertScoreSettings(evaluate.bertscore_model, evaluate.bertscore_layers, evaluate.bertscore_rescale)
    return score_groups(groups, evaluate.metrics, bertscore)


def score_leave_one_out(params: Params, test: list[dict], human: bool) -> dict:
    """The test set scored against each dialogue's references but one, each left out in turn (metrics.json blocks).

    human: each left-out human summary is scored (the ceiling); otherwise the model's, against the same subsets.
    """
    held_out = leave_one_out_groups(test, human=human)
    if not held_out:
        return {"note": "no test dialogue has two or more references: nothing to score leave-one-out"}
    summary = score_test(params, held_out).summary
    most = max(len(group["references"]) for group in test)
    if not human:
        summary.pop("scoring")  # the same choices as the model file's own
        summary.pop("empty_predictions")  # the model file's own count, per dialogue
    held_out_summaries = summary.pop("dialogues")
    return {
        "definition": HUMAN_DEFINITION if human else LEAVE_ONE_OUT_DEFINITION,
        **summary,
        "held_out_summaries": held_out_summaries,
        "note": (
            f"Leave-one-out over the {len({g['id'] for g in held_out})} test dialogues with two or more references: "
            f"each {'human' if human else 'model'} summary scored against the dialogue's other references "
            f"({most - 1} of {most} at most); the all-reference scores of the models use all {most}. With one "
            "reference fewer, multi-reference scores (best_reference, pooled_reference, all_references) are lower."
        ),
    }


def score_variant(params: Params, predictions: dict[str, list[dict]]) -> tuple[dict, dict, Scored]:
    """Return (metrics, {"test": scored rows, "stress": scored rows}, the test set's Scored) for one model."""
    test = predictions["test"]
    scored = score_test(params, test)
    summary = {"definition": ALL_REFERENCES_DEFINITION, **scored.summary}
    summary["leave_one_out"] = score_leave_one_out(params, test, human=False)
    stress = [{**case, **score_summary(case["prediction"], case)} for case in predictions["stress"]]
    summary["stress"] = aggregate_scores(stress)
    # Cut off: generation hit max_new_tokens without EOS or a stop string.
    summary["cut_off_predictions"] = sum(not row["stopped"] for row in test)
    summary["hit_max_new_tokens"] = round(float(np.mean([not row["stopped"] for row in test])), 4)
    summary["mean_new_tokens"] = round(float(np.mean([row["new_tokens"] for row in test])), 2)
    scored_test = [
        {**row, "scores": {k: round(v, 4) for k, v in scores.items()}}
        for row, scores in zip(test, scored.scores, strict=True)
    ]
    return summary, {"test": scored_test, "stress": stress}, scored


def score_human(params: Params, test: list[dict]) -> dict:
    """The human ceiling: each reference of a multi-reference dialogue scored against the others."""
    summary = score_leave_one_out(params, test, human=True)
    for key in HUMAN_PER_ROW_UNITY:  # 1.0 by construction (HUMAN_DEFINITION says so)
        summary.get("per_row", {}).pop(key, None)
    return summary


def compare(params: Params, per_dialogue: dict[str, Scored], scored: dict[str, dict]) -> dict:
    """PEFT minus base per protocol and metric, and on the stress benchmark, with 95% paired bootstrap intervals."""
    base, peft = (per_dialogue[v] for v in VARIANTS)
    seed, resamples = params.seed, params.evaluate.bootstrap_resamples
    result = {"resamples": resamples, "stress": {}}
    ids = tuple([row["id"] for row in scored[v]["test"]] for v in VARIANTS)
    for protocol, names in COMPARISONS.items():
        # A metric switched off in evaluate.metrics has no per-dialogue scores: nothing to compare.
        available = [name for name, key in names.items() if base.computed(key)]
        deltas = compare_systems(base, peft, [names[n] for n in available], resamples=resamples, seed=seed, ids=ids)
        result[protocol] = {name: deltas[names[name]] for name in available}
    check_paired(*([row["id"] for row in scored[v]["stress"]] for v in VARIANTS), what="base and peft stress cases")
    for key in PAIRED_SCORES:
        values = [[float(row[key]) for row in scored[v]["stress"]] for v in VARIANTS]
        result["stress"][key] = paired_bootstrap(*values, resamples=resamples, seed=seed)
    return result


def summary_table(metrics: dict[str, dict], comparison: dict) -> str:
    """Markdown: base, PEFT and the human ceiling side by side, then the stress test with its interval."""

    def number(block: dict, key: str) -> str:
        value = score_at(block, key)
        return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)

    lines = [
        "| | " + " | ".join(label(key) for key in SUMMARY) + " |",
        "|---" * (len(SUMMARY) + 1) + "|",
    ]
    # All references, then the models on equal terms with the human ceiling (the same n-1 reference subsets).
    rows = [(name, metrics[name]) for name in VARIANTS]
    rows += [(f"{name} leave-one-out", metrics[name].get("leave_one_out", {})) for name in VARIANTS]
    for name, block in [*rows, ("human", metrics["human"])]:
        lines.append(f"| {name} | " + " | ".join(number(block, key) for key in SUMMARY) + " |")
    lines.append(
        "\nbase, peft: against all of each dialogue's references. leave-one-out and human: against the "
        "dialogue's other references, each left out in turn (equal terms: compare these rows)."
    )
    lines.append(f"human: {metrics['human'].get('note', '')}")
    for key in PAIRED_SCORES:
        delta = comparison["stress"][key]
        lines.append(
            f"stress {key}: PEFT - base {delta['delta']} (95% CI [{delta['ci_low']}, {delta['ci_high']}], "
            f"{metrics['peft']['stress']['cases']} cases)"
        )
    return "\n".join(lines)
