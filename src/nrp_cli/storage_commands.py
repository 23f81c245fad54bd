"""``nrp storage``, ``nrp user add|token`` and ``nrp experiments list|upload|download``."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hbp_nrp_commons.settings import Settings, SettingsError, load_settings
from nrp_cli.options import shared_options
from nrp_cli.up_env import read_up_env

if TYPE_CHECKING:
    from hbp_nrp_backend.storage_client import StorageClient

T = TypeVar("T")

err = Console(stderr=True)
out = Console(highlight=False)


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc


def _storage_root(root: Path | None) -> Path:
    return root if root is not None else _settings().storage.root


def resolve_storage_access(
    url: str | None, token: str | None, env: Mapping[str, str] | None = None
) -> tuple[str, str | None]:
    """Storage URL and token: options, then the environment, then ``$NRP_DATA_DIR/nrp-up.env``.

    Click fills ``url``/``token`` from ``NRP_STORAGE_URL``/``NRP_TOKEN`` already; the file and the
    settings' default URL are the fallbacks.
    """
    env = os.environ if env is None else env
    settings = load_settings(env)
    up_env = read_up_env(settings.data_dir)
    url = url or env.get("NRP_STORAGE_URL") or up_env.get("NRP_STORAGE_URL") or settings.storage_url
    token = token or env.get("NRP_TOKEN") or up_env.get("NRP_TOKEN")
    return url.rstrip("/"), token


# nrp storage


@click.command("storage")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), help="Storage root [STORAGE_PATH].")
@click.option("--host", help="Listen address [NRP_STORAGE_HOST or 127.0.0.1].")
@click.option(
    "--port", type=click.IntRange(0, 65535), help="Listen port, 0 for a free one [NRP_STORAGE_PORT or 9000]."
)
@click.option(
    "--frontend",
    type=click.Path(file_okay=False, path_type=Path),
    help="NRP frontend build folder served at / (NRP_FRONTEND_DIR).",
)
@click.option(
    "--backends-file",
    "backends_files",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="JSON servers file of the backend registry, re-read when it changes (also NRP_BACKENDS_FILE).",
)
def storage_command(
    root: Path | None,
    host: str | None,
    port: int | None,
    frontend: Path | None,
    backends_files: tuple[Path, ...],
) -> None:
    """Run the storage server (experiment folders, users and tokens, login, backend registry)."""
    import logging

    from hbp_nrp_storage.frontend import FrontendError
    from hbp_nrp_storage.registry import RegistryError
    from hbp_nrp_storage.server import PortBusyError, serve

    settings = _settings().storage
    changes: dict[str, Any] = {}
    if root is not None:
        changes["root"] = root
    if host:
        changes["host"] = host
    if port is not None:
        changes["port"] = port
    if frontend is not None:
        changes["frontend"] = frontend
    if backends_files:
        changes["backends_files"] = settings.backends_files + backends_files
    if changes:
        from dataclasses import replace

        settings = replace(settings, **changes)
    from hbp_nrp_commons.timestamps import UtcFormatter

    handler = logging.StreamHandler()
    handler.setFormatter(UtcFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])

    def announce(line: str) -> None:
        click.echo(line)
        sys.stdout.flush()

    try:
        serve(settings, announce)
    except (PortBusyError, FrontendError, RegistryError) as exc:
        raise click.ClickException(str(exc)) from exc


# nrp user


@click.group("user")
def user_group() -> None:
    """Manage storage users and their tokens (works whether the server runs or not)."""


_root_option = click.option(
    "--root", type=click.Path(file_okay=False, path_type=Path), help="Storage root [STORAGE_PATH]."
)
_ttl_option = click.option(
    "--ttl", type=float, default=None, help="Token lifetime in seconds (default: never)."
)


def _new_token(root: Path | None, name: str, ttl: float | None, existing: bool) -> str:
    """A new token for user ``name``, who is created first unless ``existing``."""
    from hbp_nrp_storage.users import UserError, UserStore

    try:
        store = UserStore(_storage_root(root))
        return store.issue_token(name, ttl) if existing else store.add_user(name, ttl)
    except UserError as exc:
        raise click.ClickException(str(exc)) from exc


@user_group.command("add")
@click.argument("name")
@_root_option
@_ttl_option
def user_add(name: str, root: Path | None, ttl: float | None) -> None:
    """Create user NAME and print a new token for it."""
    token = _new_token(root, name, ttl, existing=False)
    err.print(f"Created user [bold]{name}[/bold]; its token:")
    click.echo(token)


@user_group.command("token")
@click.argument("name")
@_root_option
@_ttl_option
def user_token(name: str, root: Path | None, ttl: float | None) -> None:
    """Print a new token for the existing user NAME."""
    token = _new_token(root, name, ttl, existing=True)
    err.print(f"New token for [bold]{name}[/bold]:")
    click.echo(token)


@user_group.command("passwd")
@click.argument("name")
@_root_option
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
def user_passwd(name: str, root: Path | None, password_stdin: bool) -> None:
    """Set the login password of user NAME (asked twice unless --password-stdin).

    The password is stored as a salted scrypt hash; the user's login sessions end, tokens from
    `nrp user add|token` stay valid.
    """
    from hbp_nrp_storage.users import UserError, UserStore

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    try:
        UserStore(_storage_root(root)).set_password(name, password)
    except UserError as exc:
        raise click.ClickException(str(exc)) from exc
    err.print(f"Password of [bold]{name}[/bold] set.")


# nrp experiments


@click.group("experiments")
@shared_options("storage_url", "token")
def experiments_group() -> None:
    """List, upload and download storage experiments."""


def _client(ctx: click.Context) -> tuple[StorageClient, str]:
    from hbp_nrp_backend.storage_client import StorageClient

    try:
        url, token = resolve_storage_access(ctx.obj.get("storage_url"), ctx.obj.get("token"))
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc
    if not token:
        raise click.ClickException("no token: pass --token, set NRP_TOKEN, or run `nrp up` (nrp-up.env)")
    return StorageClient(url, timeout=_settings().storage_timeout), token


def _run(action: Callable[[], T]) -> T:
    from hbp_nrp_backend.storage_client import StorageError

    try:
        return action()
    except StorageError as exc:
        raise click.ClickException(f"{exc}{': ' + exc.detail if exc.detail else ''}") from exc


@experiments_group.command("list")
@shared_options("storage_url", "token")
@click.option("--all", "list_all", is_flag=True, help="Every folder in storage, not only yours.")
@click.pass_context
def experiments_list(ctx: click.Context, list_all: bool) -> None:
    """List the experiments you can read."""
    client, token = _client(ctx)
    with client:
        items = _run(lambda: client.list_experiments(token, None, get_all=list_all))
    table = Table("id", "name", "owned", "clone date (UTC)")
    for item in items:
        config = item.get("configuration", {})
        table.add_row(
            escape(item["id"]),
            escape(str(config.get("SimulationName", ""))),
            "yes" if item.get("owned") else "",
            str(config.get("cloneDate", "")).replace(" ", "T"),  # storage answers the original's form
        )
    out.print(table)


@experiments_group.command("upload")
@shared_options("storage_url", "token")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--name", help="Experiment id (default: the folder's name).")
@click.pass_context
def experiments_upload(ctx: click.Context, directory: Path, name: str | None) -> None:
    """Upload DIRECTORY as a new experiment (its whole tree, empty folders included)."""
    client, token = _client(ctx)
    exp = name or directory.resolve().name
    with client:
        count = _run(lambda: client.upload_experiment(token, exp, directory))
    err.print(f"Uploaded [bold]{count}[/bold] files to experiment [bold]{exp}[/bold]")
    click.echo(exp)


@experiments_group.command("download")
@shared_options("storage_url", "token")
@click.argument("experiment_id")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.pass_context
def experiments_download(ctx: click.Context, experiment_id: str, directory: Path) -> None:
    """Download experiment EXPERIMENT_ID into DIRECTORY (logs and caches left out)."""
    client, token = _client(ctx)
    with client:
        files = _run(lambda: client.clone_experiment(token, experiment_id, directory))
    err.print(f"Downloaded [bold]{len(files)}[/bold] files into {directory}")


def register(cli: click.Group) -> None:
    """Add the storage commands to the ``nrp`` group."""
    cli.add_command(storage_command)
    cli.add_command(user_group)
    cli.add_command(experiments_group)
