"""The architecture stays as docs/ARCHITECTURE.md draws it: no import cycle, no upward import, no
file over the size limit without a stated reason (tools/check_architecture.py, read with ast)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

TOOL = Path(__file__).resolve().parents[1] / "tools" / "check_architecture.py"


def _tool():
    spec = importlib.util.spec_from_file_location("check_architecture", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_no_cycle_no_upward_import_no_unexplained_giant():
    tool = _tool()
    report = tool.measure()
    assert report["files"] > 50  # it did read the tree
    assert tool.problems(report) == []


def test_the_checks_see_a_cycle_and_an_upward_import():
    tool = _tool()
    assert tool.cycles({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}) == [["a", "b", "c"]]
    assert tool.layer("phaita.loader.fetch") < tool.layer("phaita.loader.api") < tool.layer("phaita.loader.facade")
    assert tool.layer("phaita.loader.facade") < tool.layer("phaita.models.generator") < tool.layer("phaita.cli.main")
    report = {"cycles": [["x", "y"]], "upward_imports": [{"from": "phaita.loader.fetch", "to": "phaita.models",
                                                           "line": 3, "layers": "0 -> 4"}],
              "over_limit": [{"file": "big.py", "lines": 900, "reason": None}]}
    assert len(tool.problems(report)) == 3


def test_the_public_names_the_architecture_page_lists_are_importable_from_phaita_loader():
    import re

    import phaita.loader

    page = (Path(__file__).resolve().parents[1] / "docs" / "ARCHITECTURE.md").read_text()
    bullet = page.split("- `phaita.loader`:", 1)[1].split("\n- ", 1)[0]
    names = [n for n in re.findall(r"`([A-Za-z_][A-Za-z0-9_.]*)`", bullet) if "." not in n]
    assert len(names) >= 15
    assert sorted(n for n in names if n not in phaita.loader.__all__) == []
    for name in names:
        getattr(phaita.loader, name)
