"""Steps 1-4 of `phaita demo`: the loader through a flaky network, from the cache, offline, and a
model that does not exist."""

from __future__ import annotations

import time

from phaita.demo.session import ENCODER, GENERATOR, GGUF, Demo, indent
from phaita.loader import TqdmProgress


def loader_part(demo: Demo) -> None:
    from phaita.loader import (
        ModelDownloadError,
        is_model_cached,
        load_model_and_tokenizer,
        prefetch_model,
        robust_model_download,
    )

    c = demo.console
    progress = TqdmProgress("  ")
    demo.step("1. Download through a flaky network: retries and resume")
    c.print(f"  cached before? {is_model_cached(ENCODER)}")
    demo.timed(f"{ENCODER} (model + tokenizer)", lambda: load_model_and_tokenizer(
        ENCODER, backoff_base=demo.backoff, progress=progress))
    demo.served("a 503 retried, a TCP reset and a stall resumed in place", ENCODER)
    # Fetch only: the generator component loads it from the cache in part 5 (loading a GGUF takes ~30 s).
    demo.timed(f"{GENERATOR} (GGUF, fetched)", lambda: prefetch_model(
        GENERATOR, model_type="causal_lm", gguf_file=GGUF, backoff_base=demo.backoff, progress=progress))
    demo.served("a reset and an early close resumed in place", GENERATOR)

    demo.step("2. Second load: from the cache (one freshness check)")
    assert demo.hub is not None
    demo.hub.reset_stats()
    c.print(f"  cached now? {is_model_cached(ENCODER)}")
    demo.timed(f"{ENCODER} from cache", lambda: load_model_and_tokenizer(ENCODER))
    c.print(f"  hub requests: {[r.path for r in demo.hub.stats]}")

    demo.step("3. Offline mode: no network at all")
    demo.hub.reset_stats()
    demo.timed(f"{ENCODER} with allow_offline=True", lambda: load_model_and_tokenizer(ENCODER, allow_offline=True))
    c.print(f"  hub requests: {len(demo.hub.stats)}")
    try:
        robust_model_download("phaita-test/tiny-gpt2", allow_offline=True)
    except ModelDownloadError as exc:
        c.print("  A model that is not cached, offline:", style="yellow")
        c.print(indent(str(exc)))

    demo.step("4. A model that does not exist: a clear error, at once")
    started = time.monotonic()
    try:
        robust_model_download("microsoft/deberta-v3-bse", backoff_base=demo.backoff)
    except ModelDownloadError as exc:
        c.print(f"  {type(exc).__name__} after {time.monotonic() - started:.2f} s:", style="yellow")
        c.print(indent(str(exc)))
