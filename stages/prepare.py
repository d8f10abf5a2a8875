"""prepare: dataset -> checked, prompt-ready splits and data statistics.

    python -m stages.prepare --out-dir DIR --stats-path FILE    (dvc.yaml stage `prepare` gives the paths)

Writes <out-dir>/{train,validation,test}.jsonl and the statistics file (metrics/data.json).
"""

from __future__ import annotations

from pathlib import Path

import click

from phisum.data import SPLITS, DataError, held_out_dialogues, load_splits, prepare_split, unused_columns
from phisum.files import OUTPUT_DIR, OUTPUT_FILE, json_text, jsonl_text, write_outputs
from phisum.params import Params, ParamsError, load_params

PARAMS = ("model", "data", "prompt", "generate.max_new_tokens")


def prepare(params: Params, splits: dict[str, tuple[list[dict], str]], tokenizer) -> tuple[dict, dict]:
    """Return ({split: rows}, statistics)."""
    prepared, stats = {}, {}
    held_out = held_out_dialogues(splits)
    for split in SPLITS:
        rows, where = splits[split]
        # Test prompts keep room for generation; training prompts keep room for their own summary.
        reserve = params.generate.max_new_tokens if split == "test" else None
        prepared[split], split_stats = prepare_split(
            rows,
            where,
            params.prompt.template,
            tokenizer,
            params.prompt.max_length,
            reserve,
            on_bad_rows=params.data.on_bad_rows,
            held_out=held_out if split == "train" else set(),  # validation only feeds the val loss
        )
        stats[split] = split_stats.to_dict()
    test_ids = {row["prompt"] for row in prepared["test"]}
    stats["test"]["dialogues"] = len(test_ids)
    return prepared, stats


def describe_unused_columns(splits: dict[str, tuple[list[dict], str]]) -> list[str]:
    """One line per set of ignored columns (an export's extras), naming the files that have it."""
    files_by_columns: dict[tuple[str, ...], list[str]] = {}
    for rows, where in splits.values():
        if unused := unused_columns(rows):
            files_by_columns.setdefault(tuple(unused), []).append(where)
    return [f"  ignoring column(s) {', '.join(c)} in {', '.join(w)}" for c, w in files_by_columns.items()]


@click.command()
@click.option("--out-dir", type=OUTPUT_DIR, required=True, help="The prepared train/validation/test .jsonl files.")
@click.option("--stats-path", type=OUTPUT_FILE, required=True, help="Rows, drops, truncations, token lengths (JSON).")
def main(out_dir: Path, stats_path: Path) -> None:
    try:
        params = load_params()  # a params typo stops here, before torch and transformers load (seconds)
        from phisum.modeling import check_max_length, check_model_source, load_tokenizer

        check_model_source(params.model)
        check_max_length(params.model, params.prompt.max_length)
        click.echo(f"prepare: {params.data.source} (revision {params.data.revision}) with {params.model.name}")
        splits = load_splits(params.data.source, params.data.revision)
        for line in describe_unused_columns(splits):
            click.echo(line)
        prepared, stats = prepare(params, splits, load_tokenizer(params.model))
    except (ParamsError, DataError) as error:
        raise click.ClickException(str(error)) from None
    stats["source"] = {"name": params.data.source, "revision": params.data.revision}
    # All four files or none: the splits and their statistics must always describe the same data.
    outputs = {out_dir / f"{split}.jsonl": jsonl_text(rows) for split, rows in prepared.items()}
    write_outputs({**outputs, stats_path: json_text(stats)})
    for split, rows in prepared.items():
        click.echo(f"  {split}: {len(rows)} rows, dropped {stats[split]['dropped']}")


if __name__ == "__main__":
    main()
