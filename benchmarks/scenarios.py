"""The benchmark scenarios (goals from issue 6), one function each, registered in order.

To add one: write ``def my_scenario(ctx: Context) -> None`` that builds :class:`~harness.Row` s and
calls ``ctx.bench.measure(rows)``, and decorate it with ``@scenario("6", {"6": "6 my title"})``
(the key ``--only`` selects; a title for each row scenario id it uses). Comparisons and goals for
the table are in ``report.py`` (a new scenario's rows print without them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from fixtures import Blackhole, make_large, publish, refusing_endpoint
from harness import REPO_LARGE, WEIGHTS, Bench, Row


@dataclass
class Context:
    """What every scenario gets: the bench, the clean hub and its root, the model's weight size."""

    bench: Bench
    hub: object  # phaita.testing.LocalHub, serving ``root``
    root: Path
    size: int


@dataclass(frozen=True)
class Scenario:
    key: str  # what --only selects
    run: Callable[[Context], None]
    titles: dict[str, str]  # row scenario id -> title in the table


SCENARIOS: list[Scenario] = []
SCENARIO_TITLES: dict[str, str] = {}


def scenario(key: str, titles: dict[str, str]) -> Callable[[Callable[[Context], None]], Callable[[Context], None]]:
    def register(fn: Callable[[Context], None]) -> Callable[[Context], None]:
        SCENARIOS.append(Scenario(key, fn, titles))
        SCENARIO_TITLES.update(titles)
        return fn
    return register


@scenario("1", {"1": "1 clean, cold cache"})
def clean_cold_cache(ctx: Context) -> None:
    b, hub, size = ctx.bench, ctx.hub, ctx.size
    b.log("Scenario 1: clean network, cold cache")
    rows = [b.heavy_row(Row("1", op, endpoint=lambda: hub.url, hub=hub, file_size=size, cap=b.long_cap))
            for op in ("phaita", "hub", "transformers", "phaita_fetch", "hub_fetch")]
    rows[0].skipped = None  # smoke mode too: load one model through phaita, end to end
    b.measure(rows)


@scenario("2", {"2-local": "2 warm, local only (reference)", "2-refused": "2 warm, hub refusing",
                "2-stalled": "2 warm, hub stalled", "2-blackhole": "2 warm, hub never answers"})
def warm_cache_dead_hub(ctx: Context) -> None:
    from phaita.testing import FaultPlan, FaultRule, LocalHub

    stall = FaultPlan([FaultRule("stall_headers", path="*", api=True, methods=("GET", "HEAD"))])
    refused_url, refused_sock = refusing_endpoint()
    blackhole = Blackhole()
    try:
        with LocalHub(ctx.root, faults=stall) as stalled:
            _warm_cache_rows(ctx.bench, ctx.hub, stalled, refused_url, blackhole)
    finally:
        refused_sock.close()
        blackhole.close()


def _warm_cache_rows(b: Bench, hub, stalled_hub, refused_url: str, blackhole: Blackhole) -> None:
    b.log("Scenario 2: warm cache; hub refusing connections / stalled")
    caches = {op: b.work / "warm" / op for op in ("phaita", "hub", "transformers")}
    b.prime("phaita_fetch", hub.url, caches["phaita"])
    b.prime("hub_fetch", hub.url, caches["hub"])
    if b.mode.heavy_everywhere:
        b.prime("transformers", hub.url, caches["transformers"])
    owner = {"phaita": "phaita", "phaita_fetch": "phaita", "hub": "hub", "hub_fetch": "hub",
             "transformers": "transformers"}
    local = [
        b.heavy_row(Row("2-local", "transformers", "local_files_only=True", spec={"local_only": True},
                        cache=caches["transformers"], cap=b.long_cap)),
        b.heavy_row(Row("2-local", "phaita", "allow_offline=True", spec={"local_only": True}, cache=caches["phaita"],
                        cap=b.long_cap)),
        Row("2-local", "phaita_fetch", "local_files_only=True", spec={"local_only": True}, cache=caches["phaita"],
            cap=b.long_cap),
    ]
    rows = list(local)
    for scenario, url in (("2-refused", lambda: refused_url), ("2-stalled", lambda: stalled_hub.url)):
        rows += [b.heavy_row(Row(scenario, op, endpoint=url, cache=caches[owner[op]]))
                 for op in ("phaita", "hub", "transformers")]
        rows.append(Row(scenario, "phaita_fetch", endpoint=url, cache=caches["phaita"]))
    # The LocalHub answers routes it does not serve (such as huggingface_hub's /api/agent-harnesses,
    # fetched with a 3 s timeout whenever telemetry is on and no registry younger than a day is cached)
    # with a 404, stalled or not. A server that never answers anything shows what that costs.
    telemetry_on = {"HF_HUB_DISABLE_TELEMETRY": "0"}
    rows += [
        Row("2-blackhole", "phaita_fetch", "telemetry off", endpoint=lambda: blackhole.url, cache=caches["phaita"]),
        Row("2-blackhole", "phaita_fetch", "telemetry on: hf default", endpoint=lambda: blackhole.url,
            cache=caches["phaita"], env=telemetry_on),
        b.heavy_row(Row("2-blackhole", "phaita", "telemetry on: hf default", endpoint=lambda: blackhole.url,
                        cache=caches["phaita"], env=telemetry_on)),
    ]
    b.measure(rows)  # one interleaved set: the references share the faulty runs' noise


@scenario("3", {"3-clean": "3 reference: no cuts", "3-reset": "3 cut every 10 %: TCP resets",
                "3-close": "3 cut every 10 %: clean closes"})
def transfer_cuts(ctx: Context) -> None:
    from phaita.testing import FaultPlan, FaultRule

    b, hub, size = ctx.bench, ctx.hub, ctx.size
    cut = size // 10
    b.log("Scenario 3: transfer cut after each 10 % of the file, by TCP resets and by clean closes")

    def plan_for(kind: str) -> Callable[[], FaultPlan]:
        def plan() -> FaultPlan:
            # rule k fires on the k-th GET of the weights, after 10 % of the file: a client that resumes
            # where it stopped is cut at 10 %, 20 % ... 90 % of the file.
            return FaultPlan([FaultRule(kind, path=f"*/{WEIGHTS}", nth=k, times=1, after_bytes=cut) for k in range(1, 10)])
        return plan

    # clean references in the same interleaved set, so that "x the clean run" compares runs made
    # at the same time on a shared machine
    rows = [Row("3-clean", op, endpoint=lambda: hub.url, hub=hub, file_size=size, cap=b.long_cap)
            for op in ("phaita_fetch", "hub_fetch", "floor")]
    for kind in ("reset", "close"):
        rows += [Row(f"3-{kind}", op, endpoint=lambda: hub.url, hub=hub, file_size=size, faults=plan_for(kind))
                 for op in ("phaita_fetch", "hub_fetch", "floor")]
        rows.append(b.heavy_row(Row(f"3-{kind}", "transformers", endpoint=lambda: hub.url, hub=hub, file_size=size,
                                    faults=plan_for(kind))))
    b.measure(rows)


@scenario("4", {"4": "4 trickling hub"})
def trickling_hub(ctx: Context) -> None:
    from phaita.testing import FaultPlan, FaultRule

    b, hub, size = ctx.bench, ctx.hub, ctx.size
    m = b.mode
    b.log(f"Scenario 4: hub trickling {m.trickle_rate / 1e3:g} kB/s after {m.trickle_after / 1e6:g} MB")

    def plan() -> FaultPlan:
        return FaultPlan([FaultRule("trickle", path=f"*/{WEIGHTS}", after_bytes=m.trickle_after, rate_bps=m.trickle_rate)])

    timeout = {"timeout": m.trickle_timeout, "max_retries": 1}
    rows = [Row("4", "phaita", f"timeout={m.trickle_timeout:g}, max_retries=1", spec=timeout, endpoint=lambda: hub.url,
                hub=hub, file_size=size, faults=plan)]
    rows.append(Row("4", "hub_fetch", endpoint=lambda: hub.url, hub=hub, file_size=size, faults=plan))
    rows.append(b.heavy_row(Row("4", "transformers", endpoint=lambda: hub.url, hub=hub, file_size=size, faults=plan)))
    b.measure(rows)


@scenario("5", {"5": "5 pull one large file"})
def large_file_memory(ctx: Context) -> None:
    b, hub, size = ctx.bench, ctx.hub, ctx.bench.mode.large_bytes
    publish(ctx.root, REPO_LARGE, {WEIGHTS: make_large(b.models_dir, size)})
    hub.files(REPO_LARGE)  # hash once, before anything is timed
    b.log(f"Scenario 5: peak memory while pulling a {size / 2**30:.2f} GiB file")
    rows = [Row("5", op, spec={"repo": REPO_LARGE}, endpoint=lambda: hub.url, hub=hub, file_size=size, cap=b.long_cap)
            for op in ("phaita_fetch", "hub_fetch")]
    rows += [Row("5", op, endpoint=lambda: hub.url, cap=b.long_cap) for op in ("import_phaita", "import_hub")]
    b.measure(rows)


@scenario("12", {"12": "12 warm load, verify on load"})
def verify_on_load(ctx: Context) -> None:
    """What ``PHAITA_VERIFY_ON_LOAD=1`` costs a warm load: one re-hash of the snapshot before from_pretrained."""
    b, hub = ctx.bench, ctx.hub
    b.log("Scenario 12: warm cache, with and without re-hashing the snapshot before loading")
    cache = b.work / "warm-verify" / "phaita"
    b.prime("phaita_fetch", hub.url, cache)
    rows = [
        b.heavy_row(Row("12", "transformers", "local_files_only=True", spec={"local_only": True}, cache=cache,
                        cap=b.long_cap)),
        b.heavy_row(Row("12", "phaita", "allow_offline=True", spec={"local_only": True}, cache=cache,
                        cap=b.long_cap)),
        b.heavy_row(Row("12", "phaita", "allow_offline=True, PHAITA_VERIFY_ON_LOAD=1", spec={"local_only": True},
                        cache=cache, cap=b.long_cap, env={"PHAITA_VERIFY_ON_LOAD": "1"})),
    ]
    b.measure(rows)
