"""Storage server compatible with the NRP storage proxy's API (local filesystem mode).

``create_app(settings)`` builds the Flask app; ``server.serve`` runs it under waitress;
``users.UserStore`` is the users, tokens and experiment records database the CLI also writes.
"""

from .app import create_app

__all__ = ["create_app"]
