"""Python JSON engines: user scripts subclass :class:`EngineScript`."""

from nrp_core.engines.python_json.engine_script import EngineScript

__all__ = ["EngineScript"]
