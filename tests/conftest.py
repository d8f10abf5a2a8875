import os
import random
from pathlib import Path

import pytest

from phisum.synthetic import make_example
from phisum.tiny_model import build_tiny_model

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data" / "dialogsum"
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny Phi model + tokenizer, built the way `make demo` builds it."""
    rng = random.Random(0)
    texts = []
    for _ in range(200):
        dialogue, summaries, _ = make_example(rng)
        texts += [dialogue, *summaries]
    out_dir = tmp_path_factory.mktemp("tiny-phi")
    build_tiny_model(texts, out_dir, seed=0)
    return out_dir
