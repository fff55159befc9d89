"""The MCP process: Swarm's commands as MCP tools (the official ``mcp`` SDK), over streamable
HTTP at ``/mcp``, with the gateway's bearer tokens.

A thin process: it keeps no fold of the log. Every tool is a NATS request to the command handler
the gateway (or the chat service) serves on ``swarm.cmd.<swarm>.<verb>``; ``wait_for_task``
follows the task's events on the stream. Stateless streamable HTTP (no session kept between
requests), so replicas behind one address need no affinity. ``GET /health`` (no token) answers
200 while NATS is connected; readiness is heartbeated into ``swarm_services`` like every
service's.

Auth: ``SWARM_API_TOKEN`` (full access) or an agent's own token (``schemas.scopes``); without an
API token it listens on loopback only, like the gateway. Wrong tokens are limited per client
address as at the gateway (``SWARM_AUTH_*``, ``access.LimitedAttempts``; this process counts its
own): past the limit every bearer token from that address answers 429 with ``Retry-After``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn
from mcp.server.auth.settings import AuthSettings
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp

from schemas.errors import Unavailable
from schemas.scopes import check_listen
from schemas.token_failures import Limits, TokenFailures
from services.bus.connection import NatsOptions
from services.bus.flags import add_auth_limits, auth_limits
from services.bus.service import Service
from services.mcp.access import BearerTokens, LimitedAttempts
from services.mcp.tools import Tools, build

DEFAULT_PORT = 7701
PATH = "/mcp"


class _Server(uvicorn.Server):
    """uvicorn inside our event loop: the service, not uvicorn, handles SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class McpServer(Service):
    """Swarm MCP server: the commands as MCP tools over streamable HTTP."""

    name = "mcp"
    folds = False

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        token: str | None = None,
        default_swarm: str = "default",
        auth_limits: Limits | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_listen(host, token)
        self.host = host
        self.port = port
        self.token = token
        self.default_swarm = default_swarm
        self.attempts: LimitedAttempts | None = None  # wrong tokens per address, with a token
        self.auth_limits = auth_limits
        self.server: _Server | None = None
        self._serving_task: Any = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{PATH}"

    def detail(self) -> dict[str, Any]:
        return {"url": self.url}

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as error:
            sock.close()
            raise Unavailable(
                f"MCP port {self.port} on {self.host} is taken ({error.strerror}); choose "
                "another with --port (swarm up: --mcp-port)"
            ) from error
        sock.listen(128)
        sock.setblocking(False)
        return sock

    async def on_ready(self) -> None:
        assert self.bus is not None
        options: dict[str, Any] = {}
        if self.token:
            options = {
                "token_verifier": BearerTokens(self.token),
                "auth": AuthSettings(
                    issuer_url=f"http://{self.host}:{self.port}",  # type: ignore[arg-type]
                    resource_server_url=None,
                ),
            }
        server = build(Tools(self.bus, self.default_swarm), **options)

        async def health(request: Request) -> JSONResponse:
            ok = self.bus is not None and self.bus.nc.is_connected
            return JSONResponse(
                {"ok": ok, "nats": "connected" if ok else "unreachable"},
                status_code=200 if ok else 503,
            )

        server.custom_route("/health", methods=["GET"])(health)
        app: ASGIApp = server.streamable_http_app(
            streamable_http_path=PATH, stateless_http=True, json_response=True, host=self.host
        )
        if self.token:
            app = self.attempts = LimitedAttempts(app, TokenFailures(self.auth_limits))
        config = uvicorn.Config(
            app, log_config=None, access_log=False, lifespan="on", proxy_headers=False
        )
        self.server = _Server(config)
        sock = self._bind()
        self._serving_task = self.spawn(self.server.serve(sockets=[sock]), "http")
        while not self.server.started:
            if self._serving_task.done():
                self._serving_task.result()  # raises what stopped it
                raise Unavailable("the MCP server stopped while starting")
            await asyncio.sleep(0.02)  # uvicorn has no "started" event to wait on
        self.log.info("mcp.listening", url=self.url)

    async def on_stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
            if self._serving_task is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(self._serving_task), 5.0)

    @classmethod
    def arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--host", default=os.environ.get("SWARM_MCP_HOST", "127.0.0.1"))
        parser.add_argument(
            "--port", type=int, default=int(os.environ.get("SWARM_MCP_PORT", DEFAULT_PORT))
        )
        parser.add_argument(
            "--swarm",
            default=os.environ.get("SWARM_DEFAULT_ID", "default"),
            help="the swarm tools act on when none is named (env SWARM_DEFAULT_ID)",
        )
        add_auth_limits(parser)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> McpServer:
        return cls(
            nats=NatsOptions.from_env(args.nats_url),
            host=args.host,
            port=args.port,
            token=os.environ.get("SWARM_API_TOKEN") or None,
            default_swarm=args.swarm,
            auth_limits=auth_limits(args),
        )
