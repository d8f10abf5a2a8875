import copy
import subprocess

import pytest
import yaml

from phisum.params import ParamsError, load_params, parse_params
from tests.conftest import ROOT


def committed_params_text() -> str:
    """params.yaml as committed: `make demo` switches the working copy to the CPU profile."""
    shown = subprocess.run(["git", "show", "HEAD:params.yaml"], cwd=ROOT, capture_output=True, text=True)
    return shown.stdout if shown.returncode == 0 else (ROOT / "params.yaml").read_text()


@pytest.fixture()
def raw():
    return yaml.safe_load(committed_params_text())


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


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: r["lora"].pop("r"), "lora.r: missing key"),
        (lambda r: r["lora"].update(rank=8), "lora.rank: unknown key"),
        (lambda r: r["lora"].update(r="16"), "lora.r: expected int"),
        (lambda r: r["lora"].update(r=True), "lora.r: expected int"),
        (lambda r: r["lora"].update(r=0), "lora.r: must be > 0"),
        (lambda r: r["lora"].update(dropout=1.0), "lora.dropout: must be in [0, 1)"),
        (lambda r: r["quantization"].update(quant_type="int3"), "quantization.quant_type: got 'int3'"),
        (lambda r: r["prompt"].update(template="no placeholder"), "prompt.template: must contain"),
        (lambda r: r["generate"].update(max_new_tokens=4096), "generate.max_new_tokens"),
        (lambda r: r["evaluate"].update(metrics=["rouge", "bleurt"]), "evaluate.metrics: unknown bleurt"),
        (lambda r: r["qualitative"].update(top_k=-1), "qualitative.top_k: must be >= 0"),
    ],
)
def test_bad_params_name_the_key(raw, edit, message):
    bad = copy.deepcopy(raw)
    edit(bad)
    with pytest.raises(ParamsError) as error:
        parse_params(bad)
    assert message in str(error.value)


def test_int_is_accepted_where_a_float_is_expected(raw):
    raw["train"]["learning_rate"] = 1
    assert parse_params(raw).train.learning_rate == 1.0


def test_params_read_yaml_1_2_floats_like_dvc(tmp_path):
    text = committed_params_text().replace("learning_rate: 2.0e-4", "learning_rate: 1e-4")
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
        (b"seed: 42\nlora: [\n", "not valid YAML: while parsing a flow node expected the node content, but found"),
    ],
)
def test_an_unreadable_params_file_is_one_line(tmp_path, content, message):
    (tmp_path / "params.yaml").write_bytes(content)
    with pytest.raises(ParamsError) as error:
        load_params(tmp_path / "params.yaml")
    assert str(error.value).startswith(f"{tmp_path / 'params.yaml'}: {message}")
    assert "\n" not in str(error.value)
