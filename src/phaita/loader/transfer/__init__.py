"""Transfers: a snapshot fetched into the cache, one file at a time or in parallel ranges.

``snapshot`` plans and fetches a commit's files (locks, reuse, completeness); ``file`` moves one file
(resume, hashing every byte before the blob is visible, fsync before the rename); ``ranges`` splits a
large file over several connections and checks each ``Content-Range``, with ``stream_growth``
deciding when a file capped per connection gets more of them; ``sidecar`` records progress
so a crash resumes; ``empty_break`` bounds bodies that end early without progress;
``progress_guard`` counts a file's requests in an attempt and stops answers that add no new bytes
(a permanent error naming why); ``endpoints`` tries several endpoints in order, naming a corrupt
copy. May import: ``phaita.loader.cache``, ``hub``, ``http`` and the foundation. A change to range
transfers goes to ``ranges``.
"""
