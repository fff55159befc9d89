"""Writing a KV key by compare-and-set: the one way every bucket write that can race is done
(an agent's inbox, the scheduler's lease, a snapshot).

``compare_and_set(kv, key, value, revision)`` creates the key when ``revision`` is None, else
updates it only at ``revision``; it returns the new revision, or None when another writer came
first. "Another writer came first" has two faces: "wrong last sequence" (nats-py's
``KeyWrongLastSequenceError``; on a cluster also for 10164, another write in flight), and, on a
cluster, ``KeyNotFoundError`` out of ``create``: refused while another create is in flight,
nats-py looks the key up to tell a deleted key from a live one, and finds nothing because that
create is not applied yet. Then it waits ``NOT_YET_PAUSE`` first, so the caller's read again
finds it. Every other error (NATS away) passes through.
"""

from __future__ import annotations

import asyncio

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from services.bus.publish import NOT_YET_PAUSE


async def compare_and_set(kv: KeyValue, key: str, value: bytes, revision: int | None) -> int | None:
    try:
        if revision is None:
            return await kv.create(key, value)
        return await kv.update(key, value, last=revision)
    except KeyWrongLastSequenceError:
        return None
    except KeyNotFoundError:  # only ``create`` raises it: another create in flight (a cluster)
        await asyncio.sleep(NOT_YET_PAUSE)
        return None
