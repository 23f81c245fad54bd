"""The ``nest_json`` engine on a re-expression of nrp-core's ``nest_simple`` example."""

from __future__ import annotations

import math

import pytest

from tests.sim.helpers import require


def test_nest_simple_devices_as_datapacks(run_experiment):
    require("nest")
    run = run_experiment("nest_simple")
    initial = run.client.initialize()
    kernel = next(item for item in initial if isinstance(item, dict) and "biological_time" in item)
    assert kernel["rng_seed"] == 7 and kernel["resolution"] == 0.1
    noise_at_start = next(
        item for item in initial if isinstance(item, list) and item[0]["model"] == "poisson_generator"
    )
    assert [node["rate"] for node in noise_at_start] == [15000.0, 15000.0]

    done, timeout, observations = run.client.run_until_timeout()
    assert (done, timeout) == (False, True)
    assert len(observations) == 20  # 0.2 s at 10 ms
    for step, observation in enumerate(observations):
        assert observation["t_ns"] == step * 10_000_000
        # the engine time is NEST's biological time; the voltmeter records every 1 ms from 1 ms on
        assert observation["biological_time"] == pytest.approx(step * 10.0)
        assert observation["voltage_events"] == max(0, step * 10 - 1)
        assert observation["rng_seed"] == 7
        if step >= 1:
            # the TF of the previous batch set one rate per node (a JSON array), applied before the step
            t = (step - 1) * 0.01
            expected = [10000.0 + 5000.0 * math.sin(10 * t), 10000.0 + 5000.0 * math.cos(10 * t)]
            assert observation["rates"] == pytest.approx(expected)
            assert -80.0 < observation["last_v_m"] < -50.0


def test_nest_reset_rebuilds_the_network(run_experiment):
    require("nest")
    run = run_experiment("nest_simple", "SimulationTimeout=0.05")
    run.client.initialize()
    run.client.run_until_timeout()
    fetched = run.client.reset()
    kernel = next(item for item in fetched if isinstance(item, dict) and "biological_time" in item)
    voltage = next(item for item in fetched if isinstance(item, list) and item[0]["model"] == "voltmeter")
    assert kernel["biological_time"] == 0.0 and kernel["rng_seed"] == 7
    assert voltage[0]["n_events"] == 0
    _, _, observations = run.client.run_until_timeout()
    assert [o["voltage_events"] for o in observations] == [0, 9, 19, 29, 39]


def test_nest_server_rejects_unknown_datapacks_and_bad_data(tmp_path):
    require("nest")
    from nrp_core.data.nrp_json import JSON_DATAPACK_TYPE
    from nrp_core.engines.nest_json.server import NestEngineError, NestEngineServer

    brain = tmp_path / "brain.py"
    brain.write_text(
        "from nrp_core.engines.nest_json import CreateDataPack, GetDevMap\n"
        "CreateDataPack('dc', 'dc_generator', params={'amplitude': 5.0})\n"
        "assert list(GetDevMap()) == ['dc']\n"
    )
    server = NestEngineServer()
    server.initialize(
        {
            "EngineName": "brain",
            "NestInitFileName": str(brain),
            "EngineTimestep": 0.02,
            "TimeRatio": [1, 1000000000],
        }
    )

    def entry(data):
        return {"engine_name": "brain", "type": JSON_DATAPACK_TYPE, "data": data}

    server.set_datapacks({"dc": entry({"amplitude": 7.5})})  # one object: applied to every node
    reply = server.get_datapacks({"dc": {"engine_name": "brain", "type": JSON_DATAPACK_TYPE}})
    assert reply["dc"]["data"][0]["amplitude"] == 7.5
    assert server.run_loop({"time_step": 20_000_000}) == {"time": 20_000_000}
    with pytest.raises(NestEngineError, match=r"engine 'brain'.*unregistered DataPack \(nope\)"):
        server.set_datapacks({"nope": entry({"amplitude": 1.0})})
    with pytest.raises(NestEngineError, match=r"engine 'brain'.*unregistered DataPack \(nope\)"):
        server.get_datapacks({"nope": {"engine_name": "brain", "type": JSON_DATAPACK_TYPE}})
    with pytest.raises(NestEngineError, match=r"SetStatus of DataPack 'dc' failed"):
        server.set_datapacks({"dc": entry({"no_such_parameter": 1.0})})
    with pytest.raises(NestEngineError, match="object or an array"):
        server.set_datapacks({"dc": entry(3.0)})
    server.shutdown()


def test_nest_timestep_must_fit_the_resolution(tmp_path):
    require("nest")
    from nrp_core.engines.nest_json.server import NestEngineError, NestEngineServer

    brain = tmp_path / "brain.py"
    brain.write_text("import nest\nnest.ResetKernel()\nnest.resolution = 0.3\n")
    server = NestEngineServer()
    with pytest.raises(NestEngineError, match=r"EngineTimestep 0.01 s is not a whole multiple .* 0.3 ms"):
        server.initialize(
            {
                "EngineName": "n",
                "NestInitFileName": str(brain),
                "EngineTimestep": 0.01,
                "TimeRatio": [1, 1000000000],
            }
        )
    # a timestep that 0.1 ms does not divide gets a finer resolution
    brain.write_text("import nest\n")
    server.initialize(
        {
            "EngineName": "n",
            "NestInitFileName": str(brain),
            "EngineTimestep": 0.00025,
            "TimeRatio": [1, 1000000000],
        }
    )
    assert server.run_loop({"time_step": 250_000}) == {"time": 250_000}
    server.shutdown()
