"""Waiting for a condition in tests: poll it until it holds, fail with what was awaited after a
deadline. Never a fixed sleep standing in for an event."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any


async def until(
    probe: Callable[[], Any], timeout: float = 20.0, what: str = "condition", every: float = 0.02
) -> Any:
    """The first truthy value of ``probe()`` (awaited when it returns an awaitable)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(every)


def until_sync(
    probe: Callable[[], Any], timeout: float = 20.0, what: str = "condition", every: float = 0.1
) -> Any:
    """``until`` for code outside an event loop (real processes, HTTP polled with urllib)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)
