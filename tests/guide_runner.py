"""Runs docs/MODEL_LOADER_GUIDE.md (for ``tests/test_guide.py``): every code block against the local hub,
every sample output compared with what the code prints, so the guide cannot drift from the code.

The fence info string of a block (invisible once the Markdown is rendered) tells this runner what
to do with it::

    ```python                    run in this process, in a fresh namespace, with a fresh HF_HOME
    ```bash                      run with ``bash -e -o pipefail`` when it names a ``phaita`` or ``hf`` command
    ```python skip="reason"      not run: reported as a skipped test with that reason
    ```python hub="503x2"        the local hub injects these faults (the ``phaita hub serve --faults`` syntax)
    ```python hub="down"         HF_ENDPOINT points at a port where nothing listens
    ```python lacks="tree,etags" the local hub leaves out these Hub features, as a partial mirror does
    ```python tls="acme-hospital" the local hub serves HTTPS with a certificate of that organisation's CA
                                 (through an intermediate), whose root is written to acme-hospital-ca.pem
    ```bash proxy="user:password" a forward proxy (proxy.py) that requires these credentials; its address
                                 (127.0.0.1:port) is in the variable PROXY
    ```bash mirror="corrupt@10%" a second local hub (a site mirror) with these faults; its URL is in the
                                 variable MIRROR, and outputs show its port as MIRROR
    ```python continues          same HF_HOME (and, for Python, the same namespace) as the block before
    ```bash rc=1                 the exit status the block must end with (default 0)
    ```text output               what the code block above prints (stdout and stderr, in order)

Every other fenced block (a cache layout, a table of values) is prose, not code. A shell block that
names neither ``phaita`` nor ``hf`` is reported as skipped, with that reason.

Outputs are compared after normalising only what must vary: the local hub's port (shown as
``127.0.0.1:PORT``), the temporary HF_HOME (shown as ``/home/user/.cache/huggingface``) and working
folder (``/home/user/work``), hex
hashes of 12 characters or more, millisecond timings and the (random) waits of retry lines. In
the guide's text ``...`` matches any text within a line, and a line holding only ``...`` any
number of lines. ``PHAITA_GUIDE_UPDATE=1`` writes the actual output into each block that differs (for the
author: review the diff before committing).
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from transformers.utils import logging as transformers_logging

from phaita.testing import LocalHub
from phaita.testing.env import point_huggingface_hub_at

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "MODEL_LOADER_GUIDE.md"
README = ROOT / "README.md"
SHOWN_HOST = "127.0.0.1:PORT"
SHOWN_WORK = "/home/user/work"
SHOWN_HOME = "/home/user/.cache/huggingface"
SHELL_LANGS = {"bash", "sh", "shell", "console"}
# Names the guide's examples use, published on the test's hub as tiny generated models (see the
# guide's "About the examples"). dmis-lab/biobert-base-cased-v1.2 is deliberately absent.
ALIASES = {"google-bert/bert-base-uncased": "phaita-test/tiny-bert"}
GATED = ("meta-llama/Llama-3.2-1B", "phaita-test/tiny-gpt2")
HUGE = "acme/huge-model"  # announces a 150 GB weights file: the disk-full example
HALF = "acme/half-mirrored"  # lists a weights file it does not serve, with no size: the bad-listing example
# Variables the test itself sets for every block (the guide's "About the examples" names them).
CLEARED_PREFIXES = ("HF_", "PHAITA_", "TRANSFORMERS_", "HUGGINGFACE_")
CLEARED = {"SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "HTTPS_PROXY", "HTTP_PROXY",
           "ALL_PROXY", "NO_PROXY"}

# --------------------------------------------------------------------------- parsing the guide


@dataclass
class Block:
    lang: str
    attrs: dict[str, str]
    code: str
    line: int  # 1-based line of the opening fence
    output: "Block | None" = None

    @property
    def shell(self) -> bool:
        return self.lang in SHELL_LANGS

    def names_a_command(self) -> bool:
        for raw in self.code.splitlines():
            line = raw.split("#", 1)[0]
            if re.search(r"(^|[\s;&|(=])(phaita|hf)(\s|$)", line):
                return True
        return False


def parse_blocks(text: str) -> list[Block]:
    """Every fenced block of the guide, output blocks attached to the code block above them."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^(`{3,})(.*)$", lines[i])
        if not m:
            i += 1
            continue
        fence, info = m.group(1), m.group(2).strip()
        start = i
        i += 1
        body = []
        while i < len(lines) and not lines[i].startswith(fence):
            body.append(lines[i])
            i += 1
        if i >= len(lines):
            raise AssertionError(f"{GUIDE.name}:{start + 1}: unclosed code fence")
        i += 1
        words = shlex.split(info) if info else []
        lang = words[0] if words else ""
        attrs = {}
        for word in words[1:]:
            key, _, value = word.partition("=")
            attrs[key] = value
        block = Block(lang, attrs, "".join(line + "\n" for line in body), start + 1)
        if "output" in attrs:
            code = [b for b in blocks if b.lang == "python" or b.shell]
            if not code or code[-1].output is not None:
                raise AssertionError(f"{GUIDE.name}:{block.line}: an output block with no code block above it")
            code[-1].output = block
        blocks.append(block)
    return blocks


@dataclass
class Chain:
    """A block and the blocks that continue it: one test."""

    blocks: list[Block] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"L{self.blocks[0].line}-{self.blocks[0].lang}"


def chains(blocks: list[Block]) -> list[Chain]:
    out: list[Chain] = []
    for b in blocks:
        if not (b.lang == "python" or b.shell):
            continue
        if "continues" in b.attrs:
            assert out, f"{GUIDE.name}:{b.line}: 'continues' with no block before it"
            out[-1].blocks.append(b)
        else:
            out.append(Chain([b]))
    return out


def skip_reason(chain: Chain) -> str | None:
    first = chain.blocks[0]
    if "skip" in first.attrs:
        return first.attrs["skip"] or "marked skip in the guide"
    if first.shell and not first.names_a_command():
        return "a shell block that runs neither phaita nor hf"
    return None


GUIDE_TEXT = GUIDE.read_text() if GUIDE.exists() else ""
CHAINS = chains(parse_blocks(GUIDE_TEXT))


# --------------------------------------------------------------------------- comparing outputs


def shown(text: str, home: Path, labels: dict[int, str]) -> str:
    """Actual output as the guide shows it: the local hubs' ports and the temp HF_HOME replaced."""
    for port, label in labels.items():
        text = re.sub(rf"127\.0\.0\.1:{port}\b", f"127.0.0.1:{label}", text)
    text = re.sub(r"127\.0\.0\.1:\d+", SHOWN_HOST, text)
    text = text.replace(str(home), SHOWN_HOME)
    text = text.replace(str(home.parent / "work"), SHOWN_WORK)
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)  # terminal colours (hf prints them to a pipe too)
    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return "\n".join(lines)


def _varying(text: str) -> str:
    text = re.sub(r"\b[0-9a-f]{12,64}\b", "<hex>", text)
    text = re.sub(r"retrying in \d+\.\d s", "retrying in <n> s", text)  # waits are drawn at random (jitter)
    return re.sub(r"\b\d+ ms\b", "<n> ms", text)


def matches(expected: str, actual: str) -> bool:
    """``...`` matches any text within a line; a line holding only ``...`` matches any number of lines."""
    expected, actual = _varying(expected.strip("\n")), _varying(actual)
    lines = []
    for line in expected.splitlines():
        line = line.rstrip()
        if line == "...":
            lines.append("(?:[^\n]*\n)*?")
        else:
            lines.append("[^\n]*?".join(re.escape(part) for part in line.split("...")) + "\n")
    return re.fullmatch("".join(lines), actual + "\n") is not None


def update_guide(code_block: Block, old: str, new: str) -> None:
    """PHAITA_GUIDE_UPDATE=1: write ``new`` into the output block after ``code_block``."""
    text = GUIDE.read_text()
    starts = [m.start() for m in re.finditer(re.escape(code_block.code), text)]
    # the occurrence nearest the block's line (earlier updates may have moved it a little)
    at = min(starts, key=lambda i: abs(text.count("\n", 0, i) - code_block.line))
    fence = text.index("output\n", at) + len("output\n")
    end = text.index("```", fence)
    assert text[fence:end] == old, "the guide changed under the update"
    GUIDE.write_text(text[:fence] + new + "\n" + text[end:])


def check_output(block: Block, actual: str) -> None:
    if block.output is None:
        return
    expected = block.output.code
    if matches(expected, actual):
        return
    if os.environ.get("PHAITA_GUIDE_UPDATE") == "1" and "..." not in expected:
        update_guide(block, expected, actual)
        return
    raise AssertionError(f"{GUIDE.name}:{block.output.line}: the output differs from what the code prints.\n"
                         f"--- guide\n{expected}\n--- actual (normalised)\n{actual}\n")


# --------------------------------------------------------------------------- the hub and the runs


# --------------------------------------------------------------------------- the hub and the runs


def build_guide_root(hub_root: Path, root: Path) -> Path:
    """The session's tiny models, plus the names the guide uses (links: nothing is generated again)."""
    for org in hub_root.iterdir():
        for repo in org.iterdir():
            (root / org.name).mkdir(exist_ok=True)
            (root / org.name / repo.name).symlink_to(repo, target_is_directory=True)
    for alias, source in ALIASES.items():
        (root / alias).parent.mkdir(parents=True, exist_ok=True)
        (root / alias).symlink_to(hub_root / source, target_is_directory=True)
    write_long_gpt2(hub_root / "phaita-test/tiny-gpt2", root / "openai-community/gpt2")
    gated, source = GATED
    shutil.copytree(hub_root / source, root / gated)
    (root / gated / ".hub.json").write_text(json.dumps({"gated": True}))
    huge = root / HUGE
    huge.mkdir(parents=True)
    (huge / "config.json").write_text('{"model_type": "bert"}')
    (huge / ".hub.json").write_text(json.dumps({"extra_siblings": [{
        "rfilename": "model.safetensors", "size": 150 * 10**9, "blobId": "1" * 40,
        "lfs": {"sha256": "2" * 64, "size": 150 * 10**9, "pointerSize": 134}}]}))
    half = root / HALF
    half.mkdir(parents=True)
    (half / "config.json").write_text('{"model_type": "bert"}')
    (half / ".hub.json").write_text(json.dumps({"extra_siblings": [{"rfilename": "model.safetensors"}]}))
    return root


def write_long_gpt2(source: Path, dest: Path) -> None:
    """The tiny GPT-2 with GPT-2's 1024 positions (the tiny one has 128; the realism scorer reads 512)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    shutil.copytree(source, dest)
    config = GPT2Config.from_pretrained(dest)
    config.n_positions = 1024
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(dest)


def dead_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class Runner:
    """Runs the blocks of one chain: one HF_HOME, one hub, one Python namespace."""

    def __init__(self, hub: LocalHub, tmp: Path) -> None:
        self.hub, self.tmp = hub, tmp
        self.home = tmp / "hf-home"
        self.home.mkdir()
        self.work = tmp / "work"
        self.namespace: dict = {"__name__": "__guide__"}
        self.extra_env: dict[str, str] = {}
        self.port_labels: dict[int, str] = {}

    def endpoint(self, block: Block) -> str:
        spec = block.attrs.get("hub")
        if spec == "down":
            return dead_endpoint()
        self.hub.set_faults(spec or None)
        return self.hub.url

    def env(self, endpoint: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(CLEARED_PREFIXES) and k.upper() not in CLEARED}
        env.update({"HF_HOME": str(self.home), "HF_ENDPOINT": endpoint, "HF_HUB_DISABLE_XET": "1",
                    "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
                    "HF_HUB_DISABLE_UPDATE_CHECK": "1",
                    "PATH": os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""), **self.extra_env})
        return env

    def run(self, block: Block) -> str:
        endpoint = self.endpoint(block)
        env = self.env(endpoint)
        text = self.run_shell(block, env) if block.shell else self.run_python(block, env, endpoint)
        return shown(text, self.home, self.port_labels)

    def run_shell(self, block: Block, env: dict[str, str]) -> str:
        # Its own process group: whatever the block left running (a server started with &) is stopped.
        proc = subprocess.Popen(["bash", "-e", "-o", "pipefail", "-c", block.code], cwd=self.work, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            output, _ = proc.communicate(timeout=300)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        expected = int(block.attrs.get("rc", "0"))
        assert proc.returncode == expected, (f"{GUIDE.name}:{block.line}: exit status {proc.returncode}, "
                                             f"the guide expects {expected}\n{output}")
        return output

    def run_python(self, block: Block, env: dict[str, str], endpoint: str) -> str:
        saved_env = dict(os.environ)
        os.environ.clear()
        os.environ.update(env)
        # huggingface_hub read its environment when it was first imported: aim it here too.
        with pytest.MonkeyPatch.context() as mp:
            point_huggingface_hub_at(mp, endpoint, home=str(self.home), cache=str(self.home / "hub"))
            root = logging.getLogger()
            saved_handlers, saved_level = root.handlers[:], root.level
            loggers = {name: logging.getLogger(name) for name in ("phaita", "phaita.model_loader")}
            saved_levels = {name: lg.level for name, lg in loggers.items()}
            root.handlers = []  # as in a fresh interpreter: WARNINGs reach stderr through logging.lastResort
            for lg in loggers.values():
                lg.setLevel(logging.NOTSET)
            bars = transformers_logging.is_progress_bar_enabled()
            transformers_logging.disable_progress_bar()  # HF_HUB_DISABLE_PROGRESS_BARS, read at import
            out = io.StringIO()
            cwd = os.getcwd()
            os.chdir(self.work)
            try:
                with redirect_stdout(out), redirect_stderr(out):
                    exec(compile(block.code, f"{GUIDE}:{block.line + 1}", "exec"), self.namespace)
            finally:
                os.chdir(cwd)
                if bars:
                    transformers_logging.enable_progress_bar()
                root.handlers = saved_handlers
                root.setLevel(saved_level)
                for name, lg in loggers.items():
                    lg.setLevel(saved_levels[name])
                os.environ.clear()
                os.environ.update(saved_env)
        return out.getvalue()


def organisation_ca(name: str, work: Path):
    """A server context with a certificate of ``name``'s CA (root and intermediate); the root's PEM in ``work``."""
    import ssl

    trustme = pytest.importorskip("trustme")
    org = " ".join(word.capitalize() for word in name.split("-"))
    root = trustme.CA(organization_name=org, organization_unit_name="Network Security")
    root.cert_pem.write_to_path(str(work / f"{name}-ca.pem"))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    intermediate = trustme.CA(parent_cert=root, organization_name=org, organization_unit_name="TLS Inspection")
    intermediate.issue_cert("127.0.0.1", "localhost", organization_name=org,
                            organization_unit_name="Web Proxy").configure_cert(ctx)
    return ctx


def run_chain(chain: Chain, guide_root: Path, tmp_path: Path) -> None:
    """Run a chain's blocks on their own hub (and mirror, proxy), comparing each block's output."""
    from huggingface_hub.utils import close_session

    first = chain.blocks[0].attrs
    lacks = [f for f in first.get("lacks", "").split(",") if f]
    (tmp_path / "work").mkdir()
    tls = organisation_ca(first["tls"], tmp_path / "work") if "tls" in first else None
    proxy = mirror = None
    if "mirror" in first:
        mirror = LocalHub(guide_root, faults=first["mirror"] or None).start()
    if "proxy" in first:
        from test_tls_and_proxy import ForwardProxy  # proxy.py in its own process (the TLS tests' helper)

        proxy = ForwardProxy(tmp_path, first["proxy"])
    try:
        with LocalHub(guide_root, lacks=lacks, tls=tls) as hub:
            runner = Runner(hub, tmp_path)
            if proxy is not None:
                runner.extra_env["PROXY"] = f"127.0.0.1:{proxy.port}"
            if mirror is not None:
                runner.extra_env["MIRROR"] = mirror.url
                runner.port_labels[mirror.port] = "MIRROR"
            for block in chain.blocks:
                check_output(block, runner.run(block))
    finally:
        close_session()  # the next example's client is built from its own environment
        if proxy is not None:
            proxy.stop()
        if mirror is not None:
            mirror.stop()
