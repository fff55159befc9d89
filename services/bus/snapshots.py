"""Snapshots of the fold in a KV bucket, tagged with the last log sequence they include.

A service starts from the newest snapshot and replays only the tail. A snapshot is the board
(which carries its own ``seq``) as msgpack (msgspec), zlib-compressed. The key names the fold's
schema version, so a new fold never starts from an old fold's board.

The KV value is ``<seq>\n`` then either the board or, for a board too large for one NATS
message, ``object:<name>``: the board is then in the ``swarm_boards`` object store (chunked, any
size), and the KV entry still says which sequence it includes. The board's bytes are
``msgpack4:`` then the compressed msgpack, in which each swarm's tasks are
``[swarm, {id: handle, record or None}, {id: live task}, counts, tokens, chunks, chunk sizes,
created sequences]`` (``schemas.board.Tasks``): a settled finished task is *sealed* in a chunk, a
run of records compressed together, carried as it is (a msgpack ``bin``), and its entry is a
handle into it (an int); the created sequences (int64s, one per task in order) rebuild the order
task listings page through (``CreatedOrder``) without reading a record. Decoding a long history
therefore builds an index (id -> handle), not a record per finished task; a chunk is inflated
only when one of its tasks is read. Saving seals the records frozen since the last save.
Earlier forms are still read, and replaced by the next snapshot a service saves: ``msgpack3:``
(no created sequences: each chunk is inflated once to read them), ``msgpack2:`` (each frozen
task its record, no chunks), ``msgpack:`` (every task in full) and no prefix (compressed JSON);
their settled tasks are frozen as they are decoded. A process of an earlier version reads a
``msgpack4:`` snapshot as unreadable and replays the log instead.

Saving copies the board on the event loop (``Capture``: the versions, each swarm's task index
and lists, every other field encoded at once; ~10-20 ms at 250k tasks) and seals, encodes and
compresses the copy in a thread while the fold goes on (``prepare``), so the snapshot is the fold
at the sequence it was copied at; the board then adopts the chunks sealed. Before, encoding the
live board on the loop paused a service for ~0.3 s at 250k tasks at every save.

Why msgpack: on a board of 100k tasks encoding it took 5x longer as JSON, and the bytes to move
and inflate are a quarter smaller. Decoding a large board allocates millions of objects; the
cyclic garbage collector, left on, would walk the growing heap again and again (6x the decode
time), so it is paused for the decode.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import hashlib
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from itertools import islice
from typing import Any

import msgspec
import structlog
from nats.js import JetStreamContext, api
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue
from nats.js.object_store import OBJ_CHUNKS_PRE_TEMPLATE, OBJ_STREAM_TEMPLATE

from schemas import subjects
from schemas.board import (
    Board,
    Sealed,
    SwarmView,
    Tasks,
    TasksCopy,
    tasks_dec_hook,
    tasks_enc_hook,
)
from schemas.events import SCHEMA_VERSION
from services.bus.compare_and_set import compare_and_set

log = structlog.get_logger("bus.snapshots")

_encoder = msgspec.msgpack.Encoder(enc_hook=tasks_enc_hook)
_decoder = msgspec.msgpack.Decoder(Board, dec_hook=tasks_dec_hook)  # the earlier msgpack forms
_TASK_VERSION = "/task/"  # in a ``Board.versions`` key of a task: ``<swarm>/task/<id>``
_json_decoder = msgspec.json.Decoder(Board, dec_hook=tasks_dec_hook)  # the earliest form
LEVEL = 3  # zlib's: a snapshot's bytes
CHUNKED = b"msgpack4:"  # msgpack, finished tasks sealed in chunks (``schemas.board.Tasks``)
NO_ORDER = b"msgpack3:"  # the same without the tasks' created sequences (an earlier form)
RECORDS = b"msgpack2:"  # msgpack, each finished task its record (an earlier form)
MSGPACK = b"msgpack:"  # msgpack, every task in full (an earlier form)


def key_for(scope: str) -> str:
    return f"board.v{SCHEMA_VERSION}.{scope}"


def pack(board: Board) -> bytes:
    """``<seq>\n`` then the board: the sequence can be read without unpacking the board (every
    process asks "is mine newer?" before writing). Seals the board's frozen records first."""
    for view in board.swarms.values():
        view.tasks.seal()
    return b"%d\n" % board.seq + compress(encode(board))


async def prepare(board: Board) -> tuple[int, bytes]:
    """What ``Snapshots.save`` stores of ``board``: the sequence it includes, and its bytes
    (``compress``'s). The board is copied on the event loop (``Capture``: ~10 ms at 250k tasks),
    then the copy is sealed, encoded and compressed in a thread while the fold goes on; the
    chunks sealed are adopted by the board after (a task thawed or frozen again meanwhile is
    left as it is), one chunk at a time, the loop free between two."""
    capture = Capture(board)
    body, sealed = await asyncio.to_thread(capture.stored)
    for tasks, chunks in sealed:
        for chunk in chunks:
            tasks.adopt([chunk])
            await asyncio.sleep(0)  # ~0.5 ms each: 250 of them after a replay of 250k tasks
    return capture.seq, body


class Capture:
    """``board`` as it is now, in what a snapshot stores (``encode``), apart from the board: the
    versions and each swarm's tasks (``TasksCopy``) are copied, every other field of the board
    and of its swarms (agents, projects, ... which the fold changes in place) is encoded at
    once (small). What is made of it later (``pieces``, ``encode``, ``stored``) reads nothing of
    the board, so it may run in a thread while the fold goes on: the snapshot is exactly the
    fold at ``seq``."""

    def __init__(self, board: Board) -> None:
        self.seq = board.seq
        self.tasks = [(view.tasks, view.tasks.copy()) for view in board.swarms.values()]
        self._board = _fields_now(board, "swarms", "versions")
        self._swarms = [
            (swarm_id, _fields_now(view, "tasks")) for swarm_id, view in board.swarms.items()
        ]
        self._versions = dict(board.versions)

    def pieces(self) -> Iterator[bytes | memoryview]:
        """The board as msgpack, before compression, a piece at a time: ``[board, {task key:
        version}]``, the board holding the versions of everything but tasks (so a fold without
        tasks skips theirs). The pieces are what msgspec writes for the whole (``encode``), but
        none large: msgspec holds the GIL while it encodes, so in a thread one call over the
        board (~30 ms at 250k tasks) was as long a pause for the event loop, and the pieces are
        compressed as they come instead of joined into one buffer first (~17 MB)."""
        versions = self._versions
        others = {k: v for k, v in versions.items() if _TASK_VERSION not in k}
        of_tasks = {k: v for k, v in versions.items() if _TASK_VERSION in k}
        yield _array_header(2)
        yield from _struct_pieces(
            self._board, swarms=self._swarm_pieces(), versions=_map_pieces(others)
        )
        yield from _map_pieces(of_tasks)

    def _swarm_pieces(self) -> Iterator[bytes | memoryview]:
        yield _map_header(len(self._swarms))
        for (swarm_id, fields), (_, copy) in zip(self._swarms, self.tasks, strict=True):
            yield _encoder.encode(swarm_id)
            yield from _struct_pieces(fields, tasks=_tasks_pieces(copy))

    def encode(self) -> bytes:
        """The board as msgpack, before compression (``pieces``, joined)."""
        return b"".join(self.pieces())

    def stored(self) -> tuple[bytes, list[tuple[Tasks, Sealed]]]:
        """The copy's records in memory sealed (``TasksCopy.seal``), then its ``pieces``
        compressed (``compress``'s form): the snapshot's bytes as stored, and the chunks made,
        each with the tasks it is for (for ``Tasks.adopt``, on the event loop)."""
        sealed = [(tasks, copy.seal()) for tasks, copy in self.tasks]
        compressor = zlib.compressobj(LEVEL)
        body = [CHUNKED, *(compressor.compress(piece) for piece in self.pieces())]
        body.append(compressor.flush())
        return b"".join(body), [(tasks, chunks) for tasks, chunks in sealed if chunks]


Fields = list[tuple[str, str, bytes | None]]  # a Struct's: name, encoded name, value or None
MAP_SLICE = 16_384  # entries of a large map encoded in one call (about 1 ms each)


def _fields_now(struct: msgspec.Struct, *apart: str) -> Fields:
    """Each field of ``struct`` in order, its value encoded as it is now (a later change in
    place does not reach it), but those ``apart`` (written by the caller). A field added to the
    board is thus copied too, whatever it holds."""
    return [
        (name, encoded, None if name in apart else _encoder.encode(getattr(struct, name)))
        for name, encoded in zip(
            struct.__struct_fields__, struct.__struct_encode_fields__, strict=True
        )
    ]


def _struct_pieces(
    fields: Fields, **apart: Iterator[bytes | memoryview]
) -> Iterator[bytes | memoryview]:
    """A Struct as msgspec writes it (a map of every field, in order), from ``_fields_now``
    and the pieces of each field ``apart``."""
    yield _map_header(len(fields))
    for name, encoded, value in fields:
        yield _encoder.encode(encoded)
        if value is None:
            yield from apart[name]
        else:
            yield value


def _tasks_pieces(copy: TasksCopy) -> Iterator[bytes | memoryview]:
    """A swarm's tasks (``TasksCopy.to_wire``), the entry of every task a slice at a time."""
    wire = copy.to_wire()
    yield _array_header(len(wire))
    for index, item in enumerate(wire):
        if index == 1:  # {id: handle, record or None}: one entry a task
            yield from _map_pieces(item)
        else:
            yield _encoder.encode(item)


def _map_pieces(mapping: dict[str, Any]) -> Iterator[bytes | memoryview]:
    """``mapping`` as msgpack, ``MAP_SLICE`` entries at a time (each slice encoded as a map of
    its own, its header left out)."""
    items = iter(mapping.items())
    yield _map_header(len(mapping))
    while part := dict(islice(items, MAP_SLICE)):
        yield memoryview(_encoder.encode(part))[len(_map_header(len(part))) :]


def _map_header(size: int) -> bytes:
    """What msgpack writes before a map's ``size`` entries."""
    if size < 16:
        return bytes((0x80 | size,))
    if size < 1 << 16:
        return b"\xde" + size.to_bytes(2, "big")
    return b"\xdf" + size.to_bytes(4, "big")


def _array_header(size: int) -> bytes:
    """What msgpack writes before an array's ``size`` items (a few here)."""
    if size >= 16:
        raise ValueError("only short arrays here")
    return bytes((0x90 | size,))


def encode(board: Board) -> bytes:
    """The board as msgpack, before compression (``Capture.pieces``)."""
    return Capture(board).encode()


@cache
def _chunked_decoder(tasks: bool) -> msgspec.msgpack.Decoder[Any]:
    """The ``msgpack4:`` (and ``msgpack3:``) form's decoder; without ``tasks``: every swarm's
    tasks and the tasks' versions skipped (not built; ``_without_tasks``)."""
    if tasks:
        return msgspec.msgpack.Decoder(tuple[Board, dict[str, int]], dec_hook=tasks_dec_hook)
    lean: Any = _without_tasks()
    return msgspec.msgpack.Decoder(tuple[lean, msgspec.Raw])


@cache
def _without_tasks() -> type[msgspec.Struct]:
    """``Board`` with each swarm's ``tasks`` left out (generated from the two Structs' fields, so
    a field added to either is read here too)."""

    def fields(cls: type[msgspec.Struct], skip: str) -> list[Any]:
        found: list[Any] = []
        for info in msgspec.structs.fields(cls):
            if info.name == skip:
                continue
            if info.default is not msgspec.NODEFAULT:
                found.append((info.name, info.type, info.default))
            elif info.default_factory is not msgspec.NODEFAULT:
                found.append(
                    (info.name, info.type, msgspec.field(default_factory=info.default_factory))
                )
            else:
                found.append((info.name, info.type))
        return found

    swarm: Any = msgspec.defstruct("SwarmWithoutTasks", fields(SwarmView, "tasks"), kw_only=True)
    swarms: Any = ("swarms", dict[str, swarm], msgspec.field(default_factory=dict))
    return msgspec.defstruct("BoardWithoutTasks", [swarms, *fields(Board, "swarms")], kw_only=True)


def _decode_chunked(raw: bytes | memoryview, tasks: bool) -> Board:
    if tasks:
        board: Board
        of_tasks: dict[str, int]
        board, of_tasks = _chunked_decoder(True).decode(raw)
        of_tasks.update(board.versions)
        board.versions = of_tasks
        return board
    lean, _ = _chunked_decoder(False).decode(raw)
    fields = msgspec.structs.asdict(lean)
    fields["swarms"] = {
        swarm_id: SwarmView(**msgspec.structs.asdict(view))
        for swarm_id, view in lean.swarms.items()
    }
    return Board(**fields)


def compress(raw: bytes) -> bytes:
    """The board's encoded bytes as stored: the format's prefix, then zlib."""
    return CHUNKED + zlib.compress(raw, LEVEL)


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection meanwhile (restored as it was): for building a large tree
    of new objects that cannot hold a cycle."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def packed_seq(data: bytes) -> int:
    head, newline, _ = data.partition(b"\n")
    return int(head) if newline and head.isdigit() else 0


def unpack(data: bytes, *, tasks: bool = True) -> Board:
    """The board in a KV value (``<seq>\n<body>``): msgpack, or the earlier JSON form."""
    return unpack_body(data.partition(b"\n")[2], tasks=tasks)


def unpack_body(body: bytes, *, tasks: bool = True) -> Board:
    """The board in a snapshot's bytes. Without ``tasks`` (for a fold of other aggregates only),
    a ``msgpack4:`` or ``msgpack3:`` board is read without its swarms' tasks and their versions
    (an earlier form is read whole)."""
    with collector_paused():
        for prefix in (CHUNKED, NO_ORDER):
            if body.startswith(prefix):
                return _decode_chunked(zlib.decompress(memoryview(body)[len(prefix) :]), tasks)
        for prefix in (RECORDS, MSGPACK):
            if body.startswith(prefix):
                return _decoder.decode(zlib.decompress(memoryview(body)[len(prefix) :]))
        return _json_decoder.decode(zlib.decompress(body))


def object_name(data: bytes) -> str | None:
    """The object-store name a KV value points to, if the board is stored there."""
    _, _, body = data.partition(b"\n")
    return body[len(OBJECT) :].decode() if body.startswith(OBJECT) else None


OBJECT = b"object:"
READ_TIMEOUT = 5.0  # seconds for the chunks of a stored board to arrive
READ_CONSUMER_LINGER = 2.0  # seconds before the server drops a read's consumer by itself
INLINE_LIMIT = 256 * 1024  # larger boards go to the object store (NATS's default max is 1 MiB)


class Snapshots:
    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        self._kv: KeyValue | None = None

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            self._kv = await self._js.key_value(subjects.SNAPSHOTS_BUCKET)
        return self._kv

    async def load(self, scope: str, *, tasks: bool = True) -> Board | None:
        """The newest snapshot of ``scope`` (None: none, or unreadable). Without ``tasks``: its
        swarms' tasks and their versions left out (``unpack_body``)."""
        kv = await self._bucket()
        try:
            entry = await kv.get(key_for(scope))
        except KeyNotFoundError:
            return None
        if not entry.value:
            return None
        try:
            name = object_name(entry.value)
            if name is None:
                return unpack(entry.value, tasks=tasks)
            return unpack_body(await self.read_object(name), tasks=tasks)
        except Exception as error:  # unreadable or gone: replay from the start instead
            log.warning("snapshot.unreadable", scope=scope, error=str(error))
            return None

    async def read_object(self, name: str) -> bytes:
        """An object of the ``swarm_boards`` store: its chunks fetched through a pull consumer,
        checked against the object's size and SHA-256. nats-py's ``ObjectStore.get`` reads them
        through an ordered push consumer, which took ~0.3 s for a 3 MB board (26 chunks of 128
        KiB) with the client's CPU idle; a fetch of all of them takes ~25 ms."""
        store = await self._js.object_store(subjects.SNAPSHOT_STORE)
        info = await store.get_info(name)
        if not info.nuid or info.chunks is None or info.size is None:
            raise ValueError(f"object {name} has no chunks recorded")
        if not info.size:
            return b""
        bucket = subjects.SNAPSHOT_STORE
        sub = await self._js.pull_subscribe(
            OBJ_CHUNKS_PRE_TEMPLATE.format(bucket=bucket, obj=info.nuid),
            stream=OBJ_STREAM_TEMPLATE.format(bucket=bucket),
            config=api.ConsumerConfig(
                ack_policy=api.AckPolicy.NONE,
                deliver_policy=api.DeliverPolicy.ALL,
                inactive_threshold=READ_CONSUMER_LINGER,  # gone by itself once read
                mem_storage=True,
            ),
        )
        parts: list[bytes] = []
        try:
            while len(parts) < info.chunks:
                fetched = await sub.fetch(info.chunks - len(parts), timeout=READ_TIMEOUT)
                parts += [msg.data for msg in fetched]
        finally:
            await sub.unsubscribe()
        data = b"".join(parts)
        stored = (info.digest or "").partition("=")[2]  # "SHA-256=<urlsafe base64>"
        digest = base64.urlsafe_b64decode(stored + "=" * (-len(stored) % 4))
        if len(data) != info.size or hashlib.sha256(data).digest() != digest:
            raise ValueError(f"object {name}: {len(data)} bytes that do not match its digest")
        return data

    async def save(
        self, scope: str, board: Board, *, min_gain: int = 1, inline_limit: int = INLINE_LIMIT
    ) -> bool:
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
        seq, body = await prepare(board)
        data = b"%d\n" % seq + body
        placed = None
        try:
            if len(data) > inline_limit:
                placed = f"{key}.{seq}"
                store = await self._js.object_store(subjects.SNAPSHOT_STORE)
                await store.put(placed, data.partition(b"\n")[2])
                data = b"%d\n" % seq + OBJECT + placed.encode()
            last = current.revision if current is not None else None
            written = await compare_and_set(kv, key, data, last)
        except Exception as error:  # NATS away: keep replaying meanwhile
            log.warning("snapshot.not_saved", scope=scope, seq=seq, error=str(error))
            written = None
        if written is None:  # or lost a race
            await self._forget(placed)
            return False
        if current is not None and current.value:
            await self._forget(object_name(current.value))  # the one this replaces
        log.info("snapshot.saved", scope=scope, seq=seq, bytes=len(data), object=placed)
        return True

    async def _forget(self, name: str | None) -> None:
        if name is None:
            return
        try:
            await (await self._js.object_store(subjects.SNAPSHOT_STORE)).delete(name)
        except Exception as error:
            log.debug("snapshot.object_not_deleted", name=name, error=str(error))
