"""The train stage through its real CLI on the tiny model: resume, NaN stop, merge, process planning."""

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import trl.kernels.chunked_logprob
from click.testing import CliRunner
from transformers import AutoTokenizer, PhiForCausalLM

from phisum.checkpoints import run_fingerprint
from phisum.export import load_unquantized_with_adapter, merge_adapter
from phisum.params import load_params
from phisum.profile import apply_overrides
from phisum.training import plan_processes, select_loss_kernels
from stages import generate as generate_stage
from stages import train as train_stage
from tests.helpers import (
    ROOT,
    VENV_BIN,
    checkpoint_written,
    command_env,
    copy_project,
    cpu_profile_params,
    cpu_profile_text,
    run,
    set_params,
    stage_args,
    write_prepared,
)

PYTHON = str(VENV_BIN / "python")
DVC = str(VENV_BIN / "dvc")
SHORT_RUN = {"train": {"max_steps": 60, "save_steps": 20, "eval_steps": 20, "logging_steps": 20}}


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A project copy on the CPU profile, shortened to 60 steps, with prepare done."""
    repo = copy_project(tmp_path_factory.mktemp("train"))
    run([PYTHON, "-m", "phisum.profile", "--pretrain-steps", "0"], repo)  # training mechanics, not learning
    set_params(repo, SHORT_RUN)
    run([DVC, "repro", "prepare"], repo)
    return repo


def workspace_like(repo: Path, dest: Path, overrides: dict) -> Path:
    """Another project copy with repo's CPU-profile params, tiny model and prepared data, plus overrides."""
    copy = copy_project(dest)
    for name in ("params.yaml", "models/tiny-phi", "data/prepared"):
        run(["cp", "-r", str(repo / name), str((copy / name).parent)], repo)
    set_params(copy, overrides)
    return copy


def train_metrics(repo: Path) -> dict:
    return json.loads((repo / "metrics/train.json").read_text())


PERSISTENT_RUN = {"train": {"max_steps": 30, "save_steps": 10, "eval_steps": 10, "logging_steps": 10}}


def fresh_clone(repo: Path, dest: Path) -> Path:
    """A clone as a notebook runtime makes it: repo's CPU-profile params, tiny model and dataset; nothing run."""
    clone = workspace_like(repo, dest, PERSISTENT_RUN)
    shutil.rmtree(clone / "data/prepared")
    shutil.copytree(repo / "data/synthetic", clone / "data/synthetic")
    return clone


@pytest.mark.slow
def test_a_fresh_clone_resumes_from_checkpoints_on_persistent_storage(repo, tmp_path):
    """A notebook runtime reset: the clone is gone, PHISUM_CHECKPOINT_DIR's storage stays, a new clone resumes.

    Also the plain killed run (SIGKILL of `dvc repro` and its stage): no adapter, a resume to the loss of the
    uninterrupted run; a resume from the default models/checkpoints is tests/test_reliability.py's Ctrl-C test.
    """
    storage = tmp_path / "drive" / "phisum-checkpoints"  # not there yet: the stage creates it
    persistent = {"PHISUM_CHECKPOINT_DIR": str(storage)}
    first = fresh_clone(repo, tmp_path / "first")
    log = tmp_path / "first.log"
    process = subprocess.Popen(
        [DVC, "repro", "train"],
        cwd=first,
        env=command_env(persistent),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    while not checkpoint_written(storage, 10):
        assert process.poll() is None, f"training ended before its first checkpoint:\n{log.read_text()[-3000:]}"
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)  # the runtime goes, and its disk with it
    process.wait()
    assert not (first / "models/adapter/adapter_model.safetensors").exists()
    shutil.rmtree(first)

    second = fresh_clone(repo, tmp_path / "second")  # in another directory
    output = run([DVC, "repro", "train"], second, extra_env=persistent)
    (kept,) = re.findall(r"resuming from (\S+)", output)
    assert Path(kept).parent.parent == storage, output
    resumed = train_metrics(second)
    assert (resumed["resumed_from_step"], resumed["steps"]) == (int(kept.rsplit("-", 1)[1]), 30)
    assert resumed["resumed_from_step"] in (10, 20)
    loss_rows = (second / "metrics/curves/plots/metrics/train/loss.tsv").read_text().splitlines()
    assert len(loss_rows) == 1 + 30  # the whole curve, rebuilt from the checkpoint's history
    assert list(storage.iterdir()) == [] and not (second / "models/checkpoints").exists()  # the storage stays
    # The variable is no part of the stage's DVC identity: without it, DVC sees the run as done.
    assert "Data and pipelines are up to date." in run([DVC, "status", "train"], second)

    run([DVC, "repro", "--force", "train"], second)  # the same run, uninterrupted, checkpoints in the clone
    uninterrupted = train_metrics(second)
    assert uninterrupted["resumed_from_step"] == 0
    assert abs(resumed["last_loss"] - uninterrupted["last_loss"]) < 1e-4
    assert abs(resumed["last_eval_loss"] - uninterrupted["last_eval_loss"]) < 1e-4
    print(f"final loss resumed in a fresh clone {resumed['last_loss']} vs uninterrupted {uninterrupted['last_loss']}")


@pytest.mark.slow
def test_non_finite_loss_stops_at_once_and_writes_no_adapter(repo, tmp_path):
    nan_repo = workspace_like(repo, tmp_path, {"train": {"learning_rate": 1.0e30}})
    output = run([PYTHON, "-m", "stages.train", *stage_args("train")], nan_repo, check=False)
    assert "Error: non-finite training loss" in output and "at step" in output
    # float32 on the CPU: no other dtype to advise
    assert "at compute dtype float32; likely a learning rate too high: lower train.learning_rate" in output
    assert "Traceback" not in output
    assert not (nan_repo / "models/adapter").exists()
    assert not list((nan_repo / "models").glob(".adapter*"))


@pytest.mark.slow
def test_merged_model_matches_base_plus_adapter_greedy(repo, tmp_path, monkeypatch):
    monkeypatch.chdir(repo)  # the adapter names its base model by the path params.yaml gave, relative to the repo
    if not (repo / "models/adapter/adapter_model.safetensors").exists():
        run([DVC, "repro", "train"], repo)
    adapter_dir = repo / "models/adapter"
    merge_adapter(adapter_dir, tmp_path / "merged")
    assert (tmp_path / "merged/model.safetensors").exists()
    merged = PhiForCausalLM.from_pretrained(tmp_path / "merged").eval()
    unmerged = load_unquantized_with_adapter(adapter_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "merged")
    prompts = [json.loads(line)["prompt"] for line in (repo / "data/prepared/test.jsonl").read_text().splitlines()[:4]]
    for prompt in prompts:
        inputs = tokenizer(prompt, return_tensors="pt")
        kwargs = {"max_new_tokens": 20, "do_sample": False, "pad_token_id": tokenizer.eos_token_id}
        assert torch.equal(merged.generate(**inputs, **kwargs), unmerged.generate(**inputs, **kwargs))


@pytest.mark.slow
def test_two_cpu_processes_train_data_parallel(repo, tmp_path):
    overrides = {"train": {"num_processes": 2, "max_steps": 20, "eval_steps": 10, "save_steps": 10}}
    ddp_repo = workspace_like(repo, tmp_path, overrides)
    started = time.perf_counter()
    run([PYTHON, "-m", "stages.train", *stage_args("train")], ddp_repo)
    metrics = train_metrics(ddp_repo)
    assert (metrics["processes"], metrics["steps"]) == (2, 20)
    assert (ddp_repo / "models/adapter/adapter_model.safetensors").exists()
    assert len((ddp_repo / "metrics/curves/plots/metrics/train/loss.tsv").read_text().splitlines()) == 21
    print(f"2-process CPU run of 20 steps: {time.perf_counter() - started:.1f} s wall")


def test_one_process_sees_only_the_first_visible_gpu():
    assert plan_processes(1, "cuda", 2, None) == {"CUDA_VISIBLE_DEVICES": "0"}
    assert plan_processes(1, "cuda", 2, "3,5") == {"CUDA_VISIBLE_DEVICES": "3"}
    assert plan_processes(1, "cuda", 1, None) == {}
    assert plan_processes(2, "cuda", 4, None) == {}  # torchrun: one GPU per process by LOCAL_RANK
    assert plan_processes(2, "cpu", 0, None) == {}  # gloo processes


@pytest.fixture()
def two_gpus(tmp_path, monkeypatch):
    """The committed params in an empty directory, CUDA simulated with two GPUs, relaunches recorded."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    calls = []
    monkeypatch.setattr(train_stage, "run_child", lambda args, env=None: calls.append((args, env)) or 0)
    return train_stage, calls


def test_train_stage_with_two_gpus_and_one_process_reruns_itself_on_the_first(two_gpus):
    train, calls = two_gpus
    result = CliRunner().invoke(train.main, stage_args("train"))
    assert result.exit_code == 0, result.output
    [(args, env)] = calls
    assert args == ["-m", "stages.train", *stage_args("train")]
    assert env["CUDA_VISIBLE_DEVICES"] == "0"
    assert "1 process and 2 GPUs visible: training on GPU 0 only" in result.output


def test_more_processes_than_visible_gpus_is_a_params_error(two_gpus, tmp_path):
    train, calls = two_gpus
    text, _ = apply_overrides((ROOT / "params.yaml").read_text(), {"train": {"num_processes": 4}})
    (tmp_path / "params.yaml").write_text(text)
    result = CliRunner().invoke(train.main, stage_args("train"))
    assert result.exit_code == 1
    assert result.output == (
        "Error: train.num_processes: 4 processes need one GPU each, 2 visible; set it to 2 or fewer "
        "(or make more GPUs visible)\n"
    )
    assert calls == [] and list(tmp_path.iterdir()) == [tmp_path / "params.yaml"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the stop shown without a usable GPU")
@pytest.mark.parametrize(("stage", "run"), [("train", "train"), ("generate", "generate@base")])
def test_cuda_device_without_a_usable_gpu_stops_before_any_work(stage, run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    result = CliRunner().invoke({"train": train_stage, "generate": generate_stage}[stage].main, stage_args(run))
    assert result.exit_code == 1
    assert result.output.startswith("Error: model.device: cuda, but CUDA is not usable here (torch ")
    assert result.output.endswith("set model.device: cpu to run on the CPU anyway\n")
    assert list(tmp_path.iterdir()) == [tmp_path / "params.yaml"]


def test_below_compute_capability_8_the_trl_loss_runs_without_triton(monkeypatch):
    kernels = trl.kernels.chunked_logprob
    monkeypatch.setattr(kernels, "_TRITON_AVAILABLE", True)  # as on a CUDA machine, where Triton imports
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *args: (9, 0))
    assert select_loss_kernels("cuda") is True
    assert select_loss_kernels("cpu") is False
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *args: (7, 5))  # a T4
    assert select_loss_kernels("cuda") is False
    assert kernels._use_triton(torch.device("cuda")) is False  # what TRL's chunked log-prob asks


@pytest.mark.parametrize(
    "change",
    [
        {"seed": 7},
        {"lora": {"r": 16}},
        {"train": {"learning_rate": 1.0e-3}},
        {"prompt": {"max_length": 256}},
        {"quantization": {"quant_type": "fp4"}},
        {"model": {"revision": "main"}},
    ],
    ids=lambda change: next(iter(change)),
)
def test_another_training_config_gets_another_run_fingerprint(tmp_path, change):
    fingerprint = run_fingerprint
    data_paths = write_prepared(tmp_path)
    same = fingerprint(cpu_profile_params(tmp_path), data_paths)
    assert fingerprint(cpu_profile_params(tmp_path), data_paths) == same  # equal params read twice
    assert fingerprint(cpu_profile_params(tmp_path, change), data_paths) != same


def test_other_data_gets_another_run_fingerprint_and_later_stages_params_do_not(tmp_path):
    fingerprint = run_fingerprint
    params = cpu_profile_params(tmp_path)
    same = fingerprint(params, write_prepared(tmp_path / "a"))
    assert fingerprint(params, write_prepared(tmp_path / "b")) == same  # the bytes count, not where they are
    assert fingerprint(params, write_prepared(tmp_path / "c", completion="They wave.")) != same
    # Generation, scoring and the report do not change what training does: a checkpoint stays resumable.
    later = {"generate": {"batch_size": 2}, "evaluate": {"metrics": ["rouge"]}, "qualitative": {"top_k": 1}}
    assert fingerprint(cpu_profile_params(tmp_path, later), write_prepared(tmp_path / "a")) == same


def test_a_config_error_in_training_is_one_line_and_stale_checkpoints_are_gone(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad_targets = {"lora": {"target_modules": ["Wqkv", "q_proj"]}}
    Path("params.yaml").write_text(cpu_profile_text(tiny_model_dir, bad_targets))
    own = run_fingerprint(load_params(), write_prepared(Path("data/prepared")))
    for run_id in (own, "0123456789ab"):  # this configuration's run, and another's
        (Path("models/checkpoints") / run_id / "checkpoint-40").mkdir(parents=True)
        (Path("models/checkpoints") / run_id / "checkpoint-40" / "trainer_state.json").write_text("{}")
    Path("models/.adapter.tmp").mkdir()  # left by a crashed run
    result = CliRunner().invoke(train_stage.main, stage_args("train"))
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == (
        "Error: lora.target_modules: Wqkv not found in phi; its linear layers are: "
        "dense, fc1, fc2, k_proj, lm_head, q_proj, v_proj"
    )
    assert "Traceback" not in result.output
    # Only the run with these params and data can resume: the other's checkpoints can never be used.
    assert sorted(path.name for path in Path("models/checkpoints").iterdir()) == [own]
    assert sorted(path.name for path in Path("models").iterdir()) == ["checkpoints"]  # no adapter, no temp dir


def test_checkpoints_on_shared_storage_free_only_other_runs_of_this_stage(tiny_model_dir, tmp_path, monkeypatch):
    """PHISUM_CHECKPOINT_DIR replaces --checkpoint-dir; of what is there, only other configurations' runs go."""
    monkeypatch.chdir(tmp_path)
    storage = tmp_path / "drive"
    monkeypatch.setenv("PHISUM_CHECKPOINT_DIR", str(storage))
    Path("params.yaml").write_text(cpu_profile_text(tiny_model_dir, {"lora": {"target_modules": ["Wqkv"]}}))
    own = run_fingerprint(load_params(), write_prepared(Path("data/prepared")))
    for run_id in (own, "0123456789ab"):  # this configuration's run, and another's
        (storage / run_id / "checkpoint-40").mkdir(parents=True)
    (storage / "fedcba987654" / "my-notes").mkdir(parents=True)  # named like a run, but not one
    (storage / "results").mkdir()
    (storage / "notes.txt").write_text("mine")
    result = CliRunner().invoke(train_stage.main, stage_args("train"))
    assert result.exit_code == 1 and result.output.splitlines()[-1].startswith("Error: lora.target_modules: Wqkv")
    assert f"  checkpoints in {storage / own} (PHISUM_CHECKPOINT_DIR)\n" in result.output
    assert sorted(path.name for path in storage.iterdir()) == sorted([own, "fedcba987654", "notes.txt", "results"])
    assert not Path("models/checkpoints").exists()


def test_a_checkpoint_variable_naming_a_file_is_one_error_line(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("params.yaml").write_text(cpu_profile_text(tiny_model_dir))
    (tmp_path / "drive").write_text("")
    monkeypatch.setenv("PHISUM_CHECKPOINT_DIR", str(tmp_path / "drive"))
    result = CliRunner().invoke(train_stage.main, stage_args("train"))
    assert (result.exit_code, result.output) == (
        1,
        f"Error: PHISUM_CHECKPOINT_DIR: {tmp_path / 'drive'} is a file; name a directory (created if missing)\n",
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == ["drive", "params.yaml"]


def test_the_run_fingerprint_covers_exactly_the_params_groups_the_train_stage_declares():
    from phisum.checkpoints import TRAINING_PARAMS

    assert TRAINING_PARAMS == train_stage.PARAMS == ("seed", "model", "prompt", "quantization", "lora", "train")
