"""Load DialogSum-shaped splits (hub or local directory), check them, and make prompt/completion rows."""

from __future__ import annotations

import csv
import io
import json
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


def decode_utf8(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise DataError(
            f"{path} line {line}: bytes that are not UTF-8 (at byte {error.start}); re-save the file as UTF-8"
        ) from None


def parse_csv(text: str, where: str) -> list[dict]:
    """Rows of a CSV, refusing broken quoting and rows whose field count differs from the header."""
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    rows = []
    try:
        for row in reader:
            if None in row or None in row.values():  # DictReader's markers for extra / missing fields
                extra, missing = len(row.get(None) or []), sum(v is None for k, v in row.items() if k is not None)
                raise DataError(
                    f"{where} line {reader.line_num}: {len(reader.fieldnames) + extra - missing} columns where the "
                    f"header has {len(reader.fieldnames)}; quote fields that contain commas, quotes or newlines"
                )
            rows.append(row)
    except csv.Error as error:
        raise DataError(
            f"{where} line {reader.line_num + 1}: broken CSV quoting ({error}); quote fields that contain commas, "
            'quotes or newlines, and double quotes inside them ("")'
        ) from None
    return rows


def parse_jsonl(text: str, where: str) -> list[dict]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{where} line {number}: not valid JSON ({error.msg}); one object per line") from None
        if not isinstance(row, dict):
            raise DataError(f"{where} line {number}: expected a JSON object per line")
        rows.append(row)
    return rows


def read_local_split(data_dir: Path, split: str) -> tuple[list[dict], str]:
    path = find_split_file(data_dir, split)
    text = decode_utf8(path)
    rows = parse_csv(text, str(path)) if path.suffix == ".csv" else parse_jsonl(text, str(path))
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


def normalize_dialogue(dialogue: str) -> str:
    """What counts as the same dialogue for leakage checks: equal up to whitespace and case."""
    return " ".join(str(dialogue).split()).lower()


def drop_reason(row: dict, seen_ids: set[str], held_out: set[str]) -> str | None:
    """Why a row cannot be used, or None. held_out: normalized test dialogues (checked for train)."""
    for column in ("dialogue", "summary"):
        value = row.get(column)
        if value is None or not str(value).strip():
            return f"empty_{column}"
    if str(row["id"]) in seen_ids:
        return "duplicate_id"
    if normalize_dialogue(row["dialogue"]) in held_out:
        return "dialogue_in_test_split"
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
    rows: list[dict],
    where: str,
    template: str,
    tokenizer,
    max_length: int,
    reserve: int | None,
    on_bad_rows: str = "error",
    held_out: set[str] = frozenset(),
) -> tuple[list[dict], SplitStats]:
    """Make prompt/completion rows.

    reserve: tokens kept free after the prompt: the summary's own length (+1 for EOS) when None
    (training splits), or a fixed generation budget (test).
    on_bad_rows: "error" stops at the first unusable row (naming it); "drop" skips and counts it.
    held_out: normalized test dialogues; a training row with one of them is leakage into the scores.
    """
    check_columns(rows, where)
    stats = SplitStats(rows_in=len(rows))
    prepared = []
    seen_ids: set[str] = set()
    for row in rows:
        reason = drop_reason(row, seen_ids, held_out)
        seen_ids.add(str(row["id"]))
        if reason and on_bad_rows == "error":
            raise DataError(
                f"{where}: row id {row['id']!r}: {reason.replace('_', ' ')}; fix the data, or set "
                "data.on_bad_rows: drop to skip and count such rows"
            )
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
