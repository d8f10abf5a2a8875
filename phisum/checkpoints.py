"""Where a training run keeps its checkpoints, which one it resumes, and which it frees.

Checkpoints go to <checkpoint-dir>/<run>/, <run> being the run's fingerprint (its params and data), outside DVC's
outputs so a killed run resumes from them on the next `dvc repro`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

from phisum.params import Params, ParamsError, to_dict

# The params groups that change what training does (the train stage's PARAMS): a run resumes only its own checkpoints.
TRAINING_PARAMS = ("seed", "model", "prompt", "quantization", "lora", "train")


def run_fingerprint(params: Params, data_paths: list[Path]) -> str:
    """Checkpoints are only resumed by the run that wrote them: same params and same data.

    Param values and data bytes only, no path: another clone (another directory) of the same run resumes too.
    """
    digest = hashlib.sha256(json.dumps({k: to_dict(params)[k] for k in TRAINING_PARAMS}, sort_keys=True).encode())
    for path in data_paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


CHECKPOINT_DIR_VARIABLE = "PHISUM_CHECKPOINT_DIR"


def checkpoint_dir_in_use(option: Path) -> tuple[Path, bool]:
    """--checkpoint-dir, or $PHISUM_CHECKPOINT_DIR where set (and not empty); and whether the variable gave it.

    An environment variable and not a param or a cmd option, by design: where checkpoints live changes no
    result, and a param (or another cmd) would change the stage's DVC identity and retrain.
    """
    given = os.environ.get(CHECKPOINT_DIR_VARIABLE, "")
    if not given:
        return option, False
    path = Path(given).expanduser()
    if path.exists() and not path.is_dir():
        raise ParamsError(f"{CHECKPOINT_DIR_VARIABLE}: {path} is a file; name a directory (created if missing)")
    return path, True


# The <run> directories the train stage makes under the checkpoint directory (run_fingerprint), and what is in them.
RUN_DIR_NAME = re.compile(r"[0-9a-f]{12}")
CHECKPOINT_NAME = re.compile(r"checkpoint-[0-9]+")


def stale_run_dirs(checkpoint_dir: Path, fingerprint: str) -> list[Path]:
    """Other configurations' run directories: never resumable by this one. Only what the train stage made counts:
    the checkpoint directory may be shared storage (PHISUM_CHECKPOINT_DIR) holding other things too."""
    return [
        path
        for path in checkpoint_dir.glob("*")
        if path.name != fingerprint
        and RUN_DIR_NAME.fullmatch(path.name)
        and path.is_dir()
        and not path.is_symlink()
        and all(CHECKPOINT_NAME.fullmatch(child.name) for child in path.iterdir())
    ]


def _whole_json(path: Path) -> bool:
    try:
        json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return True


def last_complete_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint the Trainer finished (trainer_state.json is written last); ones cut short go.

    transformers' get_last_checkpoint takes the newest directory, even one half-written when Ctrl-C or a
    full disk struck mid-save, and resuming from it fails. trainer_state.json itself is written in place,
    so a kill inside that write leaves it cut short: the checkpoint counts only when the file parses.
    """
    checkpoints = sorted(run_dir.glob("checkpoint-*"), key=lambda p: int(p.name.rsplit("-", 1)[-1]), reverse=True)
    complete = [p for p in checkpoints if _whole_json(p / "trainer_state.json")]
    for partial in set(checkpoints) - set(complete):
        shutil.rmtree(partial, ignore_errors=True)
    return complete[0] if complete else None


def interrupted_message(run_dir: Path, save_steps: int) -> str:
    """What an interrupted run keeps: the checkpoint the next run resumes from, if any."""
    kept = last_complete_checkpoint(run_dir) if run_dir.is_dir() else None
    if kept is None:
        return (
            f"interrupted before the first checkpoint (train.save_steps: {save_steps}); the next run starts over "
            "and the previous adapter is unchanged"
        )
    return (
        f"interrupted; {kept} is kept and the previous adapter is unchanged: run `dvc repro` with the same params "
        f"and data to resume from step {kept.name.rsplit('-', 1)[-1]}"
    )
