"""The tiny stand-in for Phi-2: packing for its pretraining, and that pretraining teaches it the dialogues."""

import random

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from phisum.synthetic import make_example
from phisum.tiny_model import build_tiny_model, pack_blocks, train_tokenizer


def test_pack_blocks_joins_texts_with_eos_and_drops_the_remainder():
    # 257 = the 256 byte tokens and EOS: no merges, one token per character, so the blocks are known by hand.
    tokenizer = train_tokenizer(["hello there", "general kenobi"], vocab_size=257)
    blocks = pack_blocks(tokenizer, ["hello there", "general kenobi"], block_size=5)
    # 11 + 1 + 14 + 1 = 27 tokens: five blocks of 5; the last two, "i" and EOS, are dropped.
    decoded = [tokenizer.decode(block) for block in blocks["input_ids"]]
    assert decoded == ["hello", " ther", "e<|endoftext|>gen", "eral ", "kenob"]
    assert blocks["labels"] == blocks["input_ids"]  # the model shifts labels itself


def held_out_loss(model_dir, dialogues: list[str]) -> float:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    losses = []
    with torch.no_grad():
        for dialogue in dialogues:
            batch = tokenizer(dialogue, return_tensors="pt")
            losses.append(model(**batch, labels=batch["input_ids"]).loss)
    return float(torch.stack(losses).mean())


def test_pretraining_on_dialogues_lowers_held_out_loss(tmp_path):
    rng = random.Random(0)
    examples = [make_example(rng) for _ in range(60)]
    dialogues = [dialogue for dialogue, _, _ in examples]
    texts = [f"{dialogue}\n{summaries[0]}" for dialogue, summaries, _ in examples]
    build_tiny_model(texts, tmp_path / "random", seed=0)
    # The profile's 1,500 steps take minutes; 20 show the effect.
    build_tiny_model(texts, tmp_path / "pretrained", seed=0, pretrain_texts=dialogues[:50], pretrain_steps=20)
    random_loss = held_out_loss(tmp_path / "random", dialogues[50:])
    pretrained_loss = held_out_loss(tmp_path / "pretrained", dialogues[50:])
    assert random_loss > 6.0 and pretrained_loss < random_loss - 1.0, (random_loss, pretrained_loss)


def test_the_tiny_models_activation_is_phi2s_tanh_gelu(tiny_model_dir):
    # Phi-2's config names gelu_new: 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))), written out by hand here.
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    x = torch.linspace(-6, 6, 2001, dtype=torch.float64)
    expected = 0.5 * x * (1 + torch.tanh((2 / torch.pi) ** 0.5 * (x + 0.044715 * x**3)))
    got = model.model.layers[0].mlp.activation_fn(x.float()).double()
    assert torch.allclose(got, expected, atol=1e-6, rtol=0)
