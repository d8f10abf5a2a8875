"""Review of a change, as CI runs it: the demo's r=32 run committed on main, its r=16 run on a branch,
both pushed to the demo's local DVC remote; a fresh clone pulls and runs `make review BASE=...`."""

import json
import re
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from phisum.significance import paired_bootstrap
from tests.helpers import VENV_BIN, copy_demo, run, set_params

pytestmark = pytest.mark.slow
DVC = str(VENV_BIN / "dvc")
MAKE = ["make", "-o", f"{VENV_BIN.parent}/.installed", f"VENV={VENV_BIN.parent}"]


def dvc_remote(repo: Path) -> str:
    return run([DVC, "remote", "list", "--local"], repo).split()[1]


def rows_by_id(path: Path) -> dict[str, dict]:
    return {row["id"]: row for row in map(json.loads, path.read_text().splitlines())}


@pytest.fixture(scope="module")
def team(demo_repo, tmp_path_factory) -> dict:
    """origin: main = the r=32 run, pr-r16 = the r=16 run, both pushed. Scores of both kept for checks."""
    origin = copy_demo(demo_repo[0], tmp_path_factory.mktemp("team") / "origin")  # main: the r=32 run, committed
    run([DVC, "push"], origin)
    scores = {"main": rows_by_id(origin / "data/scored/peft/test.jsonl")}
    files = {"main": {p: (origin / p).read_bytes() for p in ("models/adapter/adapter_model.safetensors",)}}
    files["main"]["data/predictions/peft/test.jsonl"] = (origin / "data/predictions/peft/test.jsonl").read_bytes()
    run(["git", "checkout", "-q", "-b", "pr-r16"], origin)
    run([DVC, "exp", "apply", "cpu-r16"], origin)
    run(["git", "add", "-A"], origin)
    run(["git", "commit", "-qm", "try LoRA r=16"], origin)
    run([DVC, "push"], origin)
    scores["pr"] = rows_by_id(origin / "data/scored/peft/test.jsonl")
    return {"origin": origin, "remote": dvc_remote(origin), "scores": scores, "files": files}


def fresh_clone(team: dict, dest: Path, branch: str) -> Path:
    """`git clone`, the local remote configured by the Makefile, `dvc pull`: what a teammate or CI does."""
    run(["git", "clone", "-q", "-b", branch, str(team["origin"]), str(dest)], dest.parent)
    run([*MAKE, "remote", f"REMOTE={team['remote']}"], dest)
    run([DVC, "pull"], dest)
    return dest


def test_pull_into_a_fresh_clone_restores_the_run(team, tmp_path):
    clone = fresh_clone(team, tmp_path / "clone", "main")
    assert "Data and pipelines are up to date." in run([DVC, "repro"], clone)
    for path, content in team["files"]["main"].items():
        assert (clone / path).read_bytes() == content, path
    assert not (clone / ".dvc/cache").samefile(team["origin"] / ".dvc/cache")


def test_review_of_the_r16_branch_against_main(team, tmp_path):
    clone = fresh_clone(team, tmp_path / "ci", "pr-r16")
    run(["git", "fetch", "-q", "origin", "main"], clone)
    output = run([*MAKE, "review", "BASE=origin/main"], clone)
    report = (clone / "reports/review.md").read_text()
    assert "wrote reports/review.md" in output
    assert report.startswith("**Verdict: ") and " on ROUGE-1 pooled (primary metric): this revision minus " in report
    assert "Params changed: `lora.r`: 32 -> 16" in report
    # Headline table: PEFT ROUGE-1 of both revisions, as in their metrics files.
    main_peft = json.loads(run(["git", "show", "origin/main:metrics/peft.json"], clone))
    this_peft = json.loads((clone / "metrics/peft.json").read_text())
    row = next(line for line in report.splitlines() if line.startswith("| ROUGE-1 pooled |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    main_rouge1, this_rouge1 = (peft["pooled_reference"]["rouge1"] for peft in (main_peft, this_peft))
    assert cells[3:] == [f"{main_rouge1:.4g}", f"{this_rouge1:.4g}"]
    # r=16 minus r=32 on ROUGE-1, paired over the 60 test dialogues, from the per-dialogue scores of both runs.
    ids = sorted(team["scores"]["main"])
    assert len(ids) == 60
    old = [team["scores"]["main"][i]["scores"]["rouge1"] for i in ids]
    new = [team["scores"]["pr"][i]["scores"]["rouge1"] for i in ids]
    delta = sum(new) / 60 - sum(old) / 60
    interval = paired_bootstrap(old, new, resamples=1000, seed=42)
    # The paired table's row (the headline table above has a row of the same label: one label everywhere).
    line = next(line for line in report.splitlines() if line.startswith("| ROUGE-1 best-ref |") and "Holm" in line)
    word = "better" if delta > 0 else "worse"
    assert f"{word} by {abs(delta):.4f} [{interval['ci_low']:+.4f}, {interval['ci_high']:+.4f}]" in line
    assert "60 test dialogues (and 40 stress cases)" in report
    assert "Holm" in line  # exploratory: beyond noise by the Holm-adjusted p-value
    for name in ("final time", "red herring", "action items"):
        assert f"| stress: {name} |" in report
    # The five dialogues whose summaries changed most, side by side with both summaries.
    sections = re.findall(r"^### (\S+) \(ROUGE-L between the two summaries ([0-9.]+)\)", report, re.M)
    assert len(sections) == 5
    first = sections[0][0]
    assert team["scores"]["main"][first]["prediction"].split()[0] in report


def test_review_stops_on_a_stale_stage_and_writes_nothing(team, tmp_path):
    clone = fresh_clone(team, tmp_path / "stale", "pr-r16")
    params = yaml.safe_load((clone / "params.yaml").read_text())
    text = (clone / "params.yaml").read_text().replace(f"dropout: {params['lora']['dropout']}", "dropout: 0.1", 1)
    (clone / "params.yaml").write_text(text)
    done = subprocess.run([*MAKE, "review", "BASE=main"], cwd=clone, capture_output=True, text=True)
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert errors and errors[0].startswith("Error: stage train is stale (changed deps: params.yaml[lora])"), done.stderr
    assert "Traceback" not in done.stderr
    assert not (clone / "reports/review.md").exists()


def review_in(clone: Path, base: str) -> str:
    run(["git", "fetch", "-q", "origin", "main"], clone)
    run([*MAKE, "review", f"BASE={base}"], clone)
    return (clone / "reports/review.md").read_text()


def test_review_of_a_code_only_branch_and_of_main_against_itself(team, tmp_path):
    """No param differs (DVC's params diff then has no "diff" key): every paired difference is 0."""
    origin = team["origin"]
    run(["git", "checkout", "-q", "-b", "code-only", "main"], origin)
    (origin / "README.md").write_text((origin / "README.md").read_text() + "\nA code-only change.\n")
    run(["git", "commit", "-qam", "README: a code-only change"], origin)
    run(["git", "checkout", "-q", "pr-r16"], origin)
    clone = fresh_clone(team, tmp_path / "code-only", "code-only")
    report = review_in(clone, "origin/main")
    print("\n".join(report.splitlines()[:6]))
    assert report.splitlines()[0].startswith("**Verdict: no difference beyond noise** on ROUGE-1 pooled")
    assert "+0.0000, 95% CI [+0.0000, +0.0000]" in report.splitlines()[0]
    assert "Params changed: none" in report
    assert "| ROUGE-1 best-ref | unchanged [+0.0000, +0.0000], p 1, Holm 1: within noise |" in report
    main = fresh_clone(team, tmp_path / "main", "main")
    assert "Params changed: none" in review_in(main, "origin/main")


def test_an_experiment_becomes_a_branch_and_a_review_as_docs_workflow_says(demo_repo, tmp_path):
    """docs/workflow.md, "From an experiment to a pull request": run, switch to a new branch, commit, push, review."""
    repo = copy_demo(demo_repo[0], tmp_path / "repo")  # main: the r=32 run, committed
    run([DVC, "push"], repo)
    log = run([DVC, "exp", "run", "-S", "lora.r=16"], repo)
    assert "Stage 'train' is cached - skipping run" in log  # the demo ran r=16 once: the run cache has it
    assert [
        line
        for line in run(["git", "diff", "main", "--", "params.yaml"], repo).splitlines()
        if line[:1] in "+-" and line[:3] not in ("+++", "---")
    ] == [
        "-  r: 32  # adapter rank; `dvc exp run -S lora.r=16` tries a smaller one",
        "+  r: 16  # adapter rank; `dvc exp run -S lora.r=16` tries a smaller one",
    ]
    run(["git", "switch", "-q", "-c", "lora-r16"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "LoRA r=16"], repo)
    run([DVC, "push"], repo)
    run([*MAKE, "review", "BASE=main"], repo)
    report = (repo / "reports/review.md").read_text()
    assert report.startswith("**Verdict: ") and "Params changed: `lora.r`: 32 -> 16" in report


def build_tiny_llama(repo: Path) -> str:
    """A random tiny Llama-architecture model beside the demo's tiny Phi, with the tiny Phi's tokenizer
    (no pad token, bos = eos): a second model family for a cross-family review."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(repo / "models/tiny-phi")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    out = repo / "models/tiny-llama"
    LlamaForCausalLM(config).save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return "models/tiny-llama"


def test_review_across_model_families_compares_base_peft_and_the_gains(demo_repo, tmp_path):
    """main: the demo's tiny Phi run; a branch: a tiny Llama (another architecture) run through the same
    pipeline, briefly trained. Base rows differ, so the review compares base with base, PEFT with PEFT,
    and each model's gain, paired over the same 60 test dialogues."""
    repo = copy_demo(demo_repo[0], tmp_path / "repo")  # main: the r=32 run of the tiny Phi, committed
    scores = {"main": {v: rows_by_id(repo / f"data/scored/{v}/test.jsonl") for v in ("base", "peft")}}
    run(["git", "switch", "-q", "-c", "tiny-llama"], repo)
    model = build_tiny_llama(repo)
    run([DVC, "add", "-q", model], repo)
    overrides = {
        "model": {"name": model},
        "lora": {"target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]},  # Llama's names, not Phi's dense
        "train": {"max_steps": 10, "logging_steps": 5, "eval_steps": 5, "save_steps": 5, "eval_rows": 8},
        # The review's mechanics are under test, not the model: short outputs, and scores the review pairs
        # (the scores main has and this branch lacks are left out, as for a metric switched off).
        "generate": {"max_new_tokens": 8},
        "evaluate": {"metrics": ["rouge", "length"]},
    }
    set_params(repo, overrides)
    run([DVC, "repro"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "tiny Llama"], repo)
    scores["this"] = {v: rows_by_id(repo / f"data/scored/{v}/test.jsonl") for v in ("base", "peft")}
    run([*MAKE, "review", "BASE=main"], repo)
    lines = (repo / "reports/review.md").read_text().splitlines()
    print("\n".join(lines[:24]))
    assert lines[0].startswith("**Verdict: ") and "`model.name`: models/tiny-phi -> models/tiny-llama" in lines[4]
    assert [line for line in lines if line.startswith("**The base models differ**")][0].startswith(
        "**The base models differ**: `main` runs `models/tiny-phi`, this revision `models/tiny-llama`"
    )
    # Pooled ROUGE-1 (the primary metric), per dialogue over the 60 test dialogues both revisions scored.
    ids = sorted(scores["main"]["base"])
    assert len(ids) == 60 and sorted(scores["this"]["peft"]) == ids
    value = {
        (rev, v): [scores[rev][v][i]["scores"]["pooled_rouge1"] for i in ids] for rev in scores for v in scores[rev]
    }
    gain = {rev: [p - b for b, p in zip(value[rev, "base"], value[rev, "peft"], strict=True)] for rev in scores}
    expected = [
        sum(value["this", "base"]) / 60 - sum(value["main", "base"]) / 60,
        sum(value["this", "peft"]) / 60 - sum(value["main", "peft"]) / 60,
        sum(gain["main"]) / 60,
        sum(gain["this"]) / 60,
        sum(gain["this"]) / 60 - sum(gain["main"]) / 60,
    ]
    start = lines.index("## Across models: base vs base, PEFT vs PEFT, and each model's gain")
    row = next(line for line in lines[start:] if line.startswith("| ROUGE-1 pooled (primary) |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")][1:]
    assert [float(cell.split(" [")[0]) for cell in cells] == pytest.approx(expected, abs=6e-5)
    interval = paired_bootstrap(gain["main"], gain["this"], resamples=1000, seed=42)
    assert cells[4].endswith(f"[{interval['ci_low']:+.4f}, {interval['ci_high']:+.4f}]")
    assert "| stress: final time |" in "\n".join(lines[start:])
