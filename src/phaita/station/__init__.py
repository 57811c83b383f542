"""The station mirror: a site's verified Hugging Face cache served read-only as a Hub.

``mirror`` builds the index of complete, verified snapshots and serves it (``phaita hub serve
--cache``). An application: may import the loader and the data packages, never the CLI.
"""
