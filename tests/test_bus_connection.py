"""Connecting and provisioning: clear errors, idempotent set-up, no secrets in logs."""

from __future__ import annotations

import asyncio
import json

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st
from nats.aio.client import Client as NatsPyClient

from schemas import events as ev
from schemas import subjects
from schemas.errors import Unavailable
from services.bus import logs
from services.bus.connection import Client, NatsOptions, connect, redact_url
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


SECRET = "sk-canary-987654"
_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False),
        st.sampled_from(["", "plain", f"has {SECRET} inside", SECRET]),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.dictionaries(st.sampled_from(["detail", "api_token", "Password", "n"]), inner),
    ),
    max_leaves=8,
)


@given(st.dictionaries(st.sampled_from(["event", "detail", "auth_token", "x", 3]), _values))
def test_the_redactor_leaves_no_secret_and_masks_every_secret_key(line: dict) -> None:
    cleaned = logs.Redactor([SECRET])(None, "info", line)
    assert SECRET not in repr(cleaned)
    assert cleaned.keys() == line.keys()
    for key, value in line.items():
        if key == "auth_token" and value:
            assert cleaned[key] == logs.MASK
        elif isinstance(value, int | float) or value is None:
            assert cleaned[key] == value


# --- the header parser (issue 15: less work per delivered event) ----------------------------

_header_bytes = st.lists(
    st.one_of(
        st.sampled_from(
            [
                b"Nats-Msg-Id: abc",
                b"Nats-Expected-Last-Subject-Sequence:12",
                b"Bad Name: value",
                b"Tab\tName: v",
                b"Sep\x1cName: v",
                b"no colon here",
                b"  Padded  :  spaced value  ",
                b"Caf\xc3\xa9: non-ascii name",
                b"Utf: caf\xc3\xa9 \xff broken",
                b"Dup: first",
                b"Dup: second",
                b"Empty:",
                b":no name",
            ]
        ),
        st.binary(max_size=30).filter(lambda b: b"\r\n" not in b),
    ),
    max_size=8,
).map(lambda lines: b"\r\n".join(lines) + b"\r\n\r\n")


@given(_header_bytes)
def test_header_lines_parse_as_nats_py_parses_them(raw: bytes) -> None:
    assert Client._parse_header_lines(raw) == NatsPyClient._parse_header_lines(raw)


async def test_a_connection_hands_over_the_headers_a_message_was_stored_with(bus: Bus) -> None:
    assert isinstance(bus.nc, Client)
    event = ev.SwarmCreated(
        swarm="headers-test", id="headers-test", actor="test", time=1.0, name="headers"
    )
    seq = await bus.events.append(event, expected_seq=0)
    got = asyncio.get_running_loop().create_future()

    async def on_msg(msg) -> None:
        if not got.done():
            got.set_result(msg)

    sub = await bus.js.subscribe(
        subjects.swarm_events("headers-test"),
        stream=subjects.EVENTS_STREAM,
        cb=on_msg,
        ordered_consumer=True,
    )
    try:
        msg = await asyncio.wait_for(got, 5)
    finally:
        await sub.unsubscribe()
    assert msg.metadata.sequence.stream == seq
    assert msg.headers["Nats-Msg-Id"] == event.event_id
    assert msg.headers["Nats-Expected-Last-Subject-Sequence"] == "0"
    assert ev.decode(msg.data) == event
