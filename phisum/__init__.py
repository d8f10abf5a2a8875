"""Shared code for the Phi-2 QLoRA DialogSum pipeline: params, data, model, generation, scoring."""

import logging


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
