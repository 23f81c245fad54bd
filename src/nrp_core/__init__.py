"""nrp-core compatible simulation runtime in pure Python.

Experiment files use ``from nrp_core import *`` to get the function decorators, the datapack
identity and JSON datapack classes, and ``NrpCore``, the client that runs a simulation in this
process. Names are imported on first use, so that engine processes, which import this package on
their way to their own modules, start fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "DataPackIdentifier",
    "DataPackInterface",
    "EngineDataPack",
    "EngineDataPacks",
    "JsonDataPack",
    "JsonRawData",
    "NlohmannJson",
    "NrpCore",
    "PreprocessedDataPack",
    "PreprocessingFunction",
    "SimulationIteration",
    "SimulationTime",
    "StatusFunction",
    "TransceiverFunction",
]

_HOMES = {
    "DataPackIdentifier": "nrp_core.datapacks",
    "DataPackInterface": "nrp_core.datapacks",
    "JsonDataPack": "nrp_core.data.nrp_json",
    "JsonRawData": "nrp_core.data.nrp_json",
    "NlohmannJson": "nrp_core.data.nrp_json",
    "NrpCore": "nrp_core.client",
    "NrpCoreStateError": "nrp_core.client",
    "EngineDataPack": "nrp_core.functions",
    "EngineDataPacks": "nrp_core.functions",
    "PreprocessedDataPack": "nrp_core.functions",
    "PreprocessingFunction": "nrp_core.functions",
    "SimulationIteration": "nrp_core.functions",
    "SimulationTime": "nrp_core.functions",
    "StatusFunction": "nrp_core.functions",
    "TransceiverFunction": "nrp_core.functions",
}

if TYPE_CHECKING:
    from nrp_core.client import NrpCore
    from nrp_core.data.nrp_json import JsonDataPack, JsonRawData, NlohmannJson
    from nrp_core.datapacks import DataPackIdentifier, DataPackInterface
    from nrp_core.functions import (
        EngineDataPack,
        EngineDataPacks,
        PreprocessedDataPack,
        PreprocessingFunction,
        SimulationIteration,
        SimulationTime,
        StatusFunction,
        TransceiverFunction,
    )


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'nrp_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})
