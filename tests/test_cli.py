"""The ``phaita`` command line, run for real (CliRunner and subprocesses) against the local hub."""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import select
import socket
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from phaita.cli.main import app
from phaita.loader.cache import layout as cache
from phaita.loader.hashing import hash_file

BERT, GPT2, DEBERTA = "phaita-test/tiny-bert", "phaita-test/tiny-gpt2", "microsoft/deberta-v3-base"
PHAITA = str(Path(sys.executable).with_name("phaita"))


@pytest.fixture
def cli_env(hf_env, monkeypatch):
    """hf_env (local hub, empty cache) with instant backoff and short network timeouts."""
    for key, value in {"PHAITA_BACKOFF_BASE": "0.01", "PHAITA_STALL_TIMEOUT": "2", "PHAITA_FRESHNESS_TIMEOUT": "1",
                       "PHAITA_CONNECT_TIMEOUT": "2"}.items():
        monkeypatch.setenv(key, value)
    return dict(os.environ)


def run(*args: str):
    result = CliRunner().invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # an unexpected crash: show it
    return result


def run_json(*args: str, code: int = 0) -> dict:
    result = run(*args, "--json")
    assert result.exit_code == code, result.output
    return json.loads(result.stdout)  # stdout holds the JSON document and nothing else


def subprocess_run(args: list[str], env: dict, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([PHAITA, *args], env=env, capture_output=True, text=True, timeout=timeout)


def dead_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens there now: connection refused


def snapshot_blob(cache_dir: Path, repo_id: str, path: str) -> Path:
    repo = cache.repo_dir(cache_dir, repo_id)
    (snapshot,) = (repo / "snapshots").iterdir()
    return Path(os.path.realpath(snapshot / path))


# --------------------------------------------------------------------------- help and usage


@pytest.mark.parametrize("argv", [[], ["models"], ["models", "pull"], ["models", "status"], ["models", "verify"],
                                  ["models", "doctor"], ["hub"], ["hub", "serve"]])
def test_help_on_every_command(argv):
    result = run(*argv, "--help")
    assert result.exit_code == 0
    assert "Usage: phaita" in result.stdout or "Usage: root" in result.stdout


@pytest.mark.parametrize("argv", [
    ["models", "pull"],                                 # no NAME and no --all
    ["models", "pull", BERT, "--type", "bogus"],
    ["models", "pull", BERT, "--max-retries", "0"],
    ["models", "frobnicate"],
    ["hub", "serve", "--faults", "explode"],
    ["hub", "serve", "--root", "/nonexistent/phaita"],
])
def test_usage_errors_exit_2(argv, cli_env):
    assert run(*argv).exit_code == 2


def test_version():
    result = run("--version")
    assert result.exit_code == 0 and result.stdout.startswith("phaita ")


# --------------------------------------------------------------------------- pull and status


def test_pull_then_status(cli_env, local_hub):
    data = run_json("models", "pull", BERT)
    (model,) = data["models"]
    assert data["ok"] and model["ok"] and model["error"] is None
    assert model["commit"] == local_hub.commit_sha(BERT)
    assert Path(model["path"], "model.safetensors").is_file()
    tok = run_json("models", "pull", GPT2, "--type", "tokenizer")["models"][0]
    assert tok["ok"] and not Path(tok["path"], "model.safetensors").exists()  # no weights for a tokenizer

    status = run_json("models", "status")
    assert status["cache_dir"] == cli_env["HF_HUB_CACHE"] and status["not_cached"] == []
    by_name = {m["name"]: m for m in status["models"]}
    assert set(by_name) == {BERT, GPT2}
    bert = by_name[BERT]["snapshots"][0]
    assert bert["state"] == "complete" and bert["refs"] == ["main"] and bert["missing"] == []
    assert bert["commit"] == model["commit"] and bert["last_used"] is not None
    assert by_name[BERT]["size_on_disk"] == sum(f.stat().st_size for f in Path(model["path"]).iterdir())
    assert by_name[GPT2]["snapshots"][0]["state"] == "complete (no weights)"

    table = run("models", "status")
    assert table.exit_code == 0 and BERT in table.stdout and model["commit"][:12] in table.stdout
    assert "━" not in table.stderr  # no bars when not on a terminal

    missing = run("models", "status", "nobody/nothing")
    assert missing.exit_code == 1 and "nobody/nothing" in missing.stderr


def test_status_shows_partial_snapshot_and_incomplete_bytes(cli_env, local_hub):
    path = Path(run_json("models", "pull", BERT)["models"][0]["path"])
    blob = Path(os.path.realpath(path / "model.safetensors"))
    (path / "model.safetensors").unlink()
    blob.rename(blob.with_name(blob.name + ".incomplete"))  # as if the transfer had been cut
    with open(blob.with_name(blob.name + ".incomplete"), "r+b") as fh:
        fh.truncate(1000)
    (model,) = run_json("models", "status")["models"]
    snap = model["snapshots"][0]
    assert snap["state"] == "partial" and snap["missing"] == ["model.safetensors"]
    assert model["incomplete_bytes"] == 1000 and model["incomplete_files"] == 1
    table = run("models", "status").stdout
    assert "partial" in table and "missing model.safetensors" in table

    resumed = run_json("models", "pull", BERT)["models"][0]  # resumes the partial file
    assert resumed["ok"]
    ranges = [r.range for r in local_hub.requests("model.safetensors", "GET")]
    assert ranges[-1] == "bytes=1000-"
    assert run_json("models", "status")["models"][0]["snapshots"][0]["state"] == "complete"


@pytest.mark.parametrize("faults", ["503x1", "reset@30%x3:path=*.safetensors"])
def test_pull_through_faults(cli_env, local_hub, faults):
    local_hub.set_faults(faults)
    result = run("models", "pull", BERT, "--max-retries", "3")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("OK    " + BERT)
    assert local_hub.faults.fired, "the fault never fired: the test would prove nothing"
    if faults.startswith("503"):
        assert "attempt 1/3 failed: HTTP 503" in result.stderr
    else:
        assert any(r.range for r in local_hub.requests("model.safetensors", "GET"))  # resumed, not restarted
    assert run_json("models", "verify")["ok"]


def test_pull_gives_up_after_max_retries(cli_env, local_hub):
    local_hub.set_faults("503")  # (files are fetched at once: one attempt may draw several 503s)
    data = run_json("models", "pull", BERT, "--max-retries", "2", code=1)
    (model,) = data["models"]
    assert not data["ok"] and not model["ok"] and model["error_type"] == "ModelDownloadError"
    assert "after 2 attempts" in model["error"]
    text = run("models", "pull", BERT, "--max-retries", "2")
    assert text.exit_code == 1 and text.stdout.startswith("FAIL  " + BERT)
    assert "Failed to download" in text.stderr and "Traceback" not in text.output


def test_pull_several_reports_each(cli_env, local_hub):
    data = run_json("models", "pull", BERT, "nobody/nothing", "--type", "tokenizer", code=1)
    assert [m["ok"] for m in data["models"]] == [True, False]
    assert data["models"][1]["error_type"] == "ModelNotFoundError"


def test_pull_all_reads_the_manifest(cli_env, local_hub):
    from phaita.data.manifest import load_manifest

    specs = load_manifest().unique_models()
    data = run_json("models", "pull", "--all", code=1)  # the local hub only carries microsoft/deberta-v3-base
    assert [m["candidates"] for m in data["models"]] == [list(s.candidates) for s in specs]
    by_name = {m["candidates"][0]: m for m in data["models"]}
    assert by_name[DEBERTA]["ok"] and by_name[DEBERTA]["model_type"] == "auto"
    chain = next(m for m in data["models"] if len(m["candidates"]) > 1)
    assert not chain["ok"] and chain["name"] == chain["candidates"][-1]  # every candidate was tried


def test_pull_offline(cli_env, local_hub, monkeypatch):
    run_json("models", "pull", BERT)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    local_hub.reset_stats()
    assert run_json("models", "pull", BERT)["ok"]
    miss = run("models", "pull", GPT2)
    assert miss.exit_code == 1 and "offline mode is on" in miss.stderr
    assert local_hub.requests() == []


def test_overall_progress_knows_the_total(cli_env, local_hub):
    from rich.console import Console
    from rich.progress import Progress

    from phaita.cli.output import PullProgress
    from phaita.loader.hub.selection import Needs
    from phaita.utils.model_loader import prefetch_model

    buf = io.StringIO()
    progress = Progress(console=Console(file=buf, force_terminal=True, width=100))
    bar = PullProgress(progress, Path(cli_env["HF_HUB_CACHE"]))
    with progress:
        bar.begin_model("[1/1] " + DEBERTA, DEBERTA, Needs())
        path = prefetch_model(DEBERTA, progress=bar)
        bar.end_model(True)
    files = sorted(Path(path).iterdir())
    assert bar.total == sum(f.stat().st_size for f in files)  # from the loader's plan, not a re-read listing
    assert bar.completed == bar.total and not bar.files  # every byte counted once; file lines removed
    assert "━" in buf.getvalue()


# --------------------------------------------------------------------------- verify and repair


def _corrupt(cache_dir: Path) -> tuple[Path, Path]:
    weights = snapshot_blob(cache_dir, DEBERTA, "model.safetensors")
    with open(weights, "r+b") as fh:  # same size, one byte flipped: only the hash can tell
        fh.seek(100)
        byte = fh.read(1)
        fh.seek(100)
        fh.write(bytes([byte[0] ^ 0xFF]))
    config = snapshot_blob(cache_dir, DEBERTA, "config.json")
    with open(config, "ab") as fh:
        fh.write(b" ")
    return weights, config


def test_verify_flags_and_repair_fixes(cli_env, local_hub):
    cache_dir = Path(cli_env["HF_HUB_CACHE"])
    run_json("models", "pull", DEBERTA)
    run_json("models", "pull", BERT, "--type", "tokenizer")
    clean = run_json("models", "verify")
    assert clean["ok"] and all(m["files_checked"] >= 3 for m in clean["models"])
    weights, config = _corrupt(cache_dir)
    good_sha = weights.name

    bad = run_json("models", "verify", code=1)
    reasons = {b["path"]: b["reason"] for b in bad["found_bad"]}
    assert set(reasons) == {"model.safetensors", "config.json"} and bad["bad_files_remaining"] == 2
    assert reasons["model.safetensors"].startswith("sha256 mismatch")
    assert reasons["config.json"].startswith("wrong size")
    assert {m["name"]: m["ok"] for m in bad["models"]} == {DEBERTA: False, BERT: True}
    text = run("models", "verify", DEBERTA)
    assert text.exit_code == 1 and "BAD   microsoft/deberta-v3-base" in text.stdout

    local_hub.reset_stats()
    fixed = run_json("models", "verify", "--repair")
    assert fixed["ok"] and fixed["bad_files_remaining"] == 0
    assert fixed["repair"]["refetched"] == [{"name": DEBERTA, "commit": local_hub.commit_sha(DEBERTA)}]
    assert local_hub.bytes_sent("model.safetensors") > 0 and local_hub.requests(BERT) == []
    assert hash_file(weights, "sha256", weights.stat().st_size) == good_sha
    assert run_json("models", "status", DEBERTA)["models"][0]["snapshots"][0]["state"] == "complete"
    assert run("models", "verify").exit_code == 0


def test_repair_without_hub_fails_and_says_why(cli_env, local_hub, monkeypatch):
    run_json("models", "pull", DEBERTA)
    _corrupt(Path(cli_env["HF_HUB_CACHE"]))
    monkeypatch.setenv("HF_ENDPOINT", dead_endpoint())
    data = run_json("models", "verify", "--repair", "--max-retries", "1", code=1)
    assert not data["ok"] and data["repair"]["errors"][0]["name"] == DEBERTA
    assert "Failed to download" in data["repair"]["errors"][0]["error"]
    status = run_json("models", "status")["models"][0]["snapshots"][0]
    assert status["state"] == "partial"  # the bad files are gone, never loaded


def test_verify_unknown_model_exit_1(cli_env):
    result = run("models", "verify", "nobody/nothing")
    assert result.exit_code == 1 and "Not in the cache" in result.stderr


# --------------------------------------------------------------------------- doctor


def test_doctor_ok_against_local_hub(cli_env, local_hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_doctorSecretToken123")
    result = run("models", "doctor", "--json", "--profile", "small", "--model", DEBERTA)
    data = json.loads(result.stdout)
    checks = {c["name"]: c for c in data["checks"]}
    assert set(checks) == {"endpoint reachable", "endpoint variable", "TLS certificate", "proxy variables", "token",
                           "cache directory", "free disk", "offline mode", "signature policy", "mirror listing",
                           "mirror resume"}
    assert checks["TLS certificate"]["ok"] and "plain HTTP" in checks["TLS certificate"]["detail"]
    assert checks["endpoint reachable"]["status"] == "OK" and "HTTP 200 in" in checks["endpoint reachable"]["detail"]
    assert f"probe model {DEBERTA}, given with --model" in checks["endpoint reachable"]["detail"]
    assert local_hub.url in checks["endpoint variable"]["detail"]
    assert checks["token"]["ok"] and "present (from HF_TOKEN" in checks["token"]["detail"]
    assert checks["cache directory"]["ok"] and checks["offline mode"]["detail"].startswith("off")
    assert result.exit_code == (0 if all(c["ok"] for c in data["checks"]) else 1)
    assert local_hub.requests("/api/models/"), "the endpoint was not contacted"
    text = run("models", "doctor", "--profile", "small")
    assert "hf_doctorSecretToken123" not in result.output + text.output
    assert len(text.stdout.splitlines()) >= 8 and text.stdout.startswith("OK    endpoint reachable")


def test_doctor_dead_endpoint_fails(cli_env, tmp_path):
    env = dict(cli_env, HF_ENDPOINT=dead_endpoint(), HF_HUB_OFFLINE="maybe",
               HTTPS_PROXY="http://user:s3cret@127.0.0.1:9", NO_PROXY="127.0.0.1,localhost")
    proc = subprocess_run(["models", "doctor"], env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = {line.split()[1] + " " + line.split()[2]: line for line in proc.stdout.splitlines() if line[:4] in ("OK  ", "FAIL")}
    assert lines["endpoint reachable"].startswith("FAIL") and "cannot reach" in lines["endpoint reachable"]
    assert lines["offline mode"].startswith("FAIL")
    assert lines["proxy variables"].startswith("OK") and "***@127.0.0.1:9" in lines["proxy variables"]
    assert "s3cret" not in proc.stdout + proc.stderr and "Traceback" not in proc.stderr
    assert "->" in proc.stdout  # advice under a failed line


@pytest.mark.parametrize("argv", [["models", "pull", "--all"], ["models", "lock"], ["models", "doctor"]])
def test_an_unknown_manifest_profile_is_a_usage_error(cli_env, argv):
    result = run(*argv, "--profile", "nosuch")
    assert result.exit_code == 2, result.output
    assert "unknown manifest profile 'nosuch'" in result.output and "small" in result.output


def test_doctor_probes_every_endpoint_of_phaita_endpoints_and_names_a_malformed_one(cli_env, local_hub, monkeypatch):
    dead = dead_endpoint()
    monkeypatch.setenv("PHAITA_ENDPOINTS", f"{local_hub.url},{dead}")  # replaces HF_ENDPOINT for the loader
    monkeypatch.setenv("HF_ENDPOINT", dead_endpoint())
    checks = {c["name"]: c for c in run_json("models", "doctor", "--profile", "small", code=1)["checks"]}
    reach = checks["endpoint reachable"]
    assert not reach["ok"] and f"{local_hub.url} answered" in reach["detail"]
    assert f"cannot reach {dead}" in reach["detail"] and os.environ["HF_ENDPOINT"] not in reach["detail"]
    assert checks["endpoint variable"]["ok"] and checks["endpoint variable"]["detail"].startswith(
        f"PHAITA_ENDPOINTS={local_hub.url},{dead}")
    monkeypatch.setenv("PHAITA_ENDPOINTS", "ftp://mirror.local")
    checks = {c["name"]: c for c in run_json("models", "doctor", "--profile", "small", code=1)["checks"]}
    variable = checks["endpoint variable"]
    assert not variable["ok"] and "PHAITA_ENDPOINTS: 'ftp://mirror.local'" in variable["detail"]
    assert "comma-separated" in variable["advice"]


# --------------------------------------------------------------------------- real processes


def test_unknown_model_no_traceback(cli_env):
    proc = subprocess_run(["models", "pull", "nobody/nothing"], cli_env)
    assert proc.returncode == 1
    assert "was not found on" in proc.stderr and "Traceback" not in proc.stderr
    bad = subprocess_run(["models", "pull", "not a valid name!"], cli_env)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr and "model_name" in bad.stderr


def test_hub_serve_and_pull_in_processes(cli_env, hub_root, tmp_path):
    env = dict(cli_env, PYTHONUNBUFFERED="1", HF_HUB_CACHE=str(tmp_path / "proc-cache"))
    hub = subprocess.Popen([PHAITA, "hub", "serve", "--root", str(hub_root), "--faults", "503x1"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        url = hub.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        env["HF_ENDPOINT"] = url
        pulled = subprocess_run(["models", "pull", BERT, "--json"], env)
        assert pulled.returncode == 0, pulled.stderr
        assert json.loads(pulled.stdout)["models"][0]["ok"]
        assert "attempt 1/3 failed: HTTP 503" in pulled.stderr  # the hub's fault, absorbed by a retry
        status = subprocess_run(["models", "status", "--json"], env)
        assert json.loads(status.stdout)["models"][0]["name"] == BERT
    finally:
        hub.terminate()
        assert hub.wait(timeout=10) == 0


def _run_on_terminal(args: list[str], env: dict, timeout: float = 60) -> tuple[int, str]:
    """Run with stdout and stderr on a pseudo-terminal; return (exit code, everything written)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a sized window, as a real one
    proc = subprocess.Popen([PHAITA, *args], stdout=slave, stderr=slave, stdin=subprocess.DEVNULL, env=env)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(master)
    return proc.wait(timeout=10), b"".join(chunks).decode(errors="replace")


def test_bars_on_a_terminal_only(cli_env, local_hub):
    env = dict(cli_env, TERM="xterm", COLUMNS="120")
    env.pop("HF_HUB_DISABLE_PROGRESS_BARS", None)
    code, screen = _run_on_terminal(["models", "pull", DEBERTA], env)
    assert code == 0 and "━" in screen and "[1/1] microsoft/deberta-v3-base" in screen
    piped = subprocess_run(["models", "pull", DEBERTA], env)
    assert piped.returncode == 0 and "━" not in piped.stdout + piped.stderr
    env["HF_HUB_CACHE"] = env["HF_HUB_CACHE"] + "-json"  # a fresh cache: a real transfer, on a terminal
    code, screen = _run_on_terminal(["models", "pull", DEBERTA, "--json"], env)
    assert code == 0 and json.loads(screen)["models"][0]["ok"]  # nothing but the JSON, no bar of any kind
