"""What a warm load trusts, said and selectable; a snapshot left partial by a failure is never reachable.

A warm load (a complete snapshot already cached) checks that every needed file is linked, that its
link names a blob and that the blob has the size the hub announced; it does not re-hash the bytes
(huggingface_hub does not either). ``verify_on_load=True`` / ``PHAITA_VERIFY_ON_LOAD=1`` re-hashes
every file of the snapshot before ``from_pretrained`` and refuses a changed one. The README and
docs/MODEL_LOADER_GUIDE.md say so; these tests hold the code to it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hostile_server import HostileFile, HostileHub
from phaita.utils.model_loader import (
    CorruptCacheError,
    ModelDownloadError,
    OfflineModeError,
    is_model_cached,
    prefetch_model,
    robust_model_download,
)

BASE = "phaita-test/tiny-bert"


def _overwrite_in_place(snapshot: Path, name: str) -> Path:
    """Flip the last byte of a cached blob, same size: what a disk fault or a hand edit does."""
    blob = (snapshot / name).resolve()
    with open(blob, "r+b") as fh:
        fh.seek(-1, os.SEEK_END)
        last = fh.read(1)
        fh.seek(-1, os.SEEK_END)
        fh.write(bytes([last[0] ^ 0xFF]))
    return blob


def test_a_warm_load_checks_sizes_not_bytes_unless_asked(loader_env, local_hub, monkeypatch):
    snapshot = Path(prefetch_model(BASE))
    blob = _overwrite_in_place(snapshot, "model.safetensors")
    before = len(local_hub.stats)
    # the contract as documented: sizes, links and blob names are checked; the bytes are not re-hashed
    assert is_model_cached(BASE)
    assert type(robust_model_download(BASE, allow_offline=True)).__name__ == "BertModel"
    # asked to, the load re-hashes and refuses, naming the file; from_pretrained is never reached
    for kwargs in ({"verify_on_load": True, "allow_offline": True}, {"verify_on_load": True}):
        with pytest.raises(CorruptCacheError) as info:
            robust_model_download(BASE, **kwargs)
        text = str(info.value)
        assert "model.safetensors: sha256 mismatch" in text and "verify --repair" in text
        assert info.value.attempts == 0 and not info.value.transient
    monkeypatch.setenv("PHAITA_VERIFY_ON_LOAD", "1")
    with pytest.raises(CorruptCacheError):
        robust_model_download(BASE, allow_offline=True)
    with pytest.raises(CorruptCacheError):
        robust_model_download(BASE, model_type="tokenizer")  # every file of the snapshot, not only the needed
    # verify_on_load=False wins over the variable
    assert type(robust_model_download(BASE, allow_offline=True, verify_on_load=False)).__name__ == "BertModel"
    assert blob.exists(), "refusing deletes nothing: repair is the user's call"
    assert not [r for r in local_hub.stats[before:] if "/resolve/" in r.path], "no file was fetched"


def test_verify_on_load_passes_a_good_snapshot(loader_env, local_hub, caplog):
    prefetch_model(BASE)
    model = robust_model_download(BASE, verify_on_load=True)
    assert type(model).__name__ == "BertModel"
    assert any("verify_on_load: every file" in r.getMessage() for r in caplog.records)


def test_verify_on_load_must_be_a_boolean(loader_env):
    with pytest.raises(ValueError, match="verify_on_load"):
        robust_model_download(BASE, verify_on_load="yes")


# --------------------------------------------------------------------------- a failed fetch


def _failing_weights(h, data, rng):
    h.reply(503, b"busy")


@pytest.fixture
def half_served(loader_env, monkeypatch):
    """A hub whose config and tokenizer files are fine and whose weights always fail (503)."""
    files = {"config.json": HostileFile(b'{"model_type": "bert"}', lfs=False),
             "tokenizer_config.json": HostileFile(b"{}", lfs=False),
             "model.safetensors": HostileFile(os.urandom(50_000), _failing_weights)}
    with HostileHub(files, repo="acme/half") as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        yield hub


def _unreachable(cache: Path, commit: str) -> None:
    """Nothing loads the partial snapshot as whole: ours, transformers' and huggingface_hub's offline paths."""
    import huggingface_hub
    import transformers

    assert not is_model_cached("acme/half")
    assert not is_model_cached("acme/half", revision=commit)
    with pytest.raises(OfflineModeError, match="is not in the cache"):
        robust_model_download("acme/half", allow_offline=True)
    with pytest.raises(OfflineModeError, match="missing: model.safetensors"):
        robust_model_download("acme/half", allow_offline=True, revision=commit)
    with pytest.raises(OSError):
        transformers.AutoModel.from_pretrained("acme/half", local_files_only=True, cache_dir=str(cache))
    with pytest.raises(Exception, match="(?i)cannot find|offline|local"):
        huggingface_hub.snapshot_download("acme/half", local_files_only=True, cache_dir=str(cache))


def test_a_failed_fetch_leaves_no_ref_to_its_partial_snapshot(half_served, loader_env):
    cache = Path(loader_env["HF_HUB_CACHE"])
    with pytest.raises(ModelDownloadError, match="HTTP 503"):
        prefetch_model("acme/half", max_retries=1)
    repo = cache / "models--acme--half"
    [commit] = [p.name for p in (repo / "snapshots").iterdir()]
    assert (repo / "snapshots" / commit / "config.json").exists(), "files are linked as they arrive"
    assert not (repo / "refs").exists() or not list((repo / "refs").rglob("*")), "no ref names the partial snapshot"
    _unreachable(cache, commit)


def test_a_ref_kept_from_a_smaller_fetch_does_not_make_a_failed_model_whole(half_served, loader_env):
    """refs/main names the commit after a tokenizer-only pull; the model fetch fails; no model load sees it whole."""
    cache = Path(loader_env["HF_HUB_CACHE"])
    snapshot = Path(prefetch_model("acme/half", model_type="tokenizer"))
    assert is_model_cached("acme/half", model_type="tokenizer")
    with pytest.raises(ModelDownloadError):
        prefetch_model("acme/half", max_retries=1)
    assert not is_model_cached("acme/half")
    with pytest.raises(OfflineModeError, match="missing: model.safetensors"):
        robust_model_download("acme/half", allow_offline=True)
    assert not (snapshot / "model.safetensors").exists()
