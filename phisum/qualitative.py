"""The qualitative report: base and PEFT summaries side by side, and the stress-test failures, as markdown."""

from __future__ import annotations

import random

from phisum.params import Params, ParamsError, QualitativeParams
from phisum.vocabulary import VARIANT_NAMES, VARIANTS, cell


def quote(text: str) -> str:
    """A markdown block quote of text; "(empty)" for nothing but whitespace."""
    if not text.strip():
        return "> (empty)"
    return "\n".join(f"> {line}" if line else ">" for line in text.splitlines())


def pick_dialogues(base: list[dict], peft: list[dict], qualitative: QualitativeParams, seed: int) -> list[tuple]:
    """(heading, index) for the fixed ids, the biggest ROUGE-1 gains and losses, and a seeded sample."""
    index_of = {row_id: i for i, row in enumerate(base) for row_id in row["ids"]}
    missing = [row_id for row_id in qualitative.ids if row_id not in index_of]
    if missing:
        raise ParamsError(
            f"qualitative.ids: {', '.join(missing)} not in the test split (e.g. {base[0]['id']}); fix the ids"
        )
    gains = sorted(range(len(base)), key=lambda i: peft[i]["scores"]["rouge1"] - base[i]["scores"]["rouge1"])
    picks = [("chosen", index_of[row_id]) for row_id in qualitative.ids]
    picks += [("PEFT gained most", i) for i in reversed(gains[-qualitative.top_k :])] if qualitative.top_k else []
    picks += [("PEFT lost most", i) for i in gains[: qualitative.top_k]]
    sample = random.Random(seed).sample(range(len(base)), k=min(qualitative.random_examples, len(base)))
    picks += [("random sample", i) for i in sample]
    unique: dict[int, str] = {}
    for heading, i in picks:
        unique.setdefault(i, heading)  # a dialogue shows once, under its first reason
    return [(heading, i) for i, heading in unique.items()]


def render_dialogue(heading: str, dialogue: str, base: dict, peft: dict) -> list[str]:
    lines = [f"### {base['id']} ({heading})", "", quote(dialogue), ""]
    lines += ["Reference(s):", ""] + [f"- {ref}" for ref in base["references"]] + [""]
    lines += ["| model | summary | ROUGE-1 | ROUGE-L |", "|---|---|---|---|"]
    for name, row in zip(VARIANT_NAMES.values(), (base, peft), strict=True):
        lines.append(
            f"| {name} | {cell(row['prediction'])} | {row['scores']['rouge1']:.3f} | {row['scores']['rougeL']:.3f} |"
        )
    return [*lines, ""]


def render_empty(predictions: dict[str, dict[str, list[dict]]]) -> list[str]:
    """Every empty prediction (as the metrics count them: nothing but whitespace), per model and set."""
    lines = ["## Empty predictions", ""]
    for name, sets in predictions.items():
        empty = [
            f"{row['id']} ({set_name})"
            for set_name, rows in sets.items()
            for row in rows
            if not row["prediction"].strip()
        ]
        lines.append(f"- {name}: {len(empty)}" + (f": {', '.join(empty)}" if empty else ""))
    return [*lines, ""]


def render_stress(base: list[dict], peft: list[dict]) -> list[str]:
    """Failures per model: wrong or missing final time, red herring, missed action items."""
    lines = ["## Stress test: meetings moved 1-4 times", ""]
    for name, rows in zip(VARIANT_NAMES.values(), (base, peft), strict=True):
        failures = [r for r in rows if not r["final_time_correct"] or r["red_herring"] or r["missed_action_items"]]
        lines += [f"### {name}: {len(failures)} of {len(rows)} cases with a failure", ""]
        if failures:
            lines += ["| case | changes | expected | failed | summary |", "|---|---|---|---|---|"]
        for row in failures:
            failed = [
                *(["final time"] if not row["final_time_correct"] else []),
                *(["red herring"] if row["red_herring"] else []),
                *[f"missed {item['owner']}: {item['object']}" for item in row["missed_action_items"]],
            ]
            expected = f"{row['final']['day']} {row['final']['time']}"
            summary = cell(row["prediction"])
            lines.append(f"| {row['id']} | {row['changes']} | {expected} | {cell('; '.join(failed))} | {summary} |")
        lines.append("")
    return lines


def render_report(
    test_rows: list[dict], scored: dict[str, dict[str, list[dict]]], extra: dict[str, list[dict]], params: Params
) -> str:
    """The report: chosen, most changed and sampled test dialogues, your dialogues, empty predictions, stress."""
    base, peft = scored["base"]["test"], scored["peft"]["test"]
    dialogues = {row["id"]: row["dialogue"] for row in test_rows}
    lines = ["# Base vs PEFT, side by side", "", "Greedy outputs of both models on the same prompts.", ""]
    lines += ["## Test dialogues", ""]
    for heading, i in pick_dialogues(base, peft, params.qualitative, params.seed):
        lines += render_dialogue(heading, dialogues[base[i]["id"]], base[i], peft[i])
    if extra["base"]:
        lines += ["## Your dialogues", ""]
        for b, p in zip(extra["base"], extra["peft"], strict=True):
            lines += [f"### {b['id']}", "", quote(b["dialogue"]), "", "| model | summary |", "|---|---|"]
            lines += [
                f"| {VARIANT_NAMES[v]} | {cell(row['prediction'])} |" for v, row in zip(VARIANTS, (b, p), strict=True)
            ]
            lines.append("")
    lines += render_empty({VARIANT_NAMES[v]: {**scored[v], "extra": extra[v]} for v in VARIANTS})
    lines += render_stress(scored["base"]["stress"], scored["peft"]["stress"])
    return "\n".join(lines)
