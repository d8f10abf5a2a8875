"""generate: greedy summaries from the base or the PEFT model, for the test dialogues and the stress set.

    python -m stages.generate --test-path FILE --out-dir DIR [--adapter-dir DIR]
        (dvc.yaml stages `generate@base` and, with the adapter, `generate@peft` give the paths)

Both load the same 4-bit base model and use the same prompts; peft adds the trained adapter.
Generation is the GPU-heavy half of evaluation; scoring lives in the evaluate stage, so changing a
metric never regenerates. Writes <out-dir>/{test,stress,extra}.jsonl and meta.json.
"""

from __future__ import annotations

from pathlib import Path

import click

from phisum.cli import UserErrorCommand
from phisum.data import read_extra_dialogues
from phisum.files import INPUT_DIR, INPUT_FILE, OUTPUT_DIR, atomic_dir, read_jsonl, write_json, write_jsonl
from phisum.params import load_params
from phisum.prompt import check_adapter_prompt

PARAMS = ("seed", "model", "prompt", "quantization", "generate")


@click.command(cls=UserErrorCommand)
@click.option("--test-path", type=INPUT_FILE, required=True, help="Prepared test rows (.jsonl).")
@click.option("--adapter-dir", type=INPUT_DIR, help="A trained adapter (peft); without it the base model generates.")
@click.option("--out-dir", type=OUTPUT_DIR, required=True, help="The predictions and meta.json.")
def main(test_path: Path, adapter_dir: Path | None, out_dir: Path) -> None:
    params = load_params()  # a params typo stops here, before torch and transformers load (seconds)
    from phisum.modeling import check_device, check_model_source

    check_device(params.model.device)
    check_model_source(params.model)
    extra_rows = read_extra_dialogues(params.generate.extra_dialogues)  # a bad file stops before the model
    if adapter_dir is not None:
        check_adapter_prompt(adapter_dir, params.prompt.template)
    test_rows = read_jsonl(test_path)
    model = f"{params.model.name} + {adapter_dir}" if adapter_dir else params.model.name
    click.echo(f"generate: {model}, {len(test_rows)} test rows")
    from phisum.generation import generate

    sets, stats = generate(params, test_rows, adapter_dir, extra_rows)
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
