"""What a Daytona failure means for Swarm: ``classify`` turns an error of the ``daytona`` SDK (or
of the transport under it) into a ``Failure``, and ``Failure.error`` into the ``SandboxFailed``
the executor acts on. Pure: no network, no SDK client.

Classification reads the HTTP status and *which API was called* -- the REST API (sandboxes) or a
sandbox's toolbox (through Daytona's proxy to the sandbox's daemon). It never reads the envelope's
``source``: the open-source server (v0.190) does not send one.

REST API:
- ``auth``: 401 / 403; and a 429 from the failed-auth throttle (``X-RateLimit-*-failed-auth``
  headers: the API blocks an address after repeated bad keys). The task fails at once, naming
  ``DAYTONA_API_KEY``.
- ``gone``: 404 (the sandbox is not there).
- ``conflict``: 409 (a state change is in progress: look again, then act).

Toolbox:
- ``refused``: 400 / 401 / 403 / 404. Either the proxy (the sandbox was deleted -- the proxy then
  answers 400 or 401, not 404 --, is stopped, or the key is bad) or the daemon (git's credentials
  refused, a branch that does not exist, no such session). Who refused is told by asking the REST
  API about the sandbox (``daytona.py``), not by guessing from the toolbox's answer.
- ``daemon``: any other answer of the sandbox's daemon (408 timeout, 409 conflict, 500 ...).

Both:
- ``busy``: 429, 502, 503, 504, unreachable, or no answer within the client-side timeout.
  Retried with backoff (bounded), then the task fails.
- ``skew``: the SDK could not read the server's answer (a field its models require is missing):
  the installed SDK does not match the server's version line (``daytona_lines.py``).
- ``other``: anything else. The task fails with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Literal

from services.bus.logs import scrub
from services.executor.sandboxes import SandboxFailed

Kind = Literal["auth", "busy", "conflict", "gone", "refused", "daemon", "skew", "other"]
Api = Literal["rest", "toolbox"]

BUSY_STATUS = frozenset({429, 502, 503, 504})
TOOLBOX_REFUSED = frozenset({400, 401, 403, 404})
FAILED_AUTH_HEADER = "x-ratelimit-remaining-failed-auth"
MESSAGE_CHARS = 300


class DaytonaAuthRefused(SandboxFailed):
    """Daytona refused the API key or its access: nothing will work until it is fixed."""


class DaytonaUnavailable(SandboxFailed):
    """Daytona stayed rate-limited, unavailable or unreachable through every retry."""


class DaytonaConflict(SandboxFailed):
    """The API refused because the sandbox is changing state (409): look again, then act."""


class SandboxGone(SandboxFailed):
    """The REST API does not know the sandbox (404): the sandbox layer makes a new one
    (``SandboxLost``)."""


class DaytonaSkew(SandboxFailed):
    """The installed SDK cannot read what the server sends: the wrong SDK line for the server."""


class ToolboxRefused(SandboxFailed):
    """The toolbox answered 400/401/403/404: the proxy or the daemon refused (the sandbox layer
    asks the REST API which)."""

    def __init__(self, reason: str, message: str, status: int | None) -> None:
        super().__init__(reason)
        self.message = message
        self.status = status


class DaemonRefused(SandboxFailed):
    """The sandbox's daemon answered with an error (``message``: its words, e.g. git's)."""

    def __init__(self, reason: str, message: str, status: int | None) -> None:
        super().__init__(reason)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Failure:
    kind: Kind
    status: int | None
    message: str
    retry_after: float | None = None  # seconds, from a Retry-After header
    missing: tuple[str, ...] = ()  # skew: the fields the SDK missed

    def error(
        self, action: str, *, api_url: str, tries: int = 1, secrets: tuple[str, ...] = ()
    ) -> SandboxFailed:
        """The exception for this failure while doing ``action`` (e.g. "creating a sandbox")."""
        message = scrub(self.message, secrets)
        status = describe(self.status)
        if self.kind == "auth" and self.status == 429:
            wait = f", retry after {self.retry_after:g} s" if self.retry_after is not None else ""
            return DaytonaAuthRefused(
                f"Daytona auth failed (429 Too Many Requests{wait}) while {action}: Daytona "
                f"refused the API key too often and now blocks this address — check "
                f"DAYTONA_API_KEY (a valid key for {api_url})"
            )
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
        if self.kind == "conflict":
            return DaytonaConflict(f"Daytona refused {action} ({status}): {message}")
        if self.kind == "refused":
            return ToolboxRefused(f"{action} refused ({status}): {message}", message, self.status)
        if self.kind == "daemon":
            return DaemonRefused(
                f"{action} failed in the sandbox ({status or 'error'}): {message}",
                message,
                self.status,
            )
        if self.kind == "skew":
            fields = ", ".join(self.missing) or "see the message"
            return DaytonaSkew(
                f"Daytona at {api_url} answered {action} with data the installed daytona SDK "
                f"cannot read (missing: {fields}): the SDK does not match the server's version "
                f"line. For a self-hosted open-source Daytona (v0.190) install Swarm with the "
                f"daytona-oss extra (daytona 0.190.x); for the hosted service, the default "
                f"install. ({message})"
            )
        return SandboxFailed(f"Daytona failed while {action} ({status or 'error'}): {message}")


def describe(status: int | None) -> str | None:
    """``404 Not Found``; None without a status."""
    if not status:
        return None
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


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


def _headers(error: BaseException) -> dict[str, str]:
    for link in _chain(error):
        headers = getattr(link, "headers", None)
        if isinstance(headers, Mapping) and headers:
            return {str(k).lower(): str(v) for k, v in headers.items()}
    return {}


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _missing_fields(error: BaseException) -> tuple[str, ...] | None:
    """The fields a model validation (pydantic) found missing or wrong; None: not a validation
    error."""
    for link in _chain(error):
        if type(link).__name__ == "ValidationError" and hasattr(link, "errors"):
            found: list[str] = []
            title = getattr(link, "title", "") or "?"
            try:
                problems = link.errors()
            except Exception:
                problems = []
            for problem in problems:
                where = ".".join(str(part) for part in problem.get("loc", ()))
                found.append(f"{title}.{where}" if where else title)
            return tuple(dict.fromkeys(found))
    return None


def _unreachable(error: BaseException) -> bool:
    """A transport failure: no answer at all (refused, reset, timed out)."""
    for link in _chain(error):
        name = type(link).__name__
        if name in ("DaytonaConnectionError", "DaytonaConnectionTimeoutError"):
            return True
        if isinstance(link, ConnectionError | TimeoutError | asyncio.TimeoutError):
            return True
        if name.startswith(("Client", "Server")) and type(link).__module__.startswith("aiohttp"):
            return "Response" not in name  # ClientResponseError carries a status
    return False


def classify(error: BaseException, api: Api = "rest") -> Failure:
    """What ``error`` (raised by the SDK or its transport, calling ``api``) means."""
    status = _status(error)
    message = " ".join(str(error).split())[:MESSAGE_CHARS] or type(error).__name__
    missing = _missing_fields(error)
    if missing is not None:
        return Failure("skew", status, message, missing=missing)
    headers = _headers(error)
    retry_after = _seconds(headers.get("retry-after"))
    if status == 429 and FAILED_AUTH_HEADER in headers:
        return Failure("auth", 429, message, retry_after)
    if status in BUSY_STATUS:
        return Failure("busy", status, message, retry_after)
    if status is None and _unreachable(error):
        return Failure("busy", None, message)
    if api == "rest":
        if status in (401, 403):
            return Failure("auth", status, message)
        if status == 404:
            return Failure("gone", status, message)
        if status == 409:
            return Failure("conflict", status, message)
        return Failure("other", status, message)
    if status in TOOLBOX_REFUSED:
        return Failure("refused", status, message)
    if status is not None:
        return Failure("daemon", status, message)
    return Failure("other", status, message)


def backoff(attempt: int, first: float, cap: float, retry_after: float | None = None) -> float:
    """Seconds to wait before retry ``attempt`` (1, 2, ...): doubling from ``first`` up to
    ``cap``; a server's Retry-After wins, within the cap."""
    if retry_after is not None:
        return min(retry_after, cap)
    return min(first * 2.0 ** (attempt - 1), cap)
