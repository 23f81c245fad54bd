"""nrp-core compatible simulation runtime in pure Python.

Experiment files use ``from nrp_core import *`` to get the function decorators, the datapack
identity and JSON datapack classes; ``NrpCore`` is the client that runs a simulation in this
process (imported on first use, so engine processes importing this package stay light).
"""

from __future__ import annotations

from typing import Any

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


def __getattr__(name: str) -> Any:
    if name in ("NrpCore", "NrpCoreStateError"):
        from nrp_core import client

        return getattr(client, name)
    raise AttributeError(f"module 'nrp_core' has no attribute {name!r}")
