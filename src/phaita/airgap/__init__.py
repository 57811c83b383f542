"""Air-gapped and regulated sites: lock files, verified bundles (export / import).

Layering: ``phaita.cli`` -> this package -> the loader's facade (``phaita.loader.request.api``), fetch and
cache modules. Nothing here reads environment variables (``phaita.loader.config`` does).
"""
