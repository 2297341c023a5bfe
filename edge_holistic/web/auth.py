"""Bearer-token access to the web page and API.

Why a cookie as well as the header: a browser's ``<img src=/stream.mjpg>`` and
``EventSource`` cannot send an ``Authorization`` header, so ``POST /api/login``
(the token as JSON) sets an HttpOnly, SameSite=Strict cookie holding it, and
the page works from then on. Both are compared with ``hmac.compare_digest``
(constant time). ``/healthz`` and ``/metrics`` stay open for probes and
Prometheus; without a token (loopback only, or ``allow_anonymous``) nothing
needs one.
"""
from __future__ import annotations

import hmac
from pathlib import Path
from typing import Optional

COOKIE = "edge_holistic_token"
# The login page's own style and script: nothing secret, needed before the token is known.
PUBLIC_PATHS = frozenset({"/healthz", "/metrics", "/api/login", "/static/style.css", "/static/login.js"})
MAX_TOKEN_BYTES = 512


class TokenError(ValueError):
    pass


def read_token(path: str) -> Optional[str]:
    """The first line of ``path`` (None for an empty path); TokenError when unusable."""
    if not path:
        return None
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise TokenError(f"http.token_file {path}: cannot read: {getattr(e, 'strerror', None) or e}") from e
    token = lines[0].strip() if lines else ""
    if len(token) < 8:
        raise TokenError(f"http.token_file {path}: the token (first line) must be at least 8 characters")
    if len(token.encode()) > MAX_TOKEN_BYTES:
        raise TokenError(f"http.token_file {path}: the token is longer than {MAX_TOKEN_BYTES} bytes")
    return token


def token_matches(expected: str, given: Optional[str]) -> bool:
    if not given or len(given) > MAX_TOKEN_BYTES:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def bearer(header: Optional[str]) -> Optional[str]:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def authorized(expected: Optional[str], path: str, authorization: Optional[str], cookie: Optional[str]) -> bool:
    if expected is None or path in PUBLIC_PATHS:
        return True
    return token_matches(expected, bearer(authorization)) or token_matches(expected, cookie)
