"""Where a generated summary ends, and whether it ended by itself: scripted tokens, exact outputs."""

import pytest
import torch

from phisum.generation import generate_summaries

SHORT = "Instruct: Summarize.\n\n#Person1#: Hi.\nOutput:\n"
LONG = "Instruct: Summarize.\n\n#Person1#: Hi, can we meet on Monday at nine?\n#Person2#: Yes.\nOutput:\n"


class ScriptPerPrompt:
    """Makes a tiny 4-bit Phi generate, greedily, a fixed token list per prompt (its last one repeated).

    The real model runs (cache, masks, left padding); only its last-position logits are replaced. The
    prompt of each batch row is read back from the prefill, so the script follows the prompt wherever
    batching puts it.
    """

    def __init__(self, model, tokenizer, scripts: dict[str, list[int]]):
        self.rows: list[list[int]] = []
        self.step = 0
        original = model.forward

        def forward(input_ids, *args, **kwargs):
            past = kwargs.get("past_key_values")
            if past is None or past.get_seq_length() == 0:  # the prefill: one row per prompt
                prompts = tokenizer.batch_decode(input_ids, skip_special_tokens=True)
                self.rows, self.step = [scripts[prompt] for prompt in prompts], 0
            else:
                self.step += 1
            output = original(input_ids, *args, **kwargs)
            logits = torch.full_like(output.logits, -1e4)
            for row, script in enumerate(self.rows):
                logits[row, -1, script[min(self.step, len(script) - 1)]] = 0.0
            output.logits = logits
            return output

        model.forward = forward


def one_token_per_character(tokenizer, text: str) -> list[int]:
    """Byte-level tokens of ASCII text, one per character, so counts and cuts are known by hand."""
    return tokenizer.convert_tokens_to_ids([{" ": "Ġ", "\n": "Ċ"}.get(char, char) for char in text])


@pytest.mark.parametrize("batch_size", [1, 2])
def test_a_summary_ends_at_eos_and_one_cut_by_max_new_tokens_is_not_stopped(tiny_4bit, batch_size):
    tokenizer, model = tiny_4bit
    eos = tokenizer.eos_token_id
    # Batched, SHORT's row runs on after its EOS (padded) while LONG's runs to the limit of 20 tokens.
    scripts = {
        SHORT: [*one_token_per_character(tokenizer, "Tom meets Ann."), eos, *one_token_per_character(tokenizer, "x")],
        LONG: one_token_per_character(tokenizer, "They talk and talk and talk"),
    }
    ScriptPerPrompt(model, tokenizer, scripts)
    results = generate_summaries(model, tokenizer, [SHORT, LONG], max_new_tokens=20, batch_size=batch_size)
    assert results == [
        {"text": "Tom meets Ann.", "new_tokens": 14, "stopped": True},
        {"text": "They talk and talk a", "new_tokens": 20, "stopped": False},
    ]


def test_a_stop_string_ends_a_summary_which_counts_as_stopped(tiny_4bit):
    tokenizer, model = tiny_4bit
    scripts = {
        SHORT: one_token_per_character(tokenizer, "Tom.\nInstruct: Summarize"),
        LONG: [*one_token_per_character(tokenizer, "Ann waves.  "), tokenizer.eos_token_id],
    }
    ScriptPerPrompt(model, tokenizer, scripts)
    results = generate_summaries(model, tokenizer, [SHORT, LONG], 40, batch_size=2, stop_strings=["\nInstruct:"])
    assert results == [
        {"text": "Tom.", "new_tokens": 14, "stopped": True},  # generation stopped at the colon
        {"text": "Ann waves.", "new_tokens": 12, "stopped": True},
    ]
