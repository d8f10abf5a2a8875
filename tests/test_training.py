"""The train stage's trainer (phisum.training) on the tiny model in 4-bit: what it trains, and in which dtype.
Then what the model learns: loss on the summary and its EOS only, with the train stage's SFT config and collator."""

import re

import pytest
import torch

from phisum.modeling import TargetModuleError
from phisum.training import load_trainable_model
from tests.helpers import build_stage_trainer, cpu_profile_params

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


PROMPTS = [
    "Instruct: Summarize the below conversation.\n\n#Person1#: Hi.\nOutput:\n",
    "Instruct: Summarize the below conversation.\n\n#Person1#: Hi there, friend.\n#Person2#: Hello!\nOutput:\n",
]
COMPLETIONS = ["They greet.", "Two friends say hello."]


def test_labels_mask_prompt_and_padding_and_keep_the_summary_and_eos(tiny_model_dir, tmp_path):
    rows = [{"prompt": p, "completion": c} for p, c in zip(PROMPTS, COMPLETIONS, strict=True)]
    trainer = build_stage_trainer(cpu_profile_params(tiny_model_dir), rows, tmp_path)
    tokenizer = trainer.processing_class
    assert tokenizer.pad_token_id == tokenizer.eos_token_id  # Phi-2's situation: padding reuses EOS
    batch = trainer.data_collator([trainer.train_dataset[0], trainer.train_dataset[1]])
    for i in range(2):
        ids, labels = batch["input_ids"][i].tolist(), batch["labels"][i].tolist()
        attended = batch["attention_mask"][i].tolist()
        # P: prompt (attended, no loss), S: supervised, -: padding (no loss)
        kinds = ("S" if label != -100 else "P" if seen else "-" for label, seen in zip(labels, attended, strict=True))
        layout = "".join(kinds)
        assert re.fullmatch("P+S+-*", layout), layout
        assert tokenizer.decode([t for t, kind in zip(ids, layout, strict=True) if kind == "P"]) == PROMPTS[i]
        supervised = [label for label in labels if label != -100]
        # Unshifted: the model shifts labels itself.
        assert supervised == [t for t, kind in zip(ids, layout, strict=True) if kind == "S"]
        assert tokenizer.decode(supervised) == COMPLETIONS[i] + "<|endoftext|>"
    # The shorter row is padded with EOS ids, and those positions carry no loss (masked by position, not by id).
    assert batch["input_ids"][0].tolist()[-1] == tokenizer.eos_token_id and batch["labels"][0].tolist()[-1] == -100
