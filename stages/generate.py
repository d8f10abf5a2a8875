"""generate: greedy summaries from the base or the PEFT model, for the test dialogues and the stress set.

    python -m stages.generate --test-path FILE --out-dir DIR [--adapter-dir DIR]
        (dvc.yaml stages `generate@base` and, with the adapter, `generate@peft` give the paths)

Both load the same 4-bit base model and use the same prompts; peft adds the trained adapter.
Generation is the GPU-heavy half of evaluation; scoring lives in the evaluate stage, so changing a
metric never regenerates. Writes <out-dir>/{test,stress,extra}.jsonl and meta.json.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import click

from phisum.data import DataError, decode_utf8, fit_prompts, group_by_dialogue, is_text, numbered_jsonl
from phisum.files import INPUT_DIR, INPUT_FILE, OUTPUT_DIR, atomic_dir, read_jsonl, write_json, write_jsonl
from phisum.params import Params, ParamsError, load_params
from phisum.prompt import PromptError, check_adapter_prompt
from phisum.stress import make_stress_cases

PARAMS = ("seed", "model", "prompt", "quantization", "generate")


def read_extra_dialogues(path: str) -> list[dict]:
    """Your own dialogues for the report: a .jsonl with `dialogue` (and optionally `id`) per line."""
    if not path:
        return []
    try:
        rows = numbered_jsonl(decode_utf8(Path(path)), path)
    except DataError as error:
        raise click.ClickException(f"generate.extra_dialogues: {error}") from None
    extra = []
    for index, (line, row) in enumerate(rows):
        dialogue, row_id = row.get("dialogue"), row.get("id")
        where = f"generate.extra_dialogues: {path} line {line}"
        if not is_text(dialogue) or not str(dialogue).strip():
            raise click.ClickException(f'{where}: no `dialogue` text; give every line a non-empty "dialogue"')
        if row_id is not None and not is_text(row_id):
            raise click.ClickException(f"{where}: `id` is not text; give a string or leave it out")
        extra.append({"id": str(row_id) if row_id is not None else f"extra_{index}", "dialogue": str(dialogue)})
    return extra


def non_finite_scores_message(ids: Sequence[str], device: str, compute_dtype) -> str:
    """What NaN/inf next-token scores at this compute dtype likely mean, and what to change on this device."""
    from phisum.modeling import stable_dtype_advice

    dtype = str(compute_dtype).removeprefix("torch.")
    advice = stable_dtype_advice(device, compute_dtype)
    overflow = f"{'fp16 overflow' if dtype == 'float16' else 'low bfloat16 precision'} in attention (set {advice}) or "
    return (
        f"non-finite next-token scores (NaN/inf) for rows {', '.join(ids)} at compute dtype {dtype}; likely "
        f"{overflow if advice else ''}a fused attention kernel failing on left-padded rows (set generate.batch_size: "
        "1 to confirm)"
    )


def generate(
    params: Params, test_rows: list[dict], adapter_dir: Path | None, extra_rows: Sequence[dict] = ()
) -> tuple[dict[str, list[dict]], dict]:
    """Return ({"test"|"stress"|"extra": rows with predictions}, generation stats); extra_rows: your dialogues."""
    from peft import PeftModel
    from transformers import set_seed

    from phisum.generation import NonFiniteScoresError, generate_summaries
    from phisum.modeling import describe_runtime, load_base_model, load_tokenizer, resolve_compute_dtype

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
    sets = {"test": group_by_dialogue(test_rows), "stress": stress, "extra": extra}
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
        raise click.ClickException(non_finite_scores_message(ids, params.model.device, compute_dtype)) from None
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


@click.command()
@click.option("--test-path", type=INPUT_FILE, required=True, help="Prepared test rows (.jsonl).")
@click.option("--adapter-dir", type=INPUT_DIR, help="A trained adapter (peft); without it the base model generates.")
@click.option("--out-dir", type=OUTPUT_DIR, required=True, help="The predictions and meta.json.")
def main(test_path: Path, adapter_dir: Path | None, out_dir: Path) -> None:
    try:
        params = load_params()  # a params typo stops here, before torch and transformers load (seconds)
        from phisum.modeling import check_device, check_model_source

        check_device(params.model.device)
        check_model_source(params.model)
        extra_rows = read_extra_dialogues(params.generate.extra_dialogues)  # a bad file stops before the model
    except ParamsError as error:
        raise click.ClickException(str(error)) from None
    if adapter_dir is not None:
        try:
            check_adapter_prompt(adapter_dir, params.prompt.template)
        except PromptError as error:
            raise click.ClickException(str(error)) from None
    test_rows = read_jsonl(test_path)
    model = f"{params.model.name} + {adapter_dir}" if adapter_dir else params.model.name
    click.echo(f"generate: {model}, {len(test_rows)} test rows")
    try:
        sets, stats = generate(params, test_rows, adapter_dir, extra_rows)
    except (ParamsError, DataError) as error:
        raise click.ClickException(str(error)) from None
    cut = stats["truncated_dialogues"]
    if any(cut.values()):
        click.echo(
            f"  cut to prompt.max_length - generate.max_new_tokens tokens: {cut['stress']} stress, {cut['extra']} extra"
        )
    with atomic_dir(out_dir) as tmp_dir:
        for name, rows in sets.items():
            write_jsonl(tmp_dir / f"{name}.jsonl", rows)
        write_json(tmp_dir / "meta.json", stats)
    click.echo(f"  {stats['prompts']} prompts in {stats['generation_s']} s -> {out_dir}/")


if __name__ == "__main__":
    main()
