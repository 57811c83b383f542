"""The loader's exceptions (the advice each one gives a person is in :mod:`phaita.loader.advice`).

Public errors all derive from :class:`ModelDownloadError`, so existing code that catches it keeps
working, while a caller that cares can catch one case (``ModelNotFoundError``, ``DiskFullError``...).

Lower down, the fetch layer raises small internal exceptions (``TransferIncomplete``,
``ChecksumMismatch``, ``DeadlineExceeded``...) that say *what happened*; the retry policy decides
whether that is worth another attempt, and the facade turns the last one into a public error with
advice. Every message passes through :func:`redact`, so a token never reaches a log or traceback.
"""

from __future__ import annotations

import os
import re
import threading
import unicodedata
from dataclasses import dataclass
from typing import Sequence

# --------------------------------------------------------------------------- secrets

_SECRETS: set[str] = set()
_SECRETS_LOCK = threading.Lock()
_TOKEN_PATTERN = re.compile(r"\bhf_[A-Za-z0-9]{8,}\b")
# user:password@ in a URL (a proxy's credentials in HTTPS_PROXY, quoted by some error message)
_USERINFO_PATTERN = re.compile(r"(?<=//)[^/@\s:]+:[^/@\s]*@")


def register_secret(value: str | None) -> None:
    """Remember a token so that :func:`redact` removes it from every message."""
    if value and isinstance(value, str) and len(value) >= 4:
        with _SECRETS_LOCK:
            _SECRETS.add(value)


def redact(text: str) -> str:
    """Remove every known token (and anything shaped like an HF token) from ``text``."""
    with _SECRETS_LOCK:
        secrets = sorted(_SECRETS, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, "***")
    return _USERINFO_PATTERN.sub("***@", _TOKEN_PATTERN.sub("hf_***", text))


def printable(text: str, limit: int = 300) -> str:
    """``text`` from a server, safe to print: control and format characters (newline, ESC, the
    bidirectional overrides, zero-width marks...) shown as escapes, so it cannot fake a log line
    or reorder a terminal; cut at ``limit`` characters."""
    out = []
    for ch in text[:limit]:
        cat = unicodedata.category(ch)
        if cat in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp") or (cat == "Zs" and ch != " "):
            out.append(ch.encode("unicode_escape", "backslashreplace").decode("ascii"))
        else:
            out.append(ch)
    return "".join(out) + ("..." if len(text) > limit else "")


# --------------------------------------------------------------------------- internal (fetch layer)


class BadEnvironment(ValueError):
    """An environment variable holds a value the loader cannot use; the message names the variable."""


class FetchProblem(Exception):
    """Base of what the fetch layer reports; the policy classifies these."""


class TransferIncomplete(FetchProblem):
    """The server ended a body before the announced length (clean close or reset)."""


class ChecksumMismatch(FetchProblem):
    """A downloaded file's size or hash differs from what the hub announced (``path``: which file)."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class ContentChanged(ChecksumMismatch):
    """A file fetched in several answers does not add up to its hash: it changed between them."""


class NoProgress(FetchProblem):
    """A server's answers do not advance a transfer, try after try (see ``transfer.progress_guard``).

    Permanent: the same server answers the same way. The message names what was seen.
    """


class EncodedBody(FetchProblem):
    """A file's body came compressed (``Content-Encoding``) although identity was asked for."""


class BadResponse(FetchProblem):
    """The hub's answer is not what the protocol says (HTML from a captive portal, cut JSON...)."""


class MalformedListing(FetchProblem):
    """The endpoint's file listing is well-formed JSON but unusable, and no fallback fixed it.

    Unlike :class:`BadResponse` (a cut answer, a captive portal's HTML) another try gets the same.
    """


class RegistryError(FetchProblem):
    """An OCI registry's answer the loader cannot use (``kind``: a ``FailureKind`` value).

    ``advice``: the whole message for the public error (what to do), when the generic one would
    speak of a Hugging Face hub; ``status``/``code``: the HTTP status and the registry's error code.
    """

    def __init__(self, message: str, *, kind: str = "http", transient: bool = False, status: int | None = None,
                 code: str | None = None, retry_after: float | None = None, advice: str | None = None) -> None:
        super().__init__(message)
        self.kind, self.transient, self.status, self.code = kind, transient, status, code
        self.retry_after, self.advice = retry_after, advice


class DeadlineExceeded(FetchProblem):
    """An attempt ran past its ``timeout``; partial bytes are kept for the next one."""


class LockTimeout(FetchProblem):
    """Another process held a file's download lock for the whole attempt."""


class UnsafeRepository(FetchProblem):
    """The hub's listing or response cannot be trusted (path traversal, oversize, ...)."""


class UnsafeListing(UnsafeRepository):
    """A listed file name that cannot be written safely or shown as is (see ``hub.names``)."""


class UnsupportedWeights(FetchProblem):
    """The repository has no weights this loader will load (or only pickles, not allowed)."""


class LockMismatch(UnsafeRepository):
    """The hub's files at a locked commit are not the ones the lock file records."""


class OfflineMiss(FetchProblem):
    """Offline mode, and no complete snapshot in the cache."""


class DiskFull(FetchProblem):
    """Not enough space in the cache directory."""

    def __init__(self, message: str, needed: int | None = None, free: int | None = None) -> None:
        super().__init__(message)
        self.needed, self.free = needed, free


# --------------------------------------------------------------------------- public


@dataclass(frozen=True)
class UnderlyingError:
    """A token-free summary of the exception behind a failure (type, HTTP status, message)."""

    type_name: str
    message: str
    status_code: int | None = None
    transient: bool = False

    def __str__(self) -> str:
        return self.message


class ModelDownloadError(Exception):
    """A model could not be fetched or loaded. The message tells a person what to do next.

    Attributes:
        model_name: the model (or first candidate) asked for.
        models_attempted: every candidate tried, in order.
        attempts: attempts made in total (network attempts, across candidates).
        last_error: an :class:`UnderlyingError` summary of the last cause (never holds a token).
        cache_dir: the cache directory used.
        transient: True when the cause was a network condition that may pass.
    """

    def __init__(
        self,
        message: str,
        *,
        model_name: str | None = None,
        models_attempted: Sequence[str] = (),
        attempts: int = 0,
        last_error: UnderlyingError | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        transient: bool = False,
    ) -> None:
        message = redact(message)
        super().__init__(message)
        self.message = message
        self.model_name = model_name
        self.models_attempted = list(models_attempted)
        self.attempts = attempts
        self.last_error = last_error
        self.cache_dir = str(cache_dir) if cache_dir is not None else None
        self.transient = transient

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class ModelNotFoundError(ModelDownloadError):
    """The repository does not exist on the endpoint (or is private and no token allows it)."""


class RevisionNotFoundError(ModelDownloadError):
    """The branch, tag or commit does not exist in the repository."""


class AccessDeniedError(ModelDownloadError):
    """HTTP 401/403: gated model, missing or insufficient token."""


class DiskFullError(ModelDownloadError):
    """The cache directory has no room for the model."""


class CacheNotWritableError(ModelDownloadError):
    """The cache folder cannot be created or written (read-only, no permission, a file in its place)."""


class OfflineModeError(ModelDownloadError):
    """Offline mode is on and the model is not (completely) in the cache."""


class UnsafeModelError(ModelDownloadError):
    """The hub sent something the loader refuses: unsafe paths, pickle-only weights, oversize files."""


class BadListingError(ModelDownloadError):
    """The endpoint (often a mirror) lists the repository without the sizes the loader needs."""


class UnsafeListingError(BadListingError, UnsafeModelError):
    """The listing names a file the loader will not write (control or format characters, names that
    clash on a case-insensitive disk, ``.git/``, overlong names, too many files); nothing was written."""


class CorruptCacheError(ModelDownloadError):
    """``verify_on_load``: a cached file no longer hashes to its recorded value; it was not loaded."""


class BrokenServerError(ModelDownloadError):
    """The server's answers cannot give the file (no progress try after try, a compressed body):
    retrying the same server does not help."""


class UntrustedCertificateError(ModelDownloadError):
    """The endpoint's TLS certificate is not trusted (unknown CA, self-signed, wrong host name)."""


class ProxyAuthenticationError(ModelDownloadError):
    """The proxy refused the credentials (HTTP 407), or asked for some and none were given."""


class SignatureError(ModelDownloadError):
    """A model's OpenSSF signature is missing (where one is required), does not verify, names a
    signer the site's trust policy does not, or does not cover exactly these files at this commit.
    The message names the model, the file and the signer; nothing was loaded."""


class ModelLoadError(ModelDownloadError):
    """The files are here and verified, but ``from_pretrained`` failed on them."""
