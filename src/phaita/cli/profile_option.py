"""``--profile P``: a manifest profile, checked when the command line is parsed (exit 2 when unknown)."""

from __future__ import annotations

from typing import Optional

import typer


def known_profile(value: Optional[str]) -> Optional[str]:
    """Typer callback: ``value`` when the manifest has that profile (or no value), else a usage error."""
    if value is None:
        return None
    from phaita.data.manifest import load_manifest

    profiles = load_manifest().profiles
    if value not in profiles:
        raise typer.BadParameter(f"unknown manifest profile {value!r}; known: {', '.join(profiles)}")
    return value
