"""NATS micro services: request/reply endpoints that ``nats service ls`` lists.

A caller hands in plain async callables (``CommandRequest -> JSON-able value``); this module does
the NATS part: one subscription per endpoint in the micro queue group (replicas share the load),
JSON in and out, and Swarm's typed errors mapped once to micro error headers
(``Nats-Service-Error-Code`` is the HTTP-like status, ``Nats-Service-Error`` the message) with
the same ``{"error": {...}}`` body the HTTP API answers. ``call`` is the other side: a request
to an endpoint whose error answers come back as the same typed errors.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
import nats.errors
import structlog
from nats.aio.client import Client as NATS
from nats.micro import add_service
from nats.micro.request import Request
from nats.micro.service import Service as MicroService

from schemas.errors import Invalid, SwarmError, Unavailable, from_status

log = structlog.get_logger("bus.micro")


@dataclass(frozen=True)
class CommandRequest:
    """One request to an endpoint: its subject, its JSON body (``{}`` when empty), headers."""

    subject: str
    data: Any
    headers: Mapping[str, str] = field(default_factory=dict)

    def token(self, index: int) -> str:
        """A token of the subject: ``token(2)`` of ``swarm.cmd.dev.create_task`` is ``dev``."""
        parts = self.subject.split(".")
        return parts[index] if -len(parts) <= index < len(parts) else ""


@dataclass(frozen=True)
class Reply:
    """A handler's answer with headers of its own (a plain value is answered without)."""

    body: Any
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[CommandRequest], Awaitable[Any]]


@dataclass(frozen=True)
class Endpoint:
    name: str  # what ``nats service info`` shows
    subject: str  # may hold ``*`` wildcards
    handler: Handler
    description: str = ""


def error_body(error: SwarmError) -> dict[str, Any]:
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if isinstance(error, Invalid):
        body["field"] = error.field
    return {"error": body}


MAX_DEPTH = 32  # nesting of a request body; Swarm's own bodies need 5


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Whether ``value`` nests containers deeper than ``limit`` (iteratively: a deep value
    must not exhaust the stack of the check meant to refuse it)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        current, depth = stack.pop()
        children = current.values() if isinstance(current, dict) else current
        for child in children:
            if isinstance(child, dict | list):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def decode_body(data: bytes, field: str = "body") -> Any:
    """A request body (HTTP or NATS) as JSON values; ``{}`` when empty. Anything else is
    ``Invalid(field)``, never a crash: not UTF-8, not JSON, NaN or Infinity, a number out of
    64-bit range (an integer of thousands of digits would otherwise cost a quadratic conversion
    and end in ``ValueError``), a lone surrogate, or containers nested deeper than
    ``MAX_DEPTH`` (which would otherwise end in ``RecursionError``)."""
    if not data.strip():
        return {}
    try:
        value = msgspec.json.decode(data)
    except RecursionError:
        raise Invalid(field, f"the {field} nests deeper than {MAX_DEPTH} levels") from None
    except msgspec.ValidationError as error:  # numbers msgspec will not hold
        raise Invalid(field, f"the {field} holds a number out of range: {error}") from None
    except msgspec.DecodeError as error:
        raise Invalid(field, f"the {field} is not valid JSON: {error}") from None
    if isinstance(value, dict | list) and (data.count(b"[") + data.count(b"{") > MAX_DEPTH):
        if _depth_exceeds(value, MAX_DEPTH):
            raise Invalid(field, f"the {field} nests deeper than {MAX_DEPTH} levels")
    return value


def _wrap(endpoint: Endpoint) -> Callable[[Request], Awaitable[None]]:
    async def handle(request: Request) -> None:
        try:
            command = CommandRequest(
                subject=request.subject,
                data=decode_body(request.data),
                headers=dict(request.headers or {}),
            )
            result = await endpoint.handler(command)
        except SwarmError as error:
            await request.respond_error(
                str(error.status), error.message, json.dumps(error_body(error)).encode()
            )
            return
        except Exception as error:  # a bug: say so without details, log the details
            log.exception("micro.handler_failed", endpoint=endpoint.name, subject=request.subject)
            body = {
                "error": {"code": "error", "message": f"internal error ({type(error).__name__})"}
            }
            await request.respond_error("500", "internal error", json.dumps(body).encode())
            return
        if isinstance(result, Reply):
            await request.respond(json.dumps(result.body).encode(), headers=result.headers)
        else:
            await request.respond(json.dumps(result).encode())

    return handle


async def serve(
    nc: NATS,
    *,
    name: str,
    version: str,
    description: str,
    endpoints: list[Endpoint],
    metadata: dict[str, str] | None = None,
) -> MicroService:
    """Start a micro service with ``endpoints``; ``await service.stop()`` ends it."""
    service = await add_service(
        nc, name=name, version=version, description=description, metadata=metadata or {}
    )
    for endpoint in endpoints:
        await service.add_endpoint(
            name=endpoint.name,
            subject=endpoint.subject,
            handler=_wrap(endpoint),
            metadata={"description": endpoint.description} if endpoint.description else None,
        )
    await nc.flush()
    log.debug("micro.started", service=name, endpoints=len(endpoints))
    return service


ERROR_CODE_HEADER = "Nats-Service-Error-Code"
ERROR_HEADER = "Nats-Service-Error"


async def call(
    nc: NATS,
    subject: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> Any:
    """Request a micro endpoint: its decoded JSON answer, or the typed error it answered with.
    Nobody listening, no answer within ``timeout`` or NATS away: ``Unavailable``."""
    payload = b"" if body is None else json.dumps(body).encode()
    try:
        reply = await nc.request(subject, payload, timeout=timeout, headers=headers)
    except nats.errors.NoRespondersError:
        raise Unavailable(f"no service answers on {subject}; is it running?") from None
    except (nats.errors.Error, TimeoutError, OSError) as error:
        raise Unavailable(
            f"no answer on {subject} within {timeout}s ({type(error).__name__})"
        ) from None
    reply_headers = reply.headers or {}
    code = reply_headers.get(ERROR_CODE_HEADER)
    if code is not None:
        message, field = reply_headers.get(ERROR_HEADER) or f"error {code} on {subject}", None
        try:
            detail = json.loads(reply.data)["error"]
            message, field = detail.get("message") or message, detail.get("field")
        except (ValueError, KeyError, TypeError, AttributeError):
            pass
        status = int(code) if code.isascii() and code.isdigit() else 500
        raise from_status(status, message, field)
    try:
        return json.loads(reply.data) if reply.data else None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SwarmError(f"{subject} answered with something that is not JSON: {error}") from None
