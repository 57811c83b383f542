"""The benchmark chart: one panel per scenario, and the goals."""

from __future__ import annotations

import statistics
from pathlib import Path

from harness import Mode, Row
from measures import Goal


def chart(rows: list[Row], path: Path, cap: float, mode: Mode, goals_: list[Goal]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("1 clean, cold cache: wall time (s)", ["1"], "wall_s"),
        ("2 warm cache: time to a loaded model (s)", ["2-local", "2-refused", "2-stalled", "2-blackhole"], "wall_s"),
        ("3 cut every 10 %: wall time (s)", ["3-clean", "3-reset", "3-close"], "wall_s"),
        ("4 trickling hub: time until the call ends (s)", ["4"], "call_s"),
        ("5 pulling one large file: peak RSS (MB)", ["5"], "rss_mb"),
    ]
    fig, axes = plt.subplots(3, 2, figsize=(17, 16))
    colors = {"phaita": "#1b7837", "phaita_fetch": "#5aae61", "hub": "#2166ac", "hub_fetch": "#67a9cf",
              "transformers": "#b2182b", "floor": "#999999", "import_phaita": "#a6dba0", "import_hub": "#d1e5f0"}
    for ax, (title, scenarios, attr) in zip(axes.flat, panels):
        picked = [r for r in rows if r.scenario in scenarios and not r.skipped and r.runs]
        names, vals, errs, cols, hatches, notes = [], [], [], [], [], []
        for r in picked:
            names.append(f"{r.scenario}: {r.label}")
            cols.append(colors.get(r.op, "grey"))
            if r.capped and attr != "rss_mb":
                vals.append(cap)
                errs.append((0, 0))
                hatches.append("//")
                notes.append(f"> {cap:g} s (cap)")
                continue
            if attr == "rss_mb":
                v = [x.rss_mb for x in r.runs]
            else:
                v = r.values(attr) or [0.0]
            med = statistics.median(v)
            vals.append(med)
            errs.append((med - min(v), max(v) - med))
            hatches.append("xx" if r.done < len(r.runs) and r.scenario != "4" else "")
            failed = r.done < len(r.runs) and r.scenario != "4"  # in 4 an attempt that ends is the point
            notes.append(f"{med:.2f}" + (f"  ({r.done}/{len(r.runs)} ok)" if failed else ""))
        y = list(range(len(names)))
        bars = ax.barh(y, vals, color=cols, xerr=list(zip(*errs)) if errs else None, capsize=3)
        for bar, hatch in zip(bars, hatches):
            bar.set_hatch(hatch)
        for yi, v, err, note in zip(y, vals, errs, notes):
            ax.text(v + err[1], yi, "  " + note, va="center", fontsize=8)
        ax.set_yticks(y, names, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=10)
        goal_x = {"4": mode.trickle_timeout + 2, "5": 200.0}.get(title[0])
        if goal_x is not None:
            ax.axvline(goal_x, color="k", ls="--", lw=1)
            ax.text(goal_x, len(names) - 0.45, " goal", fontsize=8)
        ax.set_xlim(0, max(vals + [goal_x or 0, 0.1]) * 1.4)
    ax = axes.flat[-1]
    ax.axis("off")
    text = "\n".join(f"{g.scenario}  {'MET ' if g.met else 'n/a ' if g.met is None else 'MISSED'}  {g.text}"
                     for g in goals_)
    ax.text(0, 1, f"Goals ({mode.name} mode; hatched //: reached the cap; xx: some runs failed)\n\n" + text,
            va="top", fontsize=8, family="monospace", wrap=True)
    fig.suptitle("phaita loader vs huggingface_hub / transformers against a local hub", fontsize=12)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
