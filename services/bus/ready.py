"""``python -m services.bus.ready <service>``: is that Swarm service ready on this host?

A container health check. Every service heartbeats its readiness into the ``swarm_services``
bucket every two seconds (``services.bus.service``), with the host it runs on; this reads the
bucket and exits 0 when an instance of ``<service>`` on this host (``--any-host``: anywhere) has
said "ready" within the last ``--fresh`` seconds, else 1 with one line saying why.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time
from collections.abc import Iterable

from nats.js.errors import BucketNotFoundError

from schemas.errors import SwarmError
from services.bus import logs
from services.bus.connection import NatsOptions, connect
from services.bus.service import Bus, Readiness, read_readiness

FRESH_FOR = 10.0  # seconds: a heartbeat older than this is a service that is gone
SERVICES = ("gateway", "scheduler", "executor", "chat")
OPTIONAL_SERVICES = ("mcp",)  # Swarm works without them


def fresh(beats: Iterable[Readiness], now: float, within: float = FRESH_FOR) -> list[Readiness]:
    return [b for b in beats if now - b.time <= within]


def local_readiness(
    beats: Iterable[Readiness],
    service: str,
    host: str | None,
    now: float,
    within: float = FRESH_FOR,
) -> tuple[bool, str]:
    """Pure: (ready?, why) for ``service`` on ``host`` (None: any host)."""
    where = f"on {host}" if host else "anywhere"
    mine = [b for b in beats if b.service == service and (host is None or b.host == host)]
    if not mine:
        return False, f"no {service} has announced itself {where} (is it running?)"
    alive = fresh(mine, now, within)
    if not alive:
        newest = max(mine, key=lambda b: b.time)
        return False, (
            f"{service} {where} last heard {now - newest.time:.0f}s ago "
            f"(instance {newest.instance}): it stopped or lost NATS"
        )
    ready = [b for b in alive if b.ready]
    if not ready:
        return False, f"{service} {where} is up but not ready yet (still replaying the log)"
    best = max(ready, key=lambda b: b.seq)
    return (
        True,
        f"{service} ready {where} (instance {best.instance}, pid {best.pid}, seq {best.seq})",
    )


async def check(
    service: str, options: NatsOptions, host: str | None, within: float = FRESH_FOR
) -> tuple[bool, str]:
    nc = await connect(options, name=f"ready-{service}", connect_timeout=2.0, initial_attempts=1)
    bus = Bus(nc)
    try:
        beats = await asyncio.wait_for(read_readiness(bus), 5.0)
    except BucketNotFoundError:
        return False, "no swarm_services bucket: no Swarm service has started on this NATS yet"
    finally:
        await bus.close()
    return local_readiness(beats, service, host, time.time(), within)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.bus.ready", description=__doc__)
    parser.add_argument("service", choices=(*SERVICES, *OPTIONAL_SERVICES))
    parser.add_argument("--nats-url", help="NATS server(s), comma separated (env NATS_URL)")
    parser.add_argument(
        "--any-host", action="store_true", help="an instance anywhere counts, not only here"
    )
    parser.add_argument("--fresh", type=float, default=FRESH_FOR, help="seconds (default 10)")
    args = parser.parse_args(argv)
    logs.configure(f"ready-{args.service}", level="error")
    host = None if args.any_host else socket.gethostname()
    try:
        options = NatsOptions.from_env(args.nats_url)
        ok, why = asyncio.run(check(args.service, options, host, args.fresh))
    except SwarmError as error:
        ok, why = False, error.message
    except Exception as error:  # NATS answered strangely: unhealthy, say what happened
        ok, why = False, f"{type(error).__name__}: {error}"
    print(why, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
