"""Hooks for a test's subprocess (a stage, or `dvc repro` and the stages it runs): PYTHONPATH=<this dir> plus

- PHISUM_TEST_AVX512BF16=0|1: forces bitsandbytes' CPU branch. bitsandbytes picks its CPU 4-bit kernels once,
  at import, by `has_avx512bf16()` (backends/cpu/ops.py); the answer is replaced as bitsandbytes.functional is
  loaded, before the backends read it. Forcing 1 on a CPU without AVX512-BF16 is only safe for what happens at
  import: a bf16 kernel call there would be an illegal instruction.
- PHISUM_TEST_FULL_DISK_FROM=N: in a stage run by DVC (DVC_STAGE set; DVC itself writes normally), the N-th
  temporary output file and every later one write to /dev/full (a real ENOSPC).
"""

import importlib.abc
import importlib.machinery
import os
import sys

if "PHISUM_TEST_AVX512BF16" in os.environ:
    forced = os.environ["PHISUM_TEST_AVX512BF16"] == "1"

    class _ForceAvx512Bf16(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name != "bitsandbytes.functional":
                return None
            sys.meta_path.remove(self)
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            real_exec = spec.loader.exec_module

            def exec_module(module):
                real_exec(module)
                module.has_avx512bf16 = lambda: forced

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, _ForceAvx512Bf16())

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
