"""phaita.testing.NginxHub: nginx serving a Hugging Face tree, loaded by huggingface_hub and by phaita."""

from __future__ import annotations

import hashlib
import http.client
import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from phaita.testing.env import point_huggingface_hub_at
from phaita.testing.models import write_tiny_bert
from phaita.testing.nginx_hub import MISSING, NginxHub, nginx_binary

pytestmark = pytest.mark.skipif(nginx_binary() is None, reason=MISSING)

REPO = "phaita-test/tiny-bert"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def nginx_hub(tmp_path, monkeypatch):
    root = tmp_path / "root"
    write_tiny_bert(root / REPO)
    home = tmp_path / "hf-home"
    cache = home / "hub"
    cache.mkdir(parents=True)
    with NginxHub(root) as hub:
        for key, value in {"HF_ENDPOINT": hub.url, "HF_HOME": str(home), "HF_HUB_CACHE": str(cache),
                           "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
                           "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HUB_OFFLINE": "0"}.items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        point_huggingface_hub_at(monkeypatch, hub.url, home=str(home), cache=str(cache))
        yield hub


def _get(hub: NginxHub, path: str, method: str = "GET", headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", urlsplit(hub.url).port, timeout=10)
    conn.request(method, path, headers=headers or {})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp, body


def test_answers_like_the_hub(nginx_hub):
    """Revision and tree answers as JSON, resolve with the Hub's headers, nginx's own Range answers."""
    root = nginx_hub.root / REPO
    weights = root / "model.safetensors"
    resp, body = _get(nginx_hub, f"/api/models/{REPO}/revision/main")
    info = json.loads(body)
    sha = nginx_hub.commits[REPO]
    assert resp.status == 200 and info["sha"] == sha and len(sha) == 40
    by_name = {s["rfilename"]: s for s in info["siblings"]}
    assert by_name["model.safetensors"]["lfs"]["sha256"] == _sha256(weights)
    tree = json.loads(_get(nginx_hub, f"/api/models/{REPO}/tree/{sha}?recursive=true")[1])
    assert {e["path"] for e in tree} == set(by_name)

    resp, _ = _get(nginx_hub, f"/{REPO}/resolve/main/model.safetensors", method="HEAD")
    assert resp.status == 200 and resp.getheader("X-Repo-Commit") == sha
    assert resp.getheader("X-Linked-Etag") == f'"{_sha256(weights)}"' == resp.getheader("ETag")
    assert int(resp.getheader("X-Linked-Size")) == weights.stat().st_size == int(resp.getheader("Content-Length"))
    resp, part = _get(nginx_hub, f"/{REPO}/resolve/{sha}/model.safetensors", headers={"Range": "bytes=100-199"})
    assert resp.status == 206 and resp.getheader("Content-Range") == f"bytes 100-199/{weights.stat().st_size}"
    assert part == weights.read_bytes()[100:200]
    resp, config = _get(nginx_hub, f"/{REPO}/resolve/main/config.json")
    assert resp.getheader("X-Linked-Etag") is None and config == (root / "config.json").read_bytes()
    assert _get(nginx_hub, f"/{REPO}/resolve/main/no-such-file")[0].status == 404
    assert nginx_hub.bytes_sent() >= 100 + len(config)


def test_snapshot_download_and_phaita_load_from_it(nginx_hub, tmp_path):
    from huggingface_hub import snapshot_download

    from phaita.utils.model_loader import prefetch_model, robust_model_download

    root = nginx_hub.root / REPO
    hub_folder = Path(snapshot_download(REPO, cache_dir=str(tmp_path / "hub-cache")))
    ours = Path(prefetch_model(REPO, cache_dir=str(tmp_path / "phaita-cache")))
    for folder in (hub_folder, ours):
        assert folder.name == nginx_hub.commits[REPO]
        assert _sha256(folder / "model.safetensors") == _sha256(root / "model.safetensors")
    model = robust_model_download(REPO, model_type="auto", cache_dir=str(tmp_path / "phaita-cache"))
    assert type(model).__name__ == "BertModel"


def test_rate_caps_each_connection(tmp_path):
    """``rate=`` is nginx's limit_rate: one connection's body arrives no faster than the cap."""
    import time

    root = tmp_path / "root"
    (root / "acme" / "blob").mkdir(parents=True)
    (root / "acme" / "blob" / "model.safetensors").write_bytes(b"x" * 3_000_000)
    with NginxHub(root, rate=2_000_000) as hub:
        start = time.monotonic()
        resp, body = _get(hub, "/acme/blob/resolve/main/model.safetensors")
        took = time.monotonic() - start
    assert resp.status == 200 and len(body) == 3_000_000
    assert took >= 1.0  # 3 MB at 2 MB/s: at least 1 s whatever the machine (nginx's first burst aside)


def test_phaita_ranges_from_nginx_cover_the_file_once(tmp_path, monkeypatch):
    """Parallel range streams against nginx (capped per connection): every byte asked for once, every
    answer a 206 for exactly its range, the blob's sha256 the hub's."""
    from phaita.testing import publish_large_file
    from phaita.utils.model_loader import prefetch_model

    size = 12_000_000
    root = tmp_path / "root"
    source = publish_large_file(root, "acme/big", size, seed=3)
    with NginxHub(root, rate=8_000_000) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
        monkeypatch.setenv("PHAITA_PARALLEL_THRESHOLD", "2000000")
        monkeypatch.setenv("PHAITA_STREAMS_PER_FILE", "4")
        point_huggingface_hub_at(monkeypatch, hub.url)
        folder = Path(prefetch_model("acme/big", cache_dir=str(tmp_path / "cache")))
        answers = [r for r in hub.requests() if "model.safetensors" in r["request"]]
    assert _sha256(folder / "model.safetensors") == _sha256(source)
    assert len(answers) > 1 and all(r["status"] == 206 and r["range"].startswith("bytes=") for r in answers)
    assert sum(r["bytes"] for r in answers) == size  # no byte twice, none missing
