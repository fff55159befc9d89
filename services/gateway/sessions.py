"""The board's sign-in: a session cookie standing for the API token, and the CSRF check.

A browser signs in once with the API token (``POST /sign-in``, a form); the gateway answers
with a cookie that holds no token: ``<expires>.<nonce>.<signature>``, the signature an
HMAC-SHA256 of ``<expires>.<nonce>`` under a key derived from the API token. So the cookie

- proves its holder gave the API token, and says nothing about it;
- expires (``SESSION_SECONDS``) whatever the browser does with it;
- is valid on every gateway replica with the same token (nothing stored), and void on all of
  them as soon as the API token changes (the way to end every session at once).

The cookie is ``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no other site's page sends
it), ``Path=/`` and ``Secure`` when the request came over https. Writes made with the cookie
must also carry an ``Origin`` naming this gateway (``same_origin``): SameSite covers the
browsers that honour it, the Origin check the rest.

Pure: no clock (``now`` is given), no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

COOKIE = "swarm_session"
SESSION_SECONDS = 12 * 3600
_KEY_LABEL = b"swarm board session v1"


def _key(api_token: str) -> bytes:
    return hmac.new(api_token.encode(), _KEY_LABEL, hashlib.sha256).digest()


def _signature(api_token: str, body: str) -> str:
    return hmac.new(_key(api_token), body.encode(), hashlib.sha256).hexdigest()


def issue(api_token: str, now: float, *, lifetime: float = SESSION_SECONDS) -> str:
    """A new session value, valid until ``now + lifetime``."""
    body = f"{int(now + lifetime)}.{secrets.token_hex(16)}"
    return f"{body}.{_signature(api_token, body)}"


def valid(api_token: str, value: str | None, now: float) -> bool:
    """Whether ``value`` is a session this API token issued and it has not expired."""
    if not value or len(value) > 200:
        return False
    expires, _, rest = value.partition(".")
    nonce, _, signature = rest.partition(".")
    if not (expires.isascii() and expires.isdigit() and nonce and signature):
        return False
    expected = _signature(api_token, f"{expires}.{nonce}")
    if not hmac.compare_digest(signature.encode(), expected.encode()):
        return False
    return int(expires) > now


def same_origin(origin: str | None, host: str | None) -> bool:
    """Whether a request's ``Origin`` header names the host it was sent to (``Host``). A
    missing or ``null`` Origin is not the same origin."""
    if not origin or not host or origin == "null":
        return False
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host.lower()
