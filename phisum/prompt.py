"""The one prompt template, shared by training and generation."""

from __future__ import annotations


def build_prompt(template: str, dialogue: str) -> str:
    """Fill the template; braces inside the dialogue are kept as they are."""
    return template.replace("{dialogue}", dialogue)
