"""The ``NRPCoreSim`` command-line options, shared by the command and by ``NrpCore``'s ``args``.

``NRPCoreSim`` parses its command line with :func:`build_parser`; ``NrpCore(args="...")`` accepts
the same options in one string (:func:`parse_client_args`), as nrp-client passes them on to the
``NRPCoreSim`` process it starts.
"""

from __future__ import annotations

import argparse

__all__ = ["LOG_LEVELS", "ClientOptions", "build_parser", "parse_client_args"]

LOG_LEVELS = ("trace", "debug", "info", "warn", "warning", "error", "critical", "off")


def build_parser(exit_on_error: bool = True) -> argparse.ArgumentParser:
    """The ``NRPCoreSim`` argument parser: nrp-core's options, some of them accepted and ignored."""
    parser = argparse.ArgumentParser(
        prog="NRPCoreSim",
        description="Run an nrp-core experiment with the pure-Python runtime.",
        exit_on_error=exit_on_error,
    )
    parser.add_argument("-c", "--config", help="experiment configuration file")
    parser.add_argument("-d", "--dir", help="experiment directory")
    parser.add_argument("-p", "--plugins", help="engine plugin libraries (accepted and ignored)")
    parser.add_argument("-m", "--mode", default="standalone", choices=("standalone", "server"))
    parser.add_argument(
        "--server_address", help="server mode: the address to serve on, HOST:PORT (localhost:50051)"
    )
    parser.add_argument("--slave", action="store_true", help="server mode: exit when the parent process dies")
    parser.add_argument(
        "-o", "--param", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)"
    )
    parser.add_argument("-l", "--logconfig", action="store_true", help="dump the final config at debug level")
    parser.add_argument("--cloglevel", default=None, choices=LOG_LEVELS, help="console log level (info)")
    parser.add_argument("--floglevel", default="off", choices=LOG_LEVELS, help="file log level (off)")
    parser.add_argument("--logdir", default="logs", help="log directory (logs)")
    parser.add_argument(
        "--logoutput", choices=("engines", "all", "silent"), help="redirect output to the log file"
    )
    parser.add_argument("--logfilename", default=None, help="output log file (.console_output.log)")
    return parser


class ClientOptions(argparse.Namespace):
    """The options of an ``NrpCore`` ``args`` string that the client uses."""

    overrides: list[str]
    logoutput: str | None
    logfilename: str | None
    cloglevel: str | None


def parse_client_args(args: str) -> ClientOptions:
    """Parse the client's ``args`` string (split on single spaces, as the original).

    Only ``-o``, ``--cloglevel``, ``--logoutput`` and ``--logfilename`` matter to the client; other
    options are accepted and ignored.

    Raises:
        ValueError: an option has an invalid or missing value.
    """
    parts = [part for part in (args or "").split(" ") if part]
    try:
        parser = build_parser(exit_on_error=False)
        namespace, _unknown = parser.parse_known_args(parts, namespace=ClientOptions())
    except argparse.ArgumentError as exc:
        raise ValueError(f"invalid args {args!r}: {exc}") from None
    namespace.overrides = list(namespace.param)
    return namespace
