#!/usr/bin/env python3
"""A local stand-in of the Anthropic Messages API, for running the real Claude Code CLI in tests.

The CLI is pointed at it with ``ANTHROPIC_BASE_URL``; it answers ``POST /v1/messages`` with a
streamed (SSE) reply as the real API does: ``message_start``, per content block
``content_block_start`` / ``content_block_delta`` (``text_delta`` or ``input_json_delta``) /
``content_block_stop``, ``message_delta`` (stop reason and usage), ``message_stop``. It also
answers what else the CLI may call (``/v1/messages/count_tokens``, ``/v1/models``); anything else
is a 404 in the API's error shape, recorded like every request.

**Script-driven.** A ``Script`` is a list of ``Conversation``s. Each has a ``marker``: a request
belongs to the first conversation whose marker appears in the text its user sent (so put a unique
marker in the task's prompt). Its ``turns`` are what the model "says", one per request of that
conversation, in order: the turn answered is the one after the last the request's history holds
(the stand-in's tool-call ids name their turn; without any, the number of assistant messages
counts). It is stateless: a retried request gets the same turn again, and a resumed session
continues where its history ends, whatever the CLI added to it. A turn is a ``Reply`` (content
blocks: ``Text`` and ``ToolUse``, with usage) or an ``ApiError`` (HTTP status, error type;
``times`` limits how often it is given before the conversation moves on to the next turn).

Past its last turn a conversation answers "done"; a request matching no conversation (the
CLI's side requests, e.g. titles) is answered by ``Script.fallback``.

**Recorded.** Every request is kept (``server.requests``) with its path, headers and JSON body,
and which conversation and turn it was answered with, so tests can assert on what the CLI sent:
the tools it offered (``tools_offered``), the tool results it returned (``tool_results``), its
system prompt (``system_text``).

Use from a test (aiohttp, in the test's event loop)::

    async with FakeAnthropic(Script([Conversation("MARK-1", [Reply([ToolUse("Write",
            {"file_path": "a.txt", "content": "hi"}), ]), Reply([Text("done")])])])) as api:
        env = {"ANTHROPIC_BASE_URL": api.url, ...}

or as a process: ``python tests/fake_anthropic.py --port 8765 --script script.json --record
requests.jsonl`` (the script as JSON: ``{"conversations": [{"marker": "...", "turns": [{"text":
"..."}, {"tool_use": {"name": "Bash", "input": {"command": "ls"}}}, {"error": 529}]}]}``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import socket
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

MODEL = "claude-sonnet-4-5"
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
DELTA_CHARS = 24  # text and tool input are streamed in pieces of this size


# --- the script ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class ToolUse:
    name: str
    input: dict[str, Any]
    id: str | None = None  # default: toolu_<conversation index>_<turn>_<block>


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 100
    output_tokens: int = 20


@dataclass
class Reply:
    """One model turn: content blocks, streamed. ``stop_reason`` defaults to ``tool_use`` when a
    block is a tool use, else ``end_turn``. ``hold``: seconds to stall before ``message_start``
    (a long-running turn: the client may go away meanwhile, with nothing of the turn said);
    ``FakeAnthropic.release()`` ends every stall at once. A hold applies to the first request of
    that turn only (a retry, or the same turn asked again by a resumed session, is answered at
    once)."""

    blocks: list[Text | ToolUse]
    usage: Usage = field(default_factory=Usage)
    stop_reason: str | None = None
    hold: float = 0.0


@dataclass
class ApiError:
    """An HTTP error in the API's shape. ``times``: how many requests get it before the
    conversation moves on to its next turn (None: every request, for ever)."""

    status: int
    message: str = ""
    type: str | None = None
    times: int | None = None
    retry_after_ms: int | None = None

    @property
    def error_type(self) -> str:
        return self.type or ERROR_TYPES.get(self.status, "api_error")


Turn = Reply | ApiError


@dataclass
class Conversation:
    marker: str
    turns: list[Turn]


@dataclass
class Script:
    conversations: list[Conversation] = field(default_factory=list)
    fallback: Reply = field(default_factory=lambda: Reply([Text("Swarm stand-in")]))
    done: Reply = field(default_factory=lambda: Reply([Text("done")]))

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Script:
        """The JSON form (see the module doc)."""
        conversations = []
        for entry in raw.get("conversations", []):
            turns: list[Turn] = []
            for turn in entry["turns"]:
                turns.append(_turn_from_json(turn))
            conversations.append(Conversation(entry["marker"], turns))
        script = cls(conversations)
        if "fallback" in raw:
            fallback = _turn_from_json(raw["fallback"])
            assert isinstance(fallback, Reply), "fallback must be a reply"
            script.fallback = fallback
        return script


def _turn_from_json(turn: dict[str, Any]) -> Turn:
    if "error" in turn:
        return ApiError(
            status=int(turn["error"]),
            message=str(turn.get("message", "")),
            times=turn.get("times"),
            retry_after_ms=turn.get("retry_after_ms"),
        )
    blocks: list[Text | ToolUse] = []
    for block in turn.get("blocks", [turn]):
        if "text" in block:
            blocks.append(Text(block["text"]))
        if "tool_use" in block:
            blocks.append(ToolUse(block["tool_use"]["name"], block["tool_use"].get("input", {})))
    usage = turn.get("usage") or {}
    return Reply(blocks, Usage(**usage), turn.get("stop_reason"), float(turn.get("hold", 0)))


# --- what was asked -----------------------------------------------------------------------------


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    time: float
    conversation: str | None = None  # its marker
    turn: int | None = None
    answered: str = ""  # "reply", "error 529", "fallback", "done", "404"...

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", [])) if isinstance(self.body, dict) else []

    @property
    def tools(self) -> list[str]:
        if not isinstance(self.body, dict):
            return []
        return [str(tool.get("name")) for tool in self.body.get("tools", []) or []]

    @property
    def system_text(self) -> str:
        system = self.body.get("system") if isinstance(self.body, dict) else None
        if isinstance(system, str):
            return system
        return "\n".join(_texts(system or []))

    @property
    def user_text(self) -> str:
        return "\n".join(
            text for m in self.messages if m.get("role") == "user" for text in _texts(m["content"])
        )

    def tool_results(self) -> list[dict[str, Any]]:
        """The tool_result blocks in this request, each with ``text`` (its content as text)."""
        found = []
        for message in self.messages:
            content = message.get("content")
            if message.get("role") != "user" or not isinstance(content, list):
                continue
            for block in content:
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    inner = block.get("content")
                    text = inner if isinstance(inner, str) else "\n".join(_texts(inner or []))
                    found.append({**block, "text": text})
        return found


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    return [
        str(block.get("text", ""))
        for block in content
        if isinstance(block, dict) and block.get("type") == "text"
    ]


# --- the server ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def closed_url() -> str:
    """A base URL where nothing listens (connection refused)."""
    return f"http://127.0.0.1:{free_port()}"


def _sse(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()


def _pieces(text: str) -> list[str]:
    return [text[i : i + DELTA_CHARS] for i in range(0, len(text), DELTA_CHARS)] or [""]


class FakeAnthropic:
    def __init__(self, script: Script | None = None, *, port: int = 0) -> None:
        self.script = script or Script()
        self.port = port
        self.requests: list[Recorded] = []
        self._errors_given: dict[tuple[int, int], int] = {}
        self._held: set[tuple[int, int]] = set()
        self._released: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._message_count = 0
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_post("/v1/messages/count_tokens", self._count_tokens)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/v1/models/{model}", self._model)
        app.router.add_route("*", "/{tail:.*}", self._other)
        self.app = app

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> FakeAnthropic:
        self._released = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def stop(self) -> None:
        if self._released is not None:
            self._released.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeAnthropic:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- queries for tests -------------------------------------------------------------------

    def conversation(self, marker: str) -> list[Recorded]:
        """The message requests answered for ``marker``'s conversation, in order."""
        return [r for r in self.requests if r.conversation == marker]

    def tools_offered(self, marker: str) -> list[str]:
        found = self.conversation(marker)
        return found[0].tools if found else []

    def tool_results(self, marker: str) -> list[dict[str, Any]]:
        """Every tool result the CLI sent back in ``marker``'s conversation (from its last
        request, which carries the whole history)."""
        found = [r for r in self.conversation(marker) if r.answered != "error"]
        return found[-1].tool_results() if found else []

    def release(self) -> None:
        """End every stalled turn now (``Reply.hold``). Callable from any thread."""
        if self._released is not None and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._released.set)

    def held(self, marker: str) -> bool:
        """Whether a turn of ``marker``'s conversation is stalled right now (or was)."""
        return any(r.answered == "held" for r in self.conversation(marker))

    def reset(self, script: Script | None = None) -> None:
        self.requests.clear()
        self._errors_given.clear()
        if script is not None:
            self.script = script

    # --- handlers ----------------------------------------------------------------------------

    async def _record(self, request: web.Request) -> Recorded:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        recorded = Recorded(
            method=request.method,
            path=request.path_qs,
            headers=dict(request.headers),
            body=body,
            time=time.time(),
        )
        self.requests.append(recorded)
        return recorded

    def _match(self, recorded: Recorded) -> tuple[int, Conversation] | None:
        text = recorded.user_text
        for index, conversation in enumerate(self.script.conversations):
            if conversation.marker in text:
                return index, conversation
        return None

    def _after(self, index: int, conversation: Conversation, messages: list[dict[str, Any]]) -> int:
        """The position of the last turn this conversation's history already holds: the newest
        of the stand-in's own tool calls in it (their ids name their turn), else as many replies
        as it holds assistant messages (-1: none yet)."""
        own = re.compile(rf"^toolu_{index}_(\d+)_\d+$")
        positions = [
            int(found.group(1))
            for message in messages
            if message.get("role") == "assistant" and isinstance(message.get("content"), list)
            for block in message["content"]
            if isinstance(block, dict)
            and block.get("type") == "tool_use"
            and (found := own.match(str(block.get("id"))))
        ]
        if positions:
            return max(positions)
        done = sum(1 for m in messages if m.get("role") == "assistant")
        replies = [p for p, turn in enumerate(conversation.turns) if isinstance(turn, Reply)]
        if done == 0:
            return -1
        return replies[done - 1] if done <= len(replies) else len(conversation.turns)

    def _turn(self, index: int, conversation: Conversation, after: int) -> tuple[int, Turn | None]:
        """The turn to answer after position ``after``: the next reply, or an error before it
        that is not used up (``ApiError.times``)."""
        for position in range(after + 1, len(conversation.turns)):
            turn = conversation.turns[position]
            if isinstance(turn, ApiError):
                given = self._errors_given.get((index, position), 0)
                if turn.times is not None and given >= turn.times:
                    continue
                self._errors_given[(index, position)] = given + 1
            return position, turn
        return max(after + 1, len(conversation.turns)), None

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        recorded = await self._record(request)
        body = recorded.body if isinstance(recorded.body, dict) else {}
        model = str(body.get("model") or MODEL)
        matched = self._match(recorded) if body.get("tools") else None
        if matched is None:
            recorded.answered = "fallback"
            return await self._stream(request, model, self.script.fallback, "fallback")
        index, conversation = matched
        after = self._after(index, conversation, recorded.messages)
        position, turn = self._turn(index, conversation, after)
        recorded.conversation = conversation.marker
        recorded.turn = position
        if turn is None:
            recorded.answered = "done"
            return await self._stream(request, model, self.script.done, f"{index}_{position}")
        if isinstance(turn, ApiError):
            recorded.answered = "error"
            return self._error(turn)
        hold = turn.hold if (index, position) not in self._held else 0.0
        self._held.add((index, position))
        recorded.answered = "held" if hold else "reply"
        return await self._stream(request, model, turn, f"{index}_{position}", hold)

    def _error(self, error: ApiError) -> web.Response:
        headers = {"request-id": f"req_stand_in_{len(self.requests)}"}
        if error.retry_after_ms is not None:
            headers["retry-after-ms"] = str(error.retry_after_ms)
        if error.status in (429, 529) and error.retry_after_ms is None:
            headers["retry-after"] = "0"
        body = {
            "type": "error",
            "error": {
                "type": error.error_type,
                "message": error.message or f"stand-in {error.error_type}",
            },
        }
        return web.json_response(body, status=error.status, headers=headers)

    async def _stream(
        self, request: web.Request, model: str, reply: Reply, ident: str, hold: float = 0.0
    ) -> web.StreamResponse:
        self._message_count += 1
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "request-id": f"req_stand_in_{self._message_count}",
            }
        )
        await response.prepare(request)
        message: dict[str, Any] = {
            "id": f"msg_stand_in_{self._message_count}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": reply.usage.input_tokens,
                "output_tokens": 1,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        }
        try:
            if hold and self._released is not None:  # before anything: the turn has not begun
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._released.wait(), hold)
            await response.write(
                _sse("message_start", {"type": "message_start", "message": message})
            )
            for number, block in enumerate(reply.blocks):
                await self._block(response, number, block, f"toolu_{ident}_{number}")
            stop = reply.stop_reason or (
                "tool_use" if any(isinstance(b, ToolUse) for b in reply.blocks) else "end_turn"
            )
            await response.write(
                _sse(
                    "message_delta",
                    {
                        "type": "message_delta",
                        "delta": {"stop_reason": stop, "stop_sequence": None},
                        "usage": {"output_tokens": reply.usage.output_tokens},
                    },
                )
            )
            await response.write(_sse("message_stop", {"type": "message_stop"}))
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            pass  # the CLI went away mid-turn (killed): nothing to finish
        return response

    async def _block(
        self, response: web.StreamResponse, number: int, block: Text | ToolUse, tool_id: str
    ) -> None:
        if isinstance(block, Text):
            start: dict[str, Any] = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": piece} for piece in _pieces(block.text)]
        else:
            start = {"type": "tool_use", "id": block.id or tool_id, "name": block.name, "input": {}}
            deltas = [
                {"type": "input_json_delta", "partial_json": piece}
                for piece in _pieces(json.dumps(block.input))
            ]
        await response.write(
            _sse(
                "content_block_start",
                {"type": "content_block_start", "index": number, "content_block": start},
            )
        )
        for delta in deltas:
            await response.write(
                _sse(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": number, "delta": delta},
                )
            )
        await response.write(
            _sse("content_block_stop", {"type": "content_block_stop", "index": number})
        )

    async def _count_tokens(self, request: web.Request) -> web.Response:
        recorded = await self._record(request)
        recorded.answered = "count_tokens"
        size = len(json.dumps(recorded.body)) if recorded.body else 0
        return web.json_response({"input_tokens": max(1, size // 4)})

    async def _models(self, request: web.Request) -> web.Response:
        recorded = await self._record(request)
        recorded.answered = "models"
        return web.json_response(
            {"data": [_model_object(MODEL)], "has_more": False, "first_id": MODEL, "last_id": MODEL}
        )

    async def _model(self, request: web.Request) -> web.Response:
        recorded = await self._record(request)
        recorded.answered = "model"
        return web.json_response(_model_object(request.match_info["model"]))

    async def _other(self, request: web.Request) -> web.Response:
        recorded = await self._record(request)
        recorded.answered = "404"
        return web.json_response(
            {"type": "error", "error": {"type": "not_found_error", "message": "not here"}},
            status=404,
        )


def _model_object(model: str) -> dict[str, Any]:
    return {
        "type": "model",
        "id": model,
        "display_name": model,
        "created_at": "2025-01-01T00:00:00Z",
    }


def sent_tool_results(requests: Iterable[Recorded]) -> list[dict[str, Any]]:
    """Every tool result across ``requests`` (each only once, by tool_use_id)."""
    seen: dict[str, dict[str, Any]] = {}
    for recorded in requests:
        for block in recorded.tool_results():
            seen.setdefault(str(block.get("tool_use_id")), block)
    return list(seen.values())


# --- as a process -------------------------------------------------------------------------------


def _append_lines(path: str, lines: list[str]) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.writelines(line + "\n" for line in lines)


async def _serve(port: int, script: Script, record: str | None) -> None:
    api = FakeAnthropic(script, port=port)
    await api.start()
    print(f"fake Anthropic API on {api.url}", flush=True)
    written = 0
    try:
        while True:
            await asyncio.sleep(0.2)
            if record and len(api.requests) > written:
                new = [json.dumps(r.__dict__, default=str) for r in api.requests[written:]]
                written += len(new)
                await asyncio.to_thread(_append_lines, record, new)
    finally:
        await api.stop()


@contextlib.contextmanager
def serving_in_thread(script: Script | None = None) -> Iterator[FakeAnthropic]:
    """The stand-in on an event loop of its own, in a thread: for tests that wait by blocking
    (real processes polled over HTTP), which would stall a server on the test's own loop."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fake-anthropic", daemon=True)
    thread.start()
    api = FakeAnthropic(script)
    asyncio.run_coroutine_threadsafe(api.start(), loop).result(30)
    try:
        yield api
    finally:
        asyncio.run_coroutine_threadsafe(api.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--script", help="the script as JSON (see the module doc)")
    parser.add_argument("--record", help="append each request as a JSON line to this file")
    args = parser.parse_args(argv)
    script = Script()
    if args.script:
        with open(args.script, encoding="utf-8") as handle:
            script = Script.from_json(json.load(handle))
    try:
        asyncio.run(_serve(args.port, script, args.record))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
