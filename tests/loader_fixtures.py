"""Fixtures for the loader tests: a local hub, an empty cache, instant backoff, short timeouts."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from phaita.testing import LocalHub, publish_large_file
from phaita.testing.digests import sha256_file as sha256_of
from phaita.testing.env import point_huggingface_hub_at

BIG = "acme/big"
BIG_SIZE = 8_000_000


@pytest.fixture
def loader_env(hf_env, monkeypatch, caplog):
    """hf_env plus the loader's own knobs made short, so retries and deadlines take milliseconds."""
    monkeypatch.setenv("PHAITA_BACKOFF_BASE", "0.01")
    monkeypatch.setenv("PHAITA_STALL_TIMEOUT", "1")
    monkeypatch.setenv("PHAITA_FRESHNESS_TIMEOUT", "1")
    monkeypatch.setenv("PHAITA_CONNECT_TIMEOUT", "2")
    caplog.set_level(logging.INFO, logger="phaita.model_loader")
    return hf_env


@pytest.fixture(scope="session")
def big_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("big-root")
    publish_large_file(root, BIG, BIG_SIZE)
    return root


@pytest.fixture
def big_hub(big_root, loader_env, monkeypatch):
    """A hub serving one 8 MB file (``acme/big``), with the client pointed at it."""

    with LocalHub(big_root) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        point_huggingface_hub_at(monkeypatch, hub.url)
        yield hub


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "phaita.model_loader" and r.levelno == logging.WARNING]
