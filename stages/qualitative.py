"""qualitative: base and PEFT summaries side by side, and the stress-test failures, as one markdown report.

    python -m stages.qualitative --test-path FILE --scored-dir DIR --predictions-dir DIR --report-path FILE
        (dvc.yaml stage `qualitative` gives the paths)

Reads the prepared test rows, the scored predictions of both models (<scored-dir>/{base,peft}/) and your
own dialogues' predictions (<predictions-dir>/{base,peft}/extra.jsonl); writes the markdown report.
"""

from __future__ import annotations

from pathlib import Path

import click

from phisum.cli import UserErrorCommand
from phisum.files import INPUT_DIR, INPUT_FILE, OUTPUT_FILE, read_jsonl, write_text
from phisum.params import load_params
from phisum.qualitative import render_report
from phisum.vocabulary import SCORED_SETS, VARIANTS

PARAMS = ("seed", "qualitative")


@click.command(cls=UserErrorCommand)
@click.option("--test-path", type=INPUT_FILE, required=True, help="Prepared test rows (.jsonl): the dialogues.")
@click.option("--scored-dir", type=INPUT_DIR, required=True, help="Both models' scored predictions: base/, peft/.")
@click.option("--predictions-dir", type=INPUT_DIR, required=True, help="Both models' predictions (your dialogues).")
@click.option("--report-path", type=OUTPUT_FILE, required=True, help="The markdown report.")
def main(test_path: Path, scored_dir: Path, predictions_dir: Path, report_path: Path) -> None:
    params = load_params()
    scored = {v: {s: read_jsonl(scored_dir / v / f"{s}.jsonl") for s in SCORED_SETS} for v in VARIANTS}
    extra = {v: read_jsonl(predictions_dir / v / "extra.jsonl") for v in VARIANTS}
    report = render_report(read_jsonl(test_path), scored, extra, params)
    write_text(report_path, report)
    click.echo(f"qualitative: wrote {report_path}")


if __name__ == "__main__":
    main()
