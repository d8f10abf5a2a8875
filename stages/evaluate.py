"""evaluate: score both models' predictions the same way and say whether the fine-tune helped.

    python -m stages.evaluate --predictions-dir DIR --scored-dir DIR --plots-dir DIR --metrics-dir DIR
        (dvc.yaml stage `evaluate` gives the paths)
    python -m stages.evaluate --summary metrics    (print the headline table from the metrics files; `make demo`)

Reads <predictions-dir>/{base,peft}/; writes to the metrics directory base.json and peft.json (ROUGE,
BLEU, METEOR, BERTScore, lengths, empty and cut-off outputs, the stress benchmark; each protocol with
its definition; leave_one_out: the same scored against the human ceiling's reference subsets), human.json
(the same metrics for one human reference against the others: the ceiling) and compare.json (PEFT
minus base with 95% paired bootstrap intervals over dialogues), the per-example scores to
<scored-dir>/{base,peft}/ and the plot data to <plots-dir>. Scoring only: no model is loaded except
BERTScore's.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from phisum.cli import UserErrorCommand
from phisum.errors import UserError
from phisum.evaluation import compare, score_human, score_variant, summary_table
from phisum.files import INPUT_DIR, OUTPUT_DIR, atomic_outputs, json_text, read_jsonl, write_jsonl
from phisum.params import load_params
from phisum.plots import plot_texts
from phisum.vocabulary import SCORED_SETS, VARIANTS

PARAMS = ("seed", "evaluate")


def print_summary(context: click.Context, _: click.Parameter, metrics_dir: Path | None) -> None:
    """--summary: the table from an earlier run's metrics files, then exit (no other option needed)."""
    if metrics_dir is None or context.resilient_parsing:
        return
    names = (*VARIANTS, "human", "compare")
    try:
        loaded = {name: json.loads((metrics_dir / f"{name}.json").read_text()) for name in names}
    except FileNotFoundError as error:
        raise UserError(f"{error.filename} is missing: run `dvc repro` first") from None
    click.echo(summary_table(loaded, loaded["compare"]))
    context.exit()


@click.command(cls=UserErrorCommand)
@click.option(
    "--summary",
    type=INPUT_DIR,
    is_eager=True,
    expose_value=False,
    callback=print_summary,
    help="Print base, PEFT, human ceiling and stress scores from this metrics directory, and exit.",
)
@click.option("--predictions-dir", type=INPUT_DIR, required=True, help="Both models' predictions: base/, peft/.")
@click.option("--scored-dir", type=OUTPUT_DIR, required=True, help="Per-example scores: base/, peft/.")
@click.option("--plots-dir", type=OUTPUT_DIR, required=True, help="The plot data of dvc.yaml's plots.")
@click.option("--metrics-dir", type=OUTPUT_DIR, required=True, help="base.json, peft.json, human.json, compare.json.")
def main(predictions_dir: Path, scored_dir: Path, plots_dir: Path, metrics_dir: Path) -> None:
    params = load_params()
    metrics, scored, per_dialogue = {}, {}, {}
    for variant in VARIANTS:
        folder = predictions_dir / variant
        predictions = {name: read_jsonl(folder / f"{name}.jsonl") for name in SCORED_SETS}
        counts = f"{len(predictions['test'])} dialogues, {len(predictions['stress'])} stress cases"
        click.echo(f"evaluate {variant}: {counts}")
        metrics[variant], scored[variant], per_dialogue[variant] = score_variant(params, predictions)
    human = score_human(params, predictions["test"])  # both models' test rows hold the same references
    comparison = compare(params, per_dialogue, scored)
    # All outputs or none (a full disk keeps every previous one): scores, metrics and plots describe one run.
    with atomic_outputs(scored_dir) as outputs:
        for variant in VARIANTS:
            for name, rows in scored[variant].items():
                write_jsonl(outputs.dirs[scored_dir] / variant / f"{name}.jsonl", rows)
        outputs.texts |= {metrics_dir / f"{variant}.json": json_text(metrics[variant]) for variant in VARIANTS}
        outputs.texts |= {
            metrics_dir / "human.json": json_text(human),
            metrics_dir / "compare.json": json_text(comparison),
        }
        outputs.texts |= plot_texts(plots_dir, metrics, scored)
    if "rouge" in params.evaluate.metrics:
        for protocol in ("pooled_reference", "best_reference"):
            rouge1, base, peft = comparison[protocol]["rouge1"], metrics["base"], metrics["peft"]
            click.echo(
                f"  ROUGE-1 ({protocol}) {base[protocol]['rouge1']} -> {peft[protocol]['rouge1']} "
                f"(delta {rouge1['delta']}, 95% CI [{rouge1['ci_low']}, {rouge1['ci_high']}]; "
                f"leave-one-out {peft['leave_one_out'].get(protocol, {}).get('rouge1', '-')} against the human "
                f"ceiling {human.get(protocol, {}).get('rouge1', '-')})"
            )


if __name__ == "__main__":
    main()
