"""The loader's one stream of events: observers, the older start/update/close bars, a bar that breaks."""

from __future__ import annotations

import io
import logging
import sys

from phaita.loader import events as ev
from phaita.loader.request.progress import TerminalProgress
from phaita.utils.model_loader import prefetch_model

BERT = "phaita-test/tiny-bert"


class OldStyleBar:
    """What ``progress=`` took before events: start/update/close."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def start(self, name: str, total: int, initial: int) -> None:
        self.calls.append(("start", name, total, initial))

    def update(self, n: int) -> None:
        self.calls.append(("update", n))

    def close(self) -> None:
        self.calls.append(("close",))


def test_an_old_style_bar_sees_the_snapshot_as_one_transfer(loader_env, local_hub):
    bar, seen = OldStyleBar(), []
    prefetch_model(BERT, progress=bar, events=seen.append)
    plan = next(e for e in seen if isinstance(e, ev.Plan))
    assert bar.calls[0] == ("start", BERT, plan.total_bytes, 0) and bar.calls[-1] == ("close",)
    assert sum(c[1] for c in bar.calls if c[0] == "update") == plan.total_bytes
    assert [c[0] for c in bar.calls].count("start") == 1  # files at once, yet one bar


def test_an_observer_that_raises_is_dropped_and_the_download_goes_on(loader_env, local_hub, caplog):
    calls = []

    def broken(event: ev.Event) -> None:
        calls.append(event)
        raise RuntimeError("bar exploded")

    seen: list = []
    path = prefetch_model(BERT, events=[broken, seen.append])
    assert path and len(calls) == 1  # called once, then dropped
    assert any(isinstance(e, ev.FileDone) for e in seen)  # the others still get every event
    assert any("progress observer" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_the_terminal_bar_follows_parallel_files_without_leaving_lines(loader_env, local_hub, monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    bar = TerminalProgress()
    prefetch_model(BERT, progress=bar)
    assert not bar._files  # every file line closed when its file was done
    assert BERT in err.getvalue()  # the snapshot's own bar was drawn
