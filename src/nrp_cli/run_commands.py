"""``nrp run DIR``: run one experiment in the foreground, without REST server, storage or broker.

The experiment is copied to a temporary folder (the original stays untouched), which is removed
at the end unless ``--keep`` asks to keep it with its logs. With a ``main_script.py`` the script
runs through the Simulation Server's script runner and ``nrp`` object, exactly as in a simulation;
without one nrp-core runs standalone until its ``SimulationTimeout``. Exit codes: 0 completed,
1 script, engine or configuration error, 130 Ctrl-C.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from hbp_nrp_commons.user_paths import relative_paths

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_INTERRUPTED = 130
POLL_PERIOD = 0.1
RUN_LOG = "nrp_run.log"

IGNORED = shutil.ignore_patterns("*.log", "*.log.zip", "logs", "__pycache__", "*.swp")


def copy_experiment(directory: Path) -> Path:
    """Copy ``directory`` (without logs and caches) into a new temporary folder and return the copy."""
    root = Path(tempfile.mkdtemp(prefix="nrp-run-"))
    dest = root / directory.resolve().name
    shutil.copytree(directory, dest, ignore=IGNORED)
    return dest


def _log_to_file(path: Path, verbose: bool) -> logging.Handler:
    """Send the root logger to ``path`` in the simserver's format; returns the handler."""
    from hbp_nrp_simserver.server import configure_logging

    return configure_logging(verbose, str(path))


class _ProgressBar:
    """Simulation time over ``SimulationTimeout``, refreshed while ``done`` is not set."""

    def __init__(self, console: Console, name: str, timeout: float) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:.2f} / {task.total:.2f} s simulated"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._task = self._progress.add_task(name, total=max(timeout, 1e-9))

    def __enter__(self) -> _ProgressBar:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def update(self, simulation_time: float) -> None:
        self._progress.update(self._task, completed=simulation_time)


def _wait(wait: Any, bar: _ProgressBar, sim_time: Any) -> None:
    """Refresh the bar until ``wait(timeout)`` returns True; Ctrl-C (KeyboardInterrupt) propagates."""
    while not wait(POLL_PERIOD):
        bar.update(sim_time())
    bar.update(sim_time())


def _joiner(thread: threading.Thread) -> Any:
    def wait(timeout: float) -> bool:
        thread.join(timeout)
        return not thread.is_alive()

    return wait


def run_script(console: Console, workdir: Path, script: str, config: Any) -> int:
    """Run ``script`` in ``workdir`` through the script runner; returns the exit code."""
    from hbp_nrp_simserver.errors import ScriptLoadError
    from hbp_nrp_simserver.script_runner import NRPScriptRunner, nrp_core_client_factory

    runner = NRPScriptRunner(
        workdir, script, "0", config, client_factory=nrp_core_client_factory(workdir, config.path.name)
    )
    try:
        try:
            with console.status("Initializing nrp-core..."):
                runner.initialize()
        except ScriptLoadError:
            _report(console, runner.error)
            return EXIT_ERROR
        with _ProgressBar(console, config.name, config.timeout) as bar:
            runner.start()
            _wait(runner.wait, bar, lambda: runner.times()[1])
    except KeyboardInterrupt:
        console.print("[yellow]Interrupted: stopping the simulation[/]")
        return EXIT_INTERRUPTED
    finally:
        runner.shutdown()
    if runner.error is not None:
        _report(console, runner.error)
        return EXIT_ERROR
    return EXIT_OK


def run_standalone(console: Console, workdir: Path, config: Any) -> int:
    """Run nrp-core standalone (no main script) until the done flag or ``SimulationTimeout``."""
    from nrp_core import NrpCore

    client: Any = None
    failure: list[BaseException] = []

    def body() -> None:
        try:
            client.run_until_timeout()
        except Exception as exc:  # reported by the main thread
            failure.append(exc)

    try:
        client = NrpCore("localhost:5345", experiment_folder=str(workdir), config_file=config.path.name)
        with console.status("Initializing nrp-core..."):
            client.initialize()
        thread = threading.Thread(target=body, name="NrpCoreLoop", daemon=True)
        total = config.timeout
        if config.data.get("SimulationLoop") == "EventLoop":  # runs for EventLoop.Timeout (wall time)
            total = float((config.data.get("EventLoop") or {}).get("Timeout", 0))
        with _ProgressBar(console, config.name, total) as bar:
            thread.start()
            _wait(_joiner(thread), bar, lambda: client.simulation_time_ns / 1e9)
    except KeyboardInterrupt:
        console.print("[yellow]Interrupted: stopping the simulation[/]")
        if client is not None:
            _quiet(client.stop)
            _quiet(client.shutdown)
        return EXIT_INTERRUPTED
    except Exception as exc:
        console.print(f"[red]nrp-core error:[/] {relative_paths(str(exc), workdir)}")
        if client is not None:
            _quiet(client.shutdown)
        return EXIT_ERROR
    _quiet(client.shutdown)
    if failure:
        console.print(f"[red]nrp-core error:[/] {relative_paths(str(failure[0]), workdir)}")
        return EXIT_ERROR
    return EXIT_OK


def _quiet(action: Any) -> None:
    try:
        action()
    except Exception:
        logging.getLogger(__name__).exception("nrp-core %s failed", getattr(action, "__name__", action))


def _report(console: Console, error: Any) -> None:
    if error is None:
        console.print("[red]The simulation failed; see the logs.[/]")
        return
    where = f" ({error.file_name}:{error.line_number}: {error.line_text})" if error.line_number >= 0 else ""
    console.print(f"[red]{error.error_type} error:[/] {error.msg}{where}")


@click.command("run")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "-c",
    "--config",
    "config_file",
    default="simulation_config.json",
    show_default=True,
    help="experiment configuration, relative to DIRECTORY",
)
@click.option(
    "-s",
    "--script",
    default="main_script.py",
    show_default=True,
    help="main script, relative to DIRECTORY; nrp-core runs standalone when it does not exist",
)
@click.option(
    "--keep", is_flag=True, help="keep the temporary run folder (with its logs) and print where it is"
)
@click.option("--verbose", is_flag=True, help="log at DEBUG level")
@click.pass_context
def run(
    ctx: click.Context, directory: Path, config_file: str, script: str, keep: bool, verbose: bool
) -> None:
    """Run the experiment in DIRECTORY in the foreground (no REST server, storage or broker needed)."""
    from hbp_nrp_simserver.config import load_experiment_config

    console = Console()
    workdir = copy_experiment(directory)
    handler = _log_to_file(workdir / RUN_LOG, verbose)
    previous_dir = os.getcwd()
    os.chdir(workdir)  # scripts and engines expect the experiment folder as working directory
    started = time.monotonic()
    try:
        try:
            config = load_experiment_config(workdir / config_file)
        except Exception as exc:
            console.print(f"[red]Loading error:[/] {relative_paths(str(exc), workdir)}")
            code = EXIT_ERROR
        else:
            if (workdir / script).is_file():
                code = run_script(console, workdir, script, config)
            else:
                console.print(f"No {script}: running nrp-core standalone")
                code = run_standalone(console, workdir, config)
    finally:
        os.chdir(previous_dir)
        logging.getLogger().removeHandler(handler)
        handler.close()
    outcome = {EXIT_OK: "[green]Completed[/]", EXIT_INTERRUPTED: "[yellow]Interrupted[/]"}.get(
        code, "[red]Failed[/]"
    )
    console.print(f"{outcome} in {time.monotonic() - started:.1f} s")
    if keep:
        console.print(f"Logs are kept in {workdir}")
    else:
        shutil.rmtree(workdir.parent, ignore_errors=True)
        if code != EXIT_OK:
            console.print("Run again with --keep to keep the run folder and its logs.")
    ctx.exit(code)


def register(cli: click.Group) -> None:
    """Add ``nrp run`` to the ``nrp`` command group."""
    cli.add_command(run)
