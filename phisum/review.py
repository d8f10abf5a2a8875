"""Review a change: this revision's run against a base revision's, as reports/review.md.

    python -m phisum.review --base main [--out reports/review.md]    (make review BASE=main; CI runs it)

1. Stale check: `dvc status` must be clean and the pipeline files committed, so the metrics under
   review are the outputs of the committed code, params and data. Otherwise: one `Error:` line
   naming the stage or file, exit 1, no report (CI posts that line instead).
2. The verdict, one line first: better, worse, or no difference beyond noise on the primary metric
   (`evaluate.primary_metric`), PEFT of this revision minus PEFT of the base revision, with its 95%
   paired bootstrap interval. It is the one confirmatory test.
3. The headline metrics of both revisions, base model and PEFT.
4. The same difference for every other score and the stress benchmark (exploratory): interval, the
   bootstrap p-value and its Holm adjustment over those scores; "beyond noise" reads the adjusted p.
   Pairs are checked by id: both revisions must have scored the same test dialogues. The per-example
   scores of the base revision are read through DVC (`dvc.api`, from the cache or the remote).
5. Across model families (the two revisions' `model.name`/`model.revision` differ, say Phi-2 against
   Llama-3): the base rows are two different models, so the report says so and compares base with base,
   PEFT with PEFT, and each model's gain (PEFT minus its own base) and the difference of the gains, each
   with its paired interval over the same dialogues.
6. The test dialogues whose PEFT summaries changed most, side by side.

Revisions that scored other test dialogues cannot be paired: the report says so in one line naming the first
differing id, and shows the headline table only. Each revision's file paths are its own dvc.yaml's: the
`--metrics-dir`/`--scored-dir` options of its evaluate stage and `--metrics-path` of its train stage.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path

import click
import yaml
from rouge_score import rouge_scorer

from phisum.cli import UserErrorCommand
from phisum.errors import UserError
from phisum.files import write_text
from phisum.metrics import CORPUS_METRICS
from phisum.significance import COMPARISONS, PairingError, check_paired, holm, paired_bootstrap
from phisum.stress import PAIRED_SCORES
from phisum.vocabulary import HEADLINE, SCORED_SETS, VARIANT_NAMES, VARIANTS, cell, label, score_at

# Per-case stress scores (phisum/stress.py score_summary); red herrings are failures, so lower is better.
LOWER_IS_BETTER = {"red_herring"}
NO_DIRECTION = {
    "length_ratio",
    "word_length_ratio",
    "prediction_words",
}  # neither more nor less is better: higher/lower
# Per-dialogue scores on disk (data/scored) and their metrics-file keys (protocol.name, as the labels and
# evaluate.primary_metric name them); corpus BLEU and length_ratio have none, so they are in the table only.
SCORE_KEYS = {
    key: f"{protocol}.{name}"
    for protocol, names in COMPARISONS.items()
    for name, key in names.items()
    if name not in CORPUS_METRICS
}
PER_DIALOGUE_SCORES = tuple(SCORE_KEYS)
TRAIN_HEADLINE = ("last_loss", "last_eval_loss")
ALPHA = 0.05
PIPELINE_FILES = ("dvc.yaml", "dvc.lock", "params.yaml")
# The stage options in dvc.yaml that name the files the review reads: (stage, option).
PATH_OPTIONS = {
    "metrics_dir": ("evaluate", "--metrics-dir"),
    "scored_dir": ("evaluate", "--scored-dir"),
    "train_metrics": ("train", "--metrics-path"),
}


class ReviewError(UserError):
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


def stage_paths(dvc_yaml: str, where: str) -> dict[str, str]:
    """{"metrics_dir", "scored_dir", "train_metrics"}: the paths the stage cmds of a dvc.yaml text give
    (PATH_OPTIONS), so the review reads each revision's outputs where its own pipeline wrote them."""
    stages = (yaml.safe_load(dvc_yaml) or {}).get("stages", {})
    paths = {}
    for name, (stage, option) in PATH_OPTIONS.items():
        argv = shlex.split(str(stages.get(stage, {}).get("cmd", "")))
        given = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == option]
        given += [arg.split("=", 1)[1] for arg in argv if arg.startswith(f"{option}=")]
        if not given:
            raise ReviewError(
                f"dvc.yaml of {where}: stage {stage}'s cmd has no {option}; the review reads its outputs from there"
            )
        paths[name] = given[0].rstrip("/")
    return paths


@dataclass
class Run:
    """What the review reads of one revision: its model, metrics files and scored rows."""

    model: str  # model.name, with @model.revision when one is pinned
    metrics: dict[str, dict]  # {"base", "peft", "train": the metrics file's dict}
    scored: dict[str, dict[str, dict[str, dict]]]  # {variant: {"test"|"stress": {id: scored row}}}


def model_of(params_text: str) -> str:
    """A params.yaml text's model.name, with @model.revision when one is pinned: it tells base models apart."""
    model = (yaml.safe_load(params_text) or {}).get("model") or {}
    name, revision = model.get("name"), model.get("revision")
    return f"{name}@{revision}" if revision else str(name)


def load_run(rev: str | None) -> Run:
    """A revision's run (None: the workspace), at the paths of its own dvc.yaml, through DVC."""
    paths = stage_paths(read_text("dvc.yaml", rev), f"revision {rev!r}" if rev else "the workspace")
    metrics = {variant: read_json(f"{paths['metrics_dir']}/{variant}.json", rev) for variant in VARIANTS}
    metrics["train"] = read_json(paths["train_metrics"], rev)
    scored = {
        variant: {name: read_rows(f"{paths['scored_dir']}/{variant}/{name}.jsonl", rev) for name in SCORED_SETS}
        for variant in VARIANTS
    }
    return Run(model_of(read_text("params.yaml", rev)), metrics, scored)


def fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def headline_table(runs: dict[str | None, Run], labels: dict[str | None, str]) -> list[str]:
    """Markdown table: one row per headline metric, base model and PEFT of both revisions (each base model
    named when the two differ)."""
    base_rev, this_rev = labels
    models = {rev: runs[rev].model for rev in labels}
    named = {rev: f" ({models[rev]})" if models[base_rev] != models[this_rev] else "" for rev in labels}
    header = [
        f"| metric | base model{named[base_rev]} @ {labels[base_rev]} | base model{named[this_rev]} @ "
        f"{labels[this_rev]} | PEFT @ {labels[base_rev]} | PEFT @ {labels[this_rev]} |",
        "|---|---:|---:|---:|---:|",
    ]
    rows = []
    for key in HEADLINE:
        values = [score_at(runs[rev].metrics[model], key) for model in VARIANTS for rev in (base_rev, this_rev)]
        if any(v is not None for v in values):
            rows.append(f"| {label(key)} | " + " | ".join(map(fmt, values)) + " |")
    for key in TRAIN_HEADLINE:
        values = [score_at(runs[rev].metrics["train"], key) for rev in (base_rev, this_rev)]
        if any(v is not None for v in values):
            rows.append(f"| {label(f'train.{key}')} | | | {fmt(values[0])} | {fmt(values[1])} |")
    return header + rows


def direction(name: str, delta: float) -> str:
    """'better'/'worse' (or 'higher'/'lower' for a score with no better direction) for a change of delta."""
    if name in NO_DIRECTION:
        return "higher" if delta > 0 else "lower"
    better = delta < 0 if name in LOWER_IS_BETTER else delta > 0
    return "better" if better else "worse"


def verdict(name: str, result: dict, adjusted_p: float | None = None) -> str:
    """'worse by 0.012 [-0.03, -0.001], beyond noise' for this revision minus the base revision.

    adjusted_p: the Holm-adjusted p-value of an exploratory score, which then decides "beyond noise";
    without it (the primary metric), the 95% interval does.
    """
    delta, low, high = result["delta"], result["ci_low"], result["ci_high"]
    if adjusted_p is None:
        noise = "beyond noise" if low > 0 or high < 0 else "within noise (the interval includes 0)"
    else:
        beyond = adjusted_p < ALPHA
        noise = f"p {result['p_value']:.3g}, Holm {adjusted_p:.3g}: " + ("beyond noise" if beyond else "within noise")
    if delta == 0:
        return f"unchanged [{low:+.4f}, {high:+.4f}], {noise}"
    return f"{direction(name, delta)} by {abs(delta):.4f} [{low:+.4f}, {high:+.4f}], {noise}"


def headline_verdict(primary: str, result: dict | None, base: str, unpaired: str | None = None) -> str:
    """The report's first line: better, worse or no difference beyond noise on the primary metric.

    unpaired: why the revisions could not be paired (no verdict then).
    """
    if unpaired is not None:
        return f"**Verdict: none**: {unpaired}"
    if result is None:
        return (
            f"**Verdict: none**: the primary metric {label(primary)} (`evaluate.primary_metric: {primary}`) was not "
            "scored by both revisions (is its metric in `evaluate.metrics`?)"
        )
    low, high = result["ci_low"], result["ci_high"]
    word = ("better" if result["delta"] > 0 else "worse") if low > 0 or high < 0 else "no difference beyond noise"
    return (
        f"**Verdict: {word}** on {label(primary)} (primary metric): this revision minus `{base}` "
        f"{result['delta']:+.4f}, 95% CI [{low:+.4f}, {high:+.4f}]"
    )


def check_same_ids(first: dict[str, dict], second: dict[str, dict], what: str) -> None:
    """Raise ReviewError naming the first id (sorted) that only one of two {id: row} holds."""
    try:
        check_paired(sorted(first), sorted(second), what=what)
    except PairingError as error:
        raise ReviewError(str(error)) from None


def paired_deltas(
    base_scores: dict[str, dict],
    this_scores: dict[str, dict],
    names: list[str],
    resamples: int,
    seed: int,
    what: str = "the ids the two revisions scored (sorted)",
) -> tuple[dict[str, dict], int]:
    """{name: paired_bootstrap(base, this) with p_value} ({id: {name: score}} per revision); the dialogue count.

    Pairs by id: both revisions must have scored the same ids (a ReviewError names the first that differs).
    A score that some row of either revision lacks (a metric switched off) is left out.
    """
    check_same_ids(base_scores, this_scores, what)
    common = sorted(base_scores)
    results = {}
    for name in names:
        if all(name in scores[i] for scores in (base_scores, this_scores) for i in common):
            old = [float(base_scores[i][name]) for i in common]
            new = [float(this_scores[i][name]) for i in common]
            results[name] = paired_bootstrap(old, new, resamples=resamples, seed=seed, p_value=True)
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
        diff = repo.params.diff(a_rev=base).get("diff", {})  # DVC leaves "diff" out when nothing differs
    return [
        f"`{key}`: {change.get('old')} -> {change.get('new')}"
        for changes in diff.values()
        for key, change in sorted(changes.items())
    ]


def interval(result: dict) -> str:
    """'+0.0123 [-0.0100, +0.0300]': a paired difference and its 95% interval."""
    return f"{result['delta']:+.4f} [{result['ci_low']:+.4f}, {result['ci_high']:+.4f}]"


def gains(
    scores: dict[str, dict[str, dict[str, dict]]], revs: tuple[str, str], names: list[str], resamples: int, seed: int
) -> dict[str, dict[str, dict]]:
    """Across two model families, per score name: paired_bootstrap results over the same dialogues.

    "base": base model of revs[1] minus base model of revs[0]; "peft": the same for PEFT;
    "gain_a", "gain_b": each revision's gain, its PEFT minus its base model; "gain_difference": the gain of
    revs[1] minus the gain of revs[0], per dialogue ((peft_b - base_b) - (peft_a - base_a)), then averaged.
    scores: {rev: {variant: {id: {name: score}}}}; every variant of both revisions must have scored the same ids
    (a ReviewError names the first that differs). A score some row lacks (a metric switched off) is left out.
    """
    first, second = revs
    reference = sorted(scores[first]["base"])
    named = {rev: f"`{rev}`" if rev else "this revision" for rev in revs}
    for rev in revs:
        for variant in VARIANTS:
            what = f"the ids base of {named[first]} and {VARIANT_NAMES[variant]} of {named[rev]} scored (sorted)"
            check_same_ids(scores[first]["base"], scores[rev][variant], what)
    results = {}
    for name in names:
        if not all(name in scores[rev][v][i] for rev in revs for v in VARIANTS for i in reference):
            continue
        values = {(rev, v): [float(scores[rev][v][i][name]) for i in reference] for rev in revs for v in VARIANTS}
        gain = {rev: [p - b for b, p in zip(values[rev, "base"], values[rev, "peft"], strict=True)] for rev in revs}

        def boot(old: list[float], new: list[float]) -> dict:
            return paired_bootstrap(old, new, resamples=resamples, seed=seed)

        results[name] = {
            "base": boot(values[first, "base"], values[second, "base"]),
            "peft": boot(values[first, "peft"], values[second, "peft"]),
            "gain_a": boot(values[first, "base"], values[first, "peft"]),
            "gain_b": boot(values[second, "base"], values[second, "peft"]),
            "gain_difference": boot(gain[first], gain[second]),
        }
    return results


def per_dialogue_scores(run: Run, scored_set: str) -> dict[str, dict[str, dict]]:
    """{variant: {id: {name: score}}} of one set: the test rows keep their scores under "scores", the stress
    rows at the top level."""
    if scored_set == "test":
        return {v: {i: row["scores"] for i, row in run.scored[v]["test"].items()} for v in VARIANTS}
    return {v: dict(run.scored[v][scored_set]) for v in VARIANTS}


def across_models(
    runs: dict[str | None, Run], base: str, names: list[str], primary_name: str | None, resamples: int, seed: int
) -> list[str]:
    """The cross-family section: base vs base, PEFT vs PEFT, each model's gain and the difference of the gains."""
    revs = (base, None)
    test = gains({rev: per_dialogue_scores(runs[rev], "test") for rev in revs}, revs, names, resamples, seed)
    stress = gains(
        {rev: per_dialogue_scores(runs[rev], "stress") for rev in revs}, revs, list(PAIRED_SCORES), resamples, seed
    )
    model_a, model_b = runs[base].model, runs[None].model
    lines = [
        "## Across models: base vs base, PEFT vs PEFT, and each model's gain",
        "",
        f"`{base}` fine-tunes `{model_a}`, this revision `{model_b}`. Per dialogue, paired by id over the "
        f"{len(runs[base].scored['base']['test'])} test dialogues (and {len(runs[base].scored['base']['stress'])} "
        f"stress cases): base = this revision's base model minus `{base}`'s, PEFT the same for the fine-tuned "
        f"models, gain = PEFT minus its own base model, and the gain difference = this revision's gain minus "
        f"`{base}`'s. Mean difference [95% paired bootstrap interval], {resamples} resamples, seed {seed}; "
        "exploratory, no multiple-comparison adjustment. Red herrings are failures: lower is better.",
        "",
        f"| score | base: {model_b} - {model_a} | PEFT: this revision - `{base}` | gain of {model_a} "
        f"| gain of {model_b} | gain difference |",
        "|---|---|---|---|---|---|",
    ]
    order = [primary_name] if primary_name in test else []
    order += [name for name in test if name != primary_name]
    rows = [(label(SCORE_KEYS[name]) + (" (primary)" if name == primary_name else ""), test[name]) for name in order]
    rows += [(label(f"stress.{name}"), result) for name, result in stress.items()]
    parts = ("base", "peft", "gain_a", "gain_b", "gain_difference")
    for text, result in rows:
        lines.append(f"| {text} | " + " | ".join(interval(result[part]) for part in parts) + " |")
    return [*lines, ""]


def render_review(
    base: str,
    runs: dict[str | None, Run],
    changes: list[str],
    top: int,
    resamples: int,
    seed: int,
    primary: str,
) -> str:
    """The review markdown of two revisions' runs (runs: {base: Run, None: this revision's Run})."""
    labels = {base: base, None: "this revision"}
    names = list(PER_DIALOGUE_SCORES)
    per_dialogue = {rev: per_dialogue_scores(runs[rev], "test") for rev in labels}
    stress = {rev: per_dialogue_scores(runs[rev], "stress") for rev in labels}
    cross = runs[base].model != runs[None].model
    primary_name = next((name for name, key in SCORE_KEYS.items() if key == primary), None)
    unpaired, across = None, []
    try:
        what = f"the test dialogues of `{base}` (first) and this revision (second), sorted by id,"
        deltas, count = paired_deltas(
            per_dialogue[base]["peft"], per_dialogue[None]["peft"], names, resamples, seed, what
        )
        what = f"the stress cases of `{base}` (first) and this revision (second), sorted by id,"
        stress_deltas, stress_count = paired_deltas(
            stress[base]["peft"], stress[None]["peft"], list(PAIRED_SCORES), resamples, seed, what
        )
        if cross:
            across = across_models(runs, base, names, primary_name, resamples, seed)
    except ReviewError as error:
        unpaired = f"cannot pair the two revisions: {error}"

    lines = [headline_verdict(primary, None if unpaired else deltas.get(primary_name), base, unpaired), ""]
    lines += [f"# Review: this revision against `{base}`", ""]
    lines += ["Params changed: " + (", ".join(changes) if changes else "none"), ""]
    lines += ["Stale check: `dvc status` is clean and the pipeline files are committed.", ""]
    if cross:
        lines += [
            f"**The base models differ**: `{base}` runs `{runs[base].model}`, this revision `{runs[None].model}` "
            "(`model.name`/`model.revision`). The base rows are two different models: compare base with base, "
            "PEFT with PEFT, and each model's gain (section *Across models*).",
            "",
        ]
    lines += ["## Headline metrics", ""] + headline_table(runs, labels) + [""]
    if unpaired:
        lines += [f"No paired comparison: {unpaired}.", ""]
        return "\n".join(lines)
    lines += across
    # The exploratory family: every other paired score, Holm-adjusted together.
    exploratory = {SCORE_KEYS[name]: (name, result) for name, result in deltas.items() if name != primary_name}
    exploratory |= {f"stress.{name}": (name, result) for name, result in stress_deltas.items()}
    adjusted = holm({key: result["p_value"] for key, (_, result) in exploratory.items()})
    lines += [
        f"## PEFT: this revision minus `{base}`",
        "",
        f"Paired bootstrap over the {count} test dialogues (and {stress_count} stress cases) both revisions "
        f"scored, paired by id; {resamples} resamples, seed {seed}, 95% percentile interval. The verdict above is "
        f"the one confirmatory test ({label(primary)}, `evaluate.primary_metric`). The {len(exploratory)} scores "
        "below are exploratory: with this many intervals some exclude 0 by chance, so each has the bootstrap "
        f"p-value and its Holm adjustment over all {len(exploratory)}, and is beyond noise only when the adjusted "
        f"p is below {ALPHA}.",
        "",
        "| score | this revision is |",
        "|---|---|",
    ]
    if primary_name in deltas:
        lines.append(f"| {label(primary)} (primary) | {verdict(primary_name, deltas[primary_name])} |")
    lines += [
        f"| {label(key)} | {verdict(name, result, adjusted[key])} |" for key, (name, result) in exploratory.items()
    ]
    lines += ["", f"## Summaries that changed most ({VARIANT_NAMES['peft']}, {base} vs this revision)", ""]
    scored = {rev: runs[rev].scored["peft"]["test"] for rev in labels}
    for dialogue_id, similarity in changed_most(scored[base], scored[None], top):
        old, new = scored[base][dialogue_id], scored[None][dialogue_id]
        lines += [
            f"### {dialogue_id} (ROUGE-L between the two summaries {similarity:.3f})",
            "",
            f"| | `{base}` | this revision |",
            "|---|---|---|",
            f"| summary | {cell(old['prediction'])} | {cell(new['prediction'])} |",
            f"| ROUGE-1 | {fmt(old['scores'].get('rouge1'))} | {fmt(new['scores'].get('rouge1'))} |",
            "",
            "Reference: " + cell((new.get("references") or [""])[0]),
            "",
        ]
    return "\n".join(lines)


def build_review(base: str, top: int, resamples: int, seed: int, primary: str) -> str:
    """The review markdown; raises ReviewError when the workspace is stale or a revision cannot be read.

    primary: evaluate.primary_metric (protocol.name), the verdict's one confirmatory score.
    """
    check_not_stale()
    runs = {rev: load_run(rev) for rev in (base, None)}
    return render_review(base, runs, param_changes(base), top, resamples, seed, primary)


@click.command(cls=UserErrorCommand)
@click.option("--base", required=True, help="Git revision to compare against (a branch, tag or commit).")
@click.option("--out", "out_path", type=click.Path(path_type=Path), default=Path("reports/review.md"))
@click.option("--top", default=5, show_default=True, help="Changed summaries shown side by side.")
def main(base: str, out_path: Path, top: int) -> None:
    from phisum.params import load_params

    params = load_params()
    evaluate = params.evaluate
    report = build_review(base, top, evaluate.bootstrap_resamples, params.seed, evaluate.primary_metric)
    write_text(out_path, report + "\n")
    click.echo(f"wrote {out_path}")


if __name__ == "__main__":
    main()
