"""Options shared by several ``nrp`` commands: one name, one type, one meaning everywhere.

``--url`` is always the REST server, ``--storage-url`` the storage server, ``--token`` the bearer
token, ``--broker`` the MQTT broker (``host:port``). Each may be given on the group
(``nrp sim --url U status 0``) or on the command (``nrp sim status 0 --url U``); the command's wins.
Values land in ``ctx.obj`` under ``url``, ``storage_url``, ``token`` and ``broker``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

HELP = {
    "url": "REST server URL [NRP_BACKEND_URL, then nrp-up.env].",
    "storage_url": "Storage server URL [NRP_STORAGE_URL, then nrp-up.env].",
    "token": "Bearer token [NRP_TOKEN, then nrp-up.env].",
    "broker": "MQTT broker host:port [NRP_MQTT_BROKER_ADDRESS, then nrp-up.env].",
}


def _store(key: str) -> Callable[[click.Context, click.Parameter, str | None], None]:
    def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
        obj = ctx.ensure_object(dict)
        if value is not None or key not in obj:
            obj[key] = value

    return callback


def shared_options(*keys: str) -> Callable[[F], F]:
    """Add the shared options ``keys`` (``url``, ``storage_url``, ``token``, ``broker``) to a command."""

    def decorate(function: F) -> F:
        for key in reversed(keys):
            flag = "--" + key.replace("_", "-")
            function = click.option(
                flag, default=None, expose_value=False, is_eager=False, callback=_store(key), help=HELP[key]
            )(function)
        return function

    return decorate
