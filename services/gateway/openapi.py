"""``GET /openapi.json``: an OpenAPI 3.1 document built from the route table and the pydantic
models the handlers validate with."""

from __future__ import annotations

import re
import typing
from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from services.gateway import models
from services.gateway.routes import ROUTES, Route

REF = "#/components/schemas/{model}"

_REASONS = {
    400: "Bad input; `error.field` names the field at fault",
    401: "Missing or wrong bearer token",
    403: "An agent token used outside its scope (schemas.scopes)",
    404: "Unknown swarm, task, agent or project",
    409: "Not allowed in the current state, or lost a race: read again and retry",
    413: "Body too large",
    503: "NATS unreachable or the gateway still replaying: retry later",
}


def _model_of(response: Any) -> tuple[type[BaseModel] | None, bool]:
    """``Model`` -> (Model, False); ``list[Model]`` -> (Model, True)."""
    if typing.get_origin(response) is list:
        return typing.get_args(response)[0], True
    return response, False


def _all_models() -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = [models.Error]
    for route in ROUTES:
        for candidate in (route.body, _model_of(route.response)[0]):
            if candidate is not None and candidate not in found:
                found.append(candidate)
    return found


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _error_response(code: int) -> dict[str, Any]:
    return {
        "description": _REASONS[code],
        "content": {"application/json": {"schema": _ref(models.Error)}},
    }


def _operation(route: Route) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": route.name,
        "summary": route.summary,
        "tags": [route.tag],
    }
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)}", route.path)
    ]
    parameters += [
        {
            "name": q.name,
            "in": "query",
            "required": False,
            "description": q.description,
            "schema": {"type": q.type},
        }
        for q in route.query
    ]
    if route.body is not None:
        parameters.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "a retried request with the same key has the effect of one",
                "schema": {"type": "string", "maxLength": 200},
            }
        )
        operation["requestBody"] = {
            "required": route.method == "POST" and route.name != "cancel_task",
            "content": {"application/json": {"schema": _ref(route.body)}},
        }
    if parameters:
        operation["parameters"] = parameters
    model, many = _model_of(route.response)
    if route.stream:
        content: dict[str, Any] = {"text/event-stream": {"schema": {"type": "string"}}}
    elif model is not None:
        schema = {"type": "array", "items": _ref(model)} if many else _ref(model)
        content = {"application/json": {"schema": schema}}
    else:
        content = {"application/json": {"schema": {"type": "object"}}}
    responses: dict[str, Any] = {str(route.status): {"description": "OK", "content": content}}
    if route.status == 201:
        responses["200"] = {
            "description": "Already done (same Idempotency-Key)",
            "content": content,
        }
    if route.status == 202:
        responses["200"] = {
            "description": "With wait=1: every agent answered the round",
            "content": content,
        }
    codes = set(route.errors) | {503}
    if route.auth:
        codes.add(401)
    if route.body is not None:
        codes |= {400, 413}
    for code in sorted(codes):
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
            "and verbs) plus task history, output, live event streams and replay.",
        },
        "servers": [{"url": "/"}],
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": paths,
    }
