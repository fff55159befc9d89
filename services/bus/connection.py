"""Connecting to NATS: from ``NATS_URL`` and friends, reconnecting forever once connected.

``Client`` is nats-py's client with less work per message (issue 15: every task is five
publishes and about sixteen deliveries, and nats-py's own handling of each was a fifth of every
service's CPU). It answers exactly as nats-py does; what it changes:

- **The header parser.** nats-py 2.16 checks every header name for whitespace one character at a
  time in a Python generator, and every event delivered from ``SWARM_EVENTS`` carries three
  headers (``Nats-Msg-Id`` and the expected-sequence pair, stored with the message).
  ``Client._parse_header_lines`` gives the same answer (a property test compares them) with one
  regular-expression search per name.
- **Headers left unparsed where nobody reads them.** A subscription marked with
  ``skip_headers`` (the folds: they read the subject, the reply and the data) gets its data
  messages without their headers parsed; status messages (heartbeats, flow control) are parsed
  as before, since nats-py's ordered consumer runs on them.
- **A request's reply goes straight to its waiter.** nats-py puts each reply to a request (a
  publish's ack) on its reply subscription's queue, for a task that then resolves the waiting
  future; here the read loop resolves it, and the request token is a counter, not a NUID plus
  random bytes. The reply, the timeout (``nats.errors.TimeoutError``) and no-responders are as
  nats-py's.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import nats.errors
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext

from schemas.errors import Unavailable

log = structlog.get_logger("bus.connection")

DEFAULT_URL = "nats://127.0.0.1:4222"
_CRLF = b"\r\n"
_DATA_HEADERS = b"NATS/1.0\r\n"  # a message's headers with no status (status: "NATS/1.0 100 …")
_WHITESPACE = re.compile(r"\s")  # for str patterns: exactly the characters ``str.isspace`` takes


def skip_headers(subscription: Subscription) -> None:
    """Deliver ``subscription``'s data messages without their headers parsed (``msg.headers``
    None): for a subscriber that never reads them. A JetStream push subscription is marked on
    the subscription underneath it, which nats-py keeps when an ordered consumer is reset."""
    if isinstance(subscription, JetStreamContext.PushSubscription):
        subscription = subscription._sub
    subscription._swarm_skip_headers = True  # type: ignore[attr-defined]


def _expire(future: asyncio.Future[Msg]) -> None:
    if not future.done():
        future.set_exception(nats.errors.TimeoutError)


class Client(NATS):
    """nats-py's client with less work per message (module doc)."""

    _swarm_tokens = itertools.count(1)
    _swarm_reply_sid = -1

    async def _process_msg(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes
    ) -> None:
        if sid == self._swarm_reply_sid:  # a request's reply: straight to its waiter
            self.stats["in_msgs"] += 1
            self.stats["in_bytes"] += len(data)
            parsed = await self._process_headers(headers)
            msg = self._build_message(sid, subject, reply, data, parsed)
            self._request_reply(msg)
            return
        if headers and headers.startswith(_DATA_HEADERS):
            sub = self._subs.get(sid)
            if sub is not None and getattr(sub, "_swarm_skip_headers", False):
                headers = b""
        await super()._process_msg(sid, subject, reply, data, headers)

    def _request_reply(self, msg: Msg) -> None:
        token = msg.subject[len(self._inbox_prefix) + 22 + 2 :]  # as _request_sub_callback
        future = self._resp_map.get(token)
        if future is not None and not future.done():
            future.set_result(msg)

    async def _init_request_sub(self) -> None:
        await super()._init_request_sub()
        assert self._resp_sub_prefix
        mux = self._resp_sub_prefix.decode() + "*"  # the reply subscription nats-py just made
        self._swarm_reply_sid = next(sid for sid, sub in self._subs.items() if sub.subject == mux)

    async def _request_new_style(
        self,
        subject: str,
        payload: bytes,
        timeout: float = 1,
        headers: dict[str, Any] | None = None,
    ) -> Msg:
        """nats-py's request over the shared reply subscription, with a counter for a token and
        one timer instead of ``asyncio.wait_for``."""
        if self.is_draining_pubs:
            raise nats.errors.ConnectionDrainingError
        if not self._resp_sub_prefix:
            await self._init_request_sub()
        assert self._resp_sub_prefix
        token = f"{next(self._swarm_tokens):x}"
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Msg] = loop.create_future()
        self._resp_map[token] = future
        try:
            await self.publish(
                subject, payload, reply=self._resp_sub_prefix.decode() + token, headers=headers
            )
            timer = loop.call_later(timeout, _expire, future)
            try:
                return await future
            finally:
                timer.cancel()
        finally:
            self._resp_map.pop(token, None)

    @staticmethod
    def _parse_header_lines(raw: bytes) -> dict[str, str]:
        """``Name: Value`` lines to a dict, as ``nats.aio.client.Client._parse_header_lines``:
        lines without a colon, names that are not ASCII or hold whitespace are skipped; values
        are stripped and decoded as UTF-8 (malformed bytes replaced)."""
        out: dict[str, str] = {}
        for line in raw.split(_CRLF):
            if not line:
                continue
            name, sep, value = line.partition(b":")
            if not sep:
                continue
            try:
                key = name.strip().decode("ascii")
            except UnicodeDecodeError:
                continue
            if _WHITESPACE.search(key) is not None:
                continue
            out[key] = value.strip().decode("utf-8", "replace")
        return out


def redact_url(url: str) -> str:
    """``nats://user:secret@host:4222`` -> ``nats://user:***@host:4222`` (for messages and logs)."""
    parts = []
    for one in url.split(","):
        split = urlsplit(one.strip())
        if split.password or (split.username and not split.password):
            user = split.username or ""
            host = split.hostname or ""
            netloc = f"{user}:***@{host}" if split.password else f"***@{host}"
            if split.port:
                netloc += f":{split.port}"
            split = split._replace(netloc=netloc)
        parts.append(urlunsplit(split))
    return ",".join(parts)


@dataclass
class NatsOptions:
    """Where and how to connect. ``from_env`` reads the variables an operator sets."""

    servers: list[str]
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    creds_file: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None

    @classmethod
    def from_env(cls, url: str | None = None, env: dict[str, str] | None = None) -> NatsOptions:
        env = dict(os.environ) if env is None else env
        url = url or env.get("NATS_URL") or DEFAULT_URL
        return cls(
            servers=[s.strip() for s in url.split(",") if s.strip()],
            user=env.get("NATS_USER") or None,
            password=env.get("NATS_PASSWORD") or None,
            token=env.get("NATS_TOKEN") or None,
            creds_file=env.get("NATS_CREDS") or None,
            tls_ca=env.get("NATS_CA") or None,
            tls_cert=env.get("NATS_CERT") or None,
            tls_key=env.get("NATS_KEY") or None,
        )

    @property
    def display(self) -> str:
        return redact_url(",".join(self.servers))

    def tls_context(self) -> ssl.SSLContext | None:
        if not (self.tls_ca or self.tls_cert):
            return None
        context = ssl.create_default_context(cafile=self.tls_ca)
        if self.tls_cert:
            context.load_cert_chain(self.tls_cert, self.tls_key)
        return context


async def connect(
    options: NatsOptions | None = None,
    *,
    name: str = "swarm",
    connect_timeout: float = 2.0,
    initial_attempts: int = 3,
) -> NATS:
    """Connect once (a clear ``Unavailable`` naming the URL if nobody answers), then reconnect
    forever: a service outlives a NATS restart without restarting itself."""
    options = options or NatsOptions.from_env()

    async def on_disconnect() -> None:
        log.warning("nats.disconnected", url=options.display)

    async def on_reconnect() -> None:
        log.info("nats.reconnected", url=options.display)

    async def on_error(error: Exception) -> None:
        log.debug("nats.error", error=str(error), url=options.display)

    kwargs: dict[str, Any] = dict(
        servers=options.servers,
        name=name,
        allow_reconnect=True,
        max_reconnect_attempts=initial_attempts,
        reconnect_time_wait=0.25,
        connect_timeout=connect_timeout,
        # close() drains; a pull subscription whose fetch was cancelled never empties, so bound
        # the wait (nats-py's default is 30 s) or a stopping service outstays its supervisor.
        drain_timeout=2,
        ping_interval=5,
        max_outstanding_pings=3,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
        error_cb=on_error,
    )
    if options.user:
        kwargs["user"] = options.user
        kwargs["password"] = options.password
    if options.token:
        kwargs["token"] = options.token
    if options.creds_file:
        kwargs["user_credentials"] = options.creds_file
    tls = options.tls_context()
    if tls is not None:
        kwargs["tls"] = tls
    nc = Client()
    try:
        await nc.connect(**kwargs)
    except Exception as error:  # NoServersError, OSError, auth errors...
        raise Unavailable(
            f"cannot reach NATS at {options.display}: {type(error).__name__}: {error}. "
            "Start it (swarm up starts one) or set NATS_URL to a running server."
        ) from error
    # nats-py keeps retrying the first connect forever when told to reconnect forever, so the
    # first connect gets a few attempts and only an established connection never gives up.
    nc.options["max_reconnect_attempts"] = -1
    return nc
