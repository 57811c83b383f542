"""Blob uploads: skip what the registry has (HEAD), mount across repositories, chunked and resumable.

The distribution protocol: ``POST /v2/<repo>/blobs/uploads/`` opens an upload (``?mount=&from=`` asks
for a cross-repository mount first: 201 means done), each ``PATCH`` sends one chunk with
``Content-Range``, and ``PUT <location>?digest=`` closes it. A registry may accept a PATCH at the wrong
offset and append it (measured: distribution 2.8), and the upload URL changes after every PATCH; so the
offset is the one the registry reports (``Range: 0-N``), confirmed with the status GET whenever it
differs from ours. An upload that broke is resumed from the registry's offset by the next attempt
(:class:`UploadState` keeps the URL) and, after the process was killed, by the next push
(:class:`SavedUploads` keeps it on disk); one the registry forgot (404) starts again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import urlencode, urljoin

from ..cache.layout import atomic_write, open_uploads_dir
from ..errors import RegistryError
from ..http.deadline import Deadline
from .client import Registry

_RANGE = re.compile(r"^(?:bytes=)?0-(\d+)$")
PUSH = "pull,push"


@dataclass
class UploadState:
    """An open upload of one blob that survives a failed attempt: its URL and confirmed offset."""

    location: str | None = None
    offset: int = 0
    sent: int = 0  # bytes sent in PATCHes, all attempts (for reports)


class SavedUploads:
    """The open uploads of a cache's pushes, one small JSON file each under ``<cache>/.phaita/oci-uploads``:
    the upload URL and the offset the registry confirmed, so that a push killed halfway through a blob
    goes on where the registry has it. A record is only a hint: its offset is asked again of the registry
    (the status GET) before any byte is sent, and a registry that forgot the upload gets a new one."""

    def __init__(self, cache_dir: Path) -> None:
        self.folder = open_uploads_dir(cache_dir)

    def _path(self, host: str, repository: str, digest: str) -> Path:
        key = hashlib.sha256(f"{host}/{repository}@{digest}".encode()).hexdigest()[:32]
        return self.folder / f"{key}.json"

    def load(self, host: str, repository: str, digest: str) -> UploadState:
        try:
            record = json.loads(self._path(host, repository, digest).read_text(encoding="utf-8"))
            if record.get("blob") != f"{host}/{repository}@{digest}" or not isinstance(record.get("location"), str):
                return UploadState()
            return UploadState(location=record["location"], offset=int(record.get("offset", 0)))
        except (OSError, ValueError, TypeError):
            return UploadState()  # none, unreadable or damaged: a new upload

    def save(self, host: str, repository: str, digest: str, state: UploadState) -> None:
        path = self._path(host, repository, digest)
        try:
            if state.location is None:
                path.unlink(missing_ok=True)
            else:
                atomic_write(path, json.dumps({"blob": f"{host}/{repository}@{digest}", "location": state.location,
                                               "offset": state.offset}))
        except OSError:
            pass  # a cache we cannot write only loses the resume across processes, not the push


@dataclass
class Uploads:
    """What one push did: bytes sent, blobs uploaded, skipped (already there) and mounted."""

    bytes_sent: int = 0
    uploaded: int = 0
    skipped: int = 0
    mounted: int = 0
    open: dict[str, UploadState] = field(default_factory=dict)


def exists(registry: Registry, repository: str, digest: str, deadline: Deadline) -> bool:
    response = registry.send("HEAD", repository, f"/v2/{repository}/blobs/{digest}", deadline=deadline,
                             actions=PUSH, ok=(200, 404), what=f"HEAD blob {digest[:19]}")
    return response.status_code == 200


def _location(registry: Registry, response, deadline: Deadline) -> str:
    location = response.headers.get("location")
    if not location:
        raise RegistryError(f"{registry.host}: an upload answer has no Location", kind="http", transient=True)
    return urljoin(registry.base_url(deadline) + "/", location)


def _with_digest(location: str, digest: str) -> str:
    return location + ("&" if "?" in location else "?") + urlencode({"digest": digest})


def start(registry: Registry, repository: str, deadline: Deadline, *, mount: tuple[str, str] | None = None,
          ) -> tuple[bool, str | None]:
    """Open an upload (or mount ``(digest, from)``): (mounted, upload location)."""
    query = "?" + urlencode({"mount": mount[0], "from": mount[1]}) if mount else ""
    response = registry.send("POST", repository, f"/v2/{repository}/blobs/uploads/{query}", deadline=deadline,
                             actions=PUSH, ok=(201, 202), what="opening an upload")
    if response.status_code == 201:
        return True, None
    return False, _location(registry, response, deadline)


def put_bytes(registry: Registry, repository: str, data: bytes, digest: str, deadline: Deadline) -> None:
    """A small blob (a config, a signature) in one request."""
    _, location = start(registry, repository, deadline)
    registry.send("PUT", repository, _with_digest(location, digest), deadline=deadline, actions=PUSH,
                  headers={"content-type": "application/octet-stream", "content-length": str(len(data))},
                  content=data, ok=(201,), what=f"uploading {digest[:19]}")


def _offset(header: str, confirmed: int) -> int | None:
    """The registry's upload size from its ``Range: 0-N`` (distribution says ``0-0`` for 0 bytes and for 1)."""
    match = _RANGE.match(header or "")
    if not match:
        return None
    end = int(match.group(1))
    return 0 if end == 0 and confirmed == 0 else end + 1


def _status(registry: Registry, repository: str, state: UploadState, deadline: Deadline) -> int | None:
    """The registry's offset for the open upload (None: it no longer knows the upload)."""
    response = registry.send("GET", repository, state.location, deadline=deadline, actions=PUSH,  # type: ignore[arg-type]
                             ok=(204, 404), what="the upload's status")
    if response.status_code == 404:
        return None
    state.location = _location(registry, response, deadline) if response.headers.get("location") else state.location
    return _offset(response.headers.get("range", ""), state.offset) or 0


def _reader(path: Path, start_at: int, length: int) -> Callable[[], Iterator[bytes]]:
    def body() -> Iterator[bytes]:
        with open(path, "rb") as fh:
            fh.seek(start_at)
            left = length
            while left > 0:
                chunk = fh.read(min(1 << 20, left))
                if not chunk:
                    raise OSError(f"{path} shrank while it was uploaded")
                left -= len(chunk)
                yield chunk
    return body


def upload_file(registry: Registry, repository: str, path: Path, digest: str, size: int, deadline: Deadline,
                state: UploadState, chunk_size: int, saved: Callable[[UploadState], None] = lambda state: None,
                ) -> None:
    """Upload ``path`` as ``digest`` in chunks, resuming ``state``'s upload when the registry still has it;
    ``saved`` is told the state whenever the registry confirmed more of it (and when it is closed)."""
    if state.location is not None:
        offset = _status(registry, repository, state, deadline)
        if offset is None or offset > size:
            state.location, state.offset = None, 0
        else:
            state.offset = offset
    if state.location is None:
        _, state.location = start(registry, repository, deadline)
        state.offset = 0
        saved(state)
    while state.offset < size:
        end = min(size, state.offset + chunk_size)
        response = registry.send(
            "PATCH", repository, state.location, deadline=deadline, actions=PUSH,
            headers={"content-type": "application/octet-stream", "content-length": str(end - state.offset),
                     "content-range": f"{state.offset}-{end - 1}"},
            content=_reader(path, state.offset, end - state.offset), ok=(202,), what=f"uploading {path.name}")
        state.sent += end - state.offset
        state.location = _location(registry, response, deadline)  # a new URL after every PATCH
        reported = _offset(response.headers.get("range", ""), state.offset)
        if reported != end:  # trust only the registry's own status for where the upload stands
            confirmed = _status(registry, repository, state, deadline)
            if confirmed is None or confirmed > end:
                state.location, state.offset = None, 0
                raise RegistryError(f"{registry.host}: the upload of {path.name} is at an offset the client did not "
                                    f"send ({confirmed}); starting it again", kind="http", transient=True)
            end = confirmed
        state.offset = end
        saved(state)
    registry.send("PUT", repository, _with_digest(state.location, digest), deadline=deadline, actions=PUSH,
                  headers={"content-length": "0"}, content=b"", ok=(201,), what=f"closing the upload of {path.name}")
    state.location, state.offset = None, 0
    saved(state)


def chunk_size_default() -> int:
    from .. import config
    return config.oci_chunk_size()


def file_size(path: Path) -> int:
    return os.stat(path).st_size
