"""One client operation, run by ``benchmarks/run.py`` in a fresh process.

    python benchmarks/_client.py '<json spec>'

Every measurement runs in its own process so that huggingface_hub reads ``HF_ENDPOINT`` and
``HF_HUB_CACHE`` from the environment the parent prepared (it reads them at import), and so that
every client pays the same interpreter start-up. Nothing heavy is imported at the top: the
imports are part of what each client costs.

The last line written to stdout is a JSON object: ``ok``, ``error`` (type and first line),
``call_s`` (seconds inside the client call, imports included) and ``what`` (the snapshot folder
or the loaded model's class).

Operations (``spec["op"]``):

``phaita``          ``robust_model_download(repo)``: fetch if needed, then a loaded model
``phaita_fetch``    ``prefetch_model(repo)``: the fetch phase alone (snapshot folder)
``hub``             ``snapshot_download(repo)`` then ``AutoModel.from_pretrained(folder)``
``hub_fetch``       ``snapshot_download(repo)`` alone
``transformers``    ``AutoModel.from_pretrained(repo)`` alone
``hf_transfer``     ``hf_transfer.download`` of every file of the repo (listed by the tree API), one
                    file at a time (the call holds the GIL), ``spec["streams"]`` range streams each,
                    10 MB chunks, 5 retries per chunk; no hash check (it has none)
``floor``           a minimal client: the weights file alone over raw HTTP/1.1, resumed at once
                    with a Range request after any break, sha256 and fsync like phaita -- what
                    the hub's faults cost a client that adds nothing of its own
``curl_null``       floor: ``curl`` every file of the repo (the tree API's list) to /dev/null, one after another
``curl_disk``       floor: ``curl`` every file to disk, then ``sync`` (the durable floor: no hash)
``curl_cache``      floor: ``curl`` every file to disk, no ``sync`` (the page cache: what a client that never
                    fsyncs, such as ``hf_transfer``, waits for)
``sha256``          floor: the sha256 of ``spec["files"]`` (the hub's copies) on one core, 1 MiB reads
``import_phaita``   import the fetch layer and exit (memory baseline)
``import_hub``      import ``snapshot_download`` and exit (memory baseline)
``make_model``      write a BERT-like model of about ``spec["mb"]`` MB (float32) into ``spec["out"]``
"""

from __future__ import annotations

import json
import sys
import time


def _phaita(spec: dict, fetch_only: bool) -> str:
    kwargs = dict(cache_dir=spec["cache_dir"], timeout=spec.get("timeout", 300), max_retries=spec.get("max_retries", 3))
    if fetch_only:
        from phaita.utils.model_loader import prefetch_model

        if spec.get("local_only"):
            kwargs["local_files_only"] = True  # what allow_offline=True is to robust_model_download
        return prefetch_model(spec["repo"], **kwargs)
    from phaita.utils.model_loader import robust_model_download

    model = robust_model_download(spec["repo"], model_type="auto", allow_offline=spec.get("local_only", False), **kwargs)
    return type(model).__name__


def _hub(spec: dict, fetch_only: bool) -> str:
    from huggingface_hub import snapshot_download

    folder = snapshot_download(spec["repo"], cache_dir=spec["cache_dir"], local_files_only=spec.get("local_only", False))
    if fetch_only:
        return folder
    from transformers import AutoModel

    return type(AutoModel.from_pretrained(folder)).__name__


def _transformers(spec: dict) -> str:
    from transformers import AutoModel

    model = AutoModel.from_pretrained(spec["repo"], cache_dir=spec["cache_dir"],
                                      local_files_only=spec.get("local_only", False))
    return type(model).__name__


def _hf_transfer(spec: dict) -> str:
    import os
    import urllib.request
    from pathlib import Path

    import hf_transfer

    endpoint = os.environ["HF_ENDPOINT"].rstrip("/")
    repo = spec["repo"]
    with urllib.request.urlopen(f"{endpoint}/api/models/{repo}/tree/main?recursive=true", timeout=30) as answer:
        entries = [e for e in json.load(answer) if e["type"] == "file"]
    out = Path(spec["cache_dir"]) / "hf_transfer" / repo
    streams = spec.get("streams", 8)
    for entry in entries:
        dest = out / entry["path"]
        dest.parent.mkdir(parents=True, exist_ok=True)
        hf_transfer.download(f"{endpoint}/{repo}/resolve/main/{entry['path']}", str(dest), max_files=streams,
                             chunk_size=10 * 1024 * 1024, parallel_failures=streams, max_retries=5)
    return f"{len(entries)} files"


def _tree(spec: dict) -> list[dict]:
    import os
    import urllib.request

    endpoint = os.environ["HF_ENDPOINT"].rstrip("/")
    with urllib.request.urlopen(f"{endpoint}/api/models/{spec['repo']}/tree/main?recursive=true", timeout=30) as answer:
        return [e for e in json.load(answer) if e["type"] == "file"]


def _curl(spec: dict, to_disk: bool, sync: bool = True) -> str:
    import os
    import shutil
    import subprocess
    from pathlib import Path

    endpoint = os.environ["HF_ENDPOINT"].rstrip("/")
    out = Path(spec["cache_dir"]) / "curl"
    args = [shutil.which("curl") or "curl", "-sSf"]
    entries = _tree(spec)
    for entry in entries:
        dest = out / entry["path"]
        dest.parent.mkdir(parents=True, exist_ok=True)
        args += [f"{endpoint}/{spec['repo']}/resolve/main/{entry['path']}", "-o", str(dest) if to_disk else os.devnull]
    subprocess.run(args, check=True)
    if to_disk and sync:
        os.sync()
    return f"{len(entries)} files"


def _sha256(spec: dict) -> str:
    import hashlib

    buf = memoryview(bytearray(1 << 20))
    total = 0
    for path in spec["files"]:
        h = hashlib.sha256()
        with open(path, "rb", buffering=0) as fh:
            while n := fh.readinto(buf):
                h.update(buf[:n])
                total += n
    return f"{total} bytes"


def floor(spec: dict) -> str:
    """The least a resuming client can do: GET, on any break reconnect and ask for the rest."""
    import hashlib
    import os
    import socket
    from pathlib import Path
    from urllib.parse import urlsplit

    url = urlsplit(os.environ["HF_ENDPOINT"])
    path = f"/{spec['repo']}/resolve/main/model.safetensors"
    out_path = Path(spec["cache_dir"]) / "model.safetensors"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    digest, offset, size, breaks = hashlib.sha256(), 0, None, 0
    with open(out_path, "wb") as out:
        while size is None or offset < size:
            with socket.create_connection((url.hostname, url.port or 80), timeout=30) as sock:
                sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {url.netloc}\r\nRange: bytes={offset}-\r\n"
                             f"Connection: close\r\n\r\n".encode())
                data = b""
                while b"\r\n\r\n" not in data:
                    more = sock.recv(65536)
                    if not more:
                        raise ConnectionError("no response headers")
                    data += more
                head, body = data.split(b"\r\n\r\n", 1)
                for line in head.decode("latin-1").split("\r\n")[1:]:
                    name, _, value = line.partition(":")
                    if name.lower() == "content-range":
                        size = int(value.rsplit("/", 1)[1])
                try:
                    while True:
                        out.write(body)
                        digest.update(body)
                        offset += len(body)
                        if size is not None and offset >= size:
                            break
                        body = sock.recv(1 << 20)
                        if not body:
                            break
                except OSError:  # a reset: resume
                    pass
            breaks += offset < (size or 0)
        out.flush()
        os.fsync(out.fileno())
    return f"{digest.hexdigest()[:12]}, {breaks} breaks"


def make_model(out: str, mb: float) -> str:
    """A randomly initialised BertModel whose float32 weights take about ``mb`` MB."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    # 12 layers of hidden 512 / intermediate 2048 (3.15 M parameters each) plus the embeddings;
    # smaller targets shrink the layers, larger ones widen the vocabulary.
    if mb >= 100:
        hidden, layers, inter = 512, 12, 2048
    else:
        hidden, layers, inter = 64, 2, 128
    per_layer = 4 * hidden * hidden + 2 * hidden * inter + 9 * hidden + inter
    fixed = layers * per_layer + (512 + 2 + 2) * hidden + hidden * hidden + 3 * hidden
    vocab = max(1000, int((mb * 1e6 / 4 - fixed) / hidden))
    config = BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=8 if hidden >= 512 else 2, intermediate_size=inter)
    BertModel(config).save_pretrained(out)
    return out


def main(argv: list[str]) -> int:
    spec = json.loads(argv[1])
    op = spec["op"]
    start = time.perf_counter()
    result: dict = {"ok": False, "error": None, "what": None}
    try:
        if op == "phaita":
            result["what"] = _phaita(spec, fetch_only=False)
        elif op == "phaita_fetch":
            result["what"] = _phaita(spec, fetch_only=True)
        elif op == "hub":
            result["what"] = _hub(spec, fetch_only=False)
        elif op == "hub_fetch":
            result["what"] = _hub(spec, fetch_only=True)
        elif op == "transformers":
            result["what"] = _transformers(spec)
        elif op == "hf_transfer":
            result["what"] = _hf_transfer(spec)
        elif op == "floor":
            result["what"] = floor(spec)
        elif op in ("curl_null", "curl_disk", "curl_cache"):
            result["what"] = _curl(spec, to_disk=op != "curl_null", sync=op == "curl_disk")
        elif op == "sha256":
            result["what"] = _sha256(spec)
        elif op == "import_phaita":
            import phaita.utils.model_loader  # noqa: F401
        elif op == "import_hub":
            from huggingface_hub import snapshot_download  # noqa: F401
        elif op == "make_model":
            result["what"] = make_model(spec["out"], spec["mb"])
        else:
            raise ValueError(f"unknown op {op!r}")
        result["ok"] = True
    except BaseException as exc:  # report every failure as data; the parent decides what it means
        first = (str(exc).strip().splitlines() or [""])[0]
        result["error"] = f"{type(exc).__name__}: {first[:300]}"
    result["call_s"] = time.perf_counter() - start
    sys.stdout.write("\n" + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
