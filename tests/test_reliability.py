"""Failing early and cleanly: bad params through the real CLI, atomic writes under SIGKILL."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from phisum.params import read_yaml
from tests.conftest import ROOT, VENV_BIN, run, set_params
from tests.test_params import committed_params_text

# (edit to params.yaml as text, or a dict of overrides) -> the start of the one-line error
BAD_PARAMS = [
    ({"lora": {"r": 0}}, "lora.r: must be > 0"),
    ({"lora": {"r": "16"}}, "lora.r: expected int, got '16'"),
    ({"lora": {"dropout": 1.5}}, "lora.dropout: must be in [0, 1)"),
    ({"lora": {"target_modules": []}}, "lora.target_modules: expected a non-empty list"),
    ({"train": {"learning_rate": 0}}, "train.learning_rate: must be > 0"),
    ({"train": {"learning_rate": -2.0e-4}}, "train.learning_rate: must be > 0"),
    ({"train": {"batch_size": 0}}, "train.batch_size: must be > 0"),
    ({"train": {"max_steps": 0}}, "train.max_steps: must be > 0"),
    ({"train": {"optim": "adamw_9bit"}}, "train.optim: got 'adamw_9bit', allowed: paged_adamw_8bit"),
    ({"train": {"save_steps": 5000}}, "train.save_steps: 5000 > train.max_steps 1000"),
    ({"train": {"gradient_checkpointing": "yes"}}, "train.gradient_checkpointing: expected bool"),
    ({"quantization": {"quant_type": "int4"}}, "quantization.quant_type: got 'int4', allowed: nf4, fp4"),
    ({"quantization": {"compute_dtype": "float8"}}, "quantization.compute_dtype: got 'float8'"),
    ({"data": {"on_bad_rows": "skip"}}, "data.on_bad_rows: got 'skip', allowed: error, drop"),
    ({"generate": {"max_new_tokens": 2048}}, "generate.max_new_tokens: 2048 leaves no room for the prompt"),
    ({"evaluate": {"metrics": ["rouge", "bleurt"]}}, "evaluate.metrics: unknown bleurt"),
    ({"prompt": {"template": "Summarize: {text}"}}, "prompt.template: must contain the placeholder {dialogue}"),
    ({"qualitative": {"random_examples": -1}}, "qualitative.random_examples: must be >= 0"),
    (("lora:\n  r: 32", "lora:\n  rank: 8\n  r: 32"), "lora.rank: unknown key (allowed here: r, alpha"),
    (("\n  alpha: 32  #", "\n  #"), "lora.alpha: missing key"),
    (("seed: 42", "seed: 42\nepochs: 3"), "epochs: unknown key"),
    (("lora:\n", "lora: [\n"), "params.yaml: not valid YAML"),
]


@pytest.fixture(scope="module")
def stage_dir(tmp_path_factory) -> Path:
    """A working directory for stage scripts, with no data and no model: any real work would fail."""
    return tmp_path_factory.mktemp("stage")


@pytest.mark.parametrize(("edit", "expected"), BAD_PARAMS, ids=[e for _, e in BAD_PARAMS])
def test_bad_params_fail_in_one_line_before_any_work(stage_dir, edit, expected):
    text = committed_params_text()
    if isinstance(edit, tuple):
        assert edit[0] in text
        (stage_dir / "params.yaml").write_text(text.replace(edit[0], edit[1], 1))
    else:
        (stage_dir / "params.yaml").write_text(text)
        set_params(stage_dir, edit)
    done = subprocess.run(
        [sys.executable, str(ROOT / "stages/prepare.py")], cwd=stage_dir, capture_output=True, text=True, timeout=120
    )
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error: ")]
    assert done.returncode != 0
    assert len(errors) == 1 and errors[0].startswith(f"Error: {expected}"), done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert not (stage_dir / "data").exists() and not (stage_dir / "metrics").exists()


def test_a_lora_typo_stops_dvc_repro_before_prepare_does_any_work(tmp_path):
    from tests.conftest import copy_project

    repo = copy_project(tmp_path)
    set_params(repo, {"lora": {"dropout": 2.0}})
    output = run([str(VENV_BIN / "dvc"), "repro"], repo, check=False)
    assert "Error: lora.dropout: must be in [0, 1), got 2.0" in output
    assert "failed to reproduce 'prepare'" in output
    assert not (repo / "data/prepared").exists()


WRITER = """
import sys, itertools
from pathlib import Path
from phisum.files import write_text
for n in itertools.count():
    write_text(Path(sys.argv[1]), str(n % 10) * 20_000_000)
"""


def test_sigkill_mid_write_leaves_the_old_file_or_the_new_one_never_half(tmp_path):
    target = tmp_path / "metrics.json"
    for attempt in range(5):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], cwd=ROOT)
        time.sleep(0.6 + 0.13 * attempt)  # somewhere inside a write
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
        if target.exists():
            content = target.read_text()
            assert len(content) == 20_000_000 and len(set(content)) == 1
    leftovers = [p for p in tmp_path.iterdir() if p.name != "metrics.json"]
    assert all(p.name.startswith(".metrics.json.") for p in leftovers)  # temp files, never the real name


def test_committed_params_have_no_secrets():
    def leaves(node, prefix=""):
        for key, value in node.items():
            yield from leaves(value, f"{prefix}{key}.") if isinstance(value, dict) else [(f"{prefix}{key}", value)]

    for key, value in leaves(read_yaml(committed_params_text())):
        assert key.split(".")[-1] not in ("token", "hf_token", "secret", "password"), key
        assert not str(value).startswith("hf_"), key


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        (
            "train.csv",
            b"id,dialogue,summary,topic\ntrain_0,#Person1#: caf\xe9,ok,t\n",
            "train.csv line 2: bytes that are",
        ),
        ("test.csv", "id,dialogue,summary,topic\nt_1,#Person1#: Hi.,Hi.,t\nt_1,#Person1#: Yo.,Yo.,t\n", "duplicate id"),
        ("test.csv", 'id,dialogue,summary,topic\nt_1,"#Person1#: Hi.,Hi.,t\n', "test.csv line 2: broken CSV quoting"),
    ],
)
def test_make_demo_with_bad_data_stops_naming_file_and_row(tmp_path, name, content, expected):
    from phisum.synthetic import write_dataset
    from tests.conftest import copy_project

    repo = copy_project(tmp_path / "repo")
    data_dir = tmp_path / "data"
    write_dataset(data_dir, seed=0, sizes={"train": 20, "validation": 5, "test": 5})
    path = data_dir / name
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    venv = VENV_BIN.parent
    output = run(["make", "-o", f"{venv}/.installed", "demo", f"VENV={venv}", f"DATA={data_dir}"], repo, check=False)
    errors = [line for line in output.splitlines() if line.startswith("Error: ")]
    assert errors and expected in errors[0], output[-3000:]
    assert "Traceback" not in output
    assert not (repo / "metrics/base.json").exists()
