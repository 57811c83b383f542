"""HTTP plumbing of the local hub: parse a request, find its route, apply faults while sending.

Faults (see :mod:`phaita.testing.faults`) act here, on the bytes of the answer: resets, early
closes, stalls, trickles, corruption, a per-connection rate cap.
"""

from __future__ import annotations

import socket
import ssl
import struct
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from ..faults import FaultRule, Pacer
from .protocol import HubError, HubRequest, RequestRecord, Response, RunningHub
from phaita.hubserver.routes import find_route

_CHUNK = 256 * 1024


def _reset_socket(conn: socket.socket) -> None:
    """Abort the connection with a TCP RST (SO_LINGER (1, 0) then a real close of the fd)."""
    try:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    hub: RunningHub

    def finish_request(self, request, client_address) -> None:
        tls = self.hub.tls
        if tls is None:
            return super().finish_request(request, client_address)
        try:  # the TLS handshake runs in this connection's thread, not in the accept loop
            conn = tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return  # e.g. a client that refused the certificate: what the TLS tests provoke
        try:
            super().finish_request(conn, client_address)
        finally:
            conn.close()

    def handle_error(self, request, client_address) -> None:
        import sys

        exc = sys.exc_info()[1]
        # Clients vanishing is normal, and so is a write to a connection a fault has just reset;
        # anything else is a bug in the hub and is shown.
        if isinstance(exc, OSError) or (isinstance(exc, ValueError) and "closed file" in str(exc)):
            return
        super().handle_error(request, client_address)


class HubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "LocalHub/1.0"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.hub._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.hub._track(self.connection, False)

    def log_message(self, format: str, *args) -> None:  # silence stderr logging
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    do_PUT = do_DELETE = do_PATCH = do_POST

    # ----------------------------------------------------------------- routing
    def _dispatch(self, method: str) -> None:
        hub = self.server.hub
        split = urlsplit(self.path)
        segs = [unquote(s) for s in split.path.split("/")[1:]]
        upath = "/" + "/".join(segs)
        self._rec = rec = RequestRecord(
            method, upath, split.query, self.client_address[0], self.headers.get("Authorization"),
            range=self.headers.get("Range"),
        )
        hub._add_record(rec)
        try:
            try:
                route, params = find_route(hub.routes, method, segs, hub.lacks)
            except HubError:
                self._drain_body()
                raise
            rec.repo_id, rec.revision = params.get("repo_id"), params.get("revision")
            fault = hub.select_fault(method, upath, api=route.api)
            if fault is not None:
                rec.fault = fault.kind
                if fault.kind == "stall_headers":
                    hub.wait_stop(fault.seconds)
                    self.close_connection = True
                    return
                if fault.kind == "status":
                    raise HubError(fault.status, None, f"Injected fault: HTTP {fault.status}", fault.status_headers())
                if method == "HEAD" and fault.kind in ("reset", "close"):  # no body: fail before answering
                    return self._abort(fault.kind == "reset")
                if method == "HEAD" and fault.kind == "stall" and hub.wait_stop(fault.seconds):
                    return self._abort(False)
            request = HubRequest(hub, method, self.path, self.headers, parse_qs(split.query), params,
                                 self._read_body, fault)
            if route.transfer and method == "GET":
                if not hub.admit_transfer():
                    raise HubError(429, None, "Too many parallel downloads", {"Connection": "close"})
                try:
                    self._send(route.handler(request), method, fault)
                finally:
                    hub.end_transfer()
            else:
                self._send(route.handler(request), method, fault)
        except HubError as err:
            if "error-codes" in hub.lacks:  # as many mirrors answer: the status alone, no X-Error-Code
                err.code = None
            self._send(err.response(), method, None)
        except (BrokenPipeError, ConnectionError, TimeoutError, ValueError, OSError):
            self.close_connection = True  # the client went away (or the hub is stopping)
        except Exception as exc:  # a bug: answer 500 when nothing was sent yet, then drop the connection
            self.close_connection = True
            if rec.status is None:
                self._send(Response.json({"error": f"LocalHub internal error: {exc!r}"}, status=500), method, None)
            raise
        finally:
            rec.finished = time.time()

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _drain_body(self) -> None:
        self._read_body()

    def _send(self, response: Response, method: str, fault: FaultRule | None) -> None:
        self._respond(response.status, response.headers, method, response.body, response.length,
                      fault if response.faultable else None)

    # ----------------------------------------------------------------- sending
    def _respond(self, status: int, headers: dict, method: str, body, length: int, fault: FaultRule | None) -> None:
        self._rec.status = status
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if method == "HEAD":
            return
        self._send_body(body, length, fault)

    def _chunks(self, body, length: int):
        if isinstance(body, bytes):
            yield body[:length]
            return
        abspath, start, available = body
        with open(abspath, "rb") as fh:
            fh.seek(start)
            left = available
            while left > 0:
                chunk = fh.read(min(_CHUNK, left))
                if not chunk:
                    break
                left -= len(chunk)
                yield chunk

    def _write(self, data: bytes) -> None:
        rate = self.server.hub.rate_limit()
        if not rate:
            return self._write_now(data)
        pacer = getattr(self, "_pacer", None)
        if pacer is None or pacer.rate != rate:
            pacer = self._pacer = Pacer(rate)  # one per connection: the cap is per TCP stream
        view = memoryview(data)
        for i in range(0, len(view), pacer.piece):
            piece = view[i:i + pacer.piece]
            wait = pacer.wait_before(len(piece))
            if wait > 0 and self.server.hub.wait_stop(wait):
                raise ConnectionAbortedError("hub stopping")
            self._write_now(piece)

    def _write_now(self, data: bytes | memoryview) -> None:
        if data:
            # Counted before the write: a client may read the last byte and look at the stats
            # before this thread runs again. A write that fails counts as nothing sent.
            self._rec.bytes_sent += len(data)
            try:
                self.wfile.write(data)
            except BaseException:
                self._rec.bytes_sent -= len(data)
                raise

    def _send_body(self, body, length: int, fault: FaultRule | None) -> None:
        hub = self.server.hub
        kind = fault.kind if fault is not None else None
        at = fault.offset_for(length) if fault is not None else 0
        sent, triggered = 0, False
        for chunk in self._chunks(body, length):
            end = sent + len(chunk)
            if kind == "corrupt" and at < end and sent < at + fault.corrupt_bytes:
                buf = bytearray(chunk)
                for i in range(max(at, sent), min(at + fault.corrupt_bytes, end)):
                    buf[i - sent] ^= 0xFF
                chunk = bytes(buf)
            elif kind in ("reset", "close", "stall", "trickle") and not triggered and end >= at:
                self._write(chunk[: at - sent])
                chunk, sent, triggered = chunk[at - sent:], at, True
                if kind in ("reset", "close"):
                    return self._abort(kind == "reset")
                if kind == "stall" and hub.wait_stop(fault.seconds):
                    return self._abort(False)
            if kind == "trickle" and triggered:
                piece = max(1, int(fault.rate_bps / 20))
                for i in range(0, len(chunk), piece):
                    self._write(chunk[i:i + piece])
                    if hub.wait_stop(piece / fault.rate_bps):
                        return self._abort(False)
            else:
                self._write(chunk)
            sent += len(chunk)
        if kind in ("reset", "close") and not triggered:
            return self._abort(kind == "reset")
        if sent < length:  # announced more than we have (content_length_override)
            self._abort(False)

    def _abort(self, reset: bool) -> None:
        """End the connection: a TCP RST when ``reset`` else a clean FIN (after a partial body)."""
        self.close_connection = True
        if reset:
            # Let bytes already sent reach the client first: an RST discards the peer's unread
            # receive buffer, and on loopback that buffer holds megabytes, which would make every
            # reset look like a large resend that no real link produces.
            try:
                self.wfile.flush()
            except OSError:
                pass
            time.sleep(0.05)
            _reset_socket(self.connection)
            for f in (self.wfile, self.rfile):
                try:
                    f.close()
                except OSError:
                    pass
            self.connection.close()  # last reference: the fd closes now and the kernel sends RST
