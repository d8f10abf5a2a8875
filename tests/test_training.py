"""The train stage's trainer (phisum.training) on the tiny model in 4-bit: what it trains, and in which dtype."""

from pathlib import Path

import pytest
import torch

from phisum.modeling import TargetModuleError
from phisum.params import Params, parse_params, read_yaml
from phisum.profile import PROFILE_PATH, apply_overrides
from phisum.training import build_run_trainer, load_trainable_model
from tests.conftest import ROOT


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
    return build_run_trainer(params, rows, rows, work_dir / "run", work_dir / "curves")[0]


ROWS = [{"prompt": "Instruct: Summarize the below conversation.\n\n#Person1#: Hi.\nOutput:\n", "completion": "Hi."}]


def test_every_trainable_parameter_is_fp32_after_the_trainer_is_built(tiny_model_dir, tmp_path):
    # TRL casts a quantized model's LoRA weights to bf16 in SFTTrainer.__init__; the stage casts them back.
    trainer = build_stage_trainer(cpu_profile_params(tiny_model_dir, {"lora": {"r": 8}}), ROWS, tmp_path)
    trainable = {name: param.dtype for name, param in trainer.model.named_parameters() if param.requires_grad}
    assert len(trainable) == 16  # lora_A and lora_B of q, k, v, dense in 2 layers
    assert set(trainable.values()) == {torch.float32}


def test_an_unknown_target_module_stops_before_training(tiny_model_dir):
    params = cpu_profile_params(tiny_model_dir, {"lora": {"target_modules": ["Wqkv", "q_proj"]}})
    with pytest.raises(TargetModuleError, match="^lora.target_modules: Wqkv not found in phi; its linear layers"):
        load_trainable_model(params, torch.float32)
