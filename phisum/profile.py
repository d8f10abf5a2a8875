"""Switch params.yaml to the embedded CPU profile: build the tiny model and (unless given) the data.

    python -m phisum.profile [--data DIR]

`make demo` runs it in its own workspace (phisum.demo), never in the checkout. Only the keys in
profiles/cpu.yaml change; comments stay.
The model and data directories it builds (and a --data directory inside the repository, unless git
tracks it) are `dvc add`ed and their .dvc files staged in git: queued experiments (`dvc exp run --queue`)
run in a copy of the git repository and only find what git or DVC tracks.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import click
from ruamel.yaml import YAML

from phisum.cli import UserErrorCommand
from phisum.data import SPLITS, DataError, check_splits, load_splits, usable_rows
from phisum.files import write_text
from phisum.params import PARAMS_PATH, load_params, parse_params, read_yaml
from phisum.synthetic import write_dataset

PROFILE_PATH = Path("profiles/cpu.yaml")
SYNTHETIC_DIR = Path("data/synthetic")
TINY_MODEL_DIR = Path("models/tiny-phi")
SYNTHETIC_SIZES = {"train": 2000, "validation": 40, "test": 60}


def apply_overrides(params_text: str, overrides: dict) -> tuple[str, list[str]]:
    """Set nested keys in params YAML text, keeping comments; return new text and 'key: old -> new' lines."""
    yaml_rt = YAML()
    yaml_rt.preserve_quotes = True
    yaml_rt.width = 4096
    document = yaml_rt.load(params_text)
    changes = []

    def visit(node, values: dict, prefix: str) -> None:
        for key, value in values.items():
            if key not in node:
                raise KeyError(f"{prefix}{key}: not a params.yaml key")
            if isinstance(value, dict):
                visit(node[key], value, f"{prefix}{key}.")
            elif node[key] != value:
                changes.append(f"{prefix}{key}: {node[key]} -> {value}")
                node[key] = value

    visit(document, overrides, "")
    from io import StringIO

    buffer = StringIO()
    yaml_rt.dump(document, buffer)
    return buffer.getvalue(), changes


def in_git(directory: Path, files: list[Path]) -> bool:
    """Whether git tracks the data directory (its split files, as load_splits found them): then a queued
    experiment's copy of the repository has it already and DVC must not track it too (it refuses to)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--", str(directory)], capture_output=True, text=True)
    tracked = {Path(name) for name in listed.stdout.split("\0") if name} if listed.returncode == 0 else set()
    if not tracked:
        return False
    untracked = [str(path) for path in files if path not in tracked]
    if untracked:
        raise DataError(
            f"{directory}: {', '.join(untracked)} not in git while other files of it are; `git add {directory}` "
            f"to keep the data in git, or `git rm -r --cached {directory}` to let DVC track it"
        )
    return True


def track_with_dvc(paths: list[Path]) -> None:
    """`dvc add` the directories and stage their .dvc files and .gitignore entries in git."""
    from dvc.repo import Repo
    from scmrepo.noscm import NoSCM

    with Repo() as repo:
        repo.add([str(path) for path in paths])
        staged = [f"{path}.dvc" for path in paths] + [str(path.parent / ".gitignore") for path in paths]
        if not isinstance(repo.scm, NoSCM):  # outside git there is nothing to stage
            repo.scm.add(sorted(set(staged)))


def inside_repo(path: Path) -> Path | None:
    """`path` relative to the working directory (the repository root) if it lies inside it, else None."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return None


def first_dialogue_ids(rows: list[dict], count: int) -> list[str]:
    """Row ids of the first `count` distinct dialogues of rows."""
    ids: dict[str, str] = {}
    for row in rows:
        ids.setdefault(row.get("dialogue", ""), row["id"])
    return list(ids.values())[:count]


@click.command(cls=UserErrorCommand)
@click.option("--data", "data_dir", default="", help="Local dataset directory; empty = generate the synthetic set.")
@click.option(
    "--pretrain-steps",
    type=click.IntRange(min=0),
    default=None,
    show_default="phisum.tiny_model.PRETRAIN's steps",
    help="Language-model steps on the training dialogues before saving the tiny model (0: random weights; "
    "the demo's stress test needs them, a pipeline check does not).",
)
def main(data_dir: str, pretrain_steps: int | None) -> None:
    switch_to_cpu_profile(data_dir, pretrain_steps)


def switch_to_cpu_profile(data_dir: str, pretrain_steps: int | None = None) -> None:
    """pretrain_steps: None for the tiny model's PRETRAIN steps."""
    params = load_params(PARAMS_PATH)  # a broken params.yaml stops here, in one line, before any work
    if data_dir:
        # Inside the repository: a relative path DVC can track. Outside: absolute, seen by runs on this
        # machine only (a queued experiment too, but not a clone elsewhere).
        source = inside_repo(Path(data_dir)) or Path(data_dir).resolve()
    else:
        write_dataset(SYNTHETIC_DIR, params.seed, SYNTHETIC_SIZES)
        source = SYNTHETIC_DIR
        click.echo(f"wrote synthetic dataset to {SYNTHETIC_DIR}/ ({SYNTHETIC_SIZES})")
    # Bad data stops here, as prepare would stop, before minutes of building the tiny model.
    splits = load_splits(str(source), None)
    check_splits(splits, params.data.on_bad_rows)
    git_data = not source.is_absolute() and in_git(source, [Path(where) for _, where in splits.values()])
    # Imported only now (torch, transformers: seconds): bad params or data stop before it.
    from phisum.tiny_model import PRETRAIN, build_tiny_model

    # The tokenizer learns from the training text it will see, plus the fixed prompt words.
    rows, _ = splits["train"]
    texts = [params.prompt.template] + [f"{r.get('dialogue', '')}\n{r.get('summary', '')}" for r in rows]
    dialogues = [r.get("dialogue", "") for r in rows]
    build_tiny_model(
        texts,
        TINY_MODEL_DIR,
        params.seed,
        pretrain_texts=dialogues,
        pretrain_steps=PRETRAIN["steps"] if pretrain_steps is None else pretrain_steps,
    )
    click.echo(f"built tiny Phi model in {TINY_MODEL_DIR}/ (tokenizer trained on {len(rows)} {SPLITS[0]} rows)")
    tracked = [TINY_MODEL_DIR] + ([source] if not source.is_absolute() and not git_data else [])
    track_with_dvc(tracked)
    click.echo(f"dvc add {' '.join(map(str, tracked))} (the .dvc files are staged: commit them with params.yaml)")
    if git_data:
        click.echo(f"{source} is tracked by git: queued experiments and clones get it from git, not DVC")
    if source.is_absolute():
        click.echo(f"note: {source} is outside the repository: DVC does not track it and a clone cannot pull it")

    overrides = read_yaml(PROFILE_PATH.read_text(encoding="utf-8"))
    overrides["model"]["name"] = str(TINY_MODEL_DIR)
    overrides["data"]["source"] = str(source)
    if data_dir:  # show that data's own dialogues in the report
        test_rows, _ = usable_rows(*splits["test"], params.data.on_bad_rows)  # no blank or dropped row
        overrides["qualitative"] = {"ids": first_dialogue_ids(test_rows, count=3)}
    changes = rewrite_params(overrides)
    click.echo("params.yaml switched to the CPU profile:")
    for line in changes:
        click.echo(f"  {line}")


def rewrite_params(overrides: dict) -> list[str]:
    """Set keys in params.yaml (comments kept) all at once: a full disk or a crash leaves it as it was."""
    text, changes = apply_overrides(PARAMS_PATH.read_text(encoding="utf-8"), overrides)
    parse_params(read_yaml(text))  # never write a params file the stages would reject
    write_text(PARAMS_PATH, text)
    return changes


if __name__ == "__main__":
    main()
