"""HTTP under a hard deadline.

huggingface_hub's client has per-read timeouts but no overall limit: a hub that trickles one byte
every few seconds keeps it busy forever. Here every request carries a :class:`Deadline`; connect
and read timeouts never exceed what is left of it, and a watchdog shuts the socket down when it
passes, so a blocked read returns at once instead of waiting for the next byte.

The HTTP client is huggingface_hub's shared ``httpx`` session, set up by :func:`tls.session` (the
site's CA bundle), so proxies, certificates and a custom ``set_client_factory`` apply here as they
do to the hub client.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import httpx2
from huggingface_hub.utils import hf_raise_for_status

from ..config import Timeouts
from ..errors import BadResponse, DeadlineExceeded, UnsafeRepository
from .failures import note_redirect_target
from .tls import session as tls_session


@dataclass(frozen=True)
class Deadline:
    """A point in monotonic time after which an attempt gives up."""

    at: float
    seconds: float

    @classmethod
    def after(cls, seconds: float) -> "Deadline":
        return cls(time.monotonic() + seconds, seconds)

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def expired(self) -> bool:
        return self.remaining() <= 0

    def check(self, what: str) -> None:
        if self.expired():
            raise DeadlineExceeded(f"{what}: attempt timed out after {self.seconds:g} s")


class _Watchdog:
    """Shuts a response's socket down when the deadline passes (unblocks a stalled read)."""

    def __init__(self, response: httpx2.Response, deadline: Deadline) -> None:
        self._lock = threading.Lock()
        self._armed = True
        self.fired = False
        stream = response.extensions.get("network_stream")
        self._socket = stream.get_extra_info("socket") if stream is not None else None
        self._timer = threading.Timer(max(deadline.remaining(), 0.0), self._fire)
        self._timer.daemon = True
        if self._socket is not None:
            self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            if not self._armed:
                return
            self.fired = True
            try:
                self._socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def disarm(self) -> None:
        with self._lock:
            self._armed = False
        self._timer.cancel()


def _timeout(deadline: Deadline, timeouts: Timeouts) -> httpx2.Timeout:
    left = max(deadline.remaining(), 0.001)
    return httpx2.Timeout(
        connect=min(timeouts.connect, left),
        read=min(timeouts.stall, left),
        write=min(timeouts.stall, left),
        pool=min(timeouts.connect, left),
    )


@contextmanager
def stream(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    deadline: Deadline,
    timeouts: Timeouts,
    what: str,
    content: bytes | None = None,
) -> Iterator[httpx2.Response]:
    """Open a streamed request; raise hub errors (404, 401, 5xx...) as huggingface_hub does.

    On exit past the deadline, whatever the transport raised becomes ``DeadlineExceeded``.
    """
    deadline.check(what)
    session = tls_session()
    answered: httpx2.URL | None = None  # where the answer came from (after any redirect)
    try:
        with session.stream(method, url, headers=dict(headers), content=content,
                            timeout=_timeout(deadline, timeouts)) as response:
            answered = response.url
            watchdog = _Watchdog(response, deadline)
            try:
                if response.status_code >= 400:
                    response.read()  # so the error carries the hub's message
                hf_raise_for_status(response)
                yield response
            finally:
                watchdog.disarm()
    except (httpx2.TransportError, OSError) as exc:
        if deadline.expired():
            raise DeadlineExceeded(f"{what}: attempt timed out after {deadline.seconds:g} s") from exc
        note_redirect_target(exc, url, answered)
        raise


def get_json(
    url: str,
    *,
    headers: Mapping[str, str],
    deadline: Deadline,
    timeouts: Timeouts,
    what: str,
    max_bytes: int = 64 * 2**20,
    method: str = "GET",
    content: bytes | None = None,
) -> Any:
    """GET (or POST ``content``) and read a JSON answer, under the deadline and a size cap."""
    chunks: list[bytes] = []
    size = 0
    with stream(method, url, headers=headers, deadline=deadline, timeouts=timeouts, what=what,
                content=content) as response:
        for chunk in response.iter_bytes(65536):
            size += len(chunk)
            if size > max_bytes:
                raise UnsafeRepository(f"{what}: the hub's answer is larger than {max_bytes} bytes")
            chunks.append(chunk)
            deadline.check(what)
    try:
        return json.loads(b"".join(chunks))
    except ValueError as exc:
        raise BadResponse(f"{what}: the answer is not JSON (a proxy or captive portal in the way?): {exc}") from None


def interrupt(response: httpx2.Response) -> None:
    """Shut a streamed response's socket from another thread: a read blocked on it returns at once."""
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
