"""Broken and hostile servers (small ``http.server`` handlers on 127.0.0.1, see hostile_server.py):
no request storms, errors that name what really happened, nothing refused left behind.

The bound on requests per file per attempt is the progress guard's
(``phaita.loader.transfer.progress_guard``): an answer that adds no new bytes is a *stuck* answer;
after ``STUCK_TRIES`` (3) of them, with pauses of 0.25, 0.5 and 1 s, the file fails for good. So a
hub that restarts every resume from byte 0 gets exactly 1 (the first answer) + 1 (the resume that
restarts) + 3 (the stuck retries) = 5 requests, whatever the attempt's deadline and ``max_retries``.
"""

from __future__ import annotations

import gzip
import logging
import os
from pathlib import Path

import pytest

from hostile_server import COMMIT, HostileFile, HostileHub, serve_normally
from phaita.loader.events import Requested
from phaita.loader.transfer.progress_guard import STUCK_TRIES
from phaita.utils.model_loader import ModelDownloadError, is_model_cached, prefetch_model

REPO = "acme/hostile"
SIZE = 300_000
CUT = 100_000
STORM_BOUND = 1 + 1 + STUCK_TRIES  # first answer, the resume that restarts at 0, the stuck retries


@pytest.fixture
def data() -> bytes:
    return os.urandom(SIZE)


def _hub(weights: HostileFile) -> HostileHub:
    return HostileHub({"config.json": HostileFile(b'{"model_type": "bert"}', lfs=False),
                       "model.safetensors": weights}, repo=REPO)


@pytest.fixture
def serve(loader_env, monkeypatch):
    hubs: list[HostileHub] = []

    def start(hub: HostileHub) -> HostileHub:
        hub.start()
        hubs.append(hub)
        if len(hubs) == 1:
            monkeypatch.setenv("HF_ENDPOINT", hub.url)
        return hub

    yield start
    for hub in hubs:
        hub.stop()


def _fetch(**kwargs) -> tuple[ModelDownloadError, list[Requested]]:
    seen: list = []
    with pytest.raises(ModelDownloadError) as info:
        prefetch_model(REPO, events=seen.append, **kwargs)
    return info.value, [e for e in seen if isinstance(e, Requested) and e.path == "model.safetensors"]


def _nothing_left(cache: Path) -> None:
    """No partial file, no blob of the refused file, nothing reachable as a model."""
    repo = cache / "models--acme--hostile"
    blobs = sorted(p.name for p in (repo / "blobs").iterdir()) if (repo / "blobs").is_dir() else []
    assert not [b for b in blobs if b.endswith(".incomplete")], blobs
    assert not (repo / "refs").exists()
    assert not is_model_cached(REPO)


# --------------------------------------------------------------------------- no progress: stop


def _cut_ignoring_ranges(h, data, rng):
    """Ignores Range; 200 with the right length, the first CUT bytes, then the socket shut."""
    h.reply(200, data[:CUT], {"Content-Length": str(len(data))}, close=True)


def _announce_half_send_all(h, data, rng):
    """Ignores Range; announces half the file, then writes all of it on a kept-alive connection."""
    h.send_response(200)
    h.send_header("Content-Length", str(len(data) // 2))
    h.end_headers()
    h.server.hub.seen[-1].status = 200
    h.wfile.write(data)


def _more_than_the_file(h, data, rng):
    """Ignores Range; no Content-Length, the file and then 50 kB more, then close."""
    h.send_response(200)
    h.send_header("Connection", "close")
    h.end_headers()
    h.server.hub.seen[-1].status = 200
    h.close_connection = True
    h.wfile.write(data + b"\0" * 50_000)


@pytest.mark.parametrize("behaviour, cause, requests", [
    (_cut_ignoring_ranges, f"the hub ignores Range requests (it answers them with the whole file from byte 0); "
                           f"every answer ends at byte {CUT} of {SIZE}", STORM_BOUND),
    (_announce_half_send_all, f"its answers announce Content-Length {SIZE // 2}", STORM_BOUND),
    # an overrun is stuck from the first answer on (its bytes cannot be trusted to be the file's)
    (_more_than_the_file, f"the hub sends more bytes than the {SIZE} it announces", 1 + STUCK_TRIES),
])
def test_answers_that_add_no_new_bytes_end_in_a_bounded_number_of_requests(serve, loader_env, data, caplog,
                                                                          behaviour, cause, requests):
    hub = serve(_hub(HostileFile(data, behaviour)))
    err, requested = _fetch(max_retries=3, timeout=30)
    asked = hub.requests("model.safetensors")
    # bounded by design, in the only attempt (not by the 30 s deadline: 2,854 requests in 8 s before the guard)
    assert len(asked) == requests <= STORM_BOUND, [(s.range, s.status) for s in asked]
    assert [e.count for e in requested] == list(range(1, requests + 1)), "one event per request, counted"
    assert type(err).__name__ == "BrokenServerError" and not err.transient and err.attempts == 1
    assert cause in str(err), str(err)
    assert "timed out" not in str(err) and "purge" not in str(err)
    # with a pause before each stuck retry (the log says so)
    pauses = [r.getMessage() for r in caplog.records if "added no new bytes" in r.getMessage()]
    assert [p.split("asking again in ")[1].split(" s")[0] for p in pauses] == ["0.25", "0.50", "1.00"]
    _nothing_left(Path(loader_env["HF_HUB_CACHE"]))


def test_answers_that_are_cut_but_advance_resume_at_once(serve, loader_env, data):
    """Positive control: a proxy that caps every answer at 100 kB but honours Range finishes the file."""
    def capped(h, data, rng):
        start = rng[0] if rng else 0
        h.reply(206 if rng else 200, data[start:start + CUT],
                {"Content-Length": str(SIZE - start)} | ({"Content-Range": f"bytes {start}-{SIZE - 1}/{SIZE}"}
                                                        if rng else {}), close=True)

    hub = serve(_hub(HostileFile(data, capped)))
    snapshot = Path(prefetch_model(REPO, max_retries=1, timeout=30))
    assert (snapshot / "model.safetensors").read_bytes() == data
    assert [s.range for s in hub.requests("model.safetensors")] == [None, "bytes=100000-", "bytes=200000-"]


# --------------------------------------------------------------------------- what was observed


def test_a_compressed_body_is_refused_with_its_own_message(serve, loader_env, data):
    def gzipped(h, data, rng):
        body = gzip.compress(data)
        h.reply(200, body, {"Content-Encoding": "gzip", "Content-Length": str(len(body))})

    hub = serve(_hub(HostileFile(data, gzipped)))
    err, _ = _fetch(max_retries=3, timeout=30)
    asked = hub.requests("model.safetensors")
    assert len(asked) == 1 and asked[0].accept_encoding == "identity"
    assert type(err).__name__ == "BrokenServerError" and err.attempts == 1 and not err.transient
    assert "compressed (Content-Encoding: gzip)" in str(err) and "Accept-Encoding: identity" in str(err)
    assert "purge" not in str(err) and "sha256" not in str(err)
    _nothing_left(Path(loader_env["HF_HUB_CACHE"]))


def test_content_that_changes_between_requests_says_so(serve, loader_env, data):
    """The first answer breaks at 100 kB; the resume's 206 carries other bytes under the same headers."""
    other = bytes(b ^ 0xFF for b in data)

    def changing(h, data, rng):
        if rng is None:
            h.reply(200, data[:CUT], {"Content-Length": str(SIZE)}, close=True)
        else:
            serve_normally(h, other, rng)

    hub = serve(_hub(HostileFile(data, changing)))
    err, _ = _fetch(max_retries=2, timeout=30)
    assert "changed while it was being fetched" in str(err), str(err)
    assert "its 2 answers (from bytes 0, 100000)" in str(err)
    assert "purge" not in str(err) and err.transient and err.attempts == 2
    # per attempt: the two answers, then the recheck in one answer, which breaks and resumes the same way
    assert [s.range for s in hub.requests("model.safetensors")] == [None, f"bytes={CUT}-"] * 4
    _nothing_left(Path(loader_env["HF_HUB_CACHE"]))


def _in_pieces(monkeypatch) -> bytes:
    monkeypatch.setenv("PHAITA_PARALLEL_THRESHOLD", str(64 << 10))
    monkeypatch.setenv("PHAITA_STREAMS_PER_FILE", "4")
    return os.urandom(1 << 20)


def test_a_corrupt_copy_fetched_in_pieces_is_named_a_corrupt_copy(serve, loader_env, monkeypatch):
    """A server whose copy is wrong (the same wrong bytes to every request, Range honoured) under the
    hub's hash: the pieces do not add up, the file once more in one answer brings the same wrong bytes,
    so the error says the copy is corrupt (purge it), not that the file changed while it was fetched."""
    big = _in_pieces(monkeypatch)
    wrong = big[:700_000] + bytes([big[700_000] ^ 0xFF]) + big[700_001:]
    hub = serve(_hub(HostileFile(big, lambda h, data, rng: serve_normally(h, wrong, rng))))
    err, _ = _fetch(max_retries=1, timeout=30)
    asked = [s.range for s in hub.requests("model.safetensors")]
    assert len(set(asked)) > 2 and asked[-1] is None and asked.count(None) == 1, asked  # pieces, then whole
    assert "serves a copy of model.safetensors whose sha256 does not match; purge it" in str(err), str(err)
    assert "changed while it was being fetched" not in str(err)
    _nothing_left(Path(loader_env["HF_HUB_CACHE"]))


def test_a_piece_corrupted_on_the_way_is_fetched_again_whole_and_loads(serve, loader_env, monkeypatch):
    """One range answer damaged once (a flaky proxy): the one-answer recheck is right, the load goes on
    in the same attempt."""
    big = _in_pieces(monkeypatch)
    damaged: list = []

    def once(h, data, rng):
        if rng is not None and rng[0] > 0 and not damaged:
            damaged.append(rng)
            data = data[:rng[0]] + bytes([data[rng[0]] ^ 0xFF]) + data[rng[0] + 1:]
        serve_normally(h, data, rng)

    hub = serve(_hub(HostileFile(big, once)))
    snapshot = Path(prefetch_model(REPO, max_retries=1, timeout=30))
    assert (snapshot / "model.safetensors").read_bytes() == big and damaged
    assert hub.requests("model.safetensors")[-1].range is None  # the recheck, whole


def test_an_error_from_the_redirect_target_names_that_host(serve, loader_env, data):
    def redirect(h, data, rng):
        h.reply(302, b"", {"Location": f"{cdn.url}/{REPO}/resolve/{COMMIT}/model.safetensors"})

    hub = serve(_hub(HostileFile(data, redirect)))
    cdn = serve(HostileHub({}, repo=REPO))  # knows no file: 404 for everything
    assert hub.url != cdn.url
    err, _ = _fetch(max_retries=1, timeout=30)
    assert f"HTTP 404 from {cdn.url}, where the hub redirected the download" in str(err), str(err)
    assert "file announced but missing" not in str(err)
    assert cdn.requests("model.safetensors"), "the redirect was followed"


def test_a_connection_failure_at_the_redirect_target_names_that_host(serve, loader_env, data):
    """Nothing listens where the hub redirects the download: the error names that host, not the hub."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"  # closed again: connection refused

    def redirect(h, data, rng):
        h.reply(302, b"", {"Location": f"{dead}/{REPO}/resolve/{COMMIT}/model.safetensors"})

    hub = serve(_hub(HostileFile(data, redirect)))
    err, _ = _fetch(max_retries=1, timeout=30)
    assert f"at {dead}, where the hub redirected the download" in str(err), str(err)
    assert "ConnectError" in str(err) and err.transient
    assert f"at {hub.url}" not in str(err)
    repo = Path(loader_env["HF_HUB_CACHE"]) / "models--acme--hostile"
    assert not (repo / "refs").exists() and not is_model_cached(REPO)  # a transient failure: nothing visible


def test_server_text_in_log_lines_is_escaped(serve, loader_env, data, caplog):
    """A header from the server quoted in an error cannot fake a log line, colour a terminal or reverse text."""
    def lying(h, data, rng):
        if rng is None:
            h.reply(200, data[:CUT], {"Content-Length": str(SIZE)}, close=True)
            return
        h.server.hub.seen[-1].status = 206
        h.close_connection = True
        h.wfile.write(b"HTTP/1.1 206 Partial Content\r\nContent-Length: 0\r\nConnection: close\r\n"
                      + "Content-Range: bytes 7-8/9 \x1b[31mred \u202eevil\r\n\r\n".encode())

    serve(_hub(HostileFile(data, lying)))
    err, _ = _fetch(max_retries=2, timeout=30)
    lines = [r.getMessage() for r in caplog.records if r.name == "phaita.model_loader"]
    assert any("attempt 1/2 failed" in line and "Content-Range" in line for line in lines), lines
    assert any("\\x1b[31mred \\u202eevil" in line for line in lines), "the server's text, escaped"
    for text in lines + [str(err)]:
        assert "\x1b" not in text and "\u202e" not in text, repr(text)


# --------------------------------------------------------------------------- names that cannot spoof


@pytest.mark.parametrize("names, why, shown", [
    (["x\nINFO fake log line"], "control character", "'x\\nINFO fake log line'"),
    (["\x1b[31mred.txt"], "control character", "'\\x1b[31mred.txt'"),
    (["\u202eevil.txt"], "format character (U+202E RIGHT-TO-LEFT OVERRIDE)", "'\\u202eevil.txt'"),
    (["zero\u200bwidth.txt"], "format character (U+200B ZERO WIDTH SPACE)", "'zero\\u200bwidth.txt'"),
    (["Config.json"], "one file on a case-insensitive", "'Config.json'"),
    (["caf\u00e9.txt", "cafe\u0301.txt"], "one file on a case-insensitive or Unicode-normalising", "'café.txt'"),
    (["\ufb01le.txt", "file.txt"], "one file on a case-insensitive or Unicode-normalising", "'file.txt'"),
    (["CONFIG.JSON/evil"], "both as a file and a folder", "'CONFIG.JSON/evil'"),
    ([".git/config"], "inside a .git folder", "'.git/config'"),
    (["sub/.GIT/hooks/post-checkout"], "inside a .git folder", "'sub/.GIT/hooks/post-checkout'"),
    (["a" * 300 + ".txt"], "longer than 255 bytes", "'aaaa"),
])
def test_a_listing_with_unsafe_names_is_refused_before_any_byte_is_written(serve, loader_env, names, why, shown):
    hub = _hub(HostileFile(b"weights"))
    hub.extra_siblings = [{"rfilename": n, "size": 3, "blobId": "0" * 40} for n in names]
    serve(hub)
    with pytest.raises(ModelDownloadError) as info:
        prefetch_model(REPO, max_retries=3, backoff_base=5)
    err = info.value
    assert type(err).__name__ == "UnsafeListingError" and err.attempts == 1 and not err.transient
    from phaita.loader import BadListingError, UnsafeModelError
    assert isinstance(err, BadListingError) and isinstance(err, UnsafeModelError)
    assert why in str(err) and shown in str(err), str(err)
    for raw in ("\n" + "INFO", "\x1b", "\u202e", "\u200b"):
        assert raw not in str(err), "the name is shown escaped"
    assert hub.file_requests() == [], "no file was fetched"
    assert not (Path(loader_env["HF_HUB_CACHE"]) / "models--acme--hostile").exists(), "nothing was written"


def test_too_many_files_are_refused_at_the_stated_bound(serve, loader_env, monkeypatch):
    hub = _hub(HostileFile(b"weights"))
    hub.files.update({f"f{i}.txt": HostileFile(b"%d" % i, lfs=False) for i in range(9)})
    serve(hub)
    monkeypatch.setenv("PHAITA_MAX_FILES", "10")
    with pytest.raises(ModelDownloadError, match=r"listed 11 files, more than the limit of 10 \(PHAITA_MAX_FILES\)"):
        prefetch_model(REPO)
    assert hub.file_requests() == []
    monkeypatch.setenv("PHAITA_MAX_FILES", "11")  # at the bound: accepted
    assert (Path(prefetch_model(REPO)) / "f8.txt").read_bytes() == b"8"


def test_ordinary_names_are_accepted(serve, loader_env):
    """Positive control: non-ASCII letters, .gitattributes, a .github folder, a 255-byte name all load."""
    files = {"config.json": HostileFile(b'{"model_type": "bert"}', lfs=False),
             "model.safetensors": HostileFile(b"weights"),
             ".gitattributes": HostileFile(b"*.bin lfs\n", lfs=False),
             ".github/workflows/ci.yml": HostileFile(b"on: push\n", lfs=False),
             "caf\u00e9-\u65e5\u672c.txt": HostileFile(b"ok", lfs=False),
             "n" * 251 + ".txt": HostileFile(b"long", lfs=False)}
    serve(HostileHub(files, repo=REPO))
    snapshot = Path(prefetch_model(REPO))
    assert (snapshot / "caf\u00e9-\u65e5\u672c.txt").read_bytes() == b"ok"
    assert (snapshot / ("n" * 251 + ".txt")).read_bytes() == b"long"


def test_tiny_answers_that_advance_are_bounded_per_attempt_too(serve, loader_env, data):
    """A hub that honours Range but ends every answer after 1,000 bytes: each answer advances, so it
    resumes at once, but at most max_breaks(size) (32 for 300 kB) times per file per attempt; then
    the attempt ends (transient: the next one resumes where it stopped)."""
    from phaita.loader.transfer.progress_guard import max_breaks

    def tiny(h, data, rng):
        start = rng[0] if rng else 0
        headers = {"Content-Length": str(SIZE - start)}
        if rng:
            headers["Content-Range"] = f"bytes {start}-{SIZE - 1}/{SIZE}"
        h.reply(206 if rng else 200, data[start:start + 1000], headers, close=True)

    hub = serve(_hub(HostileFile(data, tiny)))
    err, requested = _fetch(max_retries=2, timeout=30)
    bound = 1 + max_breaks(SIZE)
    assert max_breaks(SIZE) == 32
    assert len(hub.requests("model.safetensors")) == 2 * bound, "33 per attempt, two attempts"
    assert max(e.count for e in requested) == bound
    assert err.transient and "33 answers broke off in this attempt (at most 32" in str(err), str(err)
    assert "the next attempt resumes at byte 66000" in str(err)  # the second attempt went on from 33,000


def test_answers_that_all_stop_at_one_byte_name_it(serve, loader_env, data):
    """Range honoured, but every answer stops at byte 100,000 of the file (a proxy capping the object):
    the resumes' answers end before their first byte; after the empty-answer budget (3, with pauses of
    0.5, 1, 2 s) the attempt ends naming the byte: 1 + 3 + 1 = 5 requests in the attempt."""
    from phaita.loader.transfer.empty_break import RETRIES

    def capped_at(h, data, rng):
        start = rng[0] if rng else 0
        headers = {"Content-Length": str(SIZE - start)}
        if rng:
            headers["Content-Range"] = f"bytes {start}-{SIZE - 1}/{SIZE}"
        h.reply(206 if rng else 200, data[start:CUT], headers, close=True)

    hub = serve(_hub(HostileFile(data, capped_at)))
    err, requested = _fetch(max_retries=1, timeout=30)
    assert len(hub.requests("model.safetensors")) == 1 + 1 + RETRIES == max(e.count for e in requested)
    assert f"{RETRIES + 1} answers in a row ended at byte {CUT} of {SIZE} with no byte after it" in str(err), str(err)
    assert err.transient  # a mirror relaying an upstream fault answers this way too, and recovers


def test_parallel_range_streams_share_the_bound(serve, loader_env, monkeypatch):
    """The same budget holds over parallel range streams (one guard per file per attempt): a 1 MiB
    file over 4 streams from a hub that ends every answer after 1,000 bytes stops after 33 broken
    answers, plus at most one request in flight per stream."""
    from phaita.loader.transfer.progress_guard import max_breaks

    monkeypatch.setenv("PHAITA_PARALLEL_THRESHOLD", str(64 << 10))
    monkeypatch.setenv("PHAITA_STREAMS_PER_FILE", "4")
    big = os.urandom(1 << 20)

    def tiny(h, data, rng):
        start, end = rng if rng else (0, len(data) - 1)
        headers = {"Content-Length": str(end - start + 1)}
        if rng:
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        h.reply(206 if rng else 200, data[start:min(end + 1, start + 1000)], headers, close=True)

    hub = serve(_hub(HostileFile(big, tiny)))
    err, requested = _fetch(max_retries=1, timeout=30)
    asked = hub.requests("model.safetensors")
    assert len({s.range for s in asked}) > 4, "fetched over several range streams"
    assert len(asked) <= 1 + max_breaks(len(big)) + 2 * 4, len(asked)
    assert len(asked) == max(e.count for e in requested)
    assert err.transient and "answers broke off in this attempt (at most 32" in str(err), str(err)
