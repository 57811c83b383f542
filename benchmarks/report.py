"""The benchmark's output: the table, the goals met or missed, the chart, results.json.

Works on saved results too (``run.py --from-results``): nothing here measures.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from harness import FULL, LABELS, SMOKE, Mode, Row, Run
from measures import Goal, find, fmt_s, ratio
from chart import chart
from scenarios import SCENARIO_TITLES
import parallel  # noqa: E402  (scenarios 6-10: their rows, comparisons and goals)
import fleet  # noqa: E402,F401  (scenario 11: its row titles)
import lan  # noqa: E402  (scenarios 13-16: nginx, the floors, freshness)


def comparison(row: Row, rows: list[Row], cap: float, timeout: float) -> str:
    """The last column of the table: what this row means against its reference."""
    if row.skipped:
        return ""
    s = row.scenario
    if row.capped:
        return f"> {cap:g} s cap"
    if s == "1":
        ref = {"phaita": "hub", "phaita_fetch": "hub_fetch"}.get(row.op)
        if ref:
            parts = [f"x{r:.3f} vs {LABELS[ref]}" for r in [ratio(row, find(rows, '1', ref))] if r is not None]
            if row.op == "phaita":
                parts += [f"x{r:.3f} vs transformers" for r in [ratio(row, find(rows, '1', 'transformers'))] if r is not None]
            return ", ".join(parts)
        return "reference"
    if s.startswith("2-") and s != "2-local":
        refs = [("phaita_fetch", "")] if row.op == "phaita_fetch" else [("transformers", ""), ("phaita", "")]
        out = []
        for ref_op, _ in refs:
            ref = find(rows, "2-local", ref_op)
            m, mr = row.median(), ref.median() if ref else None
            if m is not None and mr is not None:
                out.append(f"{m - mr:+.2f} s vs {ref.label}")
        return ", ".join(out)
    if s == "3-clean":
        return "reference"
    if s.startswith("3-"):
        clean = find(rows, "3-clean", row.op) or find(rows, "1", row.op)
        br = [r.bytes_ratio for r in row.runs if r.bytes_ratio is not None]
        out = [f"bytes x{statistics.median(br):.3f}"] if br else []
        r = ratio(row, clean)
        if r is not None and row.done:
            out.append(f"x{r:.2f} the clean run")
        return ", ".join(out)
    if s == "4":
        m = row.median("call_s") if row.done == 0 else None
        return f"attempt cut after {m:.2f} s (timeout {timeout:g} s)" if m is not None else ""
    if s == "5":
        return f"peak RSS {statistics.median(r.rss_mb for r in row.runs):.0f} MB"
    if s in ("6", "7", "8", "9", "10"):
        return parallel.comparison(row, rows)
    if s.split("-")[0] in ("13", "14", "15", "16"):
        return lan.comparison(row, rows)
    if s == "11-outage":  # benchmarks/fleet.py
        br = [r.bytes_ratio for r in row.runs if r.bytes_ratio is not None]
        return f"origin sent the weights x{br[0]:.2f} for 20 clients" if br else ""
    return ""


def table(rows: list[Row], cap: float, timeout: float) -> str:
    head = f"{'scenario':<32} {'client':<40} {'runs':>4} {'ok':>5} {'wall s':>8} {'min-max':>13} {'call s':>7} {'RSS MB':>7}  result"
    lines = [head, "-" * len(head)]
    last = None
    for row in rows:
        title = SCENARIO_TITLES[row.scenario] if row.scenario != last else ""
        last = row.scenario
        if row.skipped:
            lines.append(f"{title:<32} {row.label:<40} {'':>4} {'':>5} {row.skipped:>8}")
            continue
        vals = row.values()
        wall = f"> {cap:g}" if row.capped else fmt_s(row.median())
        spread = f"{min(vals):.2f}-{max(vals):.2f}" if vals else "-"
        rss = statistics.median(r.rss_mb for r in row.runs) if row.runs else 0
        lines.append(f"{title:<32} {row.label:<40} {len(row.runs):>4} {row.done:>2}/{len(row.runs):<2} {wall:>8} "
                     f"{spread:>13} {fmt_s(row.median('call_s')):>7} {rss:>7.0f}  {comparison(row, rows, cap, timeout)}")
    return "\n".join(lines)


def goals(rows: list[Row], mode: Mode, cap: float) -> list[Goal]:
    out: list[Goal] = []
    g1 = [(ratio(find(rows, "1", "phaita"), find(rows, "1", "hub")), "vs hub + from_pretrained"),
          (ratio(find(rows, "1", "phaita"), find(rows, "1", "transformers")), "vs transformers")]
    g1 = [(r, what) for r, what in g1 if r is not None]
    detail = "; ".join(f"{r:.3f} ({what})" for r, what in g1) or "loaded models not measured"
    fetch = ratio(find(rows, "1", "phaita_fetch"), find(rows, "1", "hub_fetch"))
    if fetch is not None:
        detail += (f"; fetch phase alone {fetch:.3f} vs hub fetch (not the goal's measure: phaita fsyncs each "
                   "file before it becomes visible, the hub client does not)")
    out.append(Goal("1", "clean cold cache, time to a loaded model, phaita / plain <= 1.05 (median wall time)",
                    all(r <= 1.05 for r, _ in g1) if g1 else None, detail))
    details, oks = [], []
    pairs = [("phaita", find(rows, "2-local", "transformers")), ("phaita", find(rows, "2-local", "phaita")),
             ("phaita_fetch", find(rows, "2-local", "phaita_fetch"))]
    for cond in ("refused", "stalled"):
        for op, r in pairs:
            row = find(rows, f"2-{cond}", op)
            if row is None or r is None:
                continue
            m, mr = row.median(), r.median()
            if m is None or mr is None or row.done < len(row.runs):
                oks.append(False)
                details.append(f"{cond}, {LABELS[op]}: not loaded")
                continue
            oks.append(m - mr <= 3.0)
            details.append(f"{cond}, {LABELS[op]} {m - mr:+.2f} s vs {r.label}")
    out.append(Goal("2", "warm cache, hub refusing / stalled: phaita within 3 s of a local-only load",
                    all(oks) if oks else None, "; ".join(details) or "not measured"))
    details, oks = [], []
    for op, r in pairs:
        row = find(rows, "2-blackhole", op, "telemetry on")
        if row is not None and row.capped:
            oks.append(False)
            details.append(f"{LABELS[op]} > {cap:g} s (cap)")
            continue
        if row is None or r is None or row.median() is None or r.median() is None:
            continue
        oks.append(row.done == len(row.runs) and row.median() - r.median() <= 3.0)
        details.append(f"{LABELS[op]} {row.median() - r.median():+.2f} s vs {r.label}")
    off = find(rows, "2-blackhole", "phaita_fetch", "telemetry off")
    if off is not None and off.median() is not None and pairs[2][1] is not None and pairs[2][1].median() is not None:
        details.append(f"(telemetry off: phaita fetch {off.median() - pairs[2][1].median():+.2f} s)")
    out.append(Goal("2*", "the same on a hub that never answers anything, huggingface_hub telemetry on (its default)",
                    all(oks) if oks else None, "; ".join(details) or "not measured"))
    details, oks = [], []
    clean = find(rows, "3-clean", "phaita_fetch")
    for kind in ("reset", "close"):
        row = find(rows, f"3-{kind}", "phaita_fetch")
        if row is None:
            continue
        br = max((r.bytes_ratio or 0) for r in row.runs)
        r = ratio(row, clean)
        done = row.done == len(row.runs)
        oks.append(done and br <= 1.01 and r is not None and r <= 1.5)
        fl = ratio(find(rows, f"3-{kind}", "floor"), find(rows, "3-clean", "floor"))
        details.append(f"{kind}: {row.done}/{len(row.runs)} completed, bytes x{br:.3f} (worst), "
                       + (f"wall x{r:.2f} the clean fetch" if r is not None else "no clean reference")
                       + (f" (minimal client: x{fl:.2f})" if fl is not None else ""))
    out.append(Goal("3", "cut every 10 %: completes, bytes served <= 1.01 x file, wall <= 1.5 x clean",
                    all(oks) if oks else None, "; ".join(details) or "not measured"))
    row = find(rows, "4", "phaita")
    if row is not None and not row.capped:
        worst = max(r.call_s or r.wall_s for r in row.runs)
        cut = all(not r.ok for r in row.runs)
        out.append(Goal("4", f"trickle: attempt cut within timeout + 2 s ({mode.trickle_timeout + 2:g} s)",
                        cut and worst <= mode.trickle_timeout + 2,
                        f"cut after {row.median('call_s'):.2f} s median, {worst:.2f} s worst (call); "
                        f"process wall {row.median():.2f} s"))
    else:
        out.append(Goal("4", "trickle: attempt cut within timeout + 2 s", False if row else None,
                        "reached the cap" if row else "not measured"))
    row = find(rows, "5", "phaita_fetch")
    if row is not None:
        peak = max(r.rss_mb for r in row.runs)
        out.append(Goal("5", "peak RSS of the fetching process < 200 MB", peak < 200 and row.done == len(row.runs),
                        f"phaita fetch {peak:.0f} MB worst; "
                        + ", ".join(f"{x.label} {max(r.rss_mb for r in x.runs):.0f} MB"
                                    for x in rows if x.scenario == "5" and x is not row and x.runs)))
    return out + parallel.goals(rows) + lan.goals(rows)


def machine() -> dict[str, str]:
    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        ram = f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.1f} GiB"
    except (ValueError, OSError, AttributeError):
        ram = "?"
    return {
        "cpus": str(os.cpu_count()), "cpu": cpu, "ram": ram, "os": platform.platform(),
        "python": platform.python_version(), "torch": version("torch"), "transformers": version("transformers"),
        "huggingface_hub": version("huggingface_hub"), "httpx2": version("httpx2"),
        "load_average_at_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def rows_from(results: dict) -> list[Row]:
    rows = []
    for r in results["rows"]:
        note = r.get("note")
        if note is None:  # results written before notes were saved: recover it from the label
            base = LABELS[r["op"]]
            note = r["label"][len(base) + 2:-1] if r["label"].startswith(base + " (") else ""
        rows.append(Row(r["scenario"], r["op"], note, skipped=r["skipped"], runs=[Run(**x) for x in r["runs"]]))
    return rows


def report(results: dict, out: Path) -> None:
    """Print the table and the goals, write the chart and results.json (also from saved results)."""
    mode = SMOKE if results["mode"] == "smoke" else FULL
    cap, info, rows = results["cap_s"], results["machine"], rows_from(results)
    goals_ = goals(rows, mode, cap)
    print(f"\nphaita vs plain clients ({mode.name} mode, {results['runs']} run(s) per row, median; cap {cap:g} s; "
          f"model weights {results['model_bytes'] / 1e6:.1f} MB, large file {results['large_bytes'] / 2**30:.2f} GiB; "
          f"total {results['elapsed_s'] / 60:.1f} min)")
    print(f"machine: {info['cpus']} CPUs ({info['cpu']}), {info['ram']} RAM, Python {info['python']}, "
          f"torch {info['torch']}, transformers {info['transformers']}, huggingface_hub {info['huggingface_hub']}")
    print()
    print(table(rows, cap, mode.trickle_timeout))
    print("\nGoals")
    for g in goals_:
        verdict = "n/a" if g.met is None else ("MET" if g.met else "MISSED")
        print(f"  [{verdict:^6}] {g.scenario:<2} {g.text}\n             {g.detail}")
    errors = sorted({(r.scenario, r.label, run.error) for r in rows for run in r.runs if run.error})
    if errors:
        print("\nFailures")
        for scenario, label, error in errors:
            print(f"  {scenario:<10} {label:<40} {error}")
    png = out / "benchmarks.png"
    chart(rows, png, cap, mode, goals_)
    results = {**results, "goals": [asdict(g) for g in goals_]}
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"\nchart: {png}\nresults: {out / 'results.json'}")
