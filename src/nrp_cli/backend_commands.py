"""``nrp backend``: run the REST server (``nrp sim ...``, its client, is in ``sim_commands``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from hbp_nrp_commons.settings import DEFAULT_BACKEND_PORT


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


def _run_backend(
    host: str | None, port: int | None, logfile: Path | None, verbose: bool, executor: str | None = None
) -> None:
    from hbp_nrp_backend.config import load_backend_config
    from hbp_nrp_backend.server import PortBusyError, configure_logging, serve
    from hbp_nrp_commons.settings import SettingsError, load_settings

    env_port = _parse_port(os.environ.get("NRP_BACKEND_PORT"), "NRP_BACKEND_PORT")
    try:
        settings = load_settings(_environment_without("NRP_BACKEND_PORT"))
        config = load_backend_config(settings=settings)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc
    chosen_port = port if port is not None else env_port
    if chosen_port is None:
        chosen_port = settings.backend_port
    chosen_host = host or settings.backend_host
    config = config.with_overrides(verbose=verbose)
    if executor is not None:
        config = config.with_overrides(executor=executor)
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


def register(cli: click.Group) -> None:
    """Add ``nrp backend`` to the command group."""

    @cli.command("backend")
    @click.option("--host", default=None, help="Listen address [NRP_BACKEND_HOST or 127.0.0.1].")
    @click.option(
        "--port",
        type=click.IntRange(0, 65535),
        default=None,
        help="Listen port, 0 for a free one [NRP_BACKEND_PORT or 8090].",
    )
    @click.option(
        "--logfile",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Write the log here instead of stdout.",
    )
    @click.option("--verbose", is_flag=True, help="DEBUG logging (also for the Simulation Servers).")
    @click.option(
        "--executor",
        type=click.Choice(["local", "ray"]),
        default=None,
        help="Where Simulation Servers run: child processes, or Ray actors [NRP_EXECUTOR or local].",
    )
    def backend(
        host: str | None, port: int | None, logfile: Path | None, verbose: bool, executor: str | None
    ) -> None:
        """Run the REST server until Ctrl-C or SIGTERM (then every simulation is stopped)."""
        _run_backend(host, port, logfile, verbose, executor)
