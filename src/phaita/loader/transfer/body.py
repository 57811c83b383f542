"""A response body read straight from the connection's socket into one reused buffer.

httpx (h11 underneath) hands a body over in 64 KiB pieces, each copied twice through h11's
receive buffer: on a fast link that costs about 2 s of CPU per GB, more than the sha256 of the
same bytes, and it holds the GIL. For a plain HTTP/1.1 body of announced length (the case of a
file from a hub, a mirror or a CDN), :func:`chunks` yields the first piece through httpx (which
empties h11's buffer: h11 gives all it holds in one piece), then reads the rest with
``recv_into`` into a buffer of :data:`BUFFER` bytes, exactly ``Content-Length`` bytes, never more.
Everything else (chunked or compressed bodies, HTTP/2, TLS inside a proxy's TLS) goes through httpx
as before. Read timeouts and failures become httpx's own ``ReadTimeout``/``ReadError``, a
body that ends early raises httpx's ``RemoteProtocolError``, as h11 does; bytes received
before any failure are yielded first, so a break loses none of them. The connection is not reused
after a direct read (httpx closes it: h11 never saw the body's end); a socket shut from another
thread (the deadline's watchdog, a stalled stream's hand-off) ends the read at once.
"""

from __future__ import annotations

import socket
import ssl
import time
from typing import Any, Callable, Iterator

import httpx2

BUFFER = 1 << 20  # one write and one progress update per MiB; the buffer is reused (bounded memory)
FLUSH_AFTER = 0.25  # seconds: a slow body is handed over at least this often, full buffer or not


def _direct_socket(response: httpx2.Response) -> socket.socket | None:
    """The socket the body can be read from as is, or None (read it through httpx)."""
    headers = response.headers
    length = headers.get("Content-Length", "").strip()
    if not length.isdigit() or "Transfer-Encoding" in headers or response.http_version != "HTTP/1.1":
        return None
    if headers.get("Content-Encoding", "identity").strip().lower() not in ("", "identity"):
        return None
    stream = response.extensions.get("network_stream")
    if stream is None:
        return None
    sock = stream.get_extra_info("socket")
    tls = stream.get_extra_info("ssl_object")
    if not isinstance(sock, socket.socket):
        return None
    if tls is not None and tls is not sock:  # TLS over a TLS proxy: the socket carries the outer layer
        return None
    if tls is None and isinstance(sock, ssl.SSLSocket):
        return None
    return sock


def chunks(response: httpx2.Response, read_timeout: Callable[[], float],
           on_read: Callable[[], Any] | None = None) -> Iterator[bytes | memoryview]:
    """The body of ``response`` in pieces; a yielded memoryview is valid until the next one is asked for."""
    sock = _direct_socket(response)
    raw = response.iter_raw()
    if sock is None:
        yield from raw
        return
    left = int(response.headers["Content-Length"])
    first = next(raw, b"")
    left -= len(first)
    if first:
        yield first
    if left <= 0:
        return
    buf = memoryview(bytearray(min(BUFFER, left)))
    filled, since = 0, time.monotonic()
    closed: httpx2.RemoteProtocolError | None = None
    try:
        while left > 0:
            sock.settimeout(max(read_timeout(), 0.001))
            n = sock.recv_into(buf[filled:], min(len(buf) - filled, left))
            if not n:  # closed early: what httpx raises then (after the bytes received are handed over)
                closed = httpx2.RemoteProtocolError(
                    f"peer closed connection without sending complete message body ({left} bytes short)")
                break
            if on_read is not None:
                on_read()
            filled += n
            left -= n
            if filled == len(buf) or left == 0 or time.monotonic() - since > FLUSH_AFTER:
                yield buf[:filled]
                filled, since = 0, time.monotonic()
    except socket.timeout as exc:
        if filled:
            yield buf[:filled]
        raise httpx2.ReadTimeout(f"no data for {read_timeout():.3g} s ({exc})") from None
    except OSError as exc:
        if filled:
            yield buf[:filled]
        raise httpx2.ReadError(str(exc)) from None
    if filled:
        yield buf[:filled]
    if closed is not None:
        raise closed
