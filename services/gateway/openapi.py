"""``GET /openapi.json``: an OpenAPI 3.1 document built from the route table and the pydantic
models the handlers validate with, saying what the gateway does: every status it answers with
(the errors with their body), the limits, enums and patterns it enforces on parameters, the
headers it reads and sends, and the media type of its event streams."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from schemas.subjects import TOKEN_PATTERN
from services.gateway import models
from services.gateway.routes import ROUTES, Route

REF = "#/components/schemas/{model}"

_REASONS = {
    400: "Bad input; `error.field` names the field, parameter or header at fault",
    401: "Missing or wrong bearer token",
    403: "An agent token used outside its scope (schemas.scopes)",
    404: "Unknown swarm, task, agent or project",
    409: "Not allowed in the current state, or lost a race: read again and retry",
    413: "Body too large",
    429: "Too many wrong tokens from this client address: every token it sends is refused "
    "until `Retry-After` seconds have passed (a board session is not refused)",
    503: "NATS unreachable or the gateway still replaying: retry later",
}
WRITES = frozenset({"POST", "PUT", "DELETE"})
NOT_APPENDING = frozenset({"post_chat"})  # relayed to the chat service: no event of ours
PATH_IDS = {  # what each path parameter may hold
    "swarm": {"type": "string", "pattern": TOKEN_PATTERN},
    "task": {"type": "string", "pattern": TOKEN_PATTERN},
    "project": {"type": "string", "pattern": TOKEN_PATTERN},
    "sandbox": {"type": "string", "minLength": 1, "maxLength": 200},
}
CORRELATION = {
    "X-Correlation-Id": {
        "description": "the request's X-Correlation-Id (printable ASCII, at most 128), or a new "
        "one; its events carry it",
        "schema": {"type": "string"},
    }
}
SSE_EVENT = {  # one event of a stream, as its fields
    "type": "object",
    "required": ["data"],
    "properties": {
        "id": {"type": "string", "pattern": r"^[0-9]+$", "description": "its log position"},
        "event": {"type": "string", "description": "its type (the last one: `end`)"},
        "data": {"type": "string", "contentMediaType": "application/json"},
    },
}
APPLYING = (
    "Written to the log but not yet applied by this gateway (its view lags, e.g. while a NATS "
    "node is lost): the body names the id and log position; read it at `Location` and do not "
    "send it again (unless with the same Idempotency-Key)"
)
SSE_DESCRIPTION = (
    "Server-sent events (text/event-stream): blocks of `id: <log position>`, `event: <type>` "
    "and `data: <JSON>` lines, a blank line after each; `: keepalive` comments on a quiet "
    "stream. Reconnect with `Last-Event-ID` (or `since`) to resume after the last `id`."
)


def _model_of(route: Route) -> tuple[type[BaseModel] | None, bool]:
    """(its response model, whether it answers a list of them); (None, False): no model."""
    return route.response_model or (None, False)


def _all_models() -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = [models.Error, models.Applying, models.Health]
    for route in ROUTES:
        for candidate in (route.body_model, _model_of(route)[0]):
            if candidate is not None and candidate not in found:
                found.append(candidate)
    return found


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _error_response(code: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": _REASONS[code],
        "headers": dict(CORRELATION),
        "content": _json(_ref(models.Error)),
    }
    if code == 401:
        response["headers"]["WWW-Authenticate"] = {
            "description": "Bearer",
            "schema": {"type": "string"},
        }
    if code == 429:
        response["headers"]["Retry-After"] = {
            "description": "seconds until this address may send a token again",
            "schema": {"type": "integer", "minimum": 1},
        }
    return response


def _appends(route: Route) -> bool:
    return route.method in WRITES and route.name not in NOT_APPENDING


def _parameters(route: Route) -> list[dict[str, Any]]:
    found = [
        {"name": name, "in": "path", "required": True, "schema": PATH_IDS[name]}
        for name in re.findall(r"{(\w+)}", route.path)
    ]
    found += [
        {
            "name": q.name,
            "in": "query",
            "required": False,
            "description": q.description,
            "schema": {"type": q.type, **q.schema},
        }
        for q in route.query
    ]
    if _appends(route):
        found.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "a retried request with the same key has the effect of one "
                "(1-200 printable characters)",
                "schema": {"type": "string", "minLength": 1, "maxLength": 200},
            }
        )
    if route.stream:
        found.append(
            {
                "name": "Last-Event-ID",
                "in": "header",
                "required": False,
                "description": "resume after this log position (sent by a reconnecting "
                "EventSource; `since` wins when both are given)",
                "schema": {"type": "string", "pattern": r"^[0-9]{1,19}$"},
            }
        )
    return found


def _success(route: Route) -> dict[str, Any]:
    model, many = _model_of(route)
    if route.stream:
        content: dict[str, Any] = {"text/event-stream": {"schema": SSE_EVENT}}
        description = SSE_DESCRIPTION
    elif model is not None:
        content = _json({"type": "array", "items": _ref(model)} if many else _ref(model))
        description = "OK"
    elif route.name == "health":
        content = _json(_ref(models.Health))
        description = "Every service is ready"
    else:
        content = _json({"type": "object"})
        description = "OK"
    headers: dict[str, Any] = dict(CORRELATION)
    for name, meaning in route.headers.items():
        headers[name] = {"description": meaning, "schema": {"type": "string"}}
    answer = {"description": description, "headers": headers, "content": content}
    responses: dict[str, Any] = {str(route.status): answer}
    if route.status == 201:
        responses["200"] = {**answer, "description": "Already done (same Idempotency-Key)"}
    applying = {
        "description": APPLYING,
        "headers": {
            **CORRELATION,
            "Location": {"description": "where to read it", "schema": {"type": "string"}},
        },
        "content": _json(_ref(models.Applying)),
    }
    if route.status == 202:  # a new init/sync round asked for; or the request still applying
        responses["200"] = {**answer, "description": "With wait=true: every agent answered"}
        one_of = {"oneOf": [content["application/json"]["schema"], _ref(models.Applying)]}
        responses["202"] = {**answer, "headers": applying["headers"], "content": _json(one_of)}
    elif _appends(route):
        responses["202"] = applying
    if route.name == "health":
        responses["503"] = {
            "description": "Not every service is ready (or NATS is away): the same report",
            "headers": dict(CORRELATION),
            "content": _json(_ref(models.Health)),
        }
    return responses


def _error_codes(route: Route) -> set[int]:
    if route.name in ("health", "openapi"):
        return set()
    codes = set(route.errors) | {503}
    if route.auth:
        codes |= {401, 429}
    if route.agent_token:
        codes.add(403)
    if route.body is not None:
        codes |= {400, 413}
    if route.query or route.stream or _appends(route):  # parameters and headers it checks
        codes.add(400)
    return codes


def _operation(route: Route) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": route.name,
        "summary": route.summary,
        "tags": [route.tag],
    }
    parameters = _parameters(route)
    if parameters:
        operation["parameters"] = parameters
    body = route.body_model
    if body is not None:
        operation["requestBody"] = {
            "required": route.method == "POST" and route.name != "cancel_task",
            "content": _json(_ref(body)),
        }
    responses = _success(route)
    for code in sorted(_error_codes(route)):
        responses[str(code)] = _error_response(code)
    operation["responses"] = responses
    if not route.auth:
        operation["security"] = []
    return operation


@cache
def document(version: str = "0.1.0") -> dict[str, Any]:
    _, schemas = models_json_schema([(m, "validation") for m in _all_models()], ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Swarm gateway",
            "version": version,
            "description": "Swarm's HTTP API: the original prototype's endpoints (same paths "
            "and verbs) plus task history, output, live event streams and replay. Every error "
            'answers `{"error": {"code", "message", "field"}}` (`field` on a 400); an '
            "unknown path answers 404 and a method a path does not have 405 with an `Allow` "
            "header listing the ones it has (`components.responses.MethodNotAllowed`).",
        },
        "servers": [{"url": "/"}],
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {
                "MethodNotAllowed": {
                    "description": "The path has no such method",
                    "headers": {
                        "Allow": {
                            "description": "the methods the path has, comma separated",
                            "schema": {"type": "string"},
                        },
                        **CORRELATION,
                    },
                    "content": _json(_ref(models.Error)),
                }
            },
        },
        "security": [{"bearer": []}],
        "paths": paths,
    }
