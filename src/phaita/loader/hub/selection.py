"""Which files of a repository a load needs.

Only files at the repository's root (or in ``subfolder``) are fetched: that is all
``from_pretrained`` reads. Weights come in one format: safetensors when there are any (only the
shards an index names, so a repo that also carries ``consolidated.safetensors`` is not fetched
twice), a GGUF file only when ``gguf_file`` asks for it, and pickled ``.bin`` weights only when
there are no safetensors *and* the caller allowed pickles (unpickling can run code).
TensorFlow, Flax, ONNX, OpenVINO and other formats are never fetched. A ``model.sig`` (an OpenSSF
model signature) is not one of the snapshot's files: the fetch puts it beside the snapshot.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Callable, Iterable

from ..errors import UnsupportedWeights
from .listing import RemoteFile

WEIGHT_SUFFIXES = frozenset({
    ".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx", ".onnx_data",
    ".ot", ".tflite", ".gguf", ".ggml", ".pb", ".mlmodel", ".npz", ".pkl", ".pickle", ".joblib",
    ".keras", ".nemo", ".engine", ".xml",
})
SAFETENSORS_INDEX = "model.safetensors.index.json"
# An OpenSSF model-signing bundle at the repository's root: fetched, but kept outside the snapshot
# (``RepoCache.signature_path``), never one of the files it signs.
SIGNATURE_FILE = "model.sig"
PICKLE_INDEX = "pytorch_model.bin.index.json"


@dataclass(frozen=True)
class Needs:
    """What one load needs from a repository."""

    weights: bool = True
    tokenizer: bool = True
    gguf_file: str | None = None
    subfolder: str | None = None
    allow_pickle: bool = False

    def union(self, other: "Needs") -> "Needs":
        return Needs(self.weights or other.weights, self.tokenizer or other.tokenizer,
                     self.gguf_file or other.gguf_file, self.subfolder or other.subfolder,
                     self.allow_pickle or other.allow_pickle)


def _in_scope(path: str, subfolder: str | None) -> str | None:
    """The path relative to the load's folder, or None when it is elsewhere in the repo."""
    prefix = (subfolder.strip("/") + "/") if subfolder else ""
    if not path.startswith(prefix):
        return None
    rest = path[len(prefix):]
    return None if "/" in rest else rest


def is_weight(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in WEIGHT_SUFFIXES


def select_files(
    files: Iterable[RemoteFile],
    needs: Needs,
    read_index: Callable[[RemoteFile], bytes] | None = None,
) -> list[RemoteFile]:
    """The files to fetch, in fetch order (small metadata first, weights last).

    ``read_index`` fetches a small index file when the choice of shards depends on it.
    """
    scoped = {name: f for f in files if (name := _in_scope(f.path, needs.subfolder)) is not None}
    chosen = [f for name, f in scoped.items() if not is_weight(name) and name != SIGNATURE_FILE]
    if needs.gguf_file:
        gguf = scoped.get(needs.gguf_file)
        if gguf is None:
            available = sorted(n for n in scoped if n.endswith(".gguf")) or ["none"]
            raise UnsupportedWeights(
                f"gguf_file {needs.gguf_file!r} is not in the repository (GGUF files there: {', '.join(available)})")
        return chosen + [gguf]
    if not needs.weights:
        return chosen
    chosen += _weights(scoped, needs, read_index)
    return chosen


def _weights(scoped: dict[str, RemoteFile], needs: Needs, read_index: Callable[[RemoteFile], bytes] | None) -> list[RemoteFile]:
    safetensors = {n: f for n, f in scoped.items() if n.endswith(".safetensors")}
    if safetensors:
        return _indexed(scoped, safetensors, SAFETENSORS_INDEX, "model.safetensors", read_index)
    pickles = {n: f for n, f in scoped.items() if n.endswith(".bin")}
    if pickles:
        if not needs.allow_pickle:
            raise UnsupportedWeights(
                "the repository has only pickled PyTorch weights (.bin), no safetensors. Unpickling can run "
                "arbitrary code: pass allow_pickle=True only if you trust this repository")
        return _indexed(scoped, pickles, PICKLE_INDEX, "pytorch_model.bin", read_index)
    present = sorted(n for n in scoped if is_weight(n)) or ["no weight files"]
    raise UnsupportedWeights(
        "the repository has no weights this loader can use (safetensors, or .bin with allow_pickle=True; "
        f"GGUF with gguf_file=...). Found: {', '.join(present)}")


def _indexed(scoped: dict[str, RemoteFile], weights: dict[str, RemoteFile], index_name: str,
             single_name: str, read_index: Callable[[RemoteFile], bytes] | None) -> list[RemoteFile]:
    index = scoped.get(index_name)
    if index is not None and read_index is not None:
        try:
            shards = set(json.loads(read_index(index))["weight_map"].values())
        except (ValueError, KeyError, TypeError, AttributeError):
            shards = set()
        picked = [weights[n] for n in sorted(shards) if n in weights]
        if picked and len(picked) == len(shards):
            return picked
    if single_name in weights:
        return [weights[single_name]]
    return [weights[n] for n in sorted(weights)]
