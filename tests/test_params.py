import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from phisum.params import ParamsError, load_params, parse_params
from tests.helpers import ROOT, invoke_stage, one_error_line, stage_env, write_bad_params


@pytest.fixture()
def raw():
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_committed_params_describe_the_t4_run(raw):
    p = parse_params(raw)
    assert (p.model.name, p.data.source) == ("microsoft/phi-2", "neil-code/dialogsum-test")
    assert p.model.revision and p.data.revision
    assert (p.quantization.quant_type, p.quantization.double_quant) == ("nf4", True)
    assert (p.lora.r, p.lora.alpha, p.lora.dropout) == (32, 32, 0.05)
    assert p.lora.target_modules == ["q_proj", "k_proj", "v_proj", "dense"]
    assert (p.train.optim, p.train.learning_rate) == ("paged_adamw_8bit", 2e-4)
    assert (p.train.batch_size, p.train.grad_accum, p.train.max_steps) == (1, 4, 1000)
    assert p.train.gradient_checkpointing is True
    assert p.prompt.max_length == 2048


def test_lora_r_lives_at_the_path_dvc_exp_run_sets(raw):
    assert raw["lora"]["r"] == 32


EMPTY_REVISION = "empty; give a commit hash from the hub, or null for the latest (and for a local directory)"
# (overrides as `dvc exp run -S` sets them, or (old, new) text in params.yaml) -> the whole one-line error.
BAD_PARAMS = [
    ({"lora": {"r": 0}}, "lora.r: must be > 0, got 0"),
    ({"lora": {"r": "16"}}, "lora.r: expected int, got '16'"),
    ({"lora": {"r": True}}, "lora.r: expected int, got True"),
    ({"lora": {"dropout": 1.5}}, "lora.dropout: must be in [0, 1), got 1.5"),
    ({"lora": {"dropout": 1.0}}, "lora.dropout: must be in [0, 1), got 1.0"),
    ({"lora": {"target_modules": []}}, "lora.target_modules: expected a non-empty list, got []"),
    ({"train": {"learning_rate": 0}}, "train.learning_rate: must be > 0, got 0.0"),
    ({"train": {"learning_rate": -2.0e-4}}, "train.learning_rate: must be > 0, got -0.0002"),
    ({"train": {"batch_size": 0}}, "train.batch_size: must be > 0, got 0"),
    ({"train": {"max_steps": 0}}, "train.max_steps: must be > 0, got 0"),
    (
        {"train": {"optim": "adamw_9bit"}},
        "train.optim: got 'adamw_9bit', allowed: paged_adamw_8bit, adamw_8bit, paged_adamw_32bit, adamw_torch, "
        "adamw_torch_fused, adafactor",
    ),
    (
        {"train": {"save_steps": 5000}},
        "train.save_steps: 5000 > train.max_steps 1000: no checkpoint would be written to resume from; lower it",
    ),
    ({"train": {"eval_steps": 5000}}, "train.eval_steps: 5000 > train.max_steps 1000; lower it"),
    ({"train": {"gradient_checkpointing": "yes"}}, "train.gradient_checkpointing: expected bool, got 'yes'"),
    ({"quantization": {"quant_type": "int4"}}, "quantization.quant_type: got 'int4', allowed: nf4, fp4"),
    (
        {"quantization": {"compute_dtype": "float8"}},
        "quantization.compute_dtype: got 'float8', allowed: auto, float16, bfloat16, float32",
    ),
    ({"model": {"device": "gpu"}}, "model.device: got 'gpu', allowed: cuda, cpu"),
    ({"model": {"revision": ""}}, f"model.revision: {EMPTY_REVISION}"),
    ({"data": {"revision": " "}}, f"data.revision: {EMPTY_REVISION}"),
    ({"data": {"on_bad_rows": "skip"}}, "data.on_bad_rows: got 'skip', allowed: error, drop"),
    (
        {"generate": {"max_new_tokens": 2048}},
        "generate.max_new_tokens: 2048 leaves no room for the prompt within prompt.max_length 2048",
    ),
    (
        {"evaluate": {"metrics": ["rouge", "bleurt"]}},
        "evaluate.metrics: unknown bleurt; allowed: rouge, bleu, meteor, bertscore, length",
    ),
    ({"prompt": {"template": "Summarize: {text}"}}, "prompt.template: must contain the placeholder {dialogue}"),
    ({"qualitative": {"top_k": -1}}, "qualitative.top_k: must be >= 0, got -1"),
    ({"qualitative": {"ids": ["test_0_1", 101]}}, "qualitative.ids[1]: expected str, got 101; quote it: '101'"),
    ({"model": {"revision": 1234567}}, "model.revision: expected str, got 1234567; quote it: '1234567'"),
    ({"qualitative": {"random_examples": -1}}, "qualitative.random_examples: must be >= 0, got -1"),
    (
        ("lora:\n  r: 32", "lora:\n  rank: 8\n  r: 32"),
        "lora.rank: unknown key (allowed here: r, alpha, dropout, target_modules)",
    ),
    (("\n  alpha: 32  #", "\n  #"), "lora.alpha: missing key (see the committed params.yaml for its meaning)"),
    (
        ("seed: 42", "seed: 42\nepochs: 3"),
        "epochs: unknown key (allowed here: seed, model, data, prompt, quantization, lora, train, generate, "
        "evaluate, qualitative)",
    ),
]


@pytest.mark.parametrize(("edit", "expected"), BAD_PARAMS, ids=[e[:60] for _, e in BAD_PARAMS])
def test_bad_params_are_one_error_naming_the_key_and_the_fix(tmp_path, edit, expected):
    with pytest.raises(ParamsError) as error:
        load_params(write_bad_params(tmp_path, edit))
    assert str(error.value) == expected


def test_a_null_revision_is_the_latest_or_a_local_directory(raw):
    raw["model"]["revision"] = raw["data"]["revision"] = None
    params = parse_params(raw)
    assert (params.model.revision, params.data.revision) == (None, None)


def test_int_is_accepted_where_a_float_is_expected(raw):
    raw["train"]["learning_rate"] = 1
    assert parse_params(raw).train.learning_rate == 1.0


def test_params_read_yaml_1_2_floats_like_dvc(tmp_path):
    text = (ROOT / "params.yaml").read_text().replace("learning_rate: 2.0e-4", "learning_rate: 1e-4")
    (tmp_path / "params.yaml").write_text(text)
    assert load_params(tmp_path / "params.yaml").train.learning_rate == 1e-4


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: r["train"].update(learning_rate=float("inf")), "train.learning_rate: expected a finite number"),
        (lambda r: r["lora"].update(dropout=float("nan")), "lora.dropout: expected a finite number, got nan"),
        (lambda r: r.update({1: "x"}), "1: unknown key (allowed here: seed, model"),
        (lambda r: r["model"].update({"\n": None}), "model.'\\n': unknown key (allowed here: name, revision, device)"),
    ],
)
def test_values_and_keys_found_by_fuzzing_name_the_key_in_one_line(raw, edit, message):
    edit(raw)
    with pytest.raises(ParamsError) as error:
        parse_params(raw)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"seed: 42\nlora: \x80\n", "bytes that are not UTF-8 (at byte 15); re-save it as UTF-8"),
        (
            b"seed: 42\nlora: [\n",
            "not valid YAML at line 3, column 1 (while parsing a flow node: expected the node content, but found "
            "'<stream end>'); fix that line, or `git checkout params.yaml` for the committed one",
        ),
    ],
)
def test_an_unreadable_params_file_is_one_line(tmp_path, content, message):
    (tmp_path / "params.yaml").write_bytes(content)
    with pytest.raises(ParamsError) as error:
        load_params(tmp_path / "params.yaml")
    assert str(error.value).startswith(f"{tmp_path / 'params.yaml'}: {message}")
    assert "\n" not in str(error.value)


# Edits DVC itself reports in several lines (before any stage runs): each is one line here, naming the line.
# The committed params.yaml has `  r: 32` on line 29 and `  alpha: 32` on line 30.
SYNTAX_ERRORS = {
    "duplicated-key": (
        ("  alpha: 32", "  r: 16\n  alpha: 32"),
        "params.yaml line 30: lora.r is set twice (first on line 29); keep one of the two lines",
    ),
    "tab-indented": (
        ("  alpha: 32", "\talpha: 32"),
        "params.yaml line 30, column 1: a tab character; YAML indents and separates with spaces only: "
        "replace the tab with spaces",
    ),
    "empty": (None, "params.yaml: empty (no keys); `git checkout params.yaml` restores the committed one"),
}


def write_syntax_error(directory: Path, edit: tuple[str, str] | None) -> None:
    if edit is None:
        (directory / "params.yaml").write_text("")
        return
    lines = (ROOT / "params.yaml").read_text().split("\n")
    assert (lines[28], lines[29]) == (
        "  r: 32  # adapter rank; `dvc exp run -S lora.r=16` tries a smaller one",
        "  alpha: 32  # scaling = alpha / r",
    )
    write_bad_params(directory, edit)


@pytest.mark.parametrize(("edit", "expected"), SYNTAX_ERRORS.values(), ids=SYNTAX_ERRORS.keys())
def test_a_params_syntax_error_stops_a_stage_in_one_line_naming_the_line(tmp_path, monkeypatch, edit, expected):
    write_syntax_error(tmp_path, edit)
    monkeypatch.chdir(tmp_path)
    assert one_error_line(invoke_stage("prepare")) == f"Error: {expected}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


@pytest.mark.parametrize(("edit", "expected"), SYNTAX_ERRORS.values(), ids=SYNTAX_ERRORS.keys())
def test_a_params_syntax_error_stops_the_cpu_profile_before_it_builds_anything(tmp_path, edit, expected):
    """`make demo`'s first step: nothing written (no synthetic data, no tiny model) and params.yaml unchanged."""
    write_syntax_error(tmp_path, edit)
    before = (tmp_path / "params.yaml").read_bytes()
    done = subprocess.run(
        [sys.executable, "-m", "phisum.profile"], cwd=tmp_path, env=stage_env(), capture_output=True, text=True
    )
    assert (done.returncode, done.stdout, done.stderr) == (1, "", f"Error: {expected}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]
    assert (tmp_path / "params.yaml").read_bytes() == before


def test_a_key_set_twice_in_a_nested_block_is_named_by_its_path(tmp_path):
    text = (ROOT / "params.yaml").read_text().replace("  eval_rows:", "  learning_rate: 1.0e-3\n  eval_rows:", 1)
    (tmp_path / "params.yaml").write_text(text)
    first = text.split("\n").index("  learning_rate: 2.0e-4") + 1
    with pytest.raises(ParamsError) as error:
        load_params(tmp_path / "params.yaml")
    assert str(error.value).endswith(
        f"train.learning_rate is set twice (first on line {first}); keep one of the two lines"
    )
