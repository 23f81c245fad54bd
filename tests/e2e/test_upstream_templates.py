"""nrp-core's ``templates/tf_exchange`` with ``python_grpc`` engines and protobuf datapacks, and with
the datatransfer engine streaming protobuf datapacks, launched through the REST server: uploaded as
they are (the chosen config saved as ``simulation_config.json``), run by a Simulation Server to
``SimulationTimeout`` with the template's own main script. Skipped when nrp-core's examples
(``../shared/upstream/nrp-core``) are absent."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.e2e.conftest import System

TEMPLATE = (
    Path(__file__).resolve().parents[2].parent / "shared/upstream/nrp-core/examples/templates/tf_exchange"
)
ONE_BROKER = pytest.mark.parametrize("_mqtt_broker_process", ["amqtt"], indirect=True)


@ONE_BROKER
@pytest.mark.skipif(not TEMPLATE.is_dir(), reason=f"nrp-core's examples are not at {TEMPLATE}")
@pytest.mark.parametrize("config", ["simulation_config_grpc.json", "simulation_config_datatransfer.json"])
def test_tf_exchange_template_through_rest(system: System, tmp_path: Path, config: str) -> None:
    experiment = "e2e_template_" + config.removeprefix("simulation_config_").removesuffix(".json")
    source = tmp_path / experiment
    shutil.copytree(TEMPLATE, source, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copyfile(source / config, source / "simulation_config.json")
    system.storage.client().upload_experiment(system.storage.alice, experiment, source)

    rest = system.start_backend().rest
    sim_id = rest.launch(experiment)["simulationID"]
    rest.wait_for(sim_id, lambda sim: bool(sim["ready"]), timeout=60)
    assert rest.set_state(sim_id, "started").status_code == 200
    sim = rest.wait_for(sim_id, lambda sim: sim["state"] in ("completed", "failed"), timeout=120)
    assert sim["state"] == "completed" and sim["error"] is None, sim
    assert rest.set_state(sim_id, "stopped").status_code == 200
