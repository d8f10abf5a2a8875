"""A gated model (Llama-3, Mistral) needs a hub token, read from HF_TOKEN and never written anywhere: without one,
with one the model has not granted, or with one the hub refuses, prepare stops in one line naming what to do. The
hub's answers come through huggingface_hub's own download and error code, from a stand-in HTTP transport (there is
no hub here), as the hub sends them: 401 or 403 with X-Error-Code GatedRepo, 401 "Invalid credentials"."""

import pytest

from tests.helpers import FAKE_TOKEN, invoke_stage, one_error_line, set_params

LLAMA = "meta-llama/Meta-Llama-3-8B"
REFUSED = "hf_" + "0" * 34  # a token the stand-in hub does not know


@pytest.fixture()
def gated_hub(monkeypatch, tmp_path):
    """The hub, for LLAMA's files: gated; FAKE_TOKEN is a token the hub knows, of an account not granted access."""
    import httpx2
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.utils._http import default_client_factory

    seen = []

    def answer(request):
        auth = request.headers.get("authorization")
        seen.append(auth)
        if auth is None:
            message = f"Access to model {LLAMA} is restricted. You must have access to it and be authenticated."
            return httpx2.Response(401, headers={"X-Error-Code": "GatedRepo", "X-Error-Message": message})
        if auth != f"Bearer {FAKE_TOKEN}":
            return httpx2.Response(401, headers={"X-Error-Message": "Invalid credentials in Authorization header"})
        message = f"Access to model {LLAMA} is restricted and you are not in the authorized list."
        return httpx2.Response(403, headers={"X-Error-Code": "GatedRepo", "X-Error-Message": message})

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-login" / "token"))  # no `hf auth login`
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-login" / "stored_tokens"))
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    huggingface_hub.set_client_factory(lambda: httpx2.Client(transport=httpx2.MockTransport(answer)))
    yield seen
    huggingface_hub.set_client_factory(default_client_factory)


ACCEPT = (
    f"accept its terms on https://huggingface.co/{LLAMA} with your account, then set HF_TOKEN to a read token of "
    "that account (https://huggingface.co/settings/tokens)"
)
CASES = [
    (None, f"Error: model.name: {LLAMA} is gated on the hub and no hub token is set: {ACCEPT}"),
    (
        FAKE_TOKEN,
        f"Error: model.name: {LLAMA} is gated on the hub and the hub token set here has no access to it (yet): "
        f"{ACCEPT}; a request may await approval",
    ),
    (
        REFUSED,
        "Error: the hub refuses the hub token set here (HF_TOKEN): invalid or revoked; create a read token at "
        "https://huggingface.co/settings/tokens and set HF_TOKEN to it",
    ),
]


@pytest.mark.parametrize(("token", "expected"), CASES, ids=["no token", "not granted", "refused"])
def test_a_gated_model_stops_prepare_in_one_line_naming_the_token_and_the_terms(
    tiny_stage_dir, gated_hub, monkeypatch, token, expected
):
    if token:
        monkeypatch.setenv("HF_TOKEN", token)
    set_params(tiny_stage_dir, {"model": {"name": LLAMA, "revision": None}})
    result = invoke_stage("prepare")
    assert one_error_line(result) == expected
    assert f"Bearer {token}" in gated_hub if token else None in gated_hub  # the hub was asked, with HF_TOKEN
    assert sorted(p.name for p in tiny_stage_dir.iterdir()) == ["dialogsum", "params.yaml", "weights"]
    assert FAKE_TOKEN not in result.output and REFUSED not in result.output
    assert FAKE_TOKEN not in (tiny_stage_dir / "params.yaml").read_text()
