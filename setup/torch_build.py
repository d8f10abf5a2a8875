"""Which torch build `make setup` installs: one this machine's NVIDIA driver can run.

    python setup/torch_build.py [--requirements requirements.txt] [--python .venv/bin/python]

Standard library only: it runs before torch is installed. It reads the driver's CUDA version from
`nvidia-smi` and requirements.txt's `torch==X` pin, prints ONE line to stderr saying what it chose
and why, and prints on stdout the arguments of a `pip install` that installs that build before
requirements.txt (nothing when requirements.txt's pin from PyPI is the right build, or the
installed torch already is). requirements.txt's `torch==X` then accepts the installed `X+cuNNN`.
A driver too old for every build of X: one `Error:` line on stderr and exit status 1.

The rule: the newest CUDA build of X, among those PyTorch publishes, that the driver runs. By CUDA's
minor version compatibility a build for CUDA M.m runs on any driver for CUDA M.0 or newer (NVIDIA,
"CUDA Compatibility", minor version compatibility: 12.x toolkits need a driver >= 525, 13.x >= 580),
so a driver for CUDA 12.4 (Colab's T4 runtime in September 2025) runs the CUDA 12.6 build. No NVIDIA
driver (no `nvidia-smi`, or one that fails): PyPI's default, as before. An installed torch X that
already reports CUDA as usable is kept.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

PYTORCH_INDEX = "https://download.pytorch.org/whl"

# The CUDA builds PyTorch publishes for each torch version on its own index, and PyPI's build.
# Source: PyTorch's release compatibility matrix (RELEASE.md in pytorch/pytorch, "Release Compatibility
# Matrix"; read from a stored copy, download.pytorch.org is out of reach here): 2.13 is built for CUDA 12.6
# and 13.0 (stable) and 13.2 (experimental); CUDA 12.8 builds stopped after 2.11. The experimental 13.2
# build is left out. PyPI's torch==2.13.0 on x86-64 Linux is the CUDA 13.0 build (it pulls
# cuda-toolkit==13.0.3). Bumping the pin in requirements.txt means adding its row here (a test checks).
CUDA_BUILDS = {"2.13.0": {"builds": ((12, 6), (13, 0)), "pypi": (13, 0)}}

# The oldest driver series per CUDA major version (minor version compatibility, same source as above).
DRIVER_SERIES = {11: "R450", 12: "R525", 13: "R580"}


class SetupError(Exception):
    """A problem the user fixes; printed as one `Error:` line."""


@dataclass(frozen=True)
class Driver:
    cuda: tuple[int, int]  # the newest CUDA the driver supports, as nvidia-smi reports it
    version: str  # e.g. 550.54.15


@dataclass(frozen=True)
class NoDriver:
    reason: str


@dataclass(frozen=True)
class InstalledTorch:
    version: str  # e.g. 2.13.0+cu126
    cuda: str | None  # torch.version.cuda
    usable: bool  # torch.cuda.is_available()


@dataclass(frozen=True)
class Choice:
    line: str
    pip_args: tuple[str, ...] = ()


def dotted(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


def torch_pin(requirements: str) -> str:
    """The version of requirements.txt's `torch==X` line."""
    for line in requirements.splitlines():
        match = re.fullmatch(r"torch\s*==\s*([\w.]+)", line.split("#", 1)[0].strip())
        if match:
            return match.group(1)
    raise SetupError("requirements.txt has no exact `torch==X` pin: pin the torch version there")


def read_driver(timeout: float = 60) -> Driver | NoDriver:
    """The driver's CUDA version from nvidia-smi's header ("CUDA Version: 12.4"), or why there is none."""
    program = shutil.which("nvidia-smi")
    if program is None:
        return NoDriver("no nvidia-smi on PATH")
    try:
        result = subprocess.run([program], capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return NoDriver(f"nvidia-smi did not run: {error}")
    output = result.stdout + result.stderr
    first_line = next((line.strip() for line in output.splitlines() if line.strip()), "no output")
    if result.returncode != 0:
        return NoDriver(f"nvidia-smi failed (exit {result.returncode}: {first_line[:160]})")
    cuda = re.search(r"CUDA Version\s*:\s*(\d+)\.(\d+)", output)
    if cuda is None:
        return NoDriver(f"nvidia-smi printed no CUDA version ({first_line[:160]})")
    driver = re.search(r"Driver Version\s*:\s*([\d.]+)", output)
    return Driver(cuda=(int(cuda.group(1)), int(cuda.group(2))), version=driver.group(1) if driver else "unknown")


PROBE = "import json, torch; print(json.dumps([torch.__version__, torch.version.cuda, torch.cuda.is_available()]))"


def read_installed_torch(python: str, timeout: float = 300) -> InstalledTorch | None:
    """The torch in the venv (version, CUDA build, whether CUDA is usable), or None when there is none."""
    if not Path(python).exists():
        return None
    try:
        result = subprocess.run([python, "-c", PROBE], capture_output=True, text=True, timeout=timeout, check=False)
        version, cuda, usable = json.loads(result.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        return None
    return InstalledTorch(version=version, cuda=cuda, usable=bool(usable))


def choose(pin: str, driver: Driver | NoDriver, installed: InstalledTorch | None) -> Choice:
    """The torch build to install for requirements.txt's pin on this driver; raises SetupError."""
    if isinstance(driver, NoDriver):
        return Choice(f"torch {pin}: PyPI's default build ({driver.reason}, so no NVIDIA driver to match)")
    found = f"driver {driver.version} supports CUDA {dotted(driver.cuda)}"
    if installed is not None and installed.version.split("+")[0] == pin and installed.usable:
        return Choice(f"torch {pin}: keeping the installed {installed.version}, which reports CUDA usable ({found})")
    if pin not in CUDA_BUILDS:
        raise SetupError(
            f"setup/torch_build.py knows no CUDA builds of torch {pin} (requirements.txt's pin): add the ones "
            "PyTorch publishes for it to CUDA_BUILDS"
        )
    builds, pypi = CUDA_BUILDS[pin]["builds"], CUDA_BUILDS[pin]["pypi"]
    runnable = [build for build in builds if driver.cuda >= (build[0], 0)]
    if not runnable:
        oldest = min(builds)
        raise SetupError(
            f"the NVIDIA driver {driver.version} supports CUDA {dotted(driver.cuda)}; torch {pin}'s oldest build "
            f"(CUDA {dotted(oldest)}) needs a driver for CUDA {oldest[0]}.0 or newer ({DRIVER_SERIES[oldest[0]]} "
            f"series or newer): update the NVIDIA driver"
        )
    build = max(runnable)
    why = (
        f"({found}, so it runs builds for CUDA {driver.cuda[0]}.x and older; torch {pin} is built for CUDA "
        f"{', '.join(dotted(b) for b in builds)})"
    )
    if build == pypi:
        return Choice(f"torch {pin}: PyPI's build, for CUDA {dotted(build)} {why}")
    tag = f"cu{build[0]}{build[1]}"
    return Choice(
        f"torch {pin}: the CUDA {dotted(build)} build from {PYTORCH_INDEX}/{tag} {why}",
        (f"torch=={pin}+{tag}", "--index-url", f"{PYTORCH_INDEX}/{tag}"),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requirements", default="requirements.txt")
    parser.add_argument("--python", default=".venv/bin/python", help="the venv's python, to check its torch")
    args = parser.parse_args(argv)
    try:
        pin = torch_pin(Path(args.requirements).read_text(encoding="utf-8"))
        driver = read_driver()
        installed = read_installed_torch(args.python) if isinstance(driver, Driver) else None
        choice = choose(pin, driver, installed)
    except (SetupError, OSError) as error:
        print(f"Error: {error}", file=sys.stderr)
        return 1
    print(choice.line, file=sys.stderr)
    print(" ".join(choice.pip_args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
