"""Local login as the NRP storage proxy does it (``/authentication/loginpage`` and ``/authenticate``).

The NRP frontend (without OIDC) reacts to a 477 answer by sending the browser to
``<proxy>/authentication/loginpage?origin=FS&client_id=...&redirect_uri=<its page>``. The page posts
``{"user", "password"}`` to ``authenticate``, gets the token as text and returns to
``redirect_uri + "&access_token=" + token``; the frontend stores it and sends it as a Bearer token.

Differences from the original: passwords are checked against a scrypt hash (``users.py``), failed
logins are rate limited per user name and in total (429 with ``Retry-After``), and the page only
returns the token to its own origin, a loopback origin when it is served on one, or an origin named
in ``NRP_LOGIN_ORIGINS`` (an open redirect would hand the token to any site).
"""

from __future__ import annotations

import html
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field

#: Failed logins allowed per user name, and in total, within ``WINDOW`` seconds.
FAILURES_PER_USER = 5
FAILURES_TOTAL = 60
WINDOW = 60.0
#: Password hashes computed at once (each takes tens of MiB for a few tenths of a second).
CONCURRENT_HASHES = 2
MAX_USER_NAME = 128


@dataclass
class LoginLimiter:
    """Counts failed logins in a sliding window, per user name and in total."""

    per_user: int = FAILURES_PER_USER
    total: int = FAILURES_TOTAL
    window: float = WINDOW
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _failures: dict[str, deque[float]] = field(default_factory=dict, init=False, repr=False)
    _all: deque[float] = field(default_factory=deque, init=False, repr=False)
    hashing: threading.BoundedSemaphore = field(
        default_factory=lambda: threading.BoundedSemaphore(CONCURRENT_HASHES), init=False, repr=False
    )

    def _prune(self, now: float) -> None:
        horizon = now - self.window
        while self._all and self._all[0] <= horizon:
            self._all.popleft()
        for name in [n for n, times in self._failures.items() if not times or times[-1] <= horizon]:
            del self._failures[name]
        for times in self._failures.values():
            while times and times[0] <= horizon:
                times.popleft()

    def retry_after(self, user: str) -> float:
        """Seconds until ``user`` may try again; 0 when a try is allowed now."""
        now = time.monotonic()
        with self._lock:
            self._prune(now)
            waits = [0.0]
            times = self._failures.get(user)
            if times is not None and len(times) >= self.per_user:
                waits.append(times[0] + self.window - now)
            if len(self._all) >= self.total:
                waits.append(self._all[0] + self.window - now)
            return max(waits)

    def failed(self, user: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._failures.setdefault(user, deque()).append(now)
            self._all.append(now)


def login_page(client_id: str, redirect_uri: str, extra_origins: list[str]) -> str:
    """The login form; ``client_id`` and ``redirect_uri`` are kept in hidden fields."""
    config = json.dumps({"origins": extra_origins}).replace("<", "\\u003c")
    return _PAGE.format(
        client_id=html.escape(client_id, quote=True),
        redirect_uri=html.escape(redirect_uri, quote=True),
        config=config,
    )


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>NRP login</title>
<style>
  body {{ font-family: sans-serif; background: #eef1f4; display: flex; justify-content: center;
         align-items: center; min-height: 100vh; margin: 0; }}
  form {{ background: #fff; padding: 2em 2.5em; border-radius: 8px; box-shadow: 0 2px 12px #0003;
          width: 20em; }}
  h1 {{ font-size: 1.2em; margin: 0 0 1em; color: #333; }}
  label {{ display: block; margin: 0.8em 0 0.3em; color: #444; font-size: 0.9em; }}
  input[type=text], input[type=password] {{ width: 100%; box-sizing: border-box; padding: 0.6em;
          border: 1px solid #bbb; border-radius: 4px; font-size: 1em; }}
  button {{ margin-top: 1.4em; width: 100%; padding: 0.7em; border: 0; border-radius: 4px;
            background: #2e7d32; color: #fff; font-size: 1em; cursor: pointer; }}
  #message {{ color: #c62828; min-height: 1.2em; margin-top: 1em; font-size: 0.9em; }}
</style>
</head>
<body>
<form id="login" autocomplete="on">
  <h1>Neurorobotics Platform</h1>
  <input type="hidden" name="client_id" value="{client_id}">
  <input type="hidden" name="redirect_uri" value="{redirect_uri}">
  <label for="user">User name</label>
  <input type="text" id="user" name="user" autocomplete="username" required autofocus>
  <label for="password">Password</label>
  <input type="password" id="password" name="password" autocomplete="current-password" required>
  <button type="submit" id="submit">Log in</button>
  <div id="message" role="alert"></div>
</form>
<script>
(function () {{
  var config = {config};
  var form = document.getElementById("login");
  var message = document.getElementById("message");
  function loopback(host) {{
    return host === "localhost" || host === "127.0.0.1" || host === "[::1]";
  }}
  function allowed(target) {{
    var url;
    try {{ url = new URL(target, window.location.href); }} catch (e) {{ return false; }}
    if (url.protocol !== "http:" && url.protocol !== "https:") return false;
    if (url.origin === window.location.origin) return true;
    if (loopback(url.hostname) && loopback(window.location.hostname)) return true;
    return config.origins.indexOf(url.origin) >= 0;
  }}
  form.addEventListener("submit", function (event) {{
    event.preventDefault();
    message.textContent = "";
    var redirect = form.elements["redirect_uri"].value;
    fetch("authenticate", {{
      method: "POST",
      headers: {{ "Content-Type": "application/json" }},
      body: JSON.stringify({{ user: form.elements["user"].value, password: form.elements["password"].value }})
    }}).then(function (response) {{
      return response.text().then(function (text) {{
        if (!response.ok) {{
          var reason = "Login failed";
          try {{ reason = JSON.parse(text).message || reason; }} catch (e) {{}}
          message.textContent = response.status === 403 ? "Wrong user name or password" : reason;
          return;
        }}
        if (!redirect) {{ message.textContent = "Logged in."; return; }}
        if (!allowed(redirect)) {{
          message.textContent = "Refusing to return the token to " + redirect;
          return;
        }}
        window.location.href = redirect + "&access_token=" + encodeURIComponent(text);
      }});
    }}).catch(function () {{ message.textContent = "The server does not answer"; }});
  }});
}})();
</script>
</body>
</html>
"""
