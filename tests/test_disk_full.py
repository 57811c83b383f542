"""Disk full, on a real small filesystem: a tmpfs the test mounts (CI runs as root).

Where mounting is impossible the same tests run against a quota enforced at the file layer
(``shutil.disk_usage`` reports the quota, and the fetch layer's file writes fail with ENOSPC
past it, writing what fits first, as a full disk does).

Checked: the pre-check (not enough free space before starting), ENOSPC in the middle of a write
(another program fills the disk while the download runs), and a disk with no room at all. Each
gives ``DiskFullError`` at once (one attempt, no retry, no backoff wait, no WARNING), leaves no
corrupt file (the partial file is a true prefix of the hub's file, kept for resume), and a later
run with space succeeds, sending only the missing bytes.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from loader_fixtures import BIG, BIG_SIZE, sha256_of, warnings_of
from phaita.loader.transfer import snapshot as fetch
from phaita.testing import FaultPlan, FaultRule
from phaita.testing.chaos import audit_cache, sha256_file
from phaita.utils.model_loader import DiskFullError, is_model_cached, prefetch_model, robust_model_download

MB = 1 << 20


class TmpfsDisk:
    """A tmpfs of a given size, mounted for one test."""

    kind = "tmpfs"

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True,
                       capture_output=True, timeout=10)
        self.filler = path / "other-program.dat"

    def resize(self, size: int) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(self.path)], check=True, capture_output=True)

    def fill(self) -> None:
        """Another program writes until the disk is full (unbuffered: every byte that fits lands)."""
        with open(self.filler, "ab", buffering=0) as fh:
            for block in (MB, 4096):
                try:
                    while fh.write(b"\0" * block):
                        pass
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC

    def unfill(self) -> None:
        self.filler.unlink(missing_ok=True)

    def close(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True, timeout=10)


class QuotaDisk:
    """The fallback: a quota on the folder, enforced where the loader writes file bodies."""

    kind = "quota"

    def __init__(self, path: Path, size: int, monkeypatch) -> None:
        self.path, self.size, self.extra = path, size, 0
        path.mkdir(parents=True, exist_ok=True)
        real_usage, real_open = shutil.disk_usage, open

        def used() -> int:
            return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file() and not p.is_symlink()) + self.extra

        def disk_usage(p):
            if str(Path(p).resolve()).startswith(str(self.path.resolve())):
                return type(real_usage(p))(self.size, used(), max(self.size - used(), 0))
            return real_usage(p)

        class QuotaFile:
            def __init__(self, fh):
                self._fh = fh

            def write(self, data):
                room = max(self_disk.size - used(), 0)
                if len(data) > room:
                    self._fh.write(data[:room])
                    self._fh.flush()
                    raise OSError(errno.ENOSPC, "No space left on device")
                return self._fh.write(data)

            def __getattr__(self, name):
                return getattr(self._fh, name)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self._fh.close()

        self_disk = self

        def quota_open(file, mode="r", *args, **kwargs):
            fh = real_open(file, mode, *args, **kwargs)
            if any(m in mode for m in "wa") and str(Path(file).resolve()).startswith(str(self.path.resolve())):
                return QuotaFile(fh)
            return fh

        monkeypatch.setattr(shutil, "disk_usage", disk_usage)
        monkeypatch.setattr(fetch, "open", quota_open, raising=False)
        self._used = used

    def resize(self, size: int) -> None:
        self.size = size

    def fill(self) -> None:
        self.extra += max(self.size - self._used(), 0)

    def unfill(self) -> None:
        self.extra = 0

    def close(self) -> None:
        pass


@pytest.fixture
def small_disk(tmp_path, monkeypatch, loader_env):
    """``make(size)`` -> a disk of ``size`` bytes at tmp_path/disk, used as the cache."""
    disks = []

    def make(size: int):
        path = tmp_path / "disk"
        try:
            if os.environ.get("PHAITA_TEST_NO_MOUNT") == "1":  # to exercise the fallback where mounting works
                raise PermissionError("mounting switched off")
            disk = TmpfsDisk(path, size)
        except (subprocess.CalledProcessError, FileNotFoundError, PermissionError, OSError):
            disk = QuotaDisk(path, size, monkeypatch)
        disks.append(disk)
        cache = path / "hub-cache"
        monkeypatch.setenv("HF_HUB_CACHE", str(cache))
        return disk, cache

    yield make
    for disk in disks:
        disk.close()


def _truth(root: Path):
    return lambda repo, rel: sha256_file(root / repo / rel) if (root / repo / rel).is_file() else None


def test_not_enough_space_before_starting_fails_at_once_then_succeeds_with_space(
        small_disk, big_hub, big_root, caplog):
    disk, cache = small_disk(6 * MB)  # an 8 MB file on a 6 MB disk
    started = time.monotonic()
    with pytest.raises(DiskFullError) as info:
        prefetch_model(BIG, max_retries=3, backoff_base=5)
    elapsed = time.monotonic() - started
    err = info.value
    text = str(err)
    assert elapsed < 2, f"no backoff wait: {elapsed:.1f} s"
    assert err.attempts == 1 and err.transient is False
    assert "Not enough disk space" in text and str(cache) in text and "free" in text
    assert "HF_HUB_CACHE" in text  # the advice: a larger disk
    assert warnings_of(caplog) == [], "no retry was announced"
    assert big_hub.bytes_sent("/resolve/") == 0, "refused before transferring a byte"
    assert audit_cache(cache, _truth(big_root)) == []
    assert not is_model_cached(BIG, cache_dir=str(cache))

    disk.resize(128 * MB)
    snapshot = prefetch_model(BIG, max_retries=3, backoff_base=5)
    assert sha256_of(Path(snapshot) / "model.safetensors") == big_hub.files(BIG)[0].sha256
    assert big_hub.bytes_sent("/resolve/") == BIG_SIZE


def test_disk_filling_up_during_the_download_fails_at_once_keeps_the_prefix_and_resumes(
        small_disk, big_hub, big_root, caplog):
    disk, cache = small_disk(80 * MB)  # passes the pre-check (8 MB + its margin)
    # 4 MB/s: the download is still running when another program fills the disk.
    big_hub.set_faults(FaultPlan([FaultRule("trickle", after_bytes=0, rate_bps=4_000_000)]))
    sha = big_hub.files(BIG)[0].sha256
    partial = cache / "models--acme--big" / "blobs" / f"{sha}.incomplete"
    box: dict = {}

    def download():
        try:
            box["ok"] = prefetch_model(BIG, max_retries=3, backoff_base=5, timeout=60)
        except BaseException as exc:  # noqa: BLE001
            box["error"] = exc
        box["ended"] = time.monotonic()

    thread = threading.Thread(target=download, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not (partial.exists() and partial.stat().st_size >= 2 * MB):
        assert time.monotonic() < deadline and thread.is_alive()
        time.sleep(0.01)
    disk.fill()
    filled = time.monotonic()
    thread.join(30)
    assert not thread.is_alive()
    assert "error" in box, "the download cannot have finished on a full disk"
    err = box["error"]
    assert isinstance(err, DiskFullError), repr(err)
    assert box["ended"] - filled < 2, "reported at once, no backoff"
    assert err.attempts == 1 and err.transient is False
    assert "Not enough disk space" in str(err) and "no space left" in str(err).lower()
    assert warnings_of(caplog) == []
    # Nothing corrupt: no blob, no snapshot link to the partial file, and the partial file is a
    # true prefix of the hub's file (kept for the next run to resume).
    assert audit_cache(cache, _truth(big_root)) == []
    assert not (cache / "models--acme--big" / "blobs" / sha).exists()
    kept = partial.read_bytes()
    with open(big_root / BIG / "model.safetensors", "rb") as fh:
        assert kept == fh.read(len(kept))
    assert len(kept) >= 2 * MB

    disk.unfill()
    big_hub.set_faults(None)
    first = len(big_hub.stats)
    snapshot = prefetch_model(BIG, max_retries=3)
    assert sha256_of(Path(snapshot) / "model.safetensors") == sha
    gets = [r for r in big_hub.stats[first:] if "/resolve/" in r.path]
    assert gets[0].range == f"bytes={len(kept)}-"
    resent = sum(r.bytes_sent for r in gets)
    print(f"\nENOSPC ({disk.kind}) at byte {len(kept)} of {BIG_SIZE}; the run with space sent {resent} bytes")
    assert resent == BIG_SIZE - len(kept), "resumed from the kept prefix"
    assert audit_cache(cache, _truth(big_root)) == []


def test_a_disk_with_no_room_at_all_fails_at_once_for_a_small_model(small_disk, local_hub, hub_root, caplog):
    disk, cache = small_disk(128 * MB)
    cache.mkdir(parents=True)
    disk.fill()
    started = time.monotonic()
    with pytest.raises(DiskFullError) as info:
        robust_model_download("phaita-test/tiny-bert", max_retries=3, backoff_base=5)
    assert time.monotonic() - started < 2
    assert info.value.attempts == 1 and warnings_of(caplog) == []
    assert audit_cache(cache, _truth(hub_root)) == []
    disk.unfill()
    model = robust_model_download("phaita-test/tiny-bert", max_retries=3, backoff_base=5)
    assert type(model).__name__ == "BertModel"
    assert audit_cache(cache, _truth(hub_root)) == []
