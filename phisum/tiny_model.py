"""A tiny, randomly initialised Phi-architecture model with its own BPE tokenizer, built from a seed.

It stands in for microsoft/phi-2 on machines without a GPU or the hub: same model class, same
tokenizer conventions (bos = eos = <|endoftext|>, no pad token), saved as a normal model directory
so every stage loads it through from_pretrained exactly as it loads Phi-2.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PhiConfig, PhiForCausalLM, PreTrainedTokenizerFast

EOS = "<|endoftext|>"


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


def build_tiny_model(texts: Iterable[str], out_dir: Path, seed: int, vocab_size: int = 1024) -> None:
    """Write a tiny PhiForCausalLM (safetensors) and its tokenizer to out_dir."""
    tokenizer = train_tokenizer(texts, vocab_size)
    config = PhiConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=2048,
        partial_rotary_factor=0.4,  # as in Phi-2
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = PhiForCausalLM(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
