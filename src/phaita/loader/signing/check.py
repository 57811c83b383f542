"""A snapshot against its signature: the signed file list must be the snapshot's, digest for digest.

The digests come from the cache's content-addressed blobs, not from re-reading them: an LFS blob is
named by its sha256 and was verified against it when the loader wrote it, so the name *is* the
digest the signature lists. Small non-LFS files (named by their git blob id) are hashed; they are
small. The result is recorded in ``signatures/<commit>/verified.json``, keyed by the signature's
bytes and every file's identity (inode, size, mtime), one entry per trust policy (its digest): a warm load reads
that record and a few ``stat`` calls, never the library (whose import alone costs ~0.6 s). A file
whose identity changed since the record (written in place) is re-hashed, not trusted by name.

Rules, with or without a trust policy:

* every file in ``snapshots/<commit>/`` must be in the signed list with the same sha256, except git
  metadata (``.gitattributes``, ``.gitignore``, ``.git/``, ``.github/``), which model-signing leaves
  out by default;
* a signed file not in the snapshot is refused, unless the hub's listing at that commit has it and
  this load did not fetch it (another weight format, a file in a subfolder);
* ``model.sig`` inside the snapshot is refused: a signature belongs at ``signatures/<commit>/``;
* a signature whose subject names another commit (``org/name@<commit>``, or a 40-hex folder name as
  ``model_signing sign`` writes for a snapshot folder) is refused.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import hashing
from ..cache.layout import RepoCache, atomic_write
from ..hub.selection import SIGNATURE_FILE
from .bundle import Refusal, Signed, sha256_bytes, verify
from .policy import TrustPolicy

SIGNATURE_NAME = SIGNATURE_FILE
GIT_PATHS = (".gitattributes", ".gitignore", ".git/", ".github/")
_COMMIT = re.compile(r"(?:^|@)([0-9a-f]{40})$")
RECORD_VERSION = 1


@dataclass
class Verdict:
    """One commit's signature, checked."""

    repo_id: str
    commit: str
    signature: Path
    signed: bool = False
    signer: str | None = None
    trusted: bool = False  # verified against a trust policy
    method: str | None = None
    refusal: Refusal | None = None  # the first problem found (None: everything matches)
    not_fetched: list[str] = field(default_factory=list)  # signed, in the hub's listing, not needed by the load
    from_record: bool = False
    files: int = 0
    signature_sha256: str = ""  # of the signature's bytes ("" when there is none)

    @property
    def ok(self) -> bool:
        return self.signed and self.refusal is None

    def to_dict(self) -> dict[str, Any]:
        return {"signed": self.signed, "signer": self.signer, "trusted": self.trusted, "method": self.method,
                "ok": self.ok, "problem": self.refusal.detail if self.refusal else None,
                "problem_kind": self.refusal.kind if self.refusal else None, "files": self.files,
                "not_fetched": self.not_fetched, "signature": str(self.signature) if self.signed else None}


def is_git_path(name: str) -> bool:
    return any(name == p or (p.endswith("/") and name.startswith(p)) for p in GIT_PATHS)


def _identity(path: Path) -> list[int] | None:
    try:
        st = path.stat()  # follows the snapshot's symlink to the blob
    except OSError:
        return None
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def snapshot_files(repo: RepoCache, commit: str, known: dict[str, list[Any]] | None = None,
                   rehash: bool = False) -> dict[str, list[Any]]:
    """``{path: [sha256, inode, size, mtime_ns]}`` for every file of the snapshot (``sha256`` None: dangling).

    ``known``: a previous record; a file with the same identity keeps its recorded digest. ``rehash``:
    read every byte (``phaita models verify --signatures``).
    """
    blobs = os.path.realpath(repo.blobs_dir)
    out: dict[str, list[Any]] = {}
    for name, entry in repo.linked_files(commit).items():
        ident = _identity(entry)
        if ident is None:
            out[name] = [None, 0, 0, 0]
            continue
        prev = (known or {}).get(name)
        if not rehash and prev is not None and list(prev[1:]) == ident and prev[0]:
            out[name] = [prev[0], *ident]
            continue
        target = os.path.realpath(entry)
        blob_name = os.path.basename(target)
        trusted_name = (os.path.dirname(target) == blobs and hashing.SHA256_RE.match(blob_name)
                        and prev is None and not rehash)
        digest = blob_name if trusted_name else hashing.hash_file(Path(target), hashing.SHA256, ident[1])
        out[name] = [digest, *ident]
    return out


def compare(signed: Signed, files: dict[str, list[Any]], commit: str, listed: set[str]) -> tuple[Refusal | None, list[str]]:
    """The first problem of the snapshot against the signed list (None: it matches), and the not-fetched files."""
    who = signed.signer
    match = _COMMIT.search(signed.subject_name or "")
    if match and match.group(1) != commit:
        return Refusal("other-commit", f"the signature is over commit {match.group(1)}, and this snapshot is commit "
                       f"{commit}", who), []
    if SIGNATURE_NAME in files:
        return Refusal("inside", f"{SIGNATURE_NAME} is inside the snapshot folder, where it would be one of the files it "
                       "signs; a signature belongs outside it (signatures/<commit>/model.sig)", who), []
    dangling = sorted(n for n, v in files.items() if v[0] is None)
    if dangling:
        return Refusal("missing", f"missing from the cache (dangling link): {', '.join(dangling[:5])}", who), []
    extra = sorted(n for n in files if n not in signed.resources and not is_git_path(n))
    if extra:
        return Refusal("extra", "not in the signed file list: " + ", ".join(extra[:5])
                       + (f" (+{len(extra) - 5} more)" if len(extra) > 5 else ""), who), []
    differ = sorted(n for n, d in signed.resources.items() if n in files and files[n][0] != d)
    if differ:
        n = differ[0]
        return Refusal("differs", f"{n} differs from the signed file (sha256 {files[n][0][:16]}..., signed "
                       f"{signed.resources[n][:16]}...)" + (f"; also {', '.join(differ[1:5])}" if len(differ) > 1 else ""),
                       who), []
    absent = sorted(n for n in signed.resources if n not in files)
    not_fetched = [n for n in absent if n in listed]
    missing = [n for n in absent if n not in listed]
    if missing:
        return Refusal("missing", "signed but not in the snapshot (nor in the hub's listing of this commit): "
                       + ", ".join(missing[:5]), who), not_fetched
    return None, not_fetched


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("version") == RECORD_VERSION else None


def check(repo: RepoCache, commit: str, policy: TrustPolicy | None, rehash: bool = False) -> Verdict:
    """The verdict on ``commit``'s signature (unsigned, fine, or the first problem); never raises a Refusal."""
    sig_path = repo.signature_path(commit)
    verdict = Verdict(repo.repo_id, commit, sig_path)
    try:
        data = sig_path.read_bytes()
    except FileNotFoundError:
        inside = repo.snapshot_dir(commit) / SIGNATURE_NAME
        if inside.exists():
            verdict.refusal = Refusal("inside", f"{SIGNATURE_NAME} is inside the snapshot folder ({inside}), where it "
                                      "would be one of the files it signs; a signature belongs at " + str(sig_path))
        return verdict
    except OSError as exc:
        verdict.signed, verdict.refusal = True, Refusal("unreadable", f"cannot be read ({exc.strerror or exc})")
        return verdict
    verdict.signed = True
    sig_hash, policy_key = sha256_bytes(data), policy.digest if policy else "none"
    verdict.signature_sha256 = sig_hash
    record_path = repo.signature_record_path(commit)
    record = _read_record(record_path)
    known = record.get("files") if record else None
    files = snapshot_files(repo, commit, known if isinstance(known, dict) else None, rehash)
    same = bool(record) and record.get("signature_sha256") == sig_hash and record.get("files") == files
    checks = dict(record.get("checks") or {}) if same and record else {}
    hit = checks.get(policy_key)
    if not rehash and isinstance(hit, dict):
        verdict.signer, verdict.trusted, verdict.method = hit.get("signer"), bool(hit.get("trusted")), hit.get("method")
        verdict.not_fetched, verdict.from_record, verdict.files = list(hit.get("not_fetched") or []), True, len(files)
        return verdict
    try:
        signed = verify(data, policy)
    except Refusal as refusal:
        verdict.signer, verdict.refusal = refusal.signer, refusal
        return verdict
    verdict.signer, verdict.trusted, verdict.method, verdict.files = signed.signer, signed.trusted, signed.method, len(files)
    listing = repo.load_listing(commit)
    listed = {f.path for f in listing.files} if listing is not None else set()
    verdict.refusal, verdict.not_fetched = compare(signed, files, commit, listed)
    if verdict.refusal is None:  # one entry per trust policy (its digest; "none" without one)
        checks[policy_key] = {"signer": signed.signer, "trusted": signed.trusted, "method": signed.method,
                              "not_fetched": verdict.not_fetched}
        try:
            atomic_write(record_path, json.dumps({"version": RECORD_VERSION, "signature_sha256": sig_hash,
                                                  "files": files, "checks": checks}, indent=1, sort_keys=True))
        except OSError:  # a read-only cache: checked again next time, still correct
            pass
    return verdict
