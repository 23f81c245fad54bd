"""``python -m nrp_cli`` runs the ``nrp`` command."""

from nrp_cli.main import cli

cli()
