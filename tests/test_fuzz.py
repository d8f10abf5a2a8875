"""Property-based fuzzing of everything a user hands the pipeline: split files, extra dialogues, params.yaml.

The one contract: accepted (every kept or dropped row accounted for), or a UserError (DataError, ParamsError)
whose message is one line. Anything else (a KeyError, a UnicodeError, ...) is a bug.
PHISUM_FUZZ_EXAMPLES=2000 runs more examples than CI does.
"""

import contextlib
import copy
import csv
import io
import json
import math
import os
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from phisum.data import KNOWN_COLUMNS, DataError, load_splits, prepare_splits, read_extra_dialogues
from phisum.params import ParamsError, load_params, parse_params, read_yaml
from tests.helpers import ROOT, invoke_stage

EXAMPLES = int(os.environ.get("PHISUM_FUZZ_EXAMPLES", "100"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # nothing written into the repository; a failure prints its example to commit as a test
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)
COMMITTED = read_yaml((ROOT / "params.yaml").read_text())
GOOD_SPLIT = "id,dialogue,summary,topic\nx_1,#Person1#: Hi.,They greet.,greeting\n"
# Mostly UTF-8 (what gets past decoding exercises the rest of the reader), sometimes anything else.
ENCODINGS = ("utf-8",) * 5 + ("utf-8-sig", "utf-16", "latin-1", "cp1252", "ascii")

# Text as exports have it: any Unicode (emoji, CJK, RTL), plus the characters CSV and JSON care about.
cell_text = st.text(
    alphabet=st.one_of(st.sampled_from(',"\n\r\t\\ #:;\ufeff'), st.characters(codec="utf-8")), max_size=40
)
# Column sets: usually the known columns (each may be missing), in any order, plus extras.
column_names = (
    st.tuples(
        st.lists(st.sampled_from(KNOWN_COLUMNS), unique=True, max_size=4).flatmap(st.permutations),
        st.lists(st.text(max_size=8), max_size=3),
    )
    .map(lambda known_extra: [*known_extra[0], *known_extra[1]])
    .filter(bool)
)
json_values = st.one_of(
    cell_text,
    st.integers(),
    st.floats(),
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@st.composite
def csv_files(draw) -> bytes:
    """A CSV with a random column set and order, random quoting, line ends, encoding and truncation."""
    columns = draw(column_names)
    rows = draw(st.lists(st.lists(cell_text, min_size=len(columns), max_size=len(columns)), max_size=6))
    if draw(st.booleans()) and rows:  # a field past the csv module's default 131,072-character limit
        rows[0][0] = "#Person1#: long meeting. " * 6000
    quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC, csv.QUOTE_NONE]))
    buffer = io.StringIO()
    writer = csv.writer(
        buffer, quoting=quoting, escapechar="\\", lineterminator=draw(st.sampled_from(["\n", "\r\n", "\r"]))
    )
    with contextlib.suppress(csv.Error):  # QUOTE_NONE cannot write some fields: write what it can
        writer.writerow(columns)
        writer.writerows(rows)
    return encode_and_cut(draw, buffer.getvalue())


@st.composite
def jsonl_files(draw) -> bytes:
    """JSONL with random keys and value types, some lines that are not objects, random encoding and cuts."""
    row = st.fixed_dictionaries(
        {},
        optional={
            "id": st.one_of(cell_text, st.integers(), json_values),
            "dialogue": st.one_of(cell_text, json_values),
            "summary": st.one_of(cell_text, json_values),
            "topic": json_values,
            "speaker": json_values,
        },
    )
    lines = draw(
        st.lists(
            # Mostly objects; sometimes a JSON value that is not one, or a line that is not JSON at all.
            st.integers(0, 9).flatmap(
                lambda k: row.map(json.dumps) if k < 8 else json_values.map(json.dumps) if k < 9 else st.text()
            ),
            max_size=6,
        )
    )
    return encode_and_cut(draw, "\n".join(lines) + draw(st.sampled_from(["", "\n"])))


def encode_and_cut(draw, text: str) -> bytes:
    data = text.encode(draw(st.sampled_from(ENCODINGS)), errors="replace")
    if draw(st.integers(0, 3)) == 0:  # a file cut short (an interrupted copy or download)
        data = data[: draw(st.integers(0, len(data)))]
    return data


def check_accepted_or_one_line(data_dir: Path, tokenizer, on_bad_rows: str) -> dict | None:
    """prepare's contract on a data directory: its statistics, or None after a one-line DataError."""
    data = {"source": str(data_dir), "revision": None, "on_bad_rows": on_bad_rows}
    params = parse_params({**COMMITTED, "data": data})
    try:
        prepared, stats = prepare_splits(params, load_splits(str(data_dir), None), tokenizer)
    except DataError as error:
        assert "\n" not in str(error) and str(error)
        return None
    for split, split_stats in stats.items():
        if split != "source":
            assert split_stats["rows_in"] == split_stats["rows"] + sum(split_stats["dropped"].values())
            assert len(prepared[split]) == split_stats["rows"]
    return stats


def fuzz_train_file(name: str, content: bytes, tokenizer, on_bad_rows: str) -> dict | None:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        for split in ("validation", "test"):
            (data_dir / f"{split}.csv").write_text(GOOD_SPLIT)
        (data_dir / name).write_bytes(content)
        return check_accepted_or_one_line(data_dir, tokenizer, on_bad_rows)


@FUZZ
@given(content=csv_files(), on_bad_rows=st.sampled_from(["error", "drop"]))
def test_fuzzed_csv_is_accepted_with_every_row_counted_or_one_error_line(tokenizer, content, on_bad_rows):
    fuzz_train_file("train.csv", content, tokenizer, on_bad_rows)


@FUZZ
@given(content=jsonl_files(), on_bad_rows=st.sampled_from(["error", "drop"]))
def test_fuzzed_jsonl_is_accepted_with_every_row_counted_or_one_error_line(tokenizer, content, on_bad_rows):
    fuzz_train_file("train.jsonl", content, tokenizer, on_bad_rows)


@FUZZ
@given(content=st.binary(max_size=300), name=st.sampled_from(["train.csv", "train.jsonl"]))
def test_random_bytes_as_a_split_file_are_accepted_or_one_error_line(tokenizer, content, name):
    fuzz_train_file(name, content, tokenizer, "drop")


def one_line(error: Exception) -> None:
    message = str(error)
    assert message and "\n" not in message, message


@FUZZ
@given(content=st.one_of(jsonl_files(), st.binary(max_size=200)))
def test_fuzzed_extra_dialogues_are_read_or_one_error_line(content):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mine.jsonl"
        path.write_bytes(content)
        try:
            rows = read_extra_dialogues(str(path))
        except DataError as error:
            one_line(error)
            assert str(error).startswith(f"generate.extra_dialogues: {path}")
            return
    assert all(isinstance(r["id"], str) and isinstance(r["dialogue"], str) and r["dialogue"].strip() for r in rows)


def key_paths(node: dict, prefix: tuple = ()) -> list[tuple]:
    """Every group and every leaf of params.yaml, as key paths."""
    paths = []
    for key, value in node.items():
        paths.append((*prefix, key))
        if isinstance(value, dict):
            paths += key_paths(value, (*prefix, key))
    return paths


yaml_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6,
)


@FUZZ
@given(path=st.sampled_from(key_paths(COMMITTED)), value=yaml_values, extra_key=st.one_of(st.none(), yaml_values))
@example(path=("lora", "dropout"), value=math.nan, extra_key=None)
@example(path=("train", "learning_rate"), value=math.inf, extra_key=None)
@example(path=("seed",), value=42, extra_key=1)
def test_any_value_at_any_params_key_is_accepted_or_one_error_line(path, value, extra_key):
    raw = copy.deepcopy(COMMITTED)
    node = raw
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    if extra_key is not None:
        with contextlib.suppress(TypeError):  # an unhashable YAML key cannot be a mapping key at all
            raw[extra_key] = 1
    try:
        params = parse_params(raw)
    except ParamsError as error:
        one_line(error)
        return
    assert params.train.learning_rate > 0 and math.isfinite(params.train.learning_rate)
    assert 0 <= params.lora.dropout < 1


@FUZZ
@given(
    line=st.integers(0, (ROOT / "params.yaml").read_text().count("\n")),
    text=st.one_of(st.text(max_size=30), st.binary(max_size=30).map(lambda b: b.decode("latin-1"))),
    raw_bytes=st.one_of(st.none(), st.binary(max_size=60)),
)
def test_any_params_yaml_text_is_loaded_or_one_error_line(line, text, raw_bytes):
    lines = (ROOT / "params.yaml").read_text().splitlines()
    key, _, _ = lines[line % len(lines)].partition(":")
    lines[line % len(lines)] = f"{key}: {text}"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "params.yaml"
        path.write_bytes(raw_bytes if raw_bytes is not None else "\n".join(lines).encode("utf-8", "surrogatepass"))
        try:
            load_params(path)
        except ParamsError as error:
            one_line(error)


# Through the real CLI (click main, in this process): exit 0 with every row in metrics/data.json, or exit 1
# with exactly one `Error:` line, no traceback and nothing written. Fewer examples: each runs the stage.
CLI_FUZZ = settings(FUZZ, max_examples=max(EXAMPLES // 6, 5))


@contextlib.contextmanager
def stage_dir(tiny_model_dir: Path, path: tuple = (), value: object = None):
    """A working directory with the tiny model, a small dataset, and `value` written at params key `path`."""
    from phisum.synthetic import write_dataset

    raw = copy.deepcopy(COMMITTED)
    raw.update(
        model={"name": str(tiny_model_dir), "revision": None},
        data={"source": "dialogsum", "revision": None, "on_bad_rows": "drop"},
    )
    raw["prompt"]["max_length"], raw["generate"]["max_new_tokens"] = 256, 32
    if path:
        node = raw
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):
        write_dataset(Path("dialogsum"), seed=0, sizes={"train": 4, "validation": 2, "test": 2})
        Path("params.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True))
        yield Path(tmp)


def invoke_prepare_cli() -> None:
    result = invoke_stage("prepare")
    if result.exit_code == 0:
        stats = json.loads(Path("metrics/data.json").read_text())
        for split in ("train", "validation", "test"):
            assert stats[split]["rows_in"] == stats[split]["rows"] + sum(stats[split]["dropped"].values())
            assert len(Path(f"data/prepared/{split}.jsonl").read_text().splitlines()) == stats[split]["rows"]
        return
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output  # not a traceback
    errors = result.stderr.splitlines()
    assert len(errors) == 1 and errors[0].startswith("Error: "), result.stderr
    assert not Path("data").exists() and not Path("metrics").exists()


@CLI_FUZZ
@given(content=st.one_of(csv_files(), jsonl_files(), st.binary(max_size=200)), ext=st.sampled_from(["csv", "jsonl"]))
def test_prepare_cli_on_fuzzed_files_exits_cleanly_or_with_one_error_line(tiny_model_dir, content, ext):
    with stage_dir(tiny_model_dir):
        Path("dialogsum/train.csv").unlink()
        Path(f"dialogsum/train.{ext}").write_bytes(content)
        invoke_prepare_cli()


@CLI_FUZZ
@given(path=st.sampled_from([p for p in key_paths(COMMITTED) if p[0] not in ("model", "data")]), value=yaml_values)
def test_prepare_cli_on_fuzzed_params_exits_cleanly_or_with_one_error_line(tiny_model_dir, path, value):
    with stage_dir(tiny_model_dir, path, value):
        invoke_prepare_cli()
