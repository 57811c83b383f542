"""A real, local Hugging Face Hub server for tests, demos and benchmarks.

Repositories are folders ``root/<org>/<name>/``; an optional ``.hub.json`` in a repository sets
``gated``, ``private``, ``allowed_tokens``, ``branches``, ``gate_api`` and hostile-hub knobs
(``redirect_to``, ``redirect_head``, ``extra_siblings``, ``content_length_override``).
The unmodified ``huggingface_hub`` client and ``transformers`` work against it with
``HF_ENDPOINT=hub.url``. Faults (see :mod:`phaita.testing.faults`) are applied to response bodies.

Parts: :mod:`.server` (:class:`LocalHub`), :mod:`.transport` (HTTP and faults), :mod:`.store` (where
repositories come from: folders by default, any :class:`~.store.RepoStore`); the URL table and
the endpoints are :mod:`phaita.hubserver`'s (shared with the station mirror).
"""

from __future__ import annotations

from .protocol import HubError, HubRequest, RequestRecord, Response
from phaita.hubserver.routes import ROUTES, Route
from .server import MIRROR_FEATURES, LocalHub
from .store import LFS_EXTENSIONS, LFS_THRESHOLD, FolderStore, RepoFile, RepoStore, commit_sha, repo_files

__all__ = ["LocalHub", "MIRROR_FEATURES", "RequestRecord", "RepoFile", "LFS_EXTENSIONS", "LFS_THRESHOLD", "repo_files",
           "commit_sha", "FolderStore", "RepoStore", "Route", "ROUTES", "HubRequest", "HubError", "Response"]
