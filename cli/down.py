"""``swarm down``: stop the ``swarm up`` running on a data directory, as Ctrl-C there would.

It signals the supervisor whose pid the data directory's lock names (SIGTERM), and waits until
the lock is free: by then every service has stopped (executors apply their sandbox shutdown
policy: ``[daytona] shutdown = keep|stop|delete``) and NATS has flushed and exited.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import signal
import time
from pathlib import Path

from cli import envfile
from cli.up import LOCK_FILE
from schemas.errors import NotFound, Unavailable


def running_pid(data_dir: Path) -> int | None:
    """The pid of the ``swarm up`` holding ``data_dir``'s lock; None when nobody holds it."""
    path = data_dir / LOCK_FILE
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 64).decode(errors="replace").strip()
            return int(text) if text.isascii() and text.isdigit() else None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None  # we got the lock: nobody runs there
    finally:
        os.close(fd)


def run(args: argparse.Namespace) -> int:
    data_dir: Path = args.data_dir
    pid = running_pid(data_dir)
    if pid is None:
        raise NotFound(f"no swarm up is running on {data_dir}")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + args.timeout
    while running_pid(data_dir) is not None:
        if time.monotonic() > deadline:
            raise Unavailable(
                f"swarm up (pid {pid}) did not stop within {args.timeout:g}s; "
                f"kill it with: kill -9 {pid}"
            )
        time.sleep(0.1)
    print(f"stopped swarm up (pid {pid}) on {data_dir}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "down", help="stop the swarm up running on a data directory", description=__doc__
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(envfile.DEFAULT_DATA_DIR),
        help="the data directory of that swarm up (default ./.swarm)",
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (default 60)")
    parser.set_defaults(func=run)
