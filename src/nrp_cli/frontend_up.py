"""What ``nrp up`` adds for the NRP web frontend: the gateway port, the login, the servers file.

Kept apart from ``up_commands.py`` so the start sequence there stays short: the storage server
listens on a private port, the gateway (:mod:`hbp_nrp_commons.gateway`) takes the public one
(9000 by default, as the original HAProxy did) and shares it between storage, the frontend's files
and MQTT over WebSocket; the REST server is registered in a servers file the storage server watches.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

SERVERS_FILE = "nrp-up-servers.json"
LOCAL_SERVER_ID = "local"


class FrontendDirError(ValueError):
    """The frontend folder is unusable; the message says why."""


def frontend_dir(option: Path | None) -> Path | None:
    """The frontend build folder: ``--frontend``, else ``NRP_FRONTEND_DIR``, else none.

    Raises:
        FrontendDirError: the folder does not exist or has no ``index.html``.
    """
    raw = option if option is not None else (os.environ.get("NRP_FRONTEND_DIR", "").strip() or None)
    if raw is None:
        return None
    folder = Path(raw).expanduser().resolve()
    if not (folder / "index.html").is_file():
        raise FrontendDirError(f"{folder} is not a frontend build folder (no index.html)")
    return folder


def browser_url(url: str) -> str:
    """``url`` as a browser on this machine should open it: a wildcard or loopback host becomes
    ``localhost``, the name the stock frontend build uses (``http://localhost:9000``)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host in ("0.0.0.0", "::", "127.0.0.1", "::1"):
        netloc = f"localhost:{parts.port}" if parts.port else "localhost"
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def ensure_login(storage_root: Path, user: str) -> str:
    """Give ``user`` a generated password if it has none; return the ``Login:`` line to print.

    The password is printed once, when it is made; later starts say how to reset it.
    """
    from hbp_nrp_storage.users import UserStore

    store = UserStore(storage_root)
    if store.has_password(user):
        return f"Login: {user} (password set earlier; `nrp user passwd {user}` sets a new one)"
    password = secrets.token_urlsafe(12)
    store.set_password(user, password)
    return f"Login: {user} / {password}"


def servers_file(data_dir: Path) -> Path:
    return data_dir / SERVERS_FILE


def write_servers_file(path: Path, backend_url: str | None, max_simulations: int) -> None:
    """Write the registry's servers file atomically: this ``nrp up``'s REST server, or none yet."""
    servers = {}
    if backend_url is not None:
        servers[LOCAL_SERVER_ID] = {
            "internalIp": backend_url,
            "nrp-services": browser_url(backend_url),
            "serverJobLocation": "local",
            "maxSimulations": max_simulations,
        }
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps({"servers": servers}, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def gateway_args(python: str, host: str, port: int, storage_port: int, broker_address: str) -> list[str]:
    """The command line of the gateway on the public port."""
    broker_host, _, broker_port = broker_address.rpartition(":")
    if broker_host in ("localhost", "0.0.0.0", ""):
        broker_host = "127.0.0.1"
    return [
        python,
        "-m",
        "hbp_nrp_commons.gateway",
        "--host",
        host,
        "--port",
        str(port),
        "--http",
        f"127.0.0.1:{storage_port}",
        "--mqtt",
        f"{broker_host}:{broker_port}",
    ]
