"""Shared fixtures: tiny models published once per session, a LocalHub on them, client env."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Four workers on two cores: one math thread each (torch reads these at import), or the model
    # tests' OpenMP threads spin against each other's; subprocesses inherit them.
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

# The loader's fixtures (loader_env, big_root, big_hub) for every test module.
pytest_plugins = ("loader_fixtures", "oci_fixtures")

from phaita.loader.config import full_runs
from phaita.testing import LocalHub, publish_tiny_models
from phaita.testing.env import point_huggingface_hub_at


SHARED_HUB_ROOT = "PHAITA_TESTS_HUB_ROOT"  # set by the run's first process, inherited by its workers

# Test files whose work is long and cannot be split (one demo run, real models loaded once per module,
# olah's venv), longest first (wall seconds in a full `make test`, 4 Dec: 188, 160, 117, 111, 82, 77, 73,
# 54, 42, 38): under pytest-xdist (one file per worker, the Makefile turns off xdist's own reordering by
# test count) they start first, so the other workers fill in around them (longest-first scheduling)
# instead of one of them starting last. Whichever of test_components_hub and the demo loads the GGUF LM
# first converts it; the other waits for the copy it keeps (PHAITA_GGUF_CACHE, shared by the run).
LONG_FILES = ("test_components_hub.py", "test_airgap_bundle.py", "test_demo.py", "test_guide.py",
              "test_station_mirror.py", "test_benchmarks_smoke.py", "test_airgap_lock.py", "test_olah.py",
              "test_signing_interop.py", "test_chaos.py")


def pytest_configure(config):
    """Each process of the suite (every xdist worker, or the one serial run) gets a private Hugging Face
    home, cache and Docker config, so no test reads or writes the user's, or another worker's."""
    worker = getattr(config, "workerinput", {}).get("workerid", "main")
    home = Path(tempfile.mkdtemp(prefix=f"phaita-tests-{worker}-"))
    for key, value in {"HF_HOME": home / "hf-home", "HF_HUB_CACHE": home / "hf-home" / "hub",
                       "DOCKER_CONFIG": home / "docker", "XDG_CACHE_HOME": home / "xdg-cache"}.items():
        value.mkdir(parents=True, exist_ok=True)
        os.environ[key] = str(value)
    for key in ("HF_TOKEN", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT", "PHAITA_ENDPOINTS"):
        os.environ.pop(key, None)
    config._phaita_test_home = home
    if not hasattr(config, "workerinput"):  # the run's first process: its workers inherit this folder
        # GGUF models converted once per run, not once per process (phaita.loader.request.gguf_copy)
        os.environ["PHAITA_GGUF_CACHE"] = str(home / "gguf-copies")
        os.environ[SHARED_HUB_ROOT] = str(home / "hub-root")  # the tiny models, published once per run


def pytest_unconfigure(config):
    home = getattr(config, "_phaita_test_home", None)
    if home is not None:
        shutil.rmtree(home, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    """Long files first (a stable sort: the order inside a file is kept); ``@pytest.mark.slow`` tests
    run only with PHAITA_FULL=1 (the marker itself is the switch)."""
    rank = {name: i for i, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
    if full_runs():
        return
    skip_slow = pytest.mark.skip(reason="slow: runs only with PHAITA_FULL=1")
    for item in items:
        if item.get_closest_marker("slow") is not None:
            item.add_marker(skip_slow)


@pytest.fixture(scope="session")
def hub_root(tmp_path_factory) -> Path:
    """A read-only hub root with every tiny model published, once per run: the first worker to ask
    publishes it (6 s of torch and transformers), the others wait for it and share it.

    Do not modify it: use ``scratch_root`` / ``make_repo`` for repositories a test changes.
    """
    from filelock import FileLock

    shared = os.environ.get(SHARED_HUB_ROOT)
    if not shared:  # (a process that is not part of a run started by this conftest)
        root = tmp_path_factory.mktemp("hub-root")
        publish_tiny_models(root)
        return root
    root = Path(shared)
    with FileLock(f"{root}.lock"):
        if not root.is_dir():
            building = root.with_name(root.name + ".building")
            shutil.rmtree(building, ignore_errors=True)
            publish_tiny_models(building)
            building.rename(root)  # whole or not at all: a worker never sees a half-published root
    return root


@pytest.fixture
def local_hub(hub_root):
    """A running LocalHub serving ``hub_root`` (fresh stats and no faults for every test)."""
    with LocalHub(hub_root) as hub:
        yield hub


@pytest.fixture
def scratch_root(tmp_path, hub_root) -> Path:
    """A private, writable copy of the hub root for tests that change repositories."""
    root = tmp_path / "scratch-root"
    shutil.copytree(hub_root, root)
    return root


@pytest.fixture
def make_repo():
    """``make_repo(root, "org/name", {"path": bytes|str}, config={...})`` writes a repo folder."""

    def _make(root: Path, repo_id: str, files: dict, config: dict | None = None) -> Path:
        repo = Path(root) / repo_id
        repo.mkdir(parents=True, exist_ok=True)
        for rel, content in files.items():
            path = repo / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content.encode() if isinstance(content, str) else content)
        if config is not None:
            (repo / ".hub.json").write_text(json.dumps(config))
        return repo

    return _make


@pytest.fixture
def hf_env(local_hub, tmp_path, monkeypatch) -> dict[str, str]:
    """Point huggingface_hub at ``local_hub`` with an empty cache.

    Sets the environment (returned as a full env dict for ``subprocess.run(env=...)``) and patches
    the import-time constants of an already-imported huggingface_hub (``ENDPOINT`` *and*
    ``HUGGINGFACE_CO_URL_TEMPLATE``, which is derived from it at import) for in-process use.
    """

    home = tmp_path / "hf-home"
    cache = home / "hub"
    cache.mkdir(parents=True)
    values = {
        "HF_ENDPOINT": local_hub.url,
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(cache),
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_OFFLINE": "0",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    point_huggingface_hub_at(monkeypatch, local_hub.url, home=str(home), cache=str(cache))
    return dict(os.environ)


@pytest.fixture(scope="session")
def head():
    """The featurizer triage head, trained once per test session on varied generated complaints (a
    few seconds on an idle core); shared by test_triage and test_conversation."""
    from phaita.models import DiagnosisDiscriminator
    from phaita.models.training_data import train_discriminator

    return train_discriminator(DiagnosisDiscriminator(use_pretrained=False), n_per_condition=60)
