"""The gateway process: Swarm's HTTP API (aiohttp) and its NATS micro endpoints.

HTTP listens from the start (``/health`` answers while the log replays; every other route
answers 503 until the fold has caught up); the micro endpoints start once it has.
"""

from __future__ import annotations

import argparse
import os
import time
from importlib import metadata
from typing import Any

from aiohttp import web

from schemas import scopes
from schemas.errors import Unavailable
from schemas.token_failures import Limits, TokenFailures
from services.bus.connection import NatsOptions
from services.bus.flags import add_auth_limits, auth_limits, setting
from services.bus.service import Readiness, Service, read_readiness
from services.gateway import micro
from services.gateway.commands import Commands
from services.gateway.http import MAX_BODY, HttpApi

SERVICES = ("gateway", "scheduler", "executor", "chat")
OPTIONAL_SERVICES = ("mcp",)  # reported when running; Swarm works without them
STALE_AFTER = 10.0  # seconds without a heartbeat before a service counts as gone
DEFAULT_PORT = 7700


def health_report(beats: list[Readiness], now: float) -> dict[str, Any]:
    """Pure: which services are up and ready, from their last heartbeats."""
    report: dict[str, dict[str, Any]] = {}
    for name in (*SERVICES, *OPTIONAL_SERVICES):
        fresh = [b for b in beats if b.service == name and now - b.time <= STALE_AFTER]
        report[name] = {
            "ready": any(b.ready for b in fresh),
            "instances": [
                {
                    "instance": b.instance,
                    "ready": b.ready,
                    "seq": b.seq,
                    "host": b.host,
                    "pid": b.pid,
                    "last_heard_s": round(now - b.time, 3),
                }
                for b in sorted(fresh, key=lambda b: b.instance)
            ],
        }
    return {"ok": all(report[name]["ready"] for name in SERVICES), "services": report}


def _version() -> str:
    try:
        return metadata.version("swarm")
    except metadata.PackageNotFoundError:
        return "0.0.0"


class Gateway(Service):
    """Swarm gateway: the HTTP API and NATS command endpoints."""

    name = "gateway"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        token: str | None = None,
        max_body: int = MAX_BODY,
        follow_ups: int = scopes.DEFAULT_FOLLOW_UPS,
        nats: NatsOptions | None = None,
        instance: str | None = None,
        swarm: str | None = None,
        snapshot_every: int = 2000,
        auth_limits: Limits | None = None,
    ) -> None:
        super().__init__(nats=nats, instance=instance, swarm=swarm, snapshot_every=snapshot_every)
        scopes.check_listen(host, token)
        self.host = host
        self.port = port
        self.token = token
        self.follow_ups = follow_ups
        self.version = _version()
        self.commands: Commands | None = None
        self.api = HttpApi(
            self, token=token, max_body=max_body, failures=TokenFailures(auth_limits)
        )
        self.app = self.api.build()
        self.runner: web.AppRunner | None = None
        self.micro: Any = None

    async def on_start(self) -> None:
        assert self.bus is not None and self.projection is not None
        self.commands = Commands(self.bus, self.projection, follow_ups=self.follow_ups)
        self.projection.listen(self.api.watchers.on_event)  # the board streams' changes
        self.runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=5.0)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, self.port)
        try:
            await site.start()
        except OSError as error:
            raise Unavailable(
                f"gateway port {self.port} on {self.host} is taken ({error.strerror}); "
                "choose another with --port (swarm up: --gateway-port)"
            ) from error
        self.log.info("gateway.listening", host=self.host, port=self.port)

    async def on_ready(self) -> None:
        assert self.bus is not None and self.commands is not None
        self.micro = await micro.start(self.bus.nc, self.commands, self.version, self.token)
        self.log.info("gateway.micro_started", service=micro.SERVICE_NAME)

    async def on_stop(self) -> None:
        self.api.closing.set()
        if self.micro is not None:
            try:
                await self.micro.stop()
            except Exception as error:  # NATS gone: nothing to unsubscribe from
                self.log.debug("gateway.micro_stop_failed", error=str(error))
            self.micro = None
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def health(self, request: web.Request) -> web.Response:
        assert self.bus is not None
        nats_ok = self.bus.nc.is_connected
        beats: list[Readiness] = []
        unread: str | None = None
        if nats_ok:
            try:
                beats = await read_readiness(self.bus)
            except Exception as error:  # a read that failed is not "nobody is ready"
                unread = f"{type(error).__name__}: {error}".rstrip(": ")
        report = health_report(beats, time.time())
        # This process answers, so its own readiness is known first-hand.
        report["services"]["gateway"]["ready"] = self.ready
        report["ok"] = (
            nats_ok
            and unread is None
            and all(report["services"][name]["ready"] for name in SERVICES)
        )
        report["nats"] = "connected" if nats_ok else "unreachable"
        if unread is not None:
            report["error"] = f"the readiness heartbeats could not be read: {unread}"
        report["seq"] = self.projection.seq if self.projection else 0
        return web.json_response(report, status=200 if report["ok"] else 503)

    @classmethod
    def arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--host", default=os.environ.get("SWARM_GATEWAY_HOST", "127.0.0.1"))
        parser.add_argument(
            "--port", type=int, default=int(os.environ.get("SWARM_GATEWAY_PORT", DEFAULT_PORT))
        )
        setting(parser)(
            "--agent-follow-ups",
            scopes.DEFAULT_FOLLOW_UPS,
            "follow-up tasks one run of an agent may create with its own token",
        )
        add_auth_limits(parser)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Gateway:
        return cls(
            nats=NatsOptions.from_env(args.nats_url),
            host=args.host,
            port=args.port,
            token=os.environ.get("SWARM_API_TOKEN") or None,
            follow_ups=args.agent_follow_ups,
            auth_limits=auth_limits(args),
        )
