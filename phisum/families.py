"""One command per model family (#22): the params a family needs besides params.yaml's Phi-2 recipe, as the
`dvc exp run -S` overrides that apply them, so nobody types a hub id or the projection names from memory.

    python -m phisum.families                       # the table
    python -m phisum.families llama-3-8b            # runs: dvc exp run -n llama-3-8b -S model.name=... -S ...
    python -m phisum.families llama-3-8b --print    # only prints that command
    python -m phisum.families llama-3-8b -- --queue # anything after -- goes to dvc exp run

Everything else stays as params.yaml has it (4-bit NF4, r=32, the prompt, the optimizer), so a comparison changes
the model and nothing else. The LoRA targets are each architecture's attention projections and attention output,
the same four layers as the seed's Phi-2 recipe (Phi calls the output `dense`, the others `o_proj`).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from dataclasses import dataclass

import click

from phisum.cli import UserErrorCommand

ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]


@dataclass(frozen=True)
class Family:
    model: str  # hub id
    # Hub commit to pin. None: the latest, until you fill in the commit you checked (the hub shows it on the model
    # page's "Files and versions"); no commit is written here that nobody here could check.
    revision: str | None
    target_modules: list[str]
    gated: bool  # the hub asks you to accept the model's terms before it serves the weights (then set HF_TOKEN)
    tiny: tuple[str, ...]  # the TINY_FAMILIES stand-ins that test it (phisum/tiny_model.py)


FAMILIES = {
    "phi-2": Family(
        "microsoft/phi-2",
        "ef382358ec9e382308935a992d908de099b64c23",
        ["q_proj", "k_proj", "v_proj", "dense"],
        False,
        ("phi-2",),
    ),
    "llama-3-8b": Family("meta-llama/Meta-Llama-3-8B", None, ATTENTION, True, ("llama-3", "llama-3-instruct")),
    "mistral-7b-v0.3": Family("mistralai/Mistral-7B-v0.3", None, ATTENTION, True, ("mistral",)),
    "qwen2.5-7b": Family("Qwen/Qwen2.5-7B", None, ATTENTION, False, ("qwen2.5", "qwen2.5-instruct")),
}


def overrides(name: str) -> list[str]:
    """The family's `-S` values, in DVC's override syntax (null and lists as DVC parses them)."""
    family = FAMILIES[name]
    revision = family.revision if family.revision is not None else "null"
    return [
        f"model.name={family.model}",
        f"model.revision={revision}",
        f"lora.target_modules=[{','.join(family.target_modules)}]",
    ]


def exp_run_command(name: str, extra: tuple[str, ...] = ()) -> list[str]:
    """`dvc exp run` of params.yaml with the family's overrides, named after the family."""
    return ["dvc", "exp", "run", "-n", name, *(arg for value in overrides(name) for arg in ("-S", value)), *extra]


@click.command(cls=UserErrorCommand, context_settings={"ignore_unknown_options": True})
@click.argument("name", required=False, type=click.Choice(list(FAMILIES)))
@click.option("--print", "print_only", is_flag=True, help="Print the dvc exp run command instead of running it.")
@click.argument("extra", nargs=-1, type=click.UNPROCESSED)
def main(name: str | None, print_only: bool, extra: tuple[str, ...]) -> None:
    """Run (or print) the experiment of one model family; without NAME, list the families."""
    if name is None:
        for key, family in FAMILIES.items():
            gated = ", gated: accept its terms on the hub and set HF_TOKEN" if family.gated else ""
            click.echo(f"{key:16} {family.model} (lora.target_modules {','.join(family.target_modules)}{gated})")
        return
    command = exp_run_command(name, extra)
    click.echo(shlex.join(command))
    if not print_only:
        sys.exit(subprocess.call(command))


if __name__ == "__main__":
    main()
