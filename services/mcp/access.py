"""Who calls the MCP server: its bearer token, checked with ``schemas.scopes`` (the API token is
full access, an agent's own token that agent in its swarm), as the MCP SDK's token verifier; and
which swarm a tool acts on. The verifier holds the API token; nothing here logs a token."""

from __future__ import annotations

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken

from schemas.errors import SwarmError
from schemas.scopes import FULL, Caller, identify

FULL_CLIENT = "api"
AGENT_CLIENT = "agent"


class BearerTokens:
    """The SDK's ``TokenVerifier``: a token ``schemas.scopes.identify`` accepts."""

    def __init__(self, api_token: str) -> None:
        self._api_token = api_token

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            caller = identify(self._api_token, token)
        except SwarmError:
            return None
        if caller.agent is None:
            return AccessToken(token=token, client_id=FULL_CLIENT, scopes=[])
        claims = {"swarm": caller.swarm, "agent": caller.agent}
        return AccessToken(token=token, client_id=AGENT_CLIENT, scopes=[], claims=claims)


def current_caller() -> tuple[Caller, str | None]:
    """The caller of the tool being run, and the agent token to forward (None for full access:
    the request to the gateway then carries none). No auth configured: full access."""
    access = get_access_token()
    if access is None or access.client_id != AGENT_CLIENT or not access.claims:
        return FULL, None
    return Caller(agent=access.claims["agent"], swarm=access.claims["swarm"]), access.token


def target_swarm(caller: Caller, given: str | None, default: str) -> str:
    """The swarm a tool acts on: the one named, else the agent's own, else the default."""
    if given:
        return given
    return caller.swarm if caller.swarm else default
