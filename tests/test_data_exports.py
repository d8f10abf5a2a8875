"""Files people bring, each written the way the tool that exports it writes it (issue 24, part 2).

Each is accepted with every row accounted for in metrics/data.json (rows_in = rows + dropped), or stops with
one `Error:` line naming the file, the row or column, and the fix.
"""

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from phisum.data import DataError, load_splits, prepare_split
from phisum.params import load_params
from tests.helpers import ROOT, invoke_stage, one_error_line, set_params, stage_env

TEMPLATE = "Instruct: Summarize the below conversation.\n\n{dialogue}\nOutput:\n"
GOOD_SPLIT = "id,dialogue,summary,topic\nx_1,#Person1#: Hi.,They greet.,greeting\n"


def data_dir_with(tmp_path: Path, name: str, content: str | bytes) -> Path:
    """A data directory whose split `name` (train.jsonl, test.csv, ...) holds `content`, the others one row."""
    data_dir = tmp_path / "data"
    data_dir.mkdir(exist_ok=True)
    for split in ("train", "validation", "test"):
        if not name.startswith(f"{split}."):
            (data_dir / f"{split}.csv").write_text(GOOD_SPLIT)
    path = data_dir / name
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content, encoding="utf-8")
    return data_dir


def stage_rows() -> list[dict]:
    """The prepared training rows the prepare stage wrote."""
    return [json.loads(line) for line in Path("data/prepared/train.jsonl").read_text().split("\n") if line]


def data_json() -> dict:
    return json.loads(Path("metrics/data.json").read_text())


# JSON lines written with ensure_ascii=False (the default of many exporters): str.splitlines() splits at each of
# these inside a string. json.dumps escapes the control characters (\x1c-\x1e become \u001c...), not U+0085,
# U+2028 or U+2029: those stay raw in the line.
LINE_BREAKS_IN_TEXT = ["\u2028", "\u2029", "\x85", "\x1c", "\x1d", "\x1e", "\x0b", "\x0c"]


def test_jsonl_written_without_ascii_escapes_keeps_line_separators_inside_strings(tmp_path, tokenizer):
    rows = [
        {
            "id": f"u{i}",
            "dialogue": f"#Person1#: Meet at{char}noon?\n#Person2#: Yes{char}sure.",
            "summary": f"They meet{char}at noon.",
            "topic": "meeting",
        }
        for i, char in enumerate(LINE_BREAKS_IN_TEXT)
    ]
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    assert "\u2028" in text and "\u2029" in text and "\x85" in text  # raw in the file, as exporters write them
    assert len(text.splitlines()) > len(rows)  # what the reader used to split on
    data_dir = data_dir_with(tmp_path, "train.jsonl", text)
    train, where = load_splits(str(data_dir), None)["train"]
    prepared, stats = prepare_split(train, where, TEMPLATE, tokenizer, 512, None)
    assert [(r["id"], r["dialogue"], r["summary"]) for r in prepared] == [
        (r["id"], r["dialogue"], r["summary"]) for r in rows
    ]
    assert (stats.rows_in, stats.rows_out, stats.dropped) == (8, 8, {})


def test_the_review_reads_prediction_lines_with_line_separators_inside_strings(tmp_path, monkeypatch):
    """The project writes its own .jsonl with ensure_ascii=False (phisum.files.jsonl_text); the review reads them."""
    from dvc.repo import Repo

    from phisum.files import jsonl_text
    from phisum.review import read_rows

    Repo.init(str(tmp_path), no_scm=True).close()
    rows = [{"id": "a", "prediction": "Noon\u2028sharp\x85ok"}, {"id": "b", "prediction": "Two\u2029lines"}]
    (tmp_path / "predictions.jsonl").write_text(jsonl_text(rows), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert read_rows("predictions.jsonl", None) == {"a": rows[0], "b": rows[1]}


def pandas_jsonl(records: list[dict]) -> str:
    """What pandas' `DataFrame.to_json(orient="records", lines=True)` writes for an int id column."""
    try:
        import pandas
    except ImportError:  # the same bytes by hand: ASCII escapes (force_ascii), "\/", one object per line
        return "\n".join(json.dumps(r).replace("/", "\\/") for r in records) + "\n"
    return pandas.DataFrame(records).to_json(orient="records", lines=True)


NUMERIC_ID_TEST = [
    {"id": 101, "dialogue": "#Person1#: Lunch?\n#Person2#: At 12/1.", "summary": "Lunch at 12.", "topic": "t"},
    {"id": 102, "dialogue": "#Person1#: Lunch?\n#Person2#: At 12/1.", "summary": "They lunch.", "topic": "t"},
    {"id": 103, "dialogue": "#Person1#: Tea?\n#Person2#: No.", "summary": "No tea.", "topic": "t"},
    {"id": 104, "dialogue": "#Person1#: Café? 🎉\n#Person2#: Sí.", "summary": "Café.", "topic": "t"},
]


def test_pandas_int_ids_are_read_as_strings_everywhere(tmp_path, tokenizer):
    text = pandas_jsonl(NUMERIC_ID_TEST)
    assert '"id":101,' in text  # an int in the file
    data_dir = data_dir_with(tmp_path, "test.jsonl", text)
    rows, where = load_splits(str(data_dir), None)["test"]
    assert [r["id"] for r in rows] == ["101", "102", "103", "104"]
    prepared, _ = prepare_split(rows, where, TEMPLATE, tokenizer, 512, 48)
    assert [(r["id"], r["dialogue"]) for r in prepared] == [(str(r["id"]), r["dialogue"]) for r in NUMERIC_ID_TEST]


def spreadsheet_csv(records: list[dict], blank_rows_after: set[int]) -> bytes:
    """A spreadsheet's "CSV UTF-8" export: a byte-order mark, CRLF line ends, two formatted but empty columns
    (empty header cells, empty cells in every row) and formatted empty rows (`,,,,,`)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["id", "dialogue", "summary", "topic", "", ""])
    for number, record in enumerate(records):
        writer.writerow([record["id"], record["dialogue"], record["summary"], record["topic"], "", ""])
        if number in blank_rows_after:
            writer.writerow([""] * 6)
    writer.writerow([""] * 6)
    return b"\xef\xbb\xbf" + buffer.getvalue().encode("utf-8")


def test_a_spreadsheet_export_with_empty_columns_and_rows_is_prepared_and_counted(tiny_stage_dir):
    train_csv = tiny_stage_dir / "dialogsum" / "train.csv"
    with train_csv.open(newline="") as handle:
        records = list(csv.DictReader(handle))
    assert invoke_stage("prepare").exit_code == 0
    clean = stage_rows()
    assert [r["id"] for r in clean] == [r["id"] for r in records]
    content = spreadsheet_csv(records, blank_rows_after={1, 3})
    assert content.count(b"\r\n,,,,,\r\n") == 3 and b"topic,,\r\n" in content
    train_csv.write_bytes(content)
    result = invoke_stage("prepare")
    assert result.exit_code == 0, result.output
    assert stage_rows() == clean
    assert data_json()["train"]["rows_in"] == 6 + 3
    assert (data_json()["train"]["rows"], data_json()["train"]["dropped"]) == (6, {"blank_row": 3})
    assert f"  ignoring column(s) (unnamed column 5), (unnamed column 6) in {train_csv}\n" in result.output


def test_blank_rows_are_skipped_under_on_bad_rows_error_but_an_empty_id_is_not(tmp_path, tokenizer):
    text = "id,dialogue,summary,topic\r\nt_1,#Person1#: Hi.,ok,t\r\n,,,\r\n , ,,\r\n,#Person1#: Bye.,ok,t\r\n"
    rows, where = load_splits(str(data_dir_with(tmp_path, "train.csv", text)), None)["train"]
    with pytest.raises(DataError) as error:
        prepare_split(rows, where, TEMPLATE, tokenizer, 512, None, "error")
    assert str(error.value) == (
        f"{where}: row 4: empty id; fix the data, or set data.on_bad_rows: drop to skip and count such rows"
    )
    prepared, stats = prepare_split(rows, where, TEMPLATE, tokenizer, 512, None, "drop")
    assert ([r["id"] for r in prepared], stats.dropped) == (["t_1"], {"blank_row": 2, "empty_id": 1})


def test_a_header_cell_with_surrounding_spaces_names_its_column(tmp_path, tokenizer):
    text = "id, dialogue ,summary ,topic\nt_1,#Person1#: Hi.,They greet.,greeting\n"
    rows, where = load_splits(str(data_dir_with(tmp_path, "train.csv", text)), None)["train"]
    prepared, _ = prepare_split(rows, where, TEMPLATE, tokenizer, 512, None)
    assert [(r["id"], r["dialogue"], r["summary"]) for r in prepared] == [("t_1", "#Person1#: Hi.", "They greet.")]


def test_a_missing_column_error_shows_the_columns_found(tmp_path):
    """JSON keys are taken as written: the message shows what the file held, spaces included."""
    line = json.dumps({"id": "a", "dialogue": "#Person1#: Hi.", "summary ": "They greet.", "topic": "t"})
    data_dir = data_dir_with(tmp_path, "train.jsonl", line + "\n")
    rows, where = load_splits(str(data_dir), None)["train"]
    with pytest.raises(DataError) as error:
        prepare_split(rows, where, TEMPLATE, None, 512, None)
    assert str(error.value) == (
        f"{where}: missing column(s) summary; expected columns id, dialogue, summary, topic, "
        "found 'id', 'dialogue', 'summary ', 'topic'"
    )


def zeroed_block_csv() -> bytes:
    """The second row's dialogue has a run of NUL bytes where a crash zeroed a disk block."""
    return (
        b"id,dialogue,summary,topic\n"
        b"t_1,#Person1#: Hi.,They greet.,greeting\n"
        b'"t_2","#Person1#: Lunch at ' + b"\x00" * 512 + b'noon?",They lunch.,lunch\n'
        b"t_3,#Person1#: Bye.,They part.,farewell\n"
    )


def test_nul_bytes_inside_a_field_stop_prepare_naming_the_row_and_column(tiny_stage_dir):
    (tiny_stage_dir / "dialogsum" / "train.csv").write_bytes(zeroed_block_csv())
    assert one_error_line(invoke_stage("prepare")) == (
        f"Error: {tiny_stage_dir / 'dialogsum' / 'train.csv'}: row id 't_2': NUL bytes in dialogue (a disk block "
        "zeroed by a crash?); restore the file from a copy or delete them, or set data.on_bad_rows: drop to skip "
        "and count such rows"
    )
    assert not Path("metrics/data.json").exists() and not Path("data/prepared").exists()


def test_nul_bytes_are_dropped_and_counted_under_drop(tiny_stage_dir):
    (tiny_stage_dir / "dialogsum" / "train.csv").write_bytes(zeroed_block_csv())
    set_params(tiny_stage_dir, {"data": {"on_bad_rows": "drop"}})
    assert invoke_stage("prepare").exit_code == 0
    assert [r["id"] for r in stage_rows()] == ["t_1", "t_3"]
    assert (data_json()["train"]["rows_in"], data_json()["train"]["dropped"]) == (3, {"nul_bytes_in_dialogue": 1})
    assert "\x00" not in Path("data/prepared/train.jsonl").read_text()


# A summary longer than the tiny stage's prompt.max_length (256) alone, and one that fits alone but not with the
# template (on main that one stopped prepare with "prompt.template alone takes ..." even under drop).
LONG_SUMMARIES = {"alone": 60, "with_the_template": 22}


def long_summary_csv(tokenizer, items: int) -> tuple[bytes, int, int]:
    """A row t_2 whose summary lists `items` items; its token count and the template's."""
    summary = " ".join(f"Item {i} goes to Carol on Friday." for i in range(items))
    tokens = len(tokenizer(summary, add_special_tokens=False)["input_ids"])
    template = len(
        tokenizer(yaml.safe_load((ROOT / "params.yaml").read_text())["prompt"]["template"].replace("{dialogue}", ""))[
            "input_ids"
        ]
    )
    assert tokens >= 256 if items == LONG_SUMMARIES["alone"] else tokens + 1 < 256 <= tokens + 1 + template
    text = f"id,dialogue,summary,topic\nt_1,#Person1#: Hi.,They greet.,t\nt_2,#Person1#: List.,{summary},t\n"
    return text.encode(), tokens, template


@pytest.mark.parametrize("items", LONG_SUMMARIES.values(), ids=LONG_SUMMARIES.keys())
def test_a_summary_longer_than_the_context_stops_prepare_under_error(tiny_stage_dir, tokenizer, items):
    content, tokens, template = long_summary_csv(tokenizer, items)
    (tiny_stage_dir / "dialogsum" / "train.csv").write_bytes(content)
    assert one_error_line(invoke_stage("prepare")) == (
        f"Error: {tiny_stage_dir / 'dialogsum' / 'train.csv'}: row id 't_2': summary too long: {tokens} tokens "
        f"(+1 for EOS), with the template's {template}, leave no room for the dialogue within prompt.max_length 256; "
        "shorten the summary, raise prompt.max_length, or set data.on_bad_rows: drop to skip and count such rows"
    )
    assert not Path("metrics/data.json").exists()


@pytest.mark.parametrize("items", LONG_SUMMARIES.values(), ids=LONG_SUMMARIES.keys())
def test_a_summary_longer_than_the_context_is_dropped_and_counted_under_drop(tiny_stage_dir, tokenizer, items):
    content, _, _ = long_summary_csv(tokenizer, items)
    (tiny_stage_dir / "dialogsum" / "train.csv").write_bytes(content)
    set_params(tiny_stage_dir, {"data": {"on_bad_rows": "drop"}})
    assert invoke_stage("prepare").exit_code == 0
    assert [r["id"] for r in stage_rows()] == ["t_1"]
    assert (data_json()["train"]["rows_in"], data_json()["train"]["dropped"]) == (2, {"summary_too_long": 1})


# A dataset directory committed to git inside the repository, through `python -m phisum.profile --data`.


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, env=stage_env(), capture_output=True, text=True, check=True)
    return done.stdout


def profile_repo(tmp_path: Path) -> Path:
    """A git + DVC repository with the committed params.yaml and the CPU profile, and a data directory `mine`
    committed to git: CSV train/validation splits, and a pandas-exported test split with int ids."""
    from dvc.repo import Repo

    from phisum.synthetic import write_dataset

    repo = tmp_path / "repo"
    (repo / "profiles").mkdir(parents=True)
    (repo / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    (repo / "profiles" / "cpu.yaml").write_bytes((ROOT / "profiles" / "cpu.yaml").read_bytes())
    git(repo, "init", "-q")
    Repo.init(str(repo)).close()
    write_dataset(repo / "mine", seed=0, sizes={"train": 12, "validation": 3, "test": 1})
    (repo / "mine" / "test.csv").unlink()
    (repo / "mine" / "test.jsonl").write_text(pandas_jsonl(NUMERIC_ID_TEST))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "data in git")
    return repo


def run_profile(repo: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "phisum.profile", "--data", "mine", "--pretrain-steps", "0"]
    return subprocess.run(command, cwd=repo, env=stage_env(), capture_output=True, text=True, timeout=600)


def test_a_dataset_committed_to_git_is_used_from_git_and_int_ids_give_valid_params(tmp_path, monkeypatch):
    """Git carries the directory to queued experiments and clones: DVC must not (and refuses to) track it too."""
    repo = profile_repo(tmp_path)
    done = run_profile(repo)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "dvc add models/tiny-phi (the .dvc files are staged" in done.stdout
    assert "mine is tracked by git: queued experiments and clones get it from git, not DVC\n" in done.stdout
    assert sorted(git(repo, "diff", "--cached", "--name-only").split()) == ["models/.gitignore", "models/tiny-phi.dvc"]
    assert not (repo / "mine.dvc").exists()
    monkeypatch.chdir(repo)
    params = load_params()  # the profile's own params pass the params check
    assert (params.data.source, params.qualitative.ids) == ("mine", ["101", "103", "104"])


def test_a_dataset_partly_in_git_stops_the_profile_before_it_builds_the_model(tmp_path):
    repo = profile_repo(tmp_path)
    git(repo, "rm", "-q", "--cached", "mine/test.jsonl")
    done = run_profile(repo)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        "Error: mine: mine/test.jsonl not in git while other files of it are; `git add mine` to keep the data in "
        "git, or `git rm -r --cached mine` to let DVC track it\n"
    )
    assert not (repo / "models").exists()
