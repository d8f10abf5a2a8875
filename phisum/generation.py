"""Batched greedy generation that stops at EOS."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm


def cut_at_stop_string(text: str, stop_strings: list[str]) -> tuple[str, bool]:
    """Text before the first stop string, and whether one was found."""
    cuts = [text.index(stop) for stop in stop_strings if stop in text]
    return (text[: min(cuts)], True) if cuts else (text, False)


@torch.inference_mode()
def generate_summaries(
    model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int, stop_strings: list[str] = ()
) -> list[dict]:
    """Greedy summaries for prompts, in input order.

    Prompts are batched longest first (less padding), left-padded so every row's new tokens start
    at the same position. Generation stops at EOS or, as a fallback for a model that does not emit
    it (an untuned base model rambles on into a new "Instruct:"), at a stop string, which is cut off.
    Returns {"text", "new_tokens", "stopped"} per prompt; stopped is False when generation hit
    max_new_tokens without EOS or a stop string.
    """
    tokenizer.padding_side = "left"
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    results: list[dict | None] = [None] * len(prompts)
    device = next(model.parameters()).device
    for start in tqdm(range(0, len(order), batch_size), desc="generate", unit="batch"):
        batch = order[start : start + batch_size]
        inputs = tokenizer([prompts[i] for i in batch], return_tensors="pt", padding=True).to(device)
        output = model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            stop_strings=list(stop_strings) or None,
            tokenizer=tokenizer,  # generate() needs it to match stop strings
        )
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        for row, i in zip(new_tokens.tolist(), batch, strict=True):
            ended = tokenizer.eos_token_id in row
            kept = row[: row.index(tokenizer.eos_token_id)] if ended else row
            text, cut = cut_at_stop_string(tokenizer.decode(kept, skip_special_tokens=True), list(stop_strings))
            results[i] = {"text": text.strip(), "new_tokens": len(kept), "stopped": ended or cut}
    return results  # type: ignore[return-value]
