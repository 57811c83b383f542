"""One line of ``phaita models doctor``: a named check, OK or FAIL, with advice when it fails."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    advice: str = ""

    def to_dict(self) -> dict:
        return {**asdict(self), "status": "OK" if self.ok else "FAIL"}
