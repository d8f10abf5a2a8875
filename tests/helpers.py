"""Helpers the tests share (fixtures are in conftest.py): paths, running commands and stages, params and data
the tests write. No test module imports another; each imports what it shares from here."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import yaml
from click.testing import CliRunner

from phisum.demo import build_workspace
from phisum.params import Params, parse_params, read_yaml
from phisum.profile import PROFILE_PATH, apply_overrides
from phisum.stress import make_stress_cases

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data" / "dialogsum"
VENV_BIN = Path(sys.executable).parent


def command_env(extra_env: dict | None = None) -> dict[str, str]:
    """The environment of a command run by a test: the project's venv first on PATH, a git identity."""
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1", **(extra_env or {})}
    for role in ("AUTHOR", "COMMITTER"):
        env.update({f"GIT_{role}_NAME": "t", f"GIT_{role}_EMAIL": "t@t.invalid"})
    return env


def run(args: list[str], cwd: Path, timeout: int = 900, check: bool = True, extra_env: dict | None = None) -> str:
    """Run a command with the project's venv first on PATH; return stdout + stderr."""
    done = subprocess.run(args, cwd=cwd, env=command_env(extra_env), capture_output=True, text=True, timeout=timeout)
    output = done.stdout + done.stderr
    if check:
        assert done.returncode == 0, f"{' '.join(args)} failed:\n{output[-4000:]}"
    return output


def copy_project(dest: Path) -> Path:
    """A fresh clone-like git repo of the project's working tree (committed and new files), as `make demo` makes."""
    return build_workspace(ROOT, dest)


def set_params(repo: Path, overrides: dict) -> None:
    """Change params.yaml keys in place, comments kept (as `dvc exp run -S` would)."""
    from phisum.profile import apply_overrides

    text, _ = apply_overrides((repo / "params.yaml").read_text(), overrides)
    (repo / "params.yaml").write_text(text)


def checkpoint_written(checkpoints_dir: Path, step: int) -> bool:
    """Whether the Trainer has finished checkpoint `step` (its trainer_state.json is whole)."""
    for state in checkpoints_dir.glob(f"*/checkpoint-{step}/trainer_state.json"):
        with contextlib.suppress(ValueError):
            return json.loads(state.read_text())["global_step"] == step
    return False


FAKE_TOKEN = "hf_" + uuid.uuid4().hex  # made at run time, so no file can contain it by accident


def copy_demo(demo: Path, dest: Path) -> Path:
    """A copy of the demo workspace (git history, experiments, DVC cache) that a test may change."""
    shutil.copytree(demo, dest, symlinks=True, ignore=shutil.ignore_patterns("tmp"))
    return dest


def dvc_stage(name: str) -> dict:
    """dvc.yaml's stage `name` (`generate@peft` for a foreach item, with ${key} and ${item.*} filled in)."""
    stage_name, _, key = name.partition("@")
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage_name]
    if "foreach" not in stage:
        return stage
    item = stage["foreach"][key]

    def fill(node):
        if isinstance(node, str):
            return re.sub(r"\$\{item\.(\w+)\}", lambda m: str(item[m.group(1)]), node.replace("${key}", key))
        if isinstance(node, list):
            return [fill(value) for value in node]
        return {fill(k): fill(v) for k, v in node.items()} if isinstance(node, dict) else node

    return fill(stage["do"])


def stage_command(name: str) -> list[str]:
    """dvc.yaml's cmd of stage `name` (`python -m stages.<stage>` and its path options), with this interpreter."""
    command = shlex.split(dvc_stage(name)["cmd"])
    assert command[:3] == ["python", "-m", f"stages.{name.partition('@')[0]}"], command
    return [sys.executable, *command[1:]]


def stage_args(name: str) -> list[str]:
    """The options dvc.yaml's cmd gives stage `name` (after `python -m stages.<stage>`): its paths."""
    return stage_command(name)[3:]


def invoke_stage(name: str):
    """Stage `name`'s click main in this process, with the options dvc.yaml's cmd gives it; click's Result."""
    import importlib

    return CliRunner().invoke(importlib.import_module(f"stages.{name.partition('@')[0]}").main, stage_args(name))


def one_error_line(result) -> str:
    """A failed stage as every stage promises it: exit code 1 and one `Error:` line on stderr, nothing else."""
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    errors = result.stderr.splitlines()
    assert len(errors) == 1 and errors[0].startswith("Error: "), result.stderr
    return errors[0]


def stage_env() -> dict[str, str]:
    """The environment of a stage process run outside the repository: `-m stages.<stage>` imports it from ROOT."""
    return command_env({"PYTHONPATH": str(ROOT)})


BENCHMARKS_DIR = ROOT / "benchmarks"


def load_script(name: str):
    """A benchmark script as a module (they run as `python benchmarks/<name>.py`, not as a package)."""
    if f"benchmarks_{name}" not in sys.modules:
        spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", BENCHMARKS_DIR / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[spec.name] = module
    return sys.modules[f"benchmarks_{name}"]


def cpu_profile_text(model_dir: Path, overrides: dict | None = None) -> str:
    """The committed params.yaml switched to the CPU profile (as `make demo` does), on model_dir, plus overrides."""
    profile = read_yaml((ROOT / PROFILE_PATH).read_text(encoding="utf-8"))
    profile["model"]["name"] = str(model_dir)
    text, _ = apply_overrides((ROOT / "params.yaml").read_text(), profile)
    return apply_overrides(text, overrides or {})[0]


def cpu_profile_params(model_dir: Path, overrides: dict | None = None) -> Params:
    return parse_params(read_yaml(cpu_profile_text(model_dir, overrides)))


def build_stage_trainer(params: Params, rows: list[dict], work_dir: Path):
    """The train stage's own trainer (phisum.training.build_run_trainer), built on rows, before it trains."""
    from phisum.training import build_run_trainer

    return build_run_trainer(params, rows, rows, work_dir / "run", work_dir / "curves")[0]


def write_bad_params(directory: Path, edit: dict | tuple[str, str]) -> Path:
    """The committed params.yaml with one edit, written into directory."""
    text = (ROOT / "params.yaml").read_text()
    if isinstance(edit, tuple):
        assert edit[0] in text
        text = text.replace(edit[0], edit[1], 1)
    (directory / "params.yaml").write_text(text)
    if isinstance(edit, dict):
        set_params(directory, edit)
    return directory / "params.yaml"


# Overlapping but different summaries, so every BLEU n-gram order has matches and nothing scores 1.
GROUPS = [
    {
        "prediction": "Tom and Ann will meet on Friday at nine. Tom brings the report.",
        "references": [
            "Tom and Ann will meet on Friday morning. Tom will bring the report.",
            "Ann and Tom meet at nine on Friday, and Tom brings the report.",
            "The meeting is moved to Friday at nine.",
        ],
    },
    {
        "prediction": "Mary asks John to buy the train tickets for Sunday.",
        "references": [
            "John will buy the train tickets for Sunday because Mary asks him to.",
            "Mary wants John to buy two train tickets for Sunday.",
        ],
    },
    {  # shorter than its references, so BLEU's brevity penalty applies
        "prediction": "Jack is late again.",
        "references": [
            "Jack is late for work again because his car broke down on the highway.",
            "Jack arrives late to work again.",
        ],
    },
]


STRESS = make_stress_cases(seed=0, count=4)


def stated_final_time(case: dict) -> str:
    return f"They meet on {case['final']['day']} at {case['final']['time']}."


def write_predictions(repo: Path, evaluate_params: dict) -> None:
    """A params.yaml and data/predictions/{base,peft}/ as the generate stage writes them."""
    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    params["evaluate"].update(evaluate_params)
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    references = [["Tom meets Ann on Friday.", "Ann and Tom meet on Friday."], ["Jack is late again."]]
    outputs = {
        "base": [("", True), ("Jack is late.", False)],  # one empty, one cut off at max_new_tokens
        "peft": [("Tom meets Ann on Friday.", True), ("Jack is late again.", True)],
    }
    for variant, rows in outputs.items():
        test = [
            {"id": f"test_{i}_1", "references": refs, "prediction": text, "stopped": stopped, "new_tokens": 5}
            for i, (refs, (text, stopped)) in enumerate(zip(references, rows, strict=True))
        ]
        stress = [{**case, "prediction": stated_final_time(case) if variant == "peft" else ""} for case in STRESS]
        folder = repo / "data" / "predictions" / variant
        folder.mkdir(parents=True)
        for name, lines in (("test", test), ("stress", stress)):
            (folder / f"{name}.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def write_prepared(data_dir: Path, completion: str = "They greet.") -> list[Path]:
    """data/prepared's two training files, with one row each."""
    data_dir.mkdir(parents=True, exist_ok=True)
    row = {"id": "a", "prompt": "Instruct: Summarize the below conversation.\n\n#Person1#: Hi.\nOutput:\n"}
    paths = [data_dir / "train.jsonl", data_dir / "validation.jsonl"]
    for path in paths:
        path.write_text(json.dumps({**row, "completion": completion}) + "\n")
    return paths
