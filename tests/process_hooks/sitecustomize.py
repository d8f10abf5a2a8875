"""Hooks for a test's subprocess (a stage, or `dvc repro` and the stages it runs): PYTHONPATH=<this dir> plus

- PHISUM_TEST_AVX512BF16=0|1: forces bitsandbytes' CPU branch. bitsandbytes picks its CPU 4-bit kernels once,
  at import, by `has_avx512bf16()` (backends/cpu/ops.py); the answer is replaced as bitsandbytes.functional is
  loaded, before the backends read it. Forcing 1 on a CPU without AVX512-BF16 is only safe for what happens at
  import: a bf16 kernel call there would be an illegal instruction.
- PHISUM_TEST_FULL_DISK_FROM=N: in a stage run by DVC (DVC_STAGE set; DVC itself writes normally), the N-th
  temporary output file and every later one write to /dev/full (a real ENOSPC).
- PHISUM_TEST_GPUS=N: CUDA faked with N GPUs of a T4's compute capability (7.5), or as many as a set
  CUDA_VISIBLE_DEVICES names; loading the trainable model, which no faked GPU can hold, prints
  `waiting for a signal: rank R pid P` instead and waits to be interrupted (the train stage's relaunches).
"""

import importlib.abc
import importlib.machinery
import os
import sys


class _PatchAfterImport(importlib.abc.MetaPathFinder):
    """Runs patch(module) once the module `name` is loaded, before anything else reads it."""

    def __init__(self, name, patch):
        self.name, self.patch = name, patch

    def find_spec(self, name, path, target=None):
        if name != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        real_exec = spec.loader.exec_module

        def exec_module(module):
            real_exec(module)
            self.patch(module)

        spec.loader.exec_module = exec_module
        return spec


if "PHISUM_TEST_AVX512BF16" in os.environ:
    forced = os.environ["PHISUM_TEST_AVX512BF16"] == "1"

    def _force_avx512bf16(functional):
        functional.has_avx512bf16 = lambda: forced

    sys.meta_path.insert(0, _PatchAfterImport("bitsandbytes.functional", _force_avx512bf16))

if "PHISUM_TEST_FULL_DISK_FROM" in os.environ and "DVC_STAGE" in os.environ:
    import tempfile

    first_failing, real_mkstemp, calls = int(os.environ["PHISUM_TEST_FULL_DISK_FROM"]), tempfile.mkstemp, []

    def _mkstemp(*args, **kwargs):
        calls.append(1)
        fd, tmp = real_mkstemp(*args, **kwargs)
        if len(calls) < first_failing:
            return fd, tmp
        os.close(fd)
        return os.open("/dev/full", os.O_WRONLY), tmp

    tempfile.mkstemp = _mkstemp

if "PHISUM_TEST_GPUS" in os.environ:

    def _fake_gpus(modeling):  # once the stage's model code is imported: bitsandbytes' import needs the truth
        import torch

        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        count = len(visible.split(",")) if visible else int(os.environ["PHISUM_TEST_GPUS"])
        torch.cuda.is_available = lambda: True
        torch.cuda.device_count = lambda: count
        torch.cuda.get_device_capability = lambda *args: (7, 5)

    def _wait_instead_of_loading(training):
        def load_trainable_model(*args, **kwargs):
            import signal

            print(f"waiting for a signal: rank {os.environ.get('RANK', '0')} pid {os.getpid()}", flush=True)
            while True:
                signal.pause()

        training.load_trainable_model = load_trainable_model

    sys.meta_path.insert(0, _PatchAfterImport("phisum.modeling", _fake_gpus))
    sys.meta_path.insert(0, _PatchAfterImport("phisum.training", _wait_instead_of_loading))
