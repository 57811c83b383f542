"""OpenSSF model signing: who released a snapshot, checked offline before it loads, and signing at the site.

Owns the trust policy (``PHAITA_TRUST``: keys, root CAs with the signer subjects they may certify,
Sigstore identities with a staged trust root; :mod:`.policy`), the one boundary with the optional
``model-signing`` library (:mod:`.bundle`: its exceptions translated into refusals, plus the checks
it lacks: the leaf valid now, the subject), the comparison of a signature's file list with a cached
snapshot and the record that makes a warm load of a signed model cost a few ``stat`` calls
(:mod:`.check`), the load's rule (:mod:`.enforce`: ``PHAITA_REQUIRE_SIGNATURE`` /
``require_signature``), and signing from the digests the cache already verified (:mod:`.sign`).
Signatures live where ``RepoCache.signature_path(commit)`` says (``signatures/<commit>/model.sig``).
May import: ``phaita.loader.cache``, ``phaita.loader.hub`` and the foundation; never
``transfer``, ``request`` or anything above (``request`` calls it before ``from_pretrained``).
``model_signing`` is imported only when a signature is actually verified or written.
"""
