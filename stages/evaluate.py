"""evaluate: score both models' predictions the same way and say whether the fine-tune helped.

    python stages/evaluate.py    (dvc.yaml stage `evaluate`)

Reads data/predictions/{base,peft}/; writes metrics/base.json and metrics/peft.json (ROUGE, BLEU,
METEOR, BERTScore, lengths, the stress benchmark; two protocols), metrics/compare.json (PEFT minus
base with 95% paired bootstrap intervals over dialogues), per-example scores in data/scored/, and the
plot data in metrics/plots/. Scoring only: no model is loaded except BERTScore's.
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from phisum.files import read_jsonl, replace_dir, write_json, write_jsonl
from phisum.params import Params, ParamsError, load_params
from phisum.plots import write_plot_files
from phisum.scoring import COMPARABLE_METRICS, ResourceError, compare_systems, paired_bootstrap, score_groups
from phisum.stress import aggregate_scores, score_summary

PARAMS = ("seed", "evaluate")
VARIANTS = ("base", "peft")
PREDICTIONS_DIR = Path("data/predictions")
SCORED_DIR = Path("data/scored")
PLOTS_DIR = Path("metrics/plots")
STRESS_KEYS = ("final_time_correct", "red_herring", "action_item_recall")


def score_variant(params: Params, predictions: dict[str, list[dict]]) -> tuple[dict, dict, list[dict]]:
    """Return (metrics, {"test": scored rows, "stress": scored rows}, per-dialogue scores) for one model."""
    test = predictions["test"]
    summary, per_dialogue = score_groups(
        test,
        metrics=params.evaluate.metrics,
        bertscore_model=params.evaluate.bertscore_model,
        bertscore_layers=params.evaluate.bertscore_layers,
    )
    stress = [{**case, **score_summary(case["prediction"], case)} for case in predictions["stress"]]
    summary["stress"] = aggregate_scores(stress)
    summary["hit_max_new_tokens"] = round(float(np.mean([not row["stopped"] for row in test])), 4)
    summary["mean_new_tokens"] = round(float(np.mean([row["new_tokens"] for row in test])), 2)
    # Per-example files keep the scores a reader wants; the BLEU n-gram counts only feed the bootstrap.
    scored_test = [
        {**row, "scores": {k: round(v, 4) for k, v in scores.items() if not k.startswith("bleu_")}}
        for row, scores in zip(test, per_dialogue, strict=True)
    ]
    return summary, {"test": scored_test, "stress": stress}, per_dialogue


def compare(params: Params, per_dialogue: dict[str, list[dict]], scored: dict[str, dict]) -> dict:
    """PEFT minus base, per metric and on the stress benchmark, each with a 95% paired bootstrap interval."""
    base, peft = (per_dialogue[v] for v in VARIANTS)
    # Corpus BLEU has no per-dialogue value: compare_systems rebuilds it from the n-gram counts.
    available = [m for m in COMPARABLE_METRICS if m in base[0] or (m == "bleu" and "bleu_match_1" in base[0])]
    seed, resamples = params.seed, params.evaluate.bootstrap_resamples
    result = {"multi_ref": compare_systems(base, peft, available, resamples=resamples, seed=seed), "stress": {}}
    for key in STRESS_KEYS:
        values = [[float(row[key]) for row in scored[v]["stress"]] for v in VARIANTS]
        result["stress"][key] = paired_bootstrap(*values, resamples=resamples, seed=seed)
    result["resamples"] = resamples
    return result


@click.command()
def main() -> None:
    try:
        params = load_params()
    except ParamsError as error:
        raise click.ClickException(str(error)) from None
    metrics, scored, per_dialogue = {}, {}, {}
    for variant in VARIANTS:
        folder = PREDICTIONS_DIR / variant
        predictions = {name: read_jsonl(folder / f"{name}.jsonl") for name in ("test", "stress")}
        click.echo(
            f"evaluate {variant}: {len(predictions['test'])} dialogues, {len(predictions['stress'])} stress cases"
        )
        try:
            metrics[variant], scored[variant], per_dialogue[variant] = score_variant(params, predictions)
        except ResourceError as error:
            raise click.ClickException(str(error)) from None
    comparison = compare(params, per_dialogue, scored)
    for variant in VARIANTS:
        tmp_dir = SCORED_DIR / f".{variant}.tmp"
        for name, rows in scored[variant].items():
            write_jsonl(tmp_dir / f"{name}.jsonl", rows)
        replace_dir(tmp_dir, SCORED_DIR / variant)
        write_json(Path(f"metrics/{variant}.json"), metrics[variant])
    write_json(Path("metrics/compare.json"), comparison)
    write_plot_files(PLOTS_DIR, metrics, scored)
    rouge1 = comparison["multi_ref"]["rouge1"]
    click.echo(
        f"  ROUGE-1 {metrics['base']['multi_ref']['rouge1']} -> {metrics['peft']['multi_ref']['rouge1']} "
        f"(delta {rouge1['delta']}, 95% CI [{rouge1['ci_low']}, {rouge1['ci_high']}])"
    )


if __name__ == "__main__":
    main()
