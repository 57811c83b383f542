"""A LAN mirror at the physical limit (issue 20): nginx as a fast hub, the floors beside every client.

The Python hubs saturate near 300 MB/s, before the clients do; nginx (``phaita.testing.NginxHub``,
Debian's ``nginx-light``: a C server with sendfile) does not, so these scenarios measure the client.
Every client runs in its own process (``_client.py``); each floor too:

* ``curl`` to ``/dev/null`` (what the link and the server give), ``curl`` to disk with no ``sync``
  (the page cache: what a client that never fsyncs, such as ``hf_transfer``, waits for), ``curl`` to
  disk then ``sync`` (the *durable floor*: the bytes on disk, no hash), ``sha256`` of the same bytes
  on one core. The difference between the two ``curl`` to disk rows is the disk's share.

Scenarios (full sizes; ``--smoke`` shrinks them, ``--lan-bytes`` sets the single file's size and a
quarter of it per shard):

13  clean loopback: one 1 GiB file, then 4 x 256 MiB shards: phaita, ``snapshot_download``,
    ``hf_transfer`` (8 streams per file, the files one after another), the four floors.
    Goals: phaita <= 1.1 x the durable floor for both; shards faster than ``hf_transfer``.
    Also phaita and ``hf_transfer`` with their cache in RAM (``/dev/shm``, a tmpfs: fsync costs
    nothing there), which shows how much of the gap between them is the disk's.
14  the same repos at 20 MB/s per connection (nginx ``limit_rate``): one file <= 1.0 x
    ``hf_transfer`` (8 streams), shards <= 0.7 x ``snapshot_download``.
15  cost per GB, one file of 256 MiB, 1 GiB and 4 GiB (phaita and the durable floor), net of what a
    1 MiB fetch costs (interpreter, imports, session, listing): flat within
    15 %, peak RSS < 200 MB at 4 GiB.
16  warm cache, a branch name, the hub stalled: ``PHAITA_FRESHNESS=background`` within 0.1 s of an
    offline load (``check``, today's default, beside them).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from harness import LABELS, REPO_MODEL, Row
from scenarios import Context, scenario

RATE = 20e6  # bytes per second per connection (nginx limit_rate)
ONE, SHARDS = "lan/one", "lan/shards"
CLIENTS = (("phaita_fetch", {}), ("hub_fetch", {}), ("hf_transfer", {"streams": 8}))
FLOORS = ("curl_null", "curl_cache", "curl_disk", "sha256")
FIXED = "fixed cost: a 1 MiB file"
IN_RAM = "cache in RAM (tmpfs)"
RAM_ROOT = Path("/dev/shm")


@dataclass(frozen=True)
class Sizes:
    one: int
    scale: tuple[int, ...]


FULL_SIZES = Sizes(one=1 << 30, scale=(1 << 28, 1 << 30, 1 << 32))
SMOKE_SIZES = Sizes(one=16 << 20, scale=(4 << 20, 16 << 20))


def sizes(ctx: Context) -> Sizes:
    b = ctx.bench
    base = SMOKE_SIZES if b.mode.name == "smoke" else FULL_SIZES
    chosen = getattr(b, "lan_bytes", None)
    if chosen:
        return Sizes(one=chosen, scale=tuple(sorted({chosen // 4, chosen, chosen * 4})))
    return base


def _nginx_or_skip(ctx: Context, rows: list[Row]) -> bool:
    from phaita.testing.nginx_hub import MISSING, nginx_binary

    if nginx_binary() is None:
        ctx.bench.log(f"Scenarios 13-15 not run: {MISSING}")
        for row in rows:
            row.skipped = "no nginx"
        ctx.bench.rows.extend(rows)
        return False
    return True


def _publish(ctx: Context, root: Path, repo: str, n: int, size: int) -> list[Path]:
    """``repo`` in ``root``: one file of ``size`` bytes, or ``n`` shards of ``size // n``; their paths."""
    from fixtures import publish
    from phaita.testing import publish_large_file

    each = size // n
    made = ctx.bench.models_dir / f"lan-{n}x{each}"
    files = {}
    for i in range(n):
        name = "model.safetensors" if n == 1 else f"model-{i + 1:05d}-of-{n:05d}.safetensors"
        path = made / repo / name
        if not (path.is_file() and path.stat().st_size == each):
            publish_large_file(made, repo, each, filename=name, seed=200 + i)
        files[name] = path
    config = made / repo / "config.json"
    config.write_text('{"model_type": "bert"}')
    publish(root, repo, {**files, "config.json": config})
    return [root / repo / name for name in files]


def _rows(ctx: Context, sc: str, repo: str, files: list[Path], hub, floors: bool, clients=CLIENTS) -> list[Row]:
    env = {"PHAITA_PARALLEL_THRESHOLD": "1000000"} if ctx.bench.mode.name == "smoke" else {}
    rows = [Row(sc, op, "8 streams, file after file" if op == "hf_transfer" and len(files) > 1 else "",
                spec={"repo": repo, **spec}, endpoint=lambda: hub.url, cap=ctx.bench.long_cap, env=env)
            for op, spec in clients]
    if floors:
        rows += [Row(sc, op, spec={"repo": repo, "files": [str(p) for p in files]}, endpoint=lambda: hub.url,
                     cap=ctx.bench.long_cap) for op in FLOORS]
    if floors and RAM_ROOT.is_dir():  # the same two clients with nothing to wait for on the disk
        ram = RAM_ROOT / f"phaita-bench-{ctx.bench.work.name}"
        rows += [Row(sc, op, ", ".join(n for n in ("8 streams, file after file" if op == "hf_transfer" and len(files) > 1
                                                   else "", IN_RAM) if n),
                     spec={"repo": repo, **spec}, endpoint=lambda: hub.url, cap=ctx.bench.long_cap, env=env,
                     cache_root=ram)
                 for op, spec in clients if op in ("phaita_fetch", "hf_transfer")]
    return rows


def _serve(ctx: Context, rate: float | None, repos: dict[str, int], sc_one: str, sc_shards: str, floors: bool,
           clients_one=CLIENTS) -> None:
    from phaita.testing.nginx_hub import NginxHub

    root = ctx.bench.work / f"nginx-root-{sc_one}"
    one = _publish(ctx, root, ONE, 1, repos[ONE])
    shards = _publish(ctx, root, SHARDS, 4, repos[SHARDS])
    with NginxHub(root, rate=rate) as hub:
        ctx.bench.log(f"  nginx {hub.url}: {ONE} {repos[ONE] / 2**20:g} MiB, {SHARDS} 4 x {repos[SHARDS] / 4 / 2**20:g} MiB"
                      + (f", {rate / 1e6:g} MB/s per connection" if rate else ", no cap"))
        ctx.bench.measure(_rows(ctx, sc_one, ONE, one, hub, floors, clients_one))
        ctx.bench.measure(_rows(ctx, sc_shards, SHARDS, shards, hub, floors))


@scenario("13", {"13-one": "13 nginx, clean: one file", "13-shards": "13 nginx, clean: 4 shards"})
def lan_clean(ctx: Context) -> None:
    s = sizes(ctx)
    if not _nginx_or_skip(ctx, [Row("13-one", op) for op, _ in CLIENTS]):
        return
    ctx.bench.log(f"Scenario 13: nginx on loopback, no cap: one {s.one / 2**20:g} MiB file, 4 shards of a quarter")
    _serve(ctx, None, {ONE: s.one, SHARDS: s.one}, "13-one", "13-shards", floors=True)


@scenario("14", {"14-one": "14 nginx, 20 MB/s: one file", "14-shards": "14 nginx, 20 MB/s: 4 shards"})
def lan_capped(ctx: Context) -> None:
    s = sizes(ctx)
    if not _nginx_or_skip(ctx, [Row("14-one", op) for op, _ in CLIENTS]):
        return
    ctx.bench.log(f"Scenario 14: nginx, {RATE / 1e6:g} MB/s per connection (limit_rate)")
    # snapshot_download fetches one file over one connection: 1 GiB at 20 MB/s is ~54 s a run, and
    # the goal for one file is against hf_transfer; it is measured on the shards only
    _serve(ctx, RATE, {ONE: s.one, SHARDS: s.one}, "14-one", "14-shards", floors=False,
           clients_one=(CLIENTS[0], CLIENTS[2]))


@scenario("15", {"15": "15 nginx, cost per GB"})
def lan_scale(ctx: Context) -> None:
    from phaita.testing.nginx_hub import NginxHub

    s = sizes(ctx)
    if not _nginx_or_skip(ctx, [Row("15", "phaita_fetch")]):
        return
    ctx.bench.log("Scenario 15: one file of " + ", ".join(f"{x / 2**20:g} MiB" for x in s.scale) + ": cost per GB")
    root = ctx.bench.work / "nginx-root-15"
    repos = {f"lan/scale-{size >> 20}m": _publish(ctx, root, f"lan/scale-{size >> 20}m", 1, size) for size in s.scale}
    _publish(ctx, root, "lan/scale-fixed", 1, 1 << 20)
    env = {"PHAITA_PARALLEL_THRESHOLD": "1000000"} if ctx.bench.mode.name == "smoke" else {}
    with NginxHub(root) as hub:
        # what a fetch costs whatever its size (interpreter, imports, session, listing, rename): a 1 MiB file
        ctx.bench.measure([Row("15", "phaita_fetch", FIXED, spec={"repo": "lan/scale-fixed"}, endpoint=lambda: hub.url,
                               cap=ctx.bench.long_cap, env=env)])
        for (repo, files), size in zip(repos.items(), s.scale):
            ctx.bench.measure([
                Row("15", "phaita_fetch", f"{size / 2**20:g} MiB", spec={"repo": repo}, endpoint=lambda: hub.url,
                    cap=ctx.bench.long_cap * 2, env=env),
                Row("15", "curl_disk", f"{size / 2**20:g} MiB", spec={"repo": repo, "files": [str(p) for p in files]},
                    endpoint=lambda: hub.url, cap=ctx.bench.long_cap * 2)])


@scenario("16", {"16-local": "16 warm, offline (reference)", "16-stalled": "16 warm, branch, hub stalled"})
def lan_boot(ctx: Context) -> None:
    from phaita.testing import FaultPlan, FaultRule, LocalHub

    b = ctx.bench
    b.log("Scenario 16: warm cache, a branch name (main), hub stalled: freshness=background vs an offline load")
    cache = b.work / "warm-freshness" / "phaita"
    b.prime("phaita_fetch", ctx.hub.url, cache)
    stall = FaultPlan([FaultRule("stall_headers", path="*", api=True, methods=("GET", "HEAD"))])
    with LocalHub(ctx.root, faults=stall) as stalled:
        rows = [
            Row("16-local", "phaita_fetch", "local_files_only=True", spec={"local_only": True}, cache=cache),
            Row("16-stalled", "phaita_fetch", "freshness=background", endpoint=lambda: stalled.url,
                cache=cache, env={"PHAITA_FRESHNESS": "background"}),
            Row("16-stalled", "phaita_fetch", "freshness=check (default)", endpoint=lambda: stalled.url,
                cache=cache, cap=b.long_cap),
            b.heavy_row(Row("16-local", "phaita", "allow_offline=True", spec={"local_only": True}, cache=cache,
                            cap=b.long_cap)),
            b.heavy_row(Row("16-stalled", "phaita", "freshness=background", endpoint=lambda: stalled.url,
                            cache=cache, env={"PHAITA_FRESHNESS": "background"}, cap=b.long_cap)),
        ]
        b.measure(rows)


# --------------------------------------------------------------------------- report


def _floor(rows: list[Row], sc: str, op: str = "curl_disk", note: str = "") -> Row | None:
    from measures import find

    return find(rows, sc, op, note)


def comparison(row: Row, rows: list[Row]) -> str:
    from measures import find, ratio

    s = row.scenario
    if s in ("13-one", "13-shards", "14-one", "14-shards") and row.op in ("phaita_fetch", "hf_transfer", "hub_fetch"):
        out = []
        if s.startswith("13"):
            r = ratio(row, _floor(rows, s))
            if r is not None:
                out.append(f"x{r:.2f} the durable floor")
            r = ratio(row, _floor(rows, s, "curl_cache"))
            if r is not None and row.op == "hf_transfer":
                out.append(f"x{r:.2f} the page-cache floor")
        if IN_RAM in row.note:
            r = ratio(row, find(rows, s, "hf_transfer", IN_RAM))
            return f"x{r:.2f} vs {LABELS['hf_transfer']} ({IN_RAM})" if row.op == "phaita_fetch" and r else ""
        if row.op == "phaita_fetch":
            out += [f"x{r:.2f} vs {LABELS[op]}" for op in ("hf_transfer", "hub_fetch")
                    for r in [ratio(row, find(rows, s, op))] if r is not None]
        return ", ".join(out)
    if s.startswith("13") and row.op in FLOORS:
        return "floor"
    if s == "15":
        med, mb = row.median(), _size_of(row.note)
        if not med or not mb:
            return "subtracted from the phaita rows' net cost" if row.note == FIXED else ""
        fixed = find(rows, "15", "phaita_fetch", FIXED)
        net = f", net of the fixed cost {(med - fixed.median()) / (mb / 1024):.2f} s per GiB" \
            if row.op == "phaita_fetch" and fixed is not None and fixed.median() else ""
        return f"{med / (mb / 1024):.2f} s per GiB{net}, peak RSS {max(r.rss_mb for r in row.runs):.0f} MB"
    if s == "16-stalled":
        ref = find(rows, "16-local", row.op)
        m, mr = row.median(), ref.median() if ref else None
        return f"{m - mr:+.2f} s vs {ref.label}" if m is not None and mr is not None else ""
    return ""


def _size_of(note: str) -> float | None:
    try:
        return float(note.split(" MiB")[0])
    except ValueError:
        return None


def goals(rows: list[Row]) -> list:
    from measures import Goal, find, ratio

    out = []
    for s, what in (("13-one", "one file"), ("13-shards", "4 shards")):
        p = find(rows, s, "phaita_fetch")
        r = ratio(p, _floor(rows, s))
        extra = ""
        met = None if r is None else r <= 1.1
        if s == "13-shards":
            rt = ratio(p, find(rows, s, "hf_transfer"))
            extra = "" if rt is None else f"; x{rt:.2f} vs hf_transfer file after file"
            in_ram = ratio(find(rows, s, "phaita_fetch", IN_RAM), find(rows, s, "hf_transfer", IN_RAM))
            if in_ram is not None:  # both caches in RAM: what is left of the gap is not the disk's
                extra += f", x{in_ram:.2f} with both caches in RAM (not the disk: the sha256 of every byte)"
            met = None if r is None or rt is None else (r <= 1.1 and rt < 1.0)
        out.append(Goal(s, f"nginx clean, {what}: phaita <= 1.1 x the durable floor (curl to disk, then sync)"
                        + (", faster than hf_transfer file after file" if s == "13-shards" else ""),
                        met, "not measured" if r is None else f"x{r:.2f} the durable floor{extra}"))
    r = ratio(find(rows, "14-one", "phaita_fetch"), find(rows, "14-one", "hf_transfer"))
    out.append(Goal("14-one", "nginx 20 MB/s per connection, one file: phaita <= 1.0 x hf_transfer (8 streams)",
                    None if r is None else r <= 1.0, "not measured" if r is None else f"x{r:.2f}"))
    r = ratio(find(rows, "14-shards", "phaita_fetch"), find(rows, "14-shards", "hub_fetch"))
    out.append(Goal("14-shards", "nginx 20 MB/s per connection, 4 shards: phaita <= 0.7 x snapshot_download",
                    None if r is None else r <= 0.7, "not measured" if r is None else f"x{r:.2f}"))
    fixed_row = find(rows, "15", "phaita_fetch", FIXED)
    fixed = fixed_row.median() if fixed_row is not None else None
    per = [(mb, (row.median() - (fixed or 0.0)) / (mb / 1024), max(x.rss_mb for x in row.runs)) for row in rows
           if row.scenario == "15" and row.op == "phaita_fetch" and row.median() and (mb := _size_of(row.note))]
    floor = [(mb, row.median() / (mb / 1024)) for row in rows
             if row.scenario == "15" and row.op == "curl_disk" and row.median() and (mb := _size_of(row.note))]
    if len(per) >= 2:
        costs = [c for _, c, _ in per]
        spread = max(costs) / min(costs) - 1
        peak = max(per)[2]
        floor_spread = max(c for _, c in floor) / min(c for _, c in floor) - 1 if len(floor) >= 2 else None
        out.append(Goal("15", "cost per GB (net of the fixed cost) flat within 15 % from the smallest to the largest "
                        "file; peak RSS < 200 MB at the largest", spread <= 0.15 and peak < 200,
                        ", ".join(f"{mb:g} MiB {c:.2f} s/GiB" for mb, c, _ in per)
                        + (f" (fixed cost {fixed:.2f} s subtracted)" if fixed else " (no fixed cost measured)")
                        + f"; spread {spread * 100:.0f} %"
                        + (f" (the durable floor's own: {floor_spread * 100:.0f} %)" if floor_spread is not None else "")
                        + f"; peak RSS {peak:.0f} MB at {max(per)[0]:g} MiB"))
    else:
        out.append(Goal("15", "cost per GB flat within 15 %, peak RSS < 200 MB", None, "not measured"))
    bg, local = find(rows, "16-stalled", "phaita_fetch", "background"), find(rows, "16-local", "phaita_fetch")
    d = None if bg is None or local is None or bg.median() is None or local.median() is None \
        else bg.median() - local.median()
    heavy = [(x, find(rows, "16-local", "phaita")) for x in [find(rows, "16-stalled", "phaita", "background")]]
    detail = "not measured" if d is None else f"prefetch {d:+.2f} s"
    for x, ref in heavy:
        if x is not None and ref is not None and x.median() is not None and ref.median() is not None:
            detail += f"; loaded model {x.median() - ref.median():+.2f} s"
    out.append(Goal("16", "warm cache, branch name, hub stalled: freshness=background within 0.1 s of an offline load",
                    None if d is None else d <= 0.1, detail))
    return out


if __name__ == "__main__":
    sys.exit("run it through benchmarks/run.py --only 13,14,15,16")
