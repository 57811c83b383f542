"""OCI registry benchmark (issue 18): a 4-shard model pulled from a real registry vs the local hub vs ``oras pull``;
a push, then a second push that uploads 0 bytes.

    .venv/bin/python benchmarks/oci.py                 # 1 GiB in 4 shards (a few minutes)
    .venv/bin/python benchmarks/oci.py --size-mb 256   # shorter
    .venv/bin/python benchmarks/oci.py --smoke         # 8 MB, seconds

The hub is :class:`phaita.testing.LocalHub`, the registry Debian's ``docker-registry`` (CNCF distribution
2.8, filesystem storage) on 127.0.0.1, both on loopback on this machine; every pull starts from an empty
cache (or folder). phaita runs in this process; ``oras`` (oras-py, the PyPI client) too. Goals: registry
pull <= 1.1 x the hub pull, faster than ``oras pull``; the second push uploads 0 bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))

from phaita.testing import LocalHub, publish_large_file  # noqa: E402
from phaita.testing.registry import LocalRegistry, registry_missing  # noqa: E402

REPO = "bench/sharded-oci"


def publish(root: Path, total: int) -> None:
    shard = total // 4
    names = [f"model-{i:05d}-of-00004.safetensors" for i in range(1, 5)]
    for i, name in enumerate(names):
        publish_large_file(root, REPO, shard, filename=name, seed=i)
    folder = root / REPO
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": 4 * shard}, "weight_map": {f"layer{i}": n for i, n in enumerate(names)}}))
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))


def _env(cache: Path, **extra: str) -> None:
    os.environ["HF_HUB_CACHE"] = str(cache)
    os.environ.pop("PHAITA_ENDPOINTS", None)
    os.environ.update(extra)
    import huggingface_hub.constants as c
    c.HF_HUB_CACHE = str(cache)


def timed(fn):
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=float, default=1024.0, help="model size in MiB (4 shards)")
    ap.add_argument("--smoke", action="store_true", help="8 MiB: a quick check that every step works")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    missing = registry_missing()
    if missing:
        print(f"skipped: {missing}")
        return 0
    total = int((8 if args.smoke else args.size_mb) * 2**20)
    work = Path(tempfile.mkdtemp(prefix="phaita-oci-bench-"))
    os.environ.update({"HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_XET": "1",
                       "HF_HOME": str(work / "hf-home")})
    from phaita.loader import no_progress, prefetch_model
    from phaita.loader.oci.push import Pusher
    from phaita.testing.env import point_huggingface_hub_at  # noqa: F401  (the hub URL is set below)
    import oras.client

    rows: list[tuple[str, float, str]] = []
    try:
        publish(work / "hub-root", total)
        with LocalHub(work / "hub-root") as hub, LocalRegistry(work / "registry") as registry:
            hub.files(REPO)  # hash once, before anything is timed
            os.environ["HF_ENDPOINT"] = hub.url
            import huggingface_hub.constants as c
            c.ENDPOINT = hub.url
            _env(work / "cache-hub")
            t, snap = timed(lambda: prefetch_model(REPO, max_retries=1, timeout=3600, progress=no_progress))
            rows.append(("pull from the local hub (phaita)", t, f"{total / t / 2**20:.0f} MiB/s"))
            pusher = Pusher(work / "cache-hub")
            t, first = timed(lambda: pusher.push(REPO, "main", f"oci://{registry.host}/bench"))
            rows.append(("push to the registry (phaita)", t, f"{first.bytes_uploaded} bytes uploaded"))
            t, again = timed(lambda: Pusher(work / "cache-hub").push(REPO, "main", f"oci://{registry.host}/bench"))
            rows.append(("push again (phaita)", t, f"{again.bytes_uploaded} bytes uploaded, "
                                                   f"{again.blobs_skipped} blobs already there"))
            _env(work / "cache-oci", PHAITA_ENDPOINTS=f"oci://{registry.host}/bench")
            t, snap2 = timed(lambda: prefetch_model(REPO, max_retries=1, timeout=3600, progress=no_progress))
            rows.append(("pull from the registry (phaita)", t, f"{total / t / 2**20:.0f} MiB/s"))
            client = oras.client.OrasClient(hostname=registry.host, insecure=True)
            out = work / "oras-out"
            t, _ = timed(lambda: client.pull(target=f"{registry.host}/bench/{REPO}:main", outdir=str(out)))
            rows.append(("pull from the registry (oras pull)", t, f"{total / t / 2**20:.0f} MiB/s, no digest check"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    hub_t, reg_t, oras_t = rows[0][1], rows[3][1], rows[4][1]
    print(f"OCI benchmark: {total / 2**20:.0f} MiB in 4 shards, loopback")
    print(f"| step | seconds | note |\n|---|---|---|")
    for name, t, note in rows:
        print(f"| {name} | {t:.2f} | {note} |")
    print(f"registry / hub = {reg_t / hub_t:.2f} (goal <= 1.1); registry vs oras = {reg_t / oras_t:.2f} (goal < 1); "
          f"second push uploaded {rows[2][2].split()[0]} bytes (goal 0)")
    if args.json:
        args.json.write_text(json.dumps({"size": total, "rows": [{"step": n, "seconds": t, "note": x}
                                                                 for n, t, x in rows]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
