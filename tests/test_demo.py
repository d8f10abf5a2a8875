"""phisum.demo: `make demo`'s workspace, a git repository of its own made from the checkout's working tree."""

from pathlib import Path

import pytest

from phisum.demo import build_workspace
from phisum.errors import UserError
from tests.helpers import ROOT, run


def files_of(repo: Path) -> set[str]:
    return {p.relative_to(repo).as_posix() for p in repo.rglob("*") if p.is_file() and ".git" not in p.parts}


@pytest.fixture()
def checkout(tmp_path) -> Path:
    """A small project: committed files, an edit, a new file, an ignored one and a local run's results."""
    repo = tmp_path / "checkout"
    files = {
        ".gitignore": "/ignored/\n",
        "params.yaml": "lora:\n  r: 32\n",
        "stages/train.py": "print('train')\n",
        "data/predictions/.gitignore": "/base\n",
        "dvc.lock": "schema: '2.0'\n",  # a committed T4 run
        "metrics/peft.json": "{}\n",
    }
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    run(["git", "init", "-q"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "project"], repo)
    (repo / "stages/train.py").write_text("print('train, edited')\n")
    (repo / "phisum.py").write_text("new = 1\n")
    (repo / "reports").mkdir()
    (repo / "reports/qualitative.md").write_text("# a local run\n")
    (repo / "ignored").mkdir()
    (repo / "ignored/big.bin").write_text("x")
    return repo


def test_the_workspace_holds_the_working_tree_in_one_commit_and_the_checkout_is_unchanged(checkout, tmp_path):
    status = run(["git", "status", "--porcelain"], checkout)
    workspace = build_workspace(checkout, tmp_path / "demo")
    assert files_of(workspace) == {
        ".gitignore",
        "params.yaml",
        "stages/train.py",
        "phisum.py",
        "data/predictions/.gitignore",
    }
    assert (workspace / "stages/train.py").read_text() == "print('train, edited')\n"  # uncommitted edits included
    log = run(["git", "log", "--format=%s"], workspace).splitlines()
    assert len(log) == 1 and log[0].endswith(f"with uncommitted changes of {checkout})"), log
    assert run(["git", "branch", "--show-current"], workspace).strip() == "main"
    assert run(["git", "status", "--porcelain"], workspace) == ""
    assert run(["git", "status", "--porcelain"], checkout) == status


def test_a_rebuild_replaces_an_earlier_workspace_and_nothing_else(checkout, tmp_path):
    workspace = build_workspace(checkout, tmp_path / "demo")
    (workspace / "models").mkdir()
    (workspace / "models/adapter.bin").write_text("an earlier demo's run")
    build_workspace(checkout, workspace)
    assert not (workspace / "models").exists()
    assert len(run(["git", "log", "--format=%s"], workspace).splitlines()) == 1

    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match=r"mine: exists and is no demo workspace \(no \.git/phisum-demo\)"):
        build_workspace(checkout, other)
    assert (other / "notes.txt").read_text() == "keep me"
    with pytest.raises(UserError, match="exists and is no demo workspace"):
        build_workspace(checkout, checkout)  # never the checkout itself
    assert files_of(checkout) >= {"params.yaml", "dvc.lock", "ignored/big.bin"}


def test_make_demo_builds_its_workspace_outside_the_checkout(tmp_path):
    """The Makefile's demo target: the workspace first, and every later command in it (`make -n`, nothing run)."""
    workspace = tmp_path / "ws"
    # --no-print-directory: under `make test` this make is a sub-make, which would announce its directory.
    make = ["make", "--no-print-directory", "-n", "-o", ".venv/.installed", "demo", f"DEMO={workspace}", "DATA=mine"]
    dry = run(make, ROOT).splitlines()
    assert dry[0].endswith(f'python -m phisum.demo "{workspace}"'), dry[0]
    commands = [line for line in dry[1:] if line and not line.startswith(("echo", "\t"))]
    assert len(commands) >= 8 and all(line.startswith(f'cd "{workspace}" && ') for line in commands), commands
    assert f'python -m phisum.profile --data "{ROOT}/mine"' in "\n".join(commands)  # DATA relative to the checkout
    assert not workspace.exists()
