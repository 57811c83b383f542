"""The specification's path for the realism scorer; the component lives in :mod:`phaita.models.realism`."""

from phaita.models.realism import RealismScore, RealismScorer, __all__, heuristic_realism  # noqa: F401
