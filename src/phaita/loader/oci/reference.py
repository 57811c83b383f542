"""``oci://`` references, and how a Hugging Face repo id + revision maps to a registry repository + tag.

``oci://HOST[:PORT]/PATH[:TAG|@sha256:HEX]``: ``PATH`` is the registry repository (lower case,
the distribution spec's grammar), ``TAG`` a tag (default ``latest``), ``@sha256:...`` a manifest digest.

The mapping used for an endpoint ``oci://registry.site/prefix`` (``PHAITA_ENDPOINTS`` or ``endpoints=``):

- repository: ``prefix/`` + the repo id in lower case (``microsoft/deberta-v3-base`` ->
  ``prefix/microsoft/deberta-v3-base``; ``Qwen/Qwen2.5-0.5B`` -> ``prefix/qwen/qwen2.5-0.5b``);
- tag: the revision (``main``, a tag, or a 40-hex commit), with any character a tag may not hold
  (``/`` in ``refs/pr/1``) replaced by ``-``, cut to 128 characters.

``phaita models push`` writes exactly these tags (the commit, and the branch name), so a pushed model
is found under the same names it is loaded by.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from .. import config
from ..errors import BadEnvironment

SCHEME = "oci://"
_REPO_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_HOST_RE = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?$")


def is_oci(value: object) -> bool:
    return isinstance(value, str) and value.startswith(SCHEME)


@dataclass(frozen=True)
class Reference:
    """One registry repository, and optionally a tag or a manifest digest in it."""

    host: str  # host[:port], as written
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def target(self) -> str:
        """What a manifest request names: the digest if given, else the tag (``latest`` by default)."""
        return self.digest or self.tag or "latest"

    def with_tag(self, tag: str) -> "Reference":
        return Reference(self.host, self.repository, tag, None)

    def with_repository(self, repository: str) -> "Reference":
        return Reference(self.host, repository, self.tag, self.digest)

    def __str__(self) -> str:
        tail = f"@{self.digest}" if self.digest else (f":{self.tag}" if self.tag else "")
        return f"{SCHEME}{self.host}/{self.repository}{tail}"


def parse(value: str, *, what: str = "reference", repository_required: bool = True) -> Reference:
    """Parse ``oci://HOST[:PORT]/PATH[:TAG|@sha256:HEX]``; a ValueError says what is wrong."""
    if not is_oci(value):
        raise ValueError(f"{what} {value!r} is not an oci:// reference (oci://HOST[:PORT]/PATH[:TAG])")
    rest = value[len(SCHEME):].rstrip("/")
    host, _, path = rest.partition("/")
    match = _HOST_RE.match(host)
    if not match or (match.group(2) and not 0 < int(match.group(2)) < 65536):
        raise ValueError(f"{what} {value!r}: {host!r} is not a host[:port]")
    digest = tag = None
    if "@" in path:
        path, _, digest = path.partition("@")
        if not _DIGEST_RE.match(digest):
            raise ValueError(f"{what} {value!r}: {digest!r} is not a sha256:<64 hex> digest")
    else:
        last = path.rsplit("/", 1)[-1]
        if ":" in last:
            path, _, tag = path.rpartition(":")
            if not _TAG_RE.match(tag):
                raise ValueError(f"{what} {value!r}: {tag!r} is not a valid tag")
    if path and not _REPO_RE.match(path):
        raise ValueError(f"{what} {value!r}: {path!r} is not a registry repository name (lower case letters, "
                         f"digits, '.', '_', '-' and '/')")
    if not path and repository_required:
        raise ValueError(f"{what} {value!r} names no repository (oci://HOST/PATH)")
    return Reference(host.lower(), path, tag, digest)


def tag_for(revision: str) -> str:
    """The tag a revision is stored under (see the module's text)."""
    tag = re.sub(r"[^A-Za-z0-9._-]", "-", revision)
    if not tag or not re.match(r"[A-Za-z0-9_]", tag[0]):
        tag = "_" + tag
    return tag[:128]


def repository_for(prefix: str, repo_id: str) -> str:
    """``prefix/org/name`` in lower case (see the module's text); a ValueError if it cannot be one."""
    name = "/".join(p for p in (prefix.strip("/"), repo_id.lower()) if p)
    if not _REPO_RE.match(name):
        raise ValueError(f"{repo_id!r} has no registry repository name under {prefix!r} (got {name!r})")
    return name


def for_model(endpoint: str, repo_id: str, revision: str) -> Reference:
    """Where endpoint ``oci://registry/prefix`` keeps ``repo_id`` at ``revision``."""
    base = parse(endpoint, what="endpoint", repository_required=False)
    return Reference(base.host, repository_for(base.repository, repo_id), tag_for(revision))


def _is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host[1:].split("]")[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def plain_http_allowed(host: str) -> bool:
    """docker's rule: plain http only for a loopback registry or one in PHAITA_OCI_INSECURE_REGISTRIES
    (https is tried first even then; see ``client``)."""
    try:
        insecure = config.oci_insecure_registries()
    except BadEnvironment:
        insecure = frozenset()
    return _is_loopback(host) or host.lower() in insecure or host.lower().rsplit(":", 1)[0] in insecure
