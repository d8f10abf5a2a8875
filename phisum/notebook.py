"""Helpers for notebooks/t4.ipynb on Colab, Kaggle or a local Jupyter.

Standard library only: the notebook's kernel is the platform's own Python, not the project's venv, so
this module must import there before `make setup` has installed anything. The venv's tools run as
subprocesses: `use_venv` puts its bin/ first on the kernel's PATH once, and every later `!` line,
`subprocess` call and `sh` command (and `dvc repro`'s bare `python`) finds them there.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from phisum.errors import UserError

TOKEN_NAME = "HF_TOKEN"  # the secret's name on Colab and Kaggle, and the variable huggingface_hub reads
COLAB_DRIVE = Path("/content/drive")
KAGGLE_WORKING = Path("/kaggle/working")


class NotebookError(UserError):
    """A failed command or a setting to fix: shown as one `Error:` line instead of a traceback."""

    def _render_traceback_(self) -> list[str]:  # IPython shows these lines in place of the traceback
        return [f"Error: {self}"]


def detect_platform() -> str:
    """'colab', 'kaggle' or 'local'."""
    try:
        import google.colab  # noqa: F401
    except ImportError:
        pass
    else:
        return "colab"
    return "kaggle" if os.environ.get("KAGGLE_KERNEL_RUN_TYPE") else "local"


def find_repo(start: Path) -> Path | None:
    """The phisum checkout containing `start` (a notebook opened from notebooks/ runs there), or None."""
    for path in [start, *start.parents]:
        if (path / "dvc.yaml").is_file() and (path / "phisum" / "notebook.py").is_file():
            return path
    return None


def use_venv(venv: str | Path) -> Path:
    """Put the venv's bin/ first on this kernel's PATH (every later subprocess inherits it); return it.

    Not resolved: a venv reached through a symlink keeps the path make was given.
    """
    bin_dir = Path(os.path.abspath(Path(venv).expanduser())) / "bin"
    others = [entry for entry in os.environ.get("PATH", "").split(os.pathsep) if entry and entry != str(bin_dir)]
    os.environ["PATH"] = os.pathsep.join([str(bin_dir), *others])
    os.environ["VIRTUAL_ENV"] = str(bin_dir.parent)
    os.environ.pop("PYTHONHOME", None)
    return bin_dir


def platform_secret(platform: str) -> tuple[str | None, str]:
    """The HF_TOKEN secret of Colab or Kaggle, and why there is none (never the token in that text)."""
    try:
        if platform == "colab":
            from google.colab import userdata

            return userdata.get(TOKEN_NAME) or None, "empty"
        if platform == "kaggle":
            from kaggle_secrets import UserSecretsClient

            return UserSecretsClient().get_secret(TOKEN_NAME) or None, "empty"
    except Exception as error:  # each platform raises its own classes (not found, no access granted)
        return None, type(error).__name__  # the class only: a message could quote what was read
    return None, "no secrets on this platform"


def use_hub_token(platform: str) -> str:
    """Set HF_TOKEN for the pipeline's commands from the platform's secret, or keep the environment's.

    Returns (and the notebook prints) where the token came from; the token itself is never shown or written.
    """
    token, why_not = platform_secret(platform)
    secret = {"colab": "Colab secret", "kaggle": "Kaggle secret"}.get(platform)
    if token:
        os.environ[TOKEN_NAME] = token.strip()
        return f"hub token: the {secret} {TOKEN_NAME}, set as {TOKEN_NAME} for the pipeline's commands"
    for name in (TOKEN_NAME, "HUGGING_FACE_HUB_TOKEN"):
        if os.environ.get(name, "").strip():
            os.environ[TOKEN_NAME] = os.environ[name].strip()
            return f"hub token: the environment variable {name}"
    where = f"no {secret} {TOKEN_NAME} ({why_not}) and " if secret else ""
    return (
        f"hub token: none ({where}no {TOKEN_NAME} environment variable). Phi-2 and DialogSum are public; "
        f"a token only raises the hub's rate limits: add a secret named {TOKEN_NAME} and rerun this cell"
    )


def persistent_storage(platform: str, storage: str = "") -> Path:
    """The folder that outlives the runtime: `storage` if given, else Google Drive (Colab, mounted
    here), /kaggle/working (Kaggle: kept with "Persistence: Files" or as a saved version's output),
    else ~/.cache/phisum (a local machine's disk persists anyway)."""
    if storage:
        path = Path(storage).expanduser()
    elif platform == "colab":
        from google.colab import drive

        drive.mount(str(COLAB_DRIVE))
        path = COLAB_DRIVE / "MyDrive" / "phisum"
    elif platform == "kaggle":
        path = KAGGLE_WORKING / "phisum-storage"
    else:
        path = Path.home() / ".cache" / "phisum"
    path = Path(os.path.abspath(path))
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def _interrupts_held(held: list[int]):
    """Record SIGINT instead of raising KeyboardInterrupt inside the block (where a started child would be lost)."""
    try:
        previous = signal.signal(signal.SIGINT, lambda signum, _frame: held.append(signum))
    except ValueError:  # not the main thread: signals cannot be handled here anyway
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def sh(command: str, check: bool = True) -> None:
    """Run a shell command with the kernel's environment, its output shown as it comes.

    `!command` in a notebook ignores a failure and the next cell runs on; this raises NotebookError (one
    `Error:` line), which stops "Run all". An interrupt (the notebook's stop button) is passed on to the
    command, which is waited for (a training stage then keeps its checkpoint and says so) before stopping.
    """
    print(f"$ {command}", flush=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # the stages' lines as they happen, not at exit
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    early: list[int] = []  # an interrupt while the command starts is held back, then passed on
    with _interrupts_held(early):
        process = subprocess.Popen(
            ["bash", "-c", command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    interrupted = bool(early)
    if interrupted:
        os.killpg(process.pid, signal.SIGINT)
    while True:
        try:
            chunk = os.read(process.stdout.fileno(), 65536)
        except KeyboardInterrupt:  # the command has a session of its own: the interrupt reached the kernel only
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGINT)  # bash and what it started, as Ctrl-C in a terminal
            interrupted = True
            continue
        if not chunk:
            break
        sys.stdout.write(decoder.decode(chunk))
        sys.stdout.flush()
    sys.stdout.write(decoder.decode(b"", final=True))
    process.stdout.close()
    code = process.wait()
    if interrupted:
        raise KeyboardInterrupt
    if check and code != 0:
        raise NotebookError(f"`{command}` failed with exit code {code} (its output is above)")
