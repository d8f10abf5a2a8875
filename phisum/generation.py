"""Batched greedy generation that stops at EOS, with stop strings matched in generated text only; and the generate
stage's work: the test, stress and your own dialogues' summaries from the base or the PEFT model."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from pathlib import Path

import click
import torch
from peft import PeftModel
from tqdm.auto import tqdm
from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList, set_seed

from phisum.data import fit_prompts, group_by_dialogue
from phisum.errors import UserError
from phisum.modeling import (
    describe_runtime,
    load_base_model,
    load_tokenizer,
    precision_cause,
    resolve_compute_dtype,
)
from phisum.params import Params
from phisum.stress import make_stress_cases
from phisum.vocabulary import SETS

# Masked attention with left padding: a padded row's query can attend to nothing, and some fused
# kernels (cuDNN attention on Hopper/Blackwell, reported upstream) return NaN there. The
# memory-efficient and math kernels handle it; flash attention takes no mask anyway.
MASKED_SDPA_BACKENDS = [torch.nn.attention.SDPBackend.EFFICIENT_ATTENTION, torch.nn.attention.SDPBackend.MATH]


class NonFiniteScoresError(UserError, RuntimeError):
    """The model produced NaN/inf next-token scores; `prompts` are the indices of the affected prompts."""

    def __init__(self, prompts: list[int], message: str = ""):
        self.prompts = prompts
        super().__init__(message or f"non-finite next-token scores for prompts {prompts}")


def cut_at_stop_string(text: str, stop_strings: list[str]) -> tuple[str, bool]:
    """Text before the first stop string, and whether one was found."""
    cuts = [text.index(stop) for stop in stop_strings if stop in text]
    return (text[: min(cuts)], True) if cuts else (text, False)


class StopInGeneratedText(StoppingCriteria):
    """Stop a row once its generated text (never the prompt) contains a stop string.

    Hand-written because transformers' StopStringCriteria looks at the end of the whole sequence: the
    prompt ends in "Output:\\n", so a first generated newline completes "\\n\\n" across the boundary
    and the row stops with an empty summary. Decoding a row's few new tokens per step costs
    nothing next to a forward pass.
    """

    def __init__(self, tokenizer, stop_strings: list[str], prompt_length: int):
        self.tokenizer, self.stop_strings, self.prompt_length = tokenizer, stop_strings, prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_length :], skip_special_tokens=True)
        hits = [any(stop in text for stop in self.stop_strings) for text in texts]
        return torch.tensor(hits, dtype=torch.bool, device=input_ids.device)


class FiniteScoresCheck(LogitsProcessor):
    """Records the batch rows whose next-token scores are NaN/inf at any step (greedy would pick garbage)."""

    def __init__(self) -> None:
        self.bad_rows: set[int] = set()

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        bad = ~torch.isfinite(scores).all(dim=-1)
        if bad.any():  # one device sync per step; generate() syncs every step for EOS anyway
            self.bad_rows.update(bad.nonzero().flatten().tolist())
        return scores


def eos_token_ids(model, tokenizer) -> list[int]:
    """The tokenizer's EOS and every EOS the model's generation_config.json lists (tokenizer's first).

    An instruct model can end its turn with a token that is not the tokenizer's eos_token: Llama-3-Instruct's
    <|eot_id|> (released with eos_token <|end_of_text|>; generation_config lists both), Qwen2.5-Instruct's
    <|endoftext|> next to <|im_end|>. Passing only tokenizer.eos_token_id to generate() overrides that list, and
    generation runs on past the end of the summary.
    """
    listed = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    listed = [] if listed is None else [listed] if isinstance(listed, int) else list(listed)
    return list(dict.fromkeys([tokenizer.eos_token_id, *listed]))


def masked_attention_kernels(device: torch.device):
    """On CUDA, let SDPA pick only the kernels that are safe for left-padded masks."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    return torch.nn.attention.sdpa_kernel(MASKED_SDPA_BACKENDS)


@torch.inference_mode()
def generate_summaries(
    model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int, stop_strings: list[str] = ()
) -> list[dict]:
    """Greedy summaries for prompts, in input order.

    Prompts are batched longest first (less padding), left-padded so every row's new tokens start
    at the same position. Generation stops at any EOS (eos_token_ids) or, as a fallback for a model that does not emit
    it (an untuned base model rambles on into a new "Instruct:"), at a stop string in the generated
    text, which is cut off. Returns {"text", "new_tokens", "stopped"} per prompt; stopped is False
    when generation hit max_new_tokens without EOS or a stop string. Raises NonFiniteScoresError,
    naming the prompts of the first batch whose scores are NaN/inf.
    """
    tokenizer.padding_side = "left"
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    results: list[dict | None] = [None] * len(prompts)
    device = next(model.parameters()).device
    eos_ids = eos_token_ids(model, tokenizer)
    for start in tqdm(range(0, len(order), batch_size), desc="generate", unit="batch"):
        batch = order[start : start + batch_size]
        inputs = tokenizer([prompts[i] for i in batch], return_tensors="pt", padding=True).to(device)
        prompt_length = inputs["input_ids"].shape[1]
        finite = FiniteScoresCheck()
        stopping = [StopInGeneratedText(tokenizer, list(stop_strings), prompt_length)] if stop_strings else []
        with masked_attention_kernels(device):
            output = model.generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=eos_ids,
                pad_token_id=tokenizer.pad_token_id,
                logits_processor=LogitsProcessorList([finite]),
                stopping_criteria=StoppingCriteriaList(stopping),
            )
        if finite.bad_rows:  # stop at once: the next batches would waste the same time on garbage
            raise NonFiniteScoresError(sorted(batch[row] for row in finite.bad_rows))
        new_tokens = output[:, prompt_length:]
        for row, i in zip(new_tokens.tolist(), batch, strict=True):
            ends = [row.index(eos) for eos in eos_ids if eos in row]
            ended = bool(ends)
            kept = row[: min(ends)] if ended else row
            text, cut = cut_at_stop_string(tokenizer.decode(kept, skip_special_tokens=True), list(stop_strings))
            results[i] = {"text": text.strip(), "new_tokens": len(kept), "stopped": ended or cut}
    return results  # type: ignore[return-value]


def non_finite_scores_message(ids: Sequence[str], device: str, compute_dtype) -> str:
    """What NaN/inf next-token scores at this compute dtype likely mean, and what to change on this device."""
    dtype = str(compute_dtype).removeprefix("torch.")
    precision = precision_cause(device, compute_dtype)
    overflow = f"{precision[0]} in attention (set {precision[1]}) or " if precision else ""
    return (
        f"non-finite next-token scores (NaN/inf) for rows {', '.join(ids)} at compute dtype {dtype}; likely "
        f"{overflow}a fused attention kernel failing on left-padded rows (set generate.batch_size: "
        "1 to confirm)"
    )


def generate(
    params: Params, test_rows: list[dict], adapter_dir: Path | None, extra_rows: Sequence[dict] = ()
) -> tuple[dict[str, list[dict]], dict]:
    """Return ({"test"|"stress"|"extra": rows with predictions}, generation stats); extra_rows: your dialogues.

    NaN/inf scores raise NonFiniteScoresError naming the rows, the likely cause and the fix."""
    set_seed(params.seed)
    compute_dtype = resolve_compute_dtype(params.quantization.compute_dtype, params.model.device)
    tokenizer = load_tokenizer(params.model)
    model = load_base_model(params.model, params.quantization, compute_dtype)
    if adapter_dir is not None:
        model = PeftModel.from_pretrained(model, adapter_dir)
    model.eval()
    click.echo(f"  {describe_runtime(model, compute_dtype)}")
    template = params.prompt.template
    # prepare cut the test dialogues to this budget; the others are cut here the same way.
    budget = params.prompt.max_length - params.generate.max_new_tokens
    stress, stress_cut = fit_prompts(
        make_stress_cases(params.seed, params.generate.stress_cases), template, tokenizer, budget
    )
    extra, extra_cut = fit_prompts(list(extra_rows), template, tokenizer, budget)
    sets = dict(zip(SETS, (group_by_dialogue(test_rows), stress, extra), strict=True))
    rows = [row for name in sets for row in sets[name]]
    prompts = [row["prompt"] for row in rows]
    started = time.perf_counter()
    try:
        outputs = generate_summaries(
            model,
            tokenizer,
            prompts,
            params.generate.max_new_tokens,
            params.generate.batch_size,
            params.generate.stop_strings,
        )
    except NonFiniteScoresError as error:
        ids = [rows[i]["id"] for i in error.prompts]
        message = non_finite_scores_message(ids, params.model.device, compute_dtype)
        raise NonFiniteScoresError(error.prompts, message) from None
    generation_s = time.perf_counter() - started
    for row, output in zip(rows, outputs, strict=True):
        row.pop("prompt", None)  # the test prompt is in data/prepared; keep predictions small
        row.update(prediction=output["text"], new_tokens=output["new_tokens"], stopped=output["stopped"])
    stats = {
        "generation_s": round(generation_s, 1),
        "prompts": len(prompts),
        "compute_dtype": str(compute_dtype),
        "truncated_dialogues": {"stress": stress_cut, "extra": extra_cut},
    }
    return sets, stats
