"""CPU-time sampling of a service process, for ``bench/lifecycle.py --cpu-profile DIR``.

Loaded by Python at start-up when this directory is on ``PYTHONPATH`` and
``SWARM_BENCH_CPU_PROFILE`` names a directory; does nothing otherwise. ``SIGUSR1`` starts
sampling, ``SIGUSR2`` stops it and writes ``<DIR>/<service>[-<executor>]-<pid>.txt``: one line
per distinct Python stack, ``frame;frame;... count`` (the collapsed form flame-graph tools read).

Why not py-spy alone: py-spy samples wall-clock time, and a process waiting for a CPU (runnable,
not running: the machine has 2 cores for 6 busy processes) is sampled wherever it was preempted,
most often just after a write woke the process it wrote to. py-spy put a third of each service
in ``socket.send``; /proc says the services spend 7-10 % of their CPU in the kernel. This sampler
uses ``ITIMER_PROF``, which counts the process's own CPU time (user and system), so each sample
stands for the same CPU time spent.
"""

from __future__ import annotations

import os

_OUT = os.environ.get("SWARM_BENCH_CPU_PROFILE")
INTERVAL = 0.001  # seconds of CPU time between samples

if _OUT:
    import collections
    import signal
    import sys
    from types import FrameType

    out_dir: str = _OUT
    _stacks: collections.Counter[str] = collections.Counter()

    def _name(frame: FrameType) -> str:
        code = frame.f_code
        where = code.co_filename.rsplit("site-packages/", 1)[-1]
        return f"{code.co_name} ({where}:{code.co_firstlineno})"

    def _sample(signum: int, frame: FrameType | None) -> None:
        names = []
        while frame is not None:
            names.append(_name(frame))
            frame = frame.f_back
        _stacks[";".join(reversed(names))] += 1

    def _start(signum: int, frame: FrameType | None) -> None:
        _stacks.clear()
        signal.setitimer(signal.ITIMER_PROF, INTERVAL, INTERVAL)

    def _stop(signum: int, frame: FrameType | None) -> None:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        label = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--executor-id=")), None)
        parts = (sys.argv[0] if sys.argv else "python").replace(os.sep, "/").split("/")
        service = parts[-2] if len(parts) > 1 else parts[-1]  # services/<name>/__main__.py
        name = f"{service}-{label}" if label else service
        with open(os.path.join(out_dir, f"{name}-{os.getpid()}.txt"), "w") as out:
            for stack, count in _stacks.items():
                out.write(f"{stack} {count}\n")

    signal.signal(signal.SIGPROF, _sample)
    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _stop)
