"""PHAITA: Pre-Hospital AI Triage Algorithm."""

__version__ = "0.1.0"
