"""phisum/notebook.py, the notebook's helpers, on their own (tests/test_notebook_on_demo.py runs the notebook itself).

The platforms' modules (google.colab, kaggle_secrets) are faked: they exist only on Colab and Kaggle.
"""

import os
import signal
import subprocess
import sys
import types
from pathlib import Path

import pytest

from phisum import notebook as nb
from tests.helpers import FAKE_TOKEN, VENV_BIN


@pytest.fixture()
def clean_env(monkeypatch):
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "KAGGLE_KERNEL_RUN_TYPE"):
        monkeypatch.delenv(name, raising=False)


def fake_colab(monkeypatch, secret=None, missing: type[Exception] | None = None) -> list[str]:
    """google.colab with userdata.get and drive.mount; returns the list of mount points asked for."""
    mounts: list[str] = []

    def get(name):
        if missing:
            raise missing(name)
        return secret if name == "HF_TOKEN" else None

    google, colab = types.ModuleType("google"), types.ModuleType("google.colab")
    colab.userdata = types.SimpleNamespace(get=get)
    colab.drive = types.SimpleNamespace(mount=mounts.append)
    google.colab = colab
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    return mounts


def fake_kaggle(monkeypatch, secret) -> None:
    class UserSecretsClient:
        def get_secret(self, label):
            if secret is None:
                raise RuntimeError(f"no secret {label}")  # Kaggle raises its own class
            return secret

    monkeypatch.setitem(sys.modules, "kaggle_secrets", types.SimpleNamespace(UserSecretsClient=UserSecretsClient))
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")


class SecretNotFoundError(Exception):
    pass


def test_platform_is_told_by_colab_module_or_kaggle_variable(monkeypatch, clean_env):
    assert nb.detect_platform() == "local"
    fake_kaggle(monkeypatch, None)
    assert nb.detect_platform() == "kaggle"
    fake_colab(monkeypatch)
    assert nb.detect_platform() == "colab"


@pytest.mark.parametrize("platform", ["colab", "kaggle"])
def test_hub_token_from_platform_secret_is_set_for_commands_never_shown(monkeypatch, clean_env, platform):
    (fake_colab if platform == "colab" else fake_kaggle)(monkeypatch, f" {FAKE_TOKEN}\n")
    message = nb.use_hub_token(platform)
    assert message == (
        f"hub token: the {platform.capitalize()} secret HF_TOKEN, set as HF_TOKEN for the pipeline's commands"
    )
    assert os.environ["HF_TOKEN"] == FAKE_TOKEN  # pasted with a space and a newline: stripped
    seen = subprocess.run(["sh", "-c", 'test "$HF_TOKEN" = "$1" && echo same', "sh", FAKE_TOKEN], capture_output=True)
    assert seen.stdout == b"same\n"  # a command the notebook runs gets it


def test_hub_token_falls_back_to_environment(monkeypatch, clean_env):
    fake_colab(monkeypatch, missing=SecretNotFoundError)
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", FAKE_TOKEN)
    assert nb.use_hub_token("colab") == "hub token: the environment variable HUGGING_FACE_HUB_TOKEN"
    assert os.environ["HF_TOKEN"] == FAKE_TOKEN


def test_no_hub_token_says_why_and_how(monkeypatch, clean_env):
    fake_colab(monkeypatch, missing=SecretNotFoundError)
    message = nb.use_hub_token("colab")
    assert message.startswith(
        "hub token: none (no Colab secret HF_TOKEN (SecretNotFoundError) and no HF_TOKEN environment variable)."
    )
    assert "add a secret named HF_TOKEN" in message
    assert "HF_TOKEN" not in os.environ
    assert nb.use_hub_token("local").startswith("hub token: none (no HF_TOKEN environment variable)")


def test_persistent_storage_per_platform(monkeypatch, tmp_path, clean_env):
    monkeypatch.setattr(nb, "COLAB_DRIVE", tmp_path / "drive")
    mounts = fake_colab(monkeypatch)
    assert nb.persistent_storage("colab") == tmp_path / "drive" / "MyDrive" / "phisum"
    assert mounts == [str(tmp_path / "drive")]
    monkeypatch.setattr(nb, "KAGGLE_WORKING", tmp_path / "working")
    assert nb.persistent_storage("kaggle") == tmp_path / "working" / "phisum-storage"
    monkeypatch.chdir(tmp_path)
    given = nb.persistent_storage("colab", "mine/store")  # given: used as it is, no Drive mount
    assert given == tmp_path / "mine" / "store" and given.is_dir() and mounts == [str(tmp_path / "drive")]


def test_use_venv_puts_its_tools_first_for_every_later_command(monkeypatch):
    venv_bin = VENV_BIN.resolve()
    others = [e for e in os.environ["PATH"].split(os.pathsep) if e and Path(e).resolve() != venv_bin]
    monkeypatch.setenv("PATH", os.pathsep.join(others))
    assert nb.use_venv(venv_bin.parent) == venv_bin
    found = subprocess.run(["sh", "-c", "command -v python; command -v dvc"], capture_output=True, text=True)
    assert found.stdout.splitlines() == [str(venv_bin / "python"), str(venv_bin / "dvc")]
    nb.use_venv(venv_bin.parent)  # a rerun of the cell: no second entry
    assert os.environ["PATH"].split(os.pathsep).count(str(venv_bin)) == 1


def test_sh_streams_output_and_stops_on_failure_with_one_error_line(capsys):
    nb.sh("echo one; echo two >&2")
    assert capsys.readouterr().out == "$ echo one; echo two >&2\none\ntwo\n"
    with pytest.raises(nb.NotebookError) as failed:
        nb.sh("echo partial; exit 3")
    assert failed.value._render_traceback_() == [
        "Error: `echo partial; exit 3` failed with exit code 3 (its output is above)"
    ]
    assert capsys.readouterr().out.endswith("partial\n")


def test_sh_passes_an_interrupt_on_and_waits_for_the_command(capsys):
    """The notebook's stop button interrupts the kernel; the command must get it too and finish its exit."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a kernel (pytest-xdist may differ)
    try:
        # The command interrupts this process (the kernel), then waits; its INT trap is what a stage's handler does.
        command = (
            "trap 'kill $!; echo interrupted: checkpoint kept; exit 130' INT; "
            "sleep 60 >/dev/null 2>&1 & kill -INT $PPID; wait $!"
        )
        with pytest.raises(KeyboardInterrupt):
            nb.sh(command)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert capsys.readouterr().out.endswith("interrupted: checkpoint kept\n")
