"""Training: the 4-bit model made trainable, the SFT config, the trainer that stops at a NaN loss, and the run.

The train stage and the benchmarks share it all: the workarounds (bitsandbytes' CPU repacking, TRL's bf16 LoRA
cast) must not drift apart.
"""

from __future__ import annotations

import time
from pathlib import Path

import click
import torch
import trl.kernels.chunked_logprob
from datasets import Dataset
from peft import prepare_model_for_kbit_training
from transformers import ProgressCallback, set_seed
from trl import SFTConfig, SFTTrainer

from phisum.checkpoints import last_complete_checkpoint
from phisum.errors import UserError
from phisum.modeling import (
    build_lora_config,
    check_target_modules,
    count_parameters,
    describe_runtime,
    load_base_model,
    load_tokenizer,
    precision_cause,
    resolve_compute_dtype,
)
from phisum.params import Params, ParamsError
from phisum.tracking import DVCLiveCurves, SparseProgress

# Explicit: the reentrant default changed across torch versions.
CHECKPOINTING = {"use_reentrant": False}


def plan_processes(num_processes: int, device: str, gpu_count: int, visible_devices: str | None) -> dict[str, str]:
    """Environment for the training process(es): one process per GPU, never one process on several.

    With the model on one GPU and more visible, the Trainer counts them all (n_gpu > 1) and TRL's
    SFTTrainer refuses the nn.DataParallel that would follow; so one process sees only the first
    visible GPU. Returns the variables to set (empty: run as is).
    """
    if device == "cpu":
        return {}
    if num_processes > gpu_count:
        raise ParamsError(
            f"train.num_processes: {num_processes} processes need one GPU each, {gpu_count} visible; "
            f"set it to {max(gpu_count, 1)} or fewer (or make more GPUs visible)"
        )
    if num_processes == 1 and gpu_count > 1:
        return {"CUDA_VISIBLE_DEVICES": (visible_devices or "0").split(",")[0]}
    return {}


def select_loss_kernels(device: str) -> bool:
    """Keep TRL's chunked log-prob loss off Triton below compute capability 8.0 (a T4 is 7.5).

    TRL uses its Triton kernels on any CUDA device when Triton imports, and Triton supports
    compute capability 8.0 and up; below that, TRL's own torch fallback (the path every CPU run
    takes) computes the same loss. TRL has no switch for it, so the module flag it reads at call
    time is set. Returns whether Triton kernels stay allowed.
    """
    if device == "cuda" and torch.cuda.get_device_capability() < (8, 0):
        trl.kernels.chunked_logprob._TRITON_AVAILABLE = False
    return trl.kernels.chunked_logprob._use_triton(torch.device(device))


def load_trainable_model(params: Params, compute_dtype: torch.dtype):
    """The 4-bit base model, checked against lora.target_modules and prepared for k-bit training."""
    model = load_base_model(params.model, params.quantization, compute_dtype)
    check_target_modules(model, params.lora.target_modules)
    # On CPUs with AVX512-BF16, bitsandbytes repacks a 4-bit layer for a faster inference kernel the
    # first time it runs in eval mode, and that layout has no backward: the first training step
    # after a validation pass would fail. Keep the trainable layout (no effect on GPUs).
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
    # Casts the non-quantized weights (embeddings, norms) to fp32 and enables gradient checkpointing.
    return prepare_model_for_kbit_training(
        model,
        use_gradient_checkpointing=params.train.gradient_checkpointing,
        gradient_checkpointing_kwargs=CHECKPOINTING,
    )


def build_sft_config(params: Params, compute_dtype: torch.dtype, output_dir: str, **overrides) -> SFTConfig:
    """SFTConfig from params: completion-only loss, every optimizer step logged, NaN steps not hidden."""
    settings = {
        "output_dir": output_dir,
        "seed": params.seed,
        "max_steps": params.train.max_steps,
        "per_device_train_batch_size": params.train.batch_size,
        "per_device_eval_batch_size": params.train.batch_size,
        "gradient_accumulation_steps": params.train.grad_accum,
        "learning_rate": params.train.learning_rate,
        "optim": params.train.optim,
        "gradient_checkpointing": params.train.gradient_checkpointing,
        "gradient_checkpointing_kwargs": CHECKPOINTING,
        "fp16": compute_dtype == torch.float16,
        "bf16": compute_dtype == torch.bfloat16,
        "use_cpu": params.model.device == "cpu",
        # Prepare already cut dialogues to fit, so this never cuts a summary.
        "max_length": params.prompt.max_length,
        "completion_only_loss": True,
        "logging_steps": 1,  # every optimizer step goes to the curves; the console prints fewer
        "logging_nan_inf_filter": False,
        "report_to": "none",
    }
    return SFTConfig(**{**settings, **overrides})


def keep_lora_weights_fp32(model) -> None:
    """Undo TRL's cast of a quantized model's LoRA weights to bf16.

    A T4 has no bf16, fp16 AMP needs fp32 trainable weights, and a resumed run must continue with
    the same numbers it checkpointed.
    """
    for param in model.parameters():
        if param.requires_grad:
            param.data = param.data.float()


def to_dataset(rows: list[dict]) -> Dataset:
    """Prepared rows as TRL's prompt-completion dataset (the completion-only loss reads the split)."""
    return Dataset.from_list([{"prompt": row["prompt"], "completion": row["completion"]} for row in rows])


def build_trainer(
    params: Params,
    model,
    tokenizer,
    config: SFTConfig,
    train_dataset: Dataset,
    eval_dataset: Dataset | None = None,
    trainer_class: type[SFTTrainer] = SFTTrainer,
    add_adapter: bool = True,
    callbacks: list | None = None,
) -> SFTTrainer:
    """The SFTTrainer on the k-bit-prepared model, with params.lora's adapter (add_adapter=False: the model already
    has it), its trainable weights kept fp32."""
    trainer = trainer_class(
        model=model,
        args=config,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=build_lora_config(params.lora) if add_adapter else None,
        callbacks=callbacks,
    )
    keep_lora_weights_fp32(trainer.model)
    return trainer


class NonFiniteLossError(UserError, RuntimeError):
    """Training produced NaN/inf; the run stops before any adapter is written."""


class CheckedSFTTrainer(SFTTrainer):
    """SFTTrainer that stops at the first non-finite micro-batch loss.

    The Trainer's logs average over steps and (by default) filter NaN/inf, which is how fp16
    overflow in Phi-2's attention goes unnoticed until the outputs are "!!!!".
    """

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if not torch.isfinite(loss).all():
            dtype = torch.float16 if self.args.fp16 else torch.bfloat16 if self.args.bf16 else torch.float32
            raise NonFiniteLossError(
                non_finite_loss_message(loss.item(), self.state.global_step + 1, self.args.device.type, dtype)
            )
        return loss


def non_finite_loss_message(loss: float, step: int, device: str, compute_dtype) -> str:
    """What a NaN/inf loss at this compute dtype likely means, and what to change on this device."""
    dtype = str(compute_dtype).removeprefix("torch.")
    if (precision := precision_cause(device, compute_dtype)) is None:
        return (
            f"non-finite training loss ({loss}) at step {step} at compute dtype {dtype}; likely a learning rate "
            "too high: lower train.learning_rate"
        )
    cause, advice = precision
    return (
        f"non-finite training loss ({loss}) at step {step} at compute dtype {dtype}; likely {cause} or a learning "
        f"rate too high: set {advice} or lower train.learning_rate"
    )


def build_run_trainer(
    params: Params,
    train_rows: list[dict],
    eval_rows: list[dict],
    run_dir: Path,
    curves_dir: Path,
    trainer_class: type[SFTTrainer] = CheckedSFTTrainer,
):
    """The train stage's trainer, ready to train (or resume) into run_dir; returns it and the compute dtype."""
    set_seed(params.seed)
    compute_dtype = resolve_compute_dtype(params.quantization.compute_dtype, params.model.device)
    triton_loss = select_loss_kernels(params.model.device)
    tokenizer = load_tokenizer(params.model)
    model = load_trainable_model(params, compute_dtype)
    click.echo(f"  {describe_runtime(model, compute_dtype)}, loss kernels {'triton' if triton_loss else 'torch'}")
    config = build_sft_config(
        params,
        compute_dtype,
        str(run_dir),
        eval_strategy="steps",
        eval_steps=params.train.eval_steps,
        save_strategy="steps",
        save_steps=params.train.save_steps,
        save_total_limit=params.train.save_total_limit,
    )
    trainer = build_trainer(
        params,
        model,
        tokenizer,
        config,
        to_dataset(train_rows),
        to_dataset(eval_rows),
        trainer_class=trainer_class,
        callbacks=[DVCLiveCurves(curves_dir)],
    )
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(SparseProgress(params.train.logging_steps))
    return trainer, compute_dtype


def train_adapter(
    params: Params,
    train_rows: list[dict],
    eval_rows: list[dict],
    run_dir: Path,
    out_dir: Path,
    curves_dir: Path,
    trainer_class: type[SFTTrainer] = CheckedSFTTrainer,
) -> dict:
    """Train (or resume from run_dir's checkpoints) the adapter, save it to out_dir, and return training metrics."""
    trainer, compute_dtype = build_run_trainer(params, train_rows, eval_rows, run_dir, curves_dir, trainer_class)
    tokenizer = trainer.processing_class
    last = last_complete_checkpoint(run_dir) if run_dir.is_dir() else None
    resume_from = str(last) if last else None
    if resume_from:
        click.echo(f"  resuming from {resume_from}")
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume_from)
    runtime = time.perf_counter() - started
    history = trainer.state.log_history
    losses = [entry["loss"] for entry in history if "loss" in entry]
    eval_losses = [entry["eval_loss"] for entry in history if "eval_loss" in entry]
    if trainer.is_world_process_zero():
        trainer.model.save_pretrained(out_dir, safe_serialization=True)
        tokenizer.save_pretrained(out_dir)
    # Wall-clock time is not a metric: it would make two identical runs' metrics files differ.
    click.echo(f"  trained {trainer.state.global_step} steps in {runtime:.1f} s")
    return {
        "first_loss": round(losses[0], 4),
        "last_loss": round(losses[-1], 4),
        "first_eval_loss": round(eval_losses[0], 4) if eval_losses else None,
        "last_eval_loss": round(eval_losses[-1], 4) if eval_losses else None,
        "steps": trainer.state.global_step,
        "processes": trainer.args.world_size,
        "resumed_from_step": int(resume_from.rsplit("-", 1)[-1]) if resume_from else 0,
        **count_parameters(trainer.model),
        "compute_dtype": str(compute_dtype).removeprefix("torch."),
    }
