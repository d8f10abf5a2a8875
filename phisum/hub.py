"""One ladder from the hub's errors to one line naming the param: model.name and data.source resolve alike."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from phisum.params import ParamsError


class HubNameError(ParamsError):
    """A model.name or data.source (or its revision) that resolves to nothing: no directory, and nothing on the hub
    or in its cache. The same class for the model and the data."""


def nowhere(key: str, name: str) -> str:
    """The start of the message for a name that is no local directory: key and name, and where it was looked for."""
    return f"{key}: {name!r} is no directory under {Path.cwd()}"


TOKENS_PAGE = "https://huggingface.co/settings/tokens"


def gated_message(key: str, name: str) -> str:
    """What to do about a gated repository (Llama-3, Mistral): accept its terms, then a token of that account. The
    token is read from the environment (HF_TOKEN) or `hf auth login`'s file by huggingface_hub, never written."""
    from huggingface_hub import get_token

    page = f"https://huggingface.co/{'' if key.startswith('model.') else 'datasets/'}{name}"
    accept = (
        f"accept its terms on {page} with your account, then set HF_TOKEN to a read token of that account "
        f"({TOKENS_PAGE})"
    )
    if get_token() is None:
        return f"{key}: {name} is gated on the hub and no hub token is set: {accept}"
    return (
        f"{key}: {name} is gated on the hub and the hub token set here has no access to it (yet): {accept}; "
        "a request may await approval"
    )


REFUSED_TOKEN = (
    "the hub refuses the hub token set here (HF_TOKEN): invalid or revoked; create a read token at "
    f"{TOKENS_PAGE} and set HF_TOKEN to it"
)


def causes(error: BaseException) -> list[BaseException]:
    """error and what it was raised from or during, outermost first (datasets wraps the hub's errors)."""
    chain: list[BaseException] = []
    while error is not None and error not in chain:
        chain.append(error)
        # what it was raised from, or during unless raised `from None`
        error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    return chain


def hub_error(
    error: BaseException, key: str, name: str, revision: str | None, where: str, entry: str
) -> HubNameError | None:
    """The one-line HubNameError for a hub look-up of `name` (param `key`) that failed with `error`; None when `error`
    is no answer of the hub (the caller re-raises it).

    key: model.name or data.source (its revision is the sibling key `revision`); where: how to name one that exists;
    entry: what the name lacks when the hub has the repository but not the file looked up.
    """
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    kind = "model" if key.startswith("model.") else "dataset"
    missing = nowhere(key, name)
    offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") else ""
    not_found = f"{missing} and no hub {kind} (or a private one: set HF_TOKEN); check the spelling, or {where}"
    unreachable = (
        f"{missing}, and the hub is unreachable{offline} with no cached copy at revision {revision}; connect once "
        f"to download it, or {where}"
    )
    # Subclasses before their parents: GatedRepoError is a RepositoryNotFoundError, LocalEntryNotFoundError an
    # EntryNotFoundError.
    ladder = [
        (HFValidationError, f"{missing} and not a hub id; {where}"),
        (GatedRepoError, gated_message(key, name)),
        (RepositoryNotFoundError, not_found),
        (
            RevisionNotFoundError,
            f"{key.split('.')[0]}.revision: {revision!r} is no commit, branch or tag of {name}; use a full commit "
            "hash from the hub, or null for the latest",
        ),
        ((LocalEntryNotFoundError, OfflineModeIsEnabled), unreachable),
        (EntryNotFoundError, f"{key}: {name} (revision {revision}) has no {entry}"),
    ]
    for link in causes(error):  # the outermost hub error: datasets raises the hub's as the cause of its own
        for cls, message in ladder:
            if isinstance(link, cls):
                return HubNameError(message)
    for link in causes(error):  # 401 without a GatedRepo/RepoNotFound code: the hub refuses the token itself
        if isinstance(link, HfHubHTTPError) and link.response is not None and link.response.status_code == 401:
            return HubNameError(REFUSED_TOKEN)
    if isinstance(error, ConnectionError):  # datasets' "Couldn't reach ... on the Hub" offline
        return HubNameError(unreachable)
    if kind == "dataset":
        from datasets.exceptions import DatasetNotFoundError

        if isinstance(error, DatasetNotFoundError):  # datasets' own "doesn't exist on the Hub"
            return HubNameError(not_found)
    return None


@contextlib.contextmanager
def hub_lookup(key: str, name: str, revision: str | None, where: str, entry: str) -> Iterator[None]:
    """Around a hub look-up of `name`: the hub's answer becomes hub_error's one line; any other error passes."""
    try:
        yield
    except Exception as error:
        if (answer := hub_error(error, key, name, revision, where, entry)) is None:
            raise
        raise answer from None
