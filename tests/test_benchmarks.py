"""The benchmark scripts: they compile and import, their arithmetic is right, their checks can fail."""

import base64
import dataclasses
import hashlib
import json
import py_compile
import random
import subprocess
import zipfile
from pathlib import Path

import click
import pytest
import torch
import trl.kernels.chunked_logprob
import yaml
from click.testing import CliRunner

from phisum.fullsize import meta_model
from phisum.params import ModelParams, load_params
from phisum.prompt import build_prompt
from phisum.synthetic import make_example
from tests.helpers import BENCHMARKS_DIR, ROOT, load_script, set_params

SCRIPTS = sorted(BENCHMARKS_DIR.glob("*.py"))


@pytest.fixture()
def committed_params(tmp_path) -> Path:
    """A copy of the checkout's params.yaml (the T4 recipe)."""
    path = tmp_path / "params.yaml"
    path.write_text((ROOT / "params.yaml").read_text())
    return path


def test_every_script_compiles_and_imports():
    assert {path.stem for path in SCRIPTS} >= {
        "generation",
        "training",
        "memory",
        "gpu_phi2",
        "reuse",
        "cpu_phi2",
        "gpu_kit",
    }
    for path in SCRIPTS:
        py_compile.compile(str(path), doraise=True)
        assert callable(load_script(path.stem).main)


def test_phi2_parameter_count_on_the_meta_device():
    memory = load_script("memory")

    model = meta_model()
    assert next(model.parameters()).device.type == "meta"
    counts = memory.weight_bytes(model)
    assert counts["params"] == 2_779_683_840
    # q/k/v/dense (4 x 2560^2) and fc1/fc2 (2 x 2560 x 10240) in 32 layers; lm_head stays 16 bit.
    assert counts["quantized_params"] == 32 * (4 * 2560 * 2560 + 2 * 2560 * 10240)


def test_nf4_is_under_a_third_of_fp16_for_quantized_layers():
    memory = load_script("memory")

    counts = memory.weight_bytes(meta_model(), double_quant=True)
    assert counts["quantized_nf4_bytes"] < counts["quantized_fp16_bytes"] / 3
    assert 4.12 < counts["nf4_bits_per_quantized_weight"] < 4.13  # 4 + 8/64 + 32/(64*256) + per-matrix tables
    without_double_quant = memory.weight_bytes(meta_model(), double_quant=False)
    assert without_double_quant["quantized_nf4_bytes"] > counts["quantized_nf4_bytes"]


def test_computed_nf4_bytes_match_bitsandbytes_on_the_tiny_model(tiny_model_dir, committed_params):
    memory = load_script("memory")

    quant = load_params(committed_params).quantization
    measured = memory.measure_tiny(ModelParams(name=str(tiny_model_dir), revision=None, device="cpu"), quant)
    assert measured["computed"]["nf4_bytes"] == measured["nf4_footprint_with_constants"]
    assert measured["computed"]["fp16_bytes"] == measured["fp16_footprint"]


def test_gpu_script_dry_run_runs_every_step_on_the_cpu(tmp_path, committed_params, monkeypatch):
    """--dry-run: full-size configs on the meta device, then training, adapter and generation on a tiny model."""
    gpu_phi2 = load_script("gpu_phi2")
    # As with the CUDA build of torch (Python 3.12+ from PyPI): Triton imports, and the CPU still takes TRL's
    # torch loss kernels; the row must report the path taken, not what is installed.
    monkeypatch.setattr(trl.kernels.chunked_logprob, "_TRITON_AVAILABLE", True)

    out = tmp_path / "dry.json"
    args = ["--dry-run", "--steps", "3", "--params", str(committed_params), "--out", str(out)]
    result = CliRunner().invoke(gpu_phi2.main, args)
    assert result.exit_code == 0, result.output
    results = json.loads(out.read_text())
    assert results["meta_device"] == {"params": 2_779_683_840, "trainable_params": 20_971_520}
    pins = dict(line.split("==") for line in (ROOT / "requirements.txt").read_text().split() if "==" in line)
    assert {name: results["versions"][name] for name in ("trl", "peft", "bitsandbytes")} == {
        name: pins[name] for name in ("trl", "peft", "bitsandbytes")
    }
    # Keyed by dtype and the loss path TRL took (seen while it trained), which every row repeats.
    assert list(results["training"]) == ["float32, torch loss kernels"]
    training = results["training"]["float32, torch loss kernels"]
    assert training["loss_kernels"] == "torch"
    assert training["trainable_params"] == 2 * 4 * 32 * (128 + 128)  # tiny model: 2 layers, hidden 128, r=32
    for seq_len in ("32", "64"):
        assert training[seq_len]["finite_losses"] and training[seq_len]["tokens_per_s"] > 0
        assert (training[seq_len]["compute_dtype"], training[seq_len]["loss_kernels"]) == ("float32", "torch")
    generation = results["generation"]["float32"]
    assert generation["finite_logits"] == {"default_kernels": True, "masked_kernels": True, "padded_rows": 3}
    for size in ("1", "2", "4"):  # by token ids (the recorded ids decode to each summary: checked in the script)
        assert generation[size]["differ_from_batch_1"] == generation[size]["text_differs_from_batch_1"] == 0
        assert generation[size]["differing_prompts"] == []
    assert generation["1"]["new_tokens"] == generation["4"]["new_tokens"] > 0
    # The other families (#22 item 3): published sizes on the meta device, then the --families path on small
    # random models of each (LoRA r=32 on q/k/v/o_proj; hidden 128, 2 KV heads of 32, 2 layers).
    assert results["meta_device_families"] == {
        "llama-3-8b": {"params": 8_030_261_248, "trainable_params": 27_262_976},
        "mistral-7b-v0.3": {"params": 7_248_023_552, "trainable_params": 27_262_976},
        "qwen2.5-7b": {"params": 7_615_616_512, "trainable_params": 20_185_088},
    }
    assert list(results["families"]) == ["llama-3-8b", "mistral-7b-v0.3", "qwen2.5-7b"]
    for family in results["families"].values():
        assert family["targets"] == ["q_proj", "k_proj", "v_proj", "o_proj"]
        assert family["trainable_params"] == 2 * 32 * (4 * 128 + 128 + 64 + 64 + 128)
        row = family["32"]
        assert row["finite_losses"] and row["loss_kernels"] == "torch" and row["estimate_mib"] > 0


def test_gpu_script_families_option(tmp_path, committed_params):
    """--families NAME: only those families, written to --out; an unknown name is one line naming the choices."""
    gpu_phi2 = load_script("gpu_phi2")

    out = tmp_path / "families.json"
    args = ["--dry-run", "--families", "qwen2.5-7b", "--params", str(committed_params), "--out", str(out)]
    result = CliRunner().invoke(gpu_phi2.main, args)
    assert result.exit_code == 0, result.output
    results = json.loads(out.read_text())
    assert list(results["families"]) == ["qwen2.5-7b"] and "training" not in results
    assert results["families"]["qwen2.5-7b"]["model"] == "Qwen/Qwen2.5-7B"
    args = ["--dry-run", "--families", "llama-2", "--params", str(committed_params)]
    result = CliRunner().invoke(gpu_phi2.main, args)
    assert result.exit_code == 1 and result.output == (
        "Error: --families: no family llama-2; choose from llama-3-8b, mistral-7b-v0.3, qwen2.5-7b or all\n"
    )


def test_generation_is_compared_by_token_ids_which_catches_what_decoded_text_hides(tokenizer):
    """One merged token against its characters one by one: the same text, different ids (a real divergence)."""
    gpu_phi2 = load_script("gpu_phi2")

    (merged,) = tokenizer(" meeting")["input_ids"][:1]
    token = tokenizer.convert_ids_to_tokens(merged)
    assert len(token) > 2  # a merge of several byte-level characters
    spelled = tokenizer.convert_tokens_to_ids(list(token))
    text = tokenizer.decode([merged])
    assert tokenizer.decode(spelled) == text and [merged] != spelled
    one_at_a_time = [{"ids": [merged], "text": text}, {"ids": spelled, "text": text}]
    batched = [{"ids": spelled, "text": text}, {"ids": spelled, "text": text}]
    assert gpu_phi2.compare_outputs(batched, one_at_a_time) == {
        "differ_from_batch_1": 1,
        "differing_prompts": [0],
        "text_differs_from_batch_1": 0,
    }


def test_loss_kernel_path_is_what_trl_answered_while_training(monkeypatch):
    gpu_phi2 = load_script("gpu_phi2")
    kernels = trl.kernels.chunked_logprob
    original = kernels._use_triton
    monkeypatch.setattr(kernels, "_TRITON_AVAILABLE", True)  # Triton installed: TRL uses it on CUDA only

    with gpu_phi2.LossKernelPath() as none:
        pass
    with gpu_phi2.LossKernelPath() as cpu:
        kernels._use_triton(torch.device("cpu"))
    with gpu_phi2.LossKernelPath() as cuda:
        kernels._use_triton(torch.device("cuda"))
    with gpu_phi2.LossKernelPath() as both:
        kernels._use_triton(torch.device("cuda"))
        kernels._use_triton(torch.device("cpu"))
    assert [none.path, cpu.path, cuda.path, both.path] == ["not called", "torch", "triton", "mixed"]
    assert kernels._use_triton is original


def test_gpu_kit_pins_come_from_requirements():
    gpu_kit = load_script("gpu_kit")

    pins = gpu_kit.kit_pins((ROOT / "requirements.txt").read_text())
    assert pins == [
        "bitsandbytes==0.50.2",
        "trl==1.16.0",
        "datasets==5.2.0",
        "ruamel.yaml==0.19.1",
        "transformers==5.23.0",
        "peft==0.21.2",
        "dill==0.4.1",
        "multiprocess==0.70.19",
    ]
    with pytest.raises(click.ClickException, match="no exact pin for trl"):
        gpu_kit.kit_pins("bitsandbytes==0.50.2\ntrl>=1.0\n")


def test_gpu_kit_trims_bitsandbytes_to_one_cuda_build(tmp_path):
    gpu_kit = load_script("gpu_kit")

    wheel = tmp_path / "bitsandbytes-0.50.2-py3-none-manylinux_2_24_x86_64.whl"
    names = ["__init__.py", "libbitsandbytes_cpu.so", "libbitsandbytes_cuda128.so", "libbitsandbytes_cuda130.so"]
    with zipfile.ZipFile(wheel, "w") as archive:
        for name in names:
            archive.writestr(f"bitsandbytes/{name}", name * 100)
        archive.writestr("bitsandbytes-0.50.2.dist-info/RECORD", "stale")
    assert gpu_kit.trim_bitsandbytes(wheel, "130") == ["bitsandbytes/libbitsandbytes_cuda128.so"]
    with zipfile.ZipFile(wheel) as archive:
        kept = archive.namelist()
        record = archive.read("bitsandbytes-0.50.2.dist-info/RECORD").decode().splitlines()
    assert kept == [f"bitsandbytes/{n}" for n in names if "128" not in n] + ["bitsandbytes-0.50.2.dist-info/RECORD"]
    assert [line.split(",")[0] for line in record] == kept
    data = b"libbitsandbytes_cpu.so" * 100
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    assert record[1] == f"bitsandbytes/libbitsandbytes_cpu.so,sha256={digest},{len(data)}"
    assert record[-1] == "bitsandbytes-0.50.2.dist-info/RECORD,,"
    with pytest.raises(click.ClickException, match="no CUDA 118 build"):
        gpu_kit.trim_bitsandbytes(wheel, "118")


def test_gpu_kit_size_check_and_run_command():
    gpu_kit = load_script("gpu_kit")

    gpu_kit.check_size(60 * 2**20, 4 * 2**20)
    with pytest.raises(click.ClickException, match="exceed 64 MiB"):
        gpu_kit.check_size(60 * 2**20, 4 * 2**20 + 1)
    command = gpu_kit.run_command(".gpukit")
    assert len(command) <= 2000  # the device tool's limit
    assert "--target /tmp/site .gpukit/*.whl" in command and "benchmarks/gpu_phi2.py --out $OUT/" in command
    families = gpu_kit.run_command(".gpukit", families=True)
    assert len(families) <= 2000
    assert "benchmarks/gpu_phi2.py --families all --out $OUT/gpu_families.json 2>&1 | tee $OUT/gpu_families.log" in (
        families
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without a GPU")
def test_gpu_script_fails_fast_without_cuda(committed_params):
    gpu_phi2 = load_script("gpu_phi2")

    result = CliRunner().invoke(gpu_phi2.main, ["--params", str(committed_params)])
    assert result.exit_code != 0 and "no CUDA device" in result.output


def test_the_full_size_scripts_refuse_params_on_the_cpu_profile(committed_params):
    """A demo workspace (or a checkout where `python -m phisum.profile` ran) holds the CPU profile; a GPU run
    carries the working tree as it is."""
    profile = yaml.safe_load((ROOT / "profiles/cpu.yaml").read_text())
    profile["model"]["name"] = "models/tiny-phi"  # what phisum.profile writes
    set_params(committed_params.parent, profile)
    result = CliRunner().invoke(load_script("gpu_phi2").main, ["--dry-run", "--params", str(committed_params)])
    assert result.exit_code == 1 and result.output == (
        f"Error: {committed_params} holds the CPU profile (model.name: models/tiny-phi); the full-size runs "
        "measure the T4 recipe: run them on the committed params.yaml, not in the demo workspace\n"
    )


def test_batch_of_finds_the_prompts_generated_together():
    generation = load_script("generation")

    prompts = ["a" * n for n in (3, 9, 1, 7, 5)]  # longest first: 9, 7, 5 | 3, 1
    assert generation.batch_of(prompts, 0, 3) == ["aaa", "a"]
    assert generation.batch_of(prompts, 4, 3) == ["a" * 9, "a" * 7, "a" * 5]


def test_reuse_copies_the_project_but_not_local_state(tmp_path):
    reuse = load_script("reuse")

    workspace = tmp_path / "ws"
    for name in ("params.yaml", ".git/HEAD", ".venv/bin/python", ".dvc/config", ".dvc/cache/x", "models/checkpoints/c"):
        (workspace / name).parent.mkdir(parents=True, exist_ok=True)
        (workspace / name).write_text("x")
    (workspace / "models/adapter").mkdir()
    reuse.copy_workspace(workspace, tmp_path / "scratch")
    copied = {p.relative_to(tmp_path / "scratch").as_posix() for p in (tmp_path / "scratch").rglob("*")}
    assert {"params.yaml", ".dvc/config", "models/adapter"} <= copied
    assert not {".venv", ".dvc/cache", "models/checkpoints"} & copied
    log = subprocess.run(["git", "log", "--oneline"], cwd=tmp_path / "scratch", capture_output=True, text=True)
    assert "benchmark baseline" in log.stdout


def test_packed_batches_keep_completion_only_labels(tiny_model_dir, tmp_path, committed_params):
    """TRL packing (padding-free): prompt tokens stay -100 and sequences do not attend to each other."""
    training = load_script("training")

    params = load_params(committed_params)
    params = dataclasses.replace(params, model=ModelParams(name=str(tiny_model_dir), revision=None, device="cpu"))
    rng = random.Random(0)
    rows = []
    for _ in range(12):
        dialogue, summaries, _ = make_example(rng)
        rows.append({"prompt": build_prompt(params.prompt.template, dialogue), "completion": summaries[0]})
    trainer = training.batching_trainer(params, "packed", 2, rows, rows[:2], str(tmp_path))
    checked, loss_gap = training.check_completion_only(trainer, rows)
    assert checked >= 2  # several sequences in the one packed row, each matched to its row
    assert loss_gap < 1e-4
    # The check can fail: a label on a prompt token is caught.
    moved = [{"prompt": r["prompt"][:-1], "completion": r["prompt"][-1] + r["completion"]} for r in rows]
    with pytest.raises((AssertionError, KeyError)):
        training.check_completion_only(trainer, moved)


def results_table_commands(text: str) -> list[str]:
    """The command cell of every row of BENCHMARKS.md's results table ("same as above" rows left out)."""
    section = text.split("\n## Results\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|") and not line.startswith("|---")]
    header = [cell.strip() for cell in rows[0].strip("|").split("|")]
    column = header.index("command")
    cells = [[cell.strip() for cell in row.strip("|").split("|")][column] for row in rows[1:]]
    return [cell for cell in cells if cell != "same as above"]


def check_command_cell(cell: str, makefile: str) -> None:
    """One command cell: repo-relative commands that name a benchmark script or a make target that exists."""
    commands = cell.split("`")[1::2]
    assert commands, f"no `command` in {cell!r}"
    targets = {line.split(":", 1)[0] for line in makefile.splitlines() if line[:1].isalpha() and ":" in line}
    for command in commands:
        words = [word.split("=", 1)[-1] for word in command.split()]  # DATA=/x is a path too
        assert not [w for w in words if w.startswith(("/", "~", "$HOME"))], f"absolute path in {command!r}"
        scripts = [w for w in words if w.startswith("benchmarks/") and w.endswith(".py")]
        if command.startswith("make "):
            assert command.split()[1] in targets, f"no make target for {command!r}"
        else:
            assert scripts and all((ROOT / script).is_file() for script in scripts), f"no script in {command!r}"


def test_every_benchmark_command_runs_from_the_repository_root():
    makefile = (ROOT / "Makefile").read_text()
    cells = results_table_commands((ROOT / "BENCHMARKS.md").read_text())
    assert len(cells) >= 6
    for cell in cells:
        check_command_cell(cell, makefile)
    assert any("make bench" in cell for cell in cells)


def test_command_check_catches_absolute_paths_and_missing_scripts():
    makefile = "bench: setup\n\techo\n"
    check_command_cell("`make bench DATA=<dir>`", makefile)
    check_command_cell("`.venv/bin/python benchmarks/memory.py --out benchmarks/results/memory.json`", makefile)
    bad = [
        "`cd /tmp/ws && .venv/bin/python benchmarks/memory.py`",
        "`make bench DATA=/data/dialogsum`",
        "`.venv/bin/python benchmarks/nothing.py`",
        "`make benchmark`",
        "see above",
    ]
    for cell in bad:
        with pytest.raises(AssertionError):
            check_command_cell(cell, makefile)


@pytest.mark.parametrize(
    ("script", "missing"),
    [("generation", "data/prepared/test.jsonl, models/adapter"), ("training", "data/prepared/train.jsonl")],
)
def test_scripts_say_to_run_the_demo_first(script, missing, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the scripts chdir into their workspace
    result = CliRunner().invoke(load_script(script).main, [str(tmp_path)])
    assert result.exit_code == 1
    assert result.output == f"Error: {tmp_path}: no {missing}; run `make demo` first (it builds demo/)\n"


def test_dialogsum_clone_refuses_a_scratch_dir_in_use(tmp_path):
    training = load_script("training")

    (tmp_path / "scratch").mkdir()
    (tmp_path / "scratch/kept.txt").write_text("x")
    with pytest.raises(click.ClickException, match="not empty; give a new directory"):
        training.prepared_clone(ROOT, tmp_path / "data", tmp_path / "scratch")
    assert [p.name for p in (tmp_path / "scratch").iterdir()] == ["kept.txt"]


def test_dialogsum_clone_goes_to_a_new_scratch_dir_and_fails_in_one_message(tmp_path):
    training = load_script("training")

    (tmp_path / "not-a-repo").mkdir()
    with pytest.raises(click.ClickException) as caught:
        training.prepared_clone(tmp_path / "not-a-repo", tmp_path / "data", tmp_path / "new/scratch")
    source, scratch = tmp_path / "not-a-repo", tmp_path / "new/scratch"
    assert caught.value.message.splitlines()[0] == f"git clone -q {source} {scratch} failed in {scratch}:"
    assert (tmp_path / "new/scratch").is_dir()
