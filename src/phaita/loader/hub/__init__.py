"""What a hub or mirror says a commit holds, and which of its files a load needs.

Owns ``listing`` (the revision and tree APIs, file facts: size, sha256, git oid, and the checks on
what a server lists), ``sources`` (the fallbacks for mirrors that lack an API: resolve headers, paths
only) and ``selection`` (which files a model type, a GGUF file or a subfolder needs; safetensors over
pickles). May import: ``phaita.loader.http`` and the foundation. Nothing here writes to disk.
"""
