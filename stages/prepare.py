"""prepare: dataset -> checked, prompt-ready splits and data statistics.

    python -m stages.prepare --out-dir DIR --stats-path FILE    (dvc.yaml stage `prepare` gives the paths)

Writes <out-dir>/{train,validation,test}.jsonl and the statistics file (metrics/data.json).
"""

from __future__ import annotations

from pathlib import Path

import click

from phisum.cli import UserErrorCommand
from phisum.data import describe_unused_columns, load_splits, prepare_splits
from phisum.files import OUTPUT_DIR, OUTPUT_FILE, json_text, jsonl_text, write_outputs
from phisum.params import load_params

PARAMS = ("model", "data", "prompt", "generate.max_new_tokens")


@click.command(cls=UserErrorCommand)
@click.option("--out-dir", type=OUTPUT_DIR, required=True, help="The prepared train/validation/test .jsonl files.")
@click.option("--stats-path", type=OUTPUT_FILE, required=True, help="Rows, drops, truncations, token lengths (JSON).")
def main(out_dir: Path, stats_path: Path) -> None:
    params = load_params()  # a params typo stops here, before torch and transformers load (seconds)
    from phisum.modeling import check_max_length, check_model_source, load_tokenizer

    check_model_source(params.model)
    check_max_length(params.model, params.prompt.max_length)
    click.echo(f"prepare: {params.data.source} (revision {params.data.revision}) with {params.model.name}")
    splits = load_splits(params.data.source, params.data.revision)
    for line in describe_unused_columns(splits):
        click.echo(line)
    prepared, stats = prepare_splits(params, splits, load_tokenizer(params.model))
    stats["source"] = {"name": params.data.source, "revision": params.data.revision}
    # All four files or none: the splits and their statistics must always describe the same data.
    outputs = {out_dir / f"{split}.jsonl": jsonl_text(rows) for split, rows in prepared.items()}
    write_outputs({**outputs, stats_path: json_text(stats)})
    for split, rows in prepared.items():
        click.echo(f"  {split}: {len(rows)} rows, dropped {stats[split]['dropped']}")


if __name__ == "__main__":
    main()
