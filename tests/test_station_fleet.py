"""The station on a shared hospital LAN: under load with held connections, access control, access log,
/metrics, connection bounds, models imported while it runs.

Real parts only: the station as a real process (`phaita hub serve --cache`) or a real server in this
process (`StationServer`), over a real cache filled from the local hub by the loader; the clients are
the loader itself and raw sockets / `http.client` for what a broken or hostile client does.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from phaita.loader.cache import layout as cache
from phaita.station.access import Access, TokenFile
from phaita.station.mirror import build_index
from phaita.station.server import Limits, StationServer
from phaita.station.tls import station_tls_context
from phaita.testing import LocalHub
from phaita.utils.model_loader import AccessDeniedError, prefetch_model
from test_station_mirror import BIN, client_env

trustme = pytest.importorskip("trustme")
psutil = pytest.importorskip("psutil")

BERT, GPT2 = "phaita-test/tiny-bert", "phaita-test/tiny-gpt2"
WEIGHTS = "model.safetensors"
TOKEN = "ward7-" + "x" * 26  # the station's token (not a Hub token)
CLIENTS, HELD = 50, 20


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> SimpleNamespace:
    """The site CA (station certificate, a device's client certificate) and a CA nobody trusts."""
    folder = tmp_path_factory.mktemp("fleet-pki")
    site, stranger = trustme.CA(organization_name="Acme Hospital"), trustme.CA(organization_name="Elsewhere")
    leaf = site.issue_cert("127.0.0.1", "localhost")
    files = SimpleNamespace(ca=folder / "site-ca.pem", cert=folder / "station.pem", key=folder / "station.key",
                            device=folder / "device.pem", stranger=folder / "stranger.pem")
    site.cert_pem.write_to_path(str(files.ca))
    files.cert.write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(files.key))
    for ca, path, name in ((site, files.device, "ambulance-17"), (stranger, files.stranger, "intruder")):
        cert = ca.issue_cert(name, common_name=name)  # a client certificate: key and chain in one PEM
        path.write_bytes(cert.private_key_pem.bytes() + b"".join(p.bytes() for p in cert.cert_chain_pems))
    return files


@pytest.fixture(scope="module")
def source(hub_root, tmp_path_factory) -> SimpleNamespace:
    """A cache holding tiny-bert, filled by `phaita models pull` from the local hub."""
    home = tmp_path_factory.mktemp("fleet-station")
    with LocalHub(hub_root) as hub:
        proc = subprocess.run([str(BIN / "phaita"), "models", "pull", BERT], env=client_env(home, hub.url),
                              capture_output=True, text=True, timeout=180)
        assert proc.returncode == 0, proc.stderr
        commit = hub.commit_sha(BERT)
    cache_dir = home / "hub"
    snapshot = cache.repo_dir(cache_dir, BERT) / "snapshots" / commit
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in snapshot.iterdir()}
    return SimpleNamespace(cache=cache_dir, commit=commit, files=files, hub_root=hub_root)


def tls_client(pki, cert: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    if cert is not None:
        ctx.load_cert_chain(str(cert))
    return ctx


def get(url: str, path: str, *, ctx: ssl.SSLContext | None = None, method: str = "GET",
        headers: dict | None = None) -> tuple[int, dict, bytes]:
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    conn = (http.client.HTTPSConnection(host, int(port), context=ctx, timeout=20) if url.startswith("https")
            else http.client.HTTPConnection(host, int(port), timeout=20))
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def snapshot_hashes(cache_dir: Path, repo_id: str, commit: str) -> dict[str, str]:
    folder = cache.repo_dir(cache_dir, repo_id) / "snapshots" / commit
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


# --------------------------------------------------------------------------- under load


class Held:
    """A connection that holds the station: a TLS handshake never finished, or request headers trickled."""

    def __init__(self, url: str, pki, kind: str) -> None:
        host, port = url.split("//", 1)[1].rsplit(":", 1)
        self.kind, self.opened, self.closed_at, self.answered = kind, time.monotonic(), None, False
        raw = socket.create_connection((host, int(port)), timeout=30)
        if kind == "handshake":
            raw.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01")  # a ClientHello record that never completes
            self.sock = raw
        else:
            self.sock = tls_client(pki).wrap_socket(raw, server_hostname="127.0.0.1")
        self.thread = threading.Thread(target=self._hold, daemon=True)
        self.thread.start()

    def _hold(self) -> None:
        line = b"GET /api/models/" + BERT.encode() + b"/revision/main HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: y" * 500
        try:
            if self.kind == "trickle":
                self.sock.settimeout(0.25)
                for byte in line:  # one byte every 0.25 s: a per-read timeout alone would never fire
                    self.sock.send(bytes([byte]))
                    try:
                        if self.sock.recv(1024) == b"":
                            break
                        self.answered = True
                        break
                    except (socket.timeout, ssl.SSLWantReadError):
                        continue
            else:
                self.answered = self.sock.recv(1024) != b""
        except (OSError, ssl.SSLError):
            pass
        self.closed_at = time.monotonic()

    @property
    def held_for(self) -> float:
        return (self.closed_at or time.monotonic()) - self.opened


@pytest.mark.alone  # measures the station's memory and its deadlines under the load it makes
def test_fifty_clients_while_twenty_connections_hold_handshakes_and_headers(source, pki, tmp_path, monkeypatch):
    timeout = 2.0
    copy = tmp_path / "station-cache"
    shutil.copytree(source.cache, copy, symlinks=True)
    env = client_env(tmp_path / "station-home", "http://127.0.0.1:9")
    proc = subprocess.Popen([str(BIN / "phaita"), "hub", "serve", "--cache", str(copy), "--tls-cert", str(pki.cert),
                             "--tls-key", str(pki.key), "--handshake-timeout", str(timeout), "--header-timeout",
                             str(timeout), "--max-per-client", "256", "--rescan", "0"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("https://127.0.0.1:"), proc.stderr.read()
        station = psutil.Process(proc.pid)
        idle_rss = station.memory_info().rss
        peak = [idle_rss]
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.wait(0.02):
                try:
                    peak[0] = max(peak[0], station.memory_info().rss)
                except psutil.Error:
                    return

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca))
        monkeypatch.setenv("PHAITA_BACKOFF_BASE", "0.2")
        started = time.monotonic()
        held = [Held(url, pki, "handshake" if i % 2 else "trickle") for i in range(HELD)]
        results: dict[int, object] = {}

        def client(i: int) -> None:
            try:
                results[i] = prefetch_model(BERT, cache_dir=str(tmp_path / f"device-{i}"), endpoints=[url],
                                            max_retries=3, timeout=60)
            except Exception as exc:  # reported below with the client's number
                results[i] = exc

        threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        pulled = time.monotonic() - started
        for h in held:
            h.thread.join(timeout=timeout + 10)
        sampling.set()
        sampler.join()

        failed = {i: r for i, r in results.items() if isinstance(r, Exception)}
        assert len(results) == CLIENTS and not failed, failed
        for i in range(CLIENTS):  # every device holds the station's verified files, byte for byte
            assert Path(str(results[i])).name == source.commit
            assert snapshot_hashes(tmp_path / f"device-{i}", BERT, source.commit) == source.files
        for h in held:  # each held connection was closed by the station after its deadline, unanswered
            assert h.closed_at is not None and not h.answered, h.kind
            assert timeout * 0.8 <= h.held_for <= timeout + 3, (h.kind, h.held_for)
        status, _, body = get(url, "/metrics", ctx=tls_client(pki))
        metrics = body.decode()
        assert status == 200
        assert re.search(r'phaita_station_timeouts_total\{phase="handshake"\} 10\b', metrics), metrics
        assert re.search(r'phaita_station_timeouts_total\{phase="headers"\} 10\b', metrics), metrics
        growth = peak[0] - idle_rss
        assert growth < 64 << 20, f"station RSS grew by {growth >> 20} MiB under load"
        print(f"\nstation load: {CLIENTS} clients + {HELD} held connections (timeout {timeout:g} s): all "
              f"verified in {pulled:.1f} s; station RSS idle {idle_rss / 2**20:.1f} MiB, peak {peak[0] / 2**20:.1f} "
              f"MiB (+{growth / 2**20:.1f} MiB)")
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0


# --------------------------------------------------------------------------- access control


@pytest.fixture
def guarded(source, pki, tmp_path):
    """A station over TLS admitting a token of its file, or a client certificate of the site CA."""
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# devices of ward 7\nambulance-12 {TOKEN}\n")
    log = open(tmp_path / "access.log", "w", encoding="utf-8")
    index = build_index(source.cache)
    server = StationServer(index, tls=station_tls_context(pki.cert, pki.key, pki.ca),
                           access=Access(TokenFile(tokens), client_certs=True), access_log=log)
    with server:
        yield SimpleNamespace(url=server.url, server=server, log=tmp_path / "access.log", tokens=tokens)
    log.close()


def test_without_a_valid_token_or_certificate_401_or_403_and_no_bytes(guarded, source, pki):
    weights = f"/{BERT}/resolve/main/{WEIGHTS}"
    listing = f"/api/models/{BERT}/revision/main?blobs=true"
    plain = tls_client(pki)
    for path, method in ((weights, "GET"), (weights, "HEAD"), (listing, "GET"), ("/metrics", "GET")):
        status, headers, body = get(guarded.url, path, ctx=plain, method=method)
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer"), (path, method)
        assert "X-Repo-Commit" not in headers and "ETag" not in headers and source.commit.encode() not in body
        status, headers, body = get(guarded.url, path, ctx=plain, method=method,
                                    headers={"Authorization": "Bearer not-one-of-the-station-tokens"})
        assert status == 403 and "X-Repo-Commit" not in headers and source.commit.encode() not in body
        assert len(body) < 200
    with pytest.raises(ssl.SSLError):  # a certificate another CA signed: the handshake itself fails
        get(guarded.url, weights, ctx=tls_client(pki, pki.stranger))

    status, _, body = get(guarded.url, weights, ctx=plain, headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and hashlib.sha256(body).hexdigest() == source.files[WEIGHTS]
    status, _, body = get(guarded.url, weights, ctx=tls_client(pki, pki.device))
    assert status == 200 and hashlib.sha256(body).hexdigest() == source.files[WEIGHTS]

    deadline = time.monotonic() + 5  # a line is written once its answer is sent: the client may read first
    while len(guarded.log.read_text().splitlines()) < 10 and time.monotonic() < deadline:
        time.sleep(0.02)
    log = guarded.log.read_text().splitlines()
    assert len(log) == 10, log  # 8 refused, 2 served (the failed handshake never became a request)
    combined = re.compile(r'^127\.0\.0\.1 - (\S+) \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "(GET|HEAD) (\S+) '
                          r'HTTP/1\.1" (\d{3}) (\d+|-) "-" "[^"]*"$')
    parsed = [combined.match(line) for line in log]
    assert all(parsed), log
    assert [(m[1], m[4]) for m in parsed][-2:] == [("ambulance-12", "200"), ("ambulance-17", "200")]
    assert int(parsed[-1][5]) == len(body) and {m[4] for m in parsed[:-2]} == {"401", "403"}
    assert TOKEN not in guarded.log.read_text()
    metrics = guarded.server.metrics.render  # the server thread counts a failed handshake after the client saw it
    deadline = time.monotonic() + 5
    while "phaita_station_tls_handshake_failures_total 1" not in metrics() and time.monotonic() < deadline:
        time.sleep(0.02)
    status, _, body = get(guarded.url, "/metrics", ctx=plain, headers={"Authorization": f"Bearer {TOKEN}"})
    assert 'phaita_station_auth_failures_total{code="401"} 4' in body.decode()
    assert 'phaita_station_tls_handshake_failures_total 1' in body.decode()


def test_the_loader_with_and_without_the_station_token(guarded, source, pki, tmp_path, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "device"))
    with pytest.raises(AccessDeniedError) as info:
        prefetch_model(BERT, endpoints=[guarded.url], token=False, max_retries=2)
    assert info.value.attempts == 1  # refused for good: not retried
    assert not (tmp_path / "device" / "models--phaita-test--tiny-bert" / "blobs").exists() or not any(
        (tmp_path / "device" / "models--phaita-test--tiny-bert" / "blobs").iterdir())
    folder = prefetch_model(BERT, endpoints=[guarded.url], token=TOKEN)
    assert snapshot_hashes(tmp_path / "device", BERT, Path(folder).name) == source.files

    guarded.tokens.write_text("ambulance-99 " + "y" * 32 + "\n")  # the token revoked: read again when changed
    time.sleep(1.1)
    status, _, _ = get(guarded.url, f"/{BERT}/resolve/main/{WEIGHTS}", ctx=tls_client(pki),
                       headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 403


def test_certificates_only_refuse_a_client_without_one_with_403(source, pki):
    server = StationServer(build_index(source.cache), tls=station_tls_context(pki.cert, pki.key, pki.ca),
                           access=Access(None, client_certs=True))
    with server:
        status, _, body = get(server.url, f"/{BERT}/resolve/main/{WEIGHTS}", ctx=tls_client(pki))
        assert status == 403 and len(body) < 200
        status, _, body = get(server.url, f"/{BERT}/resolve/main/{WEIGHTS}", ctx=tls_client(pki, pki.device))
        assert status == 200 and hashlib.sha256(body).hexdigest() == source.files[WEIGHTS]


# --------------------------------------------------------------------------- connection bounds


@pytest.mark.parametrize("bound", ["max_per_client", "max_connections"])
def test_connections_past_the_bound_are_closed_at_once(source, bound):
    server = StationServer(build_index(source.cache), limits=Limits(**{bound: 2}, header_timeout=5))
    with server:
        host, port = "127.0.0.1", server.port
        idle = [socket.create_connection((host, port)) for _ in range(2)]
        deadline = time.monotonic() + 5
        while server.connections < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        third = socket.create_connection((host, port), timeout=5)
        answer = third.recv(4096)
        assert answer.startswith(b"HTTP/1.1 503") and b"Retry-After: 1" in answer
        assert third.recv(4096) == b""  # and closed
        for s in idle + [third]:
            s.close()
        deadline = time.monotonic() + 5
        while server.connections and time.monotonic() < deadline:
            time.sleep(0.01)
        status, _, _ = get(server.url, f"/{BERT}/resolve/main/config.json")  # slots are given back
        assert status == 200
        reason = "per_client" if bound == "max_per_client" else "max_connections"
        assert f'phaita_station_connections_rejected_total{{reason="{reason}"}} 1' in server.metrics.render()


# --------------------------------------------------------------------------- models imported while it runs


def test_a_model_imported_while_running_is_served_once_verified_never_before(source, tmp_path, monkeypatch):
    station_cache = tmp_path / "station"
    shutil.copytree(source.cache, station_cache, symlinks=True)
    server = StationServer(build_index(station_cache), rescan_every=0.1)
    seen: list[int] = []
    with server, LocalHub(source.hub_root, connection_rate=200_000) as origin:  # a slow import: ~1-2 s
        assert get(server.url, f"/api/models/{GPT2}/revision/main")[0] == 404
        failed: list[BaseException] = []

        def pull() -> None:
            try:
                prefetch_model(GPT2, cache_dir=str(station_cache), endpoints=[origin.url])
            except BaseException as exc:  # collected: the import's own failure is this test's failure
                failed.append(exc)

        importing = threading.Thread(target=pull)
        importing.start()
        while importing.is_alive():  # while the files arrive, the station never answers with the model
            seen.append(get(server.url, f"/{GPT2}/resolve/main/{WEIGHTS}")[0])
        importing.join()
        assert failed == []
        commit = origin.commit_sha(GPT2)
        # a bound on the wait for the next rescan (every 0.1 s), not a speed: generous for a loaded machine
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status, headers, body = get(server.url, f"/{GPT2}/resolve/main/{WEIGHTS}")
            if status == 200:
                break
            time.sleep(0.05)
        assert status == 200 and headers["X-Repo-Commit"] == commit
        assert hashlib.sha256(body).hexdigest() == snapshot_hashes(station_cache, GPT2, commit)[WEIGHTS]
    assert len(seen) > 3 and set(seen) == {404}, seen
    assert any(s.repo_id == GPT2 for s in server.index.snapshots)


def test_an_imported_copy_that_fails_verification_is_never_served(source, tmp_path):
    station_cache = tmp_path / "station"
    station_cache.mkdir()
    server = StationServer(build_index(station_cache), rescan_every=0.1)
    with server:
        repo = cache.repo_dir(source.cache, BERT)
        target = cache.repo_dir(station_cache, BERT)
        shutil.copytree(repo, target, symlinks=True)  # imported whole, but one byte of the weights flipped
        blob = Path(os.path.realpath(target / "snapshots" / source.commit / WEIGHTS))
        data = bytearray(blob.read_bytes())
        data[len(data) // 2] ^= 0xFF
        blob.write_bytes(bytes(data))
        deadline = time.monotonic() + 30  # a bound on the wait for a rescan (every 0.1 s), not a speed
        while time.monotonic() < deadline and not server.index.refused:
            assert get(server.url, f"/{BERT}/resolve/main/{WEIGHTS}")[0] == 404
            time.sleep(0.05)
        reasons = [r.reason for r in server.index.refused if r.repo_id == BERT]
        assert reasons and reasons[0].startswith("failed verification: model.safetensors: sha256 mismatch")
        assert get(server.url, f"/{BERT}/resolve/main/{WEIGHTS}")[0] == 404
        data[len(data) // 2] ^= 0xFF  # repaired (the right bytes imported again): served after verification
        blob.write_bytes(bytes(data))
        deadline = time.monotonic() + 30  # the next rescans' bound on a loaded machine, not a speed
        while time.monotonic() < deadline and get(server.url, f"/{BERT}/resolve/main/{WEIGHTS}")[0] != 200:
            time.sleep(0.05)
        status, _, body = get(server.url, f"/{BERT}/resolve/main/{WEIGHTS}")
        assert status == 200 and hashlib.sha256(body).hexdigest() == source.files[WEIGHTS]
        assert 'phaita_station_snapshots{state="served"} 1' in server.metrics.render()


# --------------------------------------------------------------------------- usage


@pytest.mark.parametrize("argv, message", [
    (["--tokens", "{tokens}"], "options of the station mirror: give --cache"),
    (["--cache", "{cache}", "--client-ca", "{ca}"], "--client-ca needs --tls-cert"),
    (["--cache", "{cache}", "--tokens", "{empty}"], "holds no token"),
    (["--cache", "{cache}", "--tokens", "{short}"], "at least 16 printable ASCII characters"),
])
def test_station_usage_errors_exit_2(argv, message, source, pki, tmp_path):
    from typer.testing import CliRunner

    from phaita.cli.main import app

    (tmp_path / "tokens").write_text(TOKEN + "\n")
    (tmp_path / "empty").write_text("# nobody yet\n")
    (tmp_path / "short").write_text("abc\n")
    names = {"tokens": tmp_path / "tokens", "cache": source.cache, "ca": pki.ca, "empty": tmp_path / "empty",
             "short": tmp_path / "short"}
    result = CliRunner().invoke(app, ["hub", "serve", *[a.format(**names) for a in argv]])
    output = " ".join(result.output.replace("│", " ").split())
    assert result.exit_code == 2, result.output
    assert message in output and "Traceback" not in output


def test_a_branch_moved_to_a_commit_still_importing_keeps_the_verified_one(source, tmp_path):
    """refs/main names a new commit whose weights have not arrived: main stays the verified commit."""
    station_cache = tmp_path / "station"
    shutil.copytree(source.cache, station_cache, symlinks=True)
    server = StationServer(build_index(station_cache), rescan_every=0.1)
    repo = cache.repo_dir(station_cache, BERT)
    new = "e" * 40
    with server:
        (repo / "snapshots" / new).mkdir()
        os.symlink(os.readlink(repo / "snapshots" / source.commit / "config.json"), repo / "snapshots" / new /
                   "config.json")
        (repo / "refs" / "main").write_text(new)
        deadline = time.monotonic() + 30  # a bound on the wait for a rescan (every 0.1 s), not a speed
        while time.monotonic() < deadline and not any(r.commit == new for r in server.index.refused):
            time.sleep(0.05)
        assert any(r.commit == new and r.reason.startswith("partial") for r in server.index.refused)
        status, headers, body = get(server.url, f"/{BERT}/resolve/main/{WEIGHTS}")
        assert status == 200 and headers["X-Repo-Commit"] == source.commit
        assert hashlib.sha256(body).hexdigest() == source.files[WEIGHTS]
        assert get(server.url, f"/{BERT}/resolve/{new}/config.json")[0] == 404


def test_sighup_rescans_at_once_and_the_access_log_goes_to_stderr(source, tmp_path):
    """`--rescan 0`: nothing looks at the cache until `kill -HUP`; then the copied-in model is verified and served."""
    import signal

    station_cache = tmp_path / "station"
    (station_cache / "models--acme--placeholder" / "snapshots").mkdir(parents=True)  # a cache, nothing servable
    proc = subprocess.Popen([str(BIN / "phaita"), "hub", "serve", "--cache", str(station_cache), "--rescan", "0",
                             "--access-log", "-"], env=client_env(tmp_path / "home", "http://127.0.0.1:9"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), proc.stderr.read()
        shutil.copytree(cache.repo_dir(source.cache, BERT), cache.repo_dir(station_cache, BERT), symlinks=True)
        time.sleep(0.3)
        assert get(url, f"/{BERT}/resolve/main/{WEIGHTS}")[0] == 404  # no rescan without the signal
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and get(url, f"/{BERT}/resolve/main/{WEIGHTS}")[0] != 200:
            time.sleep(0.05)
        status, _, body = get(url, f"/{BERT}/resolve/main/{WEIGHTS}")
        assert status == 200 and hashlib.sha256(body).hexdigest() == source.files[WEIGHTS]
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0
    err = proc.stderr.read()
    assert f"# rescan: now serving {BERT} {source.commit}" in err
    assert re.search(rf'^127\.0\.0\.1 - - \[.*\] "GET /{BERT}/resolve/main/{WEIGHTS} HTTP/1\.1" 404 \d+ ', err, re.M), err
    assert re.search(rf'"GET /{BERT}/resolve/main/{WEIGHTS} HTTP/1\.1" 200 {len(body)} ', err), err


def test_a_signature_imported_after_its_snapshot_is_served_at_the_next_rescan(source, tmp_path):
    station_cache = tmp_path / "station"
    shutil.copytree(source.cache, station_cache, symlinks=True)
    server = StationServer(build_index(station_cache), rescan_every=0.1)
    with server:
        assert get(server.url, f"/{BERT}/resolve/main/model.sig")[0] == 404
        signature = cache.RepoCache(station_cache, BERT).signature_path(source.commit)
        signature.parent.mkdir(parents=True, exist_ok=True)
        signature.write_bytes(b'{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json"}')
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and get(server.url, f"/{BERT}/resolve/main/model.sig")[0] != 200:
            time.sleep(0.05)
        status, headers, body = get(server.url, f"/{BERT}/resolve/main/model.sig")
        assert status == 200 and body == signature.read_bytes() and headers["X-Repo-Commit"] == source.commit
