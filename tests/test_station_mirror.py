"""The station mirror, `phaita hub serve --cache DIR`, run as a real process over a real cache.

The cache it serves is filled from the local hub by `hf download` (huggingface_hub's layout and
tree listing, one model in the shared-blob layout) and by `phaita models pull` (phaita's listing),
plus two partial snapshots made the way interrupted downloads leave them. Clients: `hf download`,
`snapshot_download`, phaita's loader and `transformers`, each with `HF_ENDPOINT` at the mirror.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from phaita.loader.cache import layout as cache
from phaita.testing import LocalHub
from phaita.testing.cache_layouts import share_blobs

BERT, GPT2, DEBERTA, BERT_BIN = ("phaita-test/tiny-bert", "phaita-test/tiny-gpt2", "microsoft/deberta-v3-base",
                                 "phaita-test/tiny-bert-bin")
PARTIAL_COMMIT = "d" * 40
BIN = Path(sys.executable).parent


def client_env(home: Path, endpoint: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_", "PHAITA_"))}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(home), HF_HUB_CACHE=str(home / "hub"), HF_HUB_DISABLE_XET="1",
               HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1", PHAITA_BACKOFF_BASE="0.01")
    return env


def run(args: list[str], env: dict, code: int = 0, timeout: float = 180) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == code, proc.stdout + proc.stderr
    return proc


def tree(folder: Path) -> dict[str, str]:
    """Every entry under ``folder`` (links by target, files by size and mtime): to see nothing changed."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            out[str(path.relative_to(folder))] = os.readlink(path) if path.is_symlink() else f"{st.st_size}:{st.st_mtime_ns}"
    return out


def make_partial(cache_dir: Path) -> None:
    """Two partial snapshots, as interrupted downloads leave them.

    * tiny-bert-bin: its weights link removed and a ``.incomplete`` blob left: the only snapshot.
    * tiny-bert: a second commit (branch ``dev``) where config.json arrived and the weights did not
      (``hf_hub_download`` file by file, as transformers fetches: no listing), beside a complete ``main``.
    """
    repo = cache.repo_dir(cache_dir, BERT_BIN)
    (snapshot,) = (repo / "snapshots").iterdir()
    weights = snapshot / "pytorch_model.bin"
    blob = Path(os.path.realpath(weights))
    weights.unlink()
    blob.rename(blob.with_name(blob.name + ".incomplete"))
    repo = cache.repo_dir(cache_dir, BERT)
    (main,) = (repo / "snapshots").iterdir()
    partial = repo / "snapshots" / PARTIAL_COMMIT
    partial.mkdir()
    os.symlink(os.readlink(main / "config.json"), partial / "config.json")
    (repo / "refs" / "dev").write_text(PARTIAL_COMMIT)
    (repo / "blobs" / ("e" * 64 + ".incomplete")).write_bytes(b"\0" * 1000)


@pytest.fixture(scope="module")
def source(hub_root, tmp_path_factory):
    """The station's cache, filled from the local hub by other clients and by phaita."""
    home = tmp_path_factory.mktemp("station-home")
    with LocalHub(hub_root) as hub:
        env = client_env(home, hub.url)
        for repo_id in (BERT, GPT2, BERT_BIN):
            run([str(BIN / "hf"), "download", repo_id], env)
        run([str(BIN / "phaita"), "models", "pull", DEBERTA], env)
        commits = {r: hub.commit_sha(r) for r in (BERT, GPT2, DEBERTA, BERT_BIN)}
    cache_dir = home / "hub"
    pytest.importorskip("hf_xet")
    assert share_blobs(cache_dir, GPT2)  # huggingface_hub 2.x's shared-blob layout
    make_partial(cache_dir)
    return {"cache": cache_dir, "commits": commits, "hub_root": hub_root}


@pytest.fixture(scope="module")
def station(source):
    """`phaita hub serve --cache DIR` as a real process; yields (url, the lines it printed first)."""
    env = client_env(source["cache"].parent, "http://127.0.0.1:9")  # the station itself needs no hub
    before = tree(source["cache"])
    proc = subprocess.Popen([str(BIN / "phaita"), "hub", "serve", "--cache", str(source["cache"])], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), proc.stderr.read() if proc.poll() is not None else url
        lines = [proc.stdout.readline().strip() for _ in range(3)]  # cache, verified, serving
        served, refused = (int(part.split(":")[-1].split()[0]) for part in lines[2].split(";"))
        lines += [proc.stdout.readline().strip() for _ in range(served + refused)]
        yield {"url": url, "lines": lines, "proc": proc, "before": before}
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert proc.returncode == 0


def request(url: str, method: str = "GET", headers: dict | None = None, data: bytes | None = None):
    """(status, headers, body) without raising on HTTP errors."""
    req = urllib.request.Request(url, method=method, headers=headers or {}, data=data)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def snapshot_file(cache_dir: Path, repo_id: str, path: str) -> bytes:
    commit = (cache.repo_dir(cache_dir, repo_id) / "refs" / "main").read_text().strip()
    return (cache.repo_dir(cache_dir, repo_id) / "snapshots" / commit / path).read_bytes()


def snapshot_sha256(cache_dir: Path, repo_id: str, path: str) -> str:
    import hashlib

    return hashlib.sha256(snapshot_file(cache_dir, repo_id, path)).hexdigest()


# --------------------------------------------------------------------------- start


def test_start_verifies_once_and_says_what_it_serves(station, source):
    text = "\n".join(station["lines"])
    assert "# verified: " in text and " files, " in text and " s" in text
    assert f"# repo: {BERT} {source['commits'][BERT]} (main)" in text
    assert f"# repo: {DEBERTA} {source['commits'][DEBERTA]} (main)" in text
    assert f"# repo: {GPT2} {source['commits'][GPT2]} (main)" in text
    assert f"# not served: {BERT_BIN} {source['commits'][BERT_BIN]}: partial" in text


# --------------------------------------------------------------------------- clients


def test_hf_download_and_snapshot_download_fetch_from_station(station, source, tmp_path, monkeypatch):
    env = client_env(tmp_path / "a", station["url"])
    for repo_id in (BERT, GPT2):  # a huggingface_hub cache, and one in the shared-blob layout
        run([str(BIN / "hf"), "download", repo_id], env)
        assert snapshot_file(tmp_path / "a" / "hub", repo_id, "model.safetensors") == \
            snapshot_file(source["cache"], repo_id, "model.safetensors")
    assert (cache.repo_dir(tmp_path / "a" / "hub", BERT) / "refs" / "main").read_text() == source["commits"][BERT]

    from huggingface_hub import snapshot_download

    from phaita.testing.env import point_huggingface_hub_at

    point_huggingface_hub_at(monkeypatch, station["url"])
    folder = Path(snapshot_download(DEBERTA, cache_dir=str(tmp_path / "b")))
    assert folder.name == source["commits"][DEBERTA]
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(p.name for p in (cache.repo_dir(source["cache"], DEBERTA) / "snapshots" /
                                            folder.name).iterdir())
    assert run([str(BIN / "phaita"), "models", "verify"], dict(env, HF_HUB_CACHE=str(tmp_path / "b"))).returncode == 0


def test_phaita_loader_pulls_from_station_and_verifies(station, source, tmp_path):
    env = client_env(tmp_path, station["url"])
    out = run([str(BIN / "phaita"), "models", "pull", DEBERTA, BERT, "--json"], env)
    data = json.loads(out.stdout)
    assert data["ok"] and {m["name"]: m["commit"] for m in data["models"]} == {
        DEBERTA: source["commits"][DEBERTA], BERT: source["commits"][BERT]}
    report = json.loads(run([str(BIN / "phaita"), "models", "verify", "--json"], env).stdout)
    assert report["ok"] and all(m["files_checked"] >= 3 for m in report["models"])


def test_transformers_from_pretrained_through_station(station, source, tmp_path):
    """A process with only HF_ENDPOINT set loads the model and tokenizer; same weights as the station's."""
    import torch

    def weights(name: str, env: dict, out: Path) -> dict:
        # Each load in its own process: an in-process reference load was seen to pick up meta
        # tensors left in torch's global state by earlier tests of a full run.
        script = (
            "import sys, torch\n"
            "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
            "tok = AutoTokenizer.from_pretrained(sys.argv[1])\n"
            "model = AutoModelForCausalLM.from_pretrained(sys.argv[1])\n"
            "assert tok('hello world')['input_ids']\n"
            "torch.save(model.state_dict(), sys.argv[2])\n"
        )
        proc = subprocess.run([sys.executable, "-c", script, name, str(out)], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        return torch.load(out)

    loaded = weights(GPT2, client_env(tmp_path, station["url"]), tmp_path / "through-station.pt")
    snapshot = cache.repo_dir(source["cache"], GPT2) / "snapshots" / source["commits"][GPT2]
    expected = weights(str(snapshot), {**os.environ, "HF_HUB_OFFLINE": "1"}, tmp_path / "station-copy.pt")
    assert loaded.keys() == expected.keys() and all(torch.equal(loaded[k], expected[k]) for k in expected)


# --------------------------------------------------------------------------- protocol


def test_listing_tree_and_headers_match_the_origin_hub(station, source):
    url, commit = station["url"], source["commits"][BERT]
    with LocalHub(source["hub_root"]) as origin:
        for path in (f"/api/models/{BERT}/revision/main?blobs=true", f"/api/models/{BERT}/tree/main?recursive=true"):
            status, _, body = request(url + path)
            _, _, expected = request(origin.url + path)
            assert status == 200
            mine, theirs = json.loads(body), json.loads(expected)
            if isinstance(mine, dict):
                assert mine["sha"] == theirs["sha"] == commit
                mine, theirs = mine["siblings"], theirs["siblings"]
            assert mine == theirs  # sizes, git blob ids, LFS sha256 and pointer sizes
        body = b"paths=config.json&paths=model.safetensors&paths=no-such-file"
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        status, _, mine = request(f"{url}/api/models/{BERT}/paths-info/main", "POST", form, body)
        _, _, theirs = request(f"{origin.url}/api/models/{BERT}/paths-info/main", "POST", form, body)
        assert status == 200 and json.loads(mine) == json.loads(theirs) and len(json.loads(mine)) == 2

        from huggingface_hub import HfApi

        (info,) = HfApi(endpoint=url).get_paths_info(BERT, ["model.safetensors"], revision="main")
        assert info.lfs.sha256 == snapshot_sha256(source["cache"], BERT, "model.safetensors")
        for path in ("model.safetensors", "config.json"):
            _, mine, _ = request(f"{url}/{BERT}/resolve/main/{path}", "HEAD")
            _, theirs, _ = request(f"{origin.url}/{BERT}/resolve/main/{path}", "HEAD")
            for header in ("ETag", "X-Linked-Etag", "X-Linked-Size", "X-Repo-Commit", "Content-Length"):
                assert mine.get(header) == theirs.get(header), header


def test_head_and_range(station, source):
    url = f"{station['url']}/{GPT2}/resolve/main/model.safetensors"
    whole = snapshot_file(source["cache"], GPT2, "model.safetensors")
    status, headers, body = request(url, "HEAD")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) == len(whole)
    assert headers["Accept-Ranges"] == "bytes" and headers["X-Repo-Commit"] == source["commits"][GPT2]
    status, headers, body = request(url, headers={"Range": "bytes=100-199"})
    assert status == 206 and body == whole[100:200]
    assert headers["Content-Range"] == f"bytes 100-199/{len(whole)}"
    status, headers, body = request(url, headers={"Range": f"bytes={len(whole) - 10}-"})
    assert status == 206 and body == whole[-10:]
    status, headers, _ = request(url, headers={"Range": f"bytes={len(whole)}-"})
    assert status == 416


# --------------------------------------------------------------------------- never partial, never writable


def test_partial_snapshots_are_not_served(station, source, tmp_path):
    url = station["url"]
    status, headers, _ = request(f"{url}/api/models/{BERT_BIN}/revision/main")
    assert status == 404 and headers["X-Error-Code"] == "RepoNotFound"
    status, headers, _ = request(f"{url}/{BERT_BIN}/resolve/main/config.json", "HEAD")
    assert status == 404 and headers["X-Error-Code"] == "RepoNotFound"
    for revision in ("dev", PARTIAL_COMMIT):  # beside a complete main
        status, headers, _ = request(f"{url}/{BERT}/resolve/{revision}/config.json")
        assert status == 404 and headers["X-Error-Code"] == "RevisionNotFound"
    status, headers, _ = request(f"{url}/{BERT}/resolve/main/no-such-file.bin")
    assert status == 404 and headers["X-Error-Code"] == "EntryNotFound"
    assert headers["X-Repo-Commit"] == source["commits"][BERT]
    proc = run([str(BIN / "hf"), "download", BERT_BIN], client_env(tmp_path, url), code=1)
    assert f"Model '{BERT_BIN}' not found" in proc.stderr
    assert not (tmp_path / "hub" / "models--phaita-test--tiny-bert-bin" / "snapshots").exists()


def test_nothing_is_writable(station, source, tmp_path):
    url = station["url"]
    for method, path in (("PUT", f"/{BERT}/resolve/main/config.json"), ("DELETE", f"/api/models/{BERT}"),
                         ("POST", f"/api/models/{BERT}/commit/main"), ("POST", "/api/repos/create"),
                         ("POST", f"/api/models/{BERT}/preupload/main")):
        status, _, _ = request(url + path, method, data=b"{}", headers={"Content-Type": "application/json"})
        assert status == 405, (method, path)
    upload = ("from huggingface_hub import HfApi\n"
              f"HfApi(endpoint={url!r}, token='hf_x').upload_file(path_or_fileobj=b'x', path_in_repo='x.txt', "
              f"repo_id={BERT!r})\n")
    proc = run([sys.executable, "-c", upload], client_env(tmp_path, url), code=1)
    assert "405" in proc.stderr
    assert tree(source["cache"]) == station["before"]  # serving and refusing changed nothing in the cache


def test_a_file_changed_after_verification_is_never_served(source, tmp_path):
    """The index is built once; a blob truncated later withdraws its snapshot instead of serving it."""
    from phaita.station.mirror import build_index
    from phaita.station.server import StationServer

    copy = tmp_path / "hub"
    shutil.copytree(source["cache"], copy, symlinks=True)
    index = build_index(copy)
    assert index.files_hashed > 0 and index.resolve(DEBERTA, "main") is not None
    with StationServer(index) as hub:
        url = f"{hub.url}/{DEBERTA}/resolve/main/model.safetensors"
        assert request(url, "HEAD")[0] == 200
        blob = Path(os.path.realpath(cache.repo_dir(copy, DEBERTA) / "snapshots" / source["commits"][DEBERTA] /
                                     "model.safetensors"))
        with open(blob, "r+b") as fh:
            fh.truncate(blob.stat().st_size // 2)
        status, headers, _ = request(url)
        assert status == 404 and headers["X-Error-Code"] == "RevisionNotFound"
        status, headers, _ = request(url)  # its only snapshot is gone: so is the model
        assert status == 404 and headers["X-Error-Code"] == "RepoNotFound"
    assert [r.reason for r in index.refused if r.repo_id == DEBERTA] == [
        "a file changed on disk after it was verified"]


@pytest.mark.parametrize("argv", [["hub", "serve", "/tmp"], ["hub", "serve", "--cache", "--faults", "503"],
                                  ["hub", "serve", "--cache", "/nonexistent-cache-folder"],
                                  ["hub", "serve", "--cache", "{empty}"]])
def test_serve_cache_usage_errors_exit_2(argv, tmp_path):
    from typer.testing import CliRunner

    from phaita.cli.main import app

    (tmp_path / "hub").mkdir()  # e.g. HF_HOME given where its hub/ folder was meant: no model folders
    result = CliRunner().invoke(app, [a.format(empty=tmp_path) for a in argv])
    assert result.exit_code == 2, result.output
    assert "Invalid value" in result.output
    if "{empty}" in argv:
        assert "holds no cached model" in " ".join(result.output.replace("│", " ").split())


# --------------------------------------------------------------------------- what is refused, and why


def _put(repo: Path, commit: str, path: str, content: bytes, *, blob_target: Path | None = None) -> None:
    """Cache ``content`` as huggingface_hub does: a blob named by its hash, linked from the snapshot."""
    import hashlib

    lfs = path.endswith(".safetensors")
    name = hashlib.sha256(content).hexdigest() if lfs else \
        hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()
    blob = repo / "blobs" / name
    blob.parent.mkdir(parents=True, exist_ok=True)
    if blob_target is not None:  # the blob is a link to a file elsewhere
        blob_target.write_bytes(content)
        os.symlink(blob_target, blob)
    else:
        blob.write_bytes(content)
    link = repo / "snapshots" / commit / path
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(os.path.relpath(blob, link.parent), link)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)


def _safetensors(seed: float) -> bytes:
    import torch
    from safetensors.torch import save

    return save({"w": torch.full((4, 4), seed)})


def test_refused_snapshots_say_why(tmp_path):
    from phaita.station.mirror import build_index

    cache_dir, commit = tmp_path / "hub", "c" * 40
    config = b'{"model_type": "bert"}'
    whole = cache_dir / "models--acme--whole"
    _put(whole, commit, "config.json", config)
    _put(whole, commit, "model.safetensors", _safetensors(1.0))
    sharded = cache_dir / "models--acme--sharded"
    _put(sharded, commit, "config.json", config)
    weight_map = {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}
    _put(sharded, commit, "model.safetensors.index.json", json.dumps({"weight_map": weight_map}).encode())
    _put(sharded, commit, "model-00001-of-00002.safetensors", _safetensors(2.0))
    escape = cache_dir / "models--acme--escape"
    _put(escape, commit, "config.json", config)
    _put(escape, commit, "model.safetensors", _safetensors(3.0), blob_target=tmp_path / "outside.bin")
    flipped = cache_dir / "models--acme--flipped"
    _put(flipped, commit, "config.json", config)
    _put(flipped, commit, "model.safetensors", _safetensors(4.0))
    (blob,) = [p for p in (flipped / "blobs").iterdir() if len(p.name) == 64]
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF  # same size, one byte changed: only the hash in the blob's name tells
    blob.write_bytes(bytes(data))

    data_repo = cache_dir / "models--acme--data"  # no model at all, but huggingface_hub listed it: whole
    _put(data_repo, commit, "data.txt", b"not a model")
    (blob,) = (data_repo / "blobs").iterdir()
    (data_repo / "trees").mkdir()
    (data_repo / "trees" / f"{commit}.json").write_text(json.dumps(
        {"format_version": 1, "files": {"data.txt": {"size": 11, "blob_id": blob.name}}}))

    index = build_index(cache_dir)
    assert [s.repo_id for s in index.snapshots] == ["acme/data", "acme/whole"]
    assert index.resolve("acme/data", "main").files[0].oid == blob.name
    reasons = {r.repo_id: r.reason for r in index.refused}
    assert reasons["acme/sharded"] == "partial: missing model-00002-of-00002.safetensors"
    assert reasons["acme/escape"] == "model.safetensors: links outside the cache folder"
    assert reasons["acme/flipped"].startswith("failed verification: model.safetensors: sha256 mismatch")
    assert index.resolve("acme/whole", "main").commit == commit and index.resolve("acme/escape", "main") is None


def test_olah_in_front_of_the_station(station, source, tmp_path):
    """A larger fleet's set-up (docs/AIRGAP.md): olah caches and fans out, the station stays the source."""
    from phaita.testing.olah import OlahMirror, find_olah_cli

    cli = find_olah_cli()
    if cli is None:
        if os.environ.get("CI", "").lower() in ("1", "true"):
            pytest.fail("olah-cli is missing: `make setup` creates .venv-olah with it")
        pytest.skip("olah-cli not installed (make setup creates .venv-olah)")
    with OlahMirror(station["url"], tmp_path / "olah-repos", cli=cli) as mirror:
        env = dict(client_env(tmp_path / "client", mirror.url), PHAITA_STALL_TIMEOUT="15",
                   PHAITA_CONNECT_TIMEOUT="10")
        run([str(BIN / "hf"), "download", BERT], env)
        run([str(BIN / "phaita"), "models", "pull", DEBERTA], env)
    client = tmp_path / "client" / "hub"
    for repo_id in (BERT, DEBERTA):
        assert snapshot_file(client, repo_id, "model.safetensors") == \
            snapshot_file(source["cache"], repo_id, "model.safetensors")
    assert run([str(BIN / "phaita"), "models", "verify"], client_env(tmp_path / "client", mirror.url)).returncode == 0


def test_airgap_doc_shows_the_commands_this_module_runs():
    """docs/AIRGAP.md's station section lists the client commands exactly as the tests above run them."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "AIRGAP.md").read_text()
    section = doc[doc.index("## 3. A station mirror"):]
    blocks = [b.split("```", 1)[0].strip().splitlines() for b in section.split("```bash\n")[1:3]]
    serve, clients = blocks
    assert serve[-1].startswith("phaita hub serve --cache ")
    commands = [line.split("#")[0].strip() for line in clients]
    assert commands == [
        "export HF_ENDPOINT=http://station:8080",
        f"phaita models pull {DEBERTA}",  # test_phaita_loader_pulls_from_station_and_verifies
        f"hf download {BERT}",  # test_hf_download_and_snapshot_download_fetch_from_station
        f"python -c \"from huggingface_hub import snapshot_download; snapshot_download('{DEBERTA}')\"",
        f"python -c \"from transformers import AutoModelForCausalLM; AutoModelForCausalLM.from_pretrained('{GPT2}')\"",
    ]
