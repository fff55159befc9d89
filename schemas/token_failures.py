"""Wrong tokens per client address, and when an address must wait: the answer to someone
guessing the API token, at the gateway and at the MCP server (each process counts its own).

Every wrong token counts, whichever way it came: the board's sign-in form and a wrong
``Authorization: Bearer`` on the API or the MCP endpoint (the same secret; limiting only one way
in would send a guesser to another). An address that gave ``Limits.failures`` wrong tokens within
``Limits.window`` seconds is refused every further attempt, right or wrong, for ``window``
seconds from the last one (answering a right token would tell the guesser which guess was
right). Requests without a token (or with a board session) are not attempts and are never
refused here; other addresses are never affected.

An address is the peer's IP address; an IPv6 one counts as its /64 (one host usually holds a
whole /64, so per address would be no limit there). Memory is bounded: an entry lives for one
window, and at most ``Limits.addresses`` are tracked (the oldest go first).

Pure: no clock (``now`` is given, monotonic seconds), no I/O.
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict
from dataclasses import dataclass

from schemas.errors import Invalid, TooManyRequests

FAILURES = 5  # wrong tokens one address may give per window (SWARM_AUTH_FAILURES; 0: no limit)
WINDOW = 300.0  # seconds (SWARM_AUTH_WINDOW)
ADDRESSES = 10_000  # addresses tracked at most (SWARM_AUTH_ADDRESSES)


@dataclass(frozen=True)
class Limits:
    failures: int = FAILURES
    window: float = WINDOW
    addresses: int = ADDRESSES

    def __post_init__(self) -> None:
        if self.failures < 0:
            raise Invalid("SWARM_AUTH_FAILURES", "SWARM_AUTH_FAILURES must be 0 (off) or more")
        if not self.window > 0:
            raise Invalid("SWARM_AUTH_WINDOW", "SWARM_AUTH_WINDOW must be more than 0 seconds")
        if self.addresses < 1:
            raise Invalid("SWARM_AUTH_ADDRESSES", "SWARM_AUTH_ADDRESSES must be 1 or more")


def client_key(address: str | None) -> str:
    """What failures are counted under: the IPv4 address (also when IPv4-mapped), the /64 of an
    IPv6 one, anything else (a Unix socket: no address) as given."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return address or ""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@dataclass(slots=True)
class _Entry:
    count: int
    until: float  # when the entry is forgotten (and, once count reached the limit, the wait ends)


class TokenFailures:
    """The wrong tokens of each address in the current window. Entries are kept in the order they
    expire (each new ``until`` is ``now + window``, the latest yet), so the expired ones are always
    at the front."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def retry_after(self, key: str, now: float) -> int | None:
        """Whole seconds ``key`` must wait before its next attempt; None: it may try now."""
        entry = self._entries.get(key)
        if entry is None or not self.limits.failures or entry.count < self.limits.failures:
            return None
        if entry.until <= now:
            return None
        return max(1, math.ceil(entry.until - now))

    def refusal(self, key: str, now: float) -> TooManyRequests | None:
        """The answer to an attempt from ``key`` while it must wait (None: it may try now), with
        the seconds to wait for ``Retry-After``."""
        wait = self.retry_after(key, now)
        if wait is None:
            return None
        return TooManyRequests(
            f"too many wrong tokens from this address: try again in {wait} s", wait
        )

    def failed(self, key: str, now: float) -> bool:
        """Count a wrong token from ``key``; True when it made ``key`` wait (the limit reached)."""
        if not self.limits.failures:
            return False
        self._forget_expired(now)
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry(0, now + self.limits.window)
            while len(self._entries) > self.limits.addresses:
                self._entries.popitem(last=False)
        entry.count += 1
        if entry.count < self.limits.failures:
            return False
        entry.until = now + self.limits.window  # the wait: a whole window from this failure
        self._entries.move_to_end(key)
        return entry.count == self.limits.failures

    def _forget_expired(self, now: float) -> None:
        while self._entries:
            key, entry = next(iter(self._entries.items()))
            if entry.until > now:
                return
            del self._entries[key]
