"""Shared code for the Phi-2 QLoRA DialogSum pipeline: params, data, model, generation, scoring."""

import logging
import re
import warnings


class _MissingOptionalCpuKernel(logging.Filter):
    """Drops one known, harmless bitsandbytes record and nothing else.

    On CPUs with AVX512-BF16, importing bitsandbytes 0.50 (which peft and transformers do) tries the optional
    `kernels` package for its CPU 4-bit matmul and logs a warning when it is absent; bitsandbytes then uses its
    own built-in bf16 kernel. Nothing in this project needs the optional one (it downloads from the hub), and
    the warning would break every stage's "one `Error:` line" on those CPUs. Only the record that names the
    missing `kernels` module is dropped: any other failure to load the kernel stays visible.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (
            message.startswith("Failed to load CPU gemm_4bit_forward from kernels-community")
            and "No module named 'kernels'" in message
        )


# Installed before anything imports bitsandbytes: every stage and tool imports phisum first.
logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(_MissingOptionalCpuKernel())


# Warnings every run printed that no user can act on, each dropped by its whole message, its category and the module
# that warns; the same words from anywhere else, and every other warning, stay visible (tests/test_messages.py).
HARMLESS_WARNINGS = (
    # transformers 5 renamed gradient checkpointing to activation checkpointing and keeps the old names as aliases
    # until v6 (requirements.txt pins 5.x): peft's prepare_model_for_kbit_training and PeftModel call the old
    # methods, and phisum/training.py passes train.gradient_checkpointing to SFTConfig under the old field names.
    *(
        (f"`{old}` is deprecated and will be removed in v6. Use `{new}` instead.", FutureWarning, module)
        for old, new, module in (
            ("gradient_checkpointing_enable", "activation_checkpointing_enable", "transformers.modeling_utils"),
            ("is_gradient_checkpointing", "is_activation_checkpointing", "transformers.modeling_utils"),
            ("gradient_checkpointing", "activation_checkpointing", "transformers.training_args"),
            ("gradient_checkpointing_kwargs", "activation_checkpointing_kwargs", "transformers.training_args"),
        )
    ),
    # The CPU profile keeps the T4's paged 8-bit AdamW so that the demo runs the same code; on a CPU, where
    # there is no GPU memory to page from, bitsandbytes runs it unpaged, which is all the demo needs.
    (
        "Paged optimizers are not supported on CPU. Falling back to non-paged optimizer behavior.",
        UserWarning,
        "bitsandbytes.optim.optimizer",
    ),
)
for _message, _category, _module in HARMLESS_WARNINGS:
    warnings.filterwarnings("ignore", message=re.escape(_message) + r"\Z", category=_category, module=_module + r"\Z")
