"""What DVC's run cache saves: `dvc exp run -S lora.r=R` against a full `dvc repro --force`, side by side.

    python benchmarks/reuse.py [WORKSPACE] [--scratch DIR] [--ranks 16,8] [--threads 1] [--out FILE]

WORKSPACE is the workspace `make demo` builds (default demo). The benchmark never touches it: its
files (without .git, .venv and the DVC cache) are copied into a fresh git repo under --scratch, whose
params.yaml is the workspace's. There, an untimed `dvc repro` first, then per rank: a timed
`dvc repro --force` (every stage, the LoRA rank of params.yaml) and a timed `dvc exp run -S lora.r=R`
(a new rank each time, so its train stage is never in the run cache). The experiment must restore
prepare and generate@base: DVC's output is grepped for "didn't change, skipping".
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

SKIP_ALWAYS = {".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache"}
SKIP_UNDER = {".dvc": {"cache", "tmp"}, "models": {"checkpoints"}}  # local state, not the project
REUSED = re.compile(r"Stage '([^']+)' (didn't change, skipping|is cached - skipping run)")
RAN = re.compile(r"Running stage '([^']+)'")
MUST_BE_REUSED = ("prepare", "generate@base")


def copy_workspace(workspace: Path, scratch: Path) -> None:
    """The workspace's files in a new git repo (one commit), so experiments there leave it untouched."""

    def ignore(directory: str, names: list[str]) -> set[str]:
        under = SKIP_UNDER.get(os.path.relpath(directory, workspace), set())
        return {name for name in names if name in SKIP_ALWAYS or name in under}

    shutil.copytree(workspace, scratch, ignore=ignore, dirs_exist_ok=True)
    for command in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "benchmark baseline"]):
        subprocess.run(command, cwd=scratch, env=environment(scratch, 0), check=True, capture_output=True)


def environment(scratch: Path, threads: int) -> dict:
    """The project's venv first on PATH, the scratch copy's phisum first on the import path."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    env["PYTHONPATH"] = str(scratch)
    for role in ("AUTHOR", "COMMITTER"):
        env.setdefault(f"GIT_{role}_NAME", "phisum-benchmark")
        env.setdefault(f"GIT_{role}_EMAIL", "benchmark@phisum.invalid")
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def timed(args: list[str], scratch: Path, threads: int) -> dict:
    """Run a DVC command; return its wall time and which stages ran and which were restored."""
    click.echo(f"  $ {' '.join(args)}")
    started = time.perf_counter()
    done = subprocess.run(args, cwd=scratch, env=environment(scratch, threads), capture_output=True, text=True)
    seconds = time.perf_counter() - started
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise click.ClickException(f"{' '.join(args)} failed:\n{output[-3000:]}")
    reused = {stage: how for stage, how in REUSED.findall(output)}
    return {"seconds": round(seconds, 1), "ran": sorted(set(RAN.findall(output))), "reused": reused}


@click.command()
@click.argument("workspace", default="demo", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--scratch", "scratch_dir", default="", help="Where to copy the workspace; default: a new temp dir.")
@click.option("--ranks", default="16,8", show_default=True, help="One timed pair per rank.")
@click.option("--threads", default=0, help="OMP_NUM_THREADS for the stages; 0 = leave unset.")
@click.option("--out", "out_path", default="", type=click.Path(dir_okay=False), help="Also write the JSON here.")
def main(workspace: Path, scratch_dir: str, ranks: str, threads: int, out_path: str) -> None:
    scratch = Path(scratch_dir or tempfile.mkdtemp(prefix="phisum-reuse-")).resolve()
    if scratch.exists() and any(scratch.iterdir()):
        raise click.ClickException(f"{scratch} is not empty")
    copy_workspace(workspace.resolve(), scratch)
    click.echo(f"scratch copy of {workspace.resolve()} in {scratch}")
    timed(["dvc", "repro"], scratch, threads)  # untimed warm-up: brings the copy up to date and fills the caches
    pairs = []
    for rank in [int(r) for r in ranks.split(",")]:
        full = timed(["dvc", "repro", "--force"], scratch, threads)
        experiment = timed(["dvc", "exp", "run", "-S", f"lora.r={rank}"], scratch, threads)
        subprocess.run(["git", "checkout", "--", "params.yaml"], cwd=scratch, check=True)  # back to the base rank
        missing = [stage for stage in MUST_BE_REUSED if stage not in experiment["reused"]]
        pairs.append({"rank": rank, "full": full, "experiment": experiment, "not_reused": missing})
        click.echo(
            f"  r={rank}: full {full['seconds']} s, experiment {experiment['seconds']} s "
            f"({experiment['seconds'] / full['seconds']:.0%} of it); ran {experiment['ran']}, "
            f"reused {experiment['reused']}"
        )
    ratio = statistics.median(p["experiment"]["seconds"] / p["full"]["seconds"] for p in pairs)
    reused_ok = all(not p["not_reused"] for p in pairs)
    click.echo(f"experiment / full run: median {ratio:.2f}; prepare and generate@base restored: {reused_ok}")
    results = {"pairs": pairs, "median_ratio": round(ratio, 3), "reused_ok": reused_ok}
    click.echo(json.dumps(results))
    if out_path:
        Path(out_path).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    if not reused_ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
