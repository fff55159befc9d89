"""Who calls the MCP server: its bearer token, checked with ``schemas.scopes`` (the API token is
full access, an agent's own token that agent in its swarm), as the MCP SDK's token verifier; the
wrong tokens each client address gave (``schemas.token_failures``, as at the gateway); and which
swarm a tool acts on. The verifier holds the API token; nothing here logs a token."""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from schemas.errors import SwarmError
from schemas.scopes import FULL, Caller, bearer, identify
from schemas.token_failures import TokenFailures, client_key
from services.bus.micro import error_body

log = structlog.get_logger("mcp.access")

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


class LimitedAttempts:
    """ASGI middleware around the whole MCP app: a request with a bearer token from an address
    that gave too many wrong ones answers 429 with ``Retry-After`` before the SDK looks at the
    token (a right one too); a 401 from the SDK to a bearer token counts as a wrong token. The
    address is the TCP peer's (uvicorn is told to trust no proxy header); requests without a
    bearer token are no attempts and pass untouched."""

    def __init__(self, app: ASGIApp, failures: TokenFailures) -> None:
        self.app = app
        self.failures = failures
        self.monotonic: Callable[[], float] = time.monotonic  # the failures' windows

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or bearer(Headers(scope=scope).get("authorization")) is None:
            await self.app(scope, receive, send)
            return
        peer = scope.get("client")
        address = client_key(peer[0] if peer else None)
        refused = self.failures.refusal(address, self.monotonic())
        if refused is not None:
            answer = JSONResponse(
                error_body(refused),
                refused.status,
                headers={"Retry-After": str(refused.retry_after)},
            )
            await answer(scope, receive, send)
            return

        async def counting(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 401:
                self.wrong_token(address)
            await send(message)

        await self.app(scope, receive, counting)

    def wrong_token(self, address: str) -> None:
        """Count a wrong token from ``address``; say so once when it has to wait (never the
        token itself)."""
        if self.failures.failed(address, self.monotonic()):
            limits = self.failures.limits
            log.warning(
                "auth.limited", address=address, failures=limits.failures, wait_s=limits.window
            )


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
