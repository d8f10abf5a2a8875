"""The one place a UserError becomes what the user sees: one `Error: <message>` line on stderr, exit code 1."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import click

from phisum.errors import UserError


@contextlib.contextmanager
def shown_as_one_line() -> Iterator[None]:
    """A UserError raised inside becomes click's own one-line `Error:` (exit code 1), its traceback dropped."""
    try:
        yield
    except UserError as error:
        raise click.ClickException(str(error)) from None


class UserErrorCommand(click.Command):
    """A click command whose UserErrors, in its option callbacks or its body, are one `Error:` line and exit 1.

    Every stage's and tool's main is one, `@click.command(cls=UserErrorCommand)`: tests/test_errors.py checks it.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        with shown_as_one_line():
            return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context):
        with shown_as_one_line():
            return super().invoke(ctx)
