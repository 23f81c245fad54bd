from pathlib import Path

import pytest

from hbp_nrp_commons.settings import SettingsError, load_settings


def test_defaults_live_under_one_data_root(tmp_path: Path) -> None:
    settings = load_settings({"NRP_DATA_DIR": str(tmp_path)})
    assert settings.data_dir == tmp_path
    assert settings.storage.root == tmp_path / "storage"
    assert settings.backend_dir == tmp_path / "backend"
    assert settings.storage.port == 9000
    assert settings.backend_port == 8090
    assert settings.mqtt.port == 1883
    assert settings.storage_url == "http://localhost:9000/storage"


def test_environment_overrides(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "NRP_DATA_DIR": str(tmp_path),
            "STORAGE_PATH": str(tmp_path / "elsewhere"),
            "NRP_STORAGE_PORT": "0",
            "NRP_MQTT_BROKER_ADDRESS": "broker.example:2883",
            "NRP_STORAGE_URL": "http://127.0.0.1:1234/",
        }
    )
    assert settings.storage.root == tmp_path / "elsewhere"
    assert settings.storage.port == 0
    assert (settings.mqtt.host, settings.mqtt.port) == ("broker.example", 2883)
    assert settings.storage_url == "http://127.0.0.1:1234"


def test_bad_value_names_the_variable() -> None:
    with pytest.raises(SettingsError, match="NRP_STORAGE_PORT"):
        load_settings({"NRP_STORAGE_PORT": "ninety"})


@pytest.mark.parametrize("value", ["", "host:host:90", "host:host", ":1883", "host:70000"])
def test_unusable_broker_address_falls_back_to_default(value: str) -> None:
    settings = load_settings({"NRP_MQTT_BROKER_ADDRESS": value})
    assert (settings.mqtt.host, settings.mqtt.port) == ("localhost", 1883)


def test_storage_port_builds_the_original_url() -> None:
    assert load_settings({"STORAGE_PORT": "99"}).storage_url == "http://localhost:99/storage"
