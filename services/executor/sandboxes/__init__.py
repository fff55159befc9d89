"""Where an agent's commands run: one sandbox per agent, behind one small interface.

A ``Backend`` creates a sandbox for an agent, or attaches to the one it already has (a restarted
executor finds its agents' sandboxes again). A ``Sandbox`` runs one command at a time: output
streams to a callback as it comes, and a timeout or a cancel kills the command with everything it
started. ``local`` (``sandboxes/local.py``) is the default; a Daytona backend goes behind the same
interface.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from schemas.errors import Invalid

# (stream, data): stream is "stdout" or "stderr"; data is raw bytes as they came.
OutputCallback = Callable[[str, bytes], Awaitable[None] | None]


@dataclass(frozen=True)
class ExecResult:
    """How a command ended. ``exit_code`` is None when it was killed (timeout, cancel) before it
    exited by itself; a negative code is the signal that ended it."""

    exit_code: int | None
    timed_out: bool = False
    cancelled: bool = False
    duration_s: float = 0.0


class Sandbox(ABC):
    """One agent's place to run commands."""

    id: str  # the backend's name for it (stable across executor restarts)
    agent: str
    workdir: str  # where commands start (the agent's working directory)

    @abstractmethod
    async def exec(
        self,
        argv: Sequence[str],
        *,
        on_output: OutputCallback,
        env: Mapping[str, str] | None = None,
        stdin: bytes | None = None,
        timeout: float | None = None,
        cancel: asyncio.Event | None = None,
        merge_stderr: bool = False,
    ) -> ExecResult:
        """Run ``argv`` in the sandbox's working directory and wait for it.

        ``env``: variables given to the command on top of the sandbox's own minimal environment
        (credentials go here; nothing else of the executor's environment leaks in).
        ``timeout`` seconds / ``cancel`` set: the command and everything it started are killed
        and the result says which. ``merge_stderr``: stderr arrives as "stdout", in order.
        Cancelling the awaiting asyncio task also kills the command."""

    @abstractmethod
    async def destroy(self) -> None:
        """Remove the sandbox and what it holds."""


class Backend(ABC):
    name: str

    @abstractmethod
    async def create(self, swarm: str, agent: str, sandbox_id: str | None = None) -> Sandbox:
        """The agent's sandbox: attach to ``sandbox_id`` (or the one this backend made for the
        agent before) when it exists, else create it."""


def backend(name: str, **options: object) -> Backend:
    """The backend called ``name`` (``local``)."""
    if name == "local":
        from services.executor.sandboxes.local import LocalBackend

        return LocalBackend(**options)  # type: ignore[arg-type]
    raise Invalid("backend", f"unknown sandbox backend {name!r} (known: local)")
