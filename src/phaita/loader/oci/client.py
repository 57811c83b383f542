"""One OCI registry: requests with a deadline over the loader's HTTP session, auth, errors.

Every request goes through :func:`phaita.loader.http.tls.session` (the site's CA bundle and proxies)
with connect/read timeouts bounded by the caller's :class:`~phaita.loader.http.deadline.Deadline`.
Redirects are not followed by the session here: a redirected GET (object storage behind the registry)
is followed by :meth:`Registry.send`, with the Authorization header left out. Registry error codes
become :class:`~phaita.loader.errors.RegistryError` with a ``FailureKind`` (NAME_UNKNOWN and
MANIFEST_UNKNOWN: permanent, with advice; 401/403: permanent, naming the credential source tried;
429/5xx: transient, ``Retry-After`` honoured by the loader's retry policy).

Scheme: ``https``. A registry on loopback or in ``PHAITA_OCI_INSECURE_REGISTRIES`` may also be plain
``http``: https is tried first and, when the port does not speak TLS, http is used (docker's rule).
"""

from __future__ import annotations

import json
import threading
from typing import Any, Iterable, Iterator, Mapping
from urllib.parse import urlencode, urljoin

import httpx2

from ..config import Timeouts
from ..errors import BadEnvironment, RegistryError, printable, redact
from ..http.deadline import Deadline, _timeout
from ..http.tls import session as tls_session
from . import advice
from .auth import Challenge, CredentialLookup, TokenCache, lookup, parse_challenge
from .reference import Reference, plain_http_allowed

MANIFEST_TYPES = ("application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json",
                  "application/vnd.oci.artifact.manifest.v1+json")


def _agent() -> str:
    from phaita import __version__
    return f"phaita/{__version__}"


def _error_code(response: httpx2.Response) -> tuple[str, str]:
    """The first ``errors[].code`` / ``message`` of a registry's JSON error body (or '' '')."""
    try:
        first = json.loads(response.content or b"{}").get("errors", [{}])[0]
        return str(first.get("code", "")), printable(str(first.get("message", "")), 200)
    except (ValueError, AttributeError, IndexError, TypeError):
        return "", ""


class Registry:
    """Requests to one registry host, authenticated per repository scope."""

    def __init__(self, host: str, timeouts: Timeouts | None = None) -> None:
        self.host = host
        self.timeouts = timeouts or Timeouts.from_env()
        self.tokens = TokenCache()
        self._basic_wanted = False
        self._scheme: str | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ credentials
    @property
    def credentials(self) -> CredentialLookup:
        return lookup(self.host)  # read each time: a file or a variable may change between calls

    def base_url(self, deadline: Deadline) -> str:
        known = self._scheme
        if known:
            return f"{known}://{self.host}"
        scheme = "https"
        if plain_http_allowed(self.host):
            try:
                self._raw("GET", f"https://{self.host}/v2/", {}, None, deadline)
            except httpx2.ConnectError as exc:
                text = str(exc).upper()
                if "SSL" in text and "CERTIFICATE" not in text:  # the port speaks plain http
                    scheme = "http"
                else:
                    raise
        self._scheme = scheme
        return f"{scheme}://{self.host}"

    # ------------------------------------------------------------------ sending
    def _raw(self, method: str, url: str, headers: Mapping[str, str], content: Any, deadline: Deadline,
             ) -> httpx2.Response:
        deadline.check(f"{method} {self.host}")
        try:
            return tls_session().request(method, url, headers={"user-agent": _agent(), **headers}, content=content,
                                         timeout=_timeout(deadline, self.timeouts), follow_redirects=False)
        except ValueError as exc:  # a CA bundle that does not parse
            raise BadEnvironment(str(exc)) from None

    def authorization(self, repository: str, actions: str, deadline: Deadline | None = None) -> str | None:
        """The Authorization header to send for ``repository`` (a cached token, or Basic), or None."""
        creds = self.credentials.credentials
        token = self.tokens.get(self._realm_key(), self._scope(repository, actions))
        if token:
            return f"Bearer {token}"
        if self._challenge is not None and self._challenge.scheme == "bearer" and deadline is not None:
            return f"Bearer {self._fetch_token(self._challenge, repository, actions, deadline)}"
        if self._basic_wanted and creds is not None:
            return creds.basic()
        return None

    _challenge: Challenge | None = None

    def _realm_key(self) -> str:
        return self._challenge.params.get("realm", "") if self._challenge else ""

    @staticmethod
    def _scope(repository: str, actions: str) -> str:
        return f"repository:{repository}:{actions}"

    def _fetch_token(self, challenge: Challenge, repository: str, actions: str, deadline: Deadline) -> str:
        realm = challenge.params.get("realm")
        if not realm or not realm.startswith(("https://", "http://")):
            raise RegistryError(f"{self.host}: the registry's Bearer challenge names no token endpoint (realm)",
                                kind="bad_listing")
        scope = self._scope(repository, actions)
        query = {"scope": scope}
        if challenge.params.get("service"):
            query["service"] = challenge.params["service"]
        creds = self.credentials.credentials
        headers = {"authorization": creds.basic()} if creds is not None and not creds.identity_token else {}
        if creds is not None and creds.identity_token:  # docker's refresh token: the OAuth2 POST form
            body = urlencode({"grant_type": "refresh_token", "refresh_token": creds.password,
                              "service": query.get("service", ""), "scope": scope, "client_id": "phaita"})
            response = self._raw("POST", realm, {"content-type": "application/x-www-form-urlencoded"}, body, deadline)
        else:
            response = self._raw("GET", realm + ("&" if "?" in realm else "?") + urlencode(query), headers,
                                 None, deadline)
        if response.status_code in (401, 403):
            raise RegistryError(f"the token endpoint of {self.host} refused the credentials "
                                f"(HTTP {response.status_code}); tried: {self.credentials.describe()}",
                                kind="access_denied", status=response.status_code,
                                advice=advice.denied(f"{self.host}/{repository}", response.status_code,
                                                     self.credentials.describe()))
        if response.status_code >= 400:
            self._raise_for_status(response, f"the token endpoint of {self.host}", f"{self.host}/{repository}")
        try:
            data = response.json()
            token = data.get("token") or data.get("access_token")
            expires = float(data.get("expires_in") or 60)
        except (ValueError, AttributeError, TypeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"the token endpoint of {self.host} gave no token", kind="http", transient=True)
        self.tokens.put(realm, scope, token, expires)
        return token

    def send(self, method: str, repository: str, url: str, *, deadline: Deadline, actions: str = "pull",
             headers: Mapping[str, str] | None = None, content: Any = None, what: str = "",
             ok: Iterable[int] = (200,), follow: bool = False, stream_content: bool = False) -> httpx2.Response:
        """One request (``url``: a path under the registry, or absolute); auth and errors handled.

        ``ok``: statuses returned as they are (others raise). ``follow``: follow redirects (GETs of
        blobs), without the Authorization header. ``content`` may be a callable making the body again
        (a 401 re-sends it).
        """
        base = self.base_url(deadline)
        full = url if url.startswith(("http://", "https://")) else base + url
        extra = dict(headers or {})
        for attempt in range(3):
            auth = self.authorization(repository, actions, deadline if attempt else None)
            sent = {**extra, **({"authorization": auth} if auth else {})}
            body = content() if callable(content) else content
            response = self._raw(method, full, sent, body, deadline)
            if response.status_code != 401:
                break
            challenge = parse_challenge(response.headers.get("www-authenticate"))
            if auth is not None or challenge is None or attempt == 2:
                if auth and auth.startswith("Bearer ") and attempt == 0:  # expired or revoked: a new one
                    self.tokens.drop(self._realm_key(), self._scope(repository, actions))
                    continue
                self._denied(response, repository, what)
            with self._lock:
                self._challenge = challenge if challenge.scheme == "bearer" else None
                self._basic_wanted = challenge.scheme == "basic"
            if challenge.scheme == "basic" and self.credentials.credentials is None:
                self._denied(response, repository, what)
        hops = 0
        while follow and response.status_code in (301, 302, 303, 307, 308) and hops < 5:
            location = response.headers.get("location")
            if not location:
                break
            full, hops = urljoin(full, location), hops + 1
            response = self._raw("GET", full, extra, None, deadline)  # no Authorization to another host
        if response.status_code not in set(ok):
            self._raise_for_status(response, what or f"{method} {self.host}", f"{self.host}/{repository}")
        return response

    def _denied(self, response: httpx2.Response, repository: str, what: str) -> None:
        code, message = _error_code(response)
        tried = self.credentials.describe()
        raise RegistryError(f"{what or self.host}: HTTP {response.status_code} {code} from the registry "
                            f"{self.host}; tried: {tried}", kind="access_denied", status=response.status_code,
                            code=code, advice=advice.denied(f"{self.host}/{repository}", response.status_code, tried))

    def _raise_for_status(self, response: httpx2.Response, what: str, ref: str) -> None:
        status = response.status_code
        if status < 400:
            raise RegistryError(f"{what}: unexpected HTTP {status} from the registry {self.host}", kind="http",
                                status=status)
        code, message = _error_code(response)
        detail = f"{what}: HTTP {status} {code} from the registry {self.host}" + (f": {message}" if message else "")
        detail = redact(detail)
        if status in (401, 403):
            self._denied(response, ref.split("/", 1)[-1], what)
        if code == "NAME_UNKNOWN":
            raise RegistryError(detail, kind="not_found", status=status, code=code, advice=advice.name_unknown(ref, code))
        if code == "MANIFEST_UNKNOWN" or (status == 404 and "manifest" in what):
            raise RegistryError(detail, kind="revision_not_found", status=status, code=code or "MANIFEST_UNKNOWN",
                                advice=advice.manifest_unknown(ref, code or "MANIFEST_UNKNOWN"))
        retry_after = None
        raw = response.headers.get("retry-after")
        if raw is not None:
            try:
                retry_after = max(0.0, float(raw))
            except ValueError:
                pass
        transient = status in (408, 429, 500, 502, 503, 504)
        raise RegistryError(detail, kind="http", transient=transient, status=status, code=code,
                            retry_after=retry_after)

    # ------------------------------------------------------------------ the calls the loader makes
    def get_manifest(self, ref: Reference, deadline: Deadline, max_bytes: int = 4 << 20) -> tuple[bytes, str, str]:
        """(the manifest's bytes, its media type, its digest) for ``ref``'s tag or digest."""
        response = self.send("GET", ref.repository, f"/v2/{ref.repository}/manifests/{ref.target}",
                             deadline=deadline, headers={"accept": ", ".join(MANIFEST_TYPES)},
                             what=f"the manifest {ref}")
        body = response.content
        if len(body) > max_bytes:
            raise RegistryError(f"the manifest {ref} is larger than {max_bytes} bytes", kind="unsafe")
        import hashlib
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if ref.digest and digest != ref.digest:
            raise RegistryError(f"the manifest {ref} has digest {digest}, not the one asked for", kind="http",
                                transient=True)
        announced = response.headers.get("docker-content-digest", "").strip()
        if announced.startswith("sha256:") and announced != digest:  # a tag's answer: bytes changed on the way
            raise RegistryError(f"the manifest {ref} arrived with digest {digest[:19]}..., not the "
                                f"{announced[:19]}... the registry announced (Docker-Content-Digest): damaged "
                                "on the way", kind="http", transient=True)
        if not announced and not ref.digest and not _is_json(body):  # nothing tells damage from a broken artifact
            raise RegistryError(f"the manifest {ref} is not JSON, and the registry sent no Docker-Content-Digest "
                                "to tell an answer damaged on the way from a broken artifact", kind="http",
                                transient=True)
        media = response.headers.get("content-type", "").split(";")[0].strip()
        return body, media, digest

    def blob_url(self, repository: str, digest: str, deadline: Deadline) -> str:
        return f"{self.base_url(deadline)}/v2/{repository}/blobs/{digest}"

    def get_small_blob(self, repository: str, digest: str, deadline: Deadline, max_bytes: int = 4 << 20) -> bytes:
        """A small blob (a config) read whole, its sha256 checked."""
        import hashlib
        response = self.send("GET", repository, f"/v2/{repository}/blobs/{digest}", deadline=deadline,
                             follow=True, what=f"the blob {digest[:19]} of {self.host}/{repository}")
        body = response.content
        if len(body) > max_bytes or "sha256:" + hashlib.sha256(body).hexdigest() != digest:
            raise RegistryError(f"the registry {self.host} served blob {digest[:19]}... of {repository} with "
                                f"other content (its sha256 differs)", kind="http", transient=True)
        return body


def _is_json(body: bytes) -> bool:
    import json

    try:
        json.loads(body)
    except ValueError:
        return False
    return True


class LiveHeaders(Mapping[str, str]):
    """Headers for the loader's file transfer: the Authorization of the moment (a token renewed when due)."""

    def __init__(self, registry: Registry, repository: str, seconds: float = 30.0) -> None:
        self.registry, self.repository, self.seconds = registry, repository, seconds

    def _all(self) -> dict[str, str]:
        auth = self.registry.authorization(self.repository, "pull", Deadline.after(self.seconds))
        return {"user-agent": _agent(), **({"authorization": auth} if auth else {})}

    def __getitem__(self, key: str) -> str:
        return self._all()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    def __repr__(self) -> str:
        return f"LiveHeaders({self.registry.host}, {self.repository})"  # never the token
