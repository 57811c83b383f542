"""Listing through partial mirrors: a revision answer without sizes or hashes is completed from the
tree API, then paths-info, then per-file HEAD; a hash no source gives means a size-only check,
logged once; a listing no retry can fix is a permanent error with its own advice.

The mirrors are LocalHubs with features left out (``LocalHub(lacks=...)``); olah itself is in
test_olah.py. Also here: the LocalHub's ``POST paths-info`` route, through real huggingface_hub.
"""

from __future__ import annotations

import http.server
import threading

import httpx2
import pytest

from loader_fixtures import warnings_of
from phaita.loader.hub.listing import fetch_listing
from phaita.testing import LocalHub
from phaita.testing.env import point_huggingface_hub_at
from phaita.utils.model_loader import BadListingError, ModelDownloadError, robust_model_download

REPO = "phaita-test/tiny-bert"


@pytest.fixture
def mirror(hub_root, loader_env, monkeypatch):
    """``mirror(*lacks)``: a LocalHub without those features, the client pointed at it."""
    hubs = []

    def start(*lacks: str, root=hub_root) -> LocalHub:
        hub = LocalHub(root, lacks=lacks).start()
        hubs.append(hub)
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        point_huggingface_hub_at(monkeypatch, hub.url)
        return hub

    yield start
    for hub in hubs:
        hub.stop()


def _listing_requests(hub: LocalHub) -> dict[str, int]:
    return {kind: len(hub.requests(f"/{kind}/")) for kind in ("revision", "tree", "paths-info")} | {
        "HEAD": len(hub.requests("/resolve/", method="HEAD"))}


@pytest.mark.parametrize("lacks, source", [
    (("revision-blobs",), "tree"),
    (("revision-blobs", "tree"), "paths-info"),
    (("revision-blobs", "tree", "paths-info"), "HEAD"),
])
def test_listing_without_sizes_is_completed_from_the_next_source(mirror, lacks, source, caplog):
    hub = mirror(*lacks)
    model = robust_model_download(REPO, max_retries=1)
    assert model.config.model_type == "bert"
    counts = _listing_requests(hub)
    assert counts[source] >= 1
    later = ("tree", "paths-info", "HEAD")[("tree", "paths-info", "HEAD").index(source) + 1:]
    assert all(counts[k] == 0 for k in later), counts  # a source is asked only when the one before failed
    assert warnings_of(caplog) == []  # hashes were learned: a full check, nothing to warn about
    assert any("lacked sizes or hashes" in r.getMessage() and source in r.getMessage() for r in caplog.records)


def test_the_completed_listing_equals_the_full_one(hub_root, loader_env):
    """Every fallback gives the same sizes and hashes as the revision answer with ``?blobs=true``."""
    from phaita.loader.config import Timeouts
    from phaita.loader.http.deadline import Deadline

    def listing(*lacks):
        with LocalHub(hub_root, lacks=lacks) as hub:
            return fetch_listing(REPO, "main", headers={}, deadline=Deadline.after(10), timeouts=Timeouts(2, 2),
                                 endpoint=hub.url)

    full = listing()
    assert any(f.sha256 for f in full.files) and all(f.blob_id for f in full.files)
    for lacks in (("revision-blobs",), ("revision-blobs", "tree"), ("revision-blobs", "tree", "paths-info")):
        got = listing(*lacks)
        if "paths-info" in lacks:  # HEAD gives an LFS file's sha256 but not its pointer's git oid
            assert [(f.path, f.size, f.sha256 or f.blob_id) for f in got.files] == \
                   [(f.path, f.size, f.etag) for f in full.files]
        else:
            assert got == full, lacks


def test_no_hash_anywhere_means_a_size_check_logged_once(mirror, caplog, tmp_path):
    mirror("revision-blobs", "tree", "paths-info", "etags")
    robust_model_download(REPO, max_retries=1)
    robust_model_download(REPO, max_retries=1, cache_dir=tmp_path / "second-cache")
    weak = [w for w in warnings_of(caplog) if "checked by size only" in w]
    assert len(weak) == 1, warnings_of(caplog)
    assert "model.safetensors" in weak[0]


def test_a_listing_with_no_size_anywhere_is_a_permanent_error(mirror, scratch_root, make_repo):
    make_repo(scratch_root, "acme/ghost", {"config.json": "{}"},
              {"extra_siblings": [{"rfilename": "model.safetensors"}]})  # listed, but not served
    hub = mirror("revision-blobs", "tree", root=scratch_root)  # (its tree lists extra siblings)
    with pytest.raises(BadListingError) as info:
        robust_model_download("acme/ghost", max_retries=3)
    err = info.value
    assert err.attempts == 1 and err.transient is False
    text = str(err)
    assert "no source gave a size for 'model.safetensors'" in text
    assert "Retrying will not help" in text and "phaita models doctor" in text and hub.url in text
    assert len(hub.requests("/revision/")) == 1  # not retried


def test_a_size_of_the_wrong_type_is_a_permanent_error(mirror, scratch_root, make_repo):
    make_repo(scratch_root, "acme/oddsize", {"config.json": "{}"},
              {"extra_siblings": [{"rfilename": "notes.txt", "size": "3", "blobId": "0" * 40}]})
    mirror(root=scratch_root)
    with pytest.raises(BadListingError, match="no valid size for 'notes.txt'") as info:
        robust_model_download("acme/oddsize", max_retries=3)
    assert info.value.attempts == 1


class _Portal(http.server.BaseHTTPRequestHandler):
    """A captive portal: HTML with status 200 for every request."""

    def do_GET(self):
        body = b"<html>Please log in to the hospital Wi-Fi</html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_listing_that_is_not_json_is_still_retried(loader_env, monkeypatch):
    """A captive portal's HTML may go away: that stays a transient failure, not a bad listing."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Portal)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        with pytest.raises(ModelDownloadError) as info:
            robust_model_download(REPO, max_retries=2)
        assert not isinstance(info.value, BadListingError)
        assert info.value.transient and info.value.attempts == 2
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("as_json", [False, True])
def test_local_hub_paths_info_like_the_hub(local_hub, as_json):
    url = f"{local_hub.url}/api/models/{REPO}/paths-info/main"
    paths = ["config.json", "model.safetensors", "no-such-file"]
    if as_json:
        r = httpx2.post(url, json={"paths": paths})
    else:
        r = httpx2.post(url, data={"paths": paths})
    assert r.status_code == 200
    entries = {e["path"]: e for e in r.json()}
    assert set(entries) == {"config.json", "model.safetensors"}  # unknown paths are left out
    assert entries["model.safetensors"]["lfs"]["size"] == entries["model.safetensors"]["size"] > 0
    assert len(entries["model.safetensors"]["lfs"]["oid"]) == 64 and len(entries["config.json"]["oid"]) == 40


def test_paths_info_through_huggingface_hub(hf_env, local_hub):
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    infos = HfApi(endpoint=local_hub.url).get_paths_info(REPO, ["config.json", "model.safetensors"])
    by_path = {i.path: i for i in infos}
    assert isinstance(by_path["model.safetensors"], RepoFile)
    assert by_path["model.safetensors"].lfs is not None and by_path["config.json"].lfs is None
    assert local_hub.requests("/paths-info/", method="POST")


def test_a_hub_without_paths_info_refuses_it_and_keeps_the_connection_usable(hub_root):
    with LocalHub(hub_root, lacks=("paths-info",)) as hub, httpx2.Client() as client:
        r = client.post(f"{hub.url}/api/models/{REPO}/paths-info/main", data={"paths": ["config.json"]})
        assert r.status_code == 404
        assert client.get(f"{hub.url}/api/models/{REPO}").status_code == 200  # the body was drained
    with pytest.raises(ValueError, match="unknown features"):
        LocalHub(hub_root, lacks=("git",))
