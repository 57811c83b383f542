#!/usr/bin/env python
"""What a trust policy costs a warm load of a signed model, and ``verify --signatures`` against the sha256 floor.

One process (imports paid once; interpreter start would hide milliseconds): a generated BERT of
``--mb`` MB (default 1074: 1.0 GiB) is published on a LocalHub, fetched, and signed with a generated site
key (``phaita.loader.signing.sign``). Then, interleaved ``--pairs`` times, a warm offline load
(``robust_model_download(..., allow_offline=True)``) with no ``PHAITA_TRUST`` and with
``PHAITA_TRUST`` + ``PHAITA_REQUIRE_SIGNATURE=1``; the signature step alone (``enforce.before_load``,
what the policy adds before ``from_pretrained``) 50 times each way; and ``check(..., rehash=True)``
(what ``phaita models verify --signatures`` does per snapshot) against a plain ``hashlib.sha256``
read of the same files (the floor).

    .venv/bin/python benchmarks/signed_warm_load.py [--mb 1074] [--pairs 11]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics as st
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def sha256_floor(paths: list[Path]) -> float:
    t = time.perf_counter()
    for p in paths:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=1074)  # 1.0 GiB of weights
    ap.add_argument("--pairs", type=int, default=11)
    args = ap.parse_args()

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from fixtures import make_model, publish

    work = Path(tempfile.mkdtemp(prefix="signed-bench."))
    model = make_model(HERE / "out" / "models", args.mb, work / "gen-home")
    publish(work / "root", "bench/signed", {"config.json": model / "config.json",
                                            "model.safetensors": model / "model.safetensors"})
    os.environ.update(HF_HUB_CACHE=str(work / "cache"), HF_HOME=str(work / "home"), HF_HUB_DISABLE_PROGRESS_BARS="1")
    key = ec.generate_private_key(ec.SECP256R1())
    (work / "site.key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    (work / "site.pub.pem").write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                                      serialization.PublicFormat.SubjectPublicKeyInfo))
    from phaita.loader.cache.layout import RepoCache
    from phaita.loader.signing import enforce
    from phaita.loader.signing.check import check
    from phaita.loader.signing.policy import load_policy
    from phaita.loader.signing.sign import Signer, sign_snapshot
    from phaita.testing import LocalHub
    from phaita.utils.model_loader import prefetch_model, robust_model_download

    with LocalHub(work / "root") as hub:
        os.environ["HF_ENDPOINT"] = hub.url
        snap = Path(prefetch_model("bench/signed"))
    repo, commit = RepoCache(work / "cache", "bench/signed"), snap.name
    t = time.perf_counter()
    sign_snapshot(repo, commit, Signer(key=work / "site.key.pem"))
    sign_s = time.perf_counter() - t
    size = sum(p.stat().st_size for p in snap.iterdir())

    def policy(on: bool) -> None:
        for name in ("PHAITA_TRUST", "PHAITA_REQUIRE_SIGNATURE"):
            os.environ.pop(name, None)
        if on:
            os.environ.update(PHAITA_TRUST=str(work / "site.pub.pem"), PHAITA_REQUIRE_SIGNATURE="1")

    t = time.perf_counter()
    policy(True)
    first = enforce.before_load("bench/signed", work / "cache", commit, True)  # the once-per-commit check
    first_s = time.perf_counter() - t
    assert first is not None and first.ok and not first.from_record
    for on in (False, True):  # warm imports, and each way's record
        policy(on)
        robust_model_download("bench/signed", allow_offline=True)
    loads: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.pairs):
        for on in (False, True):
            policy(on)
            t = time.perf_counter()
            robust_model_download("bench/signed", allow_offline=True)
            loads[on].append(time.perf_counter() - t)
    step: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(50):
        for on in (False, True):
            policy(on)
            t = time.perf_counter()
            enforce.before_load("bench/signed", work / "cache", commit, on)
            step[on].append(time.perf_counter() - t)
    policy(True)
    pol = load_policy(work / "site.pub.pem")
    t = time.perf_counter()
    verdict = check(repo, commit, pol, rehash=True)
    rehash_s = time.perf_counter() - t
    assert verdict.ok, verdict
    floor_s = sha256_floor([Path(os.path.realpath(p)) for p in snap.iterdir()])
    ms = lambda xs: 1000 * st.median(xs)  # noqa: E731
    print(f"model: {size / 2**30:.2f} GiB in {len(list(snap.iterdir()))} files; signing from known digests: "
          f"{1000 * sign_s:.0f} ms (incl. importing model-signing); first check of the commit: {1000 * first_s:.0f} ms")
    print(f"warm load median of {args.pairs}: policy off {ms(loads[False]):.0f} ms, on {ms(loads[True]):.0f} ms, "
          f"difference {ms(loads[True]) - ms(loads[False]):+.0f} ms; fastest off {1000 * min(loads[False]):.0f} ms, "
          f"on {1000 * min(loads[True]):.0f} ms")
    print(f"  off {[round(1000 * x) for x in loads[False]]}  on {[round(1000 * x) for x in loads[True]]}")
    print(f"signature step before from_pretrained, median of 50: off {ms(step[False]):.2f} ms, on {ms(step[True]):.2f} ms")
    print(f"verify --signatures (re-hash against the signature): {rehash_s:.2f} s = {size / rehash_s / 1e9:.2f} GB/s; "
          f"sha256 floor {floor_s:.2f} s = {size / floor_s / 1e9:.2f} GB/s")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
