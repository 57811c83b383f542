"""Listed file names that are safe to write and to show, checked before any byte is written.

:func:`phaita.loader.hub.listing.check_relative_path` keeps a name inside the repository (no
``..``, absolute paths, backslashes, NUL). This module refuses what would still do harm once the
name is a file in the cache or a word in a log: control characters (a newline fakes a log line,
ESC colours a terminal), Unicode format characters (category Cf: the bidirectional overrides
that show ``evil.exe`` as ``exe.live``, zero-width marks), a ``.git`` component, a component
longer than a filesystem allows (255 bytes), two names that are one file on a case-insensitive or
normalising filesystem (``Config.json`` and ``config.json``; NFC and NFD forms of ``é``; NFKC
folds such as the ``ﬁ`` ligature), and more files than ``PHAITA_MAX_FILES``. Each refusal is an
:class:`~phaita.loader.errors.UnsafeListing` naming the entry, escaped
(:func:`~phaita.loader.errors.printable`) so that the message itself cannot spoof anything.
"""

from __future__ import annotations

import unicodedata
from typing import Iterable

from .. import config
from ..errors import UnsafeListing, printable

MAX_COMPONENT_BYTES = 255  # NAME_MAX of ext4, xfs, btrfs, APFS, NTFS (in UTF-16 units there)


def shown(name: str) -> str:
    """A listed name as a message shows it: quoted, every unsafe character escaped."""
    return "'" + printable(name, 200) + "'"


def check_name(path: str) -> None:
    """One listed name (already known to be a relative path inside the repository)."""
    for ch in path:
        category = unicodedata.category(ch)
        if category == "Cc":
            raise UnsafeListing(f"the hub listed a file name with a control character "
                                f"({printable(ch)}): {shown(path)}")
        if category in ("Cf", "Zl", "Zp", "Cs", "Co", "Cn"):
            raise UnsafeListing(f"the hub listed a file name with an invisible or format character "
                                f"(U+{ord(ch):04X} {unicodedata.name(ch, 'unassigned')}): {shown(path)}")
    for part in path.split("/"):
        if _fold(part) == ".git":
            raise UnsafeListing(f"the hub listed a path inside a .git folder: {shown(path)}")
        if len(part.encode("utf-8", "surrogatepass")) > MAX_COMPONENT_BYTES:
            raise UnsafeListing(f"the hub listed a name longer than {MAX_COMPONENT_BYTES} bytes, more than a "
                                f"filesystem allows: {shown(path[:80] + '...')}")


def check_names(paths: Iterable[str]) -> None:
    """The whole listing: each name, their number, and names that would be one file on disk."""
    paths = list(paths)
    limit = config.max_files()
    if len(paths) > limit:
        raise UnsafeListing(f"the hub listed {len(paths)} files, more than the limit of {limit} (PHAITA_MAX_FILES)")
    seen: dict[str, str] = {}  # folded path -> the listed one
    folders: dict[str, str] = {}  # folded folder -> a listed path under it
    for path in paths:
        check_name(path)
        parts = path.split("/")
        folded_parts = [_fold(p) for p in parts]
        key = "/".join(folded_parts)
        if key in seen and seen[key] != path:
            raise UnsafeListing(f"the hub listed {shown(seen[key])} and {shown(path)}, which are one file on a "
                                "case-insensitive or Unicode-normalising filesystem")
        seen[key] = path
        for i in range(1, len(parts)):
            folders.setdefault("/".join(folded_parts[:i]), path)
    for key, path in seen.items():
        if key in folders:
            raise UnsafeListing(f"the hub listed {shown(path)} both as a file and a folder ({shown(folders[key])} "
                                "would be inside it on a case-insensitive or Unicode-normalising filesystem)")


def _fold(name: str) -> str:
    """The form under which two names are the same file somewhere: NFKC, case-folded, NFKC again."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())
