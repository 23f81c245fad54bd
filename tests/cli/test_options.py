"""One option name, one type and meaning, across every ``nrp`` command."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

import click

from nrp_cli.main import cli

SHARED = ("--url", "--token", "--storage-url", "--broker")


def commands(command: click.Command, path: str = "nrp") -> Iterator[tuple[str, click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from commands(sub, f"{path} {name}")


def options() -> dict[str, list[tuple[str, click.Option]]]:
    found: dict[str, list[tuple[str, click.Option]]] = defaultdict(list)
    for path, command in commands(cli):
        for param in command.params:
            if isinstance(param, click.Option):
                for name in param.opts:
                    found[name].append((path, param))
    return found


def kind(option: click.Option) -> tuple[object, ...]:
    param_type = option.type
    bounds = (getattr(param_type, "min", None), getattr(param_type, "max", None))
    choices = tuple(getattr(param_type, "choices", ()))
    return (type(param_type).__name__, bounds, choices, option.is_flag)


def test_every_option_name_has_one_type() -> None:
    for name, uses in options().items():
        kinds = {kind(option) for _, option in uses}
        assert len(kinds) == 1, f"{name} has several types: {[(path, kind(o)) for path, o in uses]}"


def test_shared_options_mean_the_same_everywhere() -> None:
    found = options()
    for name in SHARED:
        helps = {option.help for _, option in found[name]}
        assert len(helps) == 1, f"{name}: {helps}"
    # the storage server is --storage-url everywhere; --url is only ever the REST server
    assert all(path.startswith("nrp sim") for path, _ in found["--url"])
    assert {path for path, _ in found["--storage-url"]} >= {"nrp experiments", "nrp sim", "nrp sim logs"}


def test_seconds_are_floats_and_ports_are_port_numbers() -> None:
    found = options()
    for name in ("--timeout", "--ttl"):
        for path, option in found[name]:
            assert isinstance(option.type, click.types.FloatParamType), (path, name)
    for name in ("--port", "--storage-port"):
        for path, option in found[name]:
            assert (option.type.min, option.type.max) == (0, 65535), (path, name)  # type: ignore[attr-defined]
