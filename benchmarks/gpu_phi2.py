"""Full-size Phi-2 QLoRA on one GPU, through the pipeline's own code: memory, speed, generation checks.

    python benchmarks/gpu_phi2.py [--steps 6] [--peak-tflops 989] [--out results.json]
    python benchmarks/gpu_phi2.py --dry-run [--out results.json]    (no GPU: the same run on a tiny model, CPU)
    python benchmarks/gpu_phi2.py --families all [--out families.json]    (a second call: the other families)

No download: phisum.fullsize writes Phi-2's architecture with random fp16 weights. Training goes through
phisum.training (4-bit NF4 load, k-bit preparation, SFTConfig from params.yaml) and TRL's SFTTrainer,
batch 1, on random token rows with a completion mask, at 512/1,024/2,048 tokens, in fp16 with
GradScaler and TRL's torch loss kernels (the T4 path) and in bf16. Generation loads a fresh 4-bit
model plus the adapter saved by training and runs phisum.generation one prompt at a time and batched.
Answers: peak memory (and whether the seed's configuration fits a 16 GB T4 with the CUDA context
counted), tokens/s and MFU (model FLOPs), batched vs one-at-a-time outputs (compared by generated token
ids: text hides ids that decode to nothing, and the same text spelled in other tokens), finite logits on
left-padded batches, and the library versions it ran with. Each training row names its compute dtype and
the loss-kernel path TRL actually took (Triton or torch, seen while it trained), and the rows are keyed by
both, so fp16 (torch kernels, as on a T4) and bf16 (Triton where available) are never taken for a dtype-only
comparison. Meant to finish in under 8 minutes.
--dry-run checks the full-size configs on the meta device, then runs every step above on the CPU
with a tiny random Phi, float32 and short lengths (what CI can check without a GPU), then the family
measurement below on small random models of each family.

--families NAME,... (or all) measures, instead of Phi-2, the other families of phisum.fullsize.FAMILIES
(Llama-3-8B, Mistral-7B-v0.3, Qwen2.5-7B): each is written with random fp16 weights from its cited config
on this machine (no hub: random weights are enough for memory), trained by the same code in fp16 with
TRL's torch loss kernels (the T4 path) with LoRA on its attention projections, batch 1, at 1,024 and
2,048 tokens, and its peak memory is set against benchmarks/memory.py's estimate (benchmarks/t4_fit.py).
Each family's results are written as soon as it is done, and its ~15 GB checkpoint deleted.
"""

from __future__ import annotations

import dataclasses
import gc
import importlib.metadata
import json
import platform
import random
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import click
import torch
import trl.kernels.chunked_logprob
from datasets import Dataset
from peft import PeftModel, get_peft_model
from transformers import PhiConfig, TrainerCallback

from phisum.cli import UserErrorCommand
from phisum.fullsize import (
    FAMILIES,
    PHI2_PARAMS,
    T4_TOTAL_MIB,
    family_config,
    load_recipe,
    meta_model,
    synthetic_texts,
    write_random_model,
    write_random_phi2,
)
from phisum.generation import NonFiniteScoresError, cut_at_stop_string, generate_summaries, masked_attention_kernels
from phisum.modeling import build_lora_config, build_quantization_config, load_base_model, load_tokenizer
from phisum.params import ModelParams
from phisum.prompt import build_prompt
from phisum.synthetic import make_example
from phisum.tiny_model import build_tiny_model
from phisum.training import build_sft_config, build_trainer, load_trainable_model

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as `python benchmarks/gpu_phi2.py`: memory.py beside it
from memory import training_bytes  # noqa: E402

# Dense 16-bit tensor-core peaks (TFLOPS) from vendor datasheets; first matching name wins.
PEAK_TFLOPS = {"H100 PCIe": 756, "H200": 989, "H100": 989, "A100": 312, "L40S": 362, "L4": 121, "A10G": 70, "T4": 65}
T4_MIB = T4_TOTAL_MIB  # a 16 GB T4's memory as torch reports it (nvidia-smi's 15,360 MiB is more than a process gets)
LIBRARIES = ("torch", "transformers", "peft", "trl", "bitsandbytes", "accelerate", "datasets", "tokenizers", "triton")
GPU_RUN = {"seq_lengths": (512, 1024, 2048), "prompts": 16, "new_tokens": 48, "batch_sizes": (1, 8, 16)}
DRY_RUN = {"seq_lengths": (32, 64), "prompts": 4, "new_tokens": 8, "batch_sizes": (1, 2, 4)}
OTHER_FAMILIES = tuple(family for family in FAMILIES if family != "phi-2")
FAMILY_RUN = {"seq_lengths": (1024, 2048), "steps": 3}
DRY_FAMILY_RUN = {"seq_lengths": (32,), "steps": 3}
# The small shapes --dry-run gives each family (its tokenizer has 2,048 tokens).
DRY_FAMILY_SHAPES = {
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 2048,
}
MIB = 2**20


def library_versions() -> dict:
    versions = {"python": platform.python_version(), "cuda": torch.version.cuda}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def check_configs(params) -> dict:
    """Full-size Phi-2 on the meta device: parameter count, the 4-bit config, LoRA's trainable parameters."""
    model = meta_model()
    total = sum(p.numel() for p in model.parameters())
    assert total == PHI2_PARAMS, f"Phi-2 has {PHI2_PARAMS:,} parameters, the config gives {total:,}"
    build_quantization_config(params.quantization, torch.bfloat16)
    trainable = get_peft_model(model, build_lora_config(params.lora)).get_nb_trainable_parameters()[0]
    return {"params": total, "trainable_params": trainable}  # r=32 on q/k/v/dense: 20,971,520


def check_family_configs(params) -> dict:
    """Each other family on the meta device: its parameter count is the published one; LoRA's trainable count."""
    counts = {}
    for family in OTHER_FAMILIES:
        model = meta_model(family_config(family))
        total = sum(p.numel() for p in model.parameters())
        assert total == FAMILIES[family].params, (
            f"{family}: {total:,} parameters, published {FAMILIES[family].params:,}"
        )
        lora = dataclasses.replace(params.lora, target_modules=list(FAMILIES[family].attention))
        trainable = get_peft_model(model, build_lora_config(lora)).get_nb_trainable_parameters()[0]
        counts[family] = {"params": total, "trainable_params": trainable}
    return counts


class Memory:
    """Peak memory of a phase: the CUDA caching allocator's on a GPU, the process's peak RSS on the CPU."""

    def __init__(self, device: str) -> None:
        self.cuda = device == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def reset(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()

    def peak(self) -> dict:
        if not self.cuda:
            return {"peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
        return {
            "peak_allocated_mib": round(torch.cuda.max_memory_allocated() / MIB),
            "peak_reserved_mib": round(torch.cuda.max_memory_reserved() / MIB),
        }

    def context_mib(self) -> int | None:
        """Device memory in use beyond what torch's allocator holds: the CUDA context and libraries' kernels."""
        if not self.cuda:
            return None
        free, total = torch.cuda.mem_get_info()
        return round((total - free - torch.cuda.memory_reserved()) / MIB)


class StepClock(TrainerCallback):
    def __init__(self, memory: Memory) -> None:
        self.memory, self.ends = memory, []

    def on_step_end(self, args, state, control, **kwargs):
        self.memory.sync()
        self.ends.append(time.perf_counter())


class LossKernelPath:
    """The path TRL's chunked log-prob loss takes while training: its own `_use_triton` answers, recorded.

    TRL decides per call (`_use_triton(device)` in trl.kernels.chunked_logprob), so the answer is read where
    it is given rather than predicted: "triton", "torch", "mixed", or "not called" (the loss went elsewhere).
    """

    def __init__(self) -> None:
        self.answers: list[bool] = []

    def __enter__(self) -> LossKernelPath:
        self.original = trl.kernels.chunked_logprob._use_triton

        def recorded(device):
            answer = self.original(device)
            self.answers.append(answer)
            return answer

        trl.kernels.chunked_logprob._use_triton = recorded
        return self

    def __exit__(self, *exc) -> None:
        trl.kernels.chunked_logprob._use_triton = self.original

    @property
    def path(self) -> str:
        taken = {"triton" if answer else "torch" for answer in self.answers}
        return taken.pop() if len(taken) == 1 else ("mixed" if taken else "not called")


def run_params(params_path: Path, model_dir: Path, device: str, max_length: int):
    """params.yaml's recipe on the benchmark model; batch 1 without accumulation (peak memory is per micro-batch)."""
    params = load_recipe(params_path)
    return dataclasses.replace(
        params,
        model=ModelParams(name=str(model_dir), revision=None, device=device),
        prompt=dataclasses.replace(params.prompt, max_length=max_length),
        train=dataclasses.replace(params.train, batch_size=1, grad_accum=1),
    )


def token_rows(seq_len: int, count: int, vocab_size: int, seed: int) -> Dataset:
    """Random token rows of exactly seq_len tokens; the last quarter is the completion (the loss)."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab_size, (count, seq_len), generator=generator).tolist()
    mask = [[0] * (seq_len - seq_len // 4) + [1] * (seq_len // 4)] * count
    return Dataset.from_dict({"input_ids": ids, "completion_mask": mask})


def model_params_count(model_dir: Path) -> int:
    return sum(p.numel() for p in meta_model(PhiConfig.from_pretrained(model_dir)).parameters())


def train_one_dtype(params, compute_dtype, steps: int, seq_lengths, memory: Memory, adapter_dir: Path | None) -> dict:
    """Per sequence length: peak memory, tokens/s and loss, with SFTTrainer on one freshly loaded 4-bit model."""
    tokenizer = load_tokenizer(params.model)
    model = load_trainable_model(params, compute_dtype)
    results = {}
    for seq_len in seq_lengths:
        with tempfile.TemporaryDirectory() as out_dir:
            config = build_sft_config(
                params,
                compute_dtype,
                out_dir,
                max_steps=steps,
                max_length=seq_len,
                save_strategy="no",
                disable_tqdm=True,
            )
            dataset = token_rows(seq_len, steps, model.config.vocab_size, seed=seq_len)
            # The first trainer wraps the model in the adapter; later ones train that same adapter further.
            trainer = build_trainer(params, model, tokenizer, config, dataset, add_adapter=seq_len == seq_lengths[0])
            model = trainer.model
            clock = StepClock(memory)
            trainer.add_callback(clock)
            memory.reset()
            with LossKernelPath() as loss_kernels:
                trainer.train()
        warm = 2  # the first steps allocate optimizer state and pick kernels
        losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
        results[seq_len] = {
            "compute_dtype": str(compute_dtype).removeprefix("torch."),
            "loss_kernels": loss_kernels.path,
            "tokens_per_s": round(seq_len * (steps - warm) / (clock.ends[-1] - clock.ends[warm - 1]), 1),
            **memory.peak(),
            "first_loss": losses[0],
            "last_loss": losses[-1],
            "finite_losses": all(torch.isfinite(torch.tensor(losses)).tolist()),
            "grad_scaler": trainer.accelerator.scaler is not None,
        }
        click.echo(f"    {seq_len} tokens: {results[seq_len]}")
    results["trainable_params"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if adapter_dir is not None:
        model.save_pretrained(adapter_dir)
    del model, trainer
    gc.collect()  # the trainer and optimizer hold GPU memory until collected
    memory.reset()
    return results


def check_padded_logits(model, tokenizer, prompts: list[str], device: torch.device) -> dict:
    """One left-padded batch: are the logits at real tokens finite, with SDPA's default kernels and ours?"""
    tokenizer.padding_side = "left"
    inputs = tokenizer(prompts, return_tensors="pt", padding=True).to(device)
    real = inputs["attention_mask"].bool()
    finite = {}
    with torch.inference_mode():
        finite["default_kernels"] = bool(torch.isfinite(model(**inputs).logits[real]).all())
        with masked_attention_kernels(device):
            finite["masked_kernels"] = bool(torch.isfinite(model(**inputs).logits[real]).all())
    finite["padded_rows"] = int((~real).any(dim=1).sum())
    return finite


class GeneratedIds:
    """The token ids phisum.generation generates for each prompt, read off the model's own `generate` calls.

    generate_summaries returns text only; this wraps the model's `generate` for the duration (passing every
    call through unchanged) and maps each output row back to its prompt by the row's unpadded prompt ids.
    """

    def __init__(self, model, tokenizer, prompts: list[str]) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.prompt_rows: dict[tuple, list[int]] = {}
        for i, prompt in enumerate(prompts):
            self.prompt_rows.setdefault(tuple(tokenizer(prompt)["input_ids"]), []).append(i)
        self.ids: list[list[int] | None] = [None] * len(prompts)

    def __enter__(self) -> GeneratedIds:
        generate = self.model.generate

        def recorded(*args, **kwargs):
            output = generate(*args, **kwargs)
            input_ids, mask = kwargs["input_ids"], kwargs["attention_mask"].bool()
            for row in range(input_ids.shape[0]):
                waiting = self.prompt_rows[tuple(input_ids[row][mask[row]].tolist())]
                self.ids[waiting.pop(0)] = output[row, input_ids.shape[1] :].tolist()
            return output

        self.model.generate = recorded
        return self

    def __exit__(self, *exc) -> None:
        del self.model.generate  # the class's method again

    def rows(self, outputs: list[dict], stop_strings) -> list[dict]:
        """Per prompt: the ids up to the first EOS or pad (a finished row of a batch is padded), and the text.

        The ids must decode to generate_summaries' text, or the rows were matched to the wrong prompts.
        """
        ends = {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id}
        rows = []
        for i, (ids, output) in enumerate(zip(self.ids, outputs, strict=True)):
            kept = ids[: next((at for at, token in enumerate(ids) if token in ends), len(ids))]
            decoded = cut_at_stop_string(self.tokenizer.decode(kept, skip_special_tokens=True), list(stop_strings))
            assert decoded[0].strip() == output["text"], f"prompt {i}: recorded ids do not decode to its summary"
            rows.append({"ids": kept, "text": output["text"]})
        return rows


def compare_outputs(rows: list[dict], reference: list[dict]) -> dict:
    """How many prompts' outputs differ from the reference's (one prompt at a time), by token ids and by text."""
    pairs = list(zip(rows, reference, strict=True))
    return {
        "differ_from_batch_1": sum(a["ids"] != b["ids"] for a, b in pairs),
        "differing_prompts": [i for i, (a, b) in enumerate(pairs) if a["ids"] != b["ids"]],
        "text_differs_from_batch_1": sum(a["text"] != b["text"] for a, b in pairs),
    }


def measure_generation(params, compute_dtype, adapter_dir: Path, settings: dict, memory: Memory) -> dict:
    """A fresh 4-bit model plus the saved adapter: one-at-a-time against batched greedy generation."""
    rng = random.Random(0)
    dialogues = ["\n".join(make_example(rng)[0] for _ in range(rng.randint(1, 4))) for _ in range(settings["prompts"])]
    prompts = [build_prompt(params.prompt.template, dialogue) for dialogue in dialogues]
    tokenizer = load_tokenizer(params.model)
    model = PeftModel.from_pretrained(load_base_model(params.model, params.quantization, compute_dtype), adapter_dir)
    model.eval()
    device = next(model.parameters()).device
    results: dict = {"finite_logits": check_padded_logits(model, tokenizer, prompts, device)}
    generated = {}
    for size in settings["batch_sizes"]:
        memory.reset()
        started = time.perf_counter()
        try:
            with GeneratedIds(model, tokenizer, prompts) as recorded:
                outputs = generate_summaries(
                    model, tokenizer, prompts, settings["new_tokens"], size, params.generate.stop_strings
                )
        except NonFiniteScoresError as error:
            results[size] = {"non_finite_prompts": error.prompts}
            continue
        memory.sync()
        seconds = time.perf_counter() - started
        generated[size] = recorded.rows(outputs, params.generate.stop_strings)
        results[size] = {
            "prompts_per_s": round(len(prompts) / seconds, 2),
            "new_tokens": sum(row["new_tokens"] for row in outputs),
            **memory.peak(),
        }
    first = settings["batch_sizes"][0]
    for size in generated:
        results[size].update(compare_outputs(generated[size], generated[first]))
        results[size]["speedup_vs_batch_1"] = round(results[size]["prompts_per_s"] / results[first]["prompts_per_s"], 2)
    del model
    gc.collect()
    memory.reset()
    return results


def measure_family(params_path: Path, family: str, work: Path, dry_run: bool, memory: Memory, context_mib) -> dict:
    """One family's peak training memory (fp16 and TRL's torch loss kernels on a GPU: the T4 path) and the estimate.

    The random-weight checkpoint is written on this machine and deleted afterwards (7-8B in fp16: ~15 GB).
    """
    settings = DRY_FAMILY_RUN if dry_run else FAMILY_RUN
    model_dir = work / family
    started = time.perf_counter()
    if dry_run:
        write_random_model(model_dir, family, seed=0, dtype=torch.float32, **DRY_FAMILY_SHAPES)
    else:
        write_random_model(model_dir, family, seed=0, device="cuda")
    written_s = round(time.perf_counter() - started)
    targets = list(FAMILIES[family].attention)
    params = run_params(params_path, model_dir, "cpu" if dry_run else "cuda", max(settings["seq_lengths"]))
    params = dataclasses.replace(params, lora=dataclasses.replace(params.lora, target_modules=targets))
    compute_dtype = torch.float32 if dry_run else torch.float16
    kernels = trl.kernels.chunked_logprob
    triton_allowed = kernels._TRITON_AVAILABLE
    kernels._TRITON_AVAILABLE = False  # the T4 path: TRL's torch loss kernels (below compute capability 8.0)
    try:
        runs = train_one_dtype(params, compute_dtype, settings["steps"], settings["seq_lengths"], memory, None)
    finally:
        kernels._TRITON_AVAILABLE = triton_allowed
    shapes = meta_model(family_config(family, **(DRY_FAMILY_SHAPES if dry_run else {})))
    for seq_len in settings["seq_lengths"]:
        estimate = training_bytes(shapes, targets, params.lora.r, seq_len, params.quantization.double_quant)
        runs[seq_len]["estimate_mib"] = round(estimate["total"] / MIB)  # CUDA context not included
        if memory.cuda:
            runs[seq_len]["fits_t4_with_context"] = runs[seq_len]["peak_reserved_mib"] + context_mib <= T4_MIB
    shutil.rmtree(model_dir)
    return {"model": FAMILIES[family].name, "targets": targets, "written_s": written_s, **runs}


def run_families(params_path: Path, work: Path, families, dry_run: bool, save) -> dict:
    """--families: each family's peak memory at the recipe's settings, saved after each family."""
    memory = Memory("cpu" if dry_run else "cuda")
    results: dict = {"versions": library_versions(), "families": {}}
    if not dry_run:
        results["device"] = torch.cuda.get_device_name()
        torch.cuda.init()
        results["cuda_context_mib"] = memory.context_mib()  # before any allocation: context and loaded kernels
    for family in families:
        click.echo(f"  {family}")
        context = results.get("cuda_context_mib")
        results["families"][family] = measure_family(params_path, family, work, dry_run, memory, context)
        save(results)
    return results


def run(params_path: Path, work: Path, dry_run: bool, steps: int, peak_tflops: float | None) -> dict:
    settings = DRY_RUN if dry_run else GPU_RUN
    device = "cpu" if dry_run else "cuda"
    memory = Memory(device)
    started = time.perf_counter()
    recipe = load_recipe(params_path)
    results: dict = {"versions": library_versions(), "meta_device": check_configs(recipe)}
    results["meta_device_families"] = check_family_configs(recipe)
    model_dir, adapter_dir = work / "model", work / "adapter"
    if dry_run:
        build_tiny_model(synthetic_texts(200, seed=0), model_dir, seed=0)
        dtypes = [torch.float32]
    else:
        results["device"] = torch.cuda.get_device_name()
        results["compute_capability"] = ".".join(map(str, torch.cuda.get_device_capability()))
        torch.cuda.init()
        results["cuda_context_mib"] = memory.context_mib()  # before any allocation: context and loaded kernels
        write_random_phi2(model_dir, seed=0, device="cuda")
        # fp16 + GradScaler is what a T4 runs; bf16 needs compute capability 8.0.
        dtypes = [torch.float16] + ([torch.bfloat16] if torch.cuda.get_device_capability() >= (8, 0) else [])
    click.echo(f"model written in {time.perf_counter() - started:.0f} s; versions {results['versions']}")
    params = run_params(params_path, model_dir, device, max(settings["seq_lengths"]))
    flops_per_token = 6 * model_params_count(model_dir)  # model FLOPs: no recomputation, no attention
    results["model_flops_per_token"] = flops_per_token
    results["peak_tflops"] = peak_tflops
    kernels = trl.kernels.chunked_logprob
    triton_allowed = kernels._TRITON_AVAILABLE
    results["training"] = {}
    for compute_dtype in dtypes:
        name = str(compute_dtype).removeprefix("torch.")
        # The T4 path: TRL's torch loss kernels (phisum.training.select_loss_kernels below cc 8.0).
        kernels._TRITON_AVAILABLE = triton_allowed and compute_dtype != torch.float16
        click.echo(f"  training, {name}")
        save_to = adapter_dir if compute_dtype == dtypes[-1] else None
        runs = train_one_dtype(params, compute_dtype, steps, settings["seq_lengths"], memory, save_to)
        for seq_len in settings["seq_lengths"]:
            model_flops = flops_per_token * runs[seq_len]["tokens_per_s"]
            runs[seq_len]["mfu_model_flops"] = round(model_flops / (peak_tflops * 1e12), 4) if peak_tflops else None
            if memory.cuda:
                needed = runs[seq_len]["peak_reserved_mib"] + results["cuda_context_mib"]
                runs[seq_len]["fits_t4_with_context"] = needed <= T4_MIB
        # Keyed by dtype and the loss path every row took (a CPU run with the CUDA build of torch has Triton
        # installed and still takes the torch kernels): "float16, torch loss kernels" is the T4 path.
        paths = {runs[seq_len]["loss_kernels"] for seq_len in settings["seq_lengths"]}
        loss_kernels = paths.pop() if len(paths) == 1 else "mixed"
        results["training"][f"{name}, {loss_kernels} loss kernels"] = {**runs, "loss_kernels": loss_kernels}
    kernels._TRITON_AVAILABLE = triton_allowed
    click.echo(f"  trained in {time.perf_counter() - started:.0f} s")
    results["generation"] = {}
    for compute_dtype in dtypes:
        name = str(compute_dtype).removeprefix("torch.")
        results["generation"][name] = measure_generation(params, compute_dtype, adapter_dir, settings, memory)
        click.echo(f"  generation, {name}: {results['generation'][name]}")
    if dry_run:  # the --families path too, on small models of each family
        results["families"] = run_families(params_path, work, OTHER_FAMILIES, True, lambda _: None)["families"]
    results["wall_s"] = round(time.perf_counter() - started)
    return results


@click.command(cls=UserErrorCommand)
@click.option("--params", "params_path", default="params.yaml", show_default=True, type=click.Path(path_type=Path))
@click.option("--steps", default=6, show_default=True, help="Optimizer steps per sequence length (2 are warm-up).")
@click.option("--peak-tflops", type=float, default=None, help="The GPU's dense 16-bit peak; detected by name if unset.")
@click.option("--out", "out_path", default="", help="Also write the results as JSON here.")
@click.option("--dry-run", is_flag=True, help="No GPU: the same run on a tiny random Phi on the CPU.")
@click.option(
    "--families",
    default="",
    help=f"Instead of Phi-2: these families' peak training memory ({','.join(OTHER_FAMILIES)}, or all).",
)
def main(params_path: Path, steps: int, peak_tflops: float | None, out_path: str, dry_run: bool, families: str) -> None:
    load_recipe(params_path)  # before minutes of setup, and before the GPU is touched
    chosen = list(OTHER_FAMILIES) if families == "all" else [name for name in families.split(",") if name]
    unknown = [name for name in chosen if name not in OTHER_FAMILIES]
    if unknown:
        raise click.ClickException(
            f"--families: no family {', '.join(unknown)}; choose from {', '.join(OTHER_FAMILIES)} or all"
        )
    if not dry_run and not torch.cuda.is_available():
        raise click.ClickException("no CUDA device: this benchmark needs a GPU (use --dry-run to check it on the CPU)")
    if not dry_run and peak_tflops is None:
        peak_tflops = next((peak for key, peak in PEAK_TFLOPS.items() if key in torch.cuda.get_device_name()), None)

    def save(results: dict) -> None:
        if out_path:
            Path(out_path).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")

    with tempfile.TemporaryDirectory() as work:
        if chosen:
            results = run_families(params_path, Path(work), chosen, dry_run, save)
        else:
            results = run(params_path, Path(work), dry_run, steps, peak_tflops)
    click.echo(json.dumps(results))
    save(results)


if __name__ == "__main__":
    main()
