"""Parallel transfers (issue 9): phaita vs ``snapshot_download`` vs ``hf_transfer.download``.

The local hub stands for a real link by capping every TCP connection at 20 MB/s
(``FaultPlan(connection_rate=...)``, the ``cap:20m`` fault item): one stream is slow, several
together are not, as through a CDN edge, a proxy or a long path. Scenarios (full sizes; ``--smoke``
shrinks them):

6   4 shards x 64 MB at 20 MB/s per connection: phaita <= 1.0 x ``snapshot_download``
7   one 512 MB file at 20 MB/s: phaita <= 1.0 x ``hf_transfer`` (8 streams), >= 5 x phaita with one stream
8   clean loopback, 1 GiB in 4 shards: phaita <= 1.05 x ``snapshot_download``, peak RSS < 200 MB
9   the 512 MB file at 20 MB/s, a TCP reset at a random point in a quarter of all responses:
    completes, bytes served <= 1.02 x the file
10  the 512 MB file at 20 MB/s, SIGKILL at 3 random moments, then a rerun: completes, verified,
    bytes served <= 1.05 x the file

Every client runs in its own process (``_client.py``); ``hf_transfer`` there too, as its call holds
the GIL. Rows, comparisons and goals of these scenarios live here; ``report.py`` calls them.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import statistics
from dataclasses import dataclass
from pathlib import Path

from harness import LABELS, WEIGHTS, Row, Run, child_env, run_child
from scenarios import Context, scenario

RATE = 20e6  # bytes per second per connection
SHARDED, LOOP, BIG = "bench/sharded", "bench/sharded-1g", "bench/big"


@dataclass(frozen=True)
class Sizes:
    shard: int
    big: int
    loop_shard: int
    kill_window: tuple[float, float]  # seconds after the start at which a SIGKILL may land


FULL_SIZES = Sizes(shard=64_000_000, big=512_000_000, loop_shard=1 << 28, kill_window=(1.5, 3.5))
SMOKE_SIZES = Sizes(shard=2_000_000, big=8_000_000, loop_shard=4 << 20, kill_window=(0.8, 1.2))


def sizes(ctx: Context) -> Sizes:
    return SMOKE_SIZES if ctx.bench.mode.name == "smoke" else FULL_SIZES


def capped():
    from phaita.testing import FaultPlan

    return FaultPlan(connection_rate=RATE)


def _shards(ctx: Context, repo: str, n: int, size: int) -> int:
    """Publish ``repo``: ``n`` safetensors shards of ``size`` bytes, their index and a config; total bytes."""
    import json

    from fixtures import publish
    from phaita.testing import publish_large_file

    made = ctx.bench.models_dir / f"shards-{n}x{size}"
    files = {}
    for i in range(n):
        name = f"model-{i + 1:05d}-of-{n:05d}.safetensors"
        path = made / repo / name
        if not (path.is_file() and path.stat().st_size == size):
            publish_large_file(made, repo, size, filename=name, seed=100 + i)
        files[name] = path
    index = made / repo / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": {f"w{i}": name for i, name in enumerate(files)}}))
    config = made / repo / "config.json"
    config.write_text('{"model_type": "bert"}')
    publish(ctx.root, repo, {**files, index.name: index, config.name: config})
    ctx.hub.files(repo)  # hash once, before anything is timed
    return sum(p.stat().st_size for p in (ctx.root / repo).iterdir() if p.is_file())


def _big(ctx: Context) -> int:
    from fixtures import publish
    from phaita.testing import publish_large_file

    size = sizes(ctx).big
    path = ctx.bench.models_dir / f"big-{size}" / BIG / WEIGHTS
    if not (path.is_file() and path.stat().st_size == size):
        publish_large_file(path.parents[2], BIG, size, seed=7)
    publish(ctx.root, BIG, {WEIGHTS: path})
    ctx.hub.files(BIG)
    return size


def _row(ctx: Context, sc: str, op: str, repo: str, total: int, note: str = "", faults=capped, **kw) -> Row:
    env = dict(kw.pop("env", {}))
    if ctx.bench.mode.name == "smoke":  # files of a few MB: split them anyway, so CI runs the range streams
        env.setdefault("PHAITA_PARALLEL_THRESHOLD", "1000000")
    return Row(sc, op, note, spec={"repo": repo, **kw.pop("spec", {})}, endpoint=lambda: ctx.hub.url, hub=ctx.hub,
               file_size=total, count="/resolve/", faults=faults, cap=ctx.bench.long_cap, env=env, **kw)


ONE_STREAM = {"PHAITA_STREAMS_PER_FILE": "1"}


def _smoke_skip(ctx: Context, row: Row) -> Row:
    """``--smoke`` (CI) keeps phaita's row of the slow scenarios and skips the references."""
    if ctx.bench.mode.name == "smoke":
        row.skipped = "skipped (smoke)"
    return row


@scenario("6", {"6": "6 4 shards, 20 MB/s per conn."})
def sharded_capped(ctx: Context) -> None:
    s = sizes(ctx)
    total = _shards(ctx, SHARDED, 4, s.shard)
    ctx.bench.log(f"Scenario 6: 4 shards x {s.shard / 1e6:g} MB, each connection capped at {RATE / 1e6:g} MB/s")
    ctx.bench.measure([_row(ctx, "6", op, SHARDED, total, spec=spec) for op, spec in
                       (("phaita_fetch", {}), ("hub_fetch", {}), ("hf_transfer", {"streams": 8}))])


@scenario("7", {"7": "7 one file, 20 MB/s per conn."})
def big_file_capped(ctx: Context) -> None:
    size = _big(ctx)
    ctx.bench.log(f"Scenario 7: one {size / 1e6:g} MB file, each connection capped at {RATE / 1e6:g} MB/s")
    ctx.bench.measure([
        _row(ctx, "7", "phaita_fetch", BIG, size, "8 streams"),
        _row(ctx, "7", "phaita_fetch", BIG, size, "1 stream", env=ONE_STREAM),
        _row(ctx, "7", "hf_transfer", BIG, size, "8 streams", spec={"streams": 8}),
        _row(ctx, "7", "hub_fetch", BIG, size),
    ])


@scenario("8", {"8": "8 clean loopback, 4 shards"})
def sharded_loopback(ctx: Context) -> None:
    s = sizes(ctx)
    total = _shards(ctx, LOOP, 4, s.loop_shard)
    ctx.bench.log(f"Scenario 8: clean loopback, 4 shards x {s.loop_shard / 2**20:g} MiB: time and peak RSS")
    rows = [_row(ctx, "8", op, LOOP, total, faults=None, spec=spec) for op, spec in
            (("phaita_fetch", {}), ("hub_fetch", {}), ("hf_transfer", {"streams": 8}))]
    for row in rows[1:]:
        _smoke_skip(ctx, row)
    ctx.bench.measure(rows)


@scenario("9", {"9": "9 resets in every stream"})
def resets_everywhere(ctx: Context) -> None:
    from phaita.testing import FaultPlan

    size = _big(ctx)

    def resets() -> FaultPlan:  # a reset at a random point (5-95 %) of a quarter of all file responses
        return FaultPlan(random_rate=0.25, random_kinds=("reset",), seed=9, connection_rate=RATE)

    ctx.bench.log("Scenario 9: TCP resets at random points of a quarter of all responses, 20 MB/s per connection")
    ctx.bench.measure([_row(ctx, "9", op, BIG, size, faults=resets, spec=spec) for op, spec in (("phaita_fetch", {}), ("hf_transfer", {"streams": 8}), ("hub_fetch", {}))])


@scenario("10", {"10": "10 SIGKILL x3, then a rerun"})
def killed_three_times(ctx: Context) -> None:
    """Not through ``Bench.measure``: each run is three killed processes and one that finishes."""
    b, s = ctx.bench, sizes(ctx)
    size = _big(ctx)
    expected = ctx.hub.files(BIG)[0].sha256
    b.log(f"Scenario 10: SIGKILL at 3 random moments in {s.kill_window} s, then a rerun ({size / 1e6:g} MB, capped)")
    rows = [Row("10", "phaita_fetch", "8 streams"), _smoke_skip(ctx, Row("10", "hub_fetch"))]
    b.rows.extend(rows)
    rng = random.Random(10)
    for i in range(b.runs):
        for row in rows:
            if row.skipped:
                continue
            cache = b.work / "caches" / f"kill-{i}-{row.op}"
            env = child_env(ctx.hub.url, cache, b.home,
                            {"PHAITA_PARALLEL_THRESHOLD": "1000000"} if b.mode.name == "smoke" else None)
            spec = {"op": row.op, "repo": BIG, "cache_dir": str(cache)}
            ctx.hub.set_faults(capped())
            ctx.hub.reset_stats()
            walls = []
            for k in range(3):
                killed = run_child(spec, env, rng.uniform(*s.kill_window), b.work / "logs" / f"kill-{i}-{row.op}-{k}")
                walls.append(killed.wall_s)
            last = run_child(spec, env, b.long_cap, b.work / "logs" / f"kill-{i}-{row.op}-rerun")
            ctx.hub.set_faults(None)
            verified = last.ok and _sha256_in(cache) == expected
            run = Run(verified, last.capped, last.wall_s, last.call_s, last.rss_mb,
                      error=None if verified else (last.error or "the file does not match the hub's sha256"),
                      bytes_ratio=ctx.hub.bytes_sent(BIG) / size)
            row.runs.append(run)
            b.log(f"  [10] {row.label:<38} run {i + 1}: killed after {', '.join(f'{w:.2f}' for w in walls)} s; "
                  f"rerun {run.wall_s:.2f} s, bytes x{run.bytes_ratio:.3f}, {'verified' if verified else run.error}")
            shutil.rmtree(cache, ignore_errors=True)


def _sha256_in(cache: Path) -> str | None:
    found = sorted(cache.glob(f"models--*/snapshots/*/{WEIGHTS}"))
    if not found:
        return None
    h = hashlib.sha256()
    with open(found[0], "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------- report


def _median_bytes(row: Row) -> float | None:
    vals = [r.bytes_ratio for r in row.runs if r.bytes_ratio is not None]
    return statistics.median(vals) if vals else None


def comparison(row: Row, rows: list[Row]) -> str:
    from measures import find, ratio

    s = row.scenario
    if s in ("6", "8") and row.op == "phaita_fetch":
        out = [f"x{r:.2f} vs {LABELS[op]}" for op in ("hub_fetch", "hf_transfer")
               for r in [ratio(row, find(rows, s, op))] if r is not None]
        if s == "8":
            out.append(f"peak RSS {max(r.rss_mb for r in row.runs):.0f} MB")
        return ", ".join(out)
    if s == "7" and row.op == "phaita_fetch" and "8 streams" in row.note:
        out = [f"x{r:.2f} vs {LABELS[op]}" for op in ("hf_transfer", "hub_fetch")
               for r in [ratio(row, find(rows, "7", op))] if r is not None]
        one = ratio(find(rows, "7", "phaita_fetch", "1 stream"), row)
        if one is not None:
            out.append(f"{one:.1f} x faster than one stream")
        return ", ".join(out)
    if s in ("9", "10"):
        b = _median_bytes(row)
        return f"{row.done}/{len(row.runs)} completed" + (f", bytes x{b:.3f}" if b is not None else "")
    return "reference" if s in ("6", "7", "8") else ""


def goals(rows: list[Row]) -> list:
    from measures import Goal, find, ratio

    out = []
    r6 = ratio(find(rows, "6", "phaita_fetch"), find(rows, "6", "hub_fetch"))
    out.append(Goal("6", "4 shards at 20 MB/s per connection: phaita <= 1.0 x snapshot_download",
                    None if r6 is None else r6 <= 1.0, "not measured" if r6 is None else f"x{r6:.3f}"))
    p7 = find(rows, "7", "phaita_fetch", "8 streams")
    r7 = ratio(p7, find(rows, "7", "hf_transfer"))
    one = ratio(find(rows, "7", "phaita_fetch", "1 stream"), p7)
    out.append(Goal("7", "one large file at 20 MB/s: phaita <= 1.0 x hf_transfer (8 streams), >= 5 x its one stream",
                    None if r7 is None or one is None else (r7 <= 1.0 and one >= 5),
                    "not measured" if r7 is None else f"x{r7:.3f} vs hf_transfer"
                    + (f"; {one:.1f} x faster than one stream" if one is not None else "")))
    p8 = find(rows, "8", "phaita_fetch")
    r8 = ratio(p8, find(rows, "8", "hub_fetch"))
    peak = max((r.rss_mb for r in p8.runs), default=0) if p8 else None
    out.append(Goal("8", "clean loopback, 4 shards: phaita <= 1.05 x snapshot_download, peak RSS < 200 MB",
                    None if r8 is None else (r8 <= 1.05 and peak < 200),
                    "not measured" if r8 is None else f"x{r8:.3f}, peak RSS {peak:.0f} MB"))
    for sc, limit, text in (("9", 1.02, "resets in every stream: completes, bytes <= 1.02 x the file"),
                            ("10", 1.05, "SIGKILL x3 then rerun: completes verified, bytes <= 1.05 x the file")):
        row = find(rows, sc, "phaita_fetch")
        if row is None:
            out.append(Goal(sc, text, None, "not measured"))
            continue
        worst = max((r.bytes_ratio or 0) for r in row.runs)
        out.append(Goal(sc, text, row.done == len(row.runs) and worst <= limit,
                        f"{row.done}/{len(row.runs)} completed, bytes x{worst:.3f} (worst)"))
    return out
