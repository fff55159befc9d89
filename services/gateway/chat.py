"""Chat through the gateway: it owns no chat state and resolves no mention. Posts and history
go to the chat service's NATS micro endpoints (``swarm.cmd.<swarm>.chat_post`` and
``chat_history``); no responder or no answer in time is ``Unavailable`` (503). The live stream
(``GET /swarms/:id/chat/stream``) reads ``SWARM_CHAT`` directly (``http.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from schemas import subjects
from schemas.errors import Forbidden, Invalid, SwarmError
from services.bus.micro import call
from services.gateway.context import Context
from services.gateway.validation import swarm_of

if TYPE_CHECKING:
    from services.gateway.commands import Commands

TIMEOUT = 5.0  # seconds for the chat service to answer a post or a history request
RECENT = 10  # messages in ``GET /swarms/:id/status``
RECENT_TIMEOUT = 2.0  # status must not hang on a stuck chat service
MAX_LIMIT = 1000


class ChatRelay:
    def __init__(self, commands: Commands) -> None:
        self.commands = commands

    async def _call(self, swarm_id: str, verb: str, body: Any, **options: Any) -> Any:
        return await call(self.commands.bus.nc, subjects.command(swarm_id, verb), body, **options)

    async def post(
        self, swarm_id: str, data: Any, ctx: Context, *, agent: str | None = None
    ) -> dict[str, Any]:
        """Post a message. ``agent``: the poster holds that agent's token, so it speaks as that
        agent (``author_kind`` ``agent``) whatever the body says."""
        self.commands.check_available()
        swarm = swarm_of(self.commands.board, swarm_id)
        # pydantic's models: imported at the first write, not at start (see models.py)
        from services.gateway.models import PostChat, parse

        spec = parse(PostChat, data)
        body: dict[str, Any] = {
            "message": spec.message,
            "mentions": [*spec.mentions, *spec.mention],
            "channel": spec.channel or "general",
        }
        if agent is not None:
            if agent not in swarm.agents:
                raise Forbidden(f"agent {agent} is not registered in swarm {swarm_id}")
            body |= {"author": agent, "author_kind": "agent"}
        elif spec.author:
            body["author"] = spec.author
        # What this gateway has folded (e.g. an agent registered a moment ago): the chat service
        # resolves mentions only once its own fold has it too.
        headers = {subjects.SEEN_HEADER: str(self.commands.board.seq)}
        if ctx.idempotency_key:
            headers["Idempotency-Key"] = ctx.idempotency_key
        if ctx.correlation_id:
            headers["X-Correlation-Id"] = ctx.correlation_id
        posted: dict[str, Any] = await self._call(
            swarm_id, "chat_post", body, headers=headers, timeout=TIMEOUT
        )
        return posted

    async def history(self, swarm_id: str, *, since: int = 0, limit: int = 100) -> dict[str, Any]:
        """``{"messages": [...]}``: the newest ``limit`` messages after position ``since``,
        oldest first."""
        if since < 0:
            raise Invalid("since", "since must not be negative")
        if not 1 <= limit <= MAX_LIMIT:
            raise Invalid("limit", f"limit must be between 1 and {MAX_LIMIT}")
        self.commands.check_available()
        swarm_of(self.commands.board, swarm_id)
        body = {"since": since, "limit": limit}
        found: dict[str, Any] = await self._call(swarm_id, "chat_history", body, timeout=TIMEOUT)
        return found

    async def recent(self, swarm_id: str) -> list[dict[str, Any]]:
        """The last messages, for status; ``[]`` when the chat service does not answer (status
        still answers without chat)."""
        try:
            answer = await self._call(
                swarm_id, "chat_history", {"limit": RECENT}, timeout=RECENT_TIMEOUT
            )
        except SwarmError:
            return []
        messages = answer.get("messages") if isinstance(answer, dict) else None
        return messages if isinstance(messages, list) else []
