"""Build the carry kit that lets benchmarks/gpu_phi2.py run unchanged on an offline GPU machine (`make gpu-kit`).

    python benchmarks/gpu_kit.py [--kit-dir .gpukit] [--cuda 130]

The GPU machine's image (torch 2.11 built for CUDA 13.0, Python 3.12, transformers 5.17, peft,
accelerate 1.15; no bitsandbytes, TRL, datasets or ruamel.yaml; no network) takes at most 64 MiB of
working tree plus carried files. The kit holds the wheels of what the benchmark imports and the image
lacks or holds at another version than requirements.txt pins, with bitsandbytes trimmed to the one
CUDA build the image's torch loads (its wheel carries 16 builds, 43 MB). Prints the `run` call to use.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
# Pinned in requirements.txt; transformers and peft travel too, so the GPU runs the pinned versions.
PINNED = ("bitsandbytes", "trl", "datasets", "ruamel.yaml", "transformers", "peft")
# Not project dependencies, but datasets imports them and the image lacks them (versions as in our venv).
EXTRA = ("dill==0.4.1", "multiprocess==0.70.19")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64")
LIMIT_BYTES = 64 * 2**20  # the device tool's limit on working tree + carried paths


def kit_pins(requirements: str) -> list[str]:
    """The exact `name==version` pins the kit needs, read from requirements.txt."""
    pins = {}
    for line in requirements.splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s#]+)", line.strip())
        if match:
            pins[match.group(1).lower()] = match.group(2)
    missing = [name for name in PINNED if name not in pins]
    if missing:
        raise click.ClickException(f"requirements.txt: no exact pin for {', '.join(missing)}")
    return [f"{name}=={pins[name]}" for name in PINNED] + list(EXTRA)


def record_line(name: str, data: bytes) -> list[str]:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return [name, f"sha256={digest}", str(len(data))]


def trim_bitsandbytes(wheel: Path, cuda: str) -> list[str]:
    """Rewrite the wheel without the native libraries the image cannot use; returns the ones dropped.

    Keeps the CPU library and libbitsandbytes_cuda<cuda>.so (bitsandbytes loads the build matching
    torch.version.cuda); RECORD is rewritten to list exactly what stays.
    """
    keep = {"libbitsandbytes_cpu.so", f"libbitsandbytes_cuda{cuda}.so"}
    with zipfile.ZipFile(wheel) as source:
        entries = [(info, source.read(info)) for info in source.infolist()]
    native = [info.filename for info, _ in entries if re.search(r"/libbitsandbytes_\w+\.so$", info.filename)]
    if not any(name.endswith(f"libbitsandbytes_cuda{cuda}.so") for name in native):
        raise click.ClickException(f"{wheel.name} has no CUDA {cuda} build; it has: {', '.join(native)}")
    dropped = [name for name in native if name.rsplit("/", 1)[-1] not in keep]
    kept = [(info, data) for info, data in entries if info.filename not in dropped]
    record_name = next(info.filename for info, _ in kept if info.filename.endswith(".dist-info/RECORD"))
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for info, data in kept:
        writer.writerow([record_name, "", ""] if info.filename == record_name else record_line(info.filename, data))
    tmp = wheel.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as target:
        for info, data in kept:
            target.writestr(info, record.getvalue().encode() if info.filename == record_name else data)
    tmp.replace(wheel)
    return dropped


def tree_bytes() -> int:
    """What the device tool sends besides carried paths: tracked and untracked-not-ignored files."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    return sum((ROOT / name).stat().st_size for name in listed if name and (ROOT / name).is_file())


def check_size(kit_bytes: int, other_bytes: int, limit: int = LIMIT_BYTES) -> None:
    if kit_bytes + other_bytes > limit:
        raise click.ClickException(
            f"kit {kit_bytes / 2**20:.1f} MiB + working tree {other_bytes / 2**20:.1f} MiB exceed "
            f"{limit / 2**20:.0f} MiB: carry fewer wheels"
        )


def run_command(kit_dir: str, families: bool = False) -> str:
    """A device `run` command: install the kit into /tmp/site, then the benchmark, output to $OUT.

    families: the second call, `--families all` (Llama-3-8B, Mistral-7B-v0.3, Qwen2.5-7B) instead of Phi-2.
    """
    name = "gpu_families" if families else "gpu_phi2"
    option = "--families all " if families else ""
    # The image's own versions of what the kit's wheels need (datasets wants pyarrow >= 24, fsspec <= 2026.9.0)
    # are printed first: a failing import then names its cause.
    return (
        "set -o pipefail; python3 -m pip list 2>/dev/null | grep -iE '^(pyarrow|fsspec|pandas|huggingface.hub|"
        "tokenizers|accelerate|torch|triton) '; python3 -m pip install -q --no-index --no-deps --no-compile "
        f"--no-cache-dir --upgrade --target /tmp/site {kit_dir}/*.whl || exit; export PYTHONPATH=/tmp/site:$PWD "
        f"HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1; python3 benchmarks/gpu_phi2.py {option}--out $OUT/{name}.json 2>&1 "
        f"| tee $OUT/{name}.log"
    )


@click.command()
@click.option("--kit-dir", default=".gpukit", show_default=True, help="Git-ignored folder, relative to the repo.")
@click.option("--cuda", default="130", show_default=True, help="The CUDA build the image's torch loads (13.0).")
def main(kit_dir: str, cuda: str) -> None:
    out_dir = ROOT / kit_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.whl"):
        old.unlink()
    pins = kit_pins((ROOT / "requirements.txt").read_text(encoding="utf-8"))
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version", "3.12"]
        + ["--implementation", "cp", *platforms, "-d", str(out_dir), *pins],
        check=True,
    )
    (wheel,) = out_dir.glob("bitsandbytes-*.whl")
    dropped = trim_bitsandbytes(wheel, cuda)
    click.echo(f"bitsandbytes: kept the CPU and CUDA {cuda} builds, dropped {len(dropped)}")
    kit_bytes = sum(path.stat().st_size for path in out_dir.glob("*.whl"))
    other_bytes = tree_bytes()
    check_size(kit_bytes, other_bytes)
    for path in sorted(out_dir.glob("*.whl")):
        click.echo(f"  {path.stat().st_size:>12,}  {path.name}")
    click.echo(f"kit {kit_bytes / 2**20:.1f} MiB + working tree {other_bytes / 2**20:.1f} MiB (limit 64 MiB)")
    click.echo("\nOn the GPU machine (the device tool's run), with:")
    click.echo(f'  carry: ["{kit_dir}"]   timeout_s: 600')
    click.echo(f"  command: {run_command(kit_dir)}")
    click.echo("Then, in a second call with the same carry, the other model families (#22: will they fit a T4?):")
    click.echo(f"  command: {run_command(kit_dir, families=True)}")


if __name__ == "__main__":
    main()
