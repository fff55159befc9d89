"""Writing a task's output: live chunks on ``swarm.log.<swarm>.<task>`` (stream ``SWARM_LOGS``)
and the whole output in the ``swarm_outputs`` object store. The readers are in ``history``."""

from __future__ import annotations

import io

from nats.js import JetStreamContext

from schemas import subjects
from services.bus.history import ATTEMPT_HEADER
from services.bus.publish import publish_once

AGENT_HEADER = "Swarm-Agent"


def chunk_headers(attempt: int, agent: str) -> dict[str, str]:
    return {ATTEMPT_HEADER: str(attempt), AGENT_HEADER: agent}


async def publish_chunk(
    js: JetStreamContext, swarm: str, task: str, data: bytes, headers: dict[str, str]
) -> None:
    """One chunk of live output (best effort: a chunk lost while NATS is away is only missing
    from the live view; the stored output has it)."""
    await publish_once(
        js,
        subjects.log(swarm, task),
        data,
        stream=subjects.LOGS_STREAM,
        headers=headers,
        timeout=5.0,
    )


async def store_output(js: JetStreamContext, name: str, source: io.BufferedIOBase) -> None:
    """The whole output, as object ``name`` (``subjects.output_name``)."""
    store = await js.object_store(subjects.OUTPUT_STORE)
    await store.put(name, source)
