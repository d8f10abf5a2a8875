import csv
import json
import random

import pytest
import yaml

from phisum.data import (
    DataError,
    describe_unused_columns,
    group_by_dialogue,
    load_splits,
    prepare_split,
    unused_columns,
)
from phisum.profile import SYNTHETIC_SIZES
from phisum.stress import make_stress_cases
from phisum.synthetic import make_example, write_dataset
from tests.helpers import ROOT, SHARED_DATA

TEMPLATE = "Instruct: Summarize the below conversation.\n\n{dialogue}\nOutput:\n"


def row(row_id, dialogue="#Person1#: Hi.\n#Person2#: Hello.", summary="They greet."):
    return {"id": row_id, "dialogue": dialogue, "summary": summary, "topic": "greeting"}


def test_prepare_makes_prompt_and_completion(tokenizer):
    rows, stats = prepare_split([row("a")], "train.csv", TEMPLATE, tokenizer, 512, None)
    assert rows == [
        {
            "id": "a",
            "topic": "greeting",
            "dialogue": "#Person1#: Hi.\n#Person2#: Hello.",
            "summary": "They greet.",
            "prompt": "Instruct: Summarize the below conversation.\n\n#Person1#: Hi.\n#Person2#: Hello.\nOutput:\n",
            "completion": "They greet.",
        }
    ]
    assert (stats.rows_in, stats.rows_out, stats.truncated) == (1, 1, 0)


BAD_ROWS = [row("b", dialogue="  "), row("c", summary=""), row("d", summary=None), row("a"), row("e")]


def test_bad_rows_are_dropped_and_counted_when_params_say_drop(tokenizer):
    rows = [row("a"), *BAD_ROWS]
    held_out = {"#person1#: monday? #person2#: yes."}
    rows[-1]["dialogue"] = "#Person1#: Monday?\n#Person2#:  yes."  # a test dialogue, up to whitespace and case
    prepared, stats = prepare_split(rows, "train.csv", TEMPLATE, tokenizer, 512, None, "drop", held_out)
    assert [r["id"] for r in prepared] == ["a"]
    assert stats.to_dict()["dropped"] == {
        "dialogue_in_test_split": 1,
        "duplicate_id": 1,
        "empty_dialogue": 1,
        "empty_summary": 2,
    }


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (row("b", dialogue="  "), "row id 'b': empty dialogue"),
        (row("c", summary=None), "row id 'c': empty summary"),
        (row("a"), "row id 'a': duplicate id"),
        (row("z", dialogue="HELD OUT"), "row id 'z': dialogue in test split"),
    ],
)
def test_bad_rows_stop_prepare_by_default_naming_file_and_row(tokenizer, bad, message):
    with pytest.raises(DataError, match=f"train.csv: {message}; fix the data, or set data.on_bad_rows: drop"):
        prepare_split([row("a"), bad], "train.csv", TEMPLATE, tokenizer, 512, None, "error", {"held out"})


def test_missing_column_names_the_file_and_column(tokenizer):
    with pytest.raises(DataError, match=r"train.csv: missing column\(s\) summary"):
        prepare_split([{"id": "a", "dialogue": "x"}], "train.csv", TEMPLATE, tokenizer, 512, None)


def write_splits(data_dir, train_text: str | bytes) -> None:
    good = "id,dialogue,summary,topic\nx_1,#Person1#: Hi.,They greet.,greeting\n"
    for split in ("validation", "test"):
        (data_dir / f"{split}.csv").write_text(good)
    path = data_dir / "train.csv"
    path.write_bytes(train_text) if isinstance(train_text, bytes) else path.write_text(train_text)


@pytest.mark.parametrize(
    ("train_text", "message"),
    [
        (b"id,dialogue,summary,topic\nt_1,#Person1#: caf\xe9,ok,t\n", "train.csv line 2: bytes that are not UTF-8"),
        ('id,dialogue,summary,topic\nt_1,"#Person1#: unclosed,ok,t\n', "train.csv line 2: broken CSV quoting"),
        ('id,dialogue,summary,topic\nt_1,"#Person1#: a"b,ok,t\n', "train.csv line 2: broken CSV quoting"),
        ("id,dialogue,summary,topic\nt_1,#Person1#: a, b,ok,t\n", "train.csv line 2: 5 columns where the header has 4"),
        ("id,dialogue,topic\nt_1,#Person1#: a,t\n", r"train.csv: missing column\(s\) summary"),
        ("id,dialogue,summary,topic\n", "train.csv: split is empty"),
    ],
)
def test_unreadable_files_name_the_file_line_and_fix(tmp_path, train_text, message, tokenizer):
    write_splits(tmp_path, train_text)
    with pytest.raises(DataError, match=message):
        for rows, where in load_splits(str(tmp_path), None).values():
            prepare_split(rows, where, TEMPLATE, tokenizer, 512, None)


def test_jsonl_splits_with_nulls_and_bad_lines(tmp_path, tokenizer):
    write_splits(tmp_path, "id,dialogue,summary,topic\nt_1,#Person1#: Hi.,ok,t\n")
    (tmp_path / "test.csv").unlink()
    (tmp_path / "test.jsonl").write_text('{"id": "a", "dialogue": "#Person1#: Hi.", "summary": null}\n')
    rows, where = load_splits(str(tmp_path), None)["test"]
    with pytest.raises(DataError, match="test.jsonl: row id 'a': empty summary"):
        prepare_split(rows, where, TEMPLATE, tokenizer, 512, 48)
    (tmp_path / "test.jsonl").write_text('{"id": "a"}\nnot json\n')
    with pytest.raises(DataError, match="test.jsonl line 2: not valid JSON"):
        load_splits(str(tmp_path), None)


def test_long_dialogue_is_cut_in_the_dialogue_never_in_the_summary(tokenizer):
    long_dialogue = "\n".join(f"#Person1#: Monday at {i} am is fine." for i in range(200))
    summary = "They meet on Monday."
    prepared, stats = prepare_split([row("a", long_dialogue, summary)], "train.csv", TEMPLATE, tokenizer, 128, None)
    prompt_len = len(tokenizer(prepared[0]["prompt"])["input_ids"])
    summary_len = len(tokenizer(summary)["input_ids"])
    assert stats.truncated == 1
    assert prompt_len + summary_len + 1 <= 128
    assert prepared[0]["completion"] == summary
    assert prepared[0]["prompt"].endswith("\nOutput:\n")


def test_test_split_reserves_generation_room(tokenizer):
    long_dialogue = "\n".join(f"#Person2#: Friday at {i} pm." for i in range(200))
    prepared, _ = prepare_split([row("t", long_dialogue)], "test.csv", TEMPLATE, tokenizer, 128, 48)
    assert len(tokenizer(prepared[0]["prompt"])["input_ids"]) <= 128 - 48


def test_group_by_dialogue_collects_references_in_order():
    rows = [
        {"id": "test_0_1", "prompt": "p0", "summary": "s1"},
        {"id": "test_0_2", "prompt": "p0", "summary": "s2"},
        {"id": "test_1_1", "prompt": "p1", "summary": "s3"},
    ]
    groups = group_by_dialogue(rows)
    assert [(g["id"], g["ids"], g["references"]) for g in groups] == [
        ("test_0_1", ["test_0_1", "test_0_2"], ["s1", "s2"]),
        ("test_1_1", ["test_1_1"], ["s3"]),
    ]


def test_synthetic_dataset_is_deterministic_and_in_the_hub_layout(tmp_path):
    write_dataset(tmp_path / "a", seed=7, sizes={"train": 20, "validation": 5, "test": 5})
    write_dataset(tmp_path / "b", seed=7, sizes={"train": 20, "validation": 5, "test": 5})
    for split in ("train", "validation", "test"):
        assert (tmp_path / "a" / f"{split}.csv").read_bytes() == (tmp_path / "b" / f"{split}.csv").read_bytes()
    with (tmp_path / "a" / "test.csv").open() as handle:
        test_rows = list(csv.DictReader(handle))
    assert list(test_rows[0]) == ["id", "dialogue", "summary", "topic"]
    assert [r["id"] for r in test_rows[:2]] == ["test_0_1", "test_0_2"]
    assert test_rows[0]["dialogue"] == test_rows[1]["dialogue"]


def test_synthetic_example_is_a_stress_style_dialogue_summarised_by_its_final_slot():
    dialogue, summaries, topic = make_example(random.Random(3))
    lines = dialogue.splitlines()
    assert lines[2] == "#Person1#: I'm afraid we have to cancel Friday's meeting, the numbers aren't ready."
    assert lines[8] == "#Person1#: Perfect, Wednesday at eleven o'clock it is, and no more changes."
    assert topic == "quarterly planning"
    assert summaries == [
        "#Person1# and #Person2# will have the quarterly planning on Wednesday at 11 am. Carol can't come. "
        "Frank will bring the agenda. Henry will bring the contract draft.",
        "The quarterly planning is on Wednesday at 11 am. Carol can't come. "
        "Frank will bring the agenda. Henry will bring the contract draft.",
    ]


def test_synthetic_data_has_moves_cancellations_and_distractors():
    rng = random.Random(5)
    dialogues = "\n".join(make_example(rng)[0] for _ in range(50))
    for phrase in ("Could we move it to", "Can we push it to", "cancel", "call off", "leaving party", "dentist"):
        assert phrase in dialogues


def test_no_stress_case_is_in_the_demo_data(tmp_path):
    """The demo trains on synthetic data and tests on stress cases from the same generator: never the same dialogue."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    write_dataset(tmp_path, seed=params["seed"], sizes=SYNTHETIC_SIZES)
    stress = {case["dialogue"] for case in make_stress_cases(params["seed"], 2000)}
    for split in SYNTHETIC_SIZES:
        with (tmp_path / f"{split}.csv").open() as handle:
            dialogues = {row["dialogue"] for row in csv.DictReader(handle)}
        assert len(dialogues) == SYNTHETIC_SIZES[split] and not dialogues & stress, split


@pytest.mark.skipif(not SHARED_DATA.exists(), reason="offline DialogSum copy (../shared) not present")
def test_real_neil_code_split_sizes(tokenizer):
    splits = load_splits(str(SHARED_DATA / "neil-code-dialogsum-test"), None)
    sizes = {}
    for split, (rows, where) in splits.items():
        reserve = 48 if split == "test" else None
        prepared, _ = prepare_split(rows, where, TEMPLATE, tokenizer, 2048, reserve)
        sizes[split] = len(prepared)
    assert sizes == {"train": 1999, "validation": 499, "test": 499}
    assert len(group_by_dialogue(prepared)) == 167


@pytest.mark.skipif(not SHARED_DATA.exists(), reason="offline DialogSum copy (../shared) not present")
def test_full_dialogsum_csvs_load_without_code_changes(tokenizer):
    """The seed's next step: the full 12,460-dialogue training set, named dialogsum_<split>.csv."""
    splits = load_splits(str(SHARED_DATA / "knkarthick-dialogsum-csv" / "dialogsum"), None)
    assert {split: len(rows) for split, (rows, _) in splits.items()} == {
        "train": 12460,
        "validation": 500,
        "test": 1500,
    }
    test_rows, where = splits["test"]
    prepared, _ = prepare_split(test_rows, where, TEMPLATE, tokenizer, 2048, 100)
    assert len(group_by_dialogue(prepared)) == 500


def test_ambiguous_split_files_are_an_error(tmp_path):
    for name in ("train.csv", "a_validation.csv", "b_validation.csv", "test.csv"):
        (tmp_path / name).write_text("id,dialogue,summary,topic\n")
    with pytest.raises(DataError, match="several validation files"):
        load_splits(str(tmp_path), None)


# Inputs people have: each variant must give exactly the rows of the clean file.
CLEAN_ROWS = [
    ("1", '#Person1#: Lunch at 12, "the usual"?\n#Person2#: Yes.', "They agree on lunch at 12.", "lunch"),
    ("2", "#Person1#: 明天开会吗？\n#Person2#: 是的，上午十点。", "明天上午十点开会。", "会议"),
    ("3", "#Person1#: Café at 5 🎉?\n#Person2#: Sí, ¡perfecto! 👍", "They meet at the café at 5 🎉.", "café"),
]
CLEAN_CSV = "id,dialogue,summary,topic\n" + "".join(
    f'{i},"{d.replace(chr(34), 2 * chr(34))}","{s}",{t}\n' for i, d, s, t in CLEAN_ROWS
)


def excel_csv() -> bytes:
    """Excel / Google Sheets "CSV UTF-8": a byte-order mark and CRLF everywhere, newlines in cells too."""
    return b"\xef\xbb\xbf" + CLEAN_CSV.replace("\n", "\r\n").encode("utf-8")


def reordered_csv() -> str:
    """Columns in another order, plus columns prepare does not use."""
    lines = ["summary,speaker_count,dialogue,topic,id,notes"]
    for i, d, s, t in CLEAN_ROWS:
        lines.append(f'"{s}",2,"{d.replace(chr(34), 2 * chr(34))}",{t},{i},"seen, twice"')
    return "\n".join(lines) + "\n"


def jsonl_numeric_ids() -> str:
    """JSONL with ids as numbers, keys in any order and extra keys."""
    return "".join(
        json.dumps({"source": "export", "summary": s, "id": int(i), "dialogue": d, "topic": t, "n": [1, 2]}) + "\n"
        for i, d, s, t in CLEAN_ROWS
    )


def prepared_train(data_dir, train_name: str, content: str | bytes, tokenizer) -> list[dict]:
    data_dir.mkdir(exist_ok=True)
    write_splits(data_dir, "id,dialogue,summary,topic\nunused,#Person1#: x,y,z\n")
    (data_dir / "train.csv").unlink()
    path = data_dir / train_name
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content, encoding="utf-8")
    rows, where = load_splits(str(data_dir), None)["train"]
    return prepare_split(rows, where, TEMPLATE, tokenizer, 512, None)[0]


@pytest.mark.parametrize(
    ("name", "make"),
    [("train.csv", excel_csv), ("train.csv", reordered_csv), ("train.jsonl", jsonl_numeric_ids)],
    ids=["bom-crlf", "reordered-extra-columns", "jsonl-numeric-ids-extra-keys"],
)
def test_real_world_exports_give_the_same_rows_as_the_clean_file(tmp_path, tokenizer, name, make):
    clean = prepared_train(tmp_path / "clean", "train.csv", CLEAN_CSV, tokenizer)
    assert [(r["id"], r["dialogue"], r["summary"], r["topic"]) for r in clean] == CLEAN_ROWS
    assert prepared_train(tmp_path / "variant", name, make(), tokenizer) == clean


def test_a_dialogue_longer_than_the_csv_field_limit_is_cut_and_counted(tmp_path, tokenizer):
    """Python's csv refuses fields over 131,072 characters by default; a long transcript is still valid."""
    turn = "#Person1#: Let us go through the quarterly numbers once more.\n"
    long_dialogue = turn * (140_000 // len(turn) + 1)
    assert len(long_dialogue) > 131_072
    text = CLEAN_CSV + f'4,"{long_dialogue}",They review the numbers.,meeting\n'
    rows = prepared_train(tmp_path, "train.csv", text, tokenizer)
    assert [r["id"] for r in rows] == ["1", "2", "3", "4"]
    _, stats = prepare_split(load_splits(str(tmp_path), None)["train"][0], "train.csv", TEMPLATE, tokenizer, 512, None)
    assert (stats.rows_in, stats.rows_out, stats.truncated) == (4, 4, 1)
    assert rows[3]["dialogue"] == long_dialogue[: len(rows[3]["dialogue"])]
    assert len(tokenizer(rows[3]["prompt"])["input_ids"]) + len(tokenizer(rows[3]["summary"])["input_ids"]) < 512


def test_unused_columns_are_listed_once_per_file(tmp_path):
    write_splits(tmp_path, reordered_csv())
    (tmp_path / "test.jsonl").write_text(jsonl_numeric_ids())
    (tmp_path / "test.csv").unlink()
    splits = load_splits(str(tmp_path), None)
    assert {split: unused_columns(rows) for split, (rows, _) in splits.items()} == {
        "train": ["notes", "speaker_count"],
        "validation": [],
        "test": ["n", "source"],
    }


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("id,dialogue,summary,id\n1,a,b,2\n", "train.csv: column id appears twice in the header"),
        ("\xff\xfei\x00d\x00".encode("latin-1"), "train.csv: UTF-16 text; re-save the file as UTF-8"),
    ],
)
def test_headers_and_encodings_that_cannot_be_read_as_one_table(tmp_path, content, message):
    write_splits(tmp_path, content)
    with pytest.raises(DataError, match=message):
        load_splits(str(tmp_path), None)


def test_jsonl_rows_without_an_id_are_named_by_position_found_by_fuzzing(tmp_path, tokenizer):
    """The fuzzer's case: a row with no `id` key ended in KeyError: 'id'."""
    write_splits(tmp_path, "id,dialogue,summary,topic\nt_1,#Person1#: Hi.,ok,t\n")
    (tmp_path / "train.csv").unlink()
    (tmp_path / "train.jsonl").write_text(
        '{"id": "a", "dialogue": "0", "summary": "0"}\n{}\n{"dialogue": "x", "summary": "y"}\n'
    )
    rows, where = load_splits(str(tmp_path), None)["train"]
    with pytest.raises(DataError, match=r"train.jsonl: row 2: empty id; fix the data, or set data.on_bad_rows: drop"):
        prepare_split(rows, where, TEMPLATE, tokenizer, 512, None)
    prepared, stats = prepare_split(rows, where, TEMPLATE, tokenizer, 512, None, "drop")
    assert [r["id"] for r in prepared] == ["a"]
    assert stats.to_dict()["dropped"] == {"empty_id": 2}


def test_values_that_are_not_text_are_dropped_and_counted(tmp_path, tokenizer):
    rows = [row("a"), row("b", dialogue=["#Person1#: Hi."]), row("c", summary={"text": "x"}), row(True)]
    prepared, stats = prepare_split(rows, "train.jsonl", TEMPLATE, tokenizer, 512, None, "drop")
    assert [r["id"] for r in prepared] == ["a"]
    assert stats.to_dict()["dropped"] == {"dialogue_not_text": 1, "id_not_text": 1, "summary_not_text": 1}


def test_a_lone_surrogate_escape_in_jsonl_is_named(tmp_path):
    write_splits(tmp_path, "id,dialogue,summary,topic\nt_1,#Person1#: Hi.,ok,t\n")
    (tmp_path / "train.csv").unlink()
    (tmp_path / "train.jsonl").write_text('{"id": "a", "dialogue": "\\ud800", "summary": "s"}\n')
    with pytest.raises(DataError, match="train.jsonl line 1: a \\\\u escape that is not a character"):
        load_splits(str(tmp_path), None)


def test_prepare_says_once_which_columns_it_ignores(tmp_path):
    write_splits(tmp_path, reordered_csv())
    (tmp_path / "validation.csv").write_text(reordered_csv())
    (tmp_path / "test.jsonl").write_text(jsonl_numeric_ids())
    (tmp_path / "test.csv").unlink()
    assert describe_unused_columns(load_splits(str(tmp_path), None)) == [
        f"  ignoring column(s) notes, speaker_count in {tmp_path / 'train.csv'}, {tmp_path / 'validation.csv'}",
        f"  ignoring column(s) n, source in {tmp_path / 'test.jsonl'}",
    ]


def newline_merging_tokenizer():
    """Byte-level characters plus one merge, "\\n\\n" (GPT-2's, Phi-2's, Llama-3's and Qwen2.5's vocabularies all
    have it): the template with an empty dialogue ends ".\\n\\n\\nOutput" (tokens "\\n\\n", "\\n"), with a dialogue
    ".\\n\\n#...\\nOutput" ("\\n", "\\n", ..., "\\n"; GPT-2's pre-tokenizer keeps a newline with what follows it): one
    token more than the template and the dialogue counted apart."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {char: index for index, char in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    vocab |= {"ĊĊ": len(vocab), "<|endoftext|>": len(vocab) + 1}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[("Ċ", "Ċ")]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>")


@pytest.mark.parametrize(("max_length", "reserve"), [(100, None), (101, None), (140, 40)])
def test_a_cut_row_fits_max_length_as_its_whole_text_tokenizes(max_length, reserve):
    tokenizer = newline_merging_tokenizer()
    # "Instruct: Summarize the below conversation." 43, "\n\n" 1, "\n" 1, "Output:" 7, "\n" 1
    assert len(tokenizer(TEMPLATE.replace("{dialogue}", ""))["input_ids"]) == 53
    dialogue = "#Person1#: " + "Hello there. " * 20
    prepared, stats = prepare_split(
        [row("a", dialogue, "They greet.")], "train.csv", TEMPLATE, tokenizer, max_length, reserve
    )
    assert stats.truncated == 1
    if reserve is None:  # as TRL tokenizes a training row: prompt + summary + EOS, cut at max_length
        ids = tokenizer(prepared[0]["prompt"] + "They greet." + tokenizer.eos_token)["input_ids"]
        assert len(ids) == max_length and ids[-1] == tokenizer.eos_token_id
    else:  # a test prompt keeps generate.max_new_tokens free
        assert len(tokenizer(prepared[0]["prompt"])["input_ids"]) == max_length - reserve
