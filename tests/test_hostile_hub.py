"""A hostile or broken hub: the loader refuses what it cannot trust and writes nothing outside its cache.

Each test runs under ``fs_guard``: every file and folder around the cache (the test's whole
temporary folder except the cache itself, the folders next to it, transformers' remote-code module
folder, hostile names in /tmp, the working directory) is listed before and after, and must not change. Also here: the token's secrecy on the
hub's fault paths, in loader objects' reprs and in the ``phaita`` command line's output.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
import time
from pathlib import Path

import pytest

from loader_fixtures import warnings_of
from phaita.testing import LocalHub, parse_faults
from phaita.testing.chaos import audit_cache, sha256_file, snapshot_files
from phaita.utils.model_loader import (
    AccessDeniedError,
    ModelDownloadError,
    ModelLoadError,
    ModelNotFoundError,
    UnsafeModelError,
    is_model_cached,
    load_model_and_tokenizer,
    prefetch_model,
    robust_model_download,
)

BASE = "phaita-test/tiny-bert"
OID = "0" * 40
TOKEN = "hf_HostileHubSecret0123456789abcdef"


def _tree(root: Path, skip: tuple[Path, ...] = ()) -> dict[str, tuple[int, int]]:
    out = {}
    if not root.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if Path(dirpath) / d not in skip]
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p)] = (st.st_size if not p.is_dir() else 0, st.st_mtime_ns if not p.is_dir() else 0)
    return out


@pytest.fixture
def fs_guard(tmp_path, loader_env):
    """Nothing may change around the cache while a test loads from a hostile hub.

    Watched: the test's temporary folder (but the cache and the hub roots the test writes), the
    folders next to it, the folder where transformers copies remote code, hostile names in /tmp,
    and the working directory.
    """
    import transformers.dynamic_module_utils as dmu

    cache = Path(loader_env["HF_HUB_CACHE"])
    skip = (cache, tmp_path / "hostile-root", tmp_path / "cdn-root", tmp_path / "modules", tmp_path / "markers")
    modules = Path(dmu.HF_MODULES_CACHE)

    def state():
        # /tmp is shared with other programs: only names a hostile listing here would create count.
        hostile = {n for n in os.listdir("/tmp") if "evil" in n or "escape" in n}
        return (_tree(tmp_path, skip), _tree(modules), set(os.listdir(tmp_path.parent)), hostile,
                set(os.listdir(os.getcwd())))

    before = state()
    yield cache
    after = state()
    names = ("around the cache", "transformers modules", "next to the test folder", "/tmp", "cwd")
    for name, a, b in zip(names, before, after):
        if a != b:
            added = sorted(set(b) - set(a)) if isinstance(b, (set, dict)) else []
            changed = sorted(k for k in set(a) & set(b) if isinstance(a, dict) and a[k] != b[k])
            pytest.fail(f"written {name}: added {added[:10]}, changed {changed[:10]}")


@pytest.fixture
def root(tmp_path, hub_root, fs_guard) -> Path:
    """A hub root holding a copy of the tiny BERT; tests add hostile repositories next to it."""
    r = tmp_path / "hostile-root"
    shutil.copytree(hub_root / BASE, r / BASE)
    return r


def _clone(root: Path, repo: str, config: dict | None = None, files: dict | None = None,
           config_json: dict | None = None, drop: tuple[str, ...] = ()) -> Path:
    d = root / repo
    shutil.copytree(root / BASE, d)
    for name in drop:
        (d / name).unlink()
    for name, data in (files or {}).items():
        (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())
    if config_json:
        cfg = json.loads((d / "config.json").read_text())
        cfg.update(config_json)
        (d / "config.json").write_text(json.dumps(cfg))
    if config is not None:
        (d / ".hub.json").write_text(json.dumps(config))
    return d


@pytest.fixture
def serve(root, monkeypatch):
    hubs = []

    def start(r: Path = root) -> LocalHub:
        hub = LocalHub(r).start()
        hubs.append(hub)
        if len(hubs) == 1:
            monkeypatch.setenv("HF_ENDPOINT", hub.url)
        return hub

    yield start
    for hub in hubs:
        hub.stop()


# --------------------------------------------------------------------------- listings


@pytest.mark.parametrize("name, why", [
    ("../../evil.txt", "leaves the repository"),
    ("../outside.json", "leaves the repository"),
    ("sub/../../evil.txt", "leaves the repository"),
    ("./config.json", "leaves the repository"),
    ("a//b.txt", "leaves the repository"),
    ("/tmp/phaita-evil.txt", "absolute or unsafe"),
    ("C:/Windows/evil.txt", "absolute or unsafe"),
    ("..\\..\\evil.txt", "absolute or unsafe"),
    ("evil\u0000.txt", "absolute or unsafe"),
    ("config.json/evil", "both as a file and a folder"),  # a file that is also a folder: a symlink in disguise
    ("", "invalid file name"),
])
def test_listing_with_an_unsafe_path_is_refused_before_any_download(fs_guard, root, serve, caplog, name, why):
    _clone(root, "acme/hostile", {"extra_siblings": [{"rfilename": name, "size": 3, "blobId": OID}]})
    hub = serve()
    started = time.monotonic()
    with pytest.raises(UnsafeModelError) as info:
        robust_model_download("acme/hostile", max_retries=3, backoff_base=5)
    assert time.monotonic() - started < 3, "refused at once, no backoff"
    assert why in str(info.value)
    assert info.value.attempts == 1 and info.value.transient is False
    assert hub.requests("/resolve/") == [], "not one file was fetched"
    assert warnings_of(caplog) == []
    assert audit_cache(fs_guard, lambda r, p: None) == []  # no snapshot holds anything


def test_a_listing_that_names_a_file_twice_is_refused(fs_guard, root, serve):
    _clone(root, "acme/twice", {"extra_siblings": [{"rfilename": "config.json", "size": 3, "blobId": OID}]})
    serve()
    with pytest.raises(UnsafeModelError, match="twice"):
        prefetch_model("acme/twice")


def test_a_revision_that_walks_out_of_the_cache_is_refused(fs_guard, root, serve):
    """A hub that answers for any revision name cannot make the loader write refs/../../.. files."""
    evil = ["../../../../escape", "x/../../../../../escape", "..", "/abs/ref", "a\\..\\b", "main/"]
    _clone(root, "acme/refs", {"branches": evil})
    hub = serve()
    for revision in evil:
        with pytest.raises(ValueError, match="revision"):
            prefetch_model("acme/refs", revision=revision, model_type="tokenizer")
        with pytest.raises(ValueError, match="revision"):
            is_model_cached("acme/refs", revision=revision)
    assert hub.stats == [], "refused before any request"
    # Revisions with slashes stay usable (refs/pr/1, feature/x).
    _clone(root, "acme/branchy", {"branches": ["feature/x"]})
    snapshot = prefetch_model("acme/branchy", revision="feature/x", model_type="tokenizer")
    assert (fs_guard / "models--acme--branchy" / "refs" / "feature" / "x").read_text() == Path(snapshot).name


# --------------------------------------------------------------------------- sizes


def test_content_length_far_larger_than_the_body_changes_nothing(fs_guard, root, serve):
    """The hub announces 1 TB in Content-Length and sends the real 144 kB: the listing's size rules."""
    _clone(root, "acme/liar", {"content_length_override": {"model.safetensors": 10**12, "config.json": 10**9}})
    hub = serve()
    model = robust_model_download("acme/liar", max_retries=1, timeout=20)
    assert type(model).__name__ == "BertModel"
    snapshot = next((fs_guard / "models--acme--liar" / "snapshots").iterdir())
    for rel, path in snapshot_files(snapshot).items():
        assert sha256_file(path) == sha256_file(root / "acme/liar" / rel)
    weights = [r for r in hub.requests("/resolve/") if r.path.endswith("model.safetensors")]
    assert weights and sum(r.bytes_sent for r in weights) == (root / "acme/liar/model.safetensors").stat().st_size


def test_a_body_shorter_than_the_listing_fails_cleanly_and_is_never_linked(fs_guard, root, serve):
    """Content-Length (and body) smaller than the listing's size: a transient failure, nothing loaded."""
    _clone(root, "acme/short", {"content_length_override": {"model.safetensors": 1000}})
    hub = serve()
    with pytest.raises(ModelDownloadError) as info:
        robust_model_download("acme/short", max_retries=2, timeout=10, backoff_base=0.2)
    assert info.value.transient and info.value.attempts == 2
    # each attempt asks from byte 0 once more after the refused resume, then stops: no loop until the deadline
    assert "refuses the rest (HTTP 416)" in str(info.value)
    weights = [r for r in hub.requests("/resolve/") if r.path.endswith("model.safetensors")]
    assert len(weights) <= 2 * 4, [r.status for r in weights]
    assert not is_model_cached("acme/short")
    assert audit_cache(fs_guard, lambda r, p: sha256_file(root / r / p) if (root / r / p).is_file() else None) == []


def test_a_file_over_the_size_limit_is_refused_from_the_listing(fs_guard, root, serve, monkeypatch):
    hub = serve()
    weights = (root / BASE / "model.safetensors").stat().st_size
    monkeypatch.setenv("PHAITA_MAX_FILE_SIZE", str(weights - 1))
    with pytest.raises(UnsafeModelError) as info:
        robust_model_download(BASE, max_retries=3, backoff_base=5)
    assert "PHAITA_MAX_FILE_SIZE" in str(info.value) and "model.safetensors" in str(info.value)
    assert hub.requests("/resolve/") == []
    monkeypatch.setenv("PHAITA_MAX_FILE_SIZE", str(weights))
    assert type(robust_model_download(BASE)).__name__ == "BertModel"


def test_an_absurd_announced_size_is_refused_with_the_default_limit(fs_guard, root, serve):
    _clone(root, "acme/huge", {"extra_siblings": [{"rfilename": "notes.txt", "size": 10**15, "blobId": OID}]})
    hub = serve()
    with pytest.raises(UnsafeModelError, match="over the limit"):
        prefetch_model("acme/huge")
    assert hub.requests("/resolve/") == []


# --------------------------------------------------------------------------- code execution


def _payload(marker: Path) -> str:
    return f"import pathlib; pathlib.Path({str(marker)!r}).write_text('code from the hub ran')\n"


class _Exploit:
    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self):
        return (exec, (self.code,))


def test_pickle_only_repo_is_refused_and_its_payload_never_runs(fs_guard, root, serve, tmp_path):
    (tmp_path / "markers").mkdir(exist_ok=True)
    marker = tmp_path / "markers" / "pickle-ran"
    _clone(root, "acme/pickled", drop=("model.safetensors",),
           files={"pytorch_model.bin": pickle.dumps(_Exploit(_payload(marker)))})
    hub = serve()
    with pytest.raises(UnsafeModelError, match="allow_pickle=True"):
        robust_model_download("acme/pickled")
    assert not [r for r in hub.requests("/resolve/") if r.path.endswith(".bin")], "the pickle was not even fetched"
    assert not marker.exists()
    # Opting in fetches it; transformers' weights-only unpickler still refuses to run the payload.
    with pytest.raises(ModelLoadError):
        robust_model_download("acme/pickled", allow_pickle=True)
    assert not marker.exists()
    pickle.loads(pickle.dumps(_Exploit(_payload(marker))))  # positive control: the payload is real
    assert marker.exists()
    marker.unlink()


@pytest.fixture
def remote_code_repos(root, tmp_path):
    (tmp_path / "markers").mkdir(exist_ok=True)
    marker = tmp_path / "markers" / "remote-code-ran"
    code = _payload(marker) + (
        "from transformers import PretrainedConfig, PreTrainedModel\n"
        "class EvilConfig(PretrainedConfig):\n    model_type = 'evil'\n"
        "class EvilModel(PreTrainedModel):\n    config_class = EvilConfig\n")
    files = {"modeling_evil.py": code, "configuration_evil.py": code}
    auto_map = {"AutoConfig": "configuration_evil.EvilConfig", "AutoModel": "modeling_evil.EvilModel",
                "AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]}
    _clone(root, "acme/remote-bert", files=files, config_json={"auto_map": auto_map})
    _clone(root, "acme/remote-evil", files=files, config_json={"auto_map": auto_map, "model_type": "evil"})
    return marker


def test_remote_code_is_never_run_unless_asked(fs_guard, root, serve, remote_code_repos):
    marker = remote_code_repos
    serve()
    # A known architecture with an auto_map: the built-in class loads, the repo's code does not run.
    assert type(robust_model_download("acme/remote-bert")).__name__ == "BertModel"
    model, tokenizer = load_model_and_tokenizer("acme/remote-bert")
    assert type(model).__name__ == "BertModel" and tokenizer("fever")["input_ids"]
    # An architecture only the repo's code defines: a clear error, the code is not run.
    with pytest.raises(ModelLoadError, match="contains custom code"):
        robust_model_download("acme/remote-evil")
    robust_model_download("acme/remote-evil", model_type="tokenizer")
    assert not marker.exists(), "code from the hub ran without trust_remote_code=True"


def test_remote_code_runs_only_with_an_explicit_trust_remote_code(root, serve, remote_code_repos, tmp_path,
                                                                  loader_env, monkeypatch):
    """Positive control for the test above: the payload is real and runs when the caller asks."""
    import transformers.dynamic_module_utils as dmu

    monkeypatch.setattr(dmu, "HF_MODULES_CACHE", str(tmp_path / "modules"))
    serve()
    with pytest.raises(ModelLoadError):  # the payload's model class is not a working model
        robust_model_download("acme/remote-evil", trust_remote_code=True)
    assert remote_code_repos.exists()


# --------------------------------------------------------------------------- redirects


def test_a_redirect_to_another_host_does_not_carry_the_token(fs_guard, root, tmp_path, serve):
    cdn_root = tmp_path / "cdn-root"
    shutil.copytree(root / BASE, cdn_root / "acme/private")
    cdn = LocalHub(cdn_root).start()
    try:
        _clone(root, "acme/private", {"private": True, "allowed_tokens": [TOKEN],
                                      "redirect_to": f"http://localhost:{cdn.port}"})
        hub = serve()
        model = robust_model_download("acme/private", token=TOKEN)
        assert type(model).__name__ == "BertModel"
        redirected = hub.requests("/resolve/")
        assert redirected and all(r.status == 302 and r.authorization == f"Bearer {TOKEN}" for r in redirected)
        followed = cdn.requests("/resolve/")
        assert len(followed) == len(redirected)
        assert all(r.authorization is None for r in followed), "the token went to another host"
        assert cdn.bytes_sent("/resolve/") == sum((root / BASE / Path(r.path).name).stat().st_size for r in followed)
    finally:
        cdn.stop()


def test_a_redirect_loop_fails_cleanly(fs_guard, root, serve):
    d = _clone(root, "acme/loop", {})
    hub = serve()
    (d / ".hub.json").write_text(json.dumps({"redirect_to": hub.url}))
    started = time.monotonic()
    with pytest.raises(ModelDownloadError) as info:
        prefetch_model("acme/loop", max_retries=2, timeout=10)
    assert time.monotonic() - started < 15
    assert "redirect" in str(info.value).lower()


# --------------------------------------------------------------------------- secrets


def _chain(exc: BaseException) -> list[BaseException]:
    seen = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def _loader_objects_in_traceback(exc: BaseException) -> list[str]:
    """reprs of the loader's own objects that were alive where the error was raised: what an error
    reporter that records frame locals (Sentry, rich tracebacks, pytest --showlocals) would print."""
    from phaita.loader.request.load_request import LoadRequest
    from phaita.loader.transfer.snapshot import FetchContext

    out = []
    for e in _chain(exc):
        tb = e.__traceback__
        while tb is not None:
            for value in tb.tb_frame.f_locals.values():
                if isinstance(value, (LoadRequest, FetchContext)):
                    out.append(repr(value))
            tb = tb.tb_next
    return out


@pytest.mark.parametrize("faults, error", [
    ("reset@30%:path=*model.safetensors", ModelDownloadError),
    ("close@10%:path=*model.safetensors", ModelDownloadError),
    ("corrupt@50%:path=*model.safetensors", ModelDownloadError),
    ("stall@20%:30:path=*model.safetensors", ModelDownloadError),
    ("stall_headers:30:path=*config.json", ModelDownloadError),
    ("429:0.1:path=*config.json", ModelDownloadError),
    ("500:api", ModelDownloadError),
    ("gated", AccessDeniedError),
    ("private", ModelNotFoundError),
])
def test_the_token_is_absent_on_every_fault_path(fs_guard, root, serve, caplog, capsys, monkeypatch, faults, error):
    caplog.set_level(logging.DEBUG)  # every logger, every level: httpx, huggingface_hub, ours
    monkeypatch.setenv("PHAITA_STALL_TIMEOUT", "0.3")
    config = {"gated": True} if faults == "gated" else {"private": True} if faults == "private" else \
        {"private": True, "allowed_tokens": [TOKEN]}
    _clone(root, "acme/secret", config)
    hub = serve()
    if faults not in ("gated", "private"):
        hub.set_faults(parse_faults(faults))
    with pytest.raises(error) as info:
        robust_model_download("acme/secret", max_retries=2, timeout=1.5, token=TOKEN)
    assert any(r.authorization == f"Bearer {TOKEN}" for r in hub.stats), "the token was really sent"
    err = info.value
    captured = capsys.readouterr()
    haystack = [str(err), repr(err), repr(err.last_error), str(vars(err)), caplog.text, captured.out, captured.err]
    haystack += [f"{type(e).__name__}: {e!s} {e!r}" for e in _chain(err)]
    haystack += _loader_objects_in_traceback(err)
    assert _loader_objects_in_traceback(err), "the traceback holds loader objects to check"
    text = "\n".join(haystack)
    assert TOKEN not in text and TOKEN[3:] not in text


def test_the_token_is_absent_from_the_command_line_output(fs_guard, root, serve, monkeypatch):
    from typer.testing import CliRunner

    from phaita.cli.main import app

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    _clone(root, "acme/secret", {"gated": True})
    hub = serve()
    hub.set_faults(parse_faults("503:path=*config.json"))
    runner = CliRunner()
    outputs = []
    for args in (["-v", "models", "pull", "acme/secret", "--max-retries", "2"],
                 ["-v", "models", "pull", BASE, "--max-retries", "2", "--timeout", "5"],
                 ["models", "pull", BASE, "--json", "--max-retries", "2"],
                 ["models", "status"],
                 ["models", "verify"],
                 ["models", "doctor"]):
        result = runner.invoke(app, args)
        outputs.append(result.output + (result.stderr if result.stderr_bytes is not None else ""))
        assert result.exit_code in (0, 1), (args, result.output, result.exception)
    assert any(r.authorization == f"Bearer {TOKEN}" for r in hub.stats)
    text = "\n".join(outputs)
    assert "Failed to download" in text or "FAIL" in text
    assert TOKEN not in text and TOKEN[3:] not in text
