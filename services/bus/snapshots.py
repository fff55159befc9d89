"""Snapshots of the fold in a KV bucket, tagged with the last log sequence they include.

A service starts from the newest snapshot and replays only the tail. A snapshot is the board
(which carries its own ``seq``) as msgspec JSON, zlib-compressed. The key names the fold's schema
version, so a new fold never starts from an old fold's board.
"""

from __future__ import annotations

import zlib

import msgspec
import structlog
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from schemas import subjects
from schemas.board import Board
from schemas.events import SCHEMA_VERSION

log = structlog.get_logger("bus.snapshots")

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Board)


def key_for(scope: str) -> str:
    return f"board.v{SCHEMA_VERSION}.{scope}"


def pack(board: Board) -> bytes:
    """``<seq>\n`` then the board, zlib-compressed: the sequence can be read without
    unpacking the board (every process asks "is mine newer?" before writing)."""
    return b"%d\n" % board.seq + zlib.compress(_encoder.encode(board), 3)


def packed_seq(data: bytes) -> int:
    head, newline, _ = data.partition(b"\n")
    return int(head) if newline and head.isdigit() else 0


def unpack(data: bytes) -> Board:
    _, _, body = data.partition(b"\n")
    return _decoder.decode(zlib.decompress(body))


class Snapshots:
    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        self._kv: KeyValue | None = None

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            self._kv = await self._js.key_value(subjects.SNAPSHOTS_BUCKET)
        return self._kv

    async def load(self, scope: str) -> Board | None:
        kv = await self._bucket()
        try:
            entry = await kv.get(key_for(scope))
        except KeyNotFoundError:
            return None
        if not entry.value:
            return None
        try:
            return unpack(entry.value)
        except (zlib.error, msgspec.DecodeError) as error:
            log.warning("snapshot.unreadable", scope=scope, error=str(error))
            return None

    async def save(self, scope: str, board: Board, *, min_gain: int = 1) -> bool:
        """Store ``board`` unless the snapshot already there is less than ``min_gain`` events
        older (so several processes folding the same log don't all write one). Returns whether
        this one was stored."""
        kv = await self._bucket()
        key = key_for(scope)
        try:
            current = await kv.get(key)
        except KeyNotFoundError:
            current = None
        stored = packed_seq(current.value) if current is not None and current.value else 0
        if current is not None and stored + max(min_gain, 1) > board.seq:
            return False
        data = pack(board)
        try:
            if current is None:
                await kv.create(key, data)
            else:
                await kv.update(key, data, last=current.revision)
        except KeyWrongLastSequenceError:  # another process wrote one meanwhile
            return False
        except Exception as error:  # too large for the server, NATS away: keep replaying
            log.warning("snapshot.not_saved", scope=scope, seq=board.seq, error=str(error))
            return False
        log.info("snapshot.saved", scope=scope, seq=board.seq, bytes=len(data))
        return True
