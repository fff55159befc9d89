"""structlog set-up: one JSON object per line on stderr, secrets redacted at the logger.

Redaction works two ways, so no call site has to remember it: values under secret-looking keys
(``token``, ``password``, ``api_key``…) are masked, and the values of known secret environment
variables (``schemas.environment.SECRET_ENV``, the one list of them) are masked wherever they
appear in a line.

Each line costs what it must (issue 15: the executor's one line per attempt was 5 % of its CPU):
the timestamp keeps the formatted second and adds the microseconds (``utc_stamp``), and the line
is encoded by msgspec (``render_json``), not ``json.dumps``; both say exactly what structlog's
``TimeStamper(fmt="iso", utc=True)`` and ``JSONRenderer`` said (a property test compares them).
"""

from __future__ import annotations

import functools
import logging
import os
import re
import sys
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec
import structlog
from structlog.typing import EventDict, WrappedLogger

from schemas.environment import secret_values

_SECRET_KEY = re.compile(r"(token|password|secret|api_key|apikey|authorization|credential)", re.I)
MASK = "***"


@functools.lru_cache(maxsize=4096)
def _secret_key(key: str) -> bool:
    """Whether values under ``key`` are masked (the same few keys on every line: looked up)."""
    return _SECRET_KEY.search(key) is not None


def known_secrets(env: Mapping[str, str] | None = None) -> list[str]:
    """The values of the secret variables (``schemas.environment.SECRET_ENV``) set in ``env``."""
    return secret_values(os.environ if env is None else env)


def scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, MASK)
    return text


class Redactor:
    """A structlog processor masking secrets in every event dict."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = [s for s in secrets if s]

    def add(self, secret: str) -> None:
        if secret and len(secret) >= 6 and secret not in self.secrets:
            self.secrets.append(secret)

    def _clean(self, value: object) -> object:
        if isinstance(value, str):
            return scrub(value, self.secrets)
        if isinstance(value, dict):
            return self._clean_mapping(value)
        if isinstance(value, list | tuple):
            return [self._clean(v) for v in value]
        return value

    def _clean_mapping(self, value: Mapping[str, object]) -> dict[str, object]:
        out: dict[str, object] = {}
        for k, v in value.items():
            if v and _secret_key(k if type(k) is str else str(k)):
                out[k] = MASK
            elif type(v) is str:  # most values: one look per known secret
                out[k] = scrub(v, self.secrets)
            elif isinstance(v, int | float) or v is None:
                out[k] = v
            else:
                out[k] = self._clean(v)
        return out

    def __call__(self, logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
        return self._clean_mapping(event_dict)


redactor = Redactor()


def iso_utc(now: float) -> str:
    """``now`` (epoch seconds) as structlog's ISO stamp says it: ``2026-12-02T18:47:28.123456Z``
    (no fraction when the microseconds are 0). The formatted second is kept between calls."""
    whole = int(now)
    micro = round((now - whole) * 1_000_000)
    if micro >= 1_000_000:  # rounding up into the next second
        whole, micro = whole + 1, micro - 1_000_000
    if whole != _second[0]:
        _second[0] = whole
        _second[1] = datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{_second[1]}.{micro:06d}Z" if micro else f"{_second[1]}Z"


_second: list[Any] = [None, ""]


def utc_stamp(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    """``timestamp``: the time of the line, as ``TimeStamper(fmt="iso", utc=True)`` writes it."""
    event_dict["timestamp"] = iso_utc(time.time())
    return event_dict


def _fallback(value: object) -> object:
    """What structlog's JSON renderer writes for a value JSON has no form for."""
    try:
        return value.__structlog__()  # type: ignore[attr-defined]
    except AttributeError:
        return repr(value)


_encode = msgspec.json.Encoder(enc_hook=_fallback).encode


def render_json(logger: WrappedLogger, method: str, event_dict: EventDict) -> str:
    """The line as JSON (structlog's ``JSONRenderer``, encoded by msgspec). Characters outside
    ASCII are written as UTF-8 rather than ``\\u`` escapes: the same JSON to any reader."""
    try:
        return _encode(event_dict).decode()
    except (TypeError, ValueError, OverflowError):  # keys JSON cannot hold, huge ints, NaN
        return structlog.processors.JSONRenderer()(logger, method, event_dict)  # type: ignore[return-value]


def configure(service: str, *, level: str | None = None, json: bool = True) -> None:
    """Configure structlog for a process; ``service`` is bound to every line."""
    for secret in known_secrets():
        redactor.add(secret)
    level_name = (level or os.environ.get("SWARM_LOG_LEVEL", "info")).upper()
    renderer = render_json if json else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            utc_stamp if json else structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redactor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            getattr(logging, level_name, logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.bind_contextvars(service=service)
