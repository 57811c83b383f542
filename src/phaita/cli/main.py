"""The ``phaita`` command line (typer): ``phaita models ...``, ``phaita hub serve``, ``phaita demo``.

Exit codes: 0 success, 1 failure (a model could not be fetched, bad files remain, a doctor check
failed, an expected error such as an unknown model), 2 usage error (click's own), 130 interrupted.
An expected failure prints the loader's message on stderr, never a traceback.

Extension hook: a module ``phaita.cli.demo`` (or any module listed in ``COMMAND_MODULES``) that
defines ``register(app: typer.Typer) -> None`` is imported and asked to add its commands; if the
module does not exist the command line works without it. ``phaita.cli.demo`` (issue 3) adds
``phaita demo`` this way, e.g.::

    def register(app):
        app.command("demo")(demo)
"""

from __future__ import annotations

import importlib
import sys
from typing import Optional

import typer

from phaita import __version__

from . import airgap, hub, models, signing  # airgap adds lock/export/import to `phaita models`, signing adds sign
from .output import STATE

COMMAND_MODULES = ("phaita.cli.demo",)

app = typer.Typer(
    name="phaita",
    help="PHAITA: robust Hugging Face model downloads for bad networks, and the triage demo.\n\n"
         "HF_ENDPOINT points every command at a Hub mirror; HF_HUB_CACHE / HF_HOME choose the cache. "
         "Exit codes: 0 success, 1 failure, 2 usage error.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
assert signing.sign  # (registered on models.app by importing it)
app.add_typer(models.app, name="models")
app.add_typer(hub.app, name="hub")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"phaita {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    ctx: typer.Context,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also show the loader's INFO messages (resumes...)."),
    version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True,
                                           help="Print the version and exit."),
) -> None:
    STATE["verbose"] = verbose
    # The loader's advice names this command line's flags and variables, not Python arguments.
    from phaita.loader import advice

    audience = advice.set_audience("cli")
    ctx.call_on_close(lambda: advice.reset_audience(audience))


def register_optional_commands(target: typer.Typer = app) -> list[str]:
    """Import each module of ``COMMAND_MODULES`` that exists and call its ``register(app)``."""
    added = []
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # not written (yet): fine. A missing dependency inside it is not.
                continue
            raise
        register = getattr(module, "register", None)
        if callable(register):
            register(target)
            added.append(name)
    return added


register_optional_commands()


def main(argv: Optional[list[str]] = None) -> int:
    """Console entry point (``phaita = phaita.cli.main:main``)."""
    try:
        app(args=argv, prog_name="phaita")
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
