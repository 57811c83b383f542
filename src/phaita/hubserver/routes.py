"""The hub's route table: which URL and method reach which handler.

A route is a pattern of path segments; ``{repo}`` takes two segments (``org/name``), ``{rev}`` one,
``{rev+}`` and ``{path+}`` the rest (one or more), ``{path*}`` the rest (maybe none). To add an
endpoint: write ``handler(request) -> Response`` (see :mod:`.handlers`) and add a :class:`Route`
to :data:`ROUTES`, or pass ``LocalHub(routes=[*ROUTES, Route(...)])``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from . import handlers
from .protocol import HubError, HubRequest, Response

READ = ("GET", "HEAD")


@dataclass(frozen=True)
class Route:
    name: str  # also the feature name ``LocalHub(lacks=...)`` can leave out
    pattern: tuple[str, ...]
    handler: Callable[[HubRequest], Response]
    methods: tuple[str, ...] = READ
    api: bool = True  # an API call (faults with ``api`` select it) rather than a file download
    transfer: bool = False  # a file download: counts against the plan's max_transfers
    defaults: tuple[tuple[str, str], ...] = ()

    def match(self, segs: Sequence[str]) -> dict[str, str] | None:
        params = dict(self.defaults)
        i = 0
        for token in self.pattern:
            if token == "{repo}":
                if len(segs) < i + 2:
                    return None
                params["repo_id"] = "/".join(segs[i:i + 2])
                i += 2
            elif token == "{rev}":
                if len(segs) < i + 1:
                    return None
                params["revision"] = segs[i]
                i += 1
            elif token in ("{rev+}", "{path+}", "{path*}"):
                rest = list(segs[i:])
                if not rest and token != "{path*}":
                    return None
                key = "revision" if token == "{rev+}" else "path"
                params[key] = "/".join(rest).strip("/") if token == "{path*}" else "/".join(rest)
                i = len(segs)
            elif i < len(segs) and segs[i] == token:
                i += 1
            else:
                return None
        return params if i == len(segs) else None


ROUTES: tuple[Route, ...] = (
    Route("info", ("api", "models", "{repo}"), handlers.model_info, defaults=(("revision", "main"),)),
    Route("info", ("api", "models", "{repo}", "revision", "{rev+}"), handlers.model_info),
    Route("tree", ("api", "models", "{repo}", "tree", "{rev}", "{path*}"), handlers.tree),
    Route("paths-info", ("api", "models", "{repo}", "paths-info", "{rev+}"), handlers.paths_info,
          methods=("POST",)),
    Route("resolve", ("models", "{repo}", "resolve", "{rev}", "{path+}"), handlers.resolve, api=False, transfer=True),
    Route("resolve", ("{repo}", "resolve", "{rev}", "{path+}"), handlers.resolve, api=False, transfer=True),
)


def find_route(routes: Sequence[Route], method: str, segs: Sequence[str],
               lacks: frozenset[str]) -> tuple[Route, dict[str, str]]:
    """The route for this request and its parameters; a 405 or 404 ``HubError`` otherwise."""
    for route in routes:
        params = route.match(segs)
        if params is None:
            continue
        if method not in route.methods and not (method == "HEAD" and "GET" in route.methods):
            raise HubError(405, None, f"Method {method} not allowed")
        if route.name in lacks:  # a mirror without this feature: as if the URL did not exist
            raise HubError(404, None, f"Not found: /{'/'.join(segs)}")
        return route, params
    if method not in READ:
        raise HubError(405, None, f"Method {method} not allowed")
    raise HubError(404, None, f"Not found: /{'/'.join(segs)}")
