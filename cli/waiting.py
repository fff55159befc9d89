"""Waiting for a task to end (``swarm task --wait``, ``swarm wait``): never on the event stream
alone.

The task's state is read (``GET``) first, after every event that may have ended it, whenever the
stream breaks off or ends (the gateway restarted, a proxy closed it), and at least every
``RECHECK`` seconds even on a quiet stream; the stream is then opened again after the last
event seen. While the gateway does not answer, it is asked again with a growing pause (at most
``RETRY_MAX``), saying so once. A ``timeout`` bounds the whole wait: ``TimedOut`` carries the
task as last read.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from cli.api import Api
from cli.progress import Progress
from schemas.errors import NotFound, Unavailable

TERMINAL = frozenset({"completed", "failed", "cancelled"})
TERMINAL_EVENTS = frozenset({"task.completed", "task.failed", "task.cancelled", "task.deleted"})
RECHECK = 30.0  # seconds: the task's state is read again at least this often
RETRY_FIRST = 0.5  # seconds before asking an unreachable gateway again, doubling each time
RETRY_MAX = 5.0


class TimedOut(Exception):
    def __init__(self, task: dict[str, Any], waited: float) -> None:
        super().__init__(f"{task.get('id')} still {task.get('status')} after {waited:g}s")
        self.task = task
        self.waited = waited


def progress_text(event: dict[str, Any]) -> str:
    """``t-1 claimed agent=a1 attempt=1``: one event of the task, in a few words."""
    kind = str(event.get("type", "?"))
    details = [f"{k}={event[k]}" for k in ("agent", "attempt", "reason") if event.get(k)]
    return " ".join([str(event.get("id", "?")), kind.removeprefix("task."), *details])


def elapsed(seconds: float) -> str:
    minutes, rest = divmod(int(seconds), 60)
    return f"({minutes}m{rest:02d}s)" if minutes else f"({seconds:.0f}s)"


def wait_for_end(
    api: Api,
    swarm: str,
    task_id: str,
    *,
    timeout: float | None = None,
    progress: Progress | None = None,
    recheck: float = RECHECK,
    pause: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """The task once it is completed, failed or cancelled (``status: deleted`` when it is gone);
    ``TimedOut`` after ``timeout`` seconds."""
    progress = progress or Progress()
    path = f"/swarms/{swarm}/tasks/{task_id}"
    started = time.monotonic()
    deadline = None if timeout is None else started + timeout
    since = 0  # the last log position seen on the task's stream
    retry = RETRY_FIRST
    unreachable = False
    task: dict[str, Any] = {"id": task_id, "status": "unknown"}

    def timed_out() -> bool:
        return deadline is not None and time.monotonic() >= deadline

    while True:
        try:
            task = api.get(path)
        except NotFound:
            return {"id": task_id, "status": "deleted", "result": None}
        except Unavailable as error:
            if not unreachable:
                progress.note(f"{error.message} — asking again until it answers")
                unreachable = True
            if timed_out():
                raise TimedOut(task, timeout or 0.0) from None
            left = recheck if deadline is None else deadline - time.monotonic()
            pause(max(0.0, min(retry, left)))
            retry = min(retry * 2, RETRY_MAX)
            continue
        if unreachable:
            progress.note(f"the gateway answers again; {task_id} is {task['status']}")
            unreachable, retry = False, RETRY_FIRST
        if task["status"] in TERMINAL:
            progress.clear()
            return task
        if timed_out():
            progress.clear()
            raise TimedOut(task, timeout or 0.0)
        until = time.monotonic() + recheck
        if deadline is not None:
            until = min(until, deadline)
        try:
            events = api.stream(
                f"/swarms/{swarm}/events", until=until, task=task_id, since=since, follow=1
            )
            for message in events:
                if message.id is not None:
                    since = max(since, message.id)
                if message.event == "end":
                    break
                progress.step(
                    progress_text(message.json() or {}), elapsed(time.monotonic() - started)
                )
                if message.event in TERMINAL_EVENTS:
                    break
        except Unavailable:
            pass  # the state is read again, then the stream reopened after ``since``
