"""``NRPCoreSim``: run an experiment standalone, as nrp-core's command of the same name.

``NRPCoreSim -c simulation_config.json [-d DIR] [-o KEY=VALUE ...]`` initializes the engines, runs
until the status function's done flag or ``SimulationTimeout`` and shuts down. SIGINT and SIGTERM
stop the loop after the current step and shut the engines down cleanly.

``NRPCoreSim -c CFG -m server --server_address HOST:PORT [--slave]`` serves the ``NrpCore`` gRPC
service (:mod:`nrp_core.sim_server`) until a client calls ``shutdown``, a SIGINT or SIGTERM arrives,
or, with ``--slave``, the parent process dies; it prints ``Listening on grpc://HOST:PORT`` once it
accepts calls.

Exit codes: 1 without any argument, 2 for usage errors, 0 after a successful run (or a served
session), 1 when the run failed or the configuration could not be loaded, 3 when the server
address cannot be bound.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nrp_core.sim_options import build_parser

__all__ = ["main"]

logger = logging.getLogger("nrp_core.sim_main")


def _configure_logging(console_level: str, file_level: str, log_dir: str) -> None:
    from nrp_core.client import log_formatter, log_level

    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(log_level(console_level))
    console.setFormatter(log_formatter())
    root.addHandler(console)
    if file_level != "off":
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())  # ISO 8601, UTC
        handler = logging.FileHandler(Path(log_dir) / f"nrpcore_{stamp}.log")
        handler.setLevel(log_level(file_level))
        handler.setFormatter(log_formatter())
        root.addHandler(handler)


def _redirect_all_output(path: Path) -> None:
    """``--logoutput=all``: this process's stdout/stderr (and so the engines') go to ``path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _install_signal_handlers(stop: Any) -> None:
    def handler(signum: int, _frame: Any) -> None:
        logger.info("received %s: stopping the simulation", signal.Signals(signum).name)
        stop()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point of ``NRPCoreSim``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv:
        parser.print_help(sys.stderr)
        return 1
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if not args.config:
        parser.print_usage(sys.stderr)
        print("NRPCoreSim: error: the following arguments are required: -c/--config", file=sys.stderr)
        return 2

    _configure_logging(args.cloglevel or "info", args.floglevel, args.logdir)

    # NRPCoreSim, unlike the in-process client, changes into the experiment directory, as nrp-core does.
    config_file = Path(args.config)
    try:
        if args.dir:
            if not Path(args.dir).is_dir():
                raise NotADirectoryError(
                    f"The provided experiment directory path {args.dir} is not a directory"
                )
            os.chdir(args.dir)
        elif config_file.parent != Path(".") and config_file.parent.is_dir():
            os.chdir(config_file.parent)
            config_file = Path(config_file.name)
    except OSError as exc:
        logger.error("%s", exc)
        return 1

    from nrp_core.client import NrpCore, log_file_path

    log_filename = args.logfilename or ".console_output.log"
    client_args = []
    if args.logoutput == "all":
        _redirect_all_output(log_file_path(Path.cwd(), log_filename))
    elif args.logoutput:
        client_args += [f"--logoutput={args.logoutput}", f"--logfilename={log_filename}"]

    if args.mode == "server":
        return _serve(args, client_args)

    stop_requested = threading.Event()
    client: NrpCore | None = None

    def request_stop() -> None:
        stop_requested.set()
        if client is not None and client.current_state() == "Running":
            try:
                client.stop()
            except Exception:  # the loop may just have ended
                pass

    _install_signal_handlers(request_stop)
    try:
        client = NrpCore(
            "",
            experiment_folder=str(Path.cwd()),
            config_file=str(config_file),
            args=" ".join(client_args),
            log_output=None,
            overrides=args.param,
        )
        if args.logconfig:
            logger.debug("configuration: %s", client.config)
        event_loop = client.config.get("SimulationLoop") == "EventLoop"  # runs for EventLoop.Timeout
        if client.config.get("SimulationTimeout", 0) == 0 and not event_loop:
            logger.warning("SimulationTimeout is 0: the simulation runs no step")
        client.initialize()
        if not stop_requested.is_set():
            done, timed_out, _trajectory = client.run_until_timeout()
            logger.info(
                "simulation ended at %.3f s (done flag %s, timeout %s%s)",
                client.simulation_time_ns / 1e9,
                done,
                timed_out,
                ", stopped by signal" if stop_requested.is_set() else "",
            )
        client.shutdown()
    except Exception as exc:
        logger.error("%s", exc)
        if client is not None and client.current_state() != "Created":
            try:
                client.shutdown()
            except Exception as shutdown_exc:
                logger.error("shutdown failed: %s", shutdown_exc)
        return 1
    return 0


def _watch_parent(stop: Any) -> None:
    """``--slave``: call ``stop`` once the parent process is gone."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        logger.info("the parent process exited: shutting down")
        stop()

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _serve(args: Any, client_args: list[str]) -> int:
    """Server mode: serve the ``NrpCore`` gRPC service until shutdown, a signal or the parent's death."""
    from nrp_core.client import NrpCore
    from nrp_core.sim_server import serve

    address = args.server_address or "localhost:50051"
    finished = threading.Event()
    _install_signal_handlers(finished.set)
    if args.slave:
        _watch_parent(finished.set)
    try:
        client = NrpCore(
            address,
            experiment_folder=str(Path.cwd()),
            config_file=str(args.config),
            args=" ".join(client_args),
            log_output=None,
            overrides=args.param,
        )
    except Exception as exc:
        logger.error("%s", exc)
        return 1
    try:
        server, port, shut_down = serve(client, address)
    except OSError as exc:
        logger.error("%s", exc)
        return 3
    host = address.rpartition(":")[0] or "localhost"
    print(f"Listening on grpc://{host}:{port}", flush=True)

    def relay() -> None:
        shut_down.wait()
        finished.set()

    threading.Thread(target=relay, name="shutdown-relay", daemon=True).start()
    finished.wait()
    if client.current_state() != "Created":
        try:
            if client.current_state() == "Running":
                client.stop()
            client.shutdown()
        except Exception as exc:
            logger.error("shutdown failed: %s", exc)
    server.stop(2.0).wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
