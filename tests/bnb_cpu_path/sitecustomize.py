"""Forces bitsandbytes' CPU branch in a test's subprocess: PYTHONPATH=<this dir>, PHISUM_TEST_AVX512BF16=0 or 1.

bitsandbytes picks its CPU 4-bit kernels once, at import, by `has_avx512bf16()` (backends/cpu/ops.py); the
answer is replaced as bitsandbytes.functional is loaded, before the backends read it. Forcing 1 on a CPU
without AVX512-BF16 is only safe for what happens at import: a bf16 kernel call there would be an illegal
instruction.
"""

import importlib.abc
import importlib.machinery
import os
import sys

FORCED = os.environ["PHISUM_TEST_AVX512BF16"] == "1"


class _ForceAvx512Bf16(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "bitsandbytes.functional":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        real_exec = spec.loader.exec_module

        def exec_module(module):
            real_exec(module)
            module.has_avx512bf16 = lambda: FORCED

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _ForceAvx512Bf16())
