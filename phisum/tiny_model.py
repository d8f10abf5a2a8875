"""A tiny Phi-architecture model with its own BPE tokenizer, built from a seed (optionally pretrained on dialogues).

It stands in for microsoft/phi-2 on machines without a GPU or the hub: same model class, same
tokenizer conventions (bos = eos = <|endoftext|>, no pad token), saved as a normal model directory
so every stage loads it through from_pretrained exactly as it loads Phi-2.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path

import torch
from datasets import Dataset
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    PhiConfig,
    PhiForCausalLM,
    PreTrainedTokenizerFast,
    Trainer,
    TrainingArguments,
    default_data_collator,
)

EOS = "<|endoftext|>"
# Small enough for the CPU demo; the LoRA trainable-parameter counts in tests/test_pipeline.py follow from these.
TINY_DIMS = {"hidden_size": 128, "intermediate_size": 512, "num_hidden_layers": 2, "num_attention_heads": 4}
# ~170 s on one core. The steps are what lets the demo's adapter find a stress dialogue's final slot:
# the base must first learn to copy the last proposed slot, which it does late: 1,000 steps are too few (README).
PRETRAIN = {"steps": 1500, "batch_size": 8, "block_size": 256, "learning_rate": 3e-3}


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE like Phi-2's (so no text is ever out of vocabulary), trained on texts."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=EOS, eos_token=EOS, unk_token=EOS)


def pack_blocks(tokenizer: PreTrainedTokenizerFast, texts: Iterable[str], block_size: int) -> Dataset:
    """Texts joined by EOS and cut into equal blocks (the usual LM packing: no padding, no pad token)."""
    ids = [token for text in texts for token in [*tokenizer(text)["input_ids"], tokenizer.eos_token_id]]
    blocks = [ids[i : i + block_size] for i in range(0, len(ids) - block_size + 1, block_size)]
    return Dataset.from_dict({"input_ids": blocks, "labels": blocks})


def pretrain(model: PhiForCausalLM, dataset: Dataset, steps: int, seed: int) -> None:
    """Full-parameter next-token training in fp32, so the tiny model reads dialogues like a base LM."""
    with tempfile.TemporaryDirectory() as scratch_dir:
        args = TrainingArguments(
            output_dir=scratch_dir,
            max_steps=steps,
            per_device_train_batch_size=PRETRAIN["batch_size"],
            learning_rate=PRETRAIN["learning_rate"],
            warmup_steps=steps // 10,
            seed=seed,
            use_cpu=True,
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            logging_steps=steps,
        )
        Trainer(model=model, args=args, train_dataset=dataset, data_collator=default_data_collator).train()


def build_tiny_model(
    texts: Iterable[str],
    out_dir: Path,
    seed: int,
    pretrain_texts: Iterable[str] = (),
    vocab_size: int = 1024,
    pretrain_steps: int = PRETRAIN["steps"],
) -> None:
    """Write a tiny PhiForCausalLM (safetensors) and its tokenizer to out_dir.

    pretrain_texts: if given, `pretrain_steps` of language modelling on them first (dialogues only:
    a base model that has read conversations but never seen a summary). 0 steps: random weights.
    """
    tokenizer = train_tokenizer(texts, vocab_size)
    config = PhiConfig(
        vocab_size=len(tokenizer),
        **TINY_DIMS,
        max_position_embeddings=2048,
        partial_rotary_factor=0.4,  # as in Phi-2
        # Phi-2's activation (gelu_new: GELU, tanh approximation) computed by torch's fused kernel instead of five
        # elementwise ops: the pretraining step takes 0.108 s instead of 0.128 s on one core.
        hidden_act="gelu_pytorch_tanh",
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = PhiForCausalLM(config)
    pretrain_texts = list(pretrain_texts)
    if pretrain_texts and pretrain_steps > 0:
        pretrain(model, pack_blocks(tokenizer, pretrain_texts, PRETRAIN["block_size"]), pretrain_steps, seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
