"""A service process leaves out the optional imports it never uses (``services/bus/startup.py``),
and can still import them later."""

from __future__ import annotations

import json
import subprocess
import sys

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
