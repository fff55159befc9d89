"""Per-agent tokens: what an agent inside its sandbox holds to talk to Swarm as itself.

``agent.<swarm>.<agent>.<mac>`` where ``mac`` is the first 32 hex digits of
HMAC-SHA256(key = the API token, message = ``"<swarm>:<agent>"``). Whoever holds the API token
(the executor, to hand tokens out; the gateway, to check them) can make and verify one; an agent
that holds one can act only as itself in its own swarm, within what ``schemas.scopes`` allows
(reading its swarm, chat, follow-up tasks). Changing the API token invalidates every agent
token.

Pure: no clock, no storage. The token is a secret: never put it in an event, a log or chat.
"""

from __future__ import annotations

import hashlib
import hmac
import re

PREFIX = "agent"
MAC_HEX = 32  # 128 bits

_ID = r"[A-Za-z0-9_-]{1,128}"  # a subject token (schemas.subjects.check_token)
_TOKEN = re.compile(rf"^{PREFIX}\.({_ID})\.({_ID})\.([0-9a-f]{{{MAC_HEX}}})$")


def _mac(api_token: str, swarm: str, agent: str) -> str:
    digest = hmac.new(api_token.encode(), f"{swarm}:{agent}".encode(), hashlib.sha256)
    return digest.hexdigest()[:MAC_HEX]


def make_agent_token(api_token: str, swarm: str, agent: str) -> str:
    """The token of ``agent`` in ``swarm``, derived from the API token."""
    if not api_token:
        raise ValueError("an agent token needs the API token")
    if not re.fullmatch(_ID, swarm) or not re.fullmatch(_ID, agent):
        raise ValueError("swarm and agent must be ids (letters, digits, '-' or '_')")
    return f"{PREFIX}.{swarm}.{agent}.{_mac(api_token, swarm, agent)}"


def is_agent_token(token: str) -> bool:
    """Whether ``token`` has an agent token's form (says nothing about its validity)."""
    return bool(_TOKEN.match(token or ""))


def verify_agent_token(api_token: str, token: str) -> tuple[str, str] | None:
    """``(swarm, agent)`` when ``token`` is a valid agent token under ``api_token``, else None.
    The MAC is compared in constant time."""
    if not api_token or not isinstance(token, str):
        return None
    found = _TOKEN.match(token)
    if found is None:
        return None
    swarm, agent, mac = found.groups()
    if not hmac.compare_digest(mac, _mac(api_token, swarm, agent)):
        return None
    return swarm, agent
