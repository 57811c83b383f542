"""The test hub's side of the protocol: the running hub as its transport sees it, and request records.

What a handler receives and returns (request, response, error answer) is :mod:`phaita.hubserver.protocol`,
shared with the station mirror.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from phaita.hubserver.protocol import Body, FileSlice, HubError, HubRequest, Response

if TYPE_CHECKING:
    from ..faults import FaultRule

__all__ = ["Body", "FileSlice", "HubError", "HubRequest", "Response", "RunningHub", "RequestRecord"]


class RunningHub(Protocol):
    """What handlers and the transport use of the running hub (:class:`LocalHub` is the one).

    Named here, not imported from ``server``, so that the server imports its parts and none of
    them imports it back (no circle between the files).
    """

    tls: Any
    store: Any  # a RepoStore
    routes: tuple
    lacks: frozenset  # Hub features left out (MIRROR_FEATURES)

    def rate_limit(self) -> float | None: ...
    def wait_stop(self, seconds: float | None) -> bool: ...
    def admit_transfer(self) -> bool: ...
    def end_transfer(self) -> None: ...
    def select_fault(self, method: str, path: str, api: bool) -> "FaultRule | None": ...
    def _add_record(self, record: "RequestRecord") -> None: ...
    def _track(self, conn: Any, add: bool) -> None: ...


@dataclass
class RequestRecord:
    method: str
    path: str
    query: str
    client: str
    authorization: str | None
    range: str | None = None
    repo_id: str | None = None
    revision: str | None = None
    status: int | None = None
    bytes_sent: int = 0
    fault: str | None = None
    started: float = field(default_factory=time.time)
    finished: float | None = None

    @property
    def auth_present(self) -> bool:
        return bool(self.authorization)
