"""Batched greedy generation that stops at EOS."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm


@torch.inference_mode()
def generate_summaries(model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int) -> list[dict]:
    """Greedy summaries for prompts, in input order.

    Prompts are batched longest first (less padding), left-padded so every row's new tokens start
    at the same position. Returns {"text", "new_tokens", "stopped"} per prompt; stopped is False
    when generation hit max_new_tokens without emitting EOS.
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
        )
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        for row, i in zip(new_tokens.tolist(), batch, strict=True):
            stopped = tokenizer.eos_token_id in row
            kept = row[: row.index(tokenizer.eos_token_id)] if stopped else row
            results[i] = {
                "text": tokenizer.decode(kept, skip_special_tokens=True).strip(),
                "new_tokens": len(kept),
                "stopped": stopped,
            }
    return results  # type: ignore[return-value]
