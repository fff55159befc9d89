"""The board: the folded state every service reads. msgspec Structs, so two boards compare with
``==``; a swarm's tasks are a ``Tasks`` mapping, which keeps each settled finished task as a
compact encoded record (decoded on read) rather than as live objects: a long history costs a few
hundred bytes a task, and a snapshot decodes without building a view of every task."""

from __future__ import annotations

import sys
import zlib
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator, KeysView, Mapping, MutableMapping, ValuesView
from functools import cache
from heapq import heapify, heappop, merge
from itertools import islice
from operator import itemgetter
from types import UnionType
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, overload

import msgspec

from schemas.events import (
    AttemptBudgets,
    ClaudeTaskSettings,
    IntegrationMode,
    LandingProblem,
    MergeStrategy,
    OnConflict,
    Priority,
    RunOutcome,
    Runtime,
    Trigger,
    Usage,
)

TaskStatus = Literal[
    "blocked", "pending", "claimed", "running", "completed", "failed", "requeued", "cancelled"
]
AgentStatus = Literal["idle", "working", "lost"]
CheckoutState = Literal["pending", "synced", "sync_failed"]
IntegrationState = Literal[
    "working", "unchanged", "pushed", "landing", "landed", "conflict", "verify_failed", "failed"
]

CLAIMABLE: frozenset[str] = frozenset({"pending", "requeued"})
ACTIVE: frozenset[str] = frozenset({"claimed", "running"})
FINISHED: frozenset[str] = frozenset({"completed", "failed", "cancelled"})
EDITABLE: frozenset[str] = frozenset({"blocked", "pending", "requeued"})

PRIORITY_RANK: dict[str, int] = {"critical": 0, "high": 1, "medium": 2, "low": 3}
LANDED_KEPT = 200  # a project remembers this many of its last landed tasks (the log has all)


class Integration(msgspec.Struct, kw_only=True):
    """A task's work in git. ``state``: ``working`` (the run is on ``branch``, cut from
    ``base``), ``unchanged`` (it ended with nothing to land), ``pushed`` (its branch is on the
    remote; nothing lands: mode ``branch``, or the run failed), ``landing`` (an integration onto
    ``onto`` is due), ``landed`` (at ``landed``), ``conflict`` (in ``files``), ``verify_failed``
    (``output``: the command's last output) or ``failed`` (``output``: why). ``resolver``: the
    task making it land after a conflict or a red verify; ``resolved_by``: the one that did."""

    project: str
    branch: str
    base: str | None = None
    head: str | None = None
    state: IntegrationState = "working"
    onto: str | None = None
    landed: str | None = None
    problem: LandingProblem | None = None
    tip: str | None = None
    files: list[str] = []
    output: str = ""
    resolve: bool = False
    resolver: str | None = None
    resolved_by: str | None = None
    tries: int = 0
    seconds: float | None = None
    at: float | None = None


class TaskView(msgspec.Struct, kw_only=True):
    swarm: str
    id: str
    title: str
    prompt: str
    description: str = ""
    tags: list[str] = []
    priority: Priority = "medium"
    depends: list[str] = []
    runtime: Runtime = "claude"
    timeout: float | None = None
    triggers: list[Trigger] = []
    parent: str | None = None
    parent_attempt: int | None = None  # an agent's follow-up: the parent's attempt that made it
    resolves: str | None = None  # the task whose work this one makes land
    correlation_id: str | None = None  # of the request that created it: its events carry it
    status: TaskStatus = "pending"
    attempt: int = 1  # the attempt now claimed or running, or the next one to claim
    # what its attempts came to so far, each kind against its own budget (``schemas.attempts``)
    runs: int = 0  # runs started (``running`` events)
    claims_lost: int = 0  # claims lost with their agent before the run started
    runs_stopped: int = 0  # runs their executor stopped on purpose and gave back
    runs_lost: int = 0  # runs lost with their agent, executor or sandbox
    runs_failed: int = 0  # runs that failed on their own
    budgets: AttemptBudgets | None = None  # as its current claim carries them (executor's)
    agent: str | None = None
    reason: str | None = None  # why it failed, was cancelled or requeued
    outcome: RunOutcome | None = None
    retry_at: float = 0.0
    created_at: float = 0.0
    updated_at: float = 0.0
    claimed_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    created_seq: int = 0  # log position of ``created``: the age order among equal times
    claude: ClaudeTaskSettings | None = None  # the task's own settings for its claude runs
    cost_usd: float = 0.0  # what its recorded attempts cost together
    usage: Usage = msgspec.field(default_factory=Usage)  # the tokens they used together
    cancelled_by: str | None = None  # the actor of its ``task.cancelled``: who cancelled it
    session_id: str | None = None  # the claude session of its latest attempt
    session_agent: str | None = None  # whose sandbox holds that session
    integration: Integration | None = None  # its work in git (None: no project, or mode off)


class AgentView(msgspec.Struct, kw_only=True):
    swarm: str
    id: str
    name: str
    role: str = ""
    skills: list[str] = []
    sandbox_id: str | None = None
    executor: str | None = None
    backend: str = "local"
    labels: list[str] = []  # placement: only executors with all these labels host it
    status: AgentStatus = "idle"
    task: str | None = None
    read_through: int = 0  # chat sequence of the last mention put in one of its prompts
    spent_usd: float = 0.0  # what its recorded runs cost together
    registered_at: float = 0.0
    updated_at: float = 0.0


class Checkout(msgspec.Struct, kw_only=True):
    """One agent's copy of the project, as last reported: by its last init/sync answer, then by
    the events of its tasks (``branch``/``commit``: where it is now)."""

    state: CheckoutState = "pending"
    round: int = 0
    commit: str | None = None
    branch: str | None = None
    task: str | None = None  # the task whose branch it is on
    dirty: bool = False
    ahead: int = 0
    behind: int = 0
    error: str | None = None
    at: float = 0.0


class LandedTask(msgspec.Struct, kw_only=True):
    """One task's work on the project's branch: ``commit`` holds it (``resolves``: it made
    another task's work land)."""

    task: str
    commit: str
    at: float
    agent: str | None = None
    resolves: str | None = None


class ProjectView(msgspec.Struct, kw_only=True):
    swarm: str
    id: str
    name: str
    git_url: str
    branch: str | None = None  # None: the remote's default (``default_branch`` once known)
    credentials_ref: str | None = None
    mode: IntegrationMode = "integrate"
    strategy: MergeStrategy = "rebase"
    verify: str | None = None
    on_conflict: OnConflict = "resolve"
    default_branch: str | None = None  # the remote's default, as the first checkout found it
    attached: bool = False
    round: int = 0  # bumped by each init or sync request
    request: Literal["none", "init", "sync"] = "none"
    checkouts: dict[str, Checkout] = {}
    created_at: float = 0.0
    updated_at: float = 0.0
    tip: str | None = None  # the project branch's newest commit Swarm knows of
    landed: list[LandedTask] = []  # the last ``LANDED_KEPT`` tasks landed, in order
    landed_count: int = 0  # all tasks landed so far

    @property
    def target(self) -> str | None:
        """The branch work lands on: the one named, else the remote's default once known."""
        return self.branch or self.default_branch


T = TypeVar("T")
Order = Literal["oldest", "newest", "priority"]  # a listing's (``Tasks.in_order``)
ORDERS: tuple[Order, ...] = ("oldest", "newest", "priority")
STUCK_STATES: frozenset[str] = frozenset({"landing", "conflict", "verify_failed", "failed"})
STATUSES: tuple[TaskStatus, ...] = (
    "blocked", "pending", "claimed", "running", "completed", "failed", "requeued", "cancelled"
)  # fmt: skip
_STATUS_CODE = {status: code for code, status in enumerate(STATUSES)}
_HAS_PARENT = 0x80  # in a record's first byte, with the status's code
_record_encoder = msgspec.msgpack.Encoder()
_record_decoder = msgspec.msgpack.Decoder(dict[str, Any])


def settled(task: TaskView) -> bool:
    """Finished, and nothing the log may still say changes what reading it decides: a completed
    task whose work is not waiting to land (``landing``, or stuck awaiting a resolve task), or a
    failed or cancelled one; never one with triggers whose follow-ups may be left to write. Only
    these are frozen (``Tasks``); any later event on one thaws it first."""
    if task.status not in FINISHED:
        return False
    if task.triggers and task.status != "cancelled":
        return False
    work = task.integration
    return task.status != "completed" or work is None or work.state not in STUCK_STATES


@cache
def _nested(cls: type[msgspec.Struct]) -> dict[str, type[msgspec.Struct]]:
    """The fields of ``cls`` that hold one Struct (or None), by encoded name: its class."""
    found: dict[str, type[msgspec.Struct]] = {}
    for info in msgspec.structs.fields(cls):
        kinds = get_args(info.type) if get_origin(info.type) in (Union, UnionType) else ()
        kinds = kinds or (info.type,)
        structs = [k for k in kinds if isinstance(k, type) and issubclass(k, msgspec.Struct)]
        if len(structs) == 1 and all(k in (*structs, type(None)) for k in kinds):
            found[info.encode_name] = structs[0]
    return found


# not in a record's msgpack: its key, its swarm's id, and its status (in its first byte)
_TASK_CONTEXT = ("swarm", "id", "status")


@cache
def _record_type(cls: type[msgspec.Struct], skip: tuple[str, ...] = ()) -> type[msgspec.Struct]:
    """``cls`` as a record: the same fields but ``skip``, nested Structs as records too, and
    ``omit_defaults``: msgspec encodes only the fields that differ from their defaults (in C:
    4x faster than picking them in Python)."""
    nested = _nested(cls)
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for info in msgspec.structs.fields(cls):
        if info.name in skip:
            continue
        kind: Any = info.type
        factory = info.default_factory
        if info.encode_name in nested:
            inner = _record_type(nested[info.encode_name])
            kind = inner if kind is nested[info.encode_name] else inner | None
            factory = inner if factory is nested[info.encode_name] else factory
        if info.default is not msgspec.NODEFAULT:
            fields.append((info.name, kind, info.default))
        elif factory is not msgspec.NODEFAULT:
            fields.append((info.name, kind, msgspec.field(default_factory=factory)))
        else:
            fields.append((info.name, kind))
    renamed = {info.name: info.encode_name for info in msgspec.structs.fields(cls)}
    return msgspec.defstruct(
        f"{cls.__name__}Record", fields, omit_defaults=True, kw_only=True, rename=renamed
    )


def encode_record(task: TaskView) -> bytes:
    """A task as a compact record: one byte (its status, whether it has a parent), then msgpack
    of the fields that differ from their defaults (its swarm and id are where it is kept)."""
    code = _STATUS_CODE[task.status] | (_HAS_PARENT if task.parent is not None else 0)
    record = msgspec.convert(task, _record_type(TaskView, _TASK_CONTEXT), from_attributes=True)
    return bytes((code,)) + _record_encoder.encode(record)


def decode_record(swarm: str, task_id: str, record: bytes) -> TaskView:
    fields = _record_decoder.decode(memoryview(record)[1:])
    fields["swarm"] = swarm
    fields["id"] = task_id
    fields["status"] = record_status(record)
    return msgspec.convert(fields, TaskView)


def record_status(record: bytes) -> TaskStatus:
    return STATUSES[record[0] & ~_HAS_PARENT]


# A frozen task read from a snapshot stays in its chunk, compressed, until it is read: its entry
# is a *handle* (an int: the chunk's index, the record's position in it, and the record's first
# byte), so starting from a snapshot builds no object per finished task but the handle.
CHUNK_RECORDS = 1024  # records in a chunk at most (the position has 12 bits)
CHUNK_BYTES = 256 * 1024  # ... and about this many bytes before compression
_CHUNK_SHIFT, _POS_SHIFT, _POS_MASK, _CODE_MASK = 20, 8, 0xFFF, 0xFF
_CACHED_CHUNKS = 4  # decompressed chunks kept (reads of neighbours, listings in order)
_chunk_encoder = msgspec.msgpack.Encoder()
_chunk_decoder = msgspec.msgpack.Decoder(list[bytes])

Sealed = list[tuple[list[tuple[str, bytes]], bytes]]  # (id and record, ...), compressed chunk


def seal_records(records: list[tuple[str, bytes]]) -> Sealed:
    """Records (with their task ids) grouped into chunks, each compressed: pure and free of the
    board, so it may run in a thread (``zlib`` lets the event loop go on meanwhile)."""
    sealed: Sealed = []
    group: list[tuple[str, bytes]] = []
    size = 0
    for item in records:
        group.append(item)
        size += len(item[1])
        if len(group) >= CHUNK_RECORDS or size >= CHUNK_BYTES:
            sealed.append((group, _compress_chunk(group)))
            group, size = [], 0
    if group:
        sealed.append((group, _compress_chunk(group)))
    return sealed


def _compress_chunk(group: list[tuple[str, bytes]]) -> bytes:
    return zlib.compress(_chunk_encoder.encode([record for _, record in group]), 3)


def _handle(chunk: int, position: int, record: bytes) -> int:
    """A sealed task's entry: its chunk, its record's position there, the record's first byte."""
    return (chunk << _CHUNK_SHIFT) | (position << _POS_SHIFT) | record[0]


def _code(entry: bytes | int) -> int:
    """A frozen entry's first record byte: its status's code, and whether it has a parent."""
    return entry[0] if isinstance(entry, bytes) else entry & _CODE_MASK


class _CreatedSeq(msgspec.Struct):
    """What a record says of when its task was created (the rest of it left undecoded)."""

    created_seq: int = 0


_created_seq_decoder = msgspec.msgpack.Decoder(_CreatedSeq)


def record_created_seq(record: bytes) -> int:
    """A record's ``created_seq``, without building its task."""
    return _created_seq_decoder.decode(memoryview(record)[1:]).created_seq


class CreatedOrder:
    """Task ids oldest first: by ``created_seq`` (the log position of their ``created``), then
    id. What a task listing pages through: a page starts where its ``after`` task's key falls
    (a bisection) and reads only the tasks it returns, whatever the swarm's size.

    The fold adds tasks in log order, so an add is an append (a task's ``created_seq`` never
    changes); a deletion takes one out of the middle (a move of references, no record read).
    About 16 bytes a task: a reference to its id and its sequence in an ``array``. A snapshot
    carries the sequences (``Tasks.to_wire``), so a start rebuilds this without reading a
    record.

    Once asked for (``codes``), it also keeps one byte a task in the same order: a frozen
    task's status code, ``LIVE`` for any other (``mark`` sets it as tasks freeze and thaw).
    ``find`` then reaches the frozen tasks of one status by a search of those bytes in C, not by
    a look at every task: a column of a status few tasks have, whose newest is old, was a walk
    over a whole swarm's tasks (~0.1 s at 250k)."""

    __slots__ = ("_codes", "_ids", "_seqs")
    LIVE = 0xFF  # the code of a task not frozen

    def __init__(self) -> None:
        self._ids: list[str] = []
        self._seqs = array("q")
        self._codes: bytearray | None = None  # built when first asked for, then kept

    @classmethod
    def of(cls, ids: list[str], seqs: array[int]) -> CreatedOrder:
        """The order of ``ids`` with their ``seqs`` (one each, in the same order), sorted unless
        they already are (as a fold adds them)."""
        order = cls()
        if len(ids) != len(seqs):
            raise ValueError(f"{len(ids)} task ids but {len(seqs)} created sequences")
        if all(map(int.__lt__, seqs, islice(seqs, 1, None))):
            order._ids, order._seqs = ids, seqs
            return order
        for seq, task_id in sorted(zip(seqs, ids, strict=True)):
            order._ids.append(task_id)
            order._seqs.append(seq)
        return order

    def __len__(self) -> int:
        return len(self._ids)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CreatedOrder):
            return NotImplemented
        return self._ids == other._ids and self._seqs == other._seqs

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"CreatedOrder({len(self)} tasks)"

    def add(self, task_id: str, seq: int) -> None:
        """A task added, live (``LIVE``)."""
        ids, seqs, codes = self._ids, self._seqs, self._codes
        if not ids or seqs[-1] < seq or (seqs[-1] == seq and ids[-1] < task_id):
            ids.append(task_id)
            seqs.append(seq)
            if codes is not None:
                codes.append(self.LIVE)
            return
        at = self.after(task_id, seq)
        ids.insert(at, task_id)
        seqs.insert(at, seq)
        if codes is not None:
            codes.insert(at, self.LIVE)

    def remove(self, task_id: str, seq: int) -> None:
        at = self._position(task_id, seq)
        del self._ids[at]
        del self._seqs[at]
        if self._codes is not None:
            del self._codes[at]

    def copy(self) -> CreatedOrder:
        """The ids and sequences as they are now (not the status bytes), apart from this one."""
        order = CreatedOrder()
        order._ids, order._seqs = self._ids.copy(), self._seqs[:]
        return order

    def mark(self, task_id: str, seq: int, code: int) -> None:
        """The task's code is now ``code`` (a status's, frozen; ``LIVE``): kept once ``codes``
        was asked for, nothing to do before."""
        if self._codes is not None:
            self._codes[self._position(task_id, seq)] = code

    def codes(self, build: Callable[[list[str]], bytearray]) -> bytearray:
        """Each task's code in order, from ``build`` (the codes of the ids given) the first
        time."""
        if self._codes is None:
            self._codes = build(self._ids)
            if len(self._codes) != len(self._ids):
                raise ValueError("a code for each task, no more")
        return self._codes

    def find(self, code: int, start: int, end: int, *, down: bool = False) -> Iterator[int]:
        """The positions from ``start`` to before ``end`` whose code is ``code`` (``codes``
        asked for first), in order, or the other way round (``down``)."""
        codes = self._codes
        assert codes is not None, "find before codes"
        wanted = bytes((code,))
        while (
            at := codes.rfind(wanted, start, end) if down else codes.find(wanted, start, end)
        ) >= 0:
            yield at
            if down:
                end = at
            else:
                start = at + 1

    def key_at(self, at: int) -> tuple[int, str]:
        """The (``created_seq``, id) at position ``at``."""
        return self._seqs[at], self._ids[at]

    def _position(self, task_id: str, seq: int) -> int:
        lo, hi = self._run(seq)
        at = bisect_left(self._ids, task_id, lo, hi)
        if at == hi or self._ids[at] != task_id:
            raise KeyError(task_id)
        return at

    def after(self, task_id: str, seq: int) -> int:
        """The position of the first task after (``seq``, ``task_id``): where a page after that
        task starts (the task itself need not be here)."""
        lo, hi = self._run(seq)
        return bisect_right(self._ids, task_id, lo, hi)

    def before(self, task_id: str, seq: int) -> int:
        """The position just past the last task before (``seq``, ``task_id``): where a page
        newest first after that task ends its walk down (``ids_down``)."""
        lo, hi = self._run(seq)
        return bisect_left(self._ids, task_id, lo, hi)

    def _run(self, seq: int) -> tuple[int, int]:
        """The positions holding ``seq`` (ids sorted within: only hand-built tasks share one)."""
        lo = bisect_left(self._seqs, seq)
        return lo, bisect_right(self._seqs, seq, lo)

    def ids(self, start: int = 0) -> Iterator[str]:
        """The ids from position ``start`` on (read them before the order changes), reached at
        once (``islice`` would step over the ``start`` before them)."""
        ids = self._ids
        return (ids[at] for at in range(start, len(ids)))

    def ids_down(self, end: int | None = None) -> Iterator[str]:
        """The ids before position ``end`` (default: all), newest first."""
        ids = self._ids
        return (ids[at] for at in range((len(ids) if end is None else end) - 1, -1, -1))

    def seqs_of(self, ids: list[str]) -> bytes:
        """The created sequences of ``ids`` (every id here, in any order), as little-endian
        int64s: what a snapshot carries, in the order of its tasks."""
        if ids == self._ids:
            seqs = self._seqs
        else:  # only hand-built tasks are added out of order
            by_id = dict(zip(self._ids, self._seqs, strict=True))
            seqs = array("q", [by_id[task_id] for task_id in ids])
        return _little_endian(seqs).tobytes()

    @staticmethod
    def seqs_from(raw: bytes) -> array[int]:
        seqs = array("q")
        seqs.frombytes(raw)
        return _little_endian(seqs)


def _little_endian(seqs: array[int]) -> array[int]:
    """``seqs`` with each int64's bytes as a little-endian machine keeps them (a copy on a
    big-endian one)."""
    if sys.byteorder == "little":
        return seqs
    swapped = array("q", seqs)
    swapped.byteswap()
    return swapped


class Tasks(MutableMapping[str, TaskView]):
    """A swarm's tasks by id, in the order they were added: a mapping of ``TaskView``.

    A settled task (``settled``) may be *frozen*: kept as a compact record (``encode_record``,
    a few hundred bytes instead of a dozen objects) and decoded on each read, so a read never
    shares an object with the board: change a task only through ``thaw`` (the fold does). The
    fold freezes a task when it settles and thaws it for any later event on it; decoding a
    snapshot freezes every settled task. Freezing changes no read: ``==`` compares the tasks.

    A frozen record is either in memory (``bytes``) or *sealed* in a chunk: records grouped and
    compressed together (``seal_records``), the entry then a handle into the chunk (an ``int``).
    Saving a snapshot seals the records in memory (in a copy, ``TasksCopy.seal``, then
    ``adopt``; or here and now, ``seal``); a snapshot
    carries the chunks as they are, so a service starting from one decodes an index (id ->
    handle), not a record per finished task, and inflates a chunk only when one of its tasks is
    read (the last few stay decompressed). A chunk whose tasks are all thawed or deleted is
    dropped.

    Hot paths never decode every task: ``live()`` holds every task not frozen (every unfinished
    one among them), ``frozen_status`` answers for a frozen one, ``status_counts`` and
    ``usage_total`` count them all, ``follow_ups`` finds one task's follow-ups. ``values()`` and
    ``items()`` decode the frozen ones (full listings); ``in_order`` reads a listing a page at a
    time, oldest first (``CreatedOrder``, kept as tasks are added and deleted)."""

    __slots__ = (
        "_cache",
        "_chunk_refs",
        "_chunk_sizes",
        "_chunks",
        "_counts",
        "_entries",
        "_live",
        "_order",
        "_swarm",
        "_usage",
    )

    def __init__(self, tasks: Mapping[str, TaskView] | None = None) -> None:
        self._entries: dict[str, TaskView | bytes | int] = {}
        self._live: dict[str, TaskView] = {}
        self._counts: dict[str, int] = {}  # the frozen ones by status
        self._usage = [0, 0, 0, 0]  # the frozen ones' tokens (``Usage``'s fields, in order)
        self._swarm = ""
        self._chunks: list[bytes] = []  # compressed (b"": every task in it left)
        self._chunk_sizes: list[int] = []  # records in each chunk
        self._chunk_refs: list[int] = []  # entries still pointing into each chunk
        self._cache: dict[int, list[bytes]] = {}  # chunk index -> its records, decompressed
        self._order = CreatedOrder()  # every task, oldest first (what listings page through)
        for task_id, task in (tasks or {}).items():
            self[task_id] = task

    # --- frozen entries ----------------------------------------------------------------------

    def _record(self, entry: bytes | int) -> bytes:
        if isinstance(entry, bytes):
            return entry
        chunk = entry >> _CHUNK_SHIFT
        records = self._cache.get(chunk)
        if records is None:
            records = _chunk_decoder.decode(zlib.decompress(self._chunks[chunk]))
            if len(records) != self._chunk_sizes[chunk]:
                raise ValueError(f"chunk {chunk} of swarm {self._swarm}'s tasks is damaged")
            if len(self._cache) >= _CACHED_CHUNKS:
                del self._cache[next(iter(self._cache))]
            self._cache[chunk] = records
        return records[(entry >> _POS_SHIFT) & _POS_MASK]

    def _decode(self, task_id: str, entry: bytes | int) -> TaskView:
        return decode_record(self._swarm, task_id, self._record(entry))

    def _release(self, task_id: str, entry: bytes | int) -> TaskView:
        """A frozen entry leaves (thawed, replaced, deleted): the task it held, uncounted."""
        task = self._decode(task_id, entry)
        self._unaccount(task)
        if isinstance(entry, int):
            chunk = entry >> _CHUNK_SHIFT
            self._chunk_refs[chunk] -= 1
            if not self._chunk_refs[chunk]:
                self._chunks[chunk] = b""
                self._cache.pop(chunk, None)
        return task

    # --- the mapping -------------------------------------------------------------------------

    def __getitem__(self, task_id: str) -> TaskView:
        entry = self._entries[task_id]
        if isinstance(entry, TaskView):
            return entry
        return self._decode(task_id, entry)

    @overload
    def get(self, task_id: str, /) -> TaskView | None: ...
    @overload
    def get(self, task_id: str, /, default: TaskView | T) -> TaskView | T: ...
    def get(self, task_id: str, /, default: object = None) -> object:
        entry = self._entries.get(task_id)
        if entry is None:
            return default
        if isinstance(entry, TaskView):
            return entry
        return self._decode(task_id, entry)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._entries

    def __setitem__(self, task_id: str, task: TaskView) -> None:
        entry = self._entries.get(task_id)
        if entry is None:
            self._order.add(task_id, task.created_seq)
        else:
            was = entry if isinstance(entry, TaskView) else self._release(task_id, entry)
            if was.created_seq != task.created_seq:
                self._order.remove(task_id, was.created_seq)
                self._order.add(task_id, task.created_seq)
            elif was is not entry:  # it was frozen
                self._order.mark(task_id, task.created_seq, CreatedOrder.LIVE)
        self._entries[task_id] = task
        self._live[task_id] = task

    def __delitem__(self, task_id: str) -> None:
        entry = self._entries.pop(task_id)
        was = entry if isinstance(entry, TaskView) else self._release(task_id, entry)
        self._order.remove(task_id, was.created_seq)
        self._live.pop(task_id, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self) -> KeysView[str]:
        return self._entries.keys()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        if len(self) != len(other):
            return False
        theirs = other if isinstance(other, Tasks) else None
        for task_id, entry in self._entries.items():
            if task_id not in other:
                return False
            if theirs is not None and not isinstance(entry, TaskView):
                their = theirs._entries[task_id]
                if not isinstance(their, TaskView) and self._record(entry) == theirs._record(their):
                    continue  # the same record: the same task
            if self[task_id] != other[task_id]:
                return False
        return True

    __hash__ = None  # type: ignore[assignment]  # mutable, like a dict

    def __repr__(self) -> str:
        return f"Tasks({len(self._live)} live, {len(self) - len(self._live)} frozen)"

    # --- hot paths ---------------------------------------------------------------------------

    def live(self) -> ValuesView[TaskView]:
        """Every task not frozen (every unfinished one among them), in the order added."""
        return self._live.values()

    def live_task(self, task_id: str) -> TaskView | None:
        """The task if it is live (None: frozen or unknown)."""
        return self._live.get(task_id)

    def frozen_status(self, task_id: str) -> TaskStatus | None:
        """The status of a frozen (so settled) task; None when the task is live or unknown."""
        entry = self._entries.get(task_id)
        if entry is None or isinstance(entry, TaskView):
            return None
        return STATUSES[_code(entry) & ~_HAS_PARENT]

    def status_counts(self) -> dict[str, int]:
        """How many tasks are in each status (every status named)."""
        counts: dict[str, int] = dict.fromkeys(STATUSES, 0)
        for status, count in self._counts.items():
            counts[status] += count
        for task in self._live.values():
            counts[task.status] += 1
        return counts

    def usage_total(self) -> Usage:
        """The tokens of every task's recorded runs together."""
        total = _usage_of(self._usage)
        for task in self._live.values():
            _add_usage(total, task.usage)
        return total

    def created_seq(self, task_id: str) -> int:
        """The task's ``created_seq`` (a frozen one's read from its record without decoding the
        rest); KeyError when there is no such task."""
        entry = self._entries[task_id]
        if isinstance(entry, TaskView):
            return entry.created_seq
        return record_created_seq(self._record(entry))

    def in_order(
        self,
        *,
        after: str | None = None,
        after_seq: int | None = None,
        status: str | None = None,
        mentioning: str = "",
        order: Order = "oldest",
    ) -> Iterator[TaskView]:
        """The tasks in ``order``, from just after the task ``after`` (KeyError: no such task);
        only those in ``status`` if given. ``order``: ``oldest`` first (``CreatedOrder``: by
        ``created_seq``, then id), ``newest`` first (the reverse), or ``priority``
        (``priority_key``: the tasks of one unfinished ``status`` only, a ValueError at once
        otherwise). With ``after_seq`` (the ``created_seq`` of ``after``), ``after`` need not
        be here, except by priority: a page after a task deleted since starts where that task
        was.

        Reads only what it yields and what it passes over: a page of a listing costs its own
        tasks, not the swarm's. With a finished ``status``, its frozen tasks are found by a
        search of one byte a task (``CreatedOrder.codes``), no task of another status read; an
        unfinished one reads the live tasks only (sorted for each call; by priority, a heap:
        what is taken costs its log). ``mentioning`` (a tag, an
        agent the caller filters on) passes over, without decoding, each frozen task whose
        record does not hold that text: a record keeps its strings as UTF-8, so one that lacks
        it cannot match (the caller still checks those it gets). Consume it before the fold
        changes the tasks again."""
        if order not in ORDERS:
            raise ValueError(f"no order {order!r}: one of {', '.join(ORDERS)}")
        if order == "priority":
            if status is None or status in FINISHED:
                raise ValueError("only the tasks of one unfinished status are in priority order")
            return self._by_priority(status, after)
        return self._by_creation(after, after_seq, status, mentioning, newest=order == "newest")

    def _by_priority(self, status: str, after: str | None) -> Iterator[TaskView]:
        mark = None if after is None else priority_key(self[after])
        heap = [
            (key, task)
            for task in self._live.values()
            if task.status == status
            for key in (priority_key(task),)
            if mark is None or key > mark
        ]
        heapify(heap)  # the keys hold the id: no two equal, no task ever compared
        while heap:
            yield heappop(heap)[1]

    def _by_creation(
        self,
        after: str | None,
        after_seq: int | None,
        status: str | None,
        mentioning: str,
        *,
        newest: bool,
    ) -> Iterator[TaskView]:
        if after is None:
            mark = None
        else:
            mark = (self.created_seq(after) if after_seq is None else after_seq, after)

        def past_mark(task: TaskView) -> bool:
            key = (task.created_seq, task.id)
            return mark is None or (key < mark if newest else key > mark)

        if status is not None and status not in FINISHED:
            found = [task for task in self._live.values() if task.status == status]
            found = [task for task in found if past_mark(task)]
            yield from sorted(found, key=lambda task: (task.created_seq, task.id), reverse=newest)
            return
        order = self._order
        needle = mentioning.encode()
        if status is None:
            if mark is None:
                ids = order.ids_down() if newest else order.ids()
            elif newest:
                ids = order.ids_down(order.before(mark[1], mark[0]))
            else:
                ids = order.ids(order.after(mark[1], mark[0]))
            for task_id in ids:
                entry = self._entries[task_id]
                if isinstance(entry, TaskView):
                    yield entry
                else:
                    record = self._record(entry)
                    if needle in record:
                        yield decode_record(self._swarm, task_id, record)
            return
        # a finished status: its frozen tasks found by their code, merged with its live ones
        order.codes(self._codes_of)
        start, end = 0, len(order)
        if mark is not None and newest:
            end = order.before(mark[1], mark[0])
        elif mark is not None:
            start = order.after(mark[1], mark[0])
        code = _STATUS_CODE[status]  # type: ignore[index]
        frozen = ((order.key_at(at), None) for at in order.find(code, start, end, down=newest))
        live = sorted(
            (((task.created_seq, task.id), task) for task in self._live.values()
             if task.status == status and past_mark(task)),
            key=itemgetter(0),
            reverse=newest,
        )  # fmt: skip
        for (_, task_id), task in merge(frozen, live, key=itemgetter(0), reverse=newest):
            if task is not None:
                yield task
                continue
            record = self._record(self._entries[task_id])  # type: ignore[arg-type]  # frozen
            if needle in record:
                yield decode_record(self._swarm, task_id, record)

    def _codes_of(self, ids: list[str]) -> bytearray:
        """The tasks' codes in ``CreatedOrder.codes``: a frozen one's status, else ``LIVE``
        (~70 ms for 250k tasks, once a process)."""
        status, live = ~_HAS_PARENT & _CODE_MASK, CreatedOrder.LIVE
        return bytearray(
            [
                entry & status
                if type(entry) is int
                else entry[0] & status
                if type(entry) is bytes
                else live
                for entry in map(self._entries.__getitem__, ids)
            ]
        )

    def follow_ups(self, parent: str) -> Iterator[TaskView]:
        """The tasks whose ``parent`` is ``parent``: among those added after it (newest first;
        only frozen records marked as having a parent are decoded)."""
        for task_id in reversed(self._entries):
            if task_id == parent:
                return
            entry = self._entries[task_id]
            if not isinstance(entry, TaskView):
                if not _code(entry) & _HAS_PARENT:
                    continue
                entry = self._decode(task_id, entry)
            if entry.parent == parent:
                yield entry

    # --- freezing ----------------------------------------------------------------------------

    def thaw(self, task_id: str) -> TaskView | None:
        """The task as a live object the caller may change (None: unknown)."""
        entry = self._entries.get(task_id)
        if entry is None or isinstance(entry, TaskView):
            return entry
        task = self._release(task_id, entry)
        self._entries[task_id] = task  # keeps its place in the order
        self._live[task_id] = task
        self._order.mark(task_id, task.created_seq, CreatedOrder.LIVE)
        return task

    def freeze(self, task_id: str) -> bool:
        """Keep the task as a record if it is live and ``settled``; whether it now is frozen."""
        task = self._live.get(task_id)
        if task is None:
            entry = self._entries.get(task_id)
            return entry is not None and not isinstance(entry, TaskView)
        if not settled(task):
            return False
        try:
            record = encode_record(task)
        except (msgspec.ValidationError, TypeError):  # a value its type does not allow: kept live
            return False
        self._swarm = task.swarm
        self._entries[task_id] = record
        del self._live[task_id]
        self._order.mark(task_id, task.created_seq, _STATUS_CODE[task.status])
        self._counts[task.status] = self._counts.get(task.status, 0) + 1
        _add_usage(self._usage, task.usage)
        return True

    def freeze_settled(self) -> int:
        """Freeze every live settled task; how many were."""
        return sum(self.freeze(task_id) for task_id in list(self._live))

    def thaw_all(self) -> None:
        for task_id in [k for k, v in self._entries.items() if not isinstance(v, TaskView)]:
            self.thaw(task_id)

    def _unaccount(self, task: TaskView) -> None:
        self._counts[task.status] -= 1
        if not self._counts[task.status]:
            del self._counts[task.status]
        _add_usage(self._usage, task.usage, -1)

    # --- sealing -----------------------------------------------------------------------------

    def pending_records(self) -> list[tuple[str, bytes]]:
        """The frozen records still in memory (not sealed in a chunk), in order, with their ids:
        for ``seal_records``, then ``adopt``."""
        return [(k, v) for k, v in self._entries.items() if isinstance(v, bytes)]

    def adopt(self, sealed: Sealed) -> int:
        """Take chunks ``seal_records`` made of ``pending_records``: each task whose entry is
        still that very record now points into its chunk (one thawed or frozen again meanwhile
        is left as it is). Returns how many tasks were sealed."""
        adopted = 0
        for group, blob in sealed:
            chunk = len(self._chunks)
            refs = 0
            for position, (task_id, record) in enumerate(group):
                if self._entries.get(task_id) is record:
                    self._entries[task_id] = _handle(chunk, position, record)
                    refs += 1
            self._chunks.append(blob if refs else b"")
            self._chunk_sizes.append(len(group))
            self._chunk_refs.append(refs)
            adopted += refs
        return adopted

    def seal(self) -> int:
        """Seal the records in memory, here and now (``pending_records``, ``adopt``)."""
        pending = self.pending_records()
        return self.adopt(seal_records(pending)) if pending else 0

    # --- snapshots ---------------------------------------------------------------------------

    def to_wire(self) -> list[Any]:
        """What a snapshot stores (``TasksCopy.to_wire``), as the tasks are now."""
        return self.copy().to_wire()

    def copy(self) -> TasksCopy:
        """The tasks as they are now, for a snapshot: see ``TasksCopy``."""
        return TasksCopy(self)

    @classmethod
    def from_wire(cls, value: Any) -> Tasks:
        """``to_wire``'s form as msgpack decodes it, or an earlier snapshot's: without the
        created sequences, without chunks (``[swarm, {id: record or None}, {id: task}, counts,
        usage]``) or a plain mapping of tasks; every settled task ends frozen. The chunks stay
        compressed; each handle is checked against them. An earlier form's created sequences
        are read from the records (``_read_order``: every chunk inflated once)."""
        tasks = cls()
        if isinstance(value, dict):  # the earliest form: every task in full
            for task_id, task in value.items():
                tasks._put(task_id, msgspec.convert(task, TaskView))
            tasks._read_order()
            tasks.freeze_settled()
            return tasks
        swarm, entries, live, counts, usage, *sealed = value
        chunks, sizes, *created = sealed if sealed else ([], [])
        if len(created) > 1:
            raise ValueError("a snapshot's tasks hold more than they should")
        if len(chunks) != len(sizes):
            raise ValueError("a snapshot's chunks and their sizes differ in number")
        refs = [0] * len(chunks)
        for entry in entries.values():
            if type(entry) is int:
                chunk = entry >> _CHUNK_SHIFT
                if chunk >= len(chunks) or (entry >> _POS_SHIFT) & _POS_MASK >= sizes[chunk]:
                    raise ValueError(f"a snapshot's task points past its chunks ({entry})")
                refs[chunk] += 1
        if any(ref and not chunks[i] for i, ref in enumerate(refs)):
            raise ValueError("a snapshot's task points into an empty chunk")
        tasks._swarm = swarm
        tasks._counts = counts
        tasks._usage = list(usage)
        tasks._chunks = [chunk if ref else b"" for chunk, ref in zip(chunks, refs, strict=True)]
        tasks._chunk_sizes = list(sizes)
        tasks._chunk_refs = refs
        tasks._entries = entries  # the live ones' places hold None until set below
        for task_id, task in live.items():
            if entries.get(task_id, False) is not None:
                raise ValueError(f"task {task_id} is both live and frozen in the snapshot")
            tasks._put(task_id, msgspec.convert(task, TaskView))
        if len(tasks._live) != len(live) or None in entries.values():
            raise ValueError("a snapshot's tasks are incomplete")
        if created:
            tasks._order = CreatedOrder.of(list(entries), CreatedOrder.seqs_from(created[0]))
        else:
            tasks._read_order()
        tasks.freeze_settled()
        return tasks

    def _put(self, task_id: str, task: TaskView) -> None:
        """Set a task without keeping the order (``from_wire`` builds it once, at the end)."""
        self._entries[task_id] = task
        self._live[task_id] = task

    def _read_order(self) -> None:
        """Build the order from each task's ``created_seq``, a frozen one's read from its record
        (a chunk inflated once for all its tasks): for a snapshot of an earlier form."""
        seqs: dict[str, int] = {}
        by_chunk: dict[int, list[tuple[str, int]]] = {}
        for task_id, entry in self._entries.items():
            if isinstance(entry, TaskView):
                seqs[task_id] = entry.created_seq
            elif isinstance(entry, bytes):
                seqs[task_id] = record_created_seq(entry)
            else:
                by_chunk.setdefault(entry >> _CHUNK_SHIFT, []).append((task_id, entry))
        for chunk, members in by_chunk.items():
            records = _chunk_decoder.decode(zlib.decompress(self._chunks[chunk]))
            for task_id, entry in members:
                seqs[task_id] = record_created_seq(records[(entry >> _POS_SHIFT) & _POS_MASK])
        ids = list(self._entries)
        self._order = CreatedOrder.of(ids, array("q", [seqs[task_id] for task_id in ids]))


class TasksCopy:
    """A swarm's tasks as they were when copied, in what a snapshot stores of them (``to_wire``),
    apart from the board: encoding it reads nothing the fold changes later, so it may run in a
    thread while the fold goes on (``services.bus.snapshots.Capture``).

    Taking it costs little on the event loop (~10 ms at 250k tasks): the index and the lists the
    fold changes are copied (in C: their items are ids, records, handles and chunks, which never
    change), the live tasks, which the fold changes in place, are encoded (msgpack; the
    unfinished ones, few); the order's ids and sequences are copied. What is left — finding the
    records in memory among the entries, sealing them (``seal``), the created sequences in the
    entries' order — runs on the copy."""

    __slots__ = ("chunks", "counts", "entries", "live", "order", "sizes", "swarm", "usage")

    def __init__(self, tasks: Tasks) -> None:
        self.swarm = tasks._swarm
        entries: dict[str, Any] = dict(tasks._entries)
        entries.update(dict.fromkeys(tasks._live))  # a live task: None (in ``live``)
        self.entries: dict[str, bytes | int | None] = entries
        self.live = msgspec.Raw(_live_encoder.encode(tasks._live))
        self.counts = dict(tasks._counts)
        self.usage = list(tasks._usage)
        self.chunks = list(tasks._chunks)
        self.sizes = list(tasks._chunk_sizes)
        self.order = tasks._order.copy()

    def seal(self) -> Sealed:
        """Seal this copy's records in memory (``seal_records``): its entries then point into
        new chunks after its own, as ``Tasks.adopt`` makes them. Returns the chunks, for the
        board's ``adopt`` (which takes only the tasks still as they were)."""
        pending = [(k, v) for k, v in self.entries.items() if type(v) is bytes]
        sealed = seal_records(pending) if pending else []
        for group, blob in sealed:
            chunk = len(self.chunks)
            for position, (task_id, record) in enumerate(group):
                self.entries[task_id] = _handle(chunk, position, record)
            self.chunks.append(blob)
            self.sizes.append(len(group))
        return sealed

    def to_wire(self) -> list[Any]:
        """``[swarm, {id: handle, record or None}, {id: task}, counts, usage, chunks, chunk
        sizes, created sequences]``: every task in order, a sealed one as its handle into the
        chunks (carried compressed, as they are), a frozen one in memory as its record, a live
        one as None and in full in the third element; the last element each task's
        ``created_seq`` in the same order (``CreatedOrder.seqs_of``)."""
        return [
            self.swarm,
            self.entries,
            self.live,
            self.counts,
            self.usage,
            self.chunks,
            self.sizes,
            self.order.seqs_of(list(self.entries)),
        ]


_live_encoder = msgspec.msgpack.Encoder()
_USAGE_FIELDS = tuple(info.name for info in msgspec.structs.fields(Usage))


def _usage_of(values: list[int]) -> Usage:
    return Usage(**dict(zip(_USAGE_FIELDS, values, strict=True)))


def _add_usage(total: Usage | list[int], usage: Usage, sign: int = 1) -> None:
    if isinstance(total, list):
        total[0] += sign * usage.input_tokens
        total[1] += sign * usage.output_tokens
        total[2] += sign * usage.cache_read_input_tokens
        total[3] += sign * usage.cache_creation_input_tokens
        return
    total.input_tokens += usage.input_tokens
    total.output_tokens += usage.output_tokens
    total.cache_read_input_tokens += usage.cache_read_input_tokens
    total.cache_creation_input_tokens += usage.cache_creation_input_tokens


def tasks_enc_hook(value: Any) -> Any:
    """msgspec ``enc_hook`` for a board: a ``Tasks`` in its snapshot form."""
    if isinstance(value, Tasks):
        return value.to_wire()
    raise NotImplementedError(f"cannot encode {type(value).__name__}")


def tasks_in_full(value: Any) -> Any:
    """msgspec ``enc_hook`` writing a board as it reads (and as earlier snapshots stored it):
    each swarm's tasks as an object of every task in full."""
    if isinstance(value, Tasks):
        return dict(value.items())
    raise NotImplementedError(f"cannot encode {type(value).__name__}")


def tasks_dec_hook(tp: type, value: Any) -> Any:
    """msgspec ``dec_hook`` for a board."""
    if tp is Tasks:
        return Tasks.from_wire(value)
    raise NotImplementedError(f"cannot decode {tp}")


def tasks_schema_hook(tp: type) -> dict[str, Any]:
    """msgspec ``schema_hook``: ``Tasks`` read as what it is, an object of ``TaskView``."""
    if tp is Tasks:
        return {"type": "object", "additionalProperties": {"$ref": "#/$defs/TaskView"}}
    raise NotImplementedError(f"no schema for {tp}")


class SwarmView(msgspec.Struct, kw_only=True):
    id: str
    name: str
    description: str = ""
    created_at: float = 0.0
    tasks: Tasks = msgspec.field(default_factory=Tasks)
    agents: dict[str, AgentView] = {}
    projects: dict[str, ProjectView] = {}
    project: str | None = None  # the attached project
    budget_usd: float | None = None  # the most its claude runs may cost together
    spent_usd: float = 0.0  # what its recorded runs cost together


class Board(msgspec.Struct, kw_only=True):
    swarms: dict[str, SwarmView] = {}
    seq: int = 0  # the last log position folded in
    versions: dict[str, int] = {}  # "<swarm>/<aggregate>/<id>" -> last log position on it
    ignored: int = 0  # events the fold ruled void (a transition that was not possible)

    def version(self, swarm: str, aggregate: str, aggregate_id: str) -> int:
        """The expected last sequence for the next append to this aggregate (0: none yet)."""
        return self.versions.get(f"{swarm}/{aggregate}/{aggregate_id}", 0)

    def task(self, swarm: str, task_id: str) -> TaskView | None:
        view = self.swarms.get(swarm)
        return view.tasks.get(task_id) if view else None

    def agent(self, swarm: str, agent_id: str) -> AgentView | None:
        view = self.swarms.get(swarm)
        return view.agents.get(agent_id) if view else None


def task_sort_key(task: TaskView) -> tuple[int, float, int]:
    """Higher priority first, then oldest."""
    return (PRIORITY_RANK[task.priority], task.created_at, task.created_seq)


def priority_key(task: TaskView) -> tuple[int, float, int, str]:
    """Higher priority first, then oldest (``task_sort_key``), then id: the order of a listing
    by ``priority``, one task after another with no two equal."""
    rank, created_at, created_seq = task_sort_key(task)
    return rank, created_at, created_seq, task.id


# What a board shows first of each status, when it cannot show every task: the unfinished ones
# in the order they are to be taken (priority, then oldest: the scheduler's order before aging),
# the finished ones newest first (created last: the ones that finished last, in a swarm whose
# tasks run about in the order they were made).
COLUMN_ORDER: dict[str, Order] = {
    status: "newest" if status in FINISHED else "priority" for status in STATUSES
}


def columns(tasks: Tasks, limit: int) -> dict[str, list[TaskView]]:
    """The first ``limit`` tasks of each status in its ``COLUMN_ORDER`` (every status named).
    Decodes only the tasks it returns: a finished status passes over the other frozen tasks by
    their status byte, and stops once it has as many as the status holds; an unfinished one
    reads the live tasks (no record)."""
    counts = tasks.status_counts()
    return {
        status: list(
            islice(
                tasks.in_order(status=status, order=COLUMN_ORDER[status]),
                min(limit, counts[status]),
            )
        )
        for status in STATUSES
    }
