"""The token never appears in a message, log line, exception or repr."""

from __future__ import annotations

import logging

import pytest

from phaita.testing import parse_faults
from phaita.utils.model_loader import ModelDownloadError, robust_model_download

TOKEN = "hf_SecretTokenValue1234567890abcdef"


@pytest.mark.parametrize("via", ["parameter", "HF_TOKEN"])
@pytest.mark.parametrize("scenario", ["gated", "retries", "not_found"])
def test_token_is_absent_from_everything_captured(loader_env, local_hub, make_repo, hub_root, caplog,
                                                   monkeypatch, capsys, via, scenario):
    caplog.set_level(logging.DEBUG)
    make_repo(hub_root, "acme/gated-secret", {"config.json": "{}", "model.safetensors": b"x"}, config={"gated": True})
    kwargs = {"token": TOKEN} if via == "parameter" else {}
    if via == "HF_TOKEN":
        monkeypatch.setenv("HF_TOKEN", TOKEN)
    repo = {"gated": "acme/gated-secret", "retries": "phaita-test/tiny-bert", "not_found": "acme/nothing"}[scenario]
    if scenario == "retries":
        local_hub.set_faults(parse_faults("503:path=*config.json"))
    with pytest.raises(ModelDownloadError) as info:
        robust_model_download(repo, max_retries=2, **kwargs)
    sent = [r.authorization for r in local_hub.stats if repo in r.path]
    assert any(a and TOKEN in a for a in sent), "the token was really used"
    err = info.value
    captured = capsys.readouterr()
    haystack = "\n".join([str(err), repr(err), repr(err.last_error), str(vars(err)), caplog.text,
                          captured.out, captured.err])
    assert TOKEN not in haystack
    assert TOKEN[5:] not in haystack
