"""Failing early and cleanly: stages through their click mains in process (CliRunner in a temporary working
directory), a few real processes for "one line, no traceback, exit 1" end to end, atomic writes under SIGKILL."""

import contextlib
import csv
import errno
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from phisum.params import load_params, read_yaml
from tests.helpers import (
    ROOT,
    VENV_BIN,
    checkpoint_written,
    command_env,
    copy_project,
    invoke_stage,
    one_error_line,
    run,
    set_params,
    stage_command,
    stage_env,
    write_bad_params,
)

# The checker's messages are tested in-process (tests/test_params.py); these prove the path through a real
# stage process: a value rule, a cross-field rule, and a file that is no YAML.
BAD_PARAMS_END_TO_END = [
    ({"lora": {"r": "16"}}, "lora.r: expected int, got '16'"),
    ({"train": {"save_steps": 5000}}, "train.save_steps: 5000 > train.max_steps 1000: no checkpoint would be"),
    (("lora:\n", "lora: [\n"), "params.yaml: not valid YAML"),
]


@pytest.mark.parametrize(("edit", "expected"), BAD_PARAMS_END_TO_END, ids=[e for _, e in BAD_PARAMS_END_TO_END])
def test_bad_params_fail_in_one_line_before_any_work(tmp_path, edit, expected):
    write_bad_params(tmp_path, edit)  # no data and no model here: any real work would fail differently
    command = stage_command("prepare")
    done = subprocess.run(command, cwd=tmp_path, env=stage_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr[-2000:]
    errors = done.stderr.splitlines()  # the whole of stderr: no traceback, no warnings before it
    assert len(errors) == 1 and errors[0].startswith(f"Error: {expected}"), done.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_a_lora_typo_stops_dvc_repro_before_prepare_does_any_work(tmp_path):
    from tests.helpers import copy_project

    repo = copy_project(tmp_path)
    set_params(repo, {"lora": {"dropout": 2.0}})
    output = run([str(VENV_BIN / "dvc"), "repro"], repo, check=False)
    assert "Error: lora.dropout: must be in [0, 1), got 2.0" in output
    assert "failed to reproduce 'prepare'" in output
    assert not (repo / "data/prepared").exists()


# Writes "0" * N atomically and says so, then writes "1" * N but stops at one point inside that write (after
# half the text, or with the temporary file whole and not yet renamed), says so and waits there to be killed.
WRITER = """
import os, sys
from pathlib import Path
import phisum.files as files
target, stop_at = Path(sys.argv[1]), sys.argv[2]
size = 5_000_000

def stop(where):
    print(where, flush=True)
    sys.stdin.readline()  # never answered: the test kills this process here

files.write_text(target, "0" * size)
print("written", flush=True)
real_fdopen, real_replace = os.fdopen, os.replace

class HalfThenStop:
    def __init__(self, handle):
        self.handle = handle
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        return self.handle.__exit__(*exc)
    def write(self, text):
        self.handle.write(text[: len(text) // 2])
        self.handle.flush()
        stop("half")

if stop_at == "half":
    os.fdopen = lambda *args, **kwargs: HalfThenStop(real_fdopen(*args, **kwargs))
else:
    os.replace = lambda src, dst: stop("before-rename")
files.write_text(target, "1" * size)
"""


@pytest.mark.parametrize("stop_at", ["half", "before-rename"])
def test_sigkill_mid_write_leaves_the_old_file_or_the_new_one_never_half(tmp_path, stop_at):
    """Killed inside a write (waits for the writer to say where it is, never for a number of seconds)."""
    target = tmp_path / "metrics.json"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(target), stop_at],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout.readline() == "written\n"
    assert target.read_text() == "0" * 5_000_000
    assert writer.stdout.readline() == f"{stop_at}\n"  # inside the second write now
    (temp,) = [p for p in tmp_path.iterdir() if p != target]
    assert temp.name.startswith(".metrics.json.") and temp.stat().st_size == (
        2_500_000 if stop_at == "half" else 5_000_000
    )
    writer.kill()
    writer.communicate()
    assert writer.returncode == -signal.SIGKILL
    assert target.read_text() == "0" * 5_000_000  # the previous file, whole
    leftovers = [p for p in tmp_path.iterdir() if p != target]
    assert [p.name.startswith(".metrics.json.") for p in leftovers] == [True]  # a temp file, never the real name


def test_committed_params_have_no_secrets():
    def leaves(node, prefix=""):
        for key, value in node.items():
            yield from leaves(value, f"{prefix}{key}.") if isinstance(value, dict) else [(f"{prefix}{key}", value)]

    for key, value in leaves(read_yaml((ROOT / "params.yaml").read_text())):
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
    from tests.helpers import copy_project

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


# Names that resolve to nothing, without the hub: (param overrides, the start of the one-line error).
MISSING_NAMES = [
    ({"model": {"name": ""}}, "model.name: empty; set a hub id (e.g. microsoft/phi-2) or a local model directory"),
    ({"model": {"name": "./models/phi-2-local"}}, "model.name: './models/phi-2-local' is no directory under "),
    ({"model": {"name": "weights"}}, "model.name: weights has no config.json; use a directory saved by"),
    ({"data": {"source": ""}}, "data.source: empty; set a hub dataset id (e.g. neil-code/dialogsum-test)"),
    ({"data": {"source": "/no/such/dialogsum"}}, "data.source: '/no/such/dialogsum' is no directory under "),
    ({"data": {"source": "params.yaml"}}, "data.source: params.yaml is a file; point it at the directory"),
]
QUEUE_HINT = "a queued experiment (dvc exp run --queue) sees only git- or DVC-tracked files"


def nothing_written(stage_dir: Path) -> bool:
    return sorted(p.name for p in stage_dir.iterdir()) == ["dialogsum", "params.yaml", "weights"]


@pytest.mark.parametrize(("overrides", "expected"), MISSING_NAMES, ids=[e[:40] for _, e in MISSING_NAMES])
def test_names_that_resolve_to_nothing_stop_prepare_in_one_line(tiny_stage_dir, overrides, expected):
    set_params(tiny_stage_dir, overrides)
    error = one_error_line(invoke_stage("prepare"))
    assert error.startswith(f"Error: {expected}")
    if "no directory under" in expected:
        assert f"no directory under {tiny_stage_dir} and not a hub id" in error and QUEUE_HINT in error
    assert nothing_written(tiny_stage_dir)


def hub_error(cls, message: str):
    import httpx2

    return cls(message, response=httpx2.Response(404, request=httpx2.Request("GET", "https://huggingface.co/api")))


def test_a_revision_the_hub_does_not_have_is_named(tiny_stage_dir, tiny_model_dir, monkeypatch):
    """The hub's answer for an unknown revision (stood in for: there is no hub here)."""
    import datasets.config
    import huggingface_hub
    from huggingface_hub.errors import RevisionNotFoundError

    def no_such_revision(*args, **kwargs):
        raise hub_error(RevisionNotFoundError, "404 Revision Not Found")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_such_revision)
    set_params(tiny_stage_dir, {"model": {"name": "microsoft/phi-2", "revision": "v9"}})
    assert one_error_line(invoke_stage("prepare")) == (
        "Error: model.revision: 'v9' is no commit, branch or tag of microsoft/phi-2; use a full commit hash from "
        "the hub, or null for the latest"
    )
    monkeypatch.undo()
    monkeypatch.chdir(tiny_stage_dir)
    # The data side through datasets' own code: datasets 5.2 turns the hub's RevisionNotFoundError into a
    # DatasetNotFoundError (its __cause__), which reads like a dataset that does not exist.
    asked = []

    def no_such_dataset_revision(self, *args, **kwargs):
        asked.append(kwargs.get("revision"))
        raise hub_error(RevisionNotFoundError, "404 Revision Not Found")

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.HfApi, "hf_hub_download", no_such_dataset_revision)
    set_params(tiny_stage_dir, {"model": {"name": str(tiny_model_dir)}})
    set_params(tiny_stage_dir, {"data": {"source": "neil-code/dialogsum-test", "revision": "v9"}})
    assert one_error_line(invoke_stage("prepare")) == (
        "Error: data.revision: 'v9' is no commit, branch or tag of neil-code/dialogsum-test; use a full commit hash "
        "from the hub, or null for the latest"
    )
    assert asked == ["v9"]  # the stand-in was reached: the message came from datasets' wrapping of it
    assert nothing_written(tiny_stage_dir)


OFFLINE_NAMES = [
    ("prepare", {"data": {"source": "nobody/no-such-data"}}, "data.source: 'nobody/no-such-data'"),
    ("train", {"model": {"name": "models/tiny-phi"}}, "model.name: 'models/tiny-phi'"),
    ("generate@base", {"model": {"name": "models/tiny-phi"}}, "model.name: 'models/tiny-phi'"),
]


@pytest.mark.parametrize(
    ("run", "overrides", "expected"), OFFLINE_NAMES, ids=["prepare-data", "train-model", "generate"]
)
def test_offline_hub_names_fail_in_one_line_in_every_stage_that_loads_them(
    tiny_stage_dir, monkeypatch, run, overrides, expected
):
    """models/tiny-phi in a queued experiment: the CPU profile's model directory is not in git."""
    import datasets.config
    import huggingface_hub.constants

    for config in (huggingface_hub.constants, datasets.config):  # as HF_HUB_OFFLINE=1 in the environment does
        monkeypatch.setattr(config, "HF_HUB_OFFLINE", True)
    set_params(tiny_stage_dir, overrides)
    error = one_error_line(invoke_stage(run))
    assert error.startswith(f"Error: {expected} is no directory under {tiny_stage_dir}, and the hub is unreachable")
    assert QUEUE_HINT in error
    assert nothing_written(tiny_stage_dir)


# bitsandbytes chooses its CPU 4-bit kernels at import by whether the CPU has AVX512-BF16 (and then logs a warning
# when the optional `kernels` package is missing): both branches, forced, whatever this machine has.
BNB_CPU_BRANCHES = pytest.mark.parametrize("avx512bf16", ["0", "1"], ids=["no-avx512bf16", "avx512bf16"])


def forced_bnb_branch(avx512bf16: str) -> dict[str, str]:
    """Environment entries that force bitsandbytes' CPU branch in a subprocess (tests/process_hooks)."""
    return {"PYTHONPATH": f"{ROOT / 'tests' / 'process_hooks'}:{ROOT}", "PHISUM_TEST_AVX512BF16": avx512bf16}


@BNB_CPU_BRANCHES
def test_importing_peft_prints_nothing_on_either_bitsandbytes_cpu_branch(avx512bf16):
    script = (
        "import logging, phisum, peft\n"
        "from bitsandbytes.backends.cpu import ops\n"
        "print(hasattr(ops, 'gemm_4bit_forward_kernel'))\n"
        # the filter is narrow: the same warning for another cause is still shown
        "logging.getLogger('bitsandbytes.backends.cpu.ops').warning("
        "'Failed to load CPU gemm_4bit_forward from kernels-community: 401 Client Error')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=command_env(forced_bnb_branch(avx512bf16)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == {"0": "False\n", "1": "True\n"}[avx512bf16]  # the branch was taken
    assert done.stderr == "Failed to load CPU gemm_4bit_forward from kernels-community: 401 Client Error\n"


@BNB_CPU_BRANCHES
def test_a_stage_process_stops_in_one_line_with_exit_1_and_no_traceback(tiny_stage_dir, avx512bf16):
    """End to end, as DVC runs a stage (`python -m stages.train` and dvc.yaml's options): the in-process tests
    above check the messages, this one that the process prints nothing else, on both bitsandbytes CPU branches."""
    set_params(tiny_stage_dir, {"model": {"name": "models/tiny-phi"}})
    command = stage_command("train")
    env = {**stage_env(), **forced_bnb_branch(avx512bf16)}
    done = subprocess.run(command, cwd=tiny_stage_dir, env=env, capture_output=True, text=True, timeout=300)
    assert (done.returncode, done.stdout) == (1, ""), done.stderr[-2000:]
    assert done.stderr.startswith("Error: model.name: 'models/tiny-phi' is no directory under ")
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert nothing_written(tiny_stage_dir)


def test_curves_stay_whole_when_training_dies_in_the_middle_of_an_append(tmp_path, monkeypatch):
    """DVCLive appends to its .tsv files; the published curves must never hold a torn line."""
    from dvclive.plots.metric import Metric
    from transformers import TrainerControl, TrainerState

    from phisum.tracking import DVCLiveCurves

    live_dir = tmp_path / "curves"
    curves, state, control = DVCLiveCurves(live_dir), TrainerState(), TrainerControl()
    curves.on_train_begin(None, state, control)
    for step, loss in [(1, 2.5), (2, 2.25)]:
        state.global_step = step
        curves.on_log(None, state, control, logs={"loss": loss, "learning_rate": 1e-4, "grad_norm": 0.5})

    def torn_append(self, val, **kwargs):
        with open(self.output_path, "a", encoding="utf-8") as handle:
            handle.write("17000000")  # half a row, then the process dies
        raise KeyboardInterrupt

    monkeypatch.setattr(Metric, "dump", torn_append)
    state.global_step = 3
    with pytest.raises(KeyboardInterrupt):
        curves.on_log(None, state, control, logs={"loss": 2.0, "learning_rate": 1e-4, "grad_norm": 0.5})
    with (live_dir / "plots/metrics/train/loss.tsv").open() as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert [(row["step"], row["loss"]) for row in rows] == [("1", "2.5"), ("2", "2.25")]
    assert all(None not in row and None not in row.values() for row in rows)
    assert sorted(p.name for p in (live_dir / "plots/metrics/train").iterdir()) == [
        "grad_norm.tsv",
        "learning_rate.tsv",
        "loss.tsv",
    ]


def test_a_checkpoint_cut_short_is_never_resumed_from(tmp_path):
    from phisum.checkpoints import last_complete_checkpoint

    for step in (10, 20, 30, 40):
        (tmp_path / f"checkpoint-{step}").mkdir()
    for step in (10, 20):
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text('{"global_step": 1}')  # written last
    (tmp_path / "checkpoint-40" / "trainer_state.json").write_text('{"global_step": 4')  # killed inside that write
    assert last_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-20"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-10", "checkpoint-20"]


SHORT_TRAINING = {"train": {"max_steps": 40, "save_steps": 10, "eval_steps": 40, "logging_steps": 10, "eval_rows": 2}}


@pytest.mark.slow
def test_ctrl_c_during_training_keeps_a_checkpoint_says_so_and_the_next_run_resumes(tiny_stage_dir):
    assert invoke_stage("prepare").exit_code == 0
    set_params(tiny_stage_dir, {**SHORT_TRAINING, "lora": {"r": 4}})
    command = stage_command("train")
    process = subprocess.Popen(
        command, cwd=tiny_stage_dir, env=stage_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    while not checkpoint_written(tiny_stage_dir / "models/checkpoints", 10):
        assert process.poll() is None, "training ended before its first checkpoint"
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)  # what Ctrl-C sends
    _, stderr = process.communicate(timeout=120)
    stderr = stderr.decode()
    assert process.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr
    (error,) = [line for line in stderr.splitlines() if line.startswith("Error: ")]
    (kept,) = list((tiny_stage_dir / "models/checkpoints").glob("*/checkpoint-*"))[-1:]
    step = kept.name.split("-")[1]
    assert error == (
        f"Error: interrupted; {kept.relative_to(tiny_stage_dir)} is kept and the previous adapter is unchanged: "
        f"run `dvc repro` with the same params and data to resume from step {step}"
    )
    assert [p.name for p in (tiny_stage_dir / "models").iterdir()] == ["checkpoints"]  # no adapter, no temp dir
    with (tiny_stage_dir / "metrics/curves/plots/metrics/train/loss.tsv").open() as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert rows and all(None not in row and None not in row.values() for row in rows)

    resumed = subprocess.run(command, cwd=tiny_stage_dir, env=stage_env(), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming from {kept.relative_to(tiny_stage_dir)}" in resumed.stdout
    metrics = json.loads((tiny_stage_dir / "metrics/train.json").read_text())
    assert (metrics["resumed_from_step"], metrics["steps"]) == (int(step), 40)
    assert (tiny_stage_dir / "models/adapter/adapter_model.safetensors").is_file()


def fail_nth_output(monkeypatch, failing: int, how: str) -> None:
    """From the `failing`-th output on, the disk is full (/dev/full: real ENOSPC on write) or the directory
    read-only (EROFS at creation). chmod cannot show it: tests run as root, whom permissions do not stop."""
    import phisum.files

    real_mkstemp, calls = tempfile.mkstemp, []

    def mkstemp(*args, **kwargs):
        calls.append(kwargs.get("dir"))
        if len(calls) < failing:
            return real_mkstemp(*args, **kwargs)
        if how == "read-only":
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(kwargs.get("dir")))
        fd, tmp = real_mkstemp(*args, **kwargs)
        os.close(fd)
        return os.open("/dev/full", os.O_WRONLY), tmp

    monkeypatch.setattr(phisum.files.tempfile, "mkstemp", mkstemp)


PREPARE_OUTPUTS = ["data/prepared/train.jsonl", "data/prepared/validation.jsonl", "data/prepared/test.jsonl"]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize(
    ("how", "failing", "path", "reason"),
    [
        ("full", 1, "data/prepared/train.jsonl", "No space left on device"),
        ("full", 4, "metrics/data.json", "No space left on device"),
        ("read-only", 2, "data/prepared/validation.jsonl", "Read-only file system"),
    ],
)
def test_a_full_disk_or_read_only_dir_leaves_the_previous_outputs_and_names_the_path(
    tiny_stage_dir, monkeypatch, how, failing, path, reason
):
    assert invoke_stage("prepare").exit_code == 0
    outputs = [*PREPARE_OUTPUTS, "metrics/data.json"]
    before = {name: (tiny_stage_dir / name).read_bytes() for name in outputs}
    set_params(tiny_stage_dir, {"prompt": {"max_length": 200}})  # a different result, never written
    fail_nth_output(monkeypatch, failing, how)
    assert [one_error_line(invoke_stage("prepare"))] == [
        f"Error: cannot write {path}: {reason}; free disk space or make {Path(path).parent} writable, then rerun "
        "(the previous outputs are unchanged)"
    ]
    assert {name: (tiny_stage_dir / name).read_bytes() for name in outputs} == before
    leftovers = [p.name for d in ("data/prepared", "metrics") for p in (tiny_stage_dir / d).iterdir()]
    assert sorted(leftovers) == ["data.json", "test.jsonl", "train.jsonl", "validation.jsonl"]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_under_dvc_repro_names_what_dvc_removed_and_the_commands_bring_it_back(tmp_path, tiny_model_dir):
    """`dvc repro` deletes a stage's outputs before running it: the message says so, exactly, and its commands work."""
    from phisum.synthetic import write_dataset

    repo = copy_project(tmp_path / "repo")
    write_dataset(repo / "dialogsum", seed=0, sizes={"train": 6, "validation": 3, "test": 3})
    set_params(
        repo,
        {
            "model": {"name": str(tiny_model_dir), "revision": None, "device": "cpu"},
            "data": {"source": "dialogsum", "revision": None},
            "prompt": {"max_length": 256},
            "generate": {"max_new_tokens": 32},
        },
    )
    dvc = str(VENV_BIN / "dvc")
    run([dvc, "repro", "prepare"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "prepared"], repo)  # metrics/data.json (cache: false) committed, as after a run
    outputs = [*PREPARE_OUTPUTS, "metrics/data.json"]
    before = {name: (repo / name).read_bytes() for name in outputs}

    set_params(repo, {"prompt": {"max_length": 200}})  # a different result, never written
    hooks = {"PYTHONPATH": str(ROOT / "tests" / "process_hooks"), "PHISUM_TEST_FULL_DISK_FROM": "2"}
    output = run([dvc, "repro", "prepare"], repo, check=False, extra_env=hooks)
    assert [line for line in output.splitlines() if line.startswith("Error: cannot")] == [
        "Error: cannot write data/prepared/validation.jsonl: No space left on device; free disk space or make "
        "data/prepared writable, then rerun (dvc repro removed prepare's previous outputs before it ran: "
        "`dvc checkout prepare` restores the cached ones, `git checkout -- <file>` the cache: false ones you committed)"
    ], output
    assert [name for name in outputs if (repo / name).exists()] == []  # DVC's doing, before the stage ran

    run([dvc, "checkout", "prepare"], repo)
    run(["git", "checkout", "--", "metrics/data.json"], repo)
    assert {name: (repo / name).read_bytes() for name in outputs} == before


def tree_bytes(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_directory_outputs_are_swapped_whole_with_their_files_or_not_at_all(tmp_path, monkeypatch):
    from phisum.files import WriteError, atomic_outputs, write_text

    final_dir = tmp_path / "adapter"
    for name, text in (("adapter/weights", "old"), ("adapter/prompt.json", "old"), ("train.json", "old")):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / ".adapter.tmp").mkdir()
    (tmp_path / ".adapter.tmp/weights").write_text("half written by a crashed run")
    before = tree_bytes(tmp_path)

    def write_new(outputs) -> None:
        assert list(outputs.dirs[final_dir].iterdir()) == []  # the crashed run's leftovers are gone
        write_text(outputs.dirs[final_dir] / "weights", "new")
        outputs.texts[tmp_path / "train.json"] = "new"

    fail_nth_output(monkeypatch, 2, "full")  # the metrics file, after the directory's file
    with (
        pytest.raises(WriteError, match="cannot write .*train.json: No space left on device"),
        atomic_outputs(final_dir) as outputs,
    ):
        write_new(outputs)
    assert tree_bytes(tmp_path) == {k: v for k, v in before.items() if not k.startswith(".adapter.tmp")}
    monkeypatch.undo()
    with pytest.raises(KeyboardInterrupt), atomic_outputs(final_dir) as outputs:
        write_new(outputs)
        raise KeyboardInterrupt  # Ctrl-C after the writes, before the swap
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter", "train.json"]
    assert (final_dir / "weights").read_text() == "old"
    with atomic_outputs(final_dir) as outputs:
        write_new(outputs)
    assert tree_bytes(tmp_path) == {"adapter/weights": b"new", "train.json": b"new"}


def test_outputs_get_the_mode_open_would_give_and_a_replaced_file_keeps_its_own(tmp_path):
    from phisum.files import write_text

    umask = os.umask(0o022)
    try:
        write_text(tmp_path / "metrics.json", "{}")
        (tmp_path / "params.yaml").write_text("seed: 1\n")
        (tmp_path / "params.yaml").chmod(0o640)
        write_text(tmp_path / "params.yaml", "seed: 2\n")
    finally:
        os.umask(umask)
    assert oct((tmp_path / "metrics.json").stat().st_mode & 0o777) == oct(0o644)  # mkstemp alone gives 0o600
    assert oct((tmp_path / "params.yaml").stat().st_mode & 0o777) == oct(0o640)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_the_cpu_profile_switch_rewrites_params_yaml_whole_or_not_at_all(tmp_path, monkeypatch):
    from phisum.files import WriteError
    from phisum.profile import rewrite_params

    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    before = (tmp_path / "params.yaml").read_bytes()
    fail_nth_output(monkeypatch, 1, "full")
    with pytest.raises(WriteError, match="cannot write params.yaml: No space left on device"):
        rewrite_params({"lora": {"r": 8}})
    assert (tmp_path / "params.yaml").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["params.yaml"]
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    assert rewrite_params({"lora": {"r": 8}}) == ["lora.r: 32 -> 8"]
    assert (tmp_path / "params.yaml").read_text() == (ROOT / "params.yaml").read_text().replace(
        "  r: 32  #", "  r: 8   #", 1
    )


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_during_generate_keeps_the_previous_predictions_and_no_temp_dir(tiny_stage_dir, monkeypatch):
    set_params(tiny_stage_dir, {"generate": {"max_new_tokens": 8, "stress_cases": 2}})
    assert invoke_stage("prepare").exit_code == 0
    assert invoke_stage("generate@base").exit_code == 0
    before = tree_bytes(tiny_stage_dir / "data/predictions")
    assert sorted(before) == ["base/extra.jsonl", "base/meta.json", "base/stress.jsonl", "base/test.jsonl"]
    set_params(tiny_stage_dir, {"generate": {"stress_cases": 3}})  # a different result, never written
    fail_nth_output(monkeypatch, 2, "full")  # stress.jsonl, after test.jsonl
    result = invoke_stage("generate@base")
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]  # after progress bars
    assert result.exit_code == 1 and errors == [
        "Error: cannot write data/predictions/base/stress.jsonl: No space left on device; free disk space or "
        "make data/predictions writable, then rerun (the previous outputs are unchanged)"
    ], result.output
    assert tree_bytes(tiny_stage_dir / "data/predictions") == before
    assert [p.name for p in (tiny_stage_dir / "data/predictions").iterdir()] == ["base"]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_during_evaluate_leaves_every_previous_output(tmp_path, monkeypatch):
    """Scores, metrics and plots describe one run: a full disk midway keeps all of the previous ones."""
    from tests.helpers import write_predictions

    write_predictions(tmp_path, {"metrics": ["rouge", "bleu", "length"], "bootstrap_resamples": 50})
    monkeypatch.chdir(tmp_path)
    assert invoke_stage("evaluate").exit_code == 0
    outputs = sorted(p for d in ("data/scored", "metrics") for p in (tmp_path / d).rglob("*") if p.is_file())
    assert len(outputs) == 4 + 4 + 4  # scored test/stress per model, 4 metrics files, 4 plot files
    before = {path: path.read_bytes() for path in outputs}
    for model in ("base", "peft"):  # new predictions for both: every output would change
        test_path = tmp_path / f"data/predictions/{model}/test.jsonl"
        test_path.write_text(test_path.read_text().replace("Jack is late", "Jack is never late"))
    fail_nth_output(monkeypatch, 5, "full")  # after both models' scored files, at the first metrics file
    assert "No space left on device" in one_error_line(invoke_stage("evaluate"))
    assert {path: path.read_bytes() for path in outputs} == before
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["predictions", "scored"]  # no temp dir
    assert sorted(p.name for p in (tmp_path / "data/scored").iterdir()) == ["base", "peft"]


# (device, compute capability faked, compute dtype) -> the dtype the NaN/inf messages advise; a T4 (7.5) refuses
# bfloat16, so below 8.0 they advise float32 compute.
NON_FINITE_ADVICE = [
    ("cuda", (7, 5), "float16", "set quantization.compute_dtype: float32 (compute capability 7.5 has no bfloat16)"),
    ("cuda", (7, 0), "float16", "set quantization.compute_dtype: float32 (compute capability 7.0 has no bfloat16)"),
    ("cuda", (8, 0), "float16", "set quantization.compute_dtype: bfloat16"),
    ("cuda", (9, 0), "float16", "set quantization.compute_dtype: bfloat16"),
    ("cuda", (8, 6), "bfloat16", "set quantization.compute_dtype: float32"),
    ("cpu", None, "bfloat16", "set quantization.compute_dtype: float32"),
]


@pytest.mark.parametrize(("device", "capability", "dtype", "advice"), NON_FINITE_ADVICE)
def test_non_finite_loss_and_scores_advise_a_dtype_the_device_runs(monkeypatch, device, capability, dtype, advice):
    import torch

    from phisum.generation import non_finite_scores_message
    from phisum.training import non_finite_loss_message

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *args: capability)
    cause = "fp16 overflow" if dtype == "float16" else "low bfloat16 precision"
    assert non_finite_loss_message(float("nan"), 7, device, getattr(torch, dtype)) == (
        f"non-finite training loss (nan) at step 7 at compute dtype {dtype}; likely {cause} or a learning rate too "
        f"high: {advice} or lower train.learning_rate"
    )
    assert non_finite_scores_message(["t1", "t2"], device, getattr(torch, dtype)) == (
        f"non-finite next-token scores (NaN/inf) for rows t1, t2 at compute dtype {dtype}; likely {cause} in "
        f"attention ({advice}) or a fused attention kernel failing on left-padded rows (set generate.batch_size: 1 "
        "to confirm)"
    )


def test_non_finite_loss_and_scores_at_float32_advise_no_dtype():
    import torch

    from phisum.generation import non_finite_scores_message
    from phisum.training import non_finite_loss_message

    assert non_finite_loss_message(float("inf"), 3, "cuda", torch.float32) == (
        "non-finite training loss (inf) at step 3 at compute dtype float32; likely a learning rate too high: "
        "lower train.learning_rate"
    )
    assert non_finite_scores_message(["t1"], "cpu", torch.float32) == (
        "non-finite next-token scores (NaN/inf) for rows t1 at compute dtype float32; likely a fused attention "
        "kernel failing on left-padded rows (set generate.batch_size: 1 to confirm)"
    )


def process_ended(pid: int) -> bool:
    """Whether process `pid` has exited (a zombie no one has reaped yet counts as ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True


def start_relaunching_stage(tmp_path, tiny_model_dir, monkeypatch, num_processes: int):
    """The train stage on two faked GPUs, relaunching itself (one GPU, or torchrun), its training processes waiting
    for a signal (tests/process_hooks); a complete checkpoint of its run kept from before. Returns the process,
    the pids of the training processes, the stderr file and the `Error:` line the stage owes on interrupt."""
    from phisum.checkpoints import run_fingerprint
    from tests.helpers import cpu_profile_text, write_prepared

    monkeypatch.chdir(tmp_path)
    overrides = {"model": {"device": "cuda"}, "train": {"num_processes": num_processes}}
    (tmp_path / "params.yaml").write_text(cpu_profile_text(tiny_model_dir, overrides))
    kept = Path("models/checkpoints") / run_fingerprint(load_params(), write_prepared(Path("data/prepared")))
    kept /= "checkpoint-20"
    kept.mkdir(parents=True)
    (kept / "trainer_state.json").write_text('{"global_step": 20}')
    stderr_path = tmp_path / "stderr.txt"
    env = {**stage_env(), "PYTHONPATH": f"{ROOT / 'tests' / 'process_hooks'}:{ROOT}", "PHISUM_TEST_GPUS": "2"}
    process = subprocess.Popen(
        stage_command("train"),
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=stderr_path.open("w"),
        text=True,
        start_new_session=True,  # its own process group, as a shell gives a command: Ctrl-C goes to the group
    )
    pids = []
    while len(pids) < num_processes:
        line = process.stdout.readline()
        assert line, f"the stage ended before training:\n{stderr_path.read_text()[-3000:]}"
        if line.startswith("waiting for a signal: "):
            pids.append(int(line.split(" pid ")[1]))
    error = (
        f"Error: interrupted; {kept} is kept and the previous adapter is unchanged: run `dvc repro` with the same "
        "params and data to resume from step 20"
    )
    return process, pids, stderr_path, error


@pytest.mark.parametrize("num_processes", [1, 2], ids=["one-gpu-relaunch", "torchrun"])
@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_a_relaunched_train_stage_passes_ctrl_c_and_sigterm_on_and_exits_as_its_child(
    tmp_path, tiny_model_dir, monkeypatch, num_processes, how
):
    process, pids, stderr_path, error = start_relaunching_stage(tmp_path, tiny_model_dir, monkeypatch, num_processes)
    try:
        if how == "ctrl-c":
            os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
        else:
            process.send_signal(signal.SIGTERM)  # a notebook's stop or a job scheduler: the stage's process
        process.wait(timeout=300)
        stderr = stderr_path.read_text()
        assert process.returncode == (130 if how == "ctrl-c" else 143), stderr[-3000:]
        assert [line for line in stderr.splitlines() if line.startswith("Error")] == [error], stderr[-3000:]
        assert "Traceback" not in stderr, stderr[-3000:]
        assert [pid for pid in pids if not process_ended(pid)] == []  # no training process left holding a GPU
    finally:
        for pid in pids:  # what a failure left behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_a_relaunched_train_stage_whose_parent_is_killed_stops_too(tmp_path, tiny_model_dir, monkeypatch):
    process, [pid], stderr_path, error = start_relaunching_stage(tmp_path, tiny_model_dir, monkeypatch, 1)
    process.kill()  # SIGKILL: nothing to pass on; the child was told to take SIGTERM when its parent dies
    process.wait()
    deadline = time.monotonic() + 120  # a bound on a hang, not a wait: the loop ends when the child does
    try:
        while not process_ended(pid):
            assert time.monotonic() < deadline, f"the child outlived its parent:\n{stderr_path.read_text()[-3000:]}"
            time.sleep(0.1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert error in stderr_path.read_text().splitlines()
