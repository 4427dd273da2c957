"""Runnable examples; a package so that plug-ins import as ``examples.<name>.<module>`` from the repo root."""
