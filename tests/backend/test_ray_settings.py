"""The Ray executor's settings and resource requests, and its actor's rules, without a cluster."""

from __future__ import annotations

import pytest

from hbp_nrp_backend.config import load_backend_config
from hbp_nrp_backend.executors.ray_node import NodeLaunch, SimulationActor
from hbp_nrp_backend.executors.ray_settings import (
    ResourceRequestError,
    Resources,
    experiment_resources,
)
from hbp_nrp_backend.simserver_process import ProcessExit
from hbp_nrp_commons.settings import SettingsError

DEFAULTS = Resources(num_cpus=1.0, memory_mb=512, custom=(("nrp_sim", 1.0),))


def test_an_experiment_asks_for_more_never_less() -> None:
    asked = {"RayResources": {"num_cpus": 2.5, "memory_mb": 64, "resources": {"gpu_node": 1, "nrp_sim": 0.5}}}
    got = experiment_resources(DEFAULTS, asked, "simulation_config.json")
    assert got == Resources(num_cpus=2.5, memory_mb=512, custom=(("gpu_node", 1.0), ("nrp_sim", 1.0)))
    assert experiment_resources(DEFAULTS, {}, "simulation_config.json") is DEFAULTS
    assert got.ray_options() == {
        "num_cpus": 2.5,
        "resources": {"gpu_node": 1.0, "nrp_sim": 1.0},
        "memory": 512 << 20,
    }


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        ({"num_cpus": -2}, "RayResources.num_cpus"),
        ({"num_cpus": 0.00001}, "RayResources.num_cpus"),
        ({"num_gpus": 1.5}, "RayResources.num_gpus"),
        ({"resources": {"CPU": 4}}, "RayResources.resources"),
        ({"resources": {"memory": 4}}, "RayResources.resources"),
        ({"resources": {"x_group_y": 1}}, "RayResources.resources"),
        ({"resources": {"bad name": 1}}, "RayResources.resources"),
        ({"resources": {"gpu_node": 0}}, "RayResources.resources.gpu_node"),
        ({"cpus": 2}, "RayResources"),
        ("four", "RayResources"),
    ],
)
def test_a_bad_request_names_its_field(request_: object, field: str) -> None:
    with pytest.raises(ResourceRequestError) as caught:
        experiment_resources(DEFAULTS, {"RayResources": request_}, "sim.json")
    assert str(caught.value).startswith(f"sim.json: {field}"), caught.value


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"NRP_EXECUTOR": "docker"}, "NRP_EXECUTOR must be one of local, ray"),
        ({"NRP_RAY_RESOURCES": "[1]"}, "NRP_RAY_RESOURCES must be a JSON object"),
        ({"NRP_RAY_RESOURCES": '{"CPU": 2}'}, "'CPU' is Ray's own resource"),
        ({"NRP_RAY_NUM_CPUS": "0"}, "NRP_RAY_NUM_CPUS must be positive"),
        ({"NRP_RAY_MEMORY_MB": "lots"}, "NRP_RAY_MEMORY_MB must be a whole number"),
        ({"NRP_RAY_NAMESPACE": "a b"}, "NRP_RAY_NAMESPACE must be"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], message: str, tmp_path: object) -> None:
    with pytest.raises(SettingsError, match=message):
        load_backend_config({"NRP_DATA_DIR": str(tmp_path), **env})


def test_the_memory_reservation_defaults_to_the_sandbox_limit(tmp_path: object) -> None:
    config = load_backend_config({"NRP_DATA_DIR": str(tmp_path), "NRP_SANDBOX_MEMORY_MB": "700"})
    assert config.ray.defaults.memory_mb == 700 and config.ray.address == "auto"


def test_an_exit_after_the_lease_ran_out_is_a_failure_with_its_reason() -> None:
    actor = SimulationActor(
        NodeLaunch(
            sim_id=3,
            experiment_id="e",
            experiment_configuration="c.json",
            main_script="m.py",
            owner="o",
            token="t",
            storage_url="http://storage",
            mqtt_address="broker:1",
            lease=0,  # no lease thread here
        )
    )
    actor._lease_expired = True  # as stop(lease_expired=True) sets it before terminating
    actor._process_exited(ProcessExit(-15, requested=True, failed=False))
    exit = actor.wait_exit()
    assert exit["failed"] is True and exit["requested"] is False
    assert "did not renew its lease" in exit["reason"] and "NRP_RAY_LEASE" in exit["reason"]
