"""What the train stage and the benchmarks share: the 4-bit model made trainable, the SFT config and the trainer.

Both carry workarounds that must not drift apart: bitsandbytes' CPU repacking and TRL's bf16 LoRA cast.
"""

from __future__ import annotations

import torch
import trl.kernels.chunked_logprob
from datasets import Dataset
from peft import prepare_model_for_kbit_training
from trl import SFTConfig, SFTTrainer

from phisum.modeling import build_lora_config, check_target_modules, load_base_model
from phisum.params import Params, ParamsError

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
