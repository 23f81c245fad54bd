"""``nrp up``: the whole system on one machine, on its embedded defaults.

Starts, in order, the MQTT broker (embedded amqtt in its own process unless
``NRP_MQTT_BROKER_ADDRESS`` names an external one), the storage server with the bundled experiments
and user ``nrpuser`` on a private port, the REST server, and the gateway on the public port (storage
API, frontend files, MQTT over WebSocket: ``nrp_cli.frontend_up``); writes ``nrp-up.env`` in the data
root so the other ``nrp`` commands find the URLs and the token; prints one line per simulation event
(the REST server's ``nrp.events`` log lines, see :mod:`hbp_nrp_backend.events`); stops everything in
reverse order on
Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import click

from hbp_nrp_backend.events import event_message
from hbp_nrp_commons.broker import port_is_free
from hbp_nrp_commons.service_process import ServiceProcess, ServiceStartError, start_service
from hbp_nrp_commons.settings import DEFAULT_MQTT_PORT, Settings, load_settings
from nrp_cli import frontend_up
from nrp_cli.up_env import write_up_env

BUNDLED_OWNER = "nrpuser"
PORT = click.IntRange(0, 65535)


class UpError(click.ClickException):
    """A start-up problem reported to the user; nothing is left running."""


@dataclass
class RunningSystem:
    """URLs and processes of one ``nrp up``."""

    backend_url: str
    storage_url: str
    broker_address: str
    broker_embedded: bool
    token: str
    login: str = ""
    frontend_url: str | None = None


def _require_free(host: str, port: int, option: str, variable: str) -> None:
    if not port_is_free(host, port):
        raise UpError(f"Port {port} on {host} is busy; choose another with {option} or {variable}")


def import_bundled_experiments(storage_url: str, token: str, storage_root: Path) -> list[str]:
    """Create every bundled experiment that storage lacks, under its own folder name, public to all.

    Each one goes through the storage API (``StorageClient.upload_experiment``) from a clean copy
    without Python caches, then its record is made ``Public`` and owned by ``nrpuser``.

    Returns:
        the names of the experiments created now.
    """
    import nrp_experiments
    from hbp_nrp_backend.storage_client import StorageClient, StorageError
    from hbp_nrp_storage.users import UserStore

    store = UserStore(storage_root)
    client = StorageClient(storage_url, timeout=30)
    created = []
    try:
        for folder in nrp_experiments.bundled_experiments():
            name = folder.name
            if store.get_experiment(name) is not None:
                continue
            with tempfile.TemporaryDirectory(prefix="nrp-up-") as staging:
                clean = Path(staging) / name
                shutil.copytree(folder, clean, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
                try:
                    client.upload_experiment(token, name, clean)
                except StorageError as exc:
                    raise UpError(f"Could not import bundled experiment {name}: {exc}") from exc
            store.add_experiment(name, BUNDLED_OWNER, "Public")
            created.append(name)
    finally:
        client.close()
    return created


def issue_owner_token(storage_root: Path) -> str:
    """Create ``nrpuser`` on first start; return a fresh token for it at every start."""
    from hbp_nrp_storage.users import UserStore

    store = UserStore(storage_root)
    if not store.user_exists(BUNDLED_OWNER):
        return store.add_user(BUNDLED_OWNER)
    return store.issue_token(BUNDLED_OWNER)


def save_up_env(data_dir: Path, system: RunningSystem) -> Path:
    """Write ``nrp-up.env`` (mode 0600) with the URLs and token the CLI reads."""
    return write_up_env(
        data_dir,
        {
            "NRP_BACKEND_URL": system.backend_url,
            "NRP_STORAGE_URL": system.storage_url,
            "NRP_MQTT_BROKER_ADDRESS": system.broker_address,
            "NRP_TOKEN": system.token,
        },
    )


def path_hint(environ: Mapping[str, str] | None = None) -> str | None:
    """How to reach this ``nrp`` from another terminal; ``None`` when ``nrp`` on the PATH is this one.

    ``make run`` starts ``.venv/bin/nrp`` without activating the virtual environment, so a second
    terminal usually lacks ``nrp``: the hint names the ``activate`` script (relative when under the
    current folder).
    """
    environ = os.environ if environ is None else environ
    bin_dir = Path(sys.executable).parent
    found = shutil.which("nrp", path=environ.get("PATH", ""))
    if found and Path(found).resolve() == (bin_dir / "nrp").resolve():
        return None
    activate = bin_dir / "activate"
    if not activate.is_file():
        return f"In another terminal, put {bin_dir} on the PATH to use nrp"
    try:
        where = f"in this folder, `. {activate.relative_to(Path.cwd())}`"
    except ValueError:
        where = f"`. {activate}`"
    return f"In another terminal, {where} puts nrp on the PATH"


def _relay_output(name: str, verbose: bool) -> Callable[[str], None]:
    """Print every line of a server with ``--verbose``; else only the REST server's simulation events."""

    def on_line(line: str) -> None:
        if verbose:
            click.echo(f"[{name}] {line}", nl=False)
        elif name == "backend":
            message = event_message(line)
            if message is not None:
                click.echo(f"{time.strftime('%H:%M:%SZ', time.gmtime())} {message}")  # UTC, as every time

    return on_line


class Stack:
    """The processes of one ``nrp up``, stopped in reverse start order."""

    def __init__(
        self,
        settings: Settings,
        host: str,
        port: int,
        storage_port: int,
        verbose: bool,
        broker_port: int = DEFAULT_MQTT_PORT,
        frontend: Path | None = None,
    ) -> None:
        self.settings = settings
        self.host = host
        self.port = port
        self.storage_port = storage_port
        self.verbose = verbose
        self.broker_port = broker_port
        self.frontend = frontend
        self.services: list[tuple[str, ServiceProcess]] = []

    def _start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> ServiceProcess:
        try:
            service = start_service(
                args, env=env, timeout=60, on_line=_relay_output(name, self.verbose), die_with_parent=True
            )
        except ServiceStartError as exc:
            raise UpError(f"{name} did not start: {exc}") from exc
        self.services.append((name, service))
        return service

    def start(self) -> RunningSystem:
        python = sys.executable
        external = os.environ.get("NRP_MQTT_BROKER_ADDRESS", "").strip()
        if self.port != self.storage_port:
            _require_free(self.host, self.port, "--port", "NRP_BACKEND_PORT")
        _require_free(self.host, self.storage_port, "--storage-port", "NRP_STORAGE_PORT")
        if self.port == self.storage_port and self.port != 0:
            raise UpError("--port and --storage-port must differ")

        if external:
            broker_address = f"{self.settings.mqtt.host}:{self.settings.mqtt.port}"
            embedded = False
        else:
            wanted = self.broker_port
            moved = wanted != 0 and not port_is_free("127.0.0.1", wanted)
            broker_port = 0 if moved else wanted
            broker = self._start(
                "broker",
                [python, "-m", "hbp_nrp_commons.broker", "--host", "127.0.0.1", "--port", str(broker_port)],
            )
            if moved:
                click.echo(f"Port {wanted} is busy; the embedded MQTT broker uses port {broker.port}")
            broker_address = f"127.0.0.1:{broker.port}"
            embedded = True

        # storage listens privately; the gateway shares the public port with the frontend and MQTT
        storage_root = self.settings.storage.root
        servers_file = frontend_up.servers_file(self.settings.data_dir)
        frontend_up.write_servers_file(servers_file, None, 0)
        storage_args = [python, "-m", "nrp_cli.main", "storage", "--root", str(storage_root)]
        storage_args += ["--host", "127.0.0.1", "--port", "0", "--backends-file", str(servers_file)]
        if self.frontend is not None:
            storage_args += ["--frontend", str(self.frontend)]
        storage = self._start("storage", storage_args)
        storage_url = storage.url
        token = issue_owner_token(storage_root)
        login = frontend_up.ensure_login(storage_root, BUNDLED_OWNER)
        created = import_bundled_experiments(storage_url, token, storage_root)
        if created:
            click.echo(f"Imported bundled experiments: {', '.join(created)}")

        backend = self._start(
            "backend",
            [python, "-m", "nrp_cli.main", "backend", "--host", self.host, "--port", str(self.port)],
            env={"NRP_STORAGE_URL": storage_url, "NRP_MQTT_BROKER_ADDRESS": broker_address},
        )
        max_simulations = int(os.environ.get("NRP_MAX_SIMULATIONS", "").strip() or 8)
        frontend_up.write_servers_file(servers_file, backend.url, max_simulations)
        gateway = self._start(
            "gateway",
            frontend_up.gateway_args(python, self.host, self.storage_port, storage.port, broker_address),
        )
        return RunningSystem(
            backend_url=backend.url,
            storage_url=gateway.url,
            broker_address=broker_address,
            broker_embedded=embedded,
            token=token,
            login=login,
            frontend_url=frontend_up.browser_url(gateway.url) + "/" if self.frontend is not None else None,
        )

    def first_dead(self) -> str | None:
        for name, service in self.services:
            if not service.alive():
                return name
        return None

    def stop(self) -> None:
        """Stop the REST server first (it stops simulations, uploads logs), then storage, then broker."""
        grace = float(os.environ.get("NRP_STOP_GRACE", "10") or 10)
        for name, service in reversed(self.services):
            timeout = grace + 30 if name == "backend" else 10
            service.stop(timeout=timeout)
            if self.verbose:
                click.echo(f"Stopped {name}")
        self.services.clear()


def register(cli: click.Group) -> None:
    """Add ``nrp up`` to the command group."""

    @cli.command("up")
    @click.option(
        "--host", default=None, help="Listen address of the REST server and public port [127.0.0.1]."
    )
    @click.option("--port", type=PORT, default=None, help="REST server port [NRP_BACKEND_PORT or 8090].")
    @click.option(
        "--storage-port",
        type=PORT,
        default=None,
        help="Public port: storage API, frontend files, MQTT over WebSocket [NRP_STORAGE_PORT or 9000].",
    )
    @click.option(
        "--broker-port",
        type=int,
        default=DEFAULT_MQTT_PORT,
        show_default=True,
        help="Port of the embedded MQTT broker (a free one if busy; 0: any free port).",
    )
    @click.option("--verbose", is_flag=True, help="Show the servers' own output.")
    @click.option(
        "--frontend",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="NRP frontend build folder served on the storage port [NRP_FRONTEND_DIR].",
    )
    def up(
        host: str | None,
        port: int | None,
        storage_port: int | None,
        broker_port: int,
        verbose: bool,
        frontend: Path | None,
    ) -> None:
        """Start the MQTT broker, the storage server, the REST server and the gateway; Ctrl-C stops them.

        While they run, one line per simulation event (launched, started, paused, completed,
        stopped, failed, logs uploaded or spooled) is printed.
        """
        settings = load_settings()
        try:
            frontend = frontend_up.frontend_dir(frontend)
        except frontend_up.FrontendDirError as exc:
            raise UpError(str(exc)) from exc
        stack = Stack(
            settings,
            host=host or settings.backend_host,
            port=settings.backend_port if port is None else port,
            storage_port=settings.storage.port if storage_port is None else storage_port,
            verbose=verbose,
            broker_port=broker_port,
            frontend=frontend,
        )
        stopping = threading.Event()

        def request_stop(signum: int, _frame: object) -> None:
            stopping.set()

        previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            system = stack.start()
            save_up_env(settings.data_dir, system)
            kind = "embedded" if system.broker_embedded else "external"
            click.echo(f"REST API: {system.backend_url}")
            click.echo(f"API docs: {system.backend_url}/docs")
            click.echo(f"Storage: {system.storage_url}")
            click.echo(f"MQTT broker: {system.broker_address} ({kind})")
            click.echo(f"Token: {system.token}")
            click.echo(system.login)
            if system.frontend_url:
                click.echo(f"Frontend: {system.frontend_url}")
            hint = path_hint()
            if hint:
                click.echo(hint)
            click.echo("Press Ctrl-C to stop. Simulation events follow.")
            sys.stdout.flush()
            while not stopping.wait(0.5):
                dead = stack.first_dead()
                if dead:
                    raise UpError(f"the {dead} process exited unexpectedly")
        finally:
            stack.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
