"""The local hub as a real link: a per-connection rate cap, a parallel-download limit, range faults."""

from __future__ import annotations

import hashlib
import http.client
import threading
import time
from urllib.parse import urlsplit

import pytest

from phaita.testing import FaultPlan, LocalHub, parse_faults
from phaita.testing.faults import Pacer

REPO = "acme/link"


@pytest.fixture
def link_hub(tmp_path, make_repo):
    payload = b"".join(hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(40_000))  # 1.28 MB
    make_repo(tmp_path / "root", REPO, {"model.safetensors": payload})
    with LocalHub(tmp_path / "root") as hub:
        hub.payload = payload
        yield hub


def _get(hub: LocalHub, headers: dict | None = None):
    parts = urlsplit(hub.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.request("GET", f"/{REPO}/resolve/main/model.safetensors", headers=headers or {})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp, body


def test_pacer_schedule_holds_the_rate():
    now = [100.0]
    pacer = Pacer(1000.0, clock=lambda: now[0])
    assert pacer.piece == 20  # 1/50 s worth
    waits = [pacer.wait_before(100) for _ in range(5)]  # sent back to back: each waits for the last
    assert waits == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    now[0] += 10  # idle: no credit builds up, the next piece goes at once and the one after waits
    assert pacer.wait_before(500) == 0.0 and pacer.wait_before(1) == pytest.approx(0.5)


def test_rate_cap_is_per_connection(link_hub):
    """Paced bytes arrive whole; the cap applies to each connection separately (plan or argument)."""
    link_hub.set_faults("cap:20m")
    assert link_hub.rate_limit() == 20e6
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(_get(link_hub))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert [body == link_hub.payload for _, body in results] == [True] * 3
    link_hub.set_faults(None)
    assert link_hub.rate_limit() is None
    with pytest.raises(ValueError):
        LocalHub(link_hub.root, connection_rate=0)
    assert LocalHub(link_hub.root, faults="cap:1m", connection_rate=5e6).rate_limit() == 5e6


def test_max_transfers_answers_429_beyond_the_limit(link_hub):
    link_hub.set_faults(FaultPlan(connection_rate=4e5, max_transfers=1))  # the first GET takes ~3 s (slack on a busy machine)
    first: list = []
    t = threading.Thread(target=lambda: first.append(_get(link_hub)))
    t.start()
    while not link_hub.requests("/resolve/"):
        threading.Event().wait(0.01)
    threading.Event().wait(0.1)
    resp, _ = _get(link_hub)
    t.join(30)
    assert resp.status == 429
    assert first[0][0].status == 200 and first[0][1] == link_hub.payload
    # Free again once the server thread has counted the first transfer out: it does that after its last
    # write, which can come a moment after the client has read the whole body (seen once in CI).
    deadline = time.monotonic() + 10
    while (status := _get(link_hub)[0].status) == 429 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert status == 200


def test_range_faults(link_hub):
    link_hub.set_faults("ignore_range")
    resp, body = _get(link_hub, {"Range": "bytes=1000-1999"})
    assert resp.status == 200 and body == link_hub.payload and resp.getheader("Content-Range") is None
    link_hub.set_faults("wrong_range")
    resp, body = _get(link_hub, {"Range": "bytes=1000-1999"})
    assert resp.status == 206 and resp.getheader("Content-Range") == f"bytes 0-999/{len(link_hub.payload)}"
    assert body == link_hub.payload[:1000]


def test_parse_link_items():
    plan = parse_faults("cap:20m,maxconn:4,wrong_range@500x2")
    assert plan.connection_rate == 20e6 and plan.max_transfers == 4 and bool(plan)
    assert plan.rules[0].kind == "wrong_range" and plan.rules[0].after_bytes == 500
    assert "connection_rate=2e+07" in repr(plan)
    for bad in ("cap", "cap:0", "maxconn:0", "cap:fast", "maxconn:2:x=1"):
        with pytest.raises(ValueError):
            parse_faults(bad)
