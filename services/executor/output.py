"""One run's output, three ways: live chunks on the task's log subject (stream ``SWARM_LOGS``, for
anyone following the task), the whole of it in the object store (``swarm_outputs``, name
``<swarm>/<task>/<attempt>``) once the run ends, and its tail for the terminal event.

Known secrets (the credentials the executor holds) are masked before text goes anywhere. Live
chunks are best effort: while NATS is away they are dropped, the full output is still kept (in a
spool file under the data directory until it is uploaded).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from pathlib import Path

import structlog

from schemas import subjects
from services.bus.logs import scrub
from services.bus.outputs import chunk_headers, publish_chunk, store_output
from services.bus.service import Bus
from services.executor.runtimes import TAIL_CHARS

log = structlog.get_logger("executor.output")

CHUNK_CHARS = 32 * 1024  # at most this much text per log message


class OutputSink:
    def __init__(
        self,
        bus: Bus,
        *,
        swarm: str,
        task: str,
        attempt: int,
        agent: str,
        spool_dir: Path,
        secrets: Iterable[str] = (),
    ) -> None:
        self._js = bus.js
        self.swarm = swarm
        self.task = task
        self.attempt = attempt
        self.subject = subjects.log(swarm, task)
        self.name = subjects.output_name(swarm, task, attempt)
        self._headers = chunk_headers(attempt, agent)
        self._secrets = [s for s in secrets if s]
        spool_dir.mkdir(parents=True, exist_ok=True)
        self._spool_path = spool_dir / f"{swarm}.{task}.{attempt}.log"
        self._spool = self._spool_path.open("wb")
        self._tail = ""
        self._pending: list[str] = []
        self._more = asyncio.Event()
        self._closing = False
        self.chunks = 0
        self.dropped = 0
        self.size = 0
        self._publisher = asyncio.create_task(self._publish_loop(), name=f"log-{task}")

    @property
    def tail(self) -> str:
        return self._tail

    def write(self, text: str) -> None:
        """Add output (already readable text). Cheap and synchronous: publishing happens behind."""
        if not text:
            return
        text = scrub(text, self._secrets)
        data = text.encode("utf-8", "replace")
        self._spool.write(data)
        self.size += len(data)
        self._tail = (self._tail + text)[-TAIL_CHARS:]
        self._pending.append(text)
        self._more.set()

    async def _publish_loop(self) -> None:
        while True:
            await self._more.wait()
            self._more.clear()
            while self._pending:
                text = "".join(self._pending)
                self._pending.clear()
                for start in range(0, len(text), CHUNK_CHARS):
                    await self._publish(text[start : start + CHUNK_CHARS])
            if self._closing:
                return

    async def _publish(self, text: str) -> None:
        try:
            await publish_chunk(
                self._js, self.swarm, self.task, text.encode("utf-8", "replace"), self._headers
            )
            self.chunks += 1
        except Exception as error:  # NATS away: the live view loses this chunk, the output not
            self.dropped += 1
            if self.dropped == 1:
                log.warning("output.chunk_dropped", task=self.task, error=str(error))

    async def close(self, *, upload: bool = True) -> str | None:
        """Send what is left, store the whole output; its object name (None if not stored)."""
        self._closing = True
        self._more.set()
        try:
            await asyncio.wait_for(self._publisher, 10.0)
        except (TimeoutError, asyncio.CancelledError):
            self._publisher.cancel()
        self._spool.close()
        stored = None
        try:
            if upload:
                with self._spool_path.open("rb") as handle:
                    await store_output(self._js, self.name, handle)
                stored = self.name
        except Exception as error:
            log.warning("output.not_stored", task=self.task, name=self.name, error=str(error))
        finally:
            with contextlib.suppress(OSError):
                self._spool_path.unlink()
        return stored
