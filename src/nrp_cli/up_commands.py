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
import secrets
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
from nrp_cli.up_env import owner_token, write_up_env

BUNDLED_OWNER = "nrpuser"
PORT = click.IntRange(0, 65535)
#: Restart delays: 1 s after the first exit, doubled after each further one, at most 30 s; a server
#: that ran RESTART_RESET seconds counts as healthy again.
RESTART_DELAY = 1.0
RESTART_MAX_DELAY = 30.0
RESTART_RESET = 60.0


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


def _now() -> str:
    """Time of an event line: ``HH:MM:SSZ`` in UTC, as every time."""
    return time.strftime("%H:%M:%SZ", time.gmtime())


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


def sandbox_summary(environ: Mapping[str, str] | None = None) -> str:
    """How the REST server will run simulations (``NRP_SANDBOX``), for the start-up lines."""
    from hbp_nrp_backend.sandbox import load_sandbox_config
    from hbp_nrp_commons.settings import SettingsError

    try:
        sandbox = load_sandbox_config(os.environ if environ is None else environ)
    except SettingsError as exc:
        return str(exc)
    if not sandbox.enabled:
        return "NOT sandboxed: they run as this user (NRP_SANDBOX=none or no bwrap; docs/security.md)"
    memory = f"{sandbox.limits.memory_mb} MiB each" if sandbox.limits.memory_mb else "no memory limit"
    return f"sandboxed (bwrap), {memory}"


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


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _with_port(args: list[str], port: int) -> list[str]:
    """``args`` with the value of its (last) ``--port`` option replaced by ``port``."""
    args = list(args)
    if "--port" in args:
        index = len(args) - 1 - args[::-1].index("--port")
        args[index + 1] = str(port)
    return args


@dataclass
class Restart:
    """How to start a server again, and how often it has exited lately."""

    args: list[str]
    env: dict[str, str] | None
    started_at: float
    crashes: int = 0


class Stack:
    """The processes of one ``nrp up``, stopped in reverse start order.

    Each runs in a session of its own, so a terminal's Ctrl-C (SIGINT to the foreground process
    group) reaches only ``nrp up``, which stops them in order: the REST server (it stops the
    simulations and uploads their logs) before storage, storage before the broker. One that exits
    meanwhile is restarted on its port (:meth:`supervise`).
    """

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
        self._restarts: dict[str, Restart] = {}
        self.host = host
        self.port = port
        self.storage_port = storage_port
        self.verbose = verbose
        self.broker_port = broker_port
        self.frontend = frontend
        self.services: list[tuple[str, ServiceProcess]] = []

    def _start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> ServiceProcess:
        try:
            service = self._spawn(name, args, env)
        except ServiceStartError as exc:
            raise UpError(f"{name} did not start: {exc}") from exc
        self.services.append((name, service))
        self._restarts[name] = Restart(list(args), env, time.monotonic())
        return service

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None) -> ServiceProcess:
        """Start a server in a session of its own (a terminal's Ctrl-C does not reach it)."""
        return start_service(
            args,
            env=env,
            timeout=60,
            on_line=_relay_output(name, self.verbose),
            die_with_parent=True,
            new_session=True,
        )

    def start(self) -> RunningSystem:
        python = sys.executable
        external = os.environ.get("NRP_MQTT_BROKER_ADDRESS", "").strip()
        if self.port != self.storage_port:
            _require_free(self.host, self.port, "--port", "NRP_BACKEND_PORT")
        _require_free(self.host, self.storage_port, "--storage-port", "NRP_STORAGE_PORT")
        if self.port == self.storage_port and self.port != 0:
            raise UpError("--port and --storage-port must differ")

        # Only identities derived from this secret publish (docs/security.md); the embedded broker
        # gets a fresh one, an external broker the one configured for it, if any.
        secret = self.settings.mqtt.secret or ("" if external else secrets.token_urlsafe(32))
        mqtt_env = {"NRP_MQTT_SECRET": secret} if secret else {}
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
                env=mqtt_env,
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
        token = owner_token(storage_root, self.settings.data_dir, BUNDLED_OWNER)
        login = frontend_up.ensure_login(storage_root, BUNDLED_OWNER)
        created = import_bundled_experiments(storage_url, token, storage_root)
        if created:
            click.echo(f"Imported bundled experiments: {', '.join(created)}")

        backend = self._start(
            "backend",
            [python, "-m", "nrp_cli.main", "backend", "--host", self.host, "--port", str(self.port)],
            env={"NRP_STORAGE_URL": storage_url, "NRP_MQTT_BROKER_ADDRESS": broker_address, **mqtt_env},
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

    def supervise(self, stopping: threading.Event) -> None:
        """Restart every server that has exited, on its port, until it runs again or ``stopping`` is set.

        The delay before a restart doubles with each exit (1 s, 2 s, ... at most 30 s) unless the
        server had run for a minute; each exit and each restart is printed.
        """
        for index, (name, service) in enumerate(self.services):
            if service.alive() or stopping.is_set():
                continue
            restart = self._restarts[name]
            if time.monotonic() - restart.started_at >= RESTART_RESET:
                restart.crashes = 0
            reason = _describe_exit(service.proc.returncode)
            args = _with_port(restart.args, service.port)
            while not stopping.is_set():
                delay = min(RESTART_MAX_DELAY, RESTART_DELAY * 2**restart.crashes)
                restart.crashes += 1
                click.echo(f"{_now()} {name} stopped unexpectedly ({reason}); restarting it in {delay:g} s")
                if stopping.wait(delay):
                    return
                try:
                    fresh = self._spawn(name, args, restart.env)
                except ServiceStartError as exc:
                    reason = f"restart failed: {str(exc).splitlines()[0]}"
                    continue
                self.services[index] = (name, fresh)
                restart.started_at = time.monotonic()
                click.echo(f"{_now()} {name} restarted on {fresh.url}")
                break

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
            click.echo(f"Simulations: {sandbox_summary()}")
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
                stack.supervise(stopping)
        finally:
            stack.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
