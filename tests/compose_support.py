"""Reading compose files the way ``docker compose`` does, for tests that run without Docker.

- ``interpolate``: ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?error}``,
  ``${VAR?error}``, ``${VAR:+other}``, ``$VAR`` and ``$$`` in every string value.
- ``merge``: an override file on top of a base file (mappings merged key by key, ``volumes``
  merged by mount target, ``ports`` added, other lists replaced), as ``-f a -f b`` does.
- ``local_command``: a service's command as a local process (``python`` -> this interpreter).

The compose-spec JSON schema (``fixtures/compose_spec.json``) is the official one from the
compose-spec project (Apache-2.0), as shipped in the ``docker-compose`` 1.29.2 wheel at
``compose/config/compose_spec.json``; it predates keys such as top-level ``name`` and
``healthcheck.start_interval``, which the compose file therefore does not use.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = Path(__file__).resolve().parent / "fixtures" / "compose_spec.json"

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


class MissingVariable(Exception):
    """``${VAR:?message}`` with VAR unset: compose refuses the file with the message."""


def _substitute(text: str, env: Mapping[str, str]) -> str:
    def one(match: re.Match) -> str:
        if match.group("escaped"):
            return "$"
        name = match.group("braced") or match.group("named")
        op, arg = match.group("op"), match.group("arg") or ""
        value = env.get(name)
        empty = value is None or (op is not None and op.startswith(":") and value == "")
        if op in (":-", "-"):
            return arg if empty else str(value)
        if op in (":?", "?"):
            if empty:
                raise MissingVariable(f"required variable {name} is missing a value: {arg}")
            return str(value)
        if op in (":+", "+"):
            return "" if empty else arg
        return "" if value is None else str(value)

    return _VARIABLE.sub(one, text)


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return _substitute(value, env)
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    return value


def load(path: Path | str, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    with open(ROOT / path) as handle:
        document = yaml.safe_load(handle)
    return document if env is None else interpolate(document, env)


def _mount_target(volume: Any) -> str:
    if isinstance(volume, dict):
        return str(volume.get("target"))
    parts = str(volume).split(":")
    return parts[1] if len(parts) > 1 else parts[0]


def _merge_service(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        old = merged.get(key)
        if key == "volumes" and isinstance(old, list):
            by_target = {_mount_target(v): v for v in old}
            by_target.update({_mount_target(v): v for v in value})
            merged[key] = list(by_target.values())
        elif key == "ports" and isinstance(old, list):
            merged[key] = old + [p for p in value if p not in old]
        elif isinstance(old, dict) and isinstance(value, dict):
            merged[key] = {**old, **value}
        else:
            merged[key] = value
    return merged


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if key == "services":
            services = dict(base.get("services") or {})
            for name, service in value.items():
                services[name] = _merge_service(services.get(name) or {}, service or {})
            merged[key] = services
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            merged[key] = {**base[key], **value}
        else:
            merged[key] = value
    return merged


def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA.read_text())
    return jsonschema.Draft201909Validator(schema)


def schema_errors(document: dict[str, Any]) -> list[str]:
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
        for error in validator().iter_errors(document)
    ]


def local_command(argv: list[str]) -> list[str]:
    """``python -m x`` -> this interpreter; ``swarm ...`` -> ``python -m cli.main ...``."""
    if argv and argv[0] == "python":
        return [sys.executable, *argv[1:]]
    if argv and argv[0] == "swarm":
        return [sys.executable, "-m", "cli.main", *argv[1:]]
    return list(argv)


def healthcheck_command(service: dict[str, Any]) -> list[str]:
    test = service["healthcheck"]["test"]
    if isinstance(test, str):
        return ["sh", "-c", test]
    kind, *argv = test
    return local_command(argv) if kind == "CMD" else ["sh", "-c", " ".join(argv)]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}
