"""The ``phaita`` command line: ``main`` (the app), ``models``, ``hub``, ``output``, ``doctor``."""
