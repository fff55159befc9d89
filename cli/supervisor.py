"""Keeping child processes alive for ``swarm up``.

Each child runs in its own process group (Ctrl-C in the terminal reaches only the supervisor)
and is tied to the supervisor with ``PR_SET_PDEATHSIG`` (Linux), so it dies even when the
supervisor is killed with ``kill -9``. A child that dies unexpectedly is restarted at once the
first time (an executor's agents stay present: its next life re-announces them well within the
lease), then, if it keeps dying, after a backoff doubling from ``BACKOFF_FIRST`` up to
``BACKOFF_MAX``; a child that stayed up ``STABLE_AFTER`` seconds starts over (its next death is
restarted at once again). On stop, children get SIGTERM one after the other, in the given
order, and SIGKILL if they outstay the timeout.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from services.bus.logs import scrub

BACKOFF_FIRST = 0.5  # seconds before the second restart in a row (the first is at once)
BACKOFF_MAX = 30.0
STABLE_AFTER = 30.0  # a child up this long counts as healthy: its next death starts over
STOP_TIMEOUT = 10.0  # SIGTERM, then SIGKILL after this long

_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class RestartPolicy:
    """When a dead child is started again: at once after its first death (or its first after a
    stable run of ``stable_after`` seconds), then after ``first`` seconds, doubling per death in
    a row up to ``ceiling``."""

    first: float = BACKOFF_FIRST
    ceiling: float = BACKOFF_MAX
    stable_after: float = STABLE_AFTER

    def next_delay(self, previous: float | None, uptime: float) -> float:
        """How long to wait before restarting a child that died after ``uptime`` seconds, when
        ``previous`` was the wait before its last restart (None: it never died before)."""
        if previous is None or uptime >= self.stable_after:
            return 0.0
        if previous <= 0:
            return min(self.first, self.ceiling)
        return min(previous * 2, self.ceiling)


def next_delay(previous: float | None, uptime: float) -> float:
    """``RestartPolicy().next_delay``: the defaults ``swarm up`` uses."""
    return RestartPolicy().next_delay(previous, uptime)


def describe_exit(code: int) -> str:
    """``code 2``, ``code -9 (SIGKILL)``."""
    if code < 0:
        try:
            return f"code {code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"code {code} (signal {-code})"
    return f"code {code}"


def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


def die_with_parent(signum: int = signal.SIGKILL) -> Callable[[], None]:
    """A ``preexec_fn``: the child receives ``signum`` when this process dies, however it dies.

    The kernel ties this to the *thread* that forked, so start children from the main thread
    (never from ``asyncio.to_thread``)."""
    parent = os.getpid()
    prctl = _prctl()  # looked up here: the child only calls it

    def preexec() -> None:
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)

    return preexec


def last_line(path: Path, secrets: Iterable[str] = (), limit: int = 300) -> str:
    """The last non-empty line of a log file (secrets masked), for a one-line death notice."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 8192))
            lines = handle.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    line = next((line.strip() for line in reversed(lines) if line.strip()), "")
    line = scrub(line, secrets)
    return line if len(line) <= limit else line[: limit - 1] + "…"


@dataclass
class Child:
    """One supervised process: what to run and what happened to it so far."""

    name: str
    argv: list[str]
    env: Mapping[str, str]
    log_path: Path
    process: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    delay: float | None = None  # the backoff before its last restart
    restarts: int = 0  # how often it was started again

    @property
    def pid(self) -> int | None:
        """The running process's pid, or None between lives."""
        if self.process is None or self.process.returncode is not None:
            return None
        return self.process.pid


class Supervisor:
    """Start ``children``, keep them alive until ``stop()``, then stop them in order."""

    def __init__(
        self,
        children: list[Child],
        *,
        warn: Callable[[str], None],
        stop_timeout: float = STOP_TIMEOUT,
        secrets: Iterable[str] = (),
        restarts: RestartPolicy | None = None,
    ) -> None:
        self.children = children
        self.restarts = restarts or RestartPolicy()
        self.warn = warn
        self.stop_timeout = stop_timeout
        self.secrets = list(secrets)
        self.stopping = asyncio.Event()

    def stop(self) -> None:
        self.stopping.set()

    async def run(self) -> None:
        """Until ``stop()``; then every child is stopped before this returns."""
        keepers = [asyncio.create_task(self._keep_alive(c), name=c.name) for c in self.children]
        stopped = asyncio.create_task(self.stopping.wait())
        try:
            done, _ = await asyncio.wait([*keepers, stopped], return_when=asyncio.FIRST_COMPLETED)
            self.stopping.set()
            await asyncio.gather(*keepers, return_exceptions=True)
        finally:
            self.stopping.set()
            for keeper in keepers:
                keeper.cancel()
            stopped.cancel()
            for child in self.children:
                await self._stop_child(child)
        for keeper in keepers:  # a keeper that failed is a bug: surface it
            if keeper in done and keeper.exception() is not None:
                raise keeper.exception()  # type: ignore[misc]

    async def _start(self, child: Child) -> None:
        with open(child.log_path, "ab") as log:  # noqa: ASYNC230 (a local file: instant)
            child.process = await asyncio.create_subprocess_exec(
                *child.argv,
                env=dict(child.env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                process_group=0,
                preexec_fn=die_with_parent(signal.SIGKILL),
            )
        child.started_at = time.monotonic()

    async def _keep_alive(self, child: Child) -> None:
        while not self.stopping.is_set():
            try:
                await self._start(child)
            except OSError as error:
                child.started_at = time.monotonic()
                code, pid, what = None, None, f"could not start: {error}"
            else:
                assert child.process is not None
                code = await self._exit_or_stop(child.process)
                if code is None:
                    return
                pid, what = child.process.pid, f"exited with {describe_exit(code)}"
            child.delay = self.restarts.next_delay(child.delay, time.monotonic() - child.started_at)
            child.restarts += 1
            # a crash (not a signal) likely said why in its last line
            tail = last_line(child.log_path, self.secrets) if code is not None and code > 0 else ""
            when = f"restarting in {child.delay:g}s" if child.delay else "restarting now"
            self.warn(
                f"{child.name}{f' (pid {pid})' if pid else ''} {what}; {when}"
                + (f" — last log line: {tail}" if tail else "")
            )
            if child.delay <= 0:
                if self.stopping.is_set():
                    return
                continue
            try:
                await asyncio.wait_for(self.stopping.wait(), child.delay)
                return
            except TimeoutError:
                pass

    async def _exit_or_stop(self, process: asyncio.subprocess.Process) -> int | None:
        """The exit code, or None when stopping began first (the child still runs)."""
        exited = asyncio.create_task(process.wait())
        stopping = asyncio.create_task(self.stopping.wait())
        try:
            await asyncio.wait([exited, stopping], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not exited.done():
                exited.cancel()
        if exited.done() and not exited.cancelled() and not self.stopping.is_set():
            return exited.result()
        return None

    async def _stop_child(self, child: Child) -> None:
        process = child.process
        if process is None or process.returncode is not None:
            return
        _signal_group(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), self.stop_timeout)
        except TimeoutError:
            self.warn(f"{child.name} (pid {process.pid}) outstayed {self.stop_timeout:g}s: killed")
            _signal_group(process.pid, signal.SIGKILL)
            await process.wait()


def _signal_group(pid: int, signum: int) -> None:
    """The child leads its own process group: signal the whole group (its helpers too)."""
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        pass
