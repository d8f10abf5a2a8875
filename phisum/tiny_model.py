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
# the base must first learn to copy the last proposed slot, which it does late: 1,000 steps are too few (docs/demo.md).
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


# Tiny stand-ins for the other families (issue #22): each with its family's model class and its real tokenizer's
# conventions, written as the hub's tokenizer_config.json / generation_config.json write them, so AutoTokenizer
# loads them through the same class and code path as the real model. Character-level vocabularies (no merges):
# a token is a character, so tests derive token ids and labels by hand. Sources are in docs/families.md.
TINY_FAMILY_DIMS = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 2048,
}
TINY_FAMILIES = {
    # microsoft/phi-2: bos = eos = unk = <|endoftext|>, no pad, no BOS added (as the tiny Phi above).
    "phi-2": {
        "model_type": "phi",
        "style": "byte_level",
        "special": ["<|endoftext|>"],
        "tokenizer_config": {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": "<|endoftext|>",
            "eos_token": "<|endoftext|>",
            "unk_token": "<|endoftext|>",
        },
        "template": None,
        "generation_eos": ["<|endoftext|>"],
    },
    # meta-llama/Meta-Llama-3-8B: no pad; its tokenizer.json's post-processor adds <|begin_of_text|>.
    "llama-3": {
        "model_type": "llama",
        "style": "byte_level",
        "special": ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        "tokenizer_config": {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": "<|begin_of_text|>",
            "eos_token": "<|end_of_text|>",
        },
        "template": "<|begin_of_text|> $A",
        "generation_eos": ["<|end_of_text|>"],
    },
    # meta-llama/Meta-Llama-3-8B-Instruct as first released: the tokenizer's EOS is still <|end_of_text|>, turns end
    # with <|eot_id|>, which only generation_config.json lists (eos_token_id [128001, 128009]).
    "llama-3-instruct": None,  # llama-3's, but for generation_eos: instruct_variant below
    # mistralai/Mistral-7B-v0.3: a LlamaTokenizer (SentencePiece-style, byte fallback) that adds <s>, no pad.
    "mistral": {
        "model_type": "mistral",
        "style": "metaspace",
        "special": ["<unk>", "<s>", "</s>", "[INST]", "[/INST]"],
        "tokenizer_config": {
            "tokenizer_class": "LlamaTokenizer",
            "add_bos_token": True,
            "add_eos_token": False,
            "bos_token": "<s>",
            "eos_token": "</s>",
            "unk_token": "<unk>",
            "pad_token": None,
            "legacy": False,
        },
        "template": "<s> $A",
        "generation_eos": ["</s>"],
    },
    # Qwen/Qwen2.5-7B: no BOS at all, pad = eos = <|endoftext|> (the seed tutorial's trap).
    "qwen2.5": {
        "model_type": "qwen2",
        "style": "byte_level",
        "special": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        "tokenizer_config": {
            "tokenizer_class": "Qwen2Tokenizer",
            "add_bos_token": False,
            "bos_token": None,
            "eos_token": "<|endoftext|>",
            "pad_token": "<|endoftext|>",
            "errors": "replace",
        },
        "template": None,
        "generation_eos": ["<|endoftext|>"],
    },
    # Qwen/Qwen2.5-7B-Instruct: eos <|im_end|>, pad <|endoftext|>; generation_config eos_token_id [151645, 151643].
    "qwen2.5-instruct": None,  # qwen2.5's, but for its EOS: instruct_variant below
}


def instruct_variant(base: str, generation_eos: list[str], eos_token: str | None = None) -> dict:
    """An instruct model's conventions: its base's, with the EOS list its generation_config gives (and the
    tokenizer's own EOS where it changes)."""
    spec = TINY_FAMILIES[base]
    config = {**spec["tokenizer_config"], **({"eos_token": eos_token} if eos_token else {})}
    return {**spec, "tokenizer_config": config, "generation_eos": generation_eos}


TINY_FAMILIES["llama-3-instruct"] = instruct_variant("llama-3", ["<|end_of_text|>", "<|eot_id|>"])
TINY_FAMILIES["qwen2.5-instruct"] = instruct_variant("qwen2.5", ["<|im_end|>", "<|endoftext|>"], "<|im_end|>")


def family_tokenizer_json(family: str) -> str:
    """tokenizer.json of a character-level tokenizer with the family's special tokens and pre/post-processing."""
    from tokenizers import processors

    spec = TINY_FAMILIES[family]
    special = spec["special"]
    if spec["style"] == "byte_level":
        # Regular tokens first, special ones after them (as Llama-3 and Qwen2.5 number them).
        vocab = {char: index for index, char in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
        vocab.update({token: len(vocab) + index for index, token in enumerate(special)})
        tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
    else:
        # Mistral: specials first (<unk> 0, <s> 1, </s> 2), byte-fallback tokens, then characters with "▁" for space.
        chars = ["▁", *(chr(code) for code in range(33, 127))]
        pieces = [*special, *(f"<0x{byte:02X}>" for byte in range(256)), *chars]
        vocab = {piece: index for index, piece in enumerate(pieces)}
        tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>", fuse_unk=True, byte_fallback=True))
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
        tokenizer.decoder = decoders.Sequence(
            [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
        )
    from tokenizers import AddedToken

    tokenizer.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in special])
    if spec["template"]:
        bos = spec["template"].split()[0]
        tokenizer.post_processor = processors.TemplateProcessing(
            single=spec["template"], pair=f"{spec['template']} {bos} $B", special_tokens=[(bos, vocab[bos])]
        )
    return tokenizer.to_str()


def build_family_model(family: str, out_dir: Path, seed: int = 0, script: dict[str, str] | None = None) -> None:
    """Write a tiny random model of `family` (see TINY_FAMILIES) with its tokenizer and generation config.

    script: {token: next token} makes greedy generation follow that chain by construction, whatever the prompt
    before the last token: the attention and MLP outputs are zeroed (the residual stream is the token's
    embedding), chain tokens get embeddings of their own and the output layer maps each to its successor; any
    other token is followed by "x" (so "x" by "x"). For tests of where generation stops.
    """
    import json

    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    spec = TINY_FAMILIES[family]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "tokenizer.json").write_text(family_tokenizer_json(family), encoding="utf-8")
    (out_dir / "tokenizer_config.json").write_text(json.dumps(spec["tokenizer_config"], indent=2), encoding="utf-8")
    vocab = json.loads((out_dir / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
    ids = {token: vocab[token] for token in spec["special"]}
    bos = spec["tokenizer_config"].get("bos_token")
    eos_ids = [ids[token] for token in spec["generation_eos"]]
    pad = spec["tokenizer_config"].get("pad_token")
    extra = {"num_key_value_heads": 2} if spec["model_type"] != "phi" else {"partial_rotary_factor": 0.4}
    config = AutoConfig.for_model(
        spec["model_type"],
        vocab_size=len(vocab),
        **TINY_FAMILY_DIMS,
        **extra,
        tie_word_embeddings=False,
        bos_token_id=ids[bos] if bos else None,
        eos_token_id=eos_ids[0] if len(eos_ids) == 1 else eos_ids,
        pad_token_id=ids[pad] if pad else None,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    if script:
        successors = {vocab_id(vocab, a): vocab_id(vocab, b) for a, b in script.items()}
        make_scripted(model, successors, default=vocab_id(vocab, "x"))
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=eos_ids[0] if len(eos_ids) == 1 else eos_ids,
        pad_token_id=config.pad_token_id,
    )
    model.save_pretrained(out_dir, safe_serialization=True)


def vocab_id(vocab: dict, token: str) -> int:
    """A token's id in a TINY_FAMILIES vocabulary: a special token, or one character (byte-level or Metaspace)."""
    if token in vocab:
        return vocab[token]
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False).pre_tokenize_str(token)[0][0]
    if byte_level in vocab:
        return vocab[byte_level]
    piece = token.replace(" ", "▁")
    return vocab[piece] if piece in vocab else vocab[f"<0x{ord(token):02X}>"]  # byte fallback


@torch.no_grad()
def make_scripted(model, successors: dict[int, int], default: int) -> None:
    """Greedy next token = successors[token] for the chain's tokens, `default` after any other token."""
    hidden = model.config.hidden_size
    for name, param in model.named_parameters():
        if name.endswith(("o_proj.weight", "down_proj.weight", "dense.weight", "fc2.weight")) or (
            name.endswith(".bias") and ("o_proj" in name or "down_proj" in name or "dense" in name or "fc2" in name)
        ):
            param.zero_()
    chain = sorted(set(successors))
    assert len(chain) + 1 < hidden
    embed = model.get_input_embeddings().weight
    embed.normal_(0, 0.02)
    embed[:, : len(chain) + 1] = 0
    default_axis = len(chain)
    embed[:, default_axis] = 1.0  # every token not in the chain points at the default direction
    head = model.get_output_embeddings()
    head.weight.zero_()
    if getattr(head, "bias", None) is not None:
        head.bias.zero_()
    for axis, token in enumerate(chain):
        embed[token] = 0
        embed[token, axis] = 1.0
        head.weight[successors[token], axis] = 50.0
    head.weight[default, default_axis] = 50.0
