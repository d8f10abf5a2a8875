"""Plot data for `dvc plots show` / `dvc plots diff`: one file per model, so each model is its own series.

DVC tells series apart by file and revision, not by a column of the data (dvc.yaml `plots:` holds the
chart definitions), hence metrics/plots/<chart>/<model>.csv rather than one file with a model column.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from phisum.metrics import count_words
from phisum.vocabulary import PLOTTED, VARIANTS, label, score_at

# The headline scores (phisum/vocabulary.py PLOTTED), bars labelled as everywhere: all on a 0-1 scale except
# length_ratio (~1 is right), and sacreBLEU, drawn divided by 100.
SCALED = {"all_references.bleu": 100}


def score_rows(metrics: dict) -> list[tuple[str, float]]:
    """(metric label, value) of one model's headline scores (metrics switched off are left out) and stress rates."""
    rows = []
    for key in PLOTTED:
        value = score_at(metrics, key)
        if value is not None:
            scale = SCALED.get(key)
            rows.append((f"{label(key)} / {scale}", round(value / scale, 4)) if scale else (label(key), value))
    rows += [(label(f"stress.{name}"), value) for name, value in metrics["stress"].items() if isinstance(value, float)]
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
    for model in VARIANTS:
        texts[plots_dir / "scores" / f"{model}.csv"] = csv_text(("metric", "value"), score_rows(metrics[model]))
        texts[plots_dir / "lengths" / f"{model}.csv"] = csv_text(
            ("dialogue", "reference_words", "prediction_words"), length_rows(scored[model]["test"])
        )
    return texts
