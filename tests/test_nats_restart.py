"""kill -9 of nats-server, restarted on the same store: nothing acknowledged is lost, and a
connected service carries on without a restart of its own."""

from __future__ import annotations

import time

from waiting import until as wait_until

from schemas import events as ev
from schemas import subjects
from services.bus.connection import NatsOptions
from services.bus.service import Bus, Service


async def answering(bus: Bus, timeout: float = 20.0) -> None:
    """Wait until the server answers this client again (a PING/PONG round trip)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await bus.nc.flush(timeout=0.5)  # type: ignore[arg-type]  # seconds: a float works
            return
        except Exception:
            if time.monotonic() > deadline:
                raise


async def test_kill_9_loses_no_acknowledged_event_and_service_carries_on(nats_factory) -> None:
    server = nats_factory()
    options = NatsOptions.from_env(server.url)
    service = Service(nats=options, swarm="kill9")
    service.name = "probe"
    await service.start()

    writer = await Bus.connect(options, name="writer")
    now = time.time()
    acked = [
        await writer.events.append(
            ev.SwarmCreated(swarm="kill9", id="kill9", time=now, name="k"), 0
        )
    ]
    for i in range(50):
        acked.append(
            await writer.events.append(
                ev.TaskCreated(swarm="kill9", id=f"t{i}", time=now, title=f"task {i}"), 0
            )
        )
    await service.projection.wait_for(acked[-1])

    server.kill()
    server.start()
    await answering(writer)

    info = await writer.js.stream_info(subjects.EVENTS_STREAM)
    assert info.state.messages == len(acked)
    assert info.state.last_seq == acked[-1]
    for seq in acked:
        msg = await writer.js.get_msg(subjects.EVENTS_STREAM, seq)
        assert msg.data is not None and ev.decode(msg.data).swarm == "kill9"

    after = await writer.events.append(
        ev.TaskCreated(swarm="kill9", id="after", time=time.time(), title="after restart"), 0
    )
    await service.projection.wait_for(after, timeout=30)
    assert service.projection.board.task("kill9", "after") is not None
    assert len(service.projection.board.swarms["kill9"].tasks) == 51
    await wait_until(lambda: service.bus.nc.is_connected, what="service reconnected")

    await writer.close()
    await service.stop()
