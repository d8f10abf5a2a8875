"""notebooks/t4.ipynb, executed by a real Jupyter kernel (nbclient + ipykernel) on the CPU profile.

It runs in a copy of the demo workspace, where `dvc repro` restores every stage from the cache, as a
Kaggle notebook would see it (KAGGLE_KERNEL_RUN_TYPE set, the hub token a Kaggle secret, faked by a
`kaggle_secrets` module on the kernel's path), with the venv off the kernel's PATH: the notebook must
put it there itself. The demo tests live in modules of their own (tests/conftest.py says why).
"""

import json
import os
import shutil
from pathlib import Path

import nbformat
import pytest
import yaml
from nbclient import NotebookClient

from tests.helpers import FAKE_TOKEN, VENV_BIN, command_env, copy_demo

pytestmark = pytest.mark.slow

NOTEBOOK = Path("notebooks/t4.ipynb")


def outputs(cell: dict) -> list[tuple[str, str]]:
    """(kind, text) of each output of an executed cell: kind 'stream', 'markdown', 'image' or 'error'."""
    found = []
    for output in cell.get("outputs", []):
        if output["output_type"] == "stream":
            found.append(("stream", output["text"]))
        elif output["output_type"] in ("display_data", "execute_result"):
            data = output["data"]
            if "text/markdown" in data:
                found.append(("markdown", data["text/markdown"]))
            if "image/png" in data:
                found.append(("image", data["image/png"]))
        elif output["output_type"] == "error":
            found.append(("error", "\n".join(output["traceback"])))
    return found


def cell_text(cell: dict) -> str:
    return "".join(text for kind, text in outputs(cell) if kind in ("stream", "error"))


def cell_running(notebook, command: str) -> dict:
    """The one code cell whose source contains `command`."""
    cells = [cell for cell in notebook.cells if cell.cell_type == "code" and command in cell.source]
    assert len(cells) == 1, f"{len(cells)} cells contain {command!r}"
    return cells[0]


def kernel_env(fake_secrets: Path) -> dict[str, str]:
    """Kaggle's environment, as far as the notebook can tell: its run-type variable and its secrets module.

    The venv is not on PATH (a notebook kernel's PATH has the platform's tools), and no HF_TOKEN variable: the
    token comes from the secret or not at all.
    """
    env = command_env({"KAGGLE_KERNEL_RUN_TYPE": "Interactive", "OMP_NUM_THREADS": "1"})
    venv_bin = VENV_BIN.resolve()
    env["PATH"] = os.pathsep.join(
        entry for entry in env["PATH"].split(os.pathsep) if entry and Path(entry).resolve() != venv_bin
    )
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(fake_secrets), os.environ.get("PYTHONPATH")]))
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "VIRTUAL_ENV"):
        env.pop(name, None)
    return env


def test_notebook_runs_the_pipeline_and_shows_the_results(demo_repo, tmp_path):
    repo = copy_demo(demo_repo[0], tmp_path / "repo")
    storage, venv = tmp_path / "storage", VENV_BIN.parent
    fake_secrets = tmp_path / "fake-kaggle"
    fake_secrets.mkdir()
    (fake_secrets / "kaggle_secrets.py").write_text(
        "class UserSecretsClient:\n"
        "    def get_secret(self, label):\n"
        f"        return {FAKE_TOKEN!r} if label == 'HF_TOKEN' else None\n"
    )
    env = kernel_env(fake_secrets)
    # Without the notebook's own PATH setting, its commands would not find the venv's tools.
    assert (
        shutil.which("dvc", path=env["PATH"]) is None
        or Path(shutil.which("dvc", path=env["PATH"])).resolve() != (VENV_BIN / "dvc").resolve()
    )

    notebook = nbformat.read(repo / NOTEBOOK, as_version=4)
    parameters = [i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", [])]
    assert len(parameters) == 1, "one cell tagged 'parameters'"
    # Papermill's way: a cell after the parameters cell overrides them.
    overrides = {"PROFILE": "cpu", "STORAGE": str(storage), "VENV": str(venv), "MAKE_ARGS": f"-o {venv}/.installed"}
    for name in overrides:
        assert f"\n{name} = " in "\n" + notebook.cells[parameters[0]].source, f"{name} is no parameter"
    injected = nbformat.v4.new_code_cell("\n".join(f"{name} = {value!r}" for name, value in overrides.items()))
    notebook.cells.insert(parameters[0] + 1, injected)

    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(repo)}}).execute(
        env=env
    )

    # A later cell's `python` and `dvc` are the venv's: the PATH set in the kernel carried over.
    tools = cell_text(cell_running(notebook, 'nb.sh("command -v python dvc")')).splitlines()
    found = [line for line in tools if line.startswith("/")]
    assert [Path(line).name for line in found] == ["python", "dvc"], tools
    assert all(Path(line).resolve() == (VENV_BIN / Path(line).name).resolve() for line in found), tools
    assert "Data and pipelines are up to date." in cell_text(cell_running(notebook, "dvc repro --pull"))

    # The token: from the (fake) Kaggle secret, and nowhere in the outputs or the files.
    assert "hub token: the Kaggle secret HF_TOKEN" in cell_text(cell_running(notebook, "nb.use_hub_token"))
    assert FAKE_TOKEN not in nbformat.writes(notebook)
    for folder in (repo, storage):
        for path in folder.rglob("*"):
            if path.is_file() and not path.is_symlink():
                assert FAKE_TOKEN.encode() not in path.read_bytes(), path

    # The persistent storage: checkpoints pointed there, the DVC remote there and pushed to, the results copied.
    storage_text = cell_text(cell_running(notebook, "nb.persistent_storage"))
    assert f"checkpoints: {storage / 'checkpoints'}" in storage_text
    assert f"url = {storage / 'dvc-remote'}" in (repo / ".dvc" / "config.local").read_text()
    pushed = {path.name for path in (storage / "dvc-remote").rglob("*") if path.is_file()}
    assert len(pushed) > 10 and (storage / "dvc-remote" / "runs").is_dir(), sorted(pushed)[:20]
    for name in ("metrics/peft.json", "metrics/human.json", "reports/qualitative.md", "dvc.lock"):
        assert (storage / "results" / name).read_bytes() == (repo / name).read_bytes(), name

    # The headline table, with the scores of the metrics files and the stress intervals.
    peft, human = (json.loads((repo / f"metrics/{name}.json").read_text()) for name in ("peft", "human"))
    compare = json.loads((repo / "metrics/compare.json").read_text())
    table = "".join(text for kind, text in outputs(cell_running(notebook, "--summary")) if kind == "markdown")
    assert f"| peft | {peft['pooled_reference']['rouge1']:.4f} |" in table
    assert f"| human | {human['pooled_reference']['rouge1']:.4f} |" in table
    final_time = compare["stress"]["final_time_correct"]
    assert f"(95% CI [{final_time['ci_low']}, {final_time['ci_high']}]" in table
    intervals = "".join(text for kind, text in outputs(cell_running(notebook, "compare.json")) if kind == "markdown")
    rouge1 = compare["pooled_reference"]["rouge1"]
    expected = f"| pooled_reference | rouge1 | {rouge1['delta']} | [{rouge1['ci_low']}, {rouge1['ci_high']}] |"
    assert expected in intervals
    ceiling = "".join(text for kind, text in outputs(cell_running(notebook, "human.json")) if kind == "markdown")
    base = json.loads((repo / "metrics/base.json").read_text())
    pooled = [block["pooled_reference"]["rouge1"] for block in (base["leave_one_out"], peft["leave_one_out"], human)]
    assert "| pooled_reference rouge1 | " + " | ".join(map(str, pooled)) + " |" in ceiling

    # The report rendered as Markdown, whole; one chart per plot of dvc.yaml.
    report = [text for kind, text in outputs(cell_running(notebook, "qualitative.md")) if kind == "markdown"]
    assert report == [(repo / "reports/qualitative.md").read_text(encoding="utf-8")]
    charts = [kind for kind, _ in outputs(cell_running(notebook, "plt.show()")) if kind == "image"]
    assert len(charts) == len(yaml.safe_load((repo / "dvc.yaml").read_text())["plots"]) == 5
