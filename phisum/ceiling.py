"""The human ceiling of a dataset's test split, with the code the evaluate stage scores it with.

    python -m phisum.ceiling SOURCE [--metrics rouge,bleu,meteor,length]

SOURCE is what `data.source` accepts: a directory with train/validation/test `.csv`/`.jsonl` files (the test
split is the one scored), or a hub dataset id. Each reference of every test dialogue with two or more is scored
against the dialogue's other references (phisum.metrics.human_groups, as metrics/human.json), and the numbers of
each protocol are printed as JSON. Dialogues are the distinct dialogue texts, in first-seen order.
"""

from __future__ import annotations

import json

import click

from phisum.cli import UserErrorCommand
from phisum.data import group_by_dialogue, load_splits
from phisum.errors import UserError
from phisum.metrics import DISABLED, HUMAN_PER_ROW_UNITY, human_groups, score_groups
from phisum.params import METRICS

PROTOCOL_KEYS = ("per_row", "best_reference", "pooled_reference", "all_references")


def human_ceiling(test_rows: list[dict], metrics: list[str]) -> dict:
    """{protocol: {metric: value}} of the human ceiling, with the dialogue and held-out summary counts."""
    groups = group_by_dialogue([{**row, "prompt": row["dialogue"]} for row in test_rows])
    held_out = human_groups(groups)
    if not held_out:
        raise UserError("no test dialogue has two or more references: there is no human ceiling")
    summary = score_groups(held_out, metrics).summary
    scores = {
        protocol: {key: value for key, value in summary[protocol].items() if key != "definition" and value != DISABLED}
        for protocol in PROTOCOL_KEYS
    }
    for key in HUMAN_PER_ROW_UNITY:  # 1.0 by construction: every ordered pair of references, both ways
        scores["per_row"].pop(key, None)
    return {
        "test_dialogues": len(groups),
        "dialogues_with_two_or_more_references": len({group["id"] for group in held_out}),
        "held_out_summaries": len(held_out),
        **{protocol: block for protocol, block in scores.items() if block},
    }


@click.command(cls=UserErrorCommand)
@click.argument("source")
@click.option(
    "--metrics",
    default="rouge",
    show_default=True,
    help=f"Comma-separated, of {', '.join(name for name in METRICS if name != 'bertscore')}.",
)
def main(source: str, metrics: str) -> None:
    names = [name.strip() for name in metrics.split(",") if name.strip()]
    unknown = sorted(set(names) - set(METRICS) | ({"bertscore"} & set(names)))
    if unknown:
        choices = ", ".join(name for name in METRICS if name != "bertscore")
        raise UserError(f"--metrics: {', '.join(unknown)} is not one of {choices}")
    test_rows, _ = load_splits(source, None)["test"]
    click.echo(json.dumps(human_ceiling(test_rows, names), indent=2))


if __name__ == "__main__":
    main()
