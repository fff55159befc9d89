"""A long history in one process (issue 15): what folding, encoding and decoding a board of N
finished tasks costs in time and resident memory, without NATS.

For each N: the events of N finished tasks (``bench/scale.py``'s ``seed_events``) are folded into
a board, which is packed as a snapshot (``services.bus.snapshots.pack``). Each measurement that
reports memory runs in a fresh child process (so one's heap does not hide the next one's): the
fold (events generated as they are folded), and the decode of the packed snapshot (read from a
temporary file; the child imports what a service imports first, then reads ``VmRSS`` before and
after). Also: reads of one finished task (the first, then another), and of every task, from
the decoded board; and pages of 50 tasks as ``GET /swarms/{id}/tasks?limit=50`` builds them
(``task_page``, each task as JSON, the body encoded): the first page, a page from the middle
(``after`` the middle task), and a first page filtered by a tag no task has (it reads every
task: the worst case of a filter), each on the freshly decoded board (its first chunk read
included), best of ``PAGE_RUNS`` (the tag: one) with the chunk cache emptied before each.
Then the board stream's first message as the gateway builds it (``live.snapshot``: at most
``per_status`` tasks of each status, 200 by default, then its JSON), best of ``PAGE_RUNS`` from
a cold chunk cache, and the worst case of one of its columns: a status whose only task would be
the oldest of all (every other task's status byte read, none decoded). Last, the decode of the
same board in the earlier ``msgpack3:`` form, whose listing order is read from the records (the
one start after an upgrade).

Saving, as a service saves (``services.bus.snapshots.prepare``: everything ``Snapshots.save``
does but talk to NATS), in the fold's child after the board was sealed and encoded once, and
the heap frozen for the collector as a service process freezes it once replayed: before
each of ``SAVE_RUNS`` saves, ``SAVE_TASKS`` more tasks are folded (about the events between two
of a service's saves, 2,000 by default), so each save seals what they froze; meanwhile a ticker
task sleeps 1 ms at a time on the same event loop. ``save_loop_pause_ms``: the longest time
between two of its ticks, the worst of the saves (what every other coroutine of the service
waited at most: a claim, a request); ``save_s``: the save's wall time, their median.

Times are wall seconds and, for the fold and the decode, CPU seconds of the child (``_cpu_s``:
what a busy shared machine distorts least).

Run: ``.venv/bin/python bench/snapshot_memory.py [--tasks 100000 250000]``. Numbers:
docs/benchmarks.md ("Scale").
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import msgspec
from benchkit import process_rss, tick
from scale import SWARM, seed_events

from schemas.board import Board, SwarmView
from schemas.fold import apply
from services.bus import snapshots

MIB = 1024 * 1024
PAGE = 50
PAGE_RUNS = 5
SAVE_RUNS = 3
SAVE_TASKS = 500  # folded before each save: ~2,000 events, a service's ``snapshot_every``
TICK = 0.001  # the ticker's sleep while a save runs


def rss() -> int:
    gc.collect()
    return process_rss(os.getpid())


def fold(tasks: int) -> Board:
    board = Board()
    for seq, event in enumerate(seed_events(tasks), 1):
        apply(board, event, seq)
    return board


def child_fold(tasks: int, out: Path) -> dict[str, float]:
    before = rss()
    started, cpu = time.perf_counter(), time.process_time()
    board = fold(tasks)
    folded, fold_cpu = time.perf_counter() - started, time.process_time() - cpu
    after = rss()
    started = time.perf_counter()
    for view in board.swarms.values():  # as saving a snapshot does (a thread, in a service)
        view.tasks.seal()
    sealed = time.perf_counter() - started
    started = time.perf_counter()
    raw = snapshots.encode(board)
    encoded = time.perf_counter() - started
    started = time.perf_counter()
    body = snapshots.compress(raw)
    compressed = time.perf_counter() - started
    out.write_bytes(body)
    # the ``msgpack3:`` form: each swarm's tasks without their created sequences (the last
    # element), the rest as ``snapshots.encode`` writes it
    versions = {k: v for k, v in board.versions.items() if "/task/" not in k}
    of_tasks = {k: v for k, v in board.versions.items() if "/task/" in k}
    earlier = msgspec.msgpack.encode(
        [msgspec.structs.replace(board, versions=versions), of_tasks],
        enc_hook=lambda tasks: tasks.to_wire()[:-1],
    )
    out.with_suffix(".msgpack3").write_bytes(snapshots.NO_ORDER + zlib.compress(earlier, 3))
    gc.collect()  # as a service process does once it has replayed (``Service.main``)
    gc.freeze()
    pauses, saves = [], []
    for run in range(SAVE_RUNS):
        for seq, event in enumerate(
            seed_events(SAVE_TASKS, tasks + run * SAVE_TASKS, opening=False), board.seq + 1
        ):
            apply(board, event, seq)
        pause, took = asyncio.run(saving(board))
        pauses.append(pause)
        saves.append(took)
    return {
        "fold_s": folded,
        "fold_cpu_s": fold_cpu,
        "fold_rss_mib": (after - before) / MIB,
        "seal_s": sealed,
        "encode_s": encoded,
        "compress_s": compressed,
        "raw_mb": len(raw) / 1e6,
        "stored_mb": len(body) / 1e6,
        "save_loop_pause_ms": max(pauses) * 1e3,
        "save_s": statistics.median(saves),
    }


async def saving(board: Board) -> tuple[float, float]:
    """One save of ``board`` as a service makes it (``snapshots.prepare``), with a ticker on the
    loop: the longest time between two ticks (seconds), and the save's wall time."""
    gaps: list[float] = []
    ticker = asyncio.create_task(tick(gaps, TICK))
    await asyncio.sleep(TICK)  # the ticker has begun
    started = time.perf_counter()
    seq, body = await snapshots.prepare(board)
    took = time.perf_counter() - started
    await asyncio.sleep(TICK)  # a tick after the save's last step on the loop
    ticker.cancel()
    assert seq == board.seq and body.startswith(snapshots.CHUNKED), "not a snapshot of the board"
    return max(gaps), took


def child_decode(path: Path) -> dict[str, float]:
    body = path.read_bytes()
    before = rss()
    started, cpu = time.perf_counter(), time.process_time()
    board = snapshots.unpack_body(body)
    decoded, decode_cpu = time.perf_counter() - started, time.process_time() - cpu
    after = rss()
    swarm = board.swarms[SWARM]
    started = time.perf_counter()
    one = swarm.tasks.get("seed-0000001")
    read_first = time.perf_counter() - started
    started = time.perf_counter()
    one = swarm.tasks.get("seed-0000002")
    read_one = time.perf_counter() - started
    started = time.perf_counter()
    statuses = sum(1 for task in swarm.tasks.values() if task.status == "completed")
    read_all = time.perf_counter() - started
    assert one is not None and statuses == len(swarm.tasks), "the board is not what was folded"
    middle = f"seed-{len(swarm.tasks) // 2:07d}"
    page_first = page_seconds(swarm)
    page_middle = page_seconds(swarm, after=middle)
    page_rare_tag = page_seconds(swarm, 1, tag="no-task-has-it")
    board_first, board_best = first_message_seconds(board)
    started = time.perf_counter()  # a column's worst case: its one task the oldest of all
    assert next(swarm.tasks.in_order(status="failed", order="newest"), None) is None
    rare_scan = time.perf_counter() - started
    earlier = path.with_suffix(".msgpack3").read_bytes()
    started = time.process_time()
    assert snapshots.unpack_body(earlier).swarms[SWARM].tasks._order == swarm.tasks._order
    decode_earlier = time.process_time() - started
    return {
        "decode_s": decoded,
        "decode_cpu_s": decode_cpu,
        "decode_rss_mib": (after - before) / MIB,
        "process_rss_mib": after / MIB,
        "read_first_us": read_first * 1e6,
        "read_one_us": read_one * 1e6,
        "read_all_s": read_all,
        "page_first_ms": page_first * 1e3,
        "page_middle_ms": page_middle * 1e3,
        "page_rare_tag_s": page_rare_tag,
        "board_first_message_first_ms": board_first * 1e3,
        "board_first_message_ms": board_best * 1e3,
        "rare_status_scan_ms": rare_scan * 1e3,
        "decode_msgpack3_cpu_s": decode_earlier,
    }


def page_seconds(
    swarm: SwarmView, runs: int = PAGE_RUNS, *, after: str | None = None, tag: str | None = None
) -> float:
    """The best of ``runs`` pages of ``PAGE`` tasks (after the task ``after``, of ``tag``), each
    from a cold chunk cache, as the gateway answers one: the page, its JSON, the body. (The
    gateway's modules are imported here, after the decode's memory was measured.)"""
    from services.gateway.commands import task_json, task_page

    best = float("inf")
    for _ in range(runs):
        swarm.tasks._cache.clear()
        started = time.perf_counter()
        tasks, _ = task_page(swarm, limit=PAGE, after=after, tag=tag)
        body = msgspec.json.encode([task_json(task) for task in tasks])
        best = min(best, time.perf_counter() - started)
        assert body and (tasks or tag is not None), "an empty page"
    return best


def first_message_seconds(board: Board, runs: int = PAGE_RUNS) -> tuple[float, float]:
    """The board stream's first message as the gateway sends one (``live.snapshot``, then its
    JSON), each from a cold chunk cache: the very first (which also builds the order's status
    bytes, once per process) and the best of ``runs``."""
    from services.gateway import live

    swarm = board.swarms[SWARM]
    times = []
    for _ in range(runs):
        swarm.tasks._cache.clear()
        started = time.perf_counter()
        body = json.dumps(live.snapshot(swarm, board.seq))
        times.append(time.perf_counter() - started)
        assert body, "no message"
    return times[0], min(times)


def run_child(*args: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", *args], check=True, capture_output=True, text=True
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[100_000, 250_000])
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "fold":
            print(json.dumps(child_fold(int(rest[0]), Path(rest[1]))))
        else:
            print(json.dumps(child_decode(Path(rest[0]))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        for tasks in args.tasks:
            path = Path(tmp) / f"board-{tasks}"
            folded = run_child("fold", str(tasks), str(path))
            decoded = run_child("decode", str(path))
            row = {"tasks": tasks, **folded, **decoded}
            print(json.dumps({k: round(v, 3) for k, v in row.items()}), flush=True)


if __name__ == "__main__":
    main()
