"""CNCF ModelPack manifests: built from a snapshot, and read back (also when another tool wrote them).

Built (:func:`build`): one **raw** layer per file, sorted by path, media type
``application/vnd.cncf.model.<kind>.v1.raw`` (kind by file type: ``weight``, ``weight.config``, ``doc``,
``code``, ``dataset``), the path in ``org.cncf.model.filepath``, file metadata with a fixed mode, uid,
gid and mtime (so the same snapshot always gives the same manifest digest), and two phaita annotations
that let a pull name the cache blobs exactly as the Hub does: ``dev.phaita.file.git-oid`` (the file's
git blob id) and ``dev.phaita.file.lfs`` (an LFS file, named by its sha256). A raw layer's digest is the
file's sha256: the Hub's LFS oid and the lock file's hash. The manifest carries the repo id, the commit
and the revision (``org.opencontainers.image.source``/``.revision``, ``dev.phaita.huggingface.*``).

Read (:func:`parse`): recognised by ``artifactType`` or the config media type (some tools set only one);
raw layers and ``tar``/``tar+gzip`` layers (one or many files each); any other artifact is refused.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Iterable

from ..errors import RegistryError
from ..hashing import GIT_OID_RE
from ..hub.listing import check_relative_path
from ..hub.selection import is_weight
from . import advice

MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
ARTIFACT_TYPE = "application/vnd.cncf.model.manifest.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.cncf.model.config.v1+json"
EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
FILEPATH = "org.cncf.model.filepath"
FILE_METADATA = "org.cncf.model.file.metadata+json"
UNTESTED = "org.cncf.model.file.mediatype.untested"
TITLE = "org.opencontainers.image.title"
GIT_OID = "dev.phaita.file.git-oid"
LFS = "dev.phaita.file.lfs"
REPO_ID = "dev.phaita.huggingface.repo-id"
REVISION = "dev.phaita.huggingface.revision"
COMMIT = "org.opencontainers.image.revision"
SOURCE = "org.opencontainers.image.source"
LFS_THRESHOLD = 10 << 20  # the Hub's rule for files no .gitattributes names: larger ones go to LFS
_LAYER_RE = re.compile(r"^application/vnd\.cncf\.model\.(weight|weight\.config|doc|code|dataset)\.v1\.(raw|tar|tar\+gzip)$")
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_DOC = {".md", ".rst", ".pdf", ".html"}
_CODE = {".py", ".sh", ".ipynb", ".js", ".cc", ".cpp", ".c", ".h", ".cu"}
_DATA = {".csv", ".parquet", ".jsonl", ".arrow", ".tsv"}
_DOC_NAMES = {"license", "licence", "notice", "readme", "copying"}


def kind_of(path: str) -> str:
    """The ModelPack layer kind of a file, by its type."""
    p = PurePosixPath(path)
    suffix = p.suffix.lower()
    if is_weight(path) and suffix not in (".xml",):
        return "weight"
    if suffix in _DOC or p.stem.lower() in _DOC_NAMES or p.name.lower() in _DOC_NAMES:
        return "doc"
    if suffix in _CODE:
        return "code"
    if suffix in _DATA:
        return "dataset"
    return "weight.config"  # configs, tokenizers, vocabularies, indexes


def is_lfs(path: str, size: int) -> bool:
    """The Hub's default: weights and files of 10 MiB and more are LFS files."""
    return is_weight(path) or size >= LFS_THRESHOLD


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class SnapshotFile:
    """One file to push: its path, size, sha256, git blob id, and whether the Hub keeps it in LFS."""

    path: str
    size: int
    sha256: str
    git_oid: str
    lfs: bool


@dataclass(frozen=True)
class Built:
    manifest: bytes
    digest: str
    config: bytes
    config_digest: str


def build(files: Iterable[SnapshotFile], *, repo_id: str, commit: str, revision: str | None,
          source: str = "https://huggingface.co") -> Built:
    """The ModelPack config and manifest of a snapshot (byte-identical for the same files)."""
    layers = []
    ordered = sorted(files, key=lambda f: f.path)
    for f in ordered:
        metadata = {"name": f.path, "mode": 0o644, "uid": 0, "gid": 0, "size": f.size,
                    "mtime": "1970-01-01T00:00:00Z", "typeflag": 48}
        layers.append({"mediaType": f"application/vnd.cncf.model.{kind_of(f.path)}.v1.raw",
                       "digest": f"sha256:{f.sha256}", "size": f.size,
                       "annotations": {FILEPATH: f.path, FILE_METADATA: json.dumps(metadata, sort_keys=True,
                                                                                   separators=(",", ":")),
                                       UNTESTED: "true", TITLE: f.path, GIT_OID: f.git_oid,
                                       LFS: "true" if f.lfs else "false"}})
    formats = sorted({PurePosixPath(f.path).suffix.lstrip(".") for f in ordered if kind_of(f.path) == "weight"})
    config = _canonical({
        "descriptor": {"name": repo_id, "revision": commit, "sourceURL": f"{source}/{repo_id}"},
        "config": {"format": formats[0] if len(formats) == 1 else ",".join(formats)},
        "modelfs": {"type": "layers", "diffIds": [l["digest"] for l in layers]},
    })
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    annotations = {REPO_ID: repo_id, COMMIT: commit, SOURCE: f"{source}/{repo_id}"}
    if revision:
        annotations[REVISION] = revision
    manifest = _canonical({
        "schemaVersion": 2, "mediaType": MANIFEST_MEDIA_TYPE, "artifactType": ARTIFACT_TYPE,
        "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": config_digest, "size": len(config)},
        "layers": layers, "annotations": annotations,
    })
    return Built(manifest, "sha256:" + hashlib.sha256(manifest).hexdigest(), config, config_digest)


@dataclass(frozen=True)
class Layer:
    """One layer of a model: a raw file, or a tar of files (``path``: the file, or the folder it unpacks in)."""

    digest: str
    size: int
    path: str
    kind: str
    fmt: str  # raw | tar | tar+gzip
    git_oid: str | None = None
    lfs: bool | None = None  # None: not said (another tool): the Hub's default decides

    @property
    def sha256(self) -> str:
        return self.digest.split(":", 1)[1]


@dataclass(frozen=True)
class ModelManifest:
    digest: str
    layers: tuple[Layer, ...]
    annotations: dict[str, str] = field(default_factory=dict)
    config_digest: str | None = None

    @property
    def repo_id(self) -> str | None:
        return self.annotations.get(REPO_ID)

    @property
    def commit(self) -> str | None:
        value = self.annotations.get(COMMIT, "")
        return value if GIT_OID_RE.match(value) else None

    @property
    def revision(self) -> str | None:
        return self.annotations.get(REVISION)


def _refuse(ref: str, what: str) -> RegistryError:
    return RegistryError(f"{ref} is not a model: {what}", kind="unsupported", advice=advice.not_a_model(ref, what))


def parse(body: bytes, digest: str, ref: str, max_size: int) -> ModelManifest:
    """A ModelPack manifest, checked; a RegistryError for anything else (see the module's text)."""
    try:
        data = json.loads(body)
    except ValueError:
        raise _refuse(ref, "the manifest is not JSON") from None
    if not isinstance(data, dict):
        raise _refuse(ref, "the manifest is not a JSON object")
    media = data.get("mediaType")
    if media == INDEX_MEDIA_TYPE or "manifests" in data:
        raise _refuse(ref, "it is an image index (several manifests), not a model manifest")
    config = data.get("config") if isinstance(data.get("config"), dict) else {}
    if data.get("artifactType") != ARTIFACT_TYPE and config.get("mediaType") != CONFIG_MEDIA_TYPE:
        shown = data.get("artifactType") or config.get("mediaType") or media
        raise _refuse(ref, f"its type is {str(shown)[:100]!r}, not a CNCF ModelPack model ({ARTIFACT_TYPE})")
    raw_layers = data.get("layers")
    if not isinstance(raw_layers, list) or not raw_layers:
        raise _refuse(ref, "the manifest lists no layers")
    layers, seen = [], set()
    for entry in raw_layers:
        layer = _layer(entry, ref, max_size)
        if layer.fmt == "raw" and layer.path in seen:
            raise RegistryError(f"{ref}: the manifest names {layer.path!r} twice", kind="unsafe")
        seen.add(layer.path)
        layers.append(layer)
    annotations = data.get("annotations") if isinstance(data.get("annotations"), dict) else {}
    return ModelManifest(digest, tuple(layers), {str(k): str(v) for k, v in annotations.items()},
                         config.get("digest") if isinstance(config.get("digest"), str) else None)


def _layer(entry: Any, ref: str, max_size: int) -> Layer:
    if not isinstance(entry, dict):
        raise RegistryError(f"{ref}: a layer of the manifest is not an object", kind="bad_listing")
    media, digest, size = entry.get("mediaType"), entry.get("digest"), entry.get("size")
    notes = entry.get("annotations") if isinstance(entry.get("annotations"), dict) else {}
    if not isinstance(digest, str) or not _DIGEST_RE.match(digest):
        raise RegistryError(f"{ref}: a layer's digest {str(digest)[:80]!r} is not sha256:<64 hex>", kind="bad_listing")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= max_size:
        raise RegistryError(f"{ref}: layer {digest[:19]} has an invalid size {size!r}", kind="bad_listing")
    match = _LAYER_RE.match(media) if isinstance(media, str) else None
    if match is None:
        raise _refuse(ref, f"layer {digest[:19]} has media type {str(media)[:100]!r}, not a ModelPack layer")
    path = notes.get(FILEPATH) or notes.get(TITLE)
    try:
        path = check_relative_path(path)
    except Exception as exc:
        raise RegistryError(f"{ref}: layer {digest[:19]}: {exc}", kind="unsafe") from None
    oid = notes.get(GIT_OID)
    lfs = notes.get(LFS)
    return Layer(digest, size, path.rstrip("/"), match.group(1), match.group(2),
                 oid if isinstance(oid, str) and GIT_OID_RE.match(oid) else None,
                 None if lfs not in ("true", "false") else lfs == "true")
