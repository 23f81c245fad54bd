"""REST resources, one module per noun; :func:`register_resources` attaches them to an ``Api``."""

from __future__ import annotations

from flask_smorest import Api


def register_resources(api: Api) -> None:
    """Register every resource blueprint on ``api``."""
    from hbp_nrp_backend.api import health, logs, simulation, state, version

    for module in (version, health, simulation, state, logs):
        api.register_blueprint(module.blp)
