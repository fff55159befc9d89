"""structlog set-up: one JSON object per line on stderr, secrets redacted at the logger.

Redaction works two ways, so no call site has to remember it: values under secret-looking keys
(``token``, ``password``, ``api_key``…) are masked, and the values of known secret environment
variables (``schemas.environment.SECRET_ENV``, the one list of them) are masked wherever they
appear in a line.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import sys
from collections.abc import Iterable, Mapping

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


def configure(service: str, *, level: str | None = None, json: bool = True) -> None:
    """Configure structlog for a process; ``service`` is bound to every line."""
    for secret in known_secrets():
        redactor.add(secret)
    level_name = (level or os.environ.get("SWARM_LOG_LEVEL", "info")).upper()
    renderer = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
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
