"""One load request end to end, and the public functions on top of it.

``options`` (``LoaderOptions``), ``load_request`` (every argument checked once, before I/O), ``retry``
(``RetryPolicy`` on tenacity), ``api`` (cached snapshot or fetch with retries, then load),
``public_errors`` (a failure becomes the public error with its advice, by kind), ``progress`` (the
default bar), ``load`` (``from_pretrained`` on a local snapshot, no network) and ``facade`` (the
specification's functions, re-exported by ``phaita.loader`` and ``phaita.utils.model_loader``).
May import every lower layer (``transfer``, ``cache``, ``hub``, ``http``, the foundation).
"""
