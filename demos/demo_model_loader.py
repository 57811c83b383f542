"""The model loader in five parts, against a local hub of tiny models (seconds, no internet).

    .venv/bin/python demos/demo_model_loader.py

1. Cache check      -- is_model_cached / _check_cached_model before and after a download
2. Offline mode     -- allow_offline=True and HF_HUB_OFFLINE=1: cache only, and what happens when it's not there
3. Retry config     -- max_retries, backoff_base / PHAITA_BACKOFF_BASE, timeout, against injected faults
4. Error messages   -- a wrong name, a gated model, an unknown revision, a dead network
5. Components       -- PHAITA's components loading through the loader (and their non-neural fallback)

It uses a temporary cache and its own local hub, so your real Hugging Face cache is never touched.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from phaita.testing import LocalHub, publish_tiny_models


def banner(title: str) -> None:
    print(f"\n=== {title} " + "=" * max(0, 70 - len(title)))


def first_lines(text: str, n: int = 6) -> str:
    return "\n".join("    " + line for line in text.splitlines()[:n])


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="    log %(levelname)s %(name)s: %(message)s")
    work = Path(tempfile.mkdtemp(prefix="phaita-loader-demo-"))
    root = work / "hub"
    publish_tiny_models(root)
    gated = root / "acme" / "gated-model"
    gated.mkdir(parents=True)
    (gated / "config.json").write_text("{}")
    (gated / "model.safetensors").write_bytes(b"weights behind a licence")
    (gated / ".hub.json").write_text('{"gated": true}')
    with LocalHub(root) as hub:
        os.environ.update({"HF_ENDPOINT": hub.url, "HF_HUB_CACHE": str(work / "cache"), "HF_HUB_DISABLE_XET": "1",
                           "PHAITA_STALL_TIMEOUT": "1"})
        from phaita.utils.model_loader import (
            ModelDownloadError,
            _check_cached_model,
            is_model_cached,
            load_model_and_tokenizer,
            robust_model_download,
        )

        banner("1. Cache check")
        print(f"  tiny-bert cached? {_check_cached_model('phaita-test/tiny-bert')}")
        model, tokenizer = load_model_and_tokenizer("phaita-test/tiny-bert")
        print(f"  downloaded {type(model).__name__} + {type(tokenizer).__name__}")
        print(f"  tiny-bert cached? {_check_cached_model('phaita-test/tiny-bert')}  "
              f"(at its commit: {is_model_cached('phaita-test/tiny-bert', hub.commit_sha('phaita-test/tiny-bert'))})")

        banner("2. Offline mode")
        hub.reset_stats()
        robust_model_download("phaita-test/tiny-bert", allow_offline=True)
        print(f"  allow_offline=True loaded tiny-bert with {len(hub.stats)} requests to the hub")
        os.environ["HF_HUB_OFFLINE"] = "1"
        try:
            robust_model_download("phaita-test/tiny-gpt2", model_type="causal_lm")
        except ModelDownloadError as exc:
            print(f"  HF_HUB_OFFLINE=1 and not cached -> {type(exc).__name__}:\n{first_lines(str(exc))}")
        os.environ["HF_HUB_OFFLINE"] = "0"

        banner("3. Retry configuration")
        hub.set_faults("503x2:path=*tiny-gpt2/resolve/*config.json")
        started = time.monotonic()
        robust_model_download("phaita-test/tiny-gpt2", model_type="causal_lm", max_retries=3, backoff_base=0.2)
        print(f"  two 503s, max_retries=3, backoff_base=0.2 (waits 0.2 s, 0.4 s): "
              f"loaded in {time.monotonic() - started:.2f} s")
        hub.set_faults("stall@10%:path=*tiny-deberta/resolve/*model.safetensors")
        started = time.monotonic()
        try:
            robust_model_download("phaita-test/tiny-deberta", max_retries=2, timeout=2, backoff_base=0.1)
        except ModelDownloadError as exc:
            print(f"  a stalled hub, timeout=2 s per attempt, 2 attempts: gave up after "
                  f"{time.monotonic() - started:.1f} s ({exc.last_error})")
        hub.set_faults(None)

        banner("4. Error messages")
        cases = [
            ("a wrong name", dict(model_name="microsoft/deberta-v3-bsae")),
            ("a gated model", dict(model_name="acme/gated-model")),
            ("an unknown revision", dict(model_name="phaita-test/tiny-bert", revision="v9")),
        ]
        for label, kwargs in cases:
            try:
                robust_model_download(**kwargs)
            except ModelDownloadError as exc:
                print(f"  {label} -> {type(exc).__name__}:\n{first_lines(str(exc), 4)}")
        os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"
        try:
            robust_model_download("phaita-test/tiny-multiformat", max_retries=2, backoff_base=0.1)
        except ModelDownloadError as exc:
            print(f"  a dead network -> {type(exc).__name__}:\n{first_lines(str(exc), 14)}")
        os.environ["HF_ENDPOINT"] = hub.url

        banner("5. Integration with the components")
        from phaita.models import ComplaintGenerator, DiagnosisDiscriminator

        hub.reset_stats()
        discriminator = DiagnosisDiscriminator("phaita-test/tiny-bert")  # through the loader (cached: one check)
        print(f"  DiagnosisDiscriminator loaded phaita-test/tiny-bert; hub saw {len(hub.stats)} request(s)")
        generator = ComplaintGenerator("phaita-test/does-not-exist", fallback_to_templates=True, seed=3)
        print(f"  ComplaintGenerator with a missing model and fallback_to_templates=True -> mode {generator.mode!r}")
        texts, codes = generator.generate_dataset(n_per_condition=8, seed=1)
        discriminator.fit(texts, codes)
        complaint = generator.generate_complaint(None, "J45.9")
        print(f"  complaint: {complaint!r}")
        for code, name, p in discriminator.predict_diagnosis([complaint], top_k=3)[0]:
            print(f"    {code:7s} {name:45s} {p:.2f}")
        try:
            ComplaintGenerator("phaita-test/does-not-exist", max_retries=1)
        except ModelDownloadError as exc:
            print(f"  without the fallback -> {type(exc).__name__}: {str(exc).splitlines()[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
