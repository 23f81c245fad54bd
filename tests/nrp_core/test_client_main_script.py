"""The tf_exchange ``main_script.py`` driven as the NRP v4 Simulation Server runs it (``nrp``
wrapping the client, pause and stop between steps)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from hbp_nrp_simserver.wrapper import NrpCoreWrapper, NRPSimulationTimeout
from nrp_core.client import NrpCore
from tests.nrp_core.loop_helpers import TF_EXCHANGE


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_main_script_steps_until_the_budget_is_used(tmp_path: Path) -> None:
    experiment = tmp_path / "tf_exchange"
    shutil.copytree(TF_EXCHANGE, experiment)
    client = NrpCore(
        "localhost:5345", experiment_folder=str(experiment), config_file="simulation_config.json"
    )
    client.initialize()
    nrp = NrpCoreWrapper(client, "0", timeout_s=1.0, timestep_s=0.01, timestep_ns=10_000_000)
    records = _Records()
    file_logger = logging.getLogger("tests.nrp_core.main_script")
    file_logger.propagate = False
    file_logger.setLevel(logging.DEBUG)
    file_logger.addHandler(records)
    script = experiment / "main_script.py"
    namespace = {
        "__name__": "__main__",
        "__file__": script.name,
        "nrp": nrp,
        "NRPSimulationTimeout": NRPSimulationTimeout,
        "file_logger": file_logger,
        "logging": logging,
    }
    try:
        exec(compile(script.read_text(), str(script), "exec"), namespace)
    finally:
        file_logger.removeHandler(records)
        client.shutdown()
    assert namespace["steps"] == 100
    assert client.current_state() == "Created"
    assert records.messages[0] == "tf_exchange: starting, 100 steps available"
    assert records.messages[-1] == "tf_exchange: simulation timeout after 100 steps"
    log = (experiment / ".console_output.log").read_text()
    assert log.count("DataPack 1 data is") == 100 and log.count("Engine 2 received data is") == 100
