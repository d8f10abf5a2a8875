"""Atomic writers: a crash, a full disk or a read-only directory leaves the previous file or none, never half."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import click

from phisum.errors import UserError

# mkstemp makes files only their owner can read; an output gets the mode open() would give it.
_UMASK = os.umask(0)
os.umask(_UMASK)


# The types of the stages' path options (dvc.yaml's cmd gives every path): `writable` marks what a stage writes,
# which tests/test_dvc_consistency.py checks against the stage's outs, and the rest against its deps.
INPUT_FILE = click.Path(dir_okay=False, path_type=Path)
INPUT_DIR = click.Path(file_okay=False, path_type=Path)
OUTPUT_FILE = click.Path(dir_okay=False, writable=True, path_type=Path)
OUTPUT_DIR = click.Path(file_okay=False, writable=True, path_type=Path)


class WriteError(UserError):
    """An output could not be written (full disk, read-only directory); the previous outputs are kept."""

    def __init__(self, path: Path, error: OSError, directory: Path | None = None) -> None:
        """path: the output; directory: where it is written (default its parent), which must be writable."""
        self.path, self.error, self.directory = path, error, directory or path.parent
        super().__init__(
            f"cannot write {path}: {error.strerror or error}; free disk space or make {self.directory} writable, "
            f"then rerun {_previous_outputs()}"
        )


def _previous_outputs() -> str:
    """Where the previous outputs are after a failed write: in place, unless DVC removed them first.

    `dvc repro` deletes a stage's outputs before running it (DVC sets DVC_STAGE for the stage's command), so
    they are gone whatever the stage does: the cached ones are still in DVC's cache under dvc.lock's hashes
    (the failed run changed neither), the `cache: false` ones only in git if they were committed.
    """
    stage = os.environ.get("DVC_STAGE")
    if not stage:
        return "(the previous outputs are unchanged)"
    return (
        f"(dvc repro removed {stage}'s previous outputs before it ran: `dvc checkout {stage}` restores the cached "
        "ones, `git checkout -- <file>` the cache: false ones you committed)"
    )


def _write_temp(path: Path, text: str) -> Path:
    """Write text next to path under a temporary name; the only place outputs touch the disk."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise WriteError(path, error) from None
    try:
        mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o666 & ~_UMASK
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise WriteError(path, error) from None
        raise
    return Path(tmp)


def write_outputs(texts: dict[Path, str], dirs: dict[Path, Path] | None = None) -> None:
    """Write several outputs all or nothing: every text goes to a temporary file first, and only when all
    are written are they (and the finished directories in dirs, {final_dir: tmp_dir}) renamed into place.
    A rename needs no space, so a full disk stops the stage with every previous output unchanged.
    """
    written: dict[Path, Path] = {}
    try:
        for path, text in texts.items():
            written[path] = _write_temp(path, text)
    except BaseException:
        for tmp in written.values():
            tmp.unlink(missing_ok=True)
        raise
    for final_dir, tmp_dir in (dirs or {}).items():
        replace_dir(tmp_dir, final_dir)
    for path, tmp in written.items():
        os.replace(tmp, path)


def write_text(path: Path, text: str) -> None:
    """Write text to path through a temp file in the same directory and os.replace."""
    write_outputs({path: text})


def json_text(data: dict) -> str:
    """Sorted keys and a trailing newline keep `git diff` and `dvc metrics diff` readable."""
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def jsonl_text(rows: Iterable[dict]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def write_json(path: Path, data: dict) -> None:
    write_text(path, json_text(data))


def write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    write_text(path, jsonl_text(rows))


def read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def replace_dir(tmp_dir: Path, final_dir: Path) -> None:
    """Swap a fully written tmp_dir into place of final_dir (renames only: the old one is moved aside first)."""
    old_dir = final_dir.with_name(f".{final_dir.name}.old")
    shutil.rmtree(old_dir, ignore_errors=True)
    if final_dir.exists():
        os.replace(final_dir, old_dir)
    os.replace(tmp_dir, final_dir)
    shutil.rmtree(old_dir, ignore_errors=True)


@dataclass
class Outputs:
    """What a stage fills inside atomic_outputs: the temp dir of each directory output, and files to write."""

    dirs: dict[Path, Path]  # final directory -> its temp directory
    texts: dict[Path, str] = field(default_factory=dict)


@contextlib.contextmanager
def atomic_outputs(*final_dirs: Path) -> Iterator[Outputs]:
    """Directory outputs, and files that must match them, written all or nothing.

    Yields a fresh, empty temp dir next to each final dir (one a crashed run left is cleared first). Only
    when the block succeeds are outputs.texts written and every temp dir swapped into place, together
    (write_outputs); when it fails, the temp dirs go and every previous output is unchanged.
    """
    outputs = Outputs({final_dir: final_dir.with_name(f".{final_dir.name}.tmp") for final_dir in final_dirs})
    try:
        for tmp_dir in outputs.dirs.values():
            shutil.rmtree(tmp_dir, ignore_errors=True)
            try:
                tmp_dir.mkdir(parents=True)
            except OSError as error:
                raise WriteError(tmp_dir, error) from None
        yield outputs
        write_outputs(outputs.texts, outputs.dirs)
    except BaseException as error:
        for tmp_dir in outputs.dirs.values():
            shutil.rmtree(tmp_dir, ignore_errors=True)
        if isinstance(error, WriteError):  # a file inside a temp dir is named by the output path the user knows
            for final_dir, tmp_dir in outputs.dirs.items():
                if error.path.is_relative_to(tmp_dir):
                    output = final_dir / error.path.relative_to(tmp_dir)
                    raise WriteError(output, error.error, directory=final_dir.parent) from None
        raise


@contextlib.contextmanager
def atomic_dir(final_dir: Path) -> Iterator[Path]:
    """`with atomic_dir(final_dir) as tmp_dir:` fill tmp_dir; it replaces final_dir only if the block succeeds."""
    with atomic_outputs(final_dir) as outputs:
        yield outputs.dirs[final_dir]
