"""Experiment configuration loading (timestep, timeout, main script) and how the Simulation Server
builds its nrp-core client from it."""

from __future__ import annotations

import json
import logging

import pytest

from hbp_nrp_commons.settings import MqttSettings
from hbp_nrp_simserver.config import load_experiment_config, nrp_core_args
from hbp_nrp_simserver.errors import ConfigurationError
from hbp_nrp_simserver.server import SimulationServer

DATATRANSFER = {
    "EngineType": "datatransfer_grpc_engine",
    "EngineName": "datatransfer_engine",
    "MQTTBroker": "localhost:1883",
    "simulationID": "0",
    "MQTTPrefix": "localhost",
    "dumps": [],
}


def write_config(experiment, name="simulation_config_datatransfer.json", **changes):
    config = json.loads((experiment / "simulation_config.json").read_text())
    config.update(changes)
    (experiment / name).write_text(json.dumps(config))
    return experiment / name


def test_tf_exchange_defaults(experiment):
    config = load_experiment_config(experiment / "simulation_config.json")
    assert (config.timeout, config.timestep, config.timestep_ns) == (1.0, 0.01, 10_000_000)
    assert config.max_timesteps == 100
    assert config.datatransfer_index is None
    assert nrp_core_args(config, "4", "localhost:1883", "") == ""


def test_missing_timeout_means_zero_steps(experiment):
    config = json.loads((experiment / "simulation_config.json").read_text())
    del config["SimulationTimeout"]
    (experiment / "no_timeout.json").write_text(json.dumps(config))
    loaded = load_experiment_config(experiment / "no_timeout.json")
    assert (loaded.timeout, loaded.max_timesteps, loaded.timestep) == (0.0, 0, 0.01)


def test_timestep_is_the_minimum_engine_timestep_and_wins_over_simulation_timestep(experiment, caplog):
    config = json.loads((experiment / "simulation_config.json").read_text())
    config["EngineConfigs"][0]["EngineTimestep"] = 0.04
    config["EngineConfigs"][1]["EngineTimestep"] = 0.02
    config["SimulationTimestep"] = 0.1
    (experiment / "rates.json").write_text(json.dumps(config))
    with caplog.at_level(logging.WARNING):
        loaded = load_experiment_config(experiment / "rates.json")
    assert (loaded.timestep, loaded.timestep_ns, loaded.max_timesteps) == (0.02, 20_000_000, 50)
    assert "SimulationTimestep 0.1 differs" in caplog.text


def test_no_engines_gives_the_default_timestep(experiment):
    path = write_config(experiment, "empty.json", EngineConfigs=[], DataPackProcessingFunctions=[])
    loaded = load_experiment_config(path)
    assert (loaded.timestep, loaded.max_timesteps) == (0.01, 100)


def test_invalid_json_names_the_file(experiment, monkeypatch):
    monkeypatch.chdir(experiment)
    (experiment / "broken.json").write_text("{")
    with pytest.raises(ConfigurationError, match=r"^Could not parse experiment configuration broken.json: "):
        load_experiment_config("broken.json")


def test_schema_error_and_missing_file(experiment):
    path = write_config(experiment, "bad.json", SimulationTimeout="soon")
    with pytest.raises(ConfigurationError, match="SimulationTimeout"):
        load_experiment_config(path)
    with pytest.raises(FileNotFoundError):
        load_experiment_config(experiment / "absent.json")


def test_datatransfer_overrides_are_quoted_with_the_engine_index(experiment):
    config = json.loads((experiment / "simulation_config.json").read_text())
    path = write_config(experiment, EngineConfigs=[*config["EngineConfigs"], DATATRANSFER])
    loaded = load_experiment_config(path)
    assert loaded.datatransfer_index == 2
    assert nrp_core_args(loaded, "0", "localhost:18731", "") == (
        '-o EngineConfigs.2.simulationID="0" -o EngineConfigs.2.MQTTBroker="localhost:18731" '
        '-o EngineConfigs.2.MQTTPrefix=""'
    )


def test_simserver_builds_the_client_with_config_file_and_overrides(experiment, monkeypatch):
    monkeypatch.chdir(experiment)
    config = json.loads((experiment / "simulation_config.json").read_text())
    path = write_config(experiment, EngineConfigs=[DATATRANSFER, *config["EngineConfigs"]])
    server = SimulationServer(
        experiment, "12", "main_script.py", path.name, MqttSettings("broker.test", 4321, "")
    )
    server.config = load_experiment_config(path.name)
    client = server.create_client()
    try:
        engine = client.config["EngineConfigs"][0]
        assert (engine["simulationID"], engine["MQTTBroker"], engine["MQTTPrefix"]) == (
            "12",
            "broker.test:4321",
            "",
        )
        assert client.experiment_dir == experiment.resolve()
        assert client.current_state() == "Created"
    finally:
        del client
