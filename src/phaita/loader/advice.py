"""Every public error's message and the advice it gives a person, worded in one place.

The exception classes are in :mod:`phaita.loader.errors`; :mod:`phaita.loader.request.public_errors`
picks the class and the message below for each kind of failure. Every message passes through
:func:`phaita.loader.errors.redact`, so a token never reaches a log or traceback.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Iterable, Iterator, Sequence
from urllib.parse import urlsplit

# Who will read the advice: "python" (arguments such as allow_offline=) or "cli" (its flags and
# variables). The command line sets it for the command it runs (:func:`worded_for_cli`).
_AUDIENCE: ContextVar[str] = ContextVar("phaita_advice_audience", default="python")


@contextmanager
def worded_for_cli() -> Iterator[None]:
    """Word the advice of the messages made inside for a command-line user (flags, not arguments)."""
    token = _AUDIENCE.set("cli")
    try:
        yield
    finally:
        _AUDIENCE.reset(token)


def set_audience(audience: str):
    """Set who reads the advice ("python" or "cli"); returns the token for :func:`reset_audience`."""
    if audience not in ("python", "cli"):
        raise ValueError(f"audience must be 'python' or 'cli'; got {audience!r}")
    return _AUDIENCE.set(audience)


def reset_audience(token) -> None:
    _AUDIENCE.reset(token)


def _said(python: str, cli: str) -> str:
    """The Python wording or the command line's, for whoever made the call."""
    return cli if _AUDIENCE.get() == "cli" else python


def is_huggingface_hub(endpoint: str) -> bool:
    """True for the real Hub (huggingface.co, hf.co): only it has the /models search page."""
    try:
        host = (urlsplit(endpoint).hostname or "").lower()
    except ValueError:  # a malformed endpoint ('http://[::1'): not the Hub; its own error names it
        return False
    return any(host == d or host.endswith("." + d) for d in ("huggingface.co", "hf.co"))


def _load_offline() -> str:
    return _said("then load with allow_offline=True", "then run with HF_HUB_OFFLINE=1")


# --------------------------------------------------------------------------- advice


def download_command(model_name: str, revision: str | None = None) -> str:
    cmd = f"hf download {model_name}"
    if revision and revision != "main":
        cmd += f" --revision {revision}"
    return cmd


def numbered(steps: Iterable[str]) -> str:
    return "\n".join(f"  {i}. {step}" for i, step in enumerate(steps, 1))


def retries_exhausted_message(
    model_name: str,
    *,
    attempts: int,
    last_error: str,
    models_attempted: Sequence[str],
    cache_dir: Path,
    endpoint: str,
    revision: str | None,
    max_retries: int,
    timeout: float,
    first_steps: Sequence[str] = (),
) -> str:
    cmd = download_command(model_name, revision)
    return (
        f"Failed to download {model_name} after {attempts} attempts.\n"
        f"Last error: {last_error}\n"
        f"Models attempted: {', '.join(models_attempted)}\n"
        f"Cache directory: {cache_dir}\n"
        f"Manual download: {cmd}\n"
        "Troubleshooting:\n"
        + numbered(
            [
                *first_steps,
                f"Check the connection to {endpoint} (proxy variables HTTPS_PROXY/NO_PROXY; "
                "HF_ENDPOINT for a mirror). Partial files were kept: the next try resumes.",
                f"Check the model name: {endpoint}/{model_name}",
                f"Download it manually where the network works: {cmd} ({_load_offline()})",
                *(["Check the Hub status page: https://status.huggingface.co"] if is_huggingface_hub(endpoint)
                  else []),
                _said(f"Raise max_retries (now {max_retries}) or timeout (now {timeout:g} s per attempt) "
                      "for a slow or unstable link.",
                      f"Raise --max-retries (now {max_retries}) or --timeout (now {timeout:g} s per attempt) "
                      "for a slow or unstable link."),
            ]
        )
    )


def not_found_message(model_name: str, endpoint: str, has_token: bool, revision: str | None = None) -> str:
    private = (
        "If it is private, the token in use does not give access to it."
        if has_token
        else _said("If it is private, pass token=... or set HF_TOKEN (or run `hf auth login`).",
                   "If it is private, set HF_TOKEN (or run `hf auth login`).")
    )
    if "/" not in model_name:
        name = (f"'{model_name}' names no organisation: a model id is 'organization/model-name', e.g. "
                f"'microsoft/deberta-v3-base' (only a few old models, such as 'gpt2', have none).")
    else:
        name = "Check the name: it is 'organization/model-name', e.g. 'microsoft/deberta-v3-base'."
    hub = is_huggingface_hub(endpoint)
    where = ("If you use a mirror (HF_ENDPOINT), check that it carries this model." if hub else
             f"{endpoint} is not the Hugging Face Hub (HF_ENDPOINT): check that it carries this model.")
    rev = f" (or has no revision '{revision}')" if revision and revision != "main" else ""
    return (
        f"Model '{model_name}' was not found on {endpoint}{rev}. This is not retried.\n"
        + numbered(
            [
                name,
                *([f"Search for it: {endpoint}/models?search={model_name.split('/')[-1]}"] if hub else []),
                private,
                where,
            ]
        )
    )


def access_denied_message(model_name: str, endpoint: str, status: int | None, has_token: bool) -> str:
    code = f"HTTP {status}" if status else "access denied"
    token_state = "A token was sent but it does not grant access." if has_token else "No token was sent."
    return (
        f"Access to '{model_name}' was refused ({code}): the model is gated or private. {token_state}\n"
        + numbered(
            [
                f"Open {endpoint}/{model_name} while logged in and accept its licence/conditions.",
                _said("Give a token with read access: token=..., the HF_TOKEN variable, or `hf auth login`.",
                      "Give a token with read access: the HF_TOKEN variable, or `hf auth login`."),
                "Check that the token's account is the one that accepted the conditions.",
            ]
        )
    )


def revision_not_found_message(model_name: str, revision: str | None, endpoint: str) -> str:
    return (
        f"Revision '{revision}' does not exist in '{model_name}'.\n"
        + numbered(
            [
                "Check the branch, tag or full 40-character commit hash.",
                f"See the repository's history at {endpoint}/{model_name}/commits/main",
                "Leave revision unset to use the default branch 'main'.",
            ]
        )
    )


def locked_revision_gone_message(model_name: str, commit: str, lock_source: str, endpoint: str) -> str:
    return (
        f"The lock file {lock_source} pins '{model_name}' to commit {commit}, which {endpoint} does not have.\n"
        + numbered(
            [
                "If you use a mirror (HF_ENDPOINT), check that it carries that commit, or bring the model "
                "as a bundle (`phaita models import`).",
                "If the commit was removed from the hub on purpose, make a new lock: `phaita models lock`, "
                "and review the new commits before using them.",
            ]
        )
    )


def disk_full_message(model_name: str, cache_dir: Path, detail: str) -> str:
    return (
        f"Not enough disk space to download '{model_name}' into {cache_dir}: {detail}\n"
        + numbered(
            [
                "Free space on that disk (`phaita models status` lists cached models and sizes).",
                _said("Or put the cache on a larger disk: cache_dir=..., HF_HUB_CACHE or HF_HOME.",
                      "Or put the cache on a larger disk: HF_HUB_CACHE or HF_HOME."),
                "Partial files were kept; the next try resumes where this one stopped.",
            ]
        )
    )


def cache_not_writable_message(model_name: str, cache_dir: Path, detail: str, *, blocked: Path | None,
                               free_bytes: int | None) -> str:
    """The cache folder cannot be made or written: advice about the path, its permissions, the disk.

    ``blocked``: the deepest part of ``cache_dir``'s path that exists (what stops the rest from being
    created); ``free_bytes``: free space on its disk, when known.
    """
    where = blocked or cache_dir
    if blocked is not None and blocked.exists() and not blocked.is_dir():
        path_step = f"{blocked} is a file where a folder should be: move it away, or use another cache folder."
    elif blocked is not None and blocked != cache_dir:
        path_step = (f"{cache_dir} does not exist and cannot be created inside {blocked} (no permission, or a "
                     f"read-only or special file system such as /proc): check the path (`ls -ld {blocked}`).")
    else:
        path_step = f"Check that this user may write in {where} (`ls -ld {where}`; a read-only mount cannot)."
    disk = f" ({free_bytes / 1e9:.1f} GB free there)" if free_bytes is not None else ""
    return (
        f"Cannot write the cache folder {cache_dir} for '{model_name}': {detail}\n"
        "This is not a network problem, and it is not retried.\n"
        + numbered(
            [
                path_step,
                _said("Or use a cache folder you can write: cache_dir=..., HF_HUB_CACHE or HF_HOME.",
                      "Or use a cache folder you can write: HF_HUB_CACHE or HF_HOME."),
                f"Check the disk it is on{disk} (`df -h {where}`); `phaita models doctor` tries to write there.",
            ]
        )
    )


def offline_miss_message(model_name: str, cache_dir: Path, revision: str | None, detail: str) -> str:
    cmd = download_command(model_name, revision)
    return (
        f"'{model_name}' is not in the cache and offline mode is on ({detail}).\n"
        f"Cache directory: {cache_dir}\n"
        + numbered(
            [
                f"Where a network is available, download it: {cmd}  (or `phaita models pull {model_name}`), "
                "with the same HF_HUB_CACHE/HF_HOME.",
                _said("To allow network access: pass allow_offline=False and unset HF_HUB_OFFLINE "
                      "(and TRANSFORMERS_OFFLINE).",
                      "To allow network access: unset HF_HUB_OFFLINE (and TRANSFORMERS_OFFLINE)."),
            ]
        )
    )


def bad_listing_message(model_name: str, endpoint: str, revision: str | None, detail: str) -> str:
    cmd = download_command(model_name, revision)
    return (
        f"The file listing of '{model_name}' from {endpoint} cannot be used: {detail}\n"
        "Retrying will not help: the endpoint answers the same way every time.\n"
        + numbered(
            [
                f"Run `phaita models doctor` to see which Hub features the endpoint at {endpoint} lacks "
                "(revision listing with sizes and hashes, tree API, paths-info, HEAD with X-Linked-Size).",
                "If it is a mirror, update it or ask its operator; or list another endpoint after it "
                "(PHAITA_ENDPOINTS=mirror,https://huggingface.co).",
                f"Or download where the Hub is reachable: {cmd}, {_load_offline()}.",
            ]
        )
    )


def unsafe_message(model_name: str, detail: str) -> str:
    return f"Refusing to load '{model_name}': {detail}"


def load_failed_message(model_name: str, snapshot: Path, detail: str) -> str:
    return (
        f"The files of '{model_name}' are complete in {snapshot}, but loading them failed: {detail}\n"
        + numbered(
            [
                _said("Check that model_type matches the model (auto, causal_lm, tokenizer, sequence_classification...).",
                      "Check that --type matches the model (auto, causal_lm, tokenizer, sequence_classification...)."),
                "Check that the installed transformers supports this architecture (pip install -U transformers).",
                "If files were modified by hand, run `phaita models verify --repair`.",
            ]
        )
    )


def untrusted_certificate_message(model_name: str, endpoint: str, reason: str, *, subject: str | None,
                                  issuer: str | None, root: str | None, names: Sequence[str], trusted_from: str,
                                  chain_problem: str | None = None, proxy: tuple[str, str] | None = None) -> str:
    """Why the certificate was refused, who signed it, and how to trust that CA (never retried).

    ``issuer`` signed the server's certificate; ``root`` is the issuer at the top of the chain the
    server sent (the CA to trust; the same as ``issuer`` when no intermediate was sent).
    ``proxy``: (variable, URL without credentials) when the refused certificate is the one an
    ``https://`` proxy presented, not the endpoint's.
    """
    if chain_problem:
        seen = f"The certificate could not be read for details ({chain_problem})."
    else:
        seen = f"It was issued to {subject or '(no subject)'} by {issuer or '(no issuer)'}"
        seen += f", whose chain leads to {root}." if root and root != issuer else "."
        if names:
            seen += f" It is valid for: {', '.join(names)}."
    issuer = root or issuer
    mismatch = "mismatch" in reason.lower()
    if mismatch and proxy:
        steps = [
            f"Use a name the proxy's certificate carries in {proxy[0]} (now {proxy[1]}).",
            "Or ask your IT department for a proxy certificate that names the host you use.",
        ]
    elif mismatch:
        steps = [
            f"Use a name the certificate carries in HF_ENDPOINT (now {endpoint}).",
            "Or ask whoever runs the endpoint for a certificate that names the host you use.",
        ]
    else:
        steps = [
            f"Get the certificate of the CA that signed it ({issuer or 'see above'}) as a PEM file from "
            "your IT department (a TLS-inspecting proxy or a site mirror signs with its own CA).",
            "Trust it for this process: SSL_CERT_FILE=/path/to/ca-bundle.pem, or REQUESTS_CA_BUNDLE / "
            "CURL_CA_BUNDLE (used when SSL_CERT_FILE is unset). The file replaces the default store: to reach "
            "public sites too, append the CA to a copy of the system bundle (/etc/ssl/certs/ca-certificates.crt).",
            "Or add it to the system store: copy it to /usr/local/share/ca-certificates/<name>.crt and run "
            "`sudo update-ca-certificates` (Debian, Ubuntu).",
        ]
    if proxy:
        who = f"the proxy {proxy[1]} ({proxy[0]}; not the hub {endpoint}, which was not reached)"
        doctor = "`phaita models doctor` shows the proxy variables in effect (masked)."
    else:
        who, doctor = endpoint, "`phaita models doctor` shows the certificate chain the endpoint presents."
    return (
        f"The TLS certificate of {who} is not trusted ({reason}), so '{model_name}' was not downloaded. "
        "This is not retried: it does not pass by itself.\n"
        f"{seen}\nTrusted CAs now come from: {trusted_from}.\n" + numbered(steps) + "\n" + doctor
    )


def proxy_auth_message(model_name: str, endpoint: str, proxies: str) -> str:
    return (
        f"The proxy refused the request for '{model_name}' (HTTP 407 Proxy Authentication Required) "
        f"on the way to {endpoint}. This is not retried.\nProxy settings: {proxies or 'none'}\n"
        + numbered(
            [
                "Put the proxy's user and password in the proxy URL: HTTPS_PROXY=http://USER:PASSWORD@proxy:3128 "
                "(percent-encode special characters in the password).",
                "Check them with your IT department; `phaita models doctor` shows the proxy variables (masked).",
            ]
        )
    )


def bad_environment_message(model_name: str, detail: str) -> str:
    return (
        f"Cannot fetch '{model_name}': {detail}\n"
        + numbered(["Fix or unset that environment variable (`phaita models doctor` shows the settings in effect)."])
    )


def broken_server_message(model_name: str, endpoint: str, detail: str) -> str:
    """The server's answers never give the file (no progress try after try, a compressed body)."""
    return (
        f"'{model_name}' could not be fetched from {endpoint}: {detail}\n"
        "Retrying will not help: the server answered the same way each time; the partial file was removed.\n"
        + numbered(
            [
                "If a proxy is in the way (HTTPS_PROXY), it may cap, cut or compress large answers: ask its "
                "operator to pass Hub downloads through unchanged (Range requests, no Content-Encoding).",
                "If it is a mirror, update it or ask its operator; or list another endpoint after it "
                "(PHAITA_ENDPOINTS=mirror,https://huggingface.co).",
                f"Or download where the Hub is reachable: {download_command(model_name)}, then load with "
                "allow_offline=True.",
            ]
        )
    )


def unsafe_listing_message(model_name: str, endpoint: str, detail: str) -> str:
    """A listed name the loader will not write; nothing was written."""
    return (
        f"Refusing the file listing of '{model_name}' from {endpoint}: {detail}\n"
        "Nothing was downloaded or written. Retrying will not help: the listing names the repository's files.\n"
        + numbered(
            [
                "Ask the repository's owner to rename the file (names are shown escaped above).",
                "If only a mirror lists it so, compare with the Hub's listing: `phaita models doctor`.",
            ]
        )
    )


def corrupt_cache_message(model_name: str, snapshot: Path, bad: Sequence[str]) -> str:
    """verify_on_load: a cached file does not hash to its recorded value."""
    shown = "\n".join(f"  - {b}" for b in bad[:10]) + (f"\n  - ... ({len(bad) - 10} more)" if len(bad) > 10 else "")
    return (
        f"'{model_name}' was not loaded: verify_on_load (PHAITA_VERIFY_ON_LOAD) re-hashed {snapshot} and "
        f"{len(bad)} file(s) no longer match the hash recorded when they were downloaded:\n{shown}\n"
        "They were changed after the download (edited or overwritten in place, a disk or copy fault).\n"
        + numbered(
            [
                f"Repair the cache: `phaita models verify --repair {model_name}` (re-fetches the bad files).",
                "Or delete the model from the cache (`hf cache delete`) and load it again.",
            ]
        )
    )
