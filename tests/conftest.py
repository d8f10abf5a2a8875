import contextlib
import os
import random
import subprocess
import time
from pathlib import Path

import pytest
from filelock import FileLock

from phisum.synthetic import make_example
from phisum.tiny_model import build_tiny_model
from tests.helpers import FAKE_TOKEN, ROOT, VENV_BIN, command_env, set_params

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


@pytest.fixture(scope="session")
def tokenizer(tiny_model_dir):
    """The tiny model's tokenizer."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture()
def tiny_4bit(tiny_model_dir):
    """The tiny model's tokenizer and the model in 4-bit NF4 on the CPU, as the stages load them (fresh per test)."""
    import torch

    from phisum.modeling import load_base_model, load_tokenizer
    from phisum.params import ModelParams, QuantizationParams

    model_params = ModelParams(name=str(tiny_model_dir), revision=None, device="cpu")
    quant = QuantizationParams(quant_type="nf4", double_quant=True, compute_dtype="float32")
    return load_tokenizer(model_params), load_base_model(model_params, quant, torch.float32).eval()


DEMO = "demo_repo"


def pytest_collection_modifyitems(config, items: list) -> None:
    """Tests on the demo workspace run last: the demo builds in the background while the others run.

    `make test` keeps this order under pytest-xdist's loadscope (`--no-loadscope-reorder`; by default it
    schedules the modules with the most tests first), and a module is scheduled as a whole, so demo tests
    live in modules of their own, named test_<what>_on_demo.py: a worker that waits for the demo holds no other test.
    """
    needs_demo: dict[str, set[bool]] = {}
    for item in items:
        needs_demo.setdefault(item.nodeid.split("::")[0], set()).add(DEMO in item.fixturenames)
    mixed = [module for module, kinds in needs_demo.items() if len(kinds) == 2]
    if mixed:
        raise pytest.UsageError(
            f"{', '.join(mixed)}: tests on the demo workspace share a module with other tests; "
            "move them to a module of their own (tests/conftest.py, pytest_collection_modifyitems, says why)"
        )
    items.sort(key=lambda item: DEMO in item.fixturenames)  # stable: file order kept within both halves


def run_dir(tmp_path_factory) -> Path:
    """This test run's directory, the same for every pytest-xdist worker (each has its own basetemp below it)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session", autouse=True)
def demo_build(request, tmp_path_factory) -> Path | None:
    """Start `make demo` in this checkout as the session starts, if any selected test needs it.

    It builds its workspace (a git repository of its own) in this run's directory, from the working tree,
    and leaves the checkout as it is. It takes minutes (mostly the tiny model's pretraining) on one core;
    meanwhile the other tests run, so a 2-core machine does both at once. The first xdist worker to get
    here starts it; the others find it started. Returns the workspace directory (None when no selected
    test needs the demo).
    """
    if not any(DEMO in item.fixturenames for item in request.session.items):
        return None
    shared = run_dir(tmp_path_factory)
    workspace, log_path = shared / "demo", shared / "demo.log"
    with FileLock(shared / "demo.lock"):
        if not log_path.exists():
            venv = VENV_BIN.parent
            # -o: treat the (shared) venv as up to date.
            command = ["make", "-o", f"{venv}/.installed", "demo", f"VENV={venv}", f"DEMO={workspace}"]
            command.append(f"REMOTE={shared / 'demo-remote'}")
            fake_token = {"HF_TOKEN": FAKE_TOKEN, "HUGGING_FACE_HUB_TOKEN": FAKE_TOKEN}
            log = log_path.open("w")
            # The exit status goes to a file: a worker that did not start it cannot wait() on it.
            wrapped = ["sh", "-c", '"$@"; echo $? > "$STATUS"', "sh", *command]
            env = command_env({**fake_token, "STATUS": str(shared / "demo.status")})
            subprocess.Popen(wrapped, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    # The demo is the session's critical path: every test after it waits for it. The tests around it (and
    # their subprocesses) run at a lower priority, so on 2 cores it keeps one to itself.
    with contextlib.suppress(OSError):  # where priorities cannot be changed, the suite is only slower
        os.nice(10)
    return workspace


@pytest.fixture(scope="session")
def demo_repo(demo_build, tmp_path_factory) -> tuple[Path, str]:
    """`make demo`'s workspace, and its output (shared: copy it before changing it)."""
    status, log = demo_build.parent / "demo.status", demo_build.parent / "demo.log"
    deadline = time.monotonic() + 1800
    while not status.exists() or not status.read_text().strip():
        assert time.monotonic() < deadline, f"make demo did not finish in 30 min:\n{log.read_text()[-4000:]}"
        time.sleep(2)
    output = log.read_text()
    assert status.read_text().strip() == "0", f"make demo failed:\n{output[-4000:]}"
    return demo_build, output


@pytest.fixture()
def tiny_stage_dir(tmp_path, tiny_model_dir, monkeypatch) -> Path:
    """The working directory, with params naming the tiny model and a small local dataset."""
    from phisum.synthetic import write_dataset

    write_dataset(tmp_path / "dialogsum", seed=0, sizes={"train": 6, "validation": 3, "test": 3})
    (tmp_path / "weights").mkdir()
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    set_params(
        tmp_path,
        {
            "model": {"name": str(tiny_model_dir), "revision": None, "device": "cpu"},
            "data": {"source": str(tmp_path / "dialogsum"), "revision": None},
            "prompt": {"max_length": 256},
            "generate": {"max_new_tokens": 32},
        },
    )
    monkeypatch.chdir(tmp_path)
    return tmp_path
