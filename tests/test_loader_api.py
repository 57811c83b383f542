"""The public loader API, end to end through the local hub with the real hub client and transformers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from loader_fixtures import warnings_of
from phaita.loader.request.load import load_kwargs
from phaita.utils.model_loader import (
    ModelDownloadError,
    ModelNotFoundError,
    UnsafeModelError,
    _check_cached_model,
    is_model_cached,
    load_model_and_tokenizer,
    robust_model_download,
)


def _resolved(hub) -> list[str]:
    return [r.path.rsplit("/", 1)[-1] for r in hub.requests("/resolve/") if r.method == "GET"]


def test_model_and_tokenizer_come_from_one_fetch_of_one_commit(loader_env, local_hub):
    model, tokenizer = load_model_and_tokenizer("phaita-test/tiny-bert")
    assert type(model).__name__ == "BertModel"
    ids = tokenizer("my chest feels tight", return_tensors="pt")
    out = model(**ids)
    assert out.last_hidden_state.shape[0] == 1 and out.last_hidden_state.shape[1] == ids["input_ids"].shape[1]
    revision_calls = [r for r in local_hub.stats if "/api/models/" in r.path]
    assert len(revision_calls) == 1
    commit = local_hub.commit_sha("phaita-test/tiny-bert")
    assert all(f"/resolve/{commit}/" in r.path for r in local_hub.requests("/resolve/"))
    fetched = _resolved(local_hub)
    assert len(fetched) == len(set(fetched)), "each file is transferred once"
    assert "model.safetensors" in fetched and "tokenizer.json" in fetched


@pytest.mark.parametrize(
    "repo, model_type, expected",
    [
        ("phaita-test/tiny-bert", "auto", "BertModel"),
        ("phaita-test/tiny-gpt2", "causal_lm", "GPT2LMHeadModel"),
        ("phaita-test/tiny-bert", "sequence_classification", "BertForSequenceClassification"),
        ("microsoft/deberta-v3-base", "auto", "DebertaV2Model"),
    ],
)
def test_model_types_load_the_right_class(loader_env, local_hub, repo, model_type, expected):
    model = robust_model_download(repo, model_type=model_type)
    assert type(model).__name__ == expected


def test_tokenizer_type_fetches_no_weights(loader_env, local_hub):
    tokenizer = robust_model_download("phaita-test/tiny-gpt2", model_type="tokenizer")
    assert tokenizer("can't catch my breath")["input_ids"]
    assert not [p for p in _resolved(local_hub) if p.endswith(".safetensors")]


@pytest.mark.parametrize(
    "kwargs, names",
    [
        (dict(model_name="x/y", model_type="bogus"), "model_type"),
        (dict(model_name="x/y", max_retries=0), "max_retries"),
        (dict(model_name="x/y", max_retries=2.5), "max_retries"),
        (dict(model_name="x/y", timeout=0), "timeout"),
        (dict(model_name="x/y", timeout=float("nan")), "timeout"),
        (dict(model_name="x/y", timeout=-3), "timeout"),
        (dict(model_name=""), "model_name"),
        (dict(model_name=[]), "model_name"),
        (dict(model_name=["x/y", "  "]), "model_name"),
        (dict(model_name="not a valid//id"), "model_name"),
        (dict(model_name="x/y", backoff_base=-1), "backoff_base"),
        (dict(model_name="x/y", revision=""), "revision"),
    ],
)
def test_invalid_arguments_raise_value_error_before_any_request(loader_env, local_hub, kwargs, names):
    with pytest.raises(ValueError, match=names):
        robust_model_download(**kwargs)
    assert local_hub.stats == []


def test_local_directory_loads_with_no_network(loader_env, local_hub, hub_root, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    model = robust_model_download(str(hub_root / "phaita-test" / "tiny-bert"))
    assert type(model).__name__ == "BertModel"
    assert local_hub.stats == []


def test_candidate_list_falls_through_to_the_first_that_works(loader_env, local_hub, caplog):
    model = robust_model_download(["phaita-test/missing", "phaita-test/tiny-bert"])
    assert type(model).__name__ == "BertModel"
    assert any("phaita-test/missing" in w and "next candidate" in w for w in warnings_of(caplog))


def test_candidate_list_error_names_every_candidate_and_why(loader_env, local_hub):
    with pytest.raises(ModelNotFoundError) as info:
        robust_model_download(["phaita-test/missing-a", "phaita-test/missing-b"])
    err = info.value
    assert err.models_attempted == ["phaita-test/missing-a", "phaita-test/missing-b"]
    assert "missing-a" in str(err) and "missing-b" in str(err) and "not found" in str(err)


def test_only_safetensors_are_fetched_from_a_multiformat_repo(loader_env, local_hub):
    robust_model_download("phaita-test/tiny-multiformat")
    fetched = _resolved(local_hub)
    assert "model.safetensors" in fetched
    for unwanted in (".h5", ".msgpack", ".onnx", ".gguf", ".bin"):
        assert not [f for f in fetched if f.endswith(unwanted)], (unwanted, fetched)


def test_pickle_only_repo_is_refused_unless_allowed(loader_env, local_hub):
    with pytest.raises(UnsafeModelError, match="allow_pickle=True"):
        robust_model_download("phaita-test/tiny-bert-bin")
    assert not [f for f in _resolved(local_hub) if f.endswith(".bin")], "refused before any weight byte"
    model = robust_model_download("phaita-test/tiny-bert-bin", allow_pickle=True)
    assert type(model).__name__ == "BertModel"


def test_resume_download_is_accepted_and_false_discards_partials(loader_env, local_hub):
    cache = Path(loader_env["HF_HUB_CACHE"])
    partial = cache / "models--phaita-test--tiny-bert" / "blobs" / ("0" * 64 + ".incomplete")
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"left over")
    robust_model_download("phaita-test/tiny-bert", model_type="tokenizer", resume_download=True)
    assert partial.exists(), "resume_download=True keeps partial files"
    robust_model_download("phaita-test/tiny-bert", model_type="tokenizer", resume_download=False)
    assert not partial.exists(), "resume_download=False discards this model's partial files"


def test_fetch_only_options_are_never_forwarded_and_remote_code_stays_off():
    kwargs = load_kwargs({"resume_download": True, "revision": "main", "token": "t", "cache_dir": "/x",
                          "backoff_base": 1, "dtype": torch.float32}, "auto")
    assert kwargs == {"dtype": torch.float32, "trust_remote_code": False}
    assert "dtype" not in load_kwargs({"dtype": torch.float32}, "tokenizer")


@pytest.mark.parametrize("variable", ["HF_HUB_CACHE", "TRANSFORMERS_CACHE", "HF_HOME", "cache_dir"])
def test_cache_location_follows_the_standard_variables(loader_env, local_hub, monkeypatch, tmp_path, variable):
    for name in ("HF_HUB_CACHE", "TRANSFORMERS_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME"):
        monkeypatch.delenv(name, raising=False)
    target = tmp_path / "chosen"
    kwargs = {}
    if variable == "cache_dir":
        kwargs["cache_dir"] = str(target)
    else:
        monkeypatch.setenv(variable, str(target))
    robust_model_download("phaita-test/tiny-bert", model_type="tokenizer", **kwargs)
    expected_root = target / "hub" if variable == "HF_HOME" else target
    assert (expected_root / "models--phaita-test--tiny-bert" / "snapshots").is_dir()
    assert is_model_cached("phaita-test/tiny-bert", model_type="tokenizer") == (variable != "cache_dir")
    assert not _check_cached_model("phaita-test/tiny-bert"), "no weights fetched: not complete for a model"
    assert is_model_cached("phaita-test/tiny-bert", model_type="tokenizer", cache_dir=str(expected_root))


def test_use_4bit_on_cpu_warns_once_and_loads_full_precision(loader_env, local_hub, caplog):
    model = robust_model_download("phaita-test/tiny-gpt2", model_type="causal_lm", use_4bit=True)
    fourbit = [w for w in warnings_of(caplog) if "use_4bit" in w]
    assert len(fourbit) == 1 and "full precision" in fourbit[0]
    assert next(model.parameters()).dtype == torch.float32


def test_load_failure_is_a_model_download_error_with_advice(loader_env, local_hub):
    with pytest.raises(ModelDownloadError) as info:
        robust_model_download("phaita-test/tiny-bert", model_type="seq2seq_lm")
    assert type(info.value).__name__ == "ModelLoadError"
    assert "model_type" in str(info.value)


def test_cached_pickle_snapshot_is_reported_but_not_loaded_without_opt_in(loader_env, local_hub):
    robust_model_download("phaita-test/tiny-bert-bin", allow_pickle=True)
    assert is_model_cached("phaita-test/tiny-bert-bin")
    with pytest.raises(UnsafeModelError, match="allow_pickle=True"):
        robust_model_download("phaita-test/tiny-bert-bin", allow_offline=False)


def test_torch_dtype_is_honoured_under_its_new_name(loader_env, local_hub):
    model = robust_model_download("phaita-test/tiny-gpt2", model_type="causal_lm", torch_dtype=torch.float16)
    assert next(model.parameters()).dtype == torch.float16
