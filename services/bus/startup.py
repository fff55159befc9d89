"""What a service process leaves out when it starts: optional imports of its libraries that it
never uses, which cost a good part of its start-up (a service is ready from a snapshot in about
two seconds; the interpreter and imports are most of that).

- ``rich`` (and through it ``pygments``): structlog's ``dev`` module, which ``import structlog``
  always loads, imports rich when it is installed, for pretty tracebacks on a console. A service
  logs JSON lines; rich is in the test dependencies only, but wherever it is installed it cost
  every service process 0.2-0.4 s.
- ``aiohttp`` for nats-py: nats-py imports it (with ``yarl``, ``multidict``, ``attrs``…) for its
  WebSocket transport only, 0.3-0.6 s of a process that speaks plain NATS (``nats://``,
  ``tls://``). A process that serves HTTP (the gateway) or reaches Daytona imports aiohttp
  itself, which still works: the name is hidden only while nats-py and structlog are imported.
  With a ``ws://`` or ``wss://`` NATS URL nothing is hidden.

``python -m services.<name>`` calls ``lean_imports()`` before anything else imports nats-py or
structlog; code running inside another process (tests, the CLI) imports as usual.
"""

from __future__ import annotations

import os
import sys

HIDDEN_FROM_STRUCTLOG = ("rich",)
HIDDEN_FROM_NATS = ("aiohttp",)


def uses_websocket(nats_url: str | None) -> bool:
    """Whether a NATS URL list (``NATS_URL``, comma separated) names a WebSocket server."""
    return any(
        url.strip().lower().startswith(("ws://", "wss://")) for url in (nats_url or "").split(",")
    )


def hidden_names(argv: list[str], env: dict[str, str] | os._Environ[str]) -> tuple[str, ...]:
    """The optional imports to hide in a service started with ``argv`` and ``env``."""
    urls = [env.get("NATS_URL", "")]
    urls += [arg.partition("=")[2] for arg in argv if arg.startswith("--nats-url=")]
    urls += [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "--nats-url"]
    if any(uses_websocket(url) for url in urls):
        return HIDDEN_FROM_STRUCTLOG
    return HIDDEN_FROM_STRUCTLOG + HIDDEN_FROM_NATS


def lean_imports(argv: list[str] | None = None, *, serves_http: bool = False) -> tuple[str, ...]:
    """Import nats-py and structlog with their unused optional imports hidden (a name set to
    ``None`` in ``sys.modules`` makes ``import name`` raise ImportError, which both libraries
    expect), then unhide them. ``serves_http``: the process imports aiohttp anyway (the
    gateway), so nats-py may have it too. Returns the names that were hidden."""
    hidden = hidden_names(sys.argv[1:] if argv is None else argv, os.environ)
    names = tuple(
        name
        for name in hidden
        if name not in sys.modules and not (serves_http and name in HIDDEN_FROM_NATS)
    )
    for name in names:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        import nats.aio.client  # noqa: F401
        import structlog  # noqa: F401
    finally:
        for name in names:
            if sys.modules.get(name, ...) is None:
                del sys.modules[name]
    return names
