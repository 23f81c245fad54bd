"""Test engine with the same base name as ../engine_counting.py but a different Script."""

from nrp_core.engines.python_json import EngineScript


class Script(EngineScript):
    KIND = "other"
