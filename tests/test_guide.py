"""docs/MODEL_LOADER_GUIDE.md, executed: every code block runs against the local hub and every sample
output it shows is compared with what the code prints (the runner and the fence attributes that
drive it: ``guide_runner.py``). Also: every environment variable of ``loader/config.py``, every
public name of the loader and every keyword of the parameter table is documented, and the README
links the guide on its first screen.

``PHAITA_GUIDE_UPDATE=1`` writes the actual output into each block that differs (for the guide's
author: review the diff before committing).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from guide_runner import CHAINS, GUIDE, GUIDE_TEXT, README, ROOT, build_guide_root, parse_blocks, run_chain, skip_reason

CONFIG = ROOT / "src" / "phaita" / "loader" / "config.py"


@pytest.fixture(scope="module")
def guide_root(hub_root, tmp_path_factory) -> Path:
    return build_guide_root(hub_root, tmp_path_factory.mktemp("guide-hub"))


@pytest.mark.parametrize("chain", CHAINS, ids=[c.id for c in CHAINS])
def test_guide_block(chain, guide_root, tmp_path):
    reason = skip_reason(chain)
    if reason:
        pytest.skip(f"{GUIDE.name}:{chain.blocks[0].line}: {reason}")
    run_chain(chain, guide_root, tmp_path)


# --------------------------------------------------------------------------- coverage of the guide


def test_guide_has_runnable_blocks_and_every_output_belongs_to_one():
    assert GUIDE.exists(), "docs/MODEL_LOADER_GUIDE.md is missing"
    runnable = [c for c in CHAINS if skip_reason(c) is None]
    assert len(runnable) >= 10
    blocks = parse_blocks(GUIDE_TEXT)
    outputs = [b for b in blocks if "output" in b.attrs]
    attached = [b.output for b in blocks if b.output is not None]
    assert outputs == attached
    for b in blocks:  # an output is only compared when its code block runs
        if b.output is not None:
            assert not ("skip" in b.attrs), f"{GUIDE.name}:{b.line}: an output under a skipped block"


def env_names_read_by_config() -> set[str]:
    """Every environment variable name ``loader/config.py`` mentions as a string literal."""
    tree = ast.parse(CONFIG.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if re.fullmatch(r"[A-Z][A-Z0-9]*(_[A-Z0-9]+)+", node.value):
                names.add(node.value)
    return names


def test_every_environment_variable_of_the_loader_is_documented():
    names = env_names_read_by_config()
    assert {"HF_ENDPOINT", "PHAITA_BACKOFF_BASE", "HF_HUB_CACHE"} <= names  # the scan itself works
    missing = sorted(n for n in names if f"`{n}`" not in GUIDE_TEXT)
    assert not missing, f"not documented in {GUIDE.name} (as `NAME`): {', '.join(missing)}"


def test_readme_links_the_guide_on_its_first_screen():
    first_screen = "\n".join(README.read_text().splitlines()[:30])
    assert "(docs/MODEL_LOADER_GUIDE.md)" in first_screen


def _section(title: str) -> str:
    start = GUIDE_TEXT.index(f"\n## {title}\n")
    end = GUIDE_TEXT.find("\n## ", start + 1)
    return GUIDE_TEXT[start:end if end != -1 else None]


def test_parameter_table_matches_the_signatures_and_the_keyword_routing():
    import inspect

    from phaita.loader.request.load import BOTH_PHASES_KWARGS, FETCH_ONLY_KWARGS, MODEL_ONLY_KWARGS
    from phaita.utils.model_loader import load_model_and_tokenizer, robust_model_download

    table = _section("Parameters")
    parameters = inspect.signature(robust_model_download).parameters
    assert parameters == inspect.signature(load_model_and_tokenizer).parameters
    for name, param in parameters.items():
        if param.kind is param.VAR_KEYWORD:
            continue
        default = "(required)" if param.default is param.empty else (
            f'"{param.default}"' if isinstance(param.default, str) else repr(param.default))
        row = re.search(rf"^\| `{name}` \|[^|]*\| `?([^|`]*)`? \|", table, flags=re.M)
        assert row, f"no row for {name} in the Parameters table"
        assert row.group(1) == default, f"{name}: the table says {row.group(1)}, the code {default}"
    for name in FETCH_ONLY_KWARGS | BOTH_PHASES_KWARGS | MODEL_ONLY_KWARGS | {"use_4bit"}:
        assert f"`{name}`" in table, f"keyword {name} is not described in the Parameters section"


def test_every_public_name_of_the_loader_is_documented():
    from phaita.utils import model_loader

    missing = sorted(n for n in model_loader.__all__ if f"`{n}" not in GUIDE_TEXT)
    assert not missing, f"public names not in {GUIDE.name}: {', '.join(missing)}"


def test_every_component_takes_the_loader_options_the_guide_names():
    import inspect

    from phaita.models import ComplaintGenerator, DiagnosisDiscriminator, QuestionGenerator
    from phaita.utils.realism_scorer import RealismScorer

    assert "takes `max_retries`, `timeout`,\n`allow_offline`, `token` and `loader_kwargs`" in GUIDE_TEXT
    for component in (ComplaintGenerator, DiagnosisDiscriminator, QuestionGenerator, RealismScorer):
        parameters = inspect.signature(component.__init__).parameters
        for name in ("max_retries", "timeout", "allow_offline", "token", "loader_kwargs"):
            assert name in parameters, f"{component.__name__} takes no {name}"


def _first_hour_block(text: str) -> str:
    start = text.index("## The first hour")
    fence = text.index("```bash\n", start)
    return text[fence:text.index("```\n", fence + 8)]


def test_readme_and_guide_open_with_the_same_first_hour_which_the_guide_test_runs():
    """README's quickstart is the guide's, which ``test_guide_block`` runs as written on a fresh cache."""
    readme = README.read_text()
    block = _first_hour_block(GUIDE_TEXT)
    assert _first_hour_block(readme) == block
    assert re.findall(r"^## (.+)$", readme, flags=re.M)[0] == "The first hour"
    for command in ("hub serve >", "models pull --all --profile small", "models status", "models verify",
                    "models lock --profile small", "models export bundle.tar --locked", "models import bundle.tar",
                    "hub serve --cache", "models pull --locked"):
        assert f"phaita {command}" in block, command
    first = next(c for c in CHAINS if c.blocks[0].code == block[len("```bash\n"):])
    assert skip_reason(first) is None and first.blocks[0].output is not None  # run, and its output compared


def test_the_guide_puts_usage_first_and_the_notes_on_the_examples_last():
    headings = re.findall(r"^## (.+)$", GUIDE_TEXT, flags=re.M)
    assert headings[0] == "The first hour" and headings[2] == "Usage", headings
    assert headings[-1] == "About the examples"
    assert GUIDE_TEXT.index("substitutes:") > GUIDE_TEXT.index("## About the examples")


def test_readme_contract_table_rows_are_one_line_each():
    readme = README.read_text()
    table = readme[readme.index("What it guarantees"):readme.index("Environment variables are all listed")]
    rows = [line for line in table.splitlines() if line.startswith("| **")]
    assert len(rows) >= 10
    assert all(len(row) <= 140 for row in rows), [row for row in rows if len(row) > 140]
    assert "(docs/MODEL_LOADER_GUIDE.md#features)" in table  # the detail is in the guide
