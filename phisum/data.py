"""Load DialogSum-shaped splits (hub or local directory), check them, and make prompt/completion rows."""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from phisum.prompt import build_prompt

SPLITS = ("train", "validation", "test")
REQUIRED_COLUMNS = ("id", "dialogue", "summary")


class DataError(ValueError):
    """A dataset problem; the message names the file or split, the row id and the fix."""


def find_split_file(data_dir: Path, split: str) -> Path:
    """`<split>.csv|.jsonl`, or one `*_<split>.csv|.jsonl` (the full DialogSum CSVs are dialogsum_train.csv...)."""
    for pattern in (f"{split}.csv", f"{split}.jsonl", f"*_{split}.csv", f"*_{split}.jsonl"):
        found = sorted(data_dir.glob(pattern))
        if len(found) > 1:
            raise DataError(f"{data_dir}: several {split} files ({', '.join(p.name for p in found)}); keep one")
        if found:
            return found[0]
    raise DataError(f"{data_dir}: no {split}.csv or {split}.jsonl (expected train, validation and test files)")


def read_local_split(data_dir: Path, split: str) -> tuple[list[dict], str]:
    path = find_split_file(data_dir, split)
    with path.open(encoding="utf-8", newline="") as handle:
        if path.suffix == ".csv":
            rows = list(csv.DictReader(handle))
        else:
            rows = [json.loads(line) for line in handle if line.strip()]
    return rows, str(path)


def load_splits(source: str, revision: str | None) -> dict[str, tuple[list[dict], str]]:
    """Return {split: (rows, where)} from a local directory or a hub dataset id."""
    if Path(source).is_dir():
        return {split: read_local_split(Path(source), split) for split in SPLITS}
    from datasets import load_dataset  # imported here: a local run never touches the hub client

    dataset = load_dataset(source, revision=revision)
    missing = [split for split in SPLITS if split not in dataset]
    if missing:
        raise DataError(f"{source}: hub dataset has no split(s) {', '.join(missing)}")
    return {split: (dataset[split].to_list(), f"{source}:{split}") for split in SPLITS}


def check_columns(rows: list[dict], where: str) -> None:
    if not rows:
        raise DataError(f"{where}: split is empty")
    missing = [column for column in REQUIRED_COLUMNS if column not in rows[0]]
    if missing:
        raise DataError(
            f"{where}: missing column(s) {', '.join(missing)}; expected columns id, dialogue, summary, topic"
        )
    counts = Counter(row["id"] for row in rows)
    duplicated = sorted(row_id for row_id, n in counts.items() if n > 1)
    if duplicated:
        raise DataError(
            f"{where}: duplicate id {duplicated[0]!r} ({len(duplicated)} duplicated ids); ids must be unique"
        )


def drop_reason(row: dict) -> str | None:
    """Why a row cannot be used, or None."""
    for column in ("dialogue", "summary"):
        value = row.get(column)
        if value is None or not str(value).strip():
            return f"empty_{column}"
    return None


@dataclass
class SplitStats:
    rows_in: int = 0
    rows_out: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    truncated: int = 0
    prompt_tokens: list[int] = field(default_factory=list)
    summary_tokens: list[int] = field(default_factory=list)

    def to_dict(self) -> dict:
        def percentiles(values: list[int]) -> dict:
            if not values:
                return {}
            p50, p90, p99 = np.percentile(values, [50, 90, 99])
            return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "max": int(max(values))}

        return {
            "rows_in": self.rows_in,
            "rows": self.rows_out,
            "dropped": dict(sorted(self.dropped.items())),
            "truncated_dialogues": self.truncated,
            "prompt_tokens": percentiles(self.prompt_tokens),
            "summary_tokens": percentiles(self.summary_tokens),
        }


def fit_dialogue(dialogue: str, template: str, tokenizer, budget: int) -> tuple[str, bool]:
    """Cut the dialogue (never the template) so the prompt is at most `budget` tokens."""
    overhead = len(tokenizer(build_prompt(template, ""))["input_ids"])
    ids = tokenizer(dialogue, add_special_tokens=False)["input_ids"]
    room = budget - overhead
    if room <= 0:
        raise DataError(f"prompt.template alone takes {overhead} tokens, more than the {budget} available")
    if len(ids) <= room:
        return dialogue, False
    return tokenizer.decode(ids[:room]), True


def prepare_split(
    rows: list[dict], where: str, template: str, tokenizer, max_length: int, reserve: int | None
) -> tuple[list[dict], SplitStats]:
    """Make prompt/completion rows.

    reserve: tokens kept free after the prompt: the summary's own length (+1 for EOS) when None
    (training splits), or a fixed generation budget (test).
    """
    check_columns(rows, where)
    stats = SplitStats(rows_in=len(rows))
    prepared = []
    for row in rows:
        reason = drop_reason(row)
        if reason:
            stats.dropped[reason] = stats.dropped.get(reason, 0) + 1
            continue
        dialogue, summary = str(row["dialogue"]).strip(), str(row["summary"]).strip()
        summary_len = len(tokenizer(summary, add_special_tokens=False)["input_ids"])
        room_after_prompt = summary_len + 1 if reserve is None else reserve
        if room_after_prompt >= max_length:
            stats.dropped["summary_too_long"] = stats.dropped.get("summary_too_long", 0) + 1
            continue
        dialogue, truncated = fit_dialogue(dialogue, template, tokenizer, max_length - room_after_prompt)
        stats.truncated += truncated
        prompt = build_prompt(template, dialogue)
        stats.prompt_tokens.append(len(tokenizer(prompt)["input_ids"]))
        stats.summary_tokens.append(summary_len)
        prepared.append(
            {
                "id": str(row["id"]),
                "topic": str(row.get("topic") or ""),
                "dialogue": dialogue,
                "summary": summary,
                "prompt": prompt,
                "completion": summary,
            }
        )
    stats.rows_out = len(prepared)
    if not prepared:
        raise DataError(f"{where}: no usable rows left (dropped: {stats.dropped})")
    return prepared, stats


def group_by_dialogue(rows: list[dict]) -> list[dict]:
    """One entry per distinct prompt, with all its reference summaries and row ids, in first-seen order.

    DialogSum's test split repeats each dialogue with up to three human summaries (test_K_1..3);
    generating once per dialogue avoids triple work and lets scoring use all references.
    """
    groups: dict[str, dict] = {}
    for row in rows:
        group = groups.setdefault(
            row["prompt"], {"id": row["id"], "prompt": row["prompt"], "ids": [], "references": []}
        )
        group["ids"].append(row["id"])
        group["references"].append(row["summary"])
    return list(groups.values())
