"""Topic and node names: ``[prefix/]nrp_simulation/<id>/<leaf>`` and ``[prefix_]<node>``, with
and without a prefix."""

from hbp_nrp_commons.lifecycle import BACKEND_PROPAGATED, SimulationLifecycle
from hbp_nrp_commons.mqtt import (
    BACKEND_NODE,
    SIMSERVER_NODE,
    client_id,
    data_topic,
    lifecycle_topic,
    node_name,
    runtime_error_topic,
    status_topic,
)


def test_topics_without_prefix_have_no_leading_slash() -> None:
    assert lifecycle_topic("", 3) == "nrp_simulation/3/lifecycle"
    assert status_topic("", 3) == "nrp_simulation/3/status"
    assert runtime_error_topic("", 3) == "nrp_simulation/3/runtime_error"
    assert data_topic("", 3) == "nrp_simulation/3/data"
    assert data_topic("", 3, "camera") == "nrp_simulation/3/data/camera"


def test_topics_with_prefix_start_with_it() -> None:
    assert lifecycle_topic("pfx", 0) == "pfx/nrp_simulation/0/lifecycle"
    assert status_topic("pfx", 0) == "pfx/nrp_simulation/0/status"
    assert runtime_error_topic("pfx", 0) == "pfx/nrp_simulation/0/runtime_error"
    assert data_topic("pfx", 0, "joints") == "pfx/nrp_simulation/0/data/joints"
    assert lifecycle_topic("pfx", "+") == "pfx/nrp_simulation/+/lifecycle"


def test_node_names() -> None:
    assert node_name("", BACKEND_NODE) == "nrp_backend"
    assert node_name("", SIMSERVER_NODE) == "nrp_simulation_server"
    assert node_name("pfx", BACKEND_NODE) == "pfx_nrp_backend"
    assert node_name("pfx", SIMSERVER_NODE) == "pfx_nrp_simulation_server"


def test_client_ids_are_unique_and_carry_base_and_id() -> None:
    ids = {client_id("nrp_backend", 7) for _ in range(50)}
    assert len(ids) == 50
    assert all(i.startswith("nrp_backend_7_") for i in ids)


def test_lifecycle_uses_prefixed_topic_and_node() -> None:
    plain = SimulationLifecycle(5, None, BACKEND_NODE, "", BACKEND_PROPAGATED, True)
    assert (plain.topic, plain.node) == ("nrp_simulation/5/lifecycle", "nrp_backend")
    prefixed = SimulationLifecycle(5, None, SIMSERVER_NODE, "pfx", BACKEND_PROPAGATED, False)
    assert (prefixed.topic, prefixed.node) == ("pfx/nrp_simulation/5/lifecycle", "pfx_nrp_simulation_server")
