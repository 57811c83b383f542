"""The HTTP layer: requests with a deadline, TLS and proxies, connection links, and what a failure is.

Owns every byte that crosses the network for the loader: ``deadline`` (``Deadline``, ``get_json``,
``stream``: one HTTP session, every read bounded by the attempt's deadline), ``tls`` (the CA bundle,
proxies, certificate errors worded for a person), ``links`` (the connection budget and stall hand-off
between parallel connections), and ``failures`` (``classify``: any foreign exception, from httpx,
huggingface_hub or the OS, becomes one ``FailureKind``; the one boundary where they are translated).
May import: the foundation (``phaita.loader.config``, ``errors``, ``advice``, ``events``, ``hashing``).
A change to TLS, proxies or timeouts goes here.
"""
