"""The package's knowledge, as data: the respiratory conditions and the models the components use.

``domain`` loads and validates ``conditions.yaml`` (conditions, symptoms, lay cues, red flags);
``cues`` is the small language of lay cues (text only, no domain); ``manifest`` reads
``manifest.yaml`` (the models each component loads, by profile). Above the loader, below the
components: may import ``phaita.loader``'s public names only, and nothing of ``phaita.models``,
``phaita.cli`` or the applications.
"""
