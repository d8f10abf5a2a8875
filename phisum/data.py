"""Load DialogSum-shaped splits (hub or local directory), check them, and make prompt/completion rows."""

from __future__ import annotations

import codecs
import csv
import io
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from phisum.errors import UserError
from phisum.hub import hub_lookup
from phisum.params import Params
from phisum.prompt import build_prompt

SPLITS = ("train", "validation", "test")
REQUIRED_COLUMNS = ("id", "dialogue", "summary")
KNOWN_COLUMNS = (*REQUIRED_COLUMNS, "topic")


class DataError(UserError, ValueError):
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
    """The file's text with a UTF-8 byte-order mark dropped and CRLF line ends as LF (Excel's "CSV UTF-8")."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot be read ({error.strerror})") from None
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise DataError(f"{path}: UTF-16 text; re-save the file as UTF-8")
    data = data.removeprefix(codecs.BOM_UTF8)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise DataError(
            f"{path} line {line}: bytes that are not UTF-8 (at byte {error.start}); re-save the file as UTF-8"
        ) from None
    # CRLF inside quoted cells too: a dialogue must not change with the program that saved it.
    return text.replace("\r\n", "\n")


def header_names(header: list[str]) -> list[str]:
    """Column names as a spreadsheet means them: surrounding spaces dropped (`summary ` is summary), and a cell
    left empty (`id,dialogue,summary,topic,,`: columns that were once formatted) named by its position."""
    return [cell.strip() or f"(unnamed column {number})" for number, cell in enumerate(header, start=1)]


def is_blank(row: dict) -> bool:
    """A row with no data in any cell (`,,,,`: a spreadsheet's formatted empty row): skipped and counted."""
    return bool(row) and all(isinstance(value, str) and not value.strip() for value in row.values())


def parse_csv(text: str, where: str) -> list[dict]:
    """Rows of a CSV, refusing broken quoting and rows whose field count differs from the header."""
    # The csv module refuses fields over 131,072 characters by default; a long meeting transcript is a
    # valid field, and prepare cuts it to prompt.max_length tokens (and counts it) like any long dialogue.
    csv.field_size_limit(sys.maxsize)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows, done = [], 0  # done: the last line of the last record read (a broken one starts after it)
    try:
        names = header_names(next(reader, []))
        done = reader.line_num
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise DataError(f"{where}: column {twice[0]} appears twice in the header; rename or remove one")
        for cells in reader:
            line, done = done + 1, reader.line_num
            if not cells:  # an empty line is no row
                continue
            if not "".join(cells).strip():  # a row of empty cells, whatever their number
                rows.append(dict.fromkeys(names, ""))
                continue
            if len(cells) != len(names):
                raise DataError(
                    f"{where} line {line}: {len(cells)} columns where the header has {len(names)}; "
                    "quote fields that contain commas, quotes or newlines"
                )
            rows.append(dict(zip(names, cells, strict=True)))
    except csv.Error as error:
        raise DataError(
            f"{where} line {done + 1}: broken CSV quoting ({error}); quote fields that contain commas, "
            'quotes or newlines, and double quotes inside them ("")'
        ) from None
    return rows


def parse_jsonl(text: str, where: str) -> list[dict]:
    return [row for _, row in numbered_jsonl(text, where)]


def numbered_jsonl(text: str, where: str) -> list[tuple[int, dict]]:
    """(line number in the file, row) per non-blank line, so a later check names the file's line."""
    rows = []
    # JSON lines end at "\n" only: str.splitlines() also splits at U+2028, U+2029, U+0085 (and \x1c-\x1e),
    # which JSON written with ensure_ascii=False (many exporters' default) carries unescaped inside strings.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{where} line {number}: not valid JSON ({error.msg}); one object per line") from None
        if not isinstance(row, dict):
            raise DataError(f"{where} line {number}: expected a JSON object per line")
        try:  # "\ud800" is valid JSON but no text: it could be neither tokenized nor written back as UTF-8
            json.dumps(row, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise DataError(f"{where} line {number}: a \\u escape that is not a character (lone surrogate)") from None
        rows.append((number, row))
    return rows


def ids_as_text(rows: list[dict]) -> list[dict]:
    """Ids are strings everywhere (prepared rows, qualitative.ids): an int id (pandas' to_json of an int column)
    is read as its string."""
    for row in rows:
        if isinstance(row.get("id"), int) and not isinstance(row["id"], bool):
            row["id"] = str(row["id"])
    return rows


def read_local_split(data_dir: Path, split: str) -> tuple[list[dict], str]:
    path = find_split_file(data_dir, split)
    text = decode_utf8(path)
    rows = parse_csv(text, str(path)) if path.suffix == ".csv" else parse_jsonl(text, str(path))
    return ids_as_text(rows), str(path)


# A local data directory that a queued experiment cannot see looks exactly like a name that exists nowhere.
WHERE_DATA_LIVES = (
    "set a hub dataset id (e.g. neil-code/dialogsum-test) or a directory with train/validation/test .csv or "
    ".jsonl; a queued experiment (dvc exp run --queue) sees only git- or DVC-tracked files"
)


def load_hub_dataset(source: str, revision: str | None):
    """datasets.load_dataset, with a name or revision that resolves to nothing as one HubNameError naming the param."""
    # Imported here: a local run never touches the hub client.
    from datasets import load_dataset
    from huggingface_hub.utils import validate_repo_id

    with hub_lookup("data.source", source, revision, WHERE_DATA_LIVES, "files that datasets can load"):
        validate_repo_id(source)  # offline, load_dataset would call any string "unreachable"
        return load_dataset(source, revision=revision)


def load_splits(source: str, revision: str | None) -> dict[str, tuple[list[dict], str]]:
    """Return {split: (rows, where)} from a local directory or a hub dataset id."""
    if not source.strip():
        raise DataError(f"data.source: empty; {WHERE_DATA_LIVES}")
    path = Path(source).expanduser()
    if path.is_dir():
        return {split: read_local_split(path, split) for split in SPLITS}
    if path.exists():
        raise DataError(f"data.source: {source} is a file; point it at the directory that holds the split files")
    dataset = load_hub_dataset(source, revision)
    missing = [split for split in SPLITS if split not in dataset]
    if missing:
        raise DataError(f"{source}: hub dataset has no split(s) {', '.join(missing)}")
    return {split: (ids_as_text(dataset[split].to_list()), f"{source}:{split}") for split in SPLITS}


def column_names(rows: list[dict]) -> list[str]:
    """Every column of a split (JSONL rows may each have other keys), in the order they first appear."""
    return list(dict.fromkeys(name for row in rows for name in row))


def unused_columns(rows: list[dict]) -> list[str]:
    """Columns prepare ignores (an export's extra fields), for saying so once."""
    return sorted(set(column_names(rows)) - set(KNOWN_COLUMNS))


def check_columns(rows: list[dict], where: str) -> None:
    if not rows:
        raise DataError(f"{where}: split is empty")
    present = column_names(rows)
    missing = [column for column in REQUIRED_COLUMNS if column not in present]
    if missing:
        found = ", ".join(map(repr, present[:20])) + (f" and {len(present) - 20} more" if len(present) > 20 else "")
        raise DataError(
            f"{where}: missing column(s) {', '.join(missing)}; expected columns id, dialogue, summary, topic, "
            f"found {found}"
        )


def normalize_dialogue(dialogue: str) -> str:
    """What counts as the same dialogue for leakage checks: equal up to whitespace and case."""
    return " ".join(str(dialogue).split()).lower()


def is_text(value: object) -> bool:
    """A usable cell: a string, or a number (JSONL ids given as numbers); not a list, object or boolean."""
    return isinstance(value, str | int | float) and not isinstance(value, bool)


def drop_reason(row: dict, seen_ids: set[str], held_out: set[str]) -> str | None:
    """Why a row cannot be used, or None. held_out: normalized test dialogues (checked for train)."""
    if is_blank(row):
        return "blank_row"
    for column in ("id", "dialogue", "summary"):
        value = row.get(column)
        if value is None or not str(value).strip():
            return f"empty_{column}"
        if not is_text(value):
            return f"{column}_not_text"
    for column in KNOWN_COLUMNS:  # a disk block zeroed by a crash reads as NUL bytes: no text has them
        if "\x00" in str(row.get(column) or ""):
            return f"nul_bytes_in_{column}"
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


def fit_dialogue(dialogue: str, template: str, tokenizer, budget: int, suffix: str = "") -> tuple[str, bool]:
    """Cut the dialogue (never the template) so the prompt, followed by suffix, is at most `budget` tokens.

    Counted on the whole text, as it is tokenized for training (prompt + summary + EOS: TRL cuts what is longer
    than max_length at the end, the EOS first) and for generation: the template and the dialogue counted apart
    miss tokens that form only across their boundary. With the committed template, a tokenizer with a "\n\n"
    token (Phi-2, Llama-3, Qwen2.5) counts ".\n\n\nOutput" one token shorter than ".\n\n#...\nOutput".
    """

    def length(text: str) -> int:
        return len(tokenizer(build_prompt(template, text) + suffix)["input_ids"])

    if length(dialogue) <= budget:
        return dialogue, False
    overhead = length("")
    if overhead >= budget:
        template_only = len(tokenizer(build_prompt(template, ""))["input_ids"])
        available = budget - (overhead - template_only)
        raise DataError(f"prompt.template alone takes {template_only} tokens, more than the {available} available")
    ids = tokenizer(dialogue, add_special_tokens=False)["input_ids"]
    room = budget - overhead
    while room > 0:
        cut = tokenizer.decode(ids[:room])
        over = length(cut) - budget
        if over <= 0:
            return cut, True
        room -= over
    return "", True


def fit_prompts(rows: list[dict], template: str, tokenizer, budget: int) -> tuple[list[dict], int]:
    """Rows with the prompt generation gives them, each dialogue cut (as fit_dialogue cuts it) so the prompt is
    at most `budget` tokens, and how many were cut: stress cases and your own dialogues fit the model's context
    as the test prompts prepare writes do."""
    fitted, truncated = [], 0
    for row in rows:
        dialogue, cut = fit_dialogue(row["dialogue"], template, tokenizer, budget)
        fitted.append({**row, "dialogue": dialogue, "prompt": build_prompt(template, dialogue)})
        truncated += cut
    return fitted, truncated


def usable_rows(
    rows: list[dict], where: str, on_bad_rows: str, held_out: set[str] = frozenset()
) -> tuple[list[dict], dict[str, int]]:
    """The rows with everything prepare needs, and a count per drop reason.

    on_bad_rows: "error" stops at the first unusable row (naming it); "drop" skips and counts it.
    A blank row (every cell empty) is no data: skipped and counted as blank_row either way.
    held_out: normalized test dialogues; a training row with one of them is leakage into the scores.
    """
    check_columns(rows, where)
    usable, dropped, seen_ids = [], {}, set()
    for number, row in enumerate(rows, start=1):
        reason = drop_reason(row, seen_ids, held_out)
        seen_ids.add(str(row.get("id")))
        if reason and reason != "blank_row" and on_bad_rows == "error":
            named_by_id = reason not in ("empty_id", "id_not_text", "nul_bytes_in_id")
            label = f"row id {row['id']!r}" if named_by_id else f"row {number}"
            problem, fix = f"{reason.replace('_', ' ')}", "fix the data"
            if reason.startswith("nul_bytes_in_"):
                problem = f"NUL bytes in {reason.removeprefix('nul_bytes_in_')} (a disk block zeroed by a crash?)"
                fix = "restore the file from a copy or delete them"
            raise DataError(
                f"{where}: {label}: {problem}; {fix}, or set data.on_bad_rows: drop to skip and count such rows"
            )
        if reason:
            dropped[reason] = dropped.get(reason, 0) + 1
        else:
            usable.append(row)
    return usable, dropped


def held_out_dialogues(splits: dict[str, tuple[list[dict], str]]) -> set[str]:
    """The test split's normalized dialogues: a training row with one of them would leak into the scores."""
    return {normalize_dialogue(row.get("dialogue") or "") for row in splits["test"][0]}


def check_splits(splits: dict[str, tuple[list[dict], str]], on_bad_rows: str) -> None:
    """Raise the DataError prepare would raise for an unusable row, without a tokenizer (the CPU profile
    checks a user's data this way before it spends minutes building the tiny model)."""
    held_out = held_out_dialogues(splits)
    for split, (rows, where) in splits.items():
        usable_rows(rows, where, on_bad_rows, held_out if split == "train" else set())


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

    reserve: tokens kept free after the prompt: None (training splits) for the summary and its EOS, counted
    with the prompt as one text, or a fixed generation budget (test).
    on_bad_rows: "error" stops at the first unusable row (naming it); "drop" skips and counts it.
    held_out: normalized test dialogues; a training row with one of them is leakage into the scores.
    """
    usable, dropped = usable_rows(rows, where, on_bad_rows, held_out)
    stats = SplitStats(rows_in=len(rows), dropped=dropped)
    prepared = []
    for row in usable:
        dialogue, summary = str(row["dialogue"]).strip(), str(row["summary"]).strip()
        summary_len = len(tokenizer(summary, add_special_tokens=False)["input_ids"])
        # A training row needs the template, the summary and its EOS with at least one dialogue token.
        without_dialogue = build_prompt(template, "") + summary + tokenizer.eos_token
        if reserve is None and len(tokenizer(without_dialogue)["input_ids"]) >= max_length:
            if on_bad_rows == "error":
                template_len = len(tokenizer(build_prompt(template, ""))["input_ids"])
                raise DataError(
                    f"{where}: row id {str(row['id'])!r}: summary too long: {summary_len} tokens (+1 for EOS), with "
                    f"the template's {template_len}, leave no room for the dialogue within prompt.max_length "
                    f"{max_length}; shorten the summary, raise prompt.max_length, or set data.on_bad_rows: drop to "
                    "skip and count such rows"
                )
            stats.dropped["summary_too_long"] = stats.dropped.get("summary_too_long", 0) + 1
            continue
        if reserve is None:  # the whole training text, as TRL tokenizes it: prompt + summary + EOS
            dialogue, truncated = fit_dialogue(dialogue, template, tokenizer, max_length, summary + tokenizer.eos_token)
        else:
            dialogue, truncated = fit_dialogue(dialogue, template, tokenizer, max_length - reserve)
        stats.truncated += truncated
        prompt = build_prompt(template, dialogue)
        stats.prompt_tokens.append(len(tokenizer(prompt)["input_ids"]))
        stats.summary_tokens.append(summary_len)
        prepared.append(
            {
                "id": str(row["id"]),
                "topic": str(row["topic"]) if is_text(row.get("topic")) else "",
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


def prepare_splits(params: Params, splits: dict[str, tuple[list[dict], str]], tokenizer) -> tuple[dict, dict]:
    """The prepare stage's work: ({split: prompt/completion rows}, statistics) from load_splits' splits."""
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


def read_extra_dialogues(path: str) -> list[dict]:
    """Your own dialogues for the report: a .jsonl with `dialogue` (and optionally `id`) per line."""
    if not path:
        return []
    try:
        rows = numbered_jsonl(decode_utf8(Path(path)), path)
    except DataError as error:
        raise DataError(f"generate.extra_dialogues: {error}") from None
    extra = []
    for index, (line, row) in enumerate(rows):
        dialogue, row_id = row.get("dialogue"), row.get("id")
        where = f"generate.extra_dialogues: {path} line {line}"
        if not is_text(dialogue) or not str(dialogue).strip():
            raise DataError(f'{where}: no `dialogue` text; give every line a non-empty "dialogue"')
        if row_id is not None and not is_text(row_id):
            raise DataError(f"{where}: `id` is not text; give a string or leave it out")
        extra.append({"id": str(row_id) if row_id is not None else f"extra_{index}", "dialogue": str(dialogue)})
    return extra
