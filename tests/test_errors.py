"""One user-error contract: every error a user can fix is a UserError, and every stage and tool shows one as one
`Error:` line with exit code 1 (phisum.cli.UserErrorCommand); model.name and data.source fail on the hub alike."""

import ast
import importlib

import click
import pytest
import yaml
from click.testing import CliRunner

from phisum.cli import UserErrorCommand
from phisum.data import WHERE_DATA_LIVES, DataError, load_splits
from phisum.errors import UserError
from phisum.hub import HubNameError, hub_error
from phisum.modeling import WHERE_MODELS_LIVE, check_model_source
from phisum.params import ModelParams, ParamsError
from tests.helpers import ROOT, one_error_line, stage_args

STAGES = list(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"])


def runs_as_main(path) -> bool:
    """Whether a file has an `if __name__ == "__main__":` block: an entry point a user runs."""
    return any(
        isinstance(node, ast.If) and "__main__" in ast.unparse(node.test) for node in ast.parse(path.read_text()).body
    )


def imports_phisum(path) -> bool:
    return any(
        isinstance(node, ast.ImportFrom) and (node.module or "").startswith("phisum")
        for node in ast.walk(ast.parse(path.read_text()))
    )


# Every stage, every `python -m phisum.<tool>`, and every benchmark script that calls the package, with the
# arguments its main needs to get past click's own parsing.
TOOLS = sorted(path.stem for path in (ROOT / "phisum").glob("*.py") if runs_as_main(path))
BENCHMARKS = sorted(
    path.stem for path in (ROOT / "benchmarks").glob("*.py") if runs_as_main(path) and imports_phisum(path)
)
TOOL_ARGS = {
    "review": ["--base", "HEAD"],
    "ceiling": ["data/dialogsum"],
    "export": ["--adapter-dir", "."],
    "demo": ["workspace"],
}
WORKSPACE_ARGS = {"generation": ["."], "memory": ["."], "training": ["."]}  # their default is the demo workspace
ENTRY_POINTS = [
    *[(f"stages.{name}", stage_args(f"{name}@base" if name == "generate" else name)) for name in STAGES],
    *[(f"phisum.{name}", TOOL_ARGS.get(name, [])) for name in TOOLS],
    *[(f"benchmarks.{name}", WORKSPACE_ARGS.get(name, [])) for name in BENCHMARKS],
]


def test_the_entry_points_are_found():
    assert STAGES == ["prepare", "train", "generate", "evaluate", "qualitative"]
    assert TOOLS == ["ceiling", "demo", "export", "families", "profile", "resources", "review"]
    assert BENCHMARKS == ["cpu_phi2", "generation", "gpu_phi2", "memory", "t4_fit", "training"]


@pytest.mark.parametrize(("module", "args"), ENTRY_POINTS, ids=[module for module, _ in ENTRY_POINTS])
def test_a_user_error_inside_any_entry_point_is_one_error_line_and_exit_1(module, args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    command = importlib.import_module(module).main
    assert isinstance(command, UserErrorCommand)

    def fails(**options):
        raise DataError("data.source: x.csv line 3: no `summary`; fill it in")

    monkeypatch.setattr(command, "callback", fails)
    result = CliRunner().invoke(command, args)
    assert one_error_line(result) == "Error: data.source: x.csv line 3: no `summary`; fill it in"
    assert result.stdout == ""


def test_a_user_error_in_an_option_callback_is_one_error_line(tmp_path):
    """evaluate --summary reads the metrics files while click parses the options."""
    from stages.evaluate import main

    result = CliRunner().invoke(main, ["--summary", str(tmp_path)])
    assert one_error_line(result) == f"Error: {tmp_path / 'base.json'} is missing: run `dvc repro` first"


def test_an_error_that_is_no_user_error_keeps_its_traceback():
    @click.command(cls=UserErrorCommand)
    def main() -> None:
        raise KeyError("a bug")

    result = CliRunner().invoke(main, [])
    assert result.exit_code == 1 and isinstance(result.exception, KeyError)


def test_every_error_a_user_can_fix_is_a_user_error():
    from phisum.files import WriteError
    from phisum.generation import NonFiniteScoresError
    from phisum.modeling import TargetModuleError
    from phisum.notebook import NotebookError
    from phisum.prompt import PromptError
    from phisum.resources import ResourceError
    from phisum.review import ReviewError
    from phisum.significance import PairingError
    from phisum.training import NonFiniteLossError

    classes = [ParamsError, DataError, PromptError, TargetModuleError, ResourceError, WriteError, ReviewError]
    classes += [NotebookError, PairingError, NonFiniteScoresError, NonFiniteLossError, HubNameError]
    assert [cls for cls in classes if not issubclass(cls, UserError)] == []
    assert issubclass(TargetModuleError, ParamsError) and issubclass(HubNameError, ParamsError)


@pytest.fixture()
def offline(monkeypatch):
    """HF_HUB_OFFLINE=1, as the hub client and datasets read it (both read it once, at import)."""
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for config in (huggingface_hub.constants, datasets.config):
        monkeypatch.setattr(config, "HF_HUB_OFFLINE", True)


def as_data(model_message: str) -> str:
    """A model.name message in data.source's words: what the same hub answer must say for the data."""
    return (
        model_message.replace("model.name", "data.source")
        .replace("model.revision", "data.revision")
        .replace(WHERE_MODELS_LIVE, WHERE_DATA_LIVES)
        .replace("no hub model", "no hub dataset")
        .replace("config.json; not a transformers model", "files that datasets can load")
        .replace("https://huggingface.co/org/", "https://huggingface.co/datasets/org/")  # a dataset's hub page
    )


def test_an_uncached_hub_name_offline_is_the_same_error_for_the_model_and_the_data(offline, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(HubNameError) as model_error:
        check_model_source(ModelParams(name="nobody/no-such-model", revision=None, device="cpu"))
    with pytest.raises(HubNameError) as data_error:
        load_splits("nobody/no-such-model", None)
    assert str(model_error.value) == (
        f"model.name: 'nobody/no-such-model' is no directory under {tmp_path}, and the hub is unreachable "
        "(HF_HUB_OFFLINE is set) with no cached copy at revision None; connect once to download it, or set a hub id "
        "(e.g. microsoft/phi-2) or a local model directory; a queued experiment (dvc exp run --queue) sees only git- "
        "or DVC-tracked files"
    )
    assert str(data_error.value) == as_data(str(model_error.value))


def real_hub_errors() -> list[tuple[str, BaseException]]:
    """The hub client's own exception classes: raised by it where it can without a hub (offline, a bad id), else
    made as it makes them from a 404 response."""
    import httpx2
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    raised = []
    for name in ("not a repo id!", "nobody/nothing"):
        try:
            hf_hub_download(name, "config.json")
        except (HFValidationError, LocalEntryNotFoundError) as error:
            raised.append(error)
    response = httpx2.Response(404, request=httpx2.Request("GET", "https://huggingface.co/api"))
    made = [cls("404", response=response) for cls in (GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError)]
    made.append(EntryNotFoundError("404"))
    return [(type(error).__name__, error) for error in [*raised, *made]]


def test_every_hub_answer_reads_the_same_for_the_model_and_the_data(offline):
    errors = real_hub_errors()
    assert [name for name, _ in errors] == [
        "HFValidationError",
        "LocalEntryNotFoundError",
        "GatedRepoError",
        "RepositoryNotFoundError",
        "RevisionNotFoundError",
        "EntryNotFoundError",
    ]
    model_entry, data_entry = "config.json; not a transformers model", "files that datasets can load"
    messages = []
    for _, error in errors:
        model = hub_error(error, "model.name", "org/x", "v9", WHERE_MODELS_LIVE, model_entry)
        data = hub_error(error, "data.source", "org/x", "v9", WHERE_DATA_LIVES, data_entry)
        assert type(model) is type(data) is HubNameError
        assert str(data) == as_data(str(model))
        messages.append(str(model))
    assert len(set(messages)) == len(messages)  # each answer its own message
    assert messages[4] == (
        "model.revision: 'v9' is no commit, branch or tag of org/x; use a full commit hash from the hub, or null for "
        "the latest"
    )


def test_datasets_wrapping_of_a_hub_answer_is_read_through(offline):
    """datasets raises the hub's RevisionNotFoundError as the cause of a DatasetNotFoundError."""
    from datasets.exceptions import DatasetNotFoundError

    [(_, revision_error)] = [(n, e) for n, e in real_hub_errors() if n == "RevisionNotFoundError"]
    try:
        raise DatasetNotFoundError("Revision 'v9' doesn't exist for dataset 'org/x' on the Hub.") from revision_error
    except DatasetNotFoundError as error:
        wrapped = error
    answer = hub_error(wrapped, "data.source", "org/x", "v9", WHERE_DATA_LIVES, "files that datasets can load")
    assert str(answer).startswith("data.revision: 'v9' is no commit, branch or tag of org/x")
    assert hub_error(KeyError("a bug"), "data.source", "org/x", None, WHERE_DATA_LIVES, "") is None
