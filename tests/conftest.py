import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from phisum.synthetic import make_example
from phisum.tiny_model import build_tiny_model

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data" / "dialogsum"
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny Phi model + tokenizer, built the way `make demo` builds it."""
    rng = random.Random(0)
    texts = []
    for _ in range(200):
        dialogue, summaries, _ = make_example(rng)
        texts += [dialogue, *summaries]
    out_dir = tmp_path_factory.mktemp("tiny-phi")
    build_tiny_model(texts, out_dir, seed=0)
    return out_dir


VENV_BIN = Path(sys.executable).parent
# Results of an earlier local run are not part of a clone.
LOCAL_RESULTS = ("dvc.lock", "metrics/", "reports/", "data/predictions/")


def run(args: list[str], cwd: Path, timeout: int = 900, check: bool = True, extra_env: dict | None = None) -> str:
    """Run a command with the project's venv first on PATH; return stdout + stderr."""
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1", **(extra_env or {})}
    for role in ("AUTHOR", "COMMITTER"):
        env.update({f"GIT_{role}_NAME": "t", f"GIT_{role}_EMAIL": "t@t.invalid"})
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    output = done.stdout + done.stderr
    if check:
        assert done.returncode == 0, f"{' '.join(args)} failed:\n{output[-4000:]}"
    return output


def copy_project(dest: Path) -> Path:
    """A fresh clone-like git repo of the project (committed and new files, committed params.yaml)."""
    listed = run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], ROOT).splitlines()
    for name in listed:
        if (ROOT / name).is_file() and not name.startswith(LOCAL_RESULTS):
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    (dest / "params.yaml").write_text(run(["git", "show", "HEAD:params.yaml"], ROOT))
    run(["git", "init", "-q"], dest)
    run(["git", "add", "-A"], dest)
    run(["git", "commit", "-qm", "clone"], dest)
    return dest


def set_params(repo: Path, overrides: dict) -> None:
    """Change params.yaml keys in place, comments kept (as `dvc exp run -S` would)."""
    from phisum.profile import apply_overrides

    text, _ = apply_overrides((repo / "params.yaml").read_text(), overrides)
    (repo / "params.yaml").write_text(text)
