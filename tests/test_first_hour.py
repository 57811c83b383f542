"""A newcomer's mistakes get errors that blame the right thing, at once where nothing can succeed.

Issue 25: a name without an organisation, a model the hub (or a mirror without ``X-Error-Code``)
does not have, a cache that cannot be written, an offline miss, a model several manifest entries
name, a doctor run against a dead endpoint. Every test runs the real command line (or the public
Python API) against a real local hub and counts the hub's requests, never the time.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from phaita.cli.main import app
from phaita.testing import LocalHub

DEBERTA = "microsoft/deberta-v3-base"
NETWORK_ADVICE = ("Check the connection", "status.huggingface.co", "attempt 1/", "HTTPS_PROXY")


def run(*args: str):
    result = CliRunner().invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


@pytest.fixture
def env(hf_env, monkeypatch):
    """The local hub (hf_env) with instant backoff: a retry would show as an extra request, not a wait."""
    monkeypatch.setenv("PHAITA_BACKOFF_BASE", "0.01")
    monkeypatch.setenv("PHAITA_CONNECT_TIMEOUT", "2")
    return hf_env


@pytest.fixture
def hub(hub_root, env, monkeypatch):
    """``hub(*lacks)``: a fresh LocalHub of the tiny models as HF_ENDPOINT (``"error-codes"``: as a mirror
    that answers 404 without ``X-Error-Code``)."""
    from phaita.testing.env import point_huggingface_hub_at

    started = []

    def start(*lacks: str) -> LocalHub:
        h = LocalHub(hub_root, lacks=lacks).start()
        started.append(h)
        monkeypatch.setenv("HF_ENDPOINT", h.url)
        point_huggingface_hub_at(monkeypatch, h.url, home=os.environ["HF_HOME"], cache=os.environ["HF_HUB_CACHE"])
        return h

    yield start
    for h in started:
        h.stop()


# --------------------------------------------------------------------------- not found


@pytest.mark.parametrize("lacks", [(), ("error-codes",)], ids=["hub", "mirror-without-error-codes"])
def test_a_name_without_an_organisation_is_not_found_at_once_with_the_name_hint(hub, lacks):
    h = hub(*lacks)
    result = run("models", "pull", "deberta-v3-base")
    assert result.exit_code == 1
    assert f"Model 'deberta-v3-base' was not found on {h.url}. This is not retried." in result.stderr
    assert "'deberta-v3-base' names no organisation" in result.stderr
    assert "'organization/model-name'" in result.stderr
    assert not any(s in result.stderr for s in NETWORK_ADVICE), result.stderr
    assert "/models?search=" not in result.stderr  # only the real Hub has that page
    assert len(h.requests("/api/models/")) == 1 and not h.requests("/resolve/")  # no retry


@pytest.mark.parametrize("lacks", [(), ("error-codes",)], ids=["hub", "mirror-without-error-codes"])
def test_a_missing_model_is_not_found_at_once_from_python_too(hub, lacks):
    from phaita.utils.model_loader import ModelNotFoundError, robust_model_download

    h = hub(*lacks)
    if lacks:  # the mirror really omits the header the Hub sends
        import httpx2

        answer = httpx2.get(f"{h.url}/api/models/nobody/nothing/revision/main")
        assert answer.status_code == 404 and "X-Error-Code" not in answer.headers
    h.reset_stats()
    with pytest.raises(ModelNotFoundError) as caught:
        robust_model_download("nobody/nothing", max_retries=3)
    message = str(caught.value)
    assert "Model 'nobody/nothing' was not found" in message and caught.value.attempts <= 1
    assert "pass token=... or set HF_TOKEN" in message  # Python's wording: the argument
    assert f"{h.url} is not the Hugging Face Hub (HF_ENDPOINT)" in message
    assert not any(s in message for s in NETWORK_ADVICE), message
    assert len(h.requests("/api/models/")) == 1


def test_a_404_from_the_tree_api_of_a_partial_mirror_is_not_a_missing_model(hub):
    """Only the model and revision APIs say "no such model": a mirror without the tree API still serves."""
    from phaita.utils.model_loader import robust_model_download

    h = hub("revision-blobs", "tree", "error-codes")
    path = robust_model_download(DEBERTA, model_type="tokenizer", max_retries=1)
    assert path is not None and h.requests("/resolve/")


def test_the_search_link_and_the_status_page_are_only_for_the_real_hub():
    from phaita.loader import advice

    real = advice.not_found_message("acme/model", "https://huggingface.co", False)
    assert "https://huggingface.co/models?search=model" in real
    assert "If you use a mirror (HF_ENDPOINT)" in real
    local = advice.not_found_message("acme/model", "http://127.0.0.1:8080", False)
    assert "/models?search=" not in local and "http://127.0.0.1:8080 is not the Hugging Face Hub" in local
    kwargs = dict(attempts=3, last_error="HTTP 503", models_attempted=["acme/model"], cache_dir=Path("/c"),
                  revision=None, max_retries=3, timeout=300)
    assert "status.huggingface.co" in advice.retries_exhausted_message(
        "acme/model", endpoint="https://huggingface.co", **kwargs)
    assert "status.huggingface.co" not in advice.retries_exhausted_message(
        "acme/model", endpoint="http://mirror.local:8080", **kwargs)


# --------------------------------------------------------------------------- a cache that cannot be written


def _bad_caches(tmp: Path) -> dict[str, Path]:
    a_file = tmp / "a-file"
    a_file.write_text("not a folder")
    if os.geteuid() == 0:  # root writes through permission bits: a read-only file system refuses even root
        read_only = Path("/sys/phaita-ro/hub")
    else:
        folder = tmp / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        read_only = folder / "hub"
    return {"proc": Path("/proc/phaita-ro/hub"), "file-in-place": a_file / "hub", "read-only": read_only}


@pytest.mark.parametrize("kind", ["proc", "file-in-place", "read-only"])
def test_an_unwritable_cache_gets_cache_advice_at_once_from_the_cli(hub, tmp_path, monkeypatch, kind):
    h = hub()
    bad = _bad_caches(tmp_path)[kind]
    monkeypatch.setenv("HF_HUB_CACHE", str(bad))
    result = run("models", "pull", DEBERTA)
    assert result.exit_code == 1
    assert f"Cannot write the cache folder {bad} for '{DEBERTA}'" in result.stderr, result.stderr
    assert "This is not a network problem, and it is not retried." in result.stderr
    assert "HF_HUB_CACHE or HF_HOME" in result.stderr and "df -h" in result.stderr
    assert "cache_dir=" not in result.stderr  # a CLI user gets variables, not Python arguments
    if kind == "file-in-place":
        assert f"{tmp_path / 'a-file'} is a file where a folder should be" in result.stderr
    assert not any(s in result.stderr for s in NETWORK_ADVICE), result.stderr
    assert len(h.requests("/api/models/")) <= 1 and not h.requests("/resolve/")


def test_an_unwritable_cache_is_a_cache_error_in_python(hub, tmp_path):
    from phaita.utils.model_loader import CacheNotWritableError, ModelDownloadError, robust_model_download

    h = hub()
    bad = _bad_caches(tmp_path)["file-in-place"]
    with pytest.raises(CacheNotWritableError) as caught:
        robust_model_download(DEBERTA, cache_dir=str(bad), max_retries=3)
    assert isinstance(caught.value, ModelDownloadError) and caught.value.attempts == 1
    assert "cache_dir=..., HF_HUB_CACHE or HF_HOME" in str(caught.value)
    assert not h.requests("/resolve/")


@pytest.mark.parametrize("kind", ["proc", "file-in-place"])
def test_doctor_tries_to_create_the_cache_and_its_disk_line_agrees(hub, tmp_path, monkeypatch, kind):
    hub()
    bad = _bad_caches(tmp_path)[kind]
    monkeypatch.setenv("HF_HUB_CACHE", str(bad))
    result = run("models", "doctor", "--json", "--profile", "small", "--model", DEBERTA)
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert result.exit_code == 1
    assert not checks["cache directory"]["ok"] and str(bad) in checks["cache directory"]["detail"]
    assert not checks["free disk"]["ok"] and "the cache folder cannot be made there" in checks["free disk"]["detail"]


def test_doctor_creates_writes_and_removes_a_missing_cache_folder(hub, tmp_path, monkeypatch):
    hub()
    new = tmp_path / "new" / "hf" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(new))
    checks = {c["name"]: c for c in json.loads(run("models", "doctor", "--json", "--model", DEBERTA).stdout)["checks"]}
    assert checks["cache directory"]["ok"]
    assert "can be created and written (tried: created, wrote a file, removed)" in checks["cache directory"]["detail"]
    assert not (tmp_path / "new").exists()  # no trace left


# --------------------------------------------------------------------------- advice for where the call came from


def test_an_offline_miss_names_cli_variables_from_the_cli_and_arguments_from_python(hub, monkeypatch):
    from phaita.utils.model_loader import OfflineModeError, robust_model_download

    h = hub()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = run("models", "pull", DEBERTA)
    assert result.exit_code == 1 and "is not in the cache and offline mode is on" in result.stderr
    assert "allow_offline" not in result.stderr and "unset HF_HUB_OFFLINE" in result.stderr
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    with pytest.raises(OfflineModeError) as caught:  # after the CLI ran in this process: Python's wording again
        robust_model_download(DEBERTA, allow_offline=True)
    assert "pass allow_offline=False" in str(caught.value)
    assert not h.requests()


def test_exhausted_retries_name_the_cli_flags_from_the_cli(hub):
    h = hub()
    h.set_faults("503:api")
    result = run("models", "pull", DEBERTA, "--max-retries", "2")
    assert result.exit_code == 1 and "after 2 attempts" in result.stderr
    assert "Raise --max-retries (now 2) or --timeout (now 300 s per attempt)" in result.stderr
    assert "allow_offline" not in result.stderr and "status.huggingface.co" not in result.stderr
    assert len(h.requests("/api/models/")) == 2


# --------------------------------------------------------------------------- each failing model once


def test_lock_and_pull_report_each_failing_model_once_and_ask_for_it_once(hub):
    """The tiny hub lacks the small profile's models: SmolLM2 is named by three entries, MiniLM by two."""
    h = hub()
    smol, minilm = "HuggingFaceTB/SmolLM2-135M-Instruct", "sentence-transformers/all-MiniLM-L6-v2"
    result = run("models", "lock", "--profile", "small")
    assert result.exit_code == 1
    fails = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert len(fails) == len(set(fails)) == 3, result.stdout
    assert sum(line.split()[1] == smol for line in fails) == 1
    assert "ComplaintGenerator/generator, QuestionGenerator/generator, RealismScorer/fluency" in result.stdout
    assert result.stderr.count(f"Model '{smol}' was not found") == 1
    assert result.stderr.count(f"Model '{minilm}' was not found") == 1
    assert "3 model(s) could not be resolved" in result.stderr
    assert len(h.requests(f"/api/models/{smol}/")) == 1 and len(h.requests(f"/api/models/{minilm}/")) == 1
    h.reset_stats()
    result = run("models", "pull", "--all", "--profile", "small")
    assert result.exit_code == 1
    assert result.stderr.count(f"Model '{minilm}' was not found") == 1 and f"({minilm}: see above)" in result.stderr
    assert len(h.requests(f"/api/models/{minilm}/")) == 1 and len(h.requests(f"/api/models/{smol}/")) == 1


# --------------------------------------------------------------------------- doctor's probe


def test_doctor_at_a_dead_endpoint_blames_the_endpoint_not_a_model_never_mentioned(env, monkeypatch):
    from test_cli import dead_endpoint

    dead = dead_endpoint()
    monkeypatch.setenv("HF_ENDPOINT", dead)
    result = run("models", "doctor")
    assert result.exit_code == 1
    assert f"cannot reach {dead}" in result.stdout and f"{dead}: cannot be probed" in result.stdout
    assert "biobert" not in result.stdout and "deberta" not in result.stdout, result.stdout


def test_doctor_names_the_probe_model_and_why(hub):
    hub()
    checks = {c["name"]: c for c in json.loads(run("models", "doctor", "--json").stdout)["checks"]}
    why = "the smallest model of the manifest's default profile this endpoint carries"
    assert f"probe model {DEBERTA}, {why}" in checks["endpoint reachable"]["detail"]
    assert f"probe model {DEBERTA}, {why}" in checks["mirror listing"]["detail"]
    checks = {c["name"]: c for c in json.loads(run("models", "doctor", "--json", "--model",
                                                   "phaita-test/tiny-bert").stdout)["checks"]}
    assert "probe model phaita-test/tiny-bert, given with --model" in checks["endpoint reachable"]["detail"]
    assert "phaita-test/tiny-bert/" in checks["mirror resume"]["detail"]
