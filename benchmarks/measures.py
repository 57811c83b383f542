"""What the report, the chart and the scenario modules share: finding rows, ratios, goals.

Below ``report``, ``chart`` and ``parallel`` so that each imports it and none imports the other back.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness import Row


def fmt_s(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def find(rows: list[Row], scenario: str, op: str, note_has: str = "") -> Row | None:
    for r in rows:
        if r.scenario == scenario and r.op == op and note_has in r.note and not r.skipped and r.runs:
            return r
    return None


def ratio(a: Row | None, b: Row | None, attr: str = "wall_s") -> float | None:
    if a is None or b is None:
        return None
    ma, mb = a.median(attr), b.median(attr)
    return None if ma is None or mb is None or mb == 0 else ma / mb


@dataclass
class Goal:
    scenario: str
    text: str
    met: bool | None  # None: not measured in this mode
    detail: str
