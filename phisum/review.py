"""Review a change: this revision's run against a base revision's, as reports/review.md.

    python -m phisum.review --base main [--out reports/review.md]    (make review BASE=main; CI runs it)

1. Stale check: `dvc status` must be clean and the pipeline files committed, so the metrics under
   review are the outputs of the committed code, params and data. Otherwise: one `Error:` line
   naming the stage or file, exit 1, no report (CI posts that line instead).
2. The headline metrics of both revisions, base model and PEFT.
3. PEFT of this revision minus PEFT of the base revision, per metric and on the stress benchmark,
   with a 95% paired bootstrap interval over the dialogues both revisions scored. The per-example
   scores of the base revision are read through DVC (`dvc.api`, from the cache or the remote).
4. The test dialogues whose PEFT summaries changed most, side by side.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from rouge_score import rouge_scorer

from phisum.files import write_text
from phisum.metrics import CORPUS_METRICS
from phisum.significance import COMPARISONS, paired_bootstrap
from phisum.stress import PAIRED_SCORES

SCORED_TEST = "data/scored/{model}/test.jsonl"
SCORED_STRESS = "data/scored/{model}/stress.jsonl"
# Per-case stress scores (phisum/stress.py score_summary); red herrings are failures, so lower is better.
LOWER_IS_BETTER = {"red_herring"}
NO_DIRECTION = {
    "length_ratio",
    "word_length_ratio",
    "prediction_words",
}  # neither more nor less is better: higher/lower
# (key path in metrics/<model>.json, label) of the headline table; keys a revision lacks show as "n/a".
HEADLINE = (
    ("pooled_reference.rouge1", "ROUGE-1 pooled"),
    ("pooled_reference.rouge2", "ROUGE-2 pooled"),
    ("pooled_reference.rougeL", "ROUGE-L pooled"),
    ("best_reference.rouge1", "ROUGE-1 best-ref"),
    ("best_reference.rougeLsum", "ROUGE-Lsum best-ref"),
    ("all_references.bleu", "sacreBLEU"),
    ("best_reference.meteor", "METEOR best-ref"),
    ("best_reference.bertscore.f1", "BERTScore F1 best-ref"),
    ("all_references.length_ratio", "length ratio (13a tokens)"),
    ("empty_predictions", "empty summaries"),
    ("cut_off_predictions", "cut-off summaries"),
    ("stress.final_time_accuracy", "stress: final time"),
    ("stress.red_herring_rate", "stress: red herring"),
    ("stress.action_item_recall", "stress: action items"),
)
# Per-dialogue scores on disk (data/scored); corpus BLEU and length_ratio have none, so they are in the table only.
PER_DIALOGUE_SCORES = tuple(
    key for names in COMPARISONS.values() for name, key in names.items() if name not in CORPUS_METRICS
)
TRAIN_HEADLINE = (("last_loss", "last train loss"), ("last_eval_loss", "last validation loss"))
PIPELINE_FILES = ("dvc.yaml", "dvc.lock", "params.yaml")


class ReviewError(Exception):
    """A review that cannot be made; the message says why and what to do."""


def stale_stages() -> list[tuple[str, str]]:
    """(stage, what changed) per stage that `dvc status` reports; empty when every output is up to date."""
    from dvc.repo import Repo

    with Repo() as repo:
        status = repo.status()
    stale = []
    for stage, changes in status.items():
        described = []
        for change in changes:
            if not isinstance(change, dict):
                described.append(str(change))
                continue
            for kind, paths in change.items():
                names = (
                    [
                        f"{path}[{', '.join(sorted(state))}]" if isinstance(state, dict) else path
                        for path, state in sorted(paths.items())
                    ]
                    if isinstance(paths, dict)
                    else [str(paths)]
                )
                described.append(f"{kind}: {', '.join(names)}")
        stale.append((stage, "; ".join(described)))
    return stale


def uncommitted_files() -> list[str]:
    """Changed tracked files, and untracked metrics or .dvc files: the review compares commits."""
    from dvc.repo import Repo

    with Repo() as repo:
        staged, unstaged, untracked = repo.scm.status()
    changed = {path for paths in staged.values() for path in paths} | set(unstaged)
    changed |= {p for p in untracked if p.startswith("metrics/") or p.endswith(".dvc") or p in PIPELINE_FILES}
    return sorted(changed)


def check_not_stale() -> None:
    """Raise ReviewError naming the first stale stage or uncommitted file."""
    stale = stale_stages()
    if stale:
        stage, changed = stale[0]
        others = f" and {len(stale) - 1} more" if len(stale) > 1 else ""
        raise ReviewError(
            f"stage {stage} is stale ({changed}){others}: the metrics are not the outputs of this code, params "
            "and data. Run `dvc pull` if outputs are missing, else `dvc repro` and commit dvc.lock"
        )
    dirty = uncommitted_files()
    if dirty:
        more = f" and {len(dirty) - 3} more" if len(dirty) > 3 else ""
        raise ReviewError(
            f"{', '.join(dirty[:3])}{more}: not committed; the review compares commits: commit (or stash) them first"
        )


def read_text(path: str, rev: str | None) -> str:
    """A file of the workspace (rev None) or of a git revision, through DVC (cache, else the default remote)."""
    import dvc.api

    try:
        return dvc.api.read(path, rev=rev, mode="r")
    except Exception as error:  # dvc raises many types here (missing rev, path, cache and remote)
        where = f"revision {rev!r}" if rev else "the workspace"
        raise ReviewError(
            f"{path} of {where}: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''} "
            "(is the revision's run committed and pushed to the DVC remote? `dvc pull` it)"
        ) from None


def read_json(path: str, rev: str | None) -> dict:
    return json.loads(read_text(path, rev))


def read_rows(path: str, rev: str | None) -> dict[str, dict]:
    """jsonl rows by id."""
    return {row["id"]: row for row in map(json.loads, filter(None, read_text(path, rev).split("\n"))) if row}


def lookup(metrics: dict, dotted: str) -> float | None:
    node = metrics
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node if isinstance(node, int | float) and not isinstance(node, bool) else None


def fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def headline_table(runs: dict[str, dict], labels: dict[str, str]) -> list[str]:
    """Markdown table: one row per headline metric, base model and PEFT of both revisions."""
    base_rev, this_rev = labels
    header = [
        f"| metric | base model @ {labels[base_rev]} | base model @ {labels[this_rev]} "
        f"| PEFT @ {labels[base_rev]} | PEFT @ {labels[this_rev]} |",
        "|---|---:|---:|---:|---:|",
    ]
    rows = []
    for key, label in HEADLINE:
        values = [lookup(runs[rev][model], key) for model in ("base", "peft") for rev in (base_rev, this_rev)]
        if any(v is not None for v in values):
            rows.append(f"| {label} | " + " | ".join(map(fmt, values)) + " |")
    for key, label in TRAIN_HEADLINE:
        values = [lookup(runs[rev]["train"], key) for rev in (base_rev, this_rev)]
        if any(v is not None for v in values):
            rows.append(f"| {label} | | | {fmt(values[0])} | {fmt(values[1])} |")
    return header + rows


def verdict(name: str, result: dict) -> str:
    """'worse by 0.012 [-0.03, -0.001], beyond noise' for this revision minus the base revision."""
    delta, low, high = result["delta"], result["ci_low"], result["ci_high"]
    if name in NO_DIRECTION:
        word = "higher" if delta > 0 else "lower"
    else:
        better = delta < 0 if name in LOWER_IS_BETTER else delta > 0
        word = "better" if better else "worse"
    noise = "beyond noise" if low > 0 or high < 0 else "within noise (the interval includes 0)"
    if delta == 0:
        return f"unchanged [{low:+.4f}, {high:+.4f}], {noise}"
    return f"{word} by {abs(delta):.4f} [{low:+.4f}, {high:+.4f}], {noise}"


def paired_deltas(
    base_scores: dict[str, dict], this_scores: dict[str, dict], names: list[str], resamples: int, seed: int
) -> tuple[dict[str, dict], int]:
    """{name: paired_bootstrap(base, this)} over the ids both revisions scored ({id: {name: score}}); that id count.

    A score that some row of either revision lacks (a metric switched off) is left out.
    """
    common = sorted(set(base_scores) & set(this_scores))
    if not common:
        raise ReviewError("the two revisions scored no test dialogue in common: the comparison needs the same test set")
    results = {}
    for name in names:
        if all(name in scores[i] for scores in (base_scores, this_scores) for i in common):
            old = [float(base_scores[i][name]) for i in common]
            new = [float(this_scores[i][name]) for i in common]
            results[name] = paired_bootstrap(old, new, resamples=resamples, seed=seed)
    return results, len(common)


def changed_most(base_rows: dict[str, dict], this_rows: dict[str, dict], top: int) -> list[tuple[str, float]]:
    """(id, ROUGE-L F1 between the two revisions' PEFT summaries), least similar first."""
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    similarity = [
        (i, scorer.score(base_rows[i]["prediction"], this_rows[i]["prediction"])["rougeL"].fmeasure)
        for i in sorted(set(base_rows) & set(this_rows))
    ]
    return sorted(similarity, key=lambda item: (item[1], item[0]))[:top]


def param_changes(base: str) -> list[str]:
    """'key: old -> new' for every param that differs between the base revision and the workspace."""
    from dvc.repo import Repo

    with Repo() as repo:
        diff = repo.params.diff(a_rev=base)["diff"]
    return [
        f"`{key}`: {change.get('old')} -> {change.get('new')}"
        for changes in diff.values()
        for key, change in sorted(changes.items())
    ]


def one_line(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def build_review(base: str, top: int, resamples: int, seed: int) -> str:
    """The review markdown; raises ReviewError when the workspace is stale or a revision cannot be read."""
    check_not_stale()
    labels = {base: base, None: "this revision"}
    runs = {rev: {name: read_json(f"metrics/{name}.json", rev) for name in ("base", "peft", "train")} for rev in labels}
    lines = [f"# Review: this revision against `{base}`", ""]
    changes = param_changes(base)
    lines += ["Params changed: " + (", ".join(changes) if changes else "none"), ""]
    lines += ["Stale check: `dvc status` is clean and the pipeline files are committed.", ""]
    lines += ["## Headline metrics", ""] + headline_table(runs, labels) + [""]

    scored = {rev: read_rows(SCORED_TEST.format(model="peft"), rev) for rev in labels}
    names = list(PER_DIALOGUE_SCORES)
    per_dialogue = {rev: {i: row["scores"] for i, row in rows.items()} for rev, rows in scored.items()}
    deltas, count = paired_deltas(per_dialogue[base], per_dialogue[None], names, resamples, seed)
    stress = {rev: read_rows(SCORED_STRESS.format(model="peft"), rev) for rev in labels}
    stress_deltas, stress_count = paired_deltas(stress[base], stress[None], list(PAIRED_SCORES), resamples, seed)
    lines += [
        f"## PEFT: this revision minus `{base}`",
        "",
        f"Paired bootstrap over the {count} test dialogues (and {stress_count} stress cases) both revisions "
        f"scored; {resamples} resamples, seed {seed}, 95% interval. An interval that excludes 0 is a change the "
        "test set can see.",
        "",
        "| score | this revision is |",
        "|---|---|",
    ]
    lines += [f"| {name} | {verdict(name, result)} |" for name, result in deltas.items()]
    lines += [f"| stress: {name} | {verdict(name, result)} |" for name, result in stress_deltas.items()]
    lines += ["", f"## Summaries that changed most (PEFT, {base} vs this revision)", ""]
    for dialogue_id, similarity in changed_most(scored[base], scored[None], top):
        old, new = scored[base][dialogue_id], scored[None][dialogue_id]
        lines += [
            f"### {dialogue_id} (ROUGE-L between the two summaries {similarity:.3f})",
            "",
            f"| | `{base}` | this revision |",
            "|---|---|---|",
            f"| summary | {one_line(old['prediction'])} | {one_line(new['prediction'])} |",
            f"| ROUGE-1 | {fmt(old['scores'].get('rouge1'))} | {fmt(new['scores'].get('rouge1'))} |",
            "",
            "Reference: " + one_line((new.get("references") or [""])[0]),
            "",
        ]
    return "\n".join(lines)


@click.command()
@click.option("--base", required=True, help="Git revision to compare against (a branch, tag or commit).")
@click.option("--out", "out_path", type=click.Path(path_type=Path), default=Path("reports/review.md"))
@click.option("--top", default=5, show_default=True, help="Changed summaries shown side by side.")
def main(base: str, out_path: Path, top: int) -> None:
    from phisum.params import ParamsError, load_params

    try:
        params = load_params()
        report = build_review(base, top, params.evaluate.bootstrap_resamples, params.seed)
    except (ReviewError, ParamsError) as error:
        raise click.ClickException(str(error)) from None
    write_text(out_path, report + "\n")
    click.echo(f"wrote {out_path}")


if __name__ == "__main__":
    main()
