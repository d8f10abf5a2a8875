"""Plot data for `dvc plots show` / `dvc plots diff`: one file per model, so each model is its own series.

DVC tells series apart by file and revision, not by a column of the data (dvc.yaml `plots:` holds the
chart definitions), hence metrics/plots/<chart>/<model>.csv rather than one file with a model column.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from phisum.metrics import count_words

MODELS = ("base", "peft")


# (bar label, protocol block, key) of the headline scores; all on a 0-1 scale except length_ratio (~1 is right).
HEADLINE = (
    ("pooled_rouge1", "pooled_reference", "rouge1"),
    ("pooled_rouge2", "pooled_reference", "rouge2"),
    ("pooled_rougeL", "pooled_reference", "rougeL"),
    ("best_ref_rouge1", "best_reference", "rouge1"),
    ("best_ref_meteor", "best_reference", "meteor"),
    ("sacrebleu_div_100", "all_references", "bleu"),
    ("length_ratio", "all_references", "length_ratio"),
)


def score_rows(metrics: dict) -> list[tuple[str, float]]:
    """(metric, value) of one model's headline scores (metrics switched off are left out) and stress rates."""
    rows = []
    for label, protocol, key in HEADLINE:
        value = metrics.get(protocol, {}).get(key)
        if isinstance(value, int | float):
            rows.append((label, round(value / 100, 4) if label == "sacrebleu_div_100" else value))
    bertscore = metrics.get("best_reference", {}).get("bertscore")
    if isinstance(bertscore, dict):
        rows.append(("best_ref_bertscore_f1", bertscore["f1"]))
    rows += [(f"stress_{name}", value) for name, value in metrics["stress"].items() if isinstance(value, float)]
    return rows


def length_rows(scored_test: list[dict]) -> list[tuple[str, float, int]]:
    """(dialogue id, mean reference words, prediction words) per test dialogue; on y = x the length is right."""
    rows = []
    for row in scored_test:
        references = [count_words(reference) for reference in row["references"]]
        rows.append((row["id"], round(sum(references) / len(references), 2), count_words(row["prediction"])))
    return rows


def csv_text(header: tuple[str, ...], rows: list[tuple]) -> str:
    """CSV with a header line; a field holding a comma, quote or newline is quoted, so it reads back whole."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def plot_texts(plots_dir: Path, metrics: dict[str, dict], scored: dict[str, dict]) -> dict[Path, str]:
    """{path: CSV text} of metrics/plots/scores/<model>.csv and metrics/plots/lengths/<model>.csv, both models."""
    texts = {}
    for model in MODELS:
        texts[plots_dir / "scores" / f"{model}.csv"] = csv_text(("metric", "value"), score_rows(metrics[model]))
        texts[plots_dir / "lengths" / f"{model}.csv"] = csv_text(
            ("dialogue", "reference_words", "prediction_words"), length_rows(scored[model]["test"])
        )
    return texts
