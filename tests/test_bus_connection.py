"""Connecting and provisioning: clear errors, idempotent set-up, no secrets in logs."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import nats.errors
import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st
from nats.aio.client import Client as NatsPyClient
from nats.js import api

from schemas import events as ev
from schemas import subjects
from schemas.errors import Unavailable
from services.bus import logs
from services.bus.connection import Client, NatsOptions, connect, redact_url, skip_headers
from services.bus.embedded import free_port
from services.bus.service import Bus
from services.bus.streams import Layout, stream_configs


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
    # live output is best effort: no fsync per chunk; the event log and chat keep theirs
    assert logs_stream.config.persist_mode == api.PersistMode.ASYNC
    assert events.config.persist_mode in (None, api.PersistMode.DEFAULT)
    chat = await buses[0].js.stream_info(subjects.CHAT_STREAM)
    assert chat.config.persist_mode in (None, api.PersistMode.DEFAULT)
    for bucket in (subjects.PRESENCE_BUCKET, subjects.SERVICES_BUCKET, subjects.SNAPSHOTS_BUCKET):
        await buses[0].js.key_value(bucket)
    await buses[0].js.object_store(subjects.OUTPUT_STORE)
    for bus in buses:
        await bus.close()


async def test_a_logs_stream_made_before_it_was_async_is_provisioned_as_it_is(
    nats_factory,
) -> None:
    """The server refuses to change a stream's persist mode: an older SWARM_LOGS (fsync per
    chunk) keeps its mode, and provisioning still updates the rest of its configuration."""
    server = nats_factory()
    bus = await Bus.connect(NatsOptions.from_env(server.url))
    try:
        older = next(c for c in stream_configs(Layout()) if c.name == subjects.LOGS_STREAM)
        assert older.max_bytes is not None
        await bus.js.add_stream(
            dataclasses.replace(older, persist_mode=None, max_bytes=older.max_bytes // 2)
        )
        await bus.provision()
        info = await bus.js.stream_info(subjects.LOGS_STREAM)
        assert info.config.persist_mode in (None, api.PersistMode.DEFAULT)
        assert info.config.max_bytes == older.max_bytes  # the update went through
    finally:
        await bus.close()


def test_only_a_single_node_keeps_live_output_without_fsync() -> None:
    """Async persistence is for one-replica streams (ADR-56): a cluster keeps the default."""
    for replicas, mode in ((1, api.PersistMode.ASYNC), (3, None)):
        logs_config = next(
            c for c in stream_configs(Layout(replicas=replicas)) if c.name == subjects.LOGS_STREAM
        )
        assert logs_config.persist_mode == mode


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


# --- the log line's own cost (issue 15): the same line as structlog's stamper and renderer ----

_log_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=20),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(st.dictionaries(st.text(max_size=10), _log_values, max_size=6))
def test_a_line_renders_as_the_json_structlogs_renderer_writes(line: dict) -> None:
    ours = logs.render_json(None, "info", dict(line))
    theirs = structlog.processors.JSONRenderer()(None, "info", dict(line))
    assert json.loads(ours) == json.loads(theirs)
    assert list(json.loads(ours)) == list(json.loads(theirs))  # the keys in the same order


def test_a_value_json_has_no_form_for_is_written_as_structlog_writes_it() -> None:
    class Odd:
        def __repr__(self) -> str:
            return "<odd>"

    line: dict[Any, Any] = {"event": "x", "odd": Odd(), "n": 2**70, 3: "int key"}
    ours = logs.render_json(None, "info", dict(line))
    assert json.loads(ours) == json.loads(
        structlog.processors.JSONRenderer()(None, "info", dict(line))
    )
    assert json.loads(ours)["odd"] == "<odd>"


@given(st.floats(min_value=0, max_value=4_102_444_800))  # up to 2100
def test_the_timestamp_is_structlogs_iso_utc_stamp(now: float) -> None:
    expected = datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z")
    assert logs.iso_utc(now) == expected


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


async def test_a_subscription_marked_skip_headers_gets_its_data_without_them(bus: Bus) -> None:
    """The folds' subscriptions: data messages come with ``headers`` None, everything else as
    nats-py hands it over (an unmarked subscription of the same messages still has them)."""
    swarm = f"skip-{uuid.uuid4().hex[:8]}"
    event = ev.SwarmCreated(swarm=swarm, id=swarm, actor="test", time=1.0, name="skip")
    seq = await bus.events.append(event, expected_seq=0)
    got: dict[str, asyncio.Future[Any]] = {}
    subs = []
    for name in ("marked", "plain"):
        got[name] = asyncio.get_running_loop().create_future()

        async def on_msg(msg: Any, future: asyncio.Future[Any] = got[name]) -> None:
            if not future.done():
                future.set_result(msg)

        sub = await bus.js.subscribe(
            subjects.swarm_events(swarm),
            stream=subjects.EVENTS_STREAM,
            cb=on_msg,
            ordered_consumer=True,
            idle_heartbeat=0.2,
        )
        if name == "marked":
            skip_headers(sub)
        subs.append(sub)
    try:
        marked = await asyncio.wait_for(got["marked"], 5)
        plain = await asyncio.wait_for(got["plain"], 5)
        await asyncio.sleep(0.6)  # three idle heartbeats: status messages still handled
        info = await subs[0].consumer_info()  # the ordered consumer is still the one it made
    finally:
        for sub in subs:
            await sub.unsubscribe()
    assert marked.headers is None and plain.headers["Nats-Msg-Id"] == event.event_id
    assert marked.metadata.sequence.stream == seq == plain.metadata.sequence.stream
    assert ev.decode(marked.data) == event
    assert info.delivered.stream_seq == seq


async def test_a_request_is_answered_as_nats_py_answers_it(bus: Bus) -> None:
    """The reply reaches its waiter (many at once, each its own); a request nobody answers in
    time raises nats-py's TimeoutError; one with no responder, NoRespondersError."""
    subject = f"test.echo.{uuid.uuid4().hex[:8]}"

    async def echo(msg: Any) -> None:
        if msg.data != b"silent":
            await msg.respond(b"re:" + msg.data)

    sub = await bus.nc.subscribe(subject, cb=echo)
    try:
        answers = await asyncio.gather(
            *(bus.nc.request(subject, str(i).encode(), timeout=5) for i in range(50))
        )
        assert [a.data for a in answers] == [f"re:{i}".encode() for i in range(50)]
        with pytest.raises(nats.errors.TimeoutError):
            await bus.nc.request(subject, b"silent", timeout=0.2)
        with pytest.raises(nats.errors.NoRespondersError):
            await bus.nc.request(f"{subject}.nobody", b"x", timeout=2)
    finally:
        await sub.unsubscribe()
    assert not bus.nc._resp_map  # nothing left waiting
