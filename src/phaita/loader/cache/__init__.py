"""The cache on disk: its layout (one owner), lock files, and status, verify and repair.

``layout`` (``RepoCache``) is the only code that knows the Hugging Face cache layout: ``blobs/``,
``snapshots/<commit>/``, ``refs/``, the saved listing, partial files and completeness. ``lockfile``
pins commits and hashes; ``expected`` says what each file must hash to; ``scan``, ``verify`` and
``repair`` inspect a cache with no network (repair is given its fetch function). May import:
``phaita.loader.hub``, ``phaita.loader.http`` and the foundation. A change to the cache layout goes to
``layout`` and nowhere else.
"""
