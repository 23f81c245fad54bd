"""``nrp backend`` (the REST server) and ``nrp sim ...`` (a REST client for simulations)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from hbp_nrp_commons.settings import DEFAULT_BACKEND_PORT
from nrp_cli.up_env import read_up_env


def _environment_without(name: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop(name, None)
    return env


def _parse_port(raw: str | None, source: str) -> int | None:
    if raw is None or not raw.strip():
        return None
    try:
        port = int(raw)
        if not 0 <= port <= 65535:
            raise ValueError(raw)
        return port
    except ValueError:
        click.echo(f"Warning: {source} {raw!r} is not a port number; using {DEFAULT_BACKEND_PORT}", err=True)
        return DEFAULT_BACKEND_PORT


def _run_backend(host: str | None, port: str | None, logfile: Path | None, verbose: bool) -> None:
    from hbp_nrp_backend.config import load_backend_config
    from hbp_nrp_backend.server import PortBusyError, configure_logging, serve
    from hbp_nrp_commons.settings import SettingsError, load_settings

    env_port = _parse_port(os.environ.get("NRP_BACKEND_PORT"), "NRP_BACKEND_PORT")
    try:
        settings = load_settings(_environment_without("NRP_BACKEND_PORT"))
        config = load_backend_config(settings=settings)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc
    option_port = _parse_port(port, "--port")
    chosen_port = option_port if option_port is not None else env_port
    if chosen_port is None:
        chosen_port = settings.backend_port
    chosen_host = host or settings.backend_host
    config = config.with_overrides(verbose=verbose)
    configure_logging(verbose, logfile)

    def announce(url: str) -> None:
        click.echo(f"Listening on {url}")
        sys.stdout.flush()

    try:
        code = serve(config, chosen_host, chosen_port, announce)
    except PortBusyError as exc:
        raise click.ClickException(
            f"Port {chosen_port} on {chosen_host} is busy; choose another with --port or NRP_BACKEND_PORT"
        ) from exc
    except OSError as exc:
        raise click.ClickException(f"Cannot listen on {chosen_host}:{chosen_port}: {exc}") from exc
    sys.exit(code)


# -- the REST client ------------------------------------------------------------------------------


def resolve_connection(
    url: str | None, token: str | None, environ: Mapping[str, str] | None = None
) -> tuple[str, str | None]:
    """The backend URL and token: options, then the environment, then ``$NRP_DATA_DIR/nrp-up.env``."""
    environ = os.environ if environ is None else environ
    url = url or environ.get("NRP_BACKEND_URL") or None
    token = token or environ.get("NRP_TOKEN") or None
    if url is None or token is None:
        data_dir = Path(environ.get("NRP_DATA_DIR") or "~/.local/share/nrp").expanduser()
        saved = read_up_env(data_dir)
        url = url or saved.get("NRP_BACKEND_URL")
        token = token or saved.get("NRP_TOKEN")
    if not url:
        raise click.ClickException(
            "No REST server URL: pass --url, set NRP_BACKEND_URL or start the system with `nrp up`"
        )
    return url.rstrip("/"), token


class RestClient:
    """A tiny client of the REST server for the ``nrp sim`` commands."""

    def __init__(self, url: str, token: str | None, timeout: float = 120.0) -> None:
        import requests

        self.url = url
        self.timeout = timeout
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        import requests

        try:
            response = self.session.request(method, f"{self.url}{path}", json=body, timeout=self.timeout)
        except requests.RequestException as exc:
            raise click.ClickException(f"Cannot reach the REST server at {self.url}: {exc}") from exc
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if response.status_code >= 400:
            message = payload.get("message") if isinstance(payload, dict) else response.text
            raise click.ClickException(f"{response.status_code}: {message}")
        return payload


def _show(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


def register(cli: click.Group) -> None:
    """Add ``nrp backend`` and ``nrp sim`` to the command group."""

    @cli.command("backend")
    @click.option("--host", default=None, help="Listen address [NRP_BACKEND_HOST or 127.0.0.1].")
    @click.option("--port", default=None, help="Listen port, 0 for a free one [NRP_BACKEND_PORT or 8090].")
    @click.option(
        "--logfile",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Write the log here instead of stdout.",
    )
    @click.option("--verbose", is_flag=True, help="DEBUG logging (also for the Simulation Servers).")
    def backend(host: str | None, port: str | None, logfile: Path | None, verbose: bool) -> None:
        """Run the REST server until Ctrl-C or SIGTERM (then every simulation is stopped)."""
        _run_backend(host, port, logfile, verbose)

    @cli.group("sim")
    @click.option("--url", default=None, help="REST server URL [NRP_BACKEND_URL, then nrp-up.env].")
    @click.option("--token", default=None, help="Bearer token [NRP_TOKEN, then nrp-up.env].")
    @click.pass_context
    def sim(ctx: click.Context, url: str | None, token: str | None) -> None:
        """Launch and control simulations on a REST server."""
        ctx.ensure_object(dict)
        ctx.obj["connection"] = (url, token)

    def client(ctx: click.Context) -> RestClient:
        url, token = resolve_connection(*ctx.obj["connection"])
        return RestClient(url, token)

    @sim.command("launch")
    @click.argument("experiment")
    @click.option("--config", "config_name", default=None, help="Experiment configuration file name.")
    @click.option("--script", default=None, help="Main script file name.")
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
        """Create a simulation of storage experiment EXPERIMENT."""
        body: dict[str, Any] = {"experimentID": experiment}
        if config_name:
            body["experimentConfiguration"] = config_name
        if script:
            body["mainScript"] = script
        if ctx_id:
            body["ctxId"] = ctx_id
        rest = client(ctx)
        created = rest.call("POST", "/simulation", body)
        if start_now:
            path = f"/simulation/{created['simulationID']}/state"
            created.update(rest.call("PUT", path, {"state": "started"}))
        _show(created)

    def _transition(name: str, state: str, help_text: str) -> None:
        @sim.command(name, help=help_text)
        @click.argument("sim_id", type=int)
        @click.pass_context
        def command(ctx: click.Context, sim_id: int) -> None:
            _show(client(ctx).call("PUT", f"/simulation/{sim_id}/state", {"state": state}))

    _transition("start", "started", "Start or resume simulation SIM_ID.")
    _transition("pause", "paused", "Pause simulation SIM_ID.")
    _transition("stop", "stopped", "Stop simulation SIM_ID (returns once its logs are saved).")

    @sim.command("status")
    @click.argument("sim_id", type=int)
    @click.pass_context
    def status(ctx: click.Context, sim_id: int) -> None:
        """Show simulation SIM_ID."""
        _show(client(ctx).call("GET", f"/simulation/{sim_id}"))

    @sim.command("list")
    @click.pass_context
    def list_simulations(ctx: click.Context) -> None:
        """List your simulations."""
        sims = client(ctx).call("GET", "/simulation")
        for item in sims:
            error = item.get("error") or {}
            suffix = f"  error: {error.get('msg')}" if error else ""
            click.echo(
                f"{item['simulationID']:>4}  {item['state']:<10} {item['experimentID']}"
                f"  ready={str(item.get('ready')).lower()}{suffix}"
            )
