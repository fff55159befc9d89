"""A service process leaves out the optional imports it never uses (``services/bus/startup.py``),
and can still import them later; and none imports, before it is ready, a library only some of
its paths need (pydantic in the gateway: its request models and ``/openapi.json``; the MCP SDK;
the Daytona SDK)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from services.bus.startup import (
    HIDDEN_FROM_NATS,
    HIDDEN_FROM_STRUCTLOG,
    hidden_names,
    uses_websocket,
)

PROBE = """
import json, sys
from services.bus.startup import lean_imports
hidden = lean_imports(sys.argv[1:], serves_http={serves_http})
import services.{service}.service
before = {{name: name in sys.modules for name in ("aiohttp", "rich", "nats", "structlog")}}
import aiohttp
print(json.dumps({{"hidden": hidden, "before": before, "aiohttp_later": aiohttp.__name__}}))
"""

# A service as ``python -m services.<name>`` starts it, run until it is ready (``start`` returns
# once it serves), then the top-level packages it has imported.
UNTIL_READY = """
import argparse, asyncio, json, sys
from services.bus.startup import lean_imports
lean_imports(serves_http={serves_http})
from {module} import {cls} as Main

parser = argparse.ArgumentParser()
parser.add_argument("--nats-url")
Main.arguments(parser)
service = Main.from_args(parser.parse_args(sys.argv[1:]))

async def until_ready():
    await service.start()
    try:
        return sorted({{name.partition(".")[0] for name in sys.modules}})
    finally:
        await service.stop()

print(json.dumps(asyncio.run(until_ready())))
"""
MAINS = {  # what each services/<name>/__main__.py imports and runs
    "gateway": ("services.gateway.service", "Gateway"),
    "scheduler": ("services.scheduler.service", "Scheduler"),
    "chat": ("services.chat.service", "Chat"),
    "executor": ("services.executor.fleet", "Fleet"),
}
# Libraries a service needs on some paths only, never before it is ready. pydantic: the
# gateway's request models (a write's body) and /openapi.json (services/gateway/routes.py).
NOT_BEFORE_READY = {"pydantic", "pydantic_core", "mcp", "daytona", "starlette", "uvicorn"}


def probe(service: str, *argv: str, serves_http: bool = False, env: dict[str, str] | None = None):
    code = PROBE.format(service=service, serves_http=serves_http)
    done = subprocess.run(
        [sys.executable, "-c", code, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("service", ["scheduler", "chat", "executor"])
def test_a_service_speaking_plain_nats_starts_without_aiohttp_and_rich(service: str) -> None:
    seen = probe(service)
    assert seen["hidden"] == ["rich", "aiohttp"]
    assert seen["before"] == {"aiohttp": False, "rich": False, "nats": True, "structlog": True}
    assert seen["aiohttp_later"] == "aiohttp"  # the Daytona backend imports it when it needs it


def test_the_gateway_keeps_aiohttp_for_nats_since_it_serves_http_with_it() -> None:
    seen = probe("gateway", serves_http=True)
    assert seen["hidden"] == ["rich"]
    assert seen["before"]["rich"] is False and seen["before"]["aiohttp"] is True


@pytest.mark.parametrize("service", sorted(MAINS))
def test_no_service_imports_before_it_is_ready_what_only_some_paths_need(
    service: str, nats_url: str, tmp_path: Path
) -> None:
    module, cls = MAINS[service]
    code = UNTIL_READY.format(serves_http=service == "gateway", module=module, cls=cls)
    argv = ["--nats-url", nats_url]
    if service == "gateway":
        argv += ["--port", "0"]
    if service == "executor":
        argv += ["--executor-id", f"imports-{tmp_path.name}", "--data-dir", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, "-c", code, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    libraries = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert "nats" in libraries
    assert NOT_BEFORE_READY.isdisjoint(libraries), NOT_BEFORE_READY & libraries


def test_the_route_table_names_models_the_gateway_imports_when_asked() -> None:
    from pydantic import BaseModel

    from services.gateway import models
    from services.gateway.routes import ROUTE_BY_NAME, ROUTES

    assert ROUTE_BY_NAME["create_task"].body_model is models.CreateTask
    assert ROUTE_BY_NAME["create_task"].response_model == (models.CreatedTask, False)
    assert ROUTE_BY_NAME["list_swarms"].response_model == (models.Swarm, True)
    assert ROUTE_BY_NAME["health"].body_model is None
    for route in ROUTES:  # every name is a model (a typo raises here, not in /openapi.json)
        named = [route.body_model, (route.response_model or (None, False))[0]]
        assert all(m is None or issubclass(m, BaseModel) for m in named), route.name


def test_a_websocket_nats_url_keeps_aiohttp_for_nats() -> None:
    assert probe("scheduler", env={"NATS_URL": "ws://127.0.0.1:1"})["before"]["aiohttp"] is True
    assert probe("scheduler", "--nats-url", "wss://nats.example:443")["before"]["aiohttp"] is True


def test_which_urls_are_websockets() -> None:
    assert uses_websocket("nats://a:4222, WS://b:80")
    assert uses_websocket("wss://b:443")
    assert not uses_websocket("nats://a:4222,tls://b:4222")
    assert not uses_websocket(None)
    assert hidden_names(["--nats-url=ws://x"], {}) == HIDDEN_FROM_STRUCTLOG
    assert hidden_names([], {"NATS_URL": "nats://x"}) == HIDDEN_FROM_STRUCTLOG + HIDDEN_FROM_NATS
