"""Imported by engine_no_super.py from the engine script's own folder."""

HELPER_VALUE = 42
