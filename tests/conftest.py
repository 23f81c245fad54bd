"""Fixtures shared by every test package.

``mqtt_broker`` is a real broker child process, one per session and broker kind: the embedded amqtt
broker always, mosquitto too when it is installed (tests that use it run once per kind). A test may
``kill()`` or ``restart()`` it; the next test gets it running again on the same port.

``chromium`` and ``browser_page`` (headless Chromium through Playwright) come from
``tests/helpers/browser.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.brokers import BrokerProcess, broker_kinds, start_broker
from tests.helpers.browser import browser_page, chromium, pytest_runtest_makereport  # noqa: F401


@pytest.fixture(scope="session", params=broker_kinds())
def _mqtt_broker_process(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BrokerProcess]:
    workdir: Path = tmp_path_factory.mktemp(f"broker-{request.param}")
    broker = start_broker(request.param, workdir)
    yield broker
    broker.stop()


@pytest.fixture
def mqtt_broker(_mqtt_broker_process: BrokerProcess) -> BrokerProcess:
    """A running broker: ``host``, ``port``, ``kind``, ``settings(prefix)``, ``kill()``, ``restart()``."""
    _mqtt_broker_process.ensure_running()
    return _mqtt_broker_process
