"""``nrp sim ...``: a client of the REST server to launch, control, watch and read simulations.

Every command finds the REST server and the token the same way (:func:`resolve_connection`):
``--url``/``--token``, then ``NRP_BACKEND_URL``/``NRP_TOKEN``, then ``$NRP_DATA_DIR/nrp-up.env``.
``watch`` also needs the MQTT broker (``--broker``, ``NRP_MQTT_BROKER_ADDRESS``, ``nrp-up.env``) and
``logs`` of an ended simulation the storage server (``--storage-url``, ``NRP_STORAGE_URL``,
``nrp-up.env``).

Exit codes of ``watch`` and ``wait``: 0 as hoped (``watch``: completed or stopped without an error;
``wait``: the state was reached), 1 the simulation failed, reported an error (``watch``) or ended in
another state (``wait``), 3 ``wait`` timed out.
"""

from __future__ import annotations

import io
import json
import os
import queue
import sys
import time
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from nrp_cli.options import shared_options
from nrp_cli.up_env import read_up_env

STATES = ("created", "paused", "started", "completed", "stopped", "failed")
FINAL_STATES = frozenset({"stopped", "failed"})
RUNNING_STATES = frozenset({"paused", "started", "completed"})
#: states each state can still lead to (the lifecycle's transitions, transitively)
REACHABLE = {
    "created": frozenset(STATES),
    "paused": frozenset({"paused", "started", "completed", "stopped", "failed"}),
    "started": frozenset({"paused", "started", "completed", "stopped", "failed"}),
    "completed": frozenset({"completed", "stopped", "failed"}),
    "stopped": frozenset({"stopped"}),
    "failed": frozenset({"failed"}),
}

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_TIMEOUT = 3

POLL_PERIOD = 0.2
REST_CHECK_PERIOD = 2.0
FOLLOW_PERIOD = 0.5
WIDE = 160  # columns of tables when stdout is not a terminal (a pipe or a file)


def _console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    return Console(file=stream, highlight=False, width=None if stream.isatty() else WIDE)


def _data_dir(environ: Mapping[str, str]) -> Path:
    return Path(environ.get("NRP_DATA_DIR") or "~/.local/share/nrp").expanduser()


def _setting(option: str | None, name: str, environ: Mapping[str, str]) -> str | None:
    """``option``, else the environment variable ``name``, else its value in ``nrp-up.env``."""
    return option or environ.get(name) or read_up_env(_data_dir(environ)).get(name) or None


def resolve_connection(
    url: str | None, token: str | None, environ: Mapping[str, str] | None = None
) -> tuple[str, str | None]:
    """The backend URL and token: options, then the environment, then ``$NRP_DATA_DIR/nrp-up.env``."""
    environ = os.environ if environ is None else environ
    url = _setting(url, "NRP_BACKEND_URL", environ)
    token = _setting(token, "NRP_TOKEN", environ)
    if not url:
        raise click.ClickException(
            "No REST server URL: pass --url, set NRP_BACKEND_URL or start the system with `nrp up`"
        )
    return url.rstrip("/"), token


class RestError(click.ClickException):
    """An error answer of the REST server: ``status`` and its ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.text = message


class RestClient:
    """A tiny client of the REST server for the ``nrp sim`` commands."""

    def __init__(self, url: str, token: str | None, timeout: float = 120.0) -> None:
        import requests

        self.url = url
        self.token = token
        self.timeout = timeout
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, **kw: Any) -> Any:
        import requests

        try:
            response = self.session.request(
                method, f"{self.url}{path}", json=body, timeout=self.timeout, **kw
            )
        except requests.RequestException as exc:
            raise click.ClickException(f"Cannot reach the REST server at {self.url}: {exc}") from exc
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if response.status_code >= 400:
            message = payload.get("message") if isinstance(payload, dict) else response.text
            raise RestError(response.status_code, str(message))
        return payload


def _show(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


def _note(text: str) -> None:
    """A hint for the user, on stderr (stdout stays JSON for scripts)."""
    _console(stderr=True).print(text)


def _error_text(error: Mapping[str, Any] | None) -> str:
    """An error as one line of rich markup (its text escaped: ``[Errno 2]`` stays as it is)."""
    if not error:
        return ""
    text = f"{error.get('error_type', 'Error')} error: {error.get('msg', '')}"
    line = error.get("line_number")
    if isinstance(line, int) and line >= 0:
        text += f" ({error.get('fileName', '')}:{line}: {error.get('line_text', '')})"
    return escape(text)


# ----------------------------------------------------------------------------------- commands


CONNECTION = ("url", "token")


@click.group("sim")
@shared_options("url", "token", "storage_url", "broker")
def sim() -> None:
    """Launch, control, watch and read the logs of simulations on a REST server."""


def client(ctx: click.Context) -> RestClient:
    url, token = resolve_connection(ctx.obj.get("url"), ctx.obj.get("token"))
    return RestClient(url, token)


@sim.command("launch")
@shared_options(*CONNECTION)
@click.argument("experiment")
@click.option(
    "-c", "--config", "config_name", default=None, help="Configuration file [simulation_config.json]."
)
@click.option("-s", "--script", default=None, help="Main script file [main_script.py].")
@click.option("--ctx-id", default=None, help="Collab context id.")
@click.option("--start", "start_now", is_flag=True, help="Start the simulation right away.")
@click.pass_context
def launch(
    ctx: click.Context,
    experiment: str,
    config_name: str | None,
    script: str | None,
    ctx_id: str | None,
    start_now: bool,
) -> None:
    """Create a simulation of storage experiment EXPERIMENT; prints it as JSON.

    The answer comes at once, in state ``paused`` with ``ready`` false: the Simulation Server is
    still starting. ``nrp sim wait ID --state paused`` returns once it is ready.
    """
    body: dict[str, Any] = {"experimentID": experiment}
    if config_name:
        body["experimentConfiguration"] = config_name
    if script:
        body["mainScript"] = script
    if ctx_id:
        body["ctxId"] = ctx_id
    rest = client(ctx)
    created = rest.call("POST", "/simulation", body)
    sim_id = created["simulationID"]
    if start_now:
        created.update(rest.call("PUT", f"/simulation/{sim_id}/state", {"state": "started"}))
    _show(created)
    if start_now:
        _note(f"Simulation {sim_id} started. Follow it with: nrp sim watch {sim_id}")
    elif created.get("ready"):
        _note(f"Simulation {sim_id} is ready. Next: nrp sim start {sim_id}")
    else:
        _note(
            f'Simulation {sim_id} is {created.get("state")} but not ready yet: "ready": false means its '
            "Simulation Server is still starting (cloning the experiment, loading nrp-core). It turns "
            "true once the server reported in; a start sent before is carried out then.\n"
            f"Next: nrp sim wait {sim_id} --state paused   then   nrp sim start {sim_id}"
            f"   (and nrp sim watch {sim_id} to follow it)"
        )


def _transition(name: str, state: str, help_text: str) -> None:
    @sim.command(name, help=help_text)
    @shared_options(*CONNECTION)
    @click.argument("sim_id", type=int)
    @click.pass_context
    def command(ctx: click.Context, sim_id: int) -> None:
        _show(client(ctx).call("PUT", f"/simulation/{sim_id}/state", {"state": state}))


_transition("start", "started", "Start or resume simulation SIM_ID.")
_transition("pause", "paused", "Pause simulation SIM_ID.")


@sim.command("stop")
@shared_options(*CONNECTION)
@click.argument("sim_id", type=int)
@click.pass_context
def stop(ctx: click.Context, sim_id: int) -> None:
    """Stop simulation SIM_ID (returns once its logs are saved); a finished one is left as it is."""
    rest = client(ctx)
    try:
        answer = rest.call("PUT", f"/simulation/{sim_id}/state", {"state": "stopped"})
    except RestError as exc:
        if exc.status != 400:
            raise
        current = rest.call("GET", f"/simulation/{sim_id}")
        if current.get("state") not in FINAL_STATES:
            raise
        _show({key: current.get(key) for key in ("state", "ready", "error")})
        _note(f"Simulation {sim_id} is already {current['state']}: nothing to do.")
        return
    _show(answer)
    _note(f"Its logs were saved to its experiment's storage folder: nrp sim logs {sim_id}")


@sim.command("status")
@shared_options(*CONNECTION)
@click.argument("sim_id", type=int)
@click.pass_context
def status(ctx: click.Context, sim_id: int) -> None:
    """Show simulation SIM_ID as JSON."""
    _show(client(ctx).call("GET", f"/simulation/{sim_id}"))


@sim.command("list")
@shared_options(*CONNECTION)
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(STATES),
    help="Only simulations in this state (repeatable).",
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the newest N simulations.")
@click.pass_context
def list_simulations(ctx: click.Context, states: tuple[str, ...], limit: int | None) -> None:
    """List your simulations as a table (oldest first)."""
    sims = client(ctx).call("GET", "/simulation")
    if states:
        sims = [item for item in sims if item.get("state") in states]
    if limit is not None:
        sims = sims[-limit:]
    if not sims:
        _note("No simulations" + (f" in state {', '.join(states)}" if states else "") + ".")
        return
    table = Table("id", "state", "ready", "experiment", "created (UTC)", "error")
    for item in sims:
        table.add_row(
            str(item["simulationID"]),
            escape(str(item["state"])),
            "yes" if item.get("ready") else "no",
            escape(str(item["experimentID"])),
            escape(str(item.get("creationDate", ""))),
            _error_text(item.get("error")),
        )
    _console().print(table)


# ----------------------------------------------------------------------------------- wait


def _reached(sim: Mapping[str, Any], state: str) -> bool:
    """The simulation is in ``state`` (a running state counts once its Simulation Server is ready)."""
    if sim.get("state") != state:
        return False
    return state not in RUNNING_STATES or bool(sim.get("ready"))


def _wait_until(rest: RestClient, sim_id: int, state: str, timeout: float | None) -> dict[str, Any]:
    """Poll until ``state`` is reached; raise :class:`click.exceptions.Exit` when it cannot be."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        current = rest.call("GET", f"/simulation/{sim_id}")
        if _reached(current, state):
            return dict(current)
        now_state = current.get("state", "")
        if state not in REACHABLE.get(now_state, frozenset()):
            detail = _error_text(current.get("error"))
            _note(
                f"[red]Simulation {sim_id} is {now_state} and can no longer become {state}.[/]"
                + (f"\n{detail}" if detail else "")
            )
            raise click.exceptions.Exit(EXIT_FAILED)
        if deadline is not None and time.monotonic() >= deadline:
            ready = "" if current.get("ready") else ", not ready"
            _note(f"[red]Timed out after {timeout:g} s: simulation {sim_id} is {now_state}{ready}.[/]")
            raise click.exceptions.Exit(EXIT_TIMEOUT)
        time.sleep(POLL_PERIOD)


@sim.command("wait")
@shared_options(*CONNECTION)
@click.argument("sim_id", type=int)
@click.option("--state", required=True, type=click.Choice(STATES), help="The state to wait for.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="Give up after this many seconds.",
)
@click.pass_context
def wait(ctx: click.Context, sim_id: int, state: str, timeout: float) -> None:
    """Wait until simulation SIM_ID is in the --state (paused, started, completed: and ready).

    Exit code 0 once it is, 1 when it ended in another state (or cannot reach STATE any more),
    3 on timeout.
    """
    reached = _wait_until(client(ctx), sim_id, state, timeout)
    _note(f"Simulation {sim_id} is {reached['state']}.")


# ----------------------------------------------------------------------------------- watch


def _broker_address(option: str | None) -> tuple[str, int]:
    from hbp_nrp_commons.settings import DEFAULT_MQTT_PORT

    raw = _setting(option, "NRP_MQTT_BROKER_ADDRESS", os.environ) or f"localhost:{DEFAULT_MQTT_PORT}"
    host, _, port = raw.strip().rpartition(":")
    try:
        return host or "localhost", int(port)
    except ValueError:
        raise click.ClickException(f"The MQTT broker address {raw!r} is not host:port") from None


class _Watcher:
    """Subscribes to one simulation's status, runtime_error and lifecycle topics; queues messages."""

    def __init__(self, host: str, port: int, prefix: str, sim_id: int) -> None:
        from hbp_nrp_commons import mqtt
        from hbp_nrp_commons.settings import MqttSettings

        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.connection = mqtt.MqttConnection(
            MqttSettings(host=host, port=port, prefix=prefix), mqtt.client_id("nrp_cli_watch", sim_id)
        )
        try:
            self.connection.connect(5.0)
            for kind, topic in (
                ("status", mqtt.status_topic(prefix, sim_id)),
                ("runtime_error", mqtt.runtime_error_topic(prefix, sim_id)),
                ("lifecycle", mqtt.lifecycle_topic(prefix, sim_id)),
            ):
                self.connection.subscribe(topic, self._queue(kind), qos=0)
        except mqtt.BrokerUnreachable as exc:
            self.connection.close()
            raise click.ClickException(
                f"{exc}; pass --broker HOST:PORT or set NRP_MQTT_BROKER_ADDRESS"
            ) from exc

    def _queue(self, kind: str) -> Any:
        def put(topic: str, payload: bytes) -> None:
            if not payload:
                return
            try:
                message = json.loads(payload)
            except ValueError:
                return
            if isinstance(message, dict):
                self.events.put((kind, message))

        return put

    def close(self) -> None:
        self.connection.close()


class _WatchView:
    """What ``nrp sim watch`` prints: state changes, lifecycle messages, errors, a progress bar."""

    def __init__(self, console: Console, sim_id: int) -> None:
        self.console = console
        self.sim_id = sim_id
        self.state = ""
        self.errors = 0
        self.progress = Progress(
            TextColumn("[bold]{task.description:<10}"),
            BarColumn(),
            TextColumn("{task.completed:.2f} / {task.total:.2f} s simulated"),
            TimeElapsedColumn(),
            console=console,
        )
        self.task = self.progress.add_task("", total=1.0, start=False)

    def state_changed(self, state: str) -> None:
        if state and state != self.state:
            self.state = state
            stamp = time.strftime("%H:%M:%S", time.gmtime())
            self.progress.print(f"{stamp}Z state: [bold]{escape(state)}[/]")
            self.progress.update(self.task, description=escape(state))

    def status(self, message: Mapping[str, Any]) -> None:
        progress = message.get("progress")
        if isinstance(progress, dict):
            if progress.get("done"):
                self.progress.print(f"[dim]  done: {escape(str(progress.get('task')))}[/]")
            else:
                subtask = f" - {progress['subtask']}" if progress.get("subtask") else ""
                self.progress.print(f"[dim]  task: {escape(str(progress.get('task')) + subtask)}[/]")
            return
        try:
            simulated = float(message.get("simulationTime", 0.0))
            left = float(message.get("simulationTimeLeft", 0.0))
        except (TypeError, ValueError):
            return
        self.progress.start_task(self.task)
        self.progress.update(self.task, total=max(simulated + left, 1e-9), completed=simulated)
        if isinstance(message.get("state"), str):
            self.state_changed(message["state"])

    def lifecycle(self, message: Mapping[str, Any]) -> None:
        source, target = message.get("source_state"), message.get("target_state")
        text = f"{source} -> {target} ({message.get('source_node')})"
        self.progress.print(f"[dim]  lifecycle: {escape(text)}[/]")

    def runtime_error(self, message: Mapping[str, Any]) -> None:
        self.errors += 1
        self.progress.print(f"[red]{_error_text(message)}[/]")


#: the states ``watch`` stops at
WATCH_ENDS = ("completed", "stopped", "failed")


def _outcome(sim_id: int, end: str, error: bool) -> tuple[str, int]:
    """The closing line of ``watch`` and its exit code: 1 when the simulation failed or reported an error."""
    hint = (
        f"Its script ended; stop it to save its logs: nrp sim stop {sim_id}"
        if end == "completed"
        else f"Its logs: nrp sim logs {sim_id}"
    )
    bad = end == "failed" or error
    text = f"Simulation {sim_id} {end}{' with an error' if error and end != 'failed' else ''}."
    return f"[{'red' if bad else 'green'}]{text}[/] {hint}", EXIT_FAILED if bad else EXIT_OK


@sim.command("watch")
@shared_options(*CONNECTION, "broker")
@click.argument("sim_id", type=int)
@click.pass_context
def watch(ctx: click.Context, sim_id: int) -> None:
    """Follow simulation SIM_ID live over MQTT until it is completed, stopped or failed.

    Shows its state, its simulation time against its timeout, runtime errors as they happen and
    lifecycle changes. Exit code 0 when it completed or was stopped, 1 when it failed or reported an
    error.
    """
    rest = client(ctx)
    current = rest.call("GET", f"/simulation/{sim_id}")
    console = _console()
    if current.get("error"):
        console.print(f"[red]{_error_text(current['error'])}[/]")
    if current["state"] in WATCH_ENDS:
        line, code = _outcome(sim_id, current["state"], bool(current.get("error")))
        console.print(line)
        ctx.exit(code)
    host, port = _broker_address(ctx.obj.get("broker"))
    watcher = _Watcher(host, port, str(current.get("MQTTPrefix") or ""), sim_id)
    view = _WatchView(console, sim_id)
    end: str | None = None
    try:
        with view.progress:
            if current.get("ready"):
                view.state_changed(current["state"])
            else:  # its states come from the Simulation Server once that has started
                view.progress.print(f"Simulation {sim_id}: its Simulation Server is starting (ready: false)")
            next_check = time.monotonic() + REST_CHECK_PERIOD
            while end is None:
                try:
                    kind, message = watcher.events.get(timeout=POLL_PERIOD)
                except queue.Empty:
                    kind, message = "", {}
                if kind == "status":
                    view.status(message)
                elif kind == "runtime_error":
                    view.runtime_error(message)
                elif kind == "lifecycle":
                    view.lifecycle(message)
                if view.state in WATCH_ENDS:
                    end = view.state
                elif time.monotonic() >= next_check:  # the simserver may die without a final status
                    next_check = time.monotonic() + REST_CHECK_PERIOD
                    state = rest.call("GET", f"/simulation/{sim_id}")["state"]
                    if state in WATCH_ENDS:
                        view.state_changed(state)
                        end = state
    except KeyboardInterrupt:
        console.print("Stopped watching; the simulation goes on.")
        ctx.exit(130)
    finally:
        watcher.close()
    error = rest.call("GET", f"/simulation/{sim_id}").get("error")
    if error and not view.errors:
        console.print(f"[red]{_error_text(error)}[/]")
    line, code = _outcome(sim_id, end, bool(error) or view.errors > 0)
    console.print(line)
    ctx.exit(code)


# ----------------------------------------------------------------------------------- logs


def _print_logs(files: list[tuple[str, str]]) -> None:
    console = _console()
    for name, content in files:
        console.rule(f"[bold]{escape(name)}")
        console.out(content, end="" if content.endswith("\n") else "\n", highlight=False)


def _extract(files: list[tuple[str, bytes]], directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    root = directory.resolve()
    for name, data in files:
        target = (root / name).resolve()
        if not target.is_relative_to(root):
            continue  # never write outside DIR, whatever the zip says
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    _note(f"Extracted {len(files)} files into {escape(str(directory))}")


def _zip_logs(
    ctx: click.Context, rest: RestClient, sim: Mapping[str, Any]
) -> tuple[str, list[tuple[str, bytes]]]:
    """The name and members of the newest ``*_simulation_<id>.log.zip`` in the experiment's folder."""
    from hbp_nrp_backend.storage_client import StorageClient, StorageError
    from nrp_cli.storage_commands import resolve_storage_access

    url, _ = resolve_storage_access(ctx.obj.get("storage_url"), rest.token)
    experiment = str(sim["experimentID"])
    suffix = f"_simulation_{sim['simulationID']}.log.zip"
    with StorageClient(url, timeout=30, backoff=()) as storage:
        try:
            entries = storage.get_files_list(rest.token or "", experiment)
            matching = [e for e in entries if e["name"].endswith(suffix)]
            if not matching:
                raise click.ClickException(
                    f"No *{suffix} in experiment {experiment}: the simulation left no logs, or they wait "
                    "in the REST server's spool for storage to come back"
                )
            newest = max(matching, key=lambda e: (e.get("modifiedOn", ""), e["name"]))["name"]
            data = storage.get_file(rest.token or "", experiment, newest, by_name=True)
        except StorageError as exc:
            raise click.ClickException(f"Storage at {url}: {exc}") from exc
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = [(info.filename, archive.read(info)) for info in archive.infolist() if not info.is_dir()]
    return newest, members


def _console_first(name: str) -> tuple[bool, str]:
    return (not name.startswith("simulation_"), name)


def _live_logs(rest: RestClient, sim_id: int, **params: Any) -> dict[str, Any] | None:
    """``GET /simulation/<id>/logs``, or ``None`` once the simulation has ended (404)."""
    try:
        return dict(rest.call("GET", f"/simulation/{sim_id}/logs", params=params))
    except RestError as exc:
        if exc.status != 404 or "log.zip" not in exc.text:
            raise
        return None


def _ended(rest: RestClient, sim_id: int, timeout: float = 120.0) -> dict[str, Any]:
    """The simulation once its state is final (a stop in progress removes the directory first)."""
    deadline = time.monotonic() + timeout
    while True:
        current = dict(rest.call("GET", f"/simulation/{sim_id}"))
        if current["state"] in FINAL_STATES or time.monotonic() >= deadline:
            return current
        time.sleep(POLL_PERIOD)


def _follow(rest: RestClient, sim_id: int, seen: dict[str, int], shown: str | None) -> None:
    """Print what the log files add until the simulation ends (``tail -f`` of every file)."""
    while True:
        time.sleep(FOLLOW_PERIOD)
        listing = _live_logs(rest, sim_id, tail=1)
        if listing is None:
            _note(f"Simulation {sim_id} has ended; all of its logs: nrp sim logs {sim_id}")
            return
        for entry in sorted(listing["files"], key=lambda f: _console_first(f["name"])):
            name = entry["name"]
            if entry["size"] <= seen.get(name, 0):
                continue
            part = _live_logs(rest, sim_id, name=name, offset=seen.get(name, 0))
            if part is None:
                break
            for piece in part["files"]:
                if name != shown:
                    click.echo(f"==> {name} <==")
                    shown = name
                click.echo(piece["content"], nl=False)
                seen[name] = piece["size"]


@sim.command("logs")
@shared_options(*CONNECTION, "storage_url")
@click.argument("sim_id", type=int)
@click.option(
    "--extract",
    "extract_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write the log files (and recorded data) into this folder instead of printing them.",
)
@click.option(
    "-f", "--follow", is_flag=True, help="Then print what a running simulation's logs add, until it ends."
)
@click.pass_context
def logs(ctx: click.Context, sim_id: int, extract_dir: Path | None, follow: bool) -> None:
    """Print the console and script logs of simulation SIM_ID.

    A running simulation's logs come live from the REST server; an ended one's from the log zip
    its stop uploaded to the experiment's storage folder.
    """
    rest = client(ctx)
    current = rest.call("GET", f"/simulation/{sim_id}")
    answer = None if current["state"] in FINAL_STATES else _live_logs(rest, sim_id)
    texts: list[tuple[str, bytes]]
    if answer is not None:
        texts = [(f["name"], f["content"].encode()) for f in answer["files"]]
        _note(f"Live logs of simulation {sim_id} ({answer['state']}):")
    else:
        current = _ended(rest, sim_id)
        name, texts = _zip_logs(ctx, rest, current)
        where = f"{current['experimentID']}/{name}"
        _note(escape(f"Logs of simulation {sim_id} ({current['state']}) from {where}:"))
    if extract_dir is not None:
        _extract(texts, extract_dir)
        return
    shown = sorted((n, d) for n, d in texts if n.endswith(".log"))
    shown.sort(key=lambda item: _console_first(item[0]))
    _print_logs([(n, d.decode("utf-8", errors="replace")) for n, d in shown])
    if follow and answer is not None:
        sizes = {f["name"]: f["size"] for f in answer["files"]}
        try:
            _follow(rest, sim_id, sizes, shown[-1][0] if shown else None)
        except KeyboardInterrupt:
            ctx.exit(130)


def register(cli: click.Group) -> None:
    """Add ``nrp sim`` to the command group."""
    cli.add_command(sim)
