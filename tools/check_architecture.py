#!/usr/bin/env python
"""Import cycles between files, upward imports and lines per file in ``src/phaita`` and ``benchmarks``.

    python tools/check_architecture.py            # report; exit 1 on a cycle, an upward import,
                                                   # or a file over the limit with no stated reason
    python tools/check_architecture.py --json     # the same as JSON

Imports are read with ``ast`` (nothing is imported), function-level imports included. A cycle is
looked for between files (modules), counting ``if TYPE_CHECKING:`` imports too: a circle that only
type hints close is still a circle a reader has to untangle. Layers are checked without them.
``from a import b`` counts as an import of ``a.b`` when that is a module, else of ``a``.

Layers, lowest first (an import may only go to its own layer or lower; the longest prefix wins):

0. the loader's foundation: ``phaita`` (the version), ``phaita.loader.config``, ``errors``,
   ``advice``, ``events``, ``hashing``
1. ``phaita.loader.http``: HTTP with a deadline, TLS, links, failure kinds
2. ``phaita.loader.hub``: listings, mirror fallbacks, file selection
3. ``phaita.loader.cache``: layout, lock files, status, verify, repair
4. ``phaita.loader.transfer``: snapshots, files, ranges, endpoints; ``phaita.loader.signing``: OpenSSF
   model signatures (beside transfer: neither imports the other); ``phaita.loader.oci``: OCI
   registries (ModelPack manifests, auth, pull, uploads, signatures as referrers)
5. ``phaita.loader.request``: one load request, retries, public errors, the facade;
   ``phaita.loader.oci.push`` (pushes under the retry policy)
6. the public names: ``phaita.loader`` (package), ``phaita.utils.model_loader``
7. data and tools below the components: ``phaita.data``, ``phaita.testing``, ``phaita.hubserver``
   (the Hub's HTTP protocol, server side: the test hub's and the station's)
8. the components: ``phaita.models``, ``phaita.utils.realism_scorer``
9. applications: ``phaita.cli``, ``phaita.demo``, ``phaita.station``, ``phaita.airgap``

Forbidden imports, whatever the layers say (:data:`FORBIDDEN`): the station mirror, a production
server, and the protocol package it shares with the test hub never import ``phaita.testing``.

``benchmarks/`` is outside the layers (it may use anything) but not outside the cycle check.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
LIMIT = 400
# Files allowed over the limit, with the reason (keep this short).
REASONS: dict[str, str] = {}
LAYERS: list[tuple[int, str]] = [  # (layer, module prefix): the longest matching prefix wins
    (0, "phaita"), (0, "phaita.loader"),
    (1, "phaita.loader.http"), (2, "phaita.loader.hub"), (3, "phaita.loader.cache"),
    (4, "phaita.loader.transfer"), (4, "phaita.loader.signing"), (5, "phaita.loader.request"),
    (4, "phaita.loader.oci"), (5, "phaita.loader.oci.push"),
    (6, "phaita.loader.__init__"), (6, "phaita.utils.model_loader"),
    (7, "phaita.data"), (7, "phaita.testing"), (7, "phaita.hubserver"),
    (8, "phaita.models"), (8, "phaita.utils"),
    (9, "phaita.cli"), (9, "phaita.demo"), (9, "phaita.station"), (9, "phaita.airgap"),
]

# (importing package, imported package, why): never, at any layer
FORBIDDEN: list[tuple[str, str, str]] = [
    ("phaita.station", "phaita.testing", "the station mirror is a production server: no test code under it"),
    ("phaita.hubserver", "phaita.testing", "the Hub protocol is the station's too: no test code under it"),
]


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    return ".".join(parts)  # a package keeps its ".__init__": its layer may differ from its modules'


def layer(module: str) -> int:
    best, level = -1, 0
    for lvl, prefix in LAYERS:
        if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
            best, level = len(prefix), lvl
    return level


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, type_checking: bool = False) -> list[tuple[int, str | None, list[str], int]]:
    """(level, module, names, line) of every import; ``if TYPE_CHECKING:`` blocks only if asked."""
    out = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking(node) and not type_checking:
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                out.append((0, alias.name, [], node.lineno))
        elif isinstance(node, ast.ImportFrom):
            out.append((node.level, node.module, [a.name for a in node.names], node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return out


def graph(modules: dict[str, Path], type_checking: bool = False) -> dict[str, dict[str, int]]:
    """{module: {imported module of ours: line}}."""
    known = set(modules)

    def resolve(name: str) -> str | None:
        if name in known:
            return name
        if name + ".__init__" in known:
            return name + ".__init__"
        return None

    local_tops = {m.split(".")[0] for m in known if not m.startswith("phaita")}  # benchmarks' own modules
    edges: dict[str, dict[str, int]] = {}
    for mod, path in modules.items():
        package = mod.rsplit(".", 1)[0] if not mod.endswith(".__init__") else mod[: -len(".__init__")]
        found: dict[str, int] = {}
        for level, base, names, line in _imports(ast.parse(path.read_text(), str(path)), type_checking):
            if level:
                parts = package.split(".")
                base_parts = parts[: len(parts) - (level - 1)]
                base = ".".join(base_parts + ([base] if base else []))
            if not base or not (base.startswith("phaita") or base.split(".")[0] in local_tops):
                continue
            targets = [resolve(f"{base}.{n}") for n in names] if names else []
            targets = [t for t in targets if t] or [resolve(base)]
            for target in targets:
                if target and target != mod:
                    found.setdefault(target, line)
        edges[mod] = found
    return edges


def cycles(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            strong(v)
    return sorted(out)


def measure(root: Path = ROOT) -> dict:
    """The report for the tree at ``root`` (its ``src/phaita`` and ``benchmarks``)."""
    src = root / "src"
    files = sorted(p for p in (src / "phaita").rglob("*.py") if "__pycache__" not in p.parts)
    bench = sorted(p for p in (root / "benchmarks").rglob("*.py") if "__pycache__" not in p.parts)
    modules = {module_name(p, src): p for p in files}
    edges = graph(modules)
    # benchmarks import each other as top-level modules (run as scripts): "report", not "benchmarks.report"
    bench_modules = {p.relative_to(root / "benchmarks").with_suffix("").as_posix().replace("/", "."): p
                     for p in bench}
    all_edges = graph({**modules, **bench_modules}, type_checking=True)
    upward = [{"from": m, "to": t, "line": line, "layers": f"{layer(m)} -> {layer(t)}"}
              for m, targets in sorted(edges.items()) for t, line in sorted(targets.items()) if layer(t) > layer(m)]
    forbidden = [{"from": m, "to": t, "line": line, "why": why}
                 for m, targets in sorted(graph(modules, type_checking=True).items())
                 for t, line in sorted(targets.items())
                 for a, b, why in FORBIDDEN if _under(m, a) and _under(t, b)]
    lines = {str(p.relative_to(root)): len(p.read_text().splitlines()) for p in files + bench}
    over = {f: n for f, n in lines.items() if n > LIMIT}
    return {
        "files": len(lines), "total_lines": sum(lines.values()),
        "largest": sorted(lines.items(), key=lambda kv: -kv[1])[:10],
        "over_limit": [{"file": f, "lines": n, "reason": REASONS.get(f)} for f, n in sorted(over.items())],
        "cycles": cycles(all_edges),
        "upward_imports": upward,
        "forbidden_imports": forbidden,
    }


def problems(report: dict) -> list[str]:
    out = [f"import cycle: {' <-> '.join(c)}" for c in report["cycles"]]
    out += [f"upward import ({u['layers']}): {u['from']} imports {u['to']} (line {u['line']})"
            for u in report["upward_imports"]]
    out += [f"forbidden import: {f['from']} imports {f['to']} (line {f['line']}): {f['why']}"
            for f in report.get("forbidden_imports", [])]
    out += [f"{o['file']}: {o['lines']} lines (over {LIMIT}) with no stated reason in tools/check_architecture.py"
            for o in report["over_limit"] if not o["reason"]]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    report = measure()
    bad = problems(report)
    if args.json:
        print(json.dumps({**report, "problems": bad}, indent=1))
    else:
        print(f"{report['files']} files, {report['total_lines']} lines (src/phaita and benchmarks)")
        print("largest: " + ", ".join(f"{f} {n}" for f, n in report["largest"][:6]))
        for o in report["over_limit"]:
            print(f"over {LIMIT} lines: {o['file']} ({o['lines']})" + (f": {o['reason']}" if o["reason"] else ""))
        print(f"import cycles: {len(report['cycles'])}; upward imports: {len(report['upward_imports'])}")
        for line in bad:
            print("PROBLEM: " + line)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
