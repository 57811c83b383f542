"""Where a chaos run's loads come from: the local hub itself, or an OCI registry behind a fault proxy.

A source serves the published chaos models with the run's plan in front of them, gives the
environment that points the loader at it, and counts what it sent for the report: file-body
bytes, and the requests for a closed byte range (one stream of several).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..env import environment
from ..hub import LocalHub
from ..registry_proxy import FaultProxy
from .plan import ChaosPlan
from .specs import SPECS

REGISTRY_PREFIX = "chaos"  # the registry's repositories: chaos/<org>/<name>, tag main


class HubSource:
    """The :class:`~phaita.testing.hub.LocalHub` on the chaos models, the plan as its faults."""

    name = "the local hub"

    def __init__(self, root: Path, plan: ChaosPlan) -> None:
        self.root, self.plan = root, plan
        self.hub: LocalHub | None = None

    def start(self) -> dict[str, str | None]:
        self.hub = LocalHub(self.root, faults=self.plan).start()
        return {"HF_ENDPOINT": self.hub.url, "PHAITA_ENDPOINTS": None}

    def faults_on(self) -> None:
        assert self.hub is not None
        self.hub.reset_stats()
        self.plan.enabled = True
        self.hub.set_faults(self.plan)  # (a disabled plan is falsy: the hub would have replaced it)

    def served(self) -> int:
        assert self.hub is not None
        return self.hub.bytes_sent("/resolve/")

    def segments(self) -> int:
        assert self.hub is not None
        return sum(1 for r in self.hub.requests("/resolve/", method="GET")
                   if r.range and not r.range.rstrip().endswith("-"))  # bytes=a-b: one range stream

    def stop(self) -> None:
        if self.hub is not None:
            self.hub.stop()


class RegistrySource:
    """The chaos models pushed from a fault-free LocalHub into ``registry`` (a started
    :class:`~phaita.testing.registry.LocalRegistry`: Debian's docker-registry), in the ModelPack format
    by phaita's own push, and loaded as ``PHAITA_ENDPOINTS=oci://PROXY/chaos`` through a
    :class:`~phaita.testing.registry_proxy.FaultProxy` that draws the plan's faults (manifests at its API
    rate, blobs at its file rate)."""

    name = "an OCI registry"

    def __init__(self, root: Path, plan: ChaosPlan, registry: Any, work: Path) -> None:
        self.root, self.plan, self.registry, self.work = root, plan, registry, work
        self.proxy: FaultProxy | None = None

    def start(self) -> dict[str, str | None]:
        from phaita.loader import prefetch_model
        from phaita.loader.oci.push import Pusher

        staging = self.work / "push-cache"
        with LocalHub(self.root) as hub, environment({"HF_ENDPOINT": hub.url, "PHAITA_ENDPOINTS": None}):
            for repo in sorted({spec.repo for spec in SPECS}):
                prefetch_model(repo, cache_dir=str(staging), max_retries=3)  # every file a load of it needs
                Pusher(staging).push(repo, "main", f"oci://{self.registry.host}/{REGISTRY_PREFIX}")
        self.proxy = FaultProxy(self.registry.port, self.plan, api_paths=True).start()
        return {"PHAITA_ENDPOINTS": f"oci://{self.proxy.host}/{REGISTRY_PREFIX}"}

    def faults_on(self) -> None:
        assert self.proxy is not None
        self.proxy.blob_bytes = self.proxy.range_segments = 0
        self.plan.enabled = True

    def served(self) -> int:
        assert self.proxy is not None
        return self.proxy.blob_bytes

    def segments(self) -> int:
        assert self.proxy is not None
        return self.proxy.range_segments

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
