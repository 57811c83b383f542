"""One connection of the station: read a request within its deadline, admit it, answer it, log it.

The answers are the Hub's (:mod:`phaita.hubserver`: routes, Range, HEAD, ``X-Error-Code``), over the
station's index; ``GET /metrics`` is Prometheus text (:mod:`.metrics`). Every request, refused ones
included, is one line of the access log in the Combined Log Format (``host - user [time] "request"
status bytes "referer" "user-agent"``; the user is a token's label or a certificate's common name,
never a token).
"""

from __future__ import annotations

import time
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from phaita import __version__
from phaita.hubserver.protocol import HubError, HubRequest, Response
from phaita.hubserver.routes import ROUTES, find_route

_CHUNK = 256 * 1024


def _quoted(text: str | None) -> str:
    """A header or request line for the log: printable ASCII, quotes and backslashes escaped."""
    if not text:
        return "-"
    out = []
    for ch in text[:1000]:
        if ch in '"\\':
            out.append("\\" + ch)
        elif " " <= ch <= "~":
            out.append(ch)
        else:
            out.append(f"\\x{ord(ch) & 0xFF:02x}")
    return "".join(out)


class StationHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = f"phaita-station/{__version__}"
    sys_version = ""

    # ----------------------------------------------------------------- deadlines around reading
    @property
    def station(self) -> Any:  # the StationServer (not imported: it imports this module)
        return self.server.station  # type: ignore[attr-defined]

    def setup(self) -> None:
        super().setup()
        self._requests = 0
        self.connection.settimeout(self.station.limits.header_timeout)  # one read; the watchdog bounds the whole

    def handle_one_request(self) -> None:
        limits = self.station.limits
        if self._requests == 0:
            self.station.watch(self.connection, limits.header_timeout, "headers")
        else:
            self.connection.settimeout(limits.idle_timeout)
            self.station.watch(self.connection, limits.idle_timeout, "idle")
        self._user, self._status, self._sent, self._started = "-", 0, 0, time.monotonic()
        try:
            super().handle_one_request()
        finally:
            self.station.unwatch(self.connection)
            self._requests += 1

    def parse_request(self) -> bool:
        ok = super().parse_request()
        self.station.unwatch(self.connection)  # the headers are in
        self.connection.settimeout(self.station.limits.send_timeout)
        self._started = time.monotonic()
        return ok

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.station.forget(self.connection)

    def log_message(self, format: str, *args: Any) -> None:  # the access log is written by _log
        pass

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        pass

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        self._status = code  # malformed requests (400, 414, 431...) answered by http.server itself
        super().send_error(code, message, explain)
        self._log()

    # ----------------------------------------------------------------- requests
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_POST

    def _dispatch(self, method: str) -> None:
        station = self.station
        split = urlsplit(self.path)
        segs = [unquote(s) for s in split.path.split("/")[1:]]
        try:
            try:
                peer = self.connection.getpeercert() if station.tls is not None else None
                self._user = station.access.admit(self.headers.get("Authorization"), peer)
            except HubError as err:
                station.metrics.add("auth_failures", err.status)
                self.close_connection = True
                raise
            if segs == ["metrics"] and method in ("GET", "HEAD"):
                data = station.metrics.render().encode()
                response = Response(200, {"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}, data, len(data))
            else:
                route, params = find_route(ROUTES, method, segs, station.lacks)
                request = HubRequest(station, method, self.path, self.headers, parse_qs(split.query), params,
                                     self._read_body)
                response = route.handler(request)
        except HubError as err:
            if method not in ("GET", "HEAD"):
                self.close_connection = True  # an unread body must not be taken for the next request
            response = err.response()
        except (ConnectionError, TimeoutError, OSError, ValueError):
            self.close_connection = True
            return
        except Exception as exc:  # a bug: a 500, never a traceback to the client
            self.close_connection = True
            response = Response.json({"error": f"station internal error: {type(exc).__name__}"}, status=500)
        try:
            self._send(response, method)
        except (ConnectionError, TimeoutError, OSError, ValueError):
            self.close_connection = True
        finally:
            self._log()

    def _read_body(self) -> bytes:
        limits = self.station.limits
        length = int(self.headers.get("Content-Length") or 0)
        if length > limits.max_body:
            self.close_connection = True
            raise HubError(413, None, f"request body over {limits.max_body} bytes")
        if not length:
            return b""
        self.station.watch(self.connection, limits.header_timeout, "body")
        try:
            return self.rfile.read(length)
        finally:
            self.station.unwatch(self.connection)

    def _send(self, response: Response, method: str) -> None:
        self._status = response.status
        self.send_response(response.status)
        for k, v in response.headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(response.length))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if method == "HEAD":
            return
        body = response.body
        if isinstance(body, bytes):
            self.wfile.write(body[:response.length])
            self._sent += min(len(body), response.length)
            return
        abspath, start, available = body
        with open(abspath, "rb") as fh:
            if self.station.tls is None:  # zero copy where the kernel can
                self._sent += self.connection.sendfile(fh, start, available)
                return
            fh.seek(start)
            left = available
            while left > 0:
                chunk = fh.read(min(_CHUNK, left))
                if not chunk:
                    break
                self.wfile.write(chunk)
                self._sent += len(chunk)
                left -= len(chunk)
        if self._sent < response.length:  # the file shrank under us: the client must see a short body
            self.close_connection = True

    def _log(self) -> None:
        seconds = time.monotonic() - self._started
        method = getattr(self, "command", None) or "-"
        headers = getattr(self, "headers", None)
        self.station.metrics.request(method, self._status, seconds, self._sent)
        if self.station.access_log is None:
            return
        when = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime())
        size = str(self._sent) if self._sent else "-"
        self.station.log_access(
            f'{self.client_address[0]} - {_quoted(self._user)} [{when}] "{_quoted(getattr(self, "requestline", ""))}" '
            f'{self._status} {size} "{_quoted(headers.get("Referer") if headers else None)}" '
            f'"{_quoted(headers.get("User-Agent") if headers else None)}"')
