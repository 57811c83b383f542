"""Property-based tests (hypothesis): any input gives a result, a ValueError or a ModelDownloadError.

Model names, revisions, ``model_type``, the numeric arguments and every environment variable the
loader reads are drawn at random (plus hand-picked nasty values). Whatever they are, the public
functions either work or raise ``ValueError`` (naming the argument or variable) or
``ModelDownloadError`` (with its advice): never ``TypeError``, ``OverflowError``,
``UnicodeError`` or anything else. The endpoint is a dead local port or the local hub, so nothing
waits on a real network; example counts are modest so the file runs in well under 30 s.
"""

from __future__ import annotations

import math
import os
import socket
import uuid
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from phaita.loader.request.retry import RetryPolicy
from phaita.testing import LocalHub, parse_faults
from phaita.testing.env import environment
from phaita.utils.model_loader import (
    ModelDownloadError,
    is_model_cached,
    prefetch_model,
    robust_model_download,
)

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
# Examples that download from the local hub cost ~0.2 s each: fewer of them.
SLOW = settings(SETTINGS, max_examples=25)
REPO = "phaita-test/tiny-bert"

# Text that the operating system can carry in an environment variable or a path.
SAFE_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)
JUNK = st.one_of(st.none(), st.booleans(), st.binary(max_size=8), st.lists(st.integers(), max_size=2),
                 st.dictionaries(st.text(max_size=3), st.integers(), max_size=1), st.fractions(),
                 st.complex_numbers(allow_nan=True), st.just(object()))
NUMBER = st.one_of(st.integers(), st.integers(min_value=10**300, max_value=10**400), st.integers(max_value=-1),
                   st.floats(allow_nan=True, allow_infinity=True), st.floats(min_value=0, max_value=3),
                   st.text(max_size=5), JUNK)


def _dead_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # closed again: connections are refused at once


def _env(**values: str | None):
    return environment(values)


BASE_ENV = {
    "PHAITA_BACKOFF_BASE": "0", "PHAITA_MAX_BACKOFF": "0.01", "PHAITA_MAX_RETRY_AFTER": "0.05",
    "PHAITA_STALL_TIMEOUT": "2", "PHAITA_CONNECT_TIMEOUT": "1", "PHAITA_FRESHNESS_TIMEOUT": "1",
    "PHAITA_MAX_FILE_SIZE": None, "HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0", "HF_TOKEN": None,
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
}


@pytest.fixture(scope="module")
def dead(tmp_path_factory):
    """Environment with a dead endpoint and an empty cache."""
    cache = tmp_path_factory.mktemp("bad-input-cache")
    with _env(**BASE_ENV, HF_ENDPOINT=_dead_endpoint(), HF_HUB_CACHE=str(cache)):
        yield cache


@pytest.fixture(scope="module")
def live(hub_root, tmp_path_factory):
    """Environment with the local hub; each example uses its own cache folder under the yielded one."""
    cache = tmp_path_factory.mktemp("bad-input-live")
    with LocalHub(hub_root) as hub, _env(**BASE_ENV, HF_ENDPOINT=hub.url, HF_HUB_CACHE=str(cache / "default")):
        yield hub, cache


def _assert_clean_outcome(call, *, names: tuple[str, ...] = ()) -> object:
    """Run ``call``: a result, or ValueError / ModelDownloadError with a clear message. Anything else fails."""
    try:
        return call()
    except ModelDownloadError as exc:
        text = str(exc)
        assert text.strip() and "\n" in text or len(text) > 30, f"unclear message: {text!r}"
        return exc
    except ValueError as exc:
        text = str(exc)
        assert text.strip(), "a ValueError with no message"
        if names:
            assert any(n in text for n in names), f"the message names none of {names}: {text!r}"
        return exc


# --------------------------------------------------------------------------- arguments


@SETTINGS
@given(name=st.one_of(SAFE_TEXT, st.from_regex(r"[A-Za-z0-9._-]{1,12}/[A-Za-z0-9._-]{1,12}", fullmatch=True),
                      st.lists(SAFE_TEXT, max_size=3), st.builds(Path, SAFE_TEXT), JUNK))
@example(name="")
@example(name=[])
@example(name="../../etc/passwd")
@example(name="org/name/extra")
@example(name="a" * 500)
@example(name="\ud800/x")  # a lone surrogate: not encodable as a path or URL
@example(name=["ok/name", None])
def test_any_model_name(dead, name):
    _assert_clean_outcome(lambda: robust_model_download(name, model_type="tokenizer", max_retries=1, timeout=2),
           names=("model_name",))


@SETTINGS
@given(model_type=st.one_of(SAFE_TEXT, st.sampled_from(["AUTO", "Auto", " auto", "tokenizer\n", "causal-lm"]), JUNK,
                            st.lists(st.sampled_from(["auto", "tokenizer"]), max_size=2)))
@example(model_type=["auto"])
@example(model_type=("tokenizer",))
def test_any_model_type(dead, model_type):
    _assert_clean_outcome(lambda: robust_model_download(REPO, model_type=model_type, max_retries=1, timeout=2),
           names=("model_type",))


@SETTINGS
@given(max_retries=st.one_of(st.integers(max_value=3), NUMBER.filter(lambda v: not isinstance(v, int) or v <= 3)),
       timeout=NUMBER, backoff_base=NUMBER)
@example(max_retries=2, timeout=10**400, backoff_base=0)
@example(max_retries=2, timeout=1, backoff_base=10**400)
@example(max_retries=2, timeout=float("nan"), backoff_base=0)
@example(max_retries=True, timeout=1, backoff_base=0)
@example(max_retries=2, timeout=Fraction(1, 2), backoff_base=0)
def test_any_numeric_arguments(dead, max_retries, timeout, backoff_base):
    result = _assert_clean_outcome(lambda: robust_model_download(REPO, model_type="tokenizer", max_retries=max_retries,
                                                  timeout=timeout, backoff_base=backoff_base),
                    names=("max_retries", "timeout", "backoff_base"))
    assert isinstance(result, Exception), "the endpoint is dead: nothing can load"
    if isinstance(result, ModelDownloadError):
        assert result.transient and result.attempts == max_retries


@settings(max_examples=60, deadline=None, derandomize=True)
@given(retry=st.one_of(st.integers(min_value=0, max_value=5000), st.just(10**6)),
       base=st.one_of(st.floats(min_value=0, max_value=1e308), st.integers(min_value=0, max_value=10**400)),
       retry_after=st.one_of(st.none(), st.floats(min_value=0, max_value=1e308)))
@example(retry=1024, base=0.0, retry_after=None)
@example(retry=1100, base=10.0, retry_after=None)
def test_backoff_is_finite_and_capped_for_any_attempt(retry, base, retry_after):
    """A very patient caller (max_retries in the thousands) never crashes the schedule."""
    with _env(PHAITA_MAX_BACKOFF="600", PHAITA_MAX_RETRY_AFTER="300"):
        try:
            policy = RetryPolicy(max_attempts=retry + 2, backoff_base=base)
        except ValueError as exc:
            assert "backoff_base" in str(exc)
            return
        wait = policy.wait_before(retry, retry_after)
    assert math.isfinite(wait) and 0 <= wait <= 600


@SETTINGS
@given(revision=st.one_of(SAFE_TEXT, st.sampled_from(["main", "refs/pr/1", "v1.0", "0" * 40, "A" * 40, "a" * 300,
                                                      "%2e%2e", "main ", " main", "feature/x", "..", "a/../b"]),
                          JUNK))
@example(revision="\ud800")
@example(revision="main\n")
@example(revision="../../../../escape")
def test_any_revision(live, revision):
    hub, cache = live
    folder = cache / uuid.uuid4().hex
    result = _assert_clean_outcome(lambda: prefetch_model(REPO, model_type="tokenizer", max_retries=1, timeout=5,
                                           revision=revision, cache_dir=str(folder)), names=("revision",))
    if not isinstance(result, Exception):
        assert revision in (None, "main", hub.commit_sha(REPO))
    _assert_clean_outcome(lambda: is_model_cached(REPO, revision=revision, cache_dir=str(folder)), names=("revision",))
    # Nothing escaped the cache folder.
    if folder.exists():
        for path in folder.rglob("*"):
            assert os.path.realpath(path).startswith(str(cache)), path


# --------------------------------------------------------------------------- environment


NUMERIC_VARS = ["PHAITA_BACKOFF_BASE", "PHAITA_BACKOFF_JITTER", "PHAITA_MAX_BACKOFF", "PHAITA_MAX_RETRY_AFTER",
                "PHAITA_FRESHNESS_TIMEOUT", "PHAITA_STALL_TIMEOUT", "PHAITA_CONNECT_TIMEOUT", "PHAITA_MAX_FILE_SIZE"]
FLAG_VARS = ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"]
ENV_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20)
NUMERIC_TEXT = st.one_of(ENV_TEXT, st.floats(allow_nan=True, allow_infinity=True).map(repr),
                         st.integers(min_value=-10**30, max_value=10**400).map(str),
                         st.sampled_from(["1e400", "-0", "0x10", "1_000", " 2 ", "nan", "inf", "1e-400", "٣"]))


@SLOW
@given(var=st.sampled_from(NUMERIC_VARS + FLAG_VARS), value=NUMERIC_TEXT)
@example(var="PHAITA_MAX_FILE_SIZE", value="1e400")
@example(var="PHAITA_MAX_FILE_SIZE", value="1e300")
@example(var="PHAITA_STALL_TIMEOUT", value="1e-400")
@example(var="HF_HUB_OFFLINE", value="2")
@example(var="PHAITA_BACKOFF_BASE", value="1e308")
def test_any_environment_value(live, var, value):
    hub, cache = live
    # Bound the waits a valid value could ask for, so a test cannot sleep for minutes.
    bounds = {"PHAITA_BACKOFF_BASE": {"PHAITA_MAX_BACKOFF": "0.01"}, "PHAITA_MAX_BACKOFF": {"PHAITA_BACKOFF_BASE": "0"},
              "PHAITA_MAX_RETRY_AFTER": {"PHAITA_BACKOFF_BASE": "0"}}.get(var, {})
    # One failed attempt first, so that the retry schedule's variables are read too.
    hub.set_faults(parse_faults("429x1:0.02:path=*config.json" if var == "PHAITA_MAX_RETRY_AFTER"
                                else "503x1:path=*config.json"))
    try:
        with _env(**{**bounds, var: value}):
            _assert_clean_outcome(lambda: robust_model_download(REPO, model_type="tokenizer", max_retries=2, timeout=5,
                                                 cache_dir=str(cache / uuid.uuid4().hex)), names=(var,))
    finally:
        hub.set_faults(None)


@SETTINGS
@given(value=st.one_of(ENV_TEXT, st.just("http://"), st.just("http://[::1"), st.just("https://"),
                       ENV_TEXT.map(lambda t: "http://127.0.0.1:" + t), ENV_TEXT.map(lambda t: "http://" + t)))
@example(value="ftp://example.org")
@example(value="http://127.0.0.1:99999")
@example(value="http://a b")
def test_any_endpoint(dead, value):
    with _env(HF_ENDPOINT=value, PHAITA_CONNECT_TIMEOUT="0.5"):
        _assert_clean_outcome(lambda: robust_model_download(REPO, model_type="tokenizer", max_retries=1, timeout=2),
               names=("HF_ENDPOINT",))


@pytest.mark.parametrize("var,value", [("PHAITA_MAX_WORKERS", "-3"), ("PHAITA_MAX_CONNECTIONS", "many"),
                                       ("PHAITA_STREAMS_PER_FILE", "0"), ("PHAITA_PARALLEL_THRESHOLD", "16MB"),
                                       ("PHAITA_ENDPOINTS", "ftp://mirror.local"), ("PHAITA_ENDPOINTS", ",")])
def test_a_malformed_setting_is_reported_as_a_setting_not_as_a_network_failure(dead, var, value):
    with _env(**{var: value}):
        with pytest.raises(ModelDownloadError) as info:
            robust_model_download(REPO, model_type="tokenizer", max_retries=2, timeout=2)
    text = str(info.value)
    assert var in text and "Fix or unset that environment variable" in text, text
    assert "Check the connection" not in text


@SLOW
@given(junk=st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=6),
       core=st.from_regex(r"[A-Za-z0-9]{12}", fullmatch=True), where=st.sampled_from(["env", "param"]))
@example(junk="\n", core="SecretCore12345", where="param")
@example(junk="é", core="SecretCore12345", where="env")
@example(junk=" \t", core="SecretCore12345", where="param")
def test_any_token_value_never_leaks(live, junk, core, where):
    """Odd tokens (a newline from a file, non-ASCII, spaces) give clean errors that do not show them."""
    import logging

    hub, cache = live
    token = f"tok{core}{junk}"
    records: list[str] = []

    class Grab(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    grab = Grab(logging.DEBUG)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(grab)
    root.setLevel(logging.DEBUG)
    hub.set_faults(parse_faults("503x1:path=*config.json"))
    try:
        with _env(HF_TOKEN=token if where == "env" else None):
            result = _assert_clean_outcome(lambda: robust_model_download(
                REPO, model_type="tokenizer", max_retries=2, timeout=5, cache_dir=str(cache / uuid.uuid4().hex),
                **({"token": token} if where == "param" else {})))
    finally:
        hub.set_faults(None)
        root.removeHandler(grab)
        root.setLevel(old_level)
    text = "\n".join(records + ([str(result), repr(result)] if isinstance(result, Exception) else []))
    assert core not in text
