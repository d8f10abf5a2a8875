"""The demo's workspace of its own: a fresh git repository holding this checkout's working tree.

    python -m phisum.demo DIR

`make demo` builds it, then switches it to the CPU profile and runs the pipeline, an experiment and the
metrics diff there, so the checkout keeps the committed recipe: its params.yaml, dvc.lock and .dvc files
are never touched. The files are those git tracks plus the untracked ones it does not ignore (uncommitted
changes included), less a local run's results; the first commit holds them. DIR is replaced when an
earlier `make demo` built it, and refused when it holds anything else.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import click

from phisum.cli import UserErrorCommand
from phisum.errors import UserError

# A local run's results (the pipeline's outputs that are not gitignored): the demo makes its own.
LOCAL_RESULTS = ("dvc.lock", "metrics/", "reports/", "data/predictions/")
MARKER = Path(".git/phisum-demo")  # inside .git: no file of the workspace's tree


def git(args: list[str], cwd: Path) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise UserError(f"git {' '.join(args)} in {cwd}: {done.stderr.strip()}")
    return done.stdout


def working_tree_files(root: Path) -> list[str]:
    """The project's files as the working tree has them: tracked and untracked-not-ignored, no local results."""
    listed = git(["ls-files", "-z", "--cached", "--others", "--exclude-standard"], root).split("\0")
    return [
        name
        for name in sorted(set(listed))
        if name and (root / name).is_file() and (Path(name).name == ".gitignore" or not name.startswith(LOCAL_RESULTS))
    ]


def clear_workspace(dest: Path) -> None:
    """Remove an earlier demo workspace at dest; refuse a directory that is not one (nothing else is deleted)."""
    if not dest.exists():
        return
    if not dest.is_dir() or (any(dest.iterdir()) and not (dest / MARKER).is_file()):
        raise UserError(
            f"{dest}: exists and is no demo workspace (no {MARKER}); remove it or name another (make demo DEMO=<dir>)"
        )
    shutil.rmtree(dest)


def build_workspace(root: Path, dest: Path) -> Path:
    """A new git repository at dest with root's working tree in one commit (on branch main); returns dest."""
    root, dest = root.resolve(), dest.resolve()
    files = working_tree_files(root)  # before dest exists: a dest inside root is not listed
    clear_workspace(dest)
    for name in files:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, dest / name)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
    changed = git(["status", "--porcelain", "--untracked-files=normal"], root).strip()
    source = f"{head.stdout.strip() or 'no commit'}{' with uncommitted changes' if changed else ''}"
    git(["init", "-q", "-b", "main"], dest)
    (dest / MARKER).write_text(f"{root}\n", encoding="utf-8")
    git(["add", "-A"], dest)
    git(["commit", "-q", "-m", f"phisum's working tree ({source} of {root})"], dest)
    return dest


@click.command(cls=UserErrorCommand)
@click.argument("dest", type=click.Path(path_type=Path))
def main(dest: Path) -> None:
    build_workspace(Path.cwd(), dest)
    click.echo(f"demo workspace: {dest}/ (a git repository of its own; this checkout is not changed)")


if __name__ == "__main__":
    main()
