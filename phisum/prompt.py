"""The prompt contract: the one template filled for training and generation, saved with the adapter and
checked before generating with it (a model answers best to the exact prompt it was trained on)."""

from __future__ import annotations

import json
from pathlib import Path

from phisum.errors import UserError
from phisum.files import write_json
from phisum.params import PromptParams

PROMPT_FILE = "prompt.json"


class PromptError(UserError, ValueError):
    """An adapter's saved prompt does not match params.yaml, or is missing; the message names both and the fix."""


def build_prompt(template: str, dialogue: str) -> str:
    """Fill the template; braces inside the dialogue are kept as they are."""
    return template.replace("{dialogue}", dialogue)


def save_adapter_prompt(adapter_dir: Path, prompt: PromptParams) -> None:
    """Record the prompt the adapter is trained on, next to its weights."""
    write_json(adapter_dir / PROMPT_FILE, {"template": prompt.template, "max_length": prompt.max_length})


def check_adapter_prompt(adapter_dir: Path, template: str) -> None:
    """Refuse to generate with an adapter under a prompt it was not trained on."""
    path = adapter_dir / PROMPT_FILE
    try:
        trained = json.loads(path.read_text(encoding="utf-8"))["template"]
    except (OSError, ValueError, KeyError, TypeError):
        raise PromptError(
            f"{path} is missing or unreadable: {adapter_dir} was not written by the train stage; run `dvc repro` "
            "to retrain"
        ) from None
    if trained != template:
        raise PromptError(
            f"{adapter_dir} was trained with prompt.template {trained!r}, params.yaml has {template!r}; "
            "run `dvc repro` to retrain"
        )
