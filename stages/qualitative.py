"""qualitative: base and PEFT summaries side by side with the references, as markdown.

    python stages/qualitative.py    (dvc.yaml stage `qualitative`)

Reads the predictions written by evaluate; writes reports/qualitative.md.
"""

from __future__ import annotations

from pathlib import Path

import click

from phisum.files import read_jsonl, write_text
from phisum.params import ParamsError, load_params

PARAMS = ("qualitative",)
TEST_PATH = Path("data/prepared/test.jsonl")
PREDICTIONS_DIR = Path("data/predictions")
REPORT_PATH = Path("reports/qualitative.md")


def quote(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in text.splitlines()) or "> (empty)"


def render_report(test_rows: list[dict], base: list[dict], peft: list[dict], num_examples: int) -> str:
    """The first num_examples test dialogues with references, base output and PEFT output."""
    dialogues = {row["id"]: row["dialogue"] for row in test_rows}
    lines = ["# Base vs PEFT, side by side", ""]
    for b, p in list(zip(base, peft, strict=True))[:num_examples]:
        lines += [f"## {b['id']}", "", "**Dialogue**", "", quote(dialogues[b["id"]]), ""]
        lines += ["**Reference(s)**", ""] + [f"- {ref}" for ref in b["references"]] + [""]
        lines += [
            "| model | summary | ROUGE-1 |",
            "|---|---|---|",
            f"| base | {b['prediction'] or '(empty)'} | {b['scores']['rouge1']:.3f} |",
            f"| PEFT | {p['prediction'] or '(empty)'} | {p['scores']['rouge1']:.3f} |",
            "",
        ]
    return "\n".join(line.replace("\n", " ") if line.startswith("|") else line for line in lines)


@click.command()
def main() -> None:
    try:
        params = load_params()
    except ParamsError as error:
        raise click.ClickException(str(error)) from None
    base = read_jsonl(PREDICTIONS_DIR / "base.jsonl")
    peft = read_jsonl(PREDICTIONS_DIR / "peft.jsonl")
    report = render_report(read_jsonl(TEST_PATH), base, peft, params.qualitative.num_examples)
    write_text(REPORT_PATH, report)
    click.echo(f"qualitative: wrote {REPORT_PATH} ({min(len(base), params.qualitative.num_examples)} dialogues)")


if __name__ == "__main__":
    main()
