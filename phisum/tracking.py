"""Training feedback: DVCLive curves per optimizer step and a sparse console log."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from dvclive import Live
from transformers import ProgressCallback, TrainerCallback

from phisum.files import write_outputs

# Trainer log key -> DVCLive metric name (one .tsv per metric under <dir>/plots/metrics/).
CURVES = {"loss": "train/loss", "learning_rate": "train/learning_rate", "grad_norm": "train/grad_norm"}
EVAL_CURVES = {"eval_loss": "eval/loss"}


class DVCLiveCurves(TrainerCallback):
    """Write loss, learning rate, grad norm and validation loss against the optimizer step.

    Not transformers' DVCLiveCallback: that one advances its step on every log call and logs every
    TrainingArguments field as a param. On resume the curves are rebuilt from the checkpoint's
    log history, so steps logged after the last checkpoint (and then redone) appear once.

    DVCLive appends to its .tsv files in place, so a crash mid-append would leave a torn last line:
    it writes to a scratch directory, and each log publishes the files to live_dir atomically.
    """

    def __init__(self, live_dir: Path) -> None:
        self.live_dir = live_dir
        self.live: Live | None = None
        self.scratch_dir: Path | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        shutil.rmtree(self.live_dir, ignore_errors=True)
        self.scratch_dir = Path(tempfile.mkdtemp(prefix="phisum-curves-"))
        self.live = Live(str(self.scratch_dir), save_dvc_exp=False, dvcyaml=False, report=None)
        for logs in state.log_history:
            self._log(logs, logs["step"])
        self._publish()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.live is not None and logs:
            self._log(logs, state.global_step)
            self._publish()

    def on_train_end(self, args, state, control, **kwargs):
        if self.scratch_dir is not None:
            shutil.rmtree(self.scratch_dir, ignore_errors=True)
            self.live = self.scratch_dir = None

    def _log(self, logs: dict, step: int) -> None:
        self.live.step = step
        for key, name in {**CURVES, **EVAL_CURVES}.items():
            if key in logs:
                self.live.log_metric(name, float(logs[key]), plot=True)

    def _publish(self) -> None:
        """Each curve file in live_dir is replaced whole (a few kB per 1,000 steps), never appended to."""
        texts = {
            self.live_dir / tsv.relative_to(self.scratch_dir): tsv.read_text(encoding="utf-8")
            for tsv in self.scratch_dir.rglob("*.tsv")
        }
        write_outputs(texts)


class SparseProgress(ProgressCallback):
    """The usual progress bar, but print the log dict only every `every` steps and on evaluation."""

    def __init__(self, every: int) -> None:
        super().__init__()
        self.every = every

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if state.global_step % self.every == 0 or "eval_loss" in logs or "train_runtime" in logs:
            super().on_log(args, state, control, logs=logs, **kwargs)
