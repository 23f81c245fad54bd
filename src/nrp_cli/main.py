"""Entry point of the ``nrp`` command: one click group; sub-commands live in their own modules."""

from __future__ import annotations

import click


@click.group()
@click.version_option(package_name="nrp-backend")
def cli() -> None:
    """Neurorobotics Platform backend: storage server, REST server, simulations."""


def _register_commands() -> None:
    """Attach the sub-command groups that exist; each module adds itself through ``register(cli)``."""
    import importlib

    for name in ("storage_commands", "backend_commands", "sim_commands", "run_commands", "up_commands"):
        try:
            module = importlib.import_module(f"nrp_cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"nrp_cli.{name}":
                raise
            continue
        module.register(cli)


_register_commands()

if __name__ == "__main__":
    cli()
