"""Generation on the tiny model in 4-bit, as the generate stage runs it.

Where a generated summary ends, and whether it ended by itself: scripted tokens, exact outputs (the last tests)."""

import json

import pytest
import torch

from phisum.data import DataError, read_extra_dialogues
from phisum.generation import (
    NonFiniteScoresError,
    cut_at_stop_string,
    generate_summaries,
    masked_attention_kernels,
)
from phisum.modeling import check_max_length, describe_runtime
from phisum.params import ModelParams, ParamsError


def test_cut_at_stop_string_keeps_the_text_before_the_first_one():
    assert cut_at_stop_string("Tom meets Ann.\n\nInstruct: more", ["\nInstruct:", "\n\n"]) == ("Tom meets Ann.", True)
    assert cut_at_stop_string("Tom meets Ann.", ["\nInstruct:"]) == ("Tom meets Ann.", False)


def test_batched_greedy_generation_equals_one_at_a_time(tiny_4bit):
    tokenizer, model = tiny_4bit
    prompts = [f"Instruct: Summarize.\n\n#Person1#: Meet on day {i}{' please' * i}?\nOutput:\n" for i in range(6)]
    batched = generate_summaries(model, tokenizer, prompts, 12, batch_size=4, stop_strings=["\n\n"])
    single = generate_summaries(model, tokenizer, prompts, 12, batch_size=1, stop_strings=["\n\n"])
    assert batched == single
    assert all(0 < row["new_tokens"] <= 12 and "\n\n" not in row["text"] for row in batched)


def test_max_length_above_the_models_positions_is_a_params_error(tiny_model_dir):
    check_max_length(ModelParams(name=str(tiny_model_dir), revision=None, device="cpu"), 2048)
    with pytest.raises(ParamsError, match="prompt.max_length: 4096 exceeds .* limit of 2048 tokens"):
        check_max_length(ModelParams(name=str(tiny_model_dir), revision=None, device="cpu"), 4096)


def test_your_own_dialogues_file_is_read_and_checked(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps({"dialogue": "#Person1#: Hi."}) + "\n" + json.dumps({"id": "x", "dialogue": "B"}) + "\n")
    assert read_extra_dialogues(str(path)) == [
        {"id": "extra_0", "dialogue": "#Person1#: Hi."},
        {"id": "x", "dialogue": "B"},
    ]
    assert read_extra_dialogues("") == []
    path.write_text(json.dumps({"id": "y", "dialogue": " "}) + "\n")
    with pytest.raises(DataError, match="line 1: no `dialogue` text"):
        read_extra_dialogues(str(path))


class ScriptedPhi:
    """Wraps a tiny 4-bit Phi so that, whatever the prompt, every row generates `script` greedily.

    The real model runs (cache, masks, left padding); only its last-position logits are replaced.
    """

    def __init__(self, model, script: list[int], nan_rows: tuple[int, ...] = ()):
        self.model, self.script, self.nan_rows = model, script, nan_rows
        self.step = 0
        original = model.forward

        def forward(*args, **kwargs):
            past = kwargs.get("past_key_values")
            self.step = 0 if past is None or past.get_seq_length() == 0 else self.step + 1  # 0: the prefill
            output = original(*args, **kwargs)
            step = min(self.step, len(self.script) - 1)
            logits = torch.full_like(output.logits, -1e4)
            logits[:, -1, self.script[step]] = 0.0
            for row in self.nan_rows:
                if row < logits.shape[0]:
                    logits[row, -1] = float("nan")
            output.logits = logits
            return output

        model.forward = forward


PROMPTS = [f"Instruct: Summarize.\n\n#Person1#: Meet on day {i}{' please' * i}?\nOutput:\n" for i in range(5)]


def test_a_first_generated_newline_does_not_stop_generation_at_the_prompts_newline(tiny_4bit):
    tokenizer, model = tiny_4bit
    newline, eos = tokenizer.convert_tokens_to_ids("Ċ"), tokenizer.eos_token_id
    words = tokenizer.encode("Tom meets Ann.")
    ScriptedPhi(model, [newline, *words, eos])
    batched = generate_summaries(model, tokenizer, PROMPTS, 12, batch_size=4, stop_strings=["\nInstruct:", "\n\n"])
    single = generate_summaries(model, tokenizer, PROMPTS, 12, batch_size=1, stop_strings=["\nInstruct:", "\n\n"])
    expected = {"text": "Tom meets Ann.", "new_tokens": 1 + len(words), "stopped": True}
    assert batched == single == [expected] * len(PROMPTS)


def test_a_stop_string_in_the_generated_text_still_stops_and_is_cut(tiny_4bit):
    tokenizer, model = tiny_4bit
    newline = tokenizer.convert_tokens_to_ids("Ċ")
    words = tokenizer.encode("Tom meets Ann.")
    ScriptedPhi(model, [*words, newline, newline, *words])  # no EOS: only the stop string can end it
    batched = generate_summaries(model, tokenizer, PROMPTS, 20, batch_size=4, stop_strings=["\n\n"])
    single = generate_summaries(model, tokenizer, PROMPTS, 20, batch_size=1, stop_strings=["\n\n"])
    assert batched == single
    assert all(row["text"] == "Tom meets Ann." and row["stopped"] for row in batched)
    assert all(row["new_tokens"] == len(words) + 2 for row in batched)  # stopped at once, not at 20


def test_non_finite_scores_stop_generation_naming_the_prompts(tiny_4bit):
    tokenizer, model = tiny_4bit
    ScriptedPhi(model, [tokenizer.eos_token_id], nan_rows=(1,))
    with pytest.raises(NonFiniteScoresError) as error:
        generate_summaries(model, tokenizer, PROMPTS, 4, batch_size=4)
    # Batches go longest prompt first: row 1 of the first batch is prompt 3.
    assert error.value.prompts == [3]


def test_the_loaded_model_reports_device_dtype_and_sdpa_attention(tiny_4bit):
    _, model = tiny_4bit
    assert describe_runtime(model, torch.float32) == "device cpu, compute dtype float32, attention sdpa"


def test_masked_attention_on_cuda_allows_only_the_memory_efficient_and_math_kernels():
    backends = torch.backends.cuda
    with masked_attention_kernels(torch.device("cuda")):
        enabled = [backends.flash_sdp_enabled(), backends.cudnn_sdp_enabled(), backends.mem_efficient_sdp_enabled()]
        assert enabled + [backends.math_sdp_enabled()] == [False, False, True, True]
    with masked_attention_kernels(torch.device("cpu")):
        assert backends.flash_sdp_enabled()  # the CPU keeps torch's choice


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
