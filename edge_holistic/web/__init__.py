"""The web page and HTTP API inside the daemon (issue 11).

``server.WebServer`` runs aiohttp in its own thread; ``routes`` holds the
endpoints; ``live`` the MJPEG stream and pushed numbers; ``analyze`` the
upload pipeline; ``images`` the upload checks; ``metrics`` ``/metrics``;
``auth`` the token. It reads and controls the daemon only through
``DaemonView``.
"""
from __future__ import annotations

from typing import Any, Optional

__all__ = ["start_web"]


def start_web(view: Any, http_cfg: Any, defaults: Optional[dict] = None):
    """Start the server (returns it; ``stop()`` it on shutdown), or raise WebStartError / TokenError."""
    from .server import WebServer

    return WebServer(view, http_cfg, defaults).start()
