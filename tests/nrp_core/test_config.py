"""Loading, overriding (``-o key=value``) and validating simulation_config.json against its schema."""

import json
import logging
import os

import numpy as np
import pytest

from nrp_core.config import (
    ConfigError,
    apply_overrides,
    complete_engine_config,
    load_simulation_config,
    resolve_experiment_paths,
    timeout_to_ns,
    timestep_to_ns,
)

ENGINE_1 = {"EngineType": "python_json", "EngineName": "python_1", "PythonFileName": "engine_1.py"}
ENGINE_2 = {"EngineType": "python_json", "EngineName": "python_2", "PythonFileName": "engine_2.py"}


def write_experiment(directory, config, files=("tf_1.py",), name="simulation_config.json"):
    directory.mkdir(parents=True, exist_ok=True)
    for file_name in files:
        (directory / file_name).write_text("")
    path = directory / name
    path.write_text(json.dumps(config))
    return path


def tf_exchange_config():
    return {
        "SimulationName": "tf_exchange",
        "SimulationDescription": "two engines and a TF",
        "SimulationTimeout": 1,
        "EngineConfigs": [dict(ENGINE_1), dict(ENGINE_2)],
        "DataPackProcessingFunctions": [{"Name": "tf_1", "FileName": "tf_1.py"}],
    }


# -- defaults -------------------------------------------------------------------------------------


def test_defaults_are_filled_including_nested_engine_defaults(tmp_path):
    path = write_experiment(tmp_path, tf_exchange_config())
    config, directory = load_simulation_config(path)
    assert directory == tmp_path.resolve()
    assert config["SimulationLoop"] == "FTILoop"
    assert config["DataPackProcessor"] == "tf"
    assert config["ProcessLauncherType"] == "Basic"
    assert config["ExternalProcesses"] == []
    assert config["ComputationalGraph"] == []
    assert config["SimulationTimeout"] == 1
    for engine in config["EngineConfigs"]:
        assert engine["EngineTimestep"] == 0.01
        assert engine["EngineCommandTimeout"] == 0.0
        assert engine["EngineLaunchCommand"] == {"LaunchType": "BasicFork"}
        assert "ServerAddress" not in engine  # engine-type defaults come with complete_engine_config
    assert config["DataPackProcessingFunctions"][0]["IsActive"] is True
    assert "FunctionArgumentsPassingMethod" not in config
    assert "StatusFunction" not in config


def test_empty_config_gets_empty_lists(tmp_path):
    config, _ = load_simulation_config(write_experiment(tmp_path, {}))
    assert config["EngineConfigs"] == []
    assert config["DataPackProcessingFunctions"] == []
    assert config["SimulationTimeout"] == 0


def test_nested_defaults_in_sub_schemas(tmp_path):
    doc = {
        "ExternalProcesses": [{"ProcCmd": "sleep"}],
        "StatusFunction": {"Name": "sf", "FileName": "sf.py"},
        "MQTTNode": {},
        "ROSNode": {},
        "EventLoop": {},
    }
    config, _ = load_simulation_config(write_experiment(tmp_path, doc, files=("sf.py",)))
    assert config["ExternalProcesses"][0] == {
        "ProcCmd": "sleep",
        "ProcStartParams": [],
        "ProcEnvParams": [],
        "LaunchCommand": {"LaunchType": "BasicFork"},
    }
    assert config["StatusFunction"]["IsActive"] is True
    # No MQTTBroker default: absent means NRP_MQTT_BROKER_ADDRESS, else localhost:1883 (event_loop.mqtt).
    assert config["MQTTNode"] == {"ClientName": "NRP-core-client"}
    assert config["ROSNode"] == {"NodeName": "nrp_core"}
    assert config["EventLoop"] == {
        "Timeout": 0,
        "Timestep": 0.01,
        "TimestepWarnThreshold": 0.001,
        "ExecutionMode": "AllNodes",
    }


def test_complete_engine_config_adds_type_defaults_and_time_ratio():
    engine = dict(ENGINE_1, EngineID=7)
    completed = complete_engine_config(engine)
    assert engine == dict(ENGINE_1, EngineID=7)  # input untouched
    assert completed["ServerAddress"] == "localhost:9002"
    assert completed["RegistrationServerAddress"] == "localhost:9001"
    assert completed["ServerOptions"] == ""
    assert completed["EngineProcStartParams"] == []
    assert completed["EngineEnvParams"] == []
    assert completed["EngineExtraConfigs"] == {}
    assert completed["EngineProcCmd"] == "python_json_engine.py"
    assert completed["EngineTimestep"] == 0.01
    assert completed["EngineLaunchCommand"] == {"LaunchType": "BasicFork"}
    assert completed["TimeRatio"] == [1, 1000000000]
    assert completed["EngineID"] == 7
    assert complete_engine_config(completed) == completed


def test_complete_engine_config_keeps_given_values():
    engine = dict(
        ENGINE_1,
        EngineProcStartParams=["-X dev"],
        EngineTimestep=0.02,
        EngineLaunchCommand={"LaunchType": "InProcess"},
    )
    completed = complete_engine_config(engine)
    assert completed["EngineProcStartParams"] == ["-X dev"]
    assert completed["EngineTimestep"] == 0.02
    assert completed["EngineLaunchCommand"] == {"LaunchType": "InProcess"}


def test_engine_type_defaults_of_other_types():
    py_sim = complete_engine_config(
        {
            "EngineType": "py_sim",
            "EngineName": "bullet",
            "PythonFileName": "s.py",
            "Simulator": "Bullet",
            "WorldFileName": "racecar.urdf",
        }
    )
    assert py_sim["Visualizer"] is False
    assert py_sim["EngineProcCmd"] == "python_json_engine.py"
    nest = complete_engine_config({"EngineType": "nest_json", "EngineName": "n", "NestInitFileName": "b.py"})
    assert nest["NestRNGSeed"] == 0
    assert nest["ServerAddress"] == "localhost:9002"
    grpc = complete_engine_config({"EngineType": "python_grpc", "EngineName": "g", "PythonFileName": "g.py"})
    assert grpc["ServerAddress"] == "localhost:9004"
    assert grpc["ProtobufPackages"] == ["EngineTest"]
    transfer = complete_engine_config(
        {"EngineType": "datatransfer_grpc_engine", "EngineName": "dt", "dumps": [{"name": "datapack1"}]}
    )
    assert transfer["ProtobufPackages"] == ["Dump"]
    assert transfer["MQTTBroker"] == "localhost:1883"
    assert transfer["simulationID"] == "0"
    assert transfer["dataDirectory"] == "data"
    assert transfer["streamDataPackMessage"] is True
    assert transfer["dumps"] == [{"name": "datapack1", "network": False, "file": False}]


def test_complete_engine_config_errors():
    with pytest.raises(ConfigError, match="Failed to find engine interface.*gazebo_grpc"):
        complete_engine_config({"EngineType": "gazebo_grpc", "EngineName": "g"})
    with pytest.raises(ConfigError, match="PythonFileName") as info:
        complete_engine_config({"EngineType": "python_json", "EngineName": "p"}, path="$.EngineConfigs[3]")
    assert info.value.problems[0].startswith("$.EngineConfigs[3]")
    with pytest.raises(ConfigError, match="ImageName"):
        complete_engine_config(dict(ENGINE_1, EngineLaunchCommand={"LaunchType": "DockerLauncher"}))


# -- validation errors ----------------------------------------------------------------------------


def test_validation_lists_every_problem_with_its_path(tmp_path):
    doc = {
        "SimulationLoop": "Sometimes",
        "SimulationTimeout": "long",
        "EngineConfigs": [
            {"EngineType": "python_json", "EngineName": "a", "PythonFileName": "a.py", "EngineTimestep": "x"},
            {"EngineType": "python_json", "PythonFileName": "b.py"},
            {"EngineType": "python_json", "EngineName": "a"},
        ],
        "DataPackProcessingFunctions": [{"Name": "tf"}],
    }
    with pytest.raises(ConfigError) as info:
        load_simulation_config(write_experiment(tmp_path, doc))
    problems = info.value.problems
    expected = [
        ("$.SimulationLoop", "is not one of"),
        ("$.SimulationTimeout", "is not of type 'number'"),
        ("$.EngineConfigs[0].EngineTimestep", "is not of type 'number'"),
        ("$.EngineConfigs[1]", "'EngineName' is a required property"),
        ("$.EngineConfigs[2]", "'PythonFileName' is a required property"),
        ("$.EngineConfigs[2].EngineName", "duplicate engine name 'a'"),
        ("$.DataPackProcessingFunctions[0]", "'FileName' is a required property"),
    ]
    for path, text in expected:
        assert any(p.startswith(path + ":") and text in p for p in problems), (path, problems)
    assert len(problems) == len(expected), problems
    assert isinstance(info.value, ValueError)
    assert str(tmp_path) in str(info.value)


def test_unknown_engine_type_fails_with_engine_interface_message(tmp_path):
    doc = {"EngineConfigs": [{"EngineType": "unity_grpc", "EngineName": "unity"}]}
    message = r"\$\.EngineConfigs\[0\]: Failed to find engine interface.*unity_grpc"
    with pytest.raises(ConfigError, match=message):
        load_simulation_config(write_experiment(tmp_path, doc))


@pytest.mark.parametrize(
    "engine_type, needs",
    [("gazebo_grpc", "Gazebo"), ("gazebo_json", "Gazebo"), ("edlut_grpc_engine", "EDLUT")],
)
def test_unreachable_simulators_are_refused_saying_why(tmp_path, engine_type, needs):
    doc = {"EngineConfigs": [{"EngineType": engine_type, "EngineName": "engine"}]}
    message = rf"\$\.EngineConfigs\[0\]: Failed to find .* '{engine_type}': not supported, it needs {needs}, "
    with pytest.raises(ConfigError, match=message):
        load_simulation_config(write_experiment(tmp_path, doc))


def test_function_files_must_exist_and_names_be_unique(tmp_path):
    doc = {
        "DataPackProcessingFunctions": [
            {"Name": "tf", "FileName": "tf_1.py"},
            {"Name": "tf", "FileName": "missing.py"},
            {"Name": "inactive", "FileName": "also_missing.py", "IsActive": False},
        ],
        "StatusFunction": {"Name": "sf", "FileName": "sf_missing.py"},
    }
    with pytest.raises(ConfigError) as info:
        load_simulation_config(write_experiment(tmp_path, doc))
    problems = info.value.problems
    assert any(p.startswith("$.DataPackProcessingFunctions[1].Name:") and "duplicate" in p for p in problems)
    assert any(
        p.startswith("$.DataPackProcessingFunctions[1].FileName:") and "missing.py" in p for p in problems
    )
    assert any(p.startswith("$.StatusFunction.FileName:") for p in problems)
    assert not any("also_missing" in p for p in problems)
    assert len(problems) == 3


def test_invalid_json_is_a_config_error(tmp_path):
    path = tmp_path / "simulation_config.json"
    path.write_text('{"SimulationTimeout": 1,\n "EngineConfigs": [}')
    with pytest.raises(ConfigError, match="line 2"):
        load_simulation_config(path)


# -- unknown keys ---------------------------------------------------------------------------------


def test_unknown_keys_warn_once_with_path_and_pass_through(tmp_path, caplog):
    doc = tf_exchange_config()
    doc["EngineConfigs"][0].update(EngineID=1, EngineTimeStep=0.02, EngineExtraConfigs={"anything": 1})
    doc["EngineConfigs"][1]["EngineLaunchCommand"] = {"LaunchType": "BasicFork", "Extra": 1}
    doc.update(StepNumber=3, cloneDate="2024", thumbnail="t.png", SimulationTimestep=0.02, EventLoopTimeout=0)
    with caplog.at_level(logging.WARNING, logger="nrp_core.config"):
        config, _ = load_simulation_config(write_experiment(tmp_path, doc))
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 4, messages
    assert any("'EngineID'" in m and "$.EngineConfigs[0].EngineID" in m for m in messages)
    assert any("'EngineTimeStep'" in m and "did you mean 'EngineTimestep'" in m for m in messages)
    assert any("'StepNumber'" in m and "$.StepNumber" in m for m in messages)
    assert any("$.EngineConfigs[1].EngineLaunchCommand.Extra" in m for m in messages)
    assert config["EngineConfigs"][0]["EngineID"] == 1
    assert config["StepNumber"] == 3


def test_unknown_keys_use_engine_type_schema(tmp_path, caplog):
    doc = {"EngineConfigs": [dict(ENGINE_1, ServerOptions="", ServerAddress="localhost:1")]}
    with caplog.at_level(logging.WARNING, logger="nrp_core.config"):
        load_simulation_config(write_experiment(tmp_path, doc))
    assert caplog.records == []


# -- overrides ------------------------------------------------------------------------------------


def test_override_adds_and_modifies_keys():
    doc = {"SimulationTimeout": 1}
    result = apply_overrides(doc, ["SimulationTimeout=5", "NewKey=false"])
    assert result == {"SimulationTimeout": 5, "NewKey": False}
    assert doc == {"SimulationTimeout": 1}


def test_override_nested_keys_and_missing_levels():
    doc = {"EngineConfigs": [dict(ENGINE_1), dict(ENGINE_2)]}
    result = apply_overrides(
        doc,
        [
            "EngineConfigs.1.EngineTimestep=0.02",
            'EngineConfigs.0.EngineLaunchCommand={"LaunchType":"InProcess"}',
            "A.B.C=1",
        ],
    )
    assert result["EngineConfigs"][1]["EngineTimestep"] == 0.02
    assert result["EngineConfigs"][0]["EngineLaunchCommand"] == {"LaunchType": "InProcess"}
    assert result["A"] == {"B": {"C": 1}}


def test_override_search_by_field():
    doc = {"EngineConfigs": [dict(ENGINE_1), dict(ENGINE_2)]}
    result = apply_overrides(doc, ["EngineConfigs.EngineName:python_2.EngineTimestep=0.04"])
    assert result["EngineConfigs"][1]["EngineTimestep"] == 0.04
    assert "EngineTimestep" not in result["EngineConfigs"][0]
    replaced = apply_overrides(doc, ["EngineConfigs.EngineName:python_1={}"])
    assert replaced["EngineConfigs"][0] == {}


@pytest.mark.parametrize(
    "override",
    [
        "EngineConfigs.2.EngineTimestep=0.1",
        "EngineConfigs.EngineName:python_9.EngineTimestep=0.1",
        "EngineConfigs.2=1",
        "EngineConfigs.x.y=1",
        "SimulationTimeout.x=1",
        "NoEquals",
        "=1",
    ],
)
def test_override_errors(override):
    doc = {"SimulationTimeout": 1, "EngineConfigs": [dict(ENGINE_1), dict(ENGINE_2)]}
    with pytest.raises(ConfigError):
        apply_overrides(doc, [override])


def test_override_values_are_json_or_plain_strings():
    result = apply_overrides(
        {},
        [
            'SimulationName="N"',
            "simulationID=abc-1",
            'Quoted="0"',
            "Number=0",
            "List=[1]",
            "Empty=",
        ],
    )
    assert result == {
        "SimulationName": "N",
        "simulationID": "abc-1",
        "Quoted": "0",
        "Number": 0,
        "List": [1],
        "Empty": "",
    }


def test_override_comma_splitting():
    result = apply_overrides({}, ["A=1,B=true", "C=x"])
    assert result == {"A": 1, "B": True, "C": "x"}
    with pytest.raises(ConfigError, match="'2]'"):  # values cannot contain commas
        apply_overrides({}, ["D=[1,2]"])


def test_overrides_apply_before_validation(tmp_path):
    path = write_experiment(tmp_path, tf_exchange_config())
    overrides = ["SimulationTimeout=5,EngineConfigs.0.EngineTimestep=0.02"]
    config, _ = load_simulation_config(path, overrides=overrides)
    assert config["SimulationTimeout"] == 5
    assert config["EngineConfigs"][0]["EngineTimestep"] == 0.02
    with pytest.raises(ConfigError, match=r"\$\.SimulationTimeout"):
        load_simulation_config(path, overrides=["SimulationTimeout=abc"])
    with pytest.raises(ConfigError, match="out of range"):
        load_simulation_config(path, overrides=["EngineConfigs.5.EngineTimestep=1"])


# -- paths ----------------------------------------------------------------------------------------


def test_missing_config_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_simulation_config(tmp_path / "nope.json")
    with pytest.raises(FileNotFoundError):
        load_simulation_config("nope.json", experiment_dir=tmp_path)
    with pytest.raises(FileNotFoundError):
        load_simulation_config(tmp_path)  # a directory is not a config file


def test_invalid_experiment_directory_raises(tmp_path):
    path = write_experiment(tmp_path, {})
    with pytest.raises(NotADirectoryError, match="experiment directory path .*missing is not a directory"):
        load_simulation_config(path.name, experiment_dir=tmp_path / "missing")
    with pytest.raises(NotADirectoryError):
        load_simulation_config(path.name, experiment_dir=path)


def test_experiment_directory_resolution(tmp_path, monkeypatch):
    experiment = tmp_path / "exp"
    path = write_experiment(experiment, {}, name="custom.json")
    cwd = os.getcwd()
    assert resolve_experiment_paths(path) == (path.resolve(), experiment.resolve())
    assert resolve_experiment_paths("custom.json", experiment) == (
        experiment.resolve() / "custom.json",
        experiment.resolve(),
    )
    assert resolve_experiment_paths(path, tmp_path)[1] == tmp_path.resolve()  # absolute config file
    monkeypatch.chdir(tmp_path)
    assert resolve_experiment_paths("exp/custom.json")[1] == experiment.resolve()
    monkeypatch.chdir(experiment)
    assert resolve_experiment_paths("custom.json")[1] == experiment.resolve()
    monkeypatch.chdir(cwd)
    load_simulation_config(path)
    assert os.getcwd() == cwd


def test_function_files_resolve_against_experiment_directory(tmp_path, monkeypatch):
    experiment = tmp_path / "exp"
    path = write_experiment(experiment, tf_exchange_config())
    monkeypatch.chdir(tmp_path)
    config, directory = load_simulation_config(path)
    assert directory == experiment.resolve()


# -- time conversions -----------------------------------------------------------------------------


def test_timesteps_convert_to_exact_milliseconds():
    assert timestep_to_ns(0.01) == 10_000_000
    assert timestep_to_ns(0.02) == 20_000_000
    assert timestep_to_ns(0.04) == 40_000_000
    assert timestep_to_ns(0.25) == 250_000_000
    assert timestep_to_ns(1) == 1_000_000_000


def test_timestep_conversion_matches_float32_arithmetic():
    values = [0.001, 0.003, 0.005, 0.0333, 0.1, 0.7, 1.1, 2.5e-4, 1e-6, 3.0, 0.123456]
    values += [float(v) for v in np.random.default_rng(0).uniform(0, 5, 200)]
    for seconds in values:
        expected = int(np.float32(np.float32(seconds) * np.float32(1e9)))
        assert timestep_to_ns(seconds) == expected, seconds


def test_timeout_conversion_is_double_precision():
    assert timeout_to_ns(1) == 1_000_000_000
    assert timeout_to_ns(0.5) == 500_000_000
    assert timeout_to_ns(0.01) == 10_000_000
    assert timeout_to_ns(0) == 0
