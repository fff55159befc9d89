"""Connecting and provisioning: clear errors, idempotent set-up, no secrets in logs."""

from __future__ import annotations

import asyncio
import json

import pytest
import structlog

from schemas import subjects
from schemas.errors import Unavailable
from services.bus import logs
from services.bus.connection import NatsOptions, connect, redact_url
from services.bus.embedded import free_port
from services.bus.service import Bus


async def test_unreachable_nats_is_a_clear_error_naming_the_url_without_password() -> None:
    url = f"nats://alice:s3cret-pass@127.0.0.1:{free_port()}"
    with pytest.raises(Unavailable) as caught:
        await connect(NatsOptions.from_env(url), connect_timeout=0.5)
    message = caught.value.message
    assert "127.0.0.1" in message and "alice" in message
    assert "s3cret-pass" not in message
    assert "NATS_URL" in message


def test_redact_url_masks_passwords_in_every_server() -> None:
    assert (
        redact_url("nats://u:pw@a:4222,nats://b:4223,tls://tok@c:1")
        == "nats://u:***@a:4222,nats://b:4223,tls://***@c:1"
    )


async def test_provisioning_concurrently_from_many_processes_is_safe(nats_factory) -> None:
    server = nats_factory()
    buses = [await Bus.connect(NatsOptions.from_env(server.url)) for _ in range(4)]
    await asyncio.gather(*(bus.provision() for bus in buses))
    await buses[0].provision()  # and again: idempotent
    names = {s.config.name async for s in _streams(buses[0])}
    assert {
        subjects.EVENTS_STREAM,
        subjects.CHAT_STREAM,
        subjects.LOGS_STREAM,
    } <= names
    events = await buses[0].js.stream_info(subjects.EVENTS_STREAM)
    assert events.config.deny_delete and events.config.deny_purge
    assert events.config.num_replicas == 1
    logs_stream = await buses[0].js.stream_info(subjects.LOGS_STREAM)
    assert logs_stream.config.max_age and logs_stream.config.max_bytes
    for bucket in (subjects.PRESENCE_BUCKET, subjects.SERVICES_BUCKET, subjects.SNAPSHOTS_BUCKET):
        await buses[0].js.key_value(bucket)
    await buses[0].js.object_store(subjects.OUTPUT_STORE)
    for bus in buses:
        await bus.close()


async def _streams(bus: Bus):
    for info in await bus.js.streams_info():
        yield info


def test_logger_masks_secret_values_and_secret_keys(capsys, monkeypatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-canary-123456")
    logs.configure("test")
    structlog.get_logger("t").info(
        "probe", detail="key is sk-ant-canary-123456", api_token="abcdefgh", swarm="s1"
    )
    line = capsys.readouterr().err.strip().splitlines()[-1]
    record = json.loads(line)
    assert "sk-ant-canary-123456" not in line
    assert record["detail"] == "key is ***"
    assert record["api_token"] == "***"
    assert record["swarm"] == "s1" and record["service"] == "test"
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
