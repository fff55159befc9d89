"""What a Daytona failure means for Swarm: ``classify`` turns an error of the ``daytona`` SDK (or of
the transport under it) into a ``Failure``, and ``Failure.error`` into the ``SandboxFailed`` the
executor acts on. Pure: no network, no SDK client.

- ``auth``: 401 / 403 from the Daytona API or proxy. The task fails at once, naming
  ``DAYTONA_API_KEY``.
- ``busy``: 429, 502, 503, 504, or Daytona unreachable. Retried with backoff (bounded), then the
  task fails.
- ``gone``: 404 from the API or proxy (the sandbox is not there). A new sandbox; the attempt is
  requeued.
- ``daemon``: the sandbox's own daemon answered (source ``DAYTONA_DAEMON``: git failed, no such
  file or session). The caller reads it (git's message...).
- ``other``: anything else. The task fails with it.

A 401 from the daemon is not about the API key (git's credentials were refused): ``daemon``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

from services.bus.logs import scrub
from services.executor.sandboxes import SandboxFailed

Kind = Literal["auth", "busy", "gone", "daemon", "other"]

SOURCE_DAEMON = "DAYTONA_DAEMON"
BUSY_STATUS = frozenset({429, 502, 503, 504})
PHRASES = {
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    429: "Too Many Requests",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
MESSAGE_CHARS = 300


class DaytonaAuthRefused(SandboxFailed):
    """Daytona refused the API key or its access: nothing will work until it is fixed."""


class DaytonaUnavailable(SandboxFailed):
    """Daytona stayed rate-limited, unavailable or unreachable through every retry."""


class SandboxGone(SandboxFailed):
    """The API or its proxy does not know the sandbox (404): the sandbox layer checks, then
    makes a new one (``SandboxLost``)."""


class DaemonRefused(SandboxFailed):
    """The sandbox's daemon answered with an error (``message``: its words, e.g. git's)."""

    def __init__(self, reason: str, message: str, status: int | None, code: str | None) -> None:
        super().__init__(reason)
        self.message = message
        self.status = status
        self.code = code


@dataclass(frozen=True)
class Failure:
    kind: Kind
    status: int | None
    message: str
    code: str | None = None
    retry_after: float | None = None  # seconds, from a Retry-After header

    def error(
        self, action: str, *, api_url: str, tries: int = 1, secrets: tuple[str, ...] = ()
    ) -> SandboxFailed:
        """The exception for this failure while doing ``action`` (e.g. "creating a sandbox")."""
        message = scrub(self.message, secrets)
        status = f"{self.status} {PHRASES.get(self.status, '')}".strip() if self.status else None
        if self.kind == "auth" and self.status == 403:
            return DaytonaAuthRefused(
                f"Daytona auth failed ({status}) while {action}: {message} — the key in "
                f"DAYTONA_API_KEY may not do this: check its organization and permissions "
                f"(and DAYTONA_TARGET)"
            )
        if self.kind == "auth":
            return DaytonaAuthRefused(
                f"Daytona auth failed ({status or 'refused'}) while {action}: {message} — check "
                f"DAYTONA_API_KEY (a valid key for {api_url})"
            )
        if self.kind == "busy":
            what = status or "unreachable"
            return DaytonaUnavailable(
                f"Daytona is unavailable ({what}) while {action}, after {tries} "
                f"{'try' if tries == 1 else 'tries'}: {message}"
            )
        if self.kind == "gone":
            return SandboxGone(f"{message} ({status})")
        if self.kind == "daemon":
            return DaemonRefused(
                f"{action} failed in the sandbox ({status or 'error'}): {message}",
                message,
                self.status,
                self.code,
            )
        return SandboxFailed(f"Daytona failed while {action} ({status or 'error'}): {message}")


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _status(error: BaseException) -> int | None:
    for link in _chain(error):
        for name in ("status_code", "status"):
            value = getattr(link, name, None)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


def _attribute(error: BaseException, name: str) -> str | None:
    for link in _chain(error):
        value = getattr(link, name, None)
        if isinstance(value, str) and value:
            return value
    return None


def _retry_after(error: BaseException) -> float | None:
    for link in _chain(error):
        headers = getattr(link, "headers", None)
        if isinstance(headers, Mapping):
            value = next((v for k, v in headers.items() if str(k).lower() == "retry-after"), None)
            try:
                return max(0.0, float(value)) if value is not None else None
            except (TypeError, ValueError):
                return None
    return None


def _unreachable(error: BaseException) -> bool:
    """A transport failure: no answer at all (refused, reset, timed out)."""
    for link in _chain(error):
        name = type(link).__name__
        if name in ("DaytonaConnectionError", "DaytonaConnectionTimeoutError"):
            return True
        if isinstance(link, ConnectionError | TimeoutError | asyncio.TimeoutError):
            return True
        if name.startswith("Client") and type(link).__module__.startswith("aiohttp"):
            return "Response" not in name  # ClientResponseError carries a status
    return False


def classify(error: BaseException) -> Failure:
    """What ``error`` (raised by the SDK or its transport) means."""
    status = _status(error)
    source = _attribute(error, "source")
    code = _attribute(error, "code")
    message = " ".join(str(error).split())[:MESSAGE_CHARS] or type(error).__name__
    if source == SOURCE_DAEMON:
        return Failure("daemon", status, message, code)
    if status in (401, 403):
        return Failure("auth", status, message, code)
    if status in BUSY_STATUS:
        return Failure("busy", status, message, code, _retry_after(error))
    if status == 404:
        return Failure("gone", status, message, code)
    if status is None and _unreachable(error):
        return Failure("busy", None, message, code)
    return Failure("other", status, message, code)


def backoff(attempt: int, first: float, cap: float, retry_after: float | None = None) -> float:
    """Seconds to wait before retry ``attempt`` (1, 2, ...): doubling from ``first`` up to
    ``cap``; a server's Retry-After wins, within the cap."""
    if retry_after is not None:
        return min(retry_after, cap)
    return min(first * 2.0 ** (attempt - 1), cap)
