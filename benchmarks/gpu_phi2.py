"""Full-size Phi-2 QLoRA on one GPU: peak memory, tokens/s and MFU at 512/1024/2048 tokens, and generation.

    python benchmarks/gpu_phi2.py [--steps 8] [--peak-tflops 989] [--out results.json]
    python benchmarks/gpu_phi2.py --dry-run     (no GPU: builds every config on the meta device)

No download: Phi-2's architecture gets random weights on the GPU, is saved in fp16 to a temp dir and
loaded back by phisum.modeling.load_base_model (4-bit NF4, as the pipeline). LoRA, optimizer, gradient
checkpointing and prompt come from params.yaml. Training: HF Trainer, batch 1, random tokens;
generation: phisum.generation. Meant to finish in under 8 minutes on an H100-class GPU.
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from pathlib import Path

import click
import torch
from datasets import Dataset
from peft import get_peft_model, prepare_model_for_kbit_training
from transformers import AutoModelForCausalLM, PhiConfig, PhiForCausalLM, Trainer, TrainerCallback, TrainingArguments

from phisum.generation import generate_summaries
from phisum.modeling import (
    PHI2_DIMS,
    build_lora_config,
    build_quantization_config,
    load_base_model,
    resolve_compute_dtype,
)
from phisum.params import ModelParams, load_params
from phisum.prompt import build_prompt
from phisum.synthetic import make_example
from phisum.tiny_model import train_tokenizer

PHI2_PARAMS = 2_779_683_840
# Dense 16-bit tensor-core peaks (TFLOPS) from vendor datasheets; first matching name wins.
PEAK_TFLOPS = {"H100 PCIe": 756, "H200": 989, "H100": 989, "A100": 312, "L40S": 362, "L4": 121, "A10G": 70, "T4": 65}
SEQ_LENGTHS = (512, 1024, 2048)
T4_MEMORY_GB = 15.0


def build_peft_model(model, params):
    """The train stage's wrapping: k-bit preparation with gradient checkpointing, LoRA, fp32 LoRA weights."""
    model = prepare_model_for_kbit_training(
        model,
        use_gradient_checkpointing=params.train.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},
    )
    model = get_peft_model(model, build_lora_config(params.lora))
    for param in model.parameters():
        if param.requires_grad:
            param.data = param.data.float()
    return model


def training_args(out_dir: str, steps: int, params, compute_dtype: torch.dtype) -> TrainingArguments:
    return TrainingArguments(
        output_dir=out_dir,
        max_steps=steps,
        per_device_train_batch_size=1,
        learning_rate=params.train.learning_rate,
        optim=params.train.optim,
        gradient_checkpointing=params.train.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},
        fp16=compute_dtype == torch.float16,
        bf16=compute_dtype == torch.bfloat16,
        logging_steps=steps,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
    )


def check_configs(params) -> dict:
    """Everything the GPU run constructs, on the meta device: shapes, counts and configs, no weights."""
    with torch.device("meta"):
        model = PhiForCausalLM(PhiConfig(**PHI2_DIMS))
    total = sum(p.numel() for p in model.parameters())
    assert total == PHI2_PARAMS, f"Phi-2 has {PHI2_PARAMS:,} parameters, the config gives {total:,}"
    build_quantization_config(params.quantization, torch.bfloat16)
    trainable = build_peft_model(model, params).get_nb_trainable_parameters()[0]
    with tempfile.TemporaryDirectory() as out_dir:
        training_args(out_dir, 4, params, torch.float32)
    return {"params": total, "trainable_params": trainable}  # r=32 on q/k/v/dense: 20,971,520


class StepClock(TrainerCallback):
    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        torch.cuda.synchronize()
        self.ends.append(time.perf_counter())


def measure_training(model, params, seq_len: int, steps: int, compute_dtype, out_dir: str) -> dict:
    """Peak memory and tokens/s for `steps` optimizer steps on random sequences of seq_len tokens (batch 1)."""
    ids = torch.randint(0, PHI2_DIMS["vocab_size"], (steps, seq_len)).tolist()
    dataset = Dataset.from_dict({"input_ids": ids, "labels": ids})
    trainer = Trainer(model=model, args=training_args(out_dir, steps, params, compute_dtype), train_dataset=dataset)
    clock = StepClock()
    trainer.add_callback(clock)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    trainer.train()
    warm = 2  # the first steps allocate optimizer state and compile kernels
    return {
        "tokens_per_s": round(seq_len * (steps - warm) / (clock.ends[-1] - clock.ends[warm - 1]), 1),
        "peak_allocated_gb": round(torch.cuda.max_memory_allocated() / 1e9, 2),
        "peak_reserved_gb": round(torch.cuda.max_memory_reserved() / 1e9, 2),
    }


def measure_generation(model, template: str, prompts_count: int, max_new_tokens: int, sizes: list[int]) -> dict:
    """Batched against one-at-a-time greedy generation on DialogSum-sized synthetic prompts."""
    rng = random.Random(0)
    dialogues = ["\n".join(make_example(rng)[0] for _ in range(rng.randint(2, 4))) for _ in range(prompts_count)]
    tokenizer = train_tokenizer(dialogues, vocab_size=2048)  # any tokenizer whose ids fit the 51,200 vocab
    tokenizer.pad_token = tokenizer.eos_token
    prompts = [build_prompt(template, dialogue) for dialogue in dialogues]
    model.eval()
    results, texts = {}, {}
    for size in sizes:
        torch.cuda.synchronize()
        started = time.perf_counter()
        outputs = generate_summaries(model, tokenizer, prompts, max_new_tokens, size)
        torch.cuda.synchronize()
        texts[size] = [row["text"] for row in outputs]
        results[size] = {"prompts_per_s": round(len(prompts) / (time.perf_counter() - started), 2)}
    for size in sizes:
        results[size]["speedup_vs_1"] = round(results[size]["prompts_per_s"] / results[1]["prompts_per_s"], 2)
        results[size]["differ_from_1"] = sum(a != b for a, b in zip(texts[size], texts[1], strict=True))
    return results


@click.command()
@click.option("--params", "params_path", default="params.yaml", show_default=True, type=click.Path(path_type=Path))
@click.option("--steps", default=8, show_default=True, help="Optimizer steps per sequence length (2 are warm-up).")
@click.option("--peak-tflops", type=float, default=None, help="The GPU's dense 16-bit peak; detected by name if unset.")
@click.option("--out", "out_path", default="", help="Also write the results as JSON here.")
@click.option("--dry-run", is_flag=True, help="Validate the configs on the meta device; needs no GPU.")
def main(params_path: Path, steps: int, peak_tflops: float | None, out_path: str, dry_run: bool) -> None:
    if not dry_run and not torch.cuda.is_available():
        raise click.ClickException("no CUDA device: this benchmark needs a GPU (use --dry-run to check the configs)")
    params = load_params(params_path)
    if dry_run:
        click.echo(json.dumps({"dry_run": check_configs(params)}))
        return
    device_name = torch.cuda.get_device_name()
    peak_tflops = peak_tflops or next((peak for key, peak in PEAK_TFLOPS.items() if key in device_name), None)
    compute_dtype = resolve_compute_dtype(params.quantization.compute_dtype)
    click.echo(f"{device_name}, compute {compute_dtype}, peak {peak_tflops} TFLOPS, torch {torch.__version__}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp_dir:
        torch.manual_seed(params.seed)
        with torch.device("cuda"):  # built in fp16 directly: an fp32 copy (11 GB) would not fit a T4
            random_model = AutoModelForCausalLM.from_config(PhiConfig(**PHI2_DIMS), dtype=torch.float16)
        random_model.save_pretrained(tmp_dir, safe_serialization=True)
        del random_model
        torch.cuda.empty_cache()
        model = load_base_model(ModelParams(name=tmp_dir, revision=None), params.quantization, compute_dtype)
    click.echo(f"  random Phi-2 built, saved and loaded in 4-bit in {time.perf_counter() - started:.0f} s")
    weights_gb = round(model.get_memory_footprint() / 1e9, 2)
    model = build_peft_model(model, params)
    training = {}
    for seq_len in SEQ_LENGTHS:
        with tempfile.TemporaryDirectory() as out_dir:
            result = measure_training(model, params, seq_len, steps, compute_dtype, out_dir)
        result["fits_t4"] = result["peak_reserved_gb"] < T4_MEMORY_GB
        # Model FLOPs utilization with the usual 6 x params per token (attention and recomputation not counted).
        result["mfu"] = round(6 * PHI2_PARAMS * result["tokens_per_s"] / peak_tflops / 1e12, 4) if peak_tflops else None
        training[seq_len] = result
        click.echo(f"  train seq {seq_len}: {result}")
    generation = measure_generation(model, params.prompt.template, 16, 48, [1, 8, 16])
    click.echo(f"  generation: {generation}")
    results = {
        "device": device_name,
        "compute_dtype": str(compute_dtype),
        "peak_tflops": peak_tflops,
        "weights_4bit_gb": weights_gb,
        "training": training,
        "generation": generation,
        "wall_s": round(time.perf_counter() - started),
    }
    click.echo(json.dumps(results))
    if out_path:
        Path(out_path).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
