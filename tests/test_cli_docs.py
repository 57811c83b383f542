"""docs/CLI.md equals the output: every `--json` shape it shows is what the commands print (the same
keys at every level, no more, no fewer), and the exit codes it lists are the ones real runs end with.

The shapes are read from CLI.md itself (``{"ok", "models": [{"name", ...}]}``: a name alone is a key,
``[...]`` a list of anything, ``N`` a number, ``| null`` a value that may be null), so a change on
either side that the other does not follow fails here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from phaita.cli.main import app

ROOT = Path(__file__).resolve().parents[1]
CLI_MD = (ROOT / "docs" / "CLI.md").read_text()
DEBERTA = "microsoft/deberta-v3-base"


def section(command: str) -> str:
    start = CLI_MD.index(f"\n## `phaita {command}")
    end = CLI_MD.find("\n## ", start + 1)
    return CLI_MD[start:end]


def documented_shape(command: str) -> dict:
    """The JSON shape CLI.md shows after `--json` in the command's section, as a template."""
    text = re.search(r"`--json`[^`]*`(\{.*?\})`", section(command), flags=re.S)
    assert text, f"no --json shape in the section of {command}"
    shape = " ".join(text.group(1).split())
    shape = re.sub(r"\[\.\.\.\]", "[]", shape)
    shape = re.sub(r"\s*\|\s*null", "", shape)
    shape = re.sub(r":\s*N\b", ": 0", shape)
    shape = re.sub(r'("[^"]+")(?=\s*[,}])', r"\1: null", shape)
    return json.loads(shape)


def same_keys(template, actual, where: str = "$") -> None:
    """Every dict of ``actual`` has exactly the template's keys; lists follow their one element."""
    if isinstance(template, dict) and template:
        assert isinstance(actual, dict), f"{where}: expected an object, got {actual!r}"
        assert set(actual) == set(template), (f"{where}: CLI.md shows {sorted(template)}, the command printed "
                                              f"{sorted(actual)}")
        for key, sub in template.items():
            if actual[key] is not None:
                same_keys(sub, actual[key], f"{where}.{key}")
    elif isinstance(template, list) and template:
        assert isinstance(actual, list), f"{where}: expected a list"
        for i, item in enumerate(actual):
            same_keys(template[0], item, f"{where}[{i}]")


def run(*args: str):
    result = CliRunner().invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def run_json(*args: str, code: int = 0):
    result = run(*args, "--json")
    assert result.exit_code == code, result.output
    return json.loads(result.stdout)


def test_the_shapes_are_read_from_cli_md():
    shape = documented_shape("models verify")
    assert set(shape["models"][0]["checks"]) == {"listing", "blob name", "size only", "none"}
    assert set(shape["repair"]) == {"removed", "refetched", "errors"}


def test_every_json_shape_in_cli_md_is_what_the_commands_print(hf_env, monkeypatch, tmp_path):
    monkeypatch.setenv("PHAITA_BACKOFF_BASE", "0.01")
    monkeypatch.chdir(tmp_path)
    same_keys(documented_shape("models pull"), run_json("models", "pull", DEBERTA))
    same_keys(documented_shape("models pull"), run_json("models", "pull", "nobody/nothing", code=1))
    same_keys(documented_shape("models status"), run_json("models", "status"))
    verify = run_json("models", "verify")
    same_keys(documented_shape("models verify"), verify)
    assert verify["models"][0]["checks"]["listing"] > 0 and verify["models"][0]["checks"]["none"] == 0
    same_keys(documented_shape("models lock"), run_json("models", "lock", DEBERTA))
    same_keys(documented_shape("models lock"), run_json("models", "lock", DEBERTA, "nobody/nothing", code=1))
    same_keys(documented_shape("models export"), run_json("models", "export", "bundle.tar", "--locked"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "other-cache"))
    same_keys(documented_shape("models import"), run_json("models", "import", "bundle.tar"))
    same_keys(documented_shape("models doctor"), run_json("models", "doctor", "--model", DEBERTA))


def exit_row(code: int) -> str:
    return re.search(rf"^\| {code} \| (.*) \|$", CLI_MD, flags=re.M).group(1)


def test_the_exit_codes_cli_md_lists_are_the_real_ones(hf_env, monkeypatch, tmp_path):
    monkeypatch.setenv("PHAITA_BACKOFF_BASE", "0.01")
    monkeypatch.chdir(tmp_path)
    assert run("models", "pull", DEBERTA).exit_code == 0
    assert run("models", "export", "bundle", DEBERTA).exit_code == 0
    again = run("models", "export", "bundle", DEBERTA)  # onto a path that exists
    assert again.exit_code == 1 and "already exists" in again.stderr
    assert "an `export` PATH that already exists" in exit_row(1)
    assert run("models", "status", "nobody/nothing").exit_code == 1
    assert "a model named to `status`/`verify` is not in the cache" in exit_row(1)
    assert run("models", "pull").exit_code == 2 and "`pull` with neither NAME nor `--all`" in exit_row(2)
    assert run("models", "export", "b2").exit_code == 2 and "`export` with neither MODEL nor `--locked`" in exit_row(2)
    assert run("models", "pull", DEBERTA, "--max-retries", "0").exit_code == 2 and "`--max-retries 0`" in exit_row(2)
    assert run("models", "bogus").exit_code == 2 and "unknown command" in exit_row(2)


@pytest.mark.parametrize("command", ["models pull", "models lock", "models export", "models import",
                                     "models status", "models verify", "models doctor", "models sign",
                                     "models verify --signatures"])
def test_every_command_section_shows_its_json_shape(command):
    assert documented_shape(command)
