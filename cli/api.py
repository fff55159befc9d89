"""The gateway's HTTP API as the CLI sees it: JSON requests and server-sent event streams
(standard library only), with the gateway's error bodies turned back into the typed errors of
``schemas.errors`` so every command fails with one clear line.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cli.envfile import Settings, load_settings
from schemas.errors import (
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    SwarmError,
    TooLarge,
    Unauthorized,
    Unavailable,
)
from schemas.scopes import CLI_PRODUCT

USER_AGENT = f"{CLI_PRODUCT}/1"  # the gateway records this CLI's writes as actor "cli"
TIMEOUT = 30.0  # seconds for one request
STREAM_TIMEOUT = 60.0  # seconds of silence on a stream (the gateway sends keepalives every 15)


@dataclass(frozen=True)
class ServerEvent:
    """One server-sent event: ``event`` (its type), ``data`` (text), ``id`` (a log position)."""

    event: str
    data: str
    id: int | None = None

    def json(self) -> Any:
        return json.loads(self.data) if self.data else None


def error_from(status: int, body: bytes, url: str) -> SwarmError:
    """The typed error for a gateway error answer."""
    try:
        detail = json.loads(body)["error"]
        message = str(detail.get("message") or "")
        field = detail.get("field")
    except (ValueError, KeyError, TypeError, AttributeError):
        message, field = body.decode("utf-8", "replace").strip()[:300], None
    message = message or f"HTTP {status} from {url}"
    if status == 400:
        return Invalid(field or "body", message)
    if status == 401:
        return Unauthorized(
            f"{message} — set SWARM_API_TOKEN (swarm up keeps it in .swarm/swarm.env)"
        )
    if status == 403:
        return Forbidden(message)
    if status == 404:
        return NotFound(message)
    if status == 409:
        return Conflict(message)
    if status == 413:
        return TooLarge(message)
    if status in (502, 503, 504):
        return Unavailable(message)
    return SwarmError(f"HTTP {status}: {message}")


def next_after(link: str | None) -> str | None:
    """The ``after`` of the page a ``Link`` header's ``rel="next"`` points to (RFC 8288), if
    any."""
    for part in (link or "").split(","):
        target, _, params = part.partition(";")
        target = target.strip()
        rels = [p.strip().removeprefix("rel=").strip('"') for p in params.split(";")]
        if target.startswith("<") and target.endswith(">") and "next" in rels:
            query = urllib.parse.urlsplit(target[1:-1]).query
            found = urllib.parse.parse_qs(query).get("after")
            return found[-1] if found else None
    return None


def parse_stream(lines: Iterator[bytes]) -> Iterator[ServerEvent]:
    """Server-sent events from the lines of a ``text/event-stream`` body."""
    data: list[str] = []
    ident: int | None = None
    event = "message"
    for raw in lines:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            if data or event != "message":
                yield ServerEvent(event=event, data="\n".join(data), id=ident)
            event, data, ident = "message", [], None
            continue
        if line.startswith(":"):
            continue  # a comment (keepalive)
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            ident = int(value) if value.isascii() and value.isdigit() else None


class Api:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or load_settings()
        self.base = self.settings.api_url.rstrip("/")

    def url(self, path: str, query: dict[str, Any] | None = None) -> str:
        url = self.base + path
        if query:
            pairs = {k: str(v) for k, v in query.items() if v is not None and v is not False}
            if pairs:
                url += "?" + urllib.parse.urlencode(pairs)
        return url

    def _open(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = TIMEOUT,
    ) -> Any:
        url = self.url(path, query)
        sent = dict(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        sent["User-Agent"] = USER_AGENT
        if self.settings.bearer:
            sent["Authorization"] = f"Bearer {self.settings.bearer}"
        request = urllib.request.Request(url, data=data, method=method, headers=sent)
        try:
            return urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as error:
            raise error_from(error.code, error.read(), url) from None
        except (urllib.error.URLError, OSError) as error:
            raise self.unreachable(getattr(error, "reason", error)) from None

    def unreachable(self, reason: object) -> Unavailable:
        """The error for a gateway that does not answer: the URL tried and where it came from."""
        return Unavailable(
            f"cannot reach the gateway at {self.base} ({reason}); that URL is "
            f"{self.settings.api_url_from}. Is `swarm up` running?"
        )

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = TIMEOUT,
    ) -> Any:
        """One JSON request; the decoded answer, or a typed error."""
        return self._answer(method, path, body, query, headers, timeout)[0]

    def _answer(
        self,
        method: str,
        path: str,
        body: Any,
        query: dict[str, Any] | None,
        headers: dict[str, str] | None,
        timeout: float,
    ) -> tuple[Any, str | None]:
        """The decoded answer and its ``Link`` header."""
        with self._open(
            method, path, body=body, query=query, headers=headers, timeout=timeout
        ) as response:
            try:
                raw = response.read()
            except (TimeoutError, OSError) as error:
                raise Unavailable(
                    f"the gateway at {self.base} stopped answering ({error})"
                ) from None
            link = response.headers.get("Link")
        return (json.loads(raw) if raw else None), link

    def get(self, path: str, **query: Any) -> Any:
        return self.request("GET", path, query=query)

    def page(self, path: str, **query: Any) -> tuple[Any, str | None]:
        """A ``GET`` of one page (``limit``, ``after``): the answer, and the ``after`` of the
        next page while more follow (from the ``Link`` header)."""
        answer, link = self._answer("GET", path, None, query, None, TIMEOUT)
        return answer, next_after(link)

    def stream(
        self, path: str, *, until: float | None = None, **query: Any
    ) -> Iterator[ServerEvent]:
        """Follow a server-sent event stream until the server ends it, or (``until``: a
        ``time.monotonic()`` moment) until then: the read timeout is cut to the time left and
        the clock is looked at after each line (keepalives come every 15 seconds)."""
        timeout = STREAM_TIMEOUT
        if until is not None:
            timeout = max(0.05, min(STREAM_TIMEOUT, until - time.monotonic()))
        response = self._open("GET", path, query=query, timeout=timeout)

        def lines() -> Iterator[bytes]:
            while until is None or time.monotonic() < until:
                line = response.readline()
                if not line:
                    return
                yield line

        try:
            yield from parse_stream(lines())
        except (TimeoutError, OSError) as error:
            if until is not None and time.monotonic() >= until:
                return  # quiet until the moment asked for: not a failure
            raise Unavailable(f"the stream {path} broke off ({error})") from None
        finally:
            response.close()
