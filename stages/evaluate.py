"""evaluate: generate greedy summaries for the test dialogues with the base or PEFT model, and score them.

    python stages/evaluate.py --variant base|peft    (dvc.yaml stage `evaluate@base`, `evaluate@peft`)

Both variants load the same 4-bit base model and the same prompts; `peft` adds models/adapter/.
Writes data/predictions/<variant>.jsonl and metrics/<variant>.json.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
from peft import PeftModel
from transformers import set_seed

from phisum.data import group_by_dialogue
from phisum.files import read_jsonl, write_json, write_jsonl
from phisum.generation import generate_summaries
from phisum.modeling import load_base_model, load_tokenizer, resolve_compute_dtype
from phisum.params import Params, ParamsError, load_params
from phisum.scoring import score_groups

PARAMS = ("seed", "model", "prompt", "quantization", "evaluate")
TEST_PATH = Path("data/prepared/test.jsonl")
ADAPTER_DIR = Path("models/adapter")


def check_adapter_prompt(adapter_dir: Path, template: str) -> None:
    """Refuse to score an adapter with a prompt it was not trained on."""
    trained = json.loads((adapter_dir / "prompt.json").read_text(encoding="utf-8"))["template"]
    if trained != template:
        raise click.ClickException(
            f"{adapter_dir} was trained with prompt.template {trained!r}, params.yaml has {template!r}; "
            "run `dvc repro` to retrain"
        )


def evaluate(params: Params, test_rows: list[dict], adapter_dir: Path | None) -> tuple[dict, list[dict]]:
    """Return (metrics, predictions) for the base model, or base + adapter."""
    set_seed(params.seed)
    compute_dtype = resolve_compute_dtype(params.quantization.compute_dtype)
    tokenizer = load_tokenizer(params.model)
    model = load_base_model(params.model, params.quantization, compute_dtype)
    if adapter_dir is not None:
        model = PeftModel.from_pretrained(model, adapter_dir)
    model.eval()
    groups = group_by_dialogue(test_rows)
    started = time.perf_counter()
    outputs = generate_summaries(
        model, tokenizer, [g["prompt"] for g in groups], params.evaluate.max_new_tokens, params.evaluate.batch_size
    )
    generation_s = time.perf_counter() - started
    for group, output in zip(groups, outputs, strict=True):
        group["prediction"] = output["text"]
        group["new_tokens"] = output["new_tokens"]
        group["stopped"] = output["stopped"]
    metrics, per_dialogue = score_groups(groups)
    predictions = [
        {
            "id": g["id"],
            "ids": g["ids"],
            "prediction": g["prediction"],
            "references": g["references"],
            "new_tokens": g["new_tokens"],
            "stopped": g["stopped"],
            "scores": {k: round(v, 4) for k, v in s.items()},
        }
        for g, s in zip(groups, per_dialogue, strict=True)
    ]
    metrics["hit_max_new_tokens"] = round(sum(not g["stopped"] for g in groups) / len(groups), 4)
    metrics["generation_s"] = round(generation_s, 1)
    return metrics, predictions


@click.command()
@click.option("--variant", type=click.Choice(["base", "peft"]), required=True)
def main(variant: str) -> None:
    try:
        params = load_params()
    except ParamsError as error:
        raise click.ClickException(str(error)) from None
    adapter_dir = ADAPTER_DIR if variant == "peft" else None
    if adapter_dir is not None:
        check_adapter_prompt(adapter_dir, params.prompt.template)
    test_rows = read_jsonl(TEST_PATH)
    click.echo(f"evaluate {variant}: {params.model.name}, {len(test_rows)} test rows")
    metrics, predictions = evaluate(params, test_rows, adapter_dir)
    write_jsonl(Path(f"data/predictions/{variant}.jsonl"), predictions)
    write_json(Path(f"metrics/{variant}.json"), metrics)
    click.echo(f"  {metrics['dialogues']} dialogues: multi-ref ROUGE-1 {metrics['multi_ref']['rouge1']}")


if __name__ == "__main__":
    main()
