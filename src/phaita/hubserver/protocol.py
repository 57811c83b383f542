"""What a route handler receives and returns: plain data, no HTTP plumbing."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from email.message import Message
from typing import Any, Callable, Protocol, Union

FileSlice = tuple[str, int, int]  # (absolute path, start, bytes available)
Body = Union[bytes, FileSlice]


class HubError(Exception):
    """An error answer: status, the Hub's ``X-Error-Code``, a message, extra headers."""

    def __init__(self, status: int, code: str | None, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}

    def response(self) -> "Response":
        data = json.dumps({"error": self.message}).encode()
        headers = {"Content-Type": "application/json", **self.headers}
        if self.code:
            headers["X-Error-Code"] = self.code
            headers["X-Error-Message"] = self.message
        return Response(self.status, headers, data, len(data), faultable=False)


@dataclass
class Response:
    """``length`` is what Content-Length announces (a hostile-hub knob may make it differ from the body)."""

    status: int
    headers: dict[str, str]
    body: Body = b""
    length: int = 0
    faultable: bool = True  # body faults (reset, corrupt...) apply to it

    @classmethod
    def json(cls, obj: Any, status: int = 200) -> "Response":
        data = json.dumps(obj).encode()
        return cls(status, {"Content-Type": "application/json"}, data, len(data))


class Server(Protocol):
    """What handlers use of the server running them."""

    store: Any  # a RepoStore
    lacks: frozenset  # Hub features left out (the test hub's MIRROR_FEATURES); the station: none


@dataclass
class HubRequest:
    """One request as a handler sees it."""

    hub: Server
    method: str
    raw_path: str  # as sent (quoted), for redirects
    headers: Message
    query: dict[str, list[str]]
    params: dict[str, str]  # repo_id, revision, path (from the route)
    read_body: Callable[[], bytes] = field(repr=False)
    fault: Any = None  # the test hub's fault chosen for this request (a FaultRule), if any

    @property
    def repo_id(self) -> str:
        return self.params["repo_id"]

    @property
    def revision(self) -> str:
        return self.params.get("revision", "main")

    @property
    def path(self) -> str:
        return self.params.get("path", "")

    def flag(self, name: str) -> bool:
        value = self.query.get(name)
        return bool(value) and value[0].lower() in ("1", "true", "yes")
