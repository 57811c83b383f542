"""Chaos runner: many loads through a faulty local hub, every result checked byte for byte.

``python -m phaita.testing.chaos [--full] [--loads N] [--seed S] [--workers W] [--rate R]``
prints a summary table and exits with status 1 when a load was corrupt, hung or failed with an
unexpected error. ``run_chaos()`` is the same thing from Python (the CI test calls it).

What one run does
-----------------
1. Publishes a few tiny models into a temporary hub root (a BERT, a GPT-2, a DeBERTa tokenizer,
   a BERT with four safetensors shards and an index, and a 2 MB raw weights file), starts a
   :class:`~phaita.testing.hub.LocalHub` on it, and loads each one once with no faults: that
   reference load gives the files each kind of load needs and checks the set-up.
2. Turns on a seeded :class:`ChaosPlan`: each GET of a file (and, at a lower rate, of the listing
   API) draws a fault: a TCP reset or a clean close (truncation) at a random offset, HTTP
   500/502/503/504, 429 with a short ``Retry-After``, a stall after the headers or mid-body, a
   trickle, or corrupted bytes.
3. Runs ``loads`` loads on ``workers`` threads, with parallel fetching on (a snapshot's files at
   once, and files from ``parallel_threshold`` bytes on over several range streams, each drawing
   its own faults). Loads come in groups that share one fresh cache
   folder (the second load of a group finds the first one's files: a warm cache, or partial files
   to resume). Each load picks a model, a way of loading it (``robust_model_download``,
   ``load_model_and_tokenizer``, or the fetch phase alone) and ``max_retries`` in 1..4.
4. Checks every load:

   * **succeeded**: every file of the snapshot that ``from_pretrained`` was given (or that the
     fetch returned) has exactly the hub's bytes (sha256 of both), and no needed file is missing;
   * **failed cleanly**: a ``ModelDownloadError`` whose cause is transient, after exactly
     ``max_retries`` attempts;
   * anything else is an **unexpected error**;
   * **hang**: the load ran past ``max_retries * (timeout + longest wait) + slack``;
   * **corrupt**: a loaded file differed from the hub's, or the cache afterwards holds a blob
     whose content does not match its name (sha256 or git sha1), or a snapshot links a partial
     (``.incomplete``) file or any file whose bytes are not the hub's.

Bytes served / bytes needed: the hub's count of file-body bytes sent, over the sum of the sizes
of the distinct files each cache folder needed (what a fault-free client would transfer).

With ``registry=`` (a started :class:`~phaita.testing.registry.LocalRegistry`) the same run has its
models in an OCI registry instead: pushed there by phaita (ModelPack), loaded through a fault proxy
that draws the same plan on manifest and blob GETs (:mod:`.sources`).
"""

from __future__ import annotations

from .audit import audit_cache, sha256_file, snapshot_files
from .cli import main
from .plan import CHAOS_KINDS, ChaosConfig, ChaosPlan
from .report import ChaosReport, LoadResult
from .runner import ChaosRunner, LoadRecorder, EventCounter, run_chaos

__all__ = ["ChaosConfig", "ChaosPlan", "ChaosReport", "ChaosRunner", "LoadRecorder", "LoadResult", "EventCounter",
           "run_chaos", "audit_cache", "main", "CHAOS_KINDS", "sha256_file", "snapshot_files"]
