"""Engines driven by the runtime: ``python_json``, ``py_sim``, ``nest_json`` and the datatransfer stand-in."""
