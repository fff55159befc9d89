"""What the benchmarks share: clocks (CPU and memory from /proc), percentiles, the services as
child processes, and a stream configured like ``SWARM_EVENTS`` for the raw comparisons.

The benchmarks run as scripts (``.venv/bin/python bench/<name>.py``), so this module is imported
by its plain name from the ``bench`` directory.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from schemas import subjects
from services.bus.service import Bus
from services.bus.streams import Layout, stream_configs

REPO = Path(__file__).resolve().parent.parent


# --- clocks ------------------------------------------------------------------------------------


def process_cpu(pid: int | None) -> float:
    """CPU seconds (user + system) of ``pid``, or of this process when ``pid`` is None."""
    if pid is None:
        return time.process_time()
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan  # no procfs: the column shows "-"
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_rss(pid: int) -> int:
    """Resident memory of ``pid`` in bytes (``VmRSS``), 0 if it cannot be read."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


async def tick(gaps: list[float], every: float = 0.001) -> None:
    """Sleep ``every`` seconds at a time on the running loop until cancelled, adding the time
    between two wake-ups to ``gaps``: the longest is how long the loop was held at most."""
    last = time.perf_counter()
    while True:
        await asyncio.sleep(every)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now


def percentile(values: list[float], p: float) -> float:
    """Nearest rank: the smallest value with at least ``p`` percent of the values at or below."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def machine() -> str:
    """Cores, CPU model and memory: what a reader needs to weigh the numbers."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as meminfo:
            total = int(meminfo.readline().split()[1]) // 1024
    except OSError:
        total = 0
    return f"{os.cpu_count()} cores ({model}), {total:,} MiB RAM"


def load_average() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


# --- report helpers ----------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def times(value: float) -> str:
    """Rounded down, so a ratio just under a target never prints as the target."""
    return f"{math.floor(value * 100) / 100:.2f}x"


def verdict(ok: bool, target: str) -> str:
    return f"{'PASS' if ok else 'MISS'} ({target})"


# --- the processes -----------------------------------------------------------------------------


def service_env(
    nats_url: str, port: int, data_dir: Path, swarm: str, log_level: str
) -> dict[str, str]:
    """The environment the services get, as ``swarm up`` gives it (a fresh API token)."""
    return {
        **os.environ,
        "NATS_URL": nats_url,
        "SWARM_API_TOKEN": secrets.token_hex(16),
        "SWARM_GATEWAY_HOST": "127.0.0.1",
        "SWARM_GATEWAY_PORT": str(port),
        "SWARM_DEFAULT_ID": swarm,
        "SWARM_DATA_DIR": str(data_dir),
        "SWARM_LOG_LEVEL": log_level,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }


@dataclass
class Processes:
    """The services, each a child process with its log file; ``cpu`` reads all their clocks."""

    root: Path
    env: dict[str, str]
    children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    others: dict[str, int] = field(default_factory=dict)  # label -> pid: CPU read, not owned
    profilers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    spawned_at: dict[str, float] = field(default_factory=dict)  # label -> time.time()
    python: str = sys.executable  # another checkout's interpreter (bench/cold_ab.py)

    def start(self, label: str, service: str, *args: str) -> None:
        log_path = self.root / "logs" / f"{label}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log_file:
            self.spawned_at[label] = time.time()
            self.children[label] = subprocess.Popen(
                [self.python, "-m", f"services.{service}", *args],
                env=self.env,
                cwd=self.root,  # no swarm.toml here: flags and environment only
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def check_alive(self) -> None:
        for label, child in self.children.items():
            if child.poll() is not None:
                tail = (self.root / "logs" / f"{label}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{label} exited with code {child.returncode}:\n{tail}")

    def pids(self, prefix: str) -> set[int]:
        return {c.pid for label, c in self.children.items() if label.startswith(prefix)}

    def cpu(self) -> dict[str, float]:
        pids = {label: child.pid for label, child in self.children.items()} | self.others
        return {label: process_cpu(pid) for label, pid in pids.items()}

    def profile(self, out_dir: Path) -> None:
        """Sample every service with py-spy (raw stacks in ``out_dir``) until ``end_profile``."""
        out_dir.mkdir(parents=True, exist_ok=True)
        spy = Path(sys.executable).parent / "py-spy"
        for label, child in self.children.items():
            self.profilers.append(
                subprocess.Popen(
                    [
                        str(spy),
                        "record",
                        "--pid",
                        str(child.pid),
                        "--format",
                        "raw",
                        "--rate",
                        "250",
                        "--nonblocking",
                        "--output",
                        str(out_dir / f"{label}.txt"),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )

    def signal_all(self, signum: int) -> None:
        """Send ``signum`` to every service still running."""
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signum)

    def end_profile(self) -> None:
        for spy in self.profilers:
            spy.send_signal(signal.SIGINT)
        for spy in self.profilers:
            spy.wait(30)
        self.profilers.clear()

    def stop_one(self, label: str, timeout: float = 20.0) -> None:
        """Stop one child (SIGTERM, then SIGKILL after ``timeout``); it is no longer listed."""
        child = self.children.pop(label)
        child.terminate()
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()

    def stop(self, timeout: float = 20.0) -> None:
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in self.children.values():
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        self.children.clear()


# --- raw JetStream -----------------------------------------------------------------------------


async def add_raw_stream(bus: Bus, name: str, prefix: str) -> None:
    """A stream configured exactly like ``SWARM_EVENTS`` but on ``<prefix>.>``, subjects no
    service follows: raw runs can go between the services' runs while they are up (idle)."""
    events = next(c for c in stream_configs(Layout.from_env()) if c.name == subjects.EVENTS_STREAM)
    config = dataclasses.replace(
        events, name=name, subjects=[f"{prefix}.>"], description="bench: raw appends"
    )
    await bus.js.add_stream(config)
