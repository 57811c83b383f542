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
    order = ["phaita.loader.errors", "phaita.loader.http.tls", "phaita.loader.hub.listing", "phaita.loader.cache.layout",
             "phaita.loader.transfer.ranges", "phaita.loader.request.api", "phaita.loader.__init__",
             "phaita.data.domain", "phaita.models.generator", "phaita.cli.main"]
    assert [tool.layer(m) for m in order] == sorted(tool.layer(m) for m in order)
    assert len({tool.layer(m) for m in order}) == len(order)
    report = {"cycles": [["x", "y"]], "upward_imports": [{"from": "phaita.loader.transfer.snapshot", "to": "phaita.models",
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


def _tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_a_circle_between_two_files_fails_the_check_even_through_type_hints(tmp_path):
    tool = _tool()
    _tree(tmp_path, {
        "src/phaita/__init__.py": "", "src/phaita/loader/__init__.py": "",
        "src/phaita/loader/hub/__init__.py": "",
        "src/phaita/loader/hub/a.py": "from .b import B\nA = 1\n",
        "src/phaita/loader/hub/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import A\nB = 2\n",
        "benchmarks/report.py": "from chart import chart\n", "benchmarks/chart.py": "def chart():\n    import report\n",
    })
    report = tool.measure(tmp_path)
    assert report["cycles"] == [["chart", "report"], ["phaita.loader.hub.a", "phaita.loader.hub.b"]]
    assert any("phaita.loader.hub.a <-> phaita.loader.hub.b" in p for p in tool.problems(report))
    (tmp_path / "src/phaita/loader/hub/b.py").write_text("B = 2\n")
    (tmp_path / "benchmarks/chart.py").write_text("def chart():\n    pass\n")
    assert tool.problems(tool.measure(tmp_path)) == []


def test_an_upward_import_and_a_giant_fail_the_check(tmp_path):
    tool = _tool()
    _tree(tmp_path, {
        "src/phaita/__init__.py": "", "src/phaita/loader/__init__.py": "",
        "src/phaita/loader/http/__init__.py": "", "src/phaita/loader/transfer/__init__.py": "",
        "src/phaita/loader/http/tls.py": "from phaita.loader.transfer import ranges\n",
        "src/phaita/loader/transfer/ranges.py": "X = 1\n" * 401,
    })
    bad = tool.problems(tool.measure(tmp_path))
    assert any("upward import (1 -> 4): phaita.loader.http.tls imports phaita.loader.transfer.ranges" in p for p in bad)
    assert any("src/phaita/loader/transfer/ranges.py: 401 lines" in p for p in bad)


def test_the_station_importing_test_code_fails_the_check(tmp_path):
    """The station is a production server: phaita.testing under it (even lazily, in a function) is refused."""
    tool = _tool()
    _tree(tmp_path, {
        "src/phaita/__init__.py": "", "src/phaita/testing/__init__.py": "", "src/phaita/testing/hub.py": "X = 1\n",
        "src/phaita/station/__init__.py": "", "src/phaita/hubserver/__init__.py": "",
        "src/phaita/station/server.py": "def serve():\n    from phaita.testing.hub import X\n",
        "src/phaita/hubserver/routes.py": "from phaita.testing import hub\n",
    })
    bad = tool.problems(tool.measure(tmp_path))
    assert any("forbidden import: phaita.station.server imports phaita.testing.hub" in p for p in bad), bad
    assert any("forbidden import: phaita.hubserver.routes imports phaita.testing.hub" in p for p in bad), bad
    (tmp_path / "src/phaita/station/server.py").write_text("def serve():\n    pass\n")
    (tmp_path / "src/phaita/hubserver/routes.py").write_text("X = 2\n")
    assert tool.problems(tool.measure(tmp_path)) == []
