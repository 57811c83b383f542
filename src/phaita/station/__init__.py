"""The station mirror: a site's verified Hugging Face cache served read-only as a Hub.

``mirror`` builds the index of complete, verified snapshots; ``rescan`` adds models imported later,
once verified; ``server`` and ``handler`` serve it (bounded connections, deadlines, TLS in the
connection's thread), with ``access`` (tokens, client certificates), ``metrics`` (Prometheus text),
``tls`` and ``store``; ``run`` is ``phaita hub serve --cache``. An application: may import the
loader and :mod:`phaita.hubserver` (the Hub's protocol), never :mod:`phaita.testing`
(``tools/check_architecture.py`` enforces it) and never the CLI.
"""
