"""The long chaos run (issue 15): the suite's chaos test (``tests/chaos_support.py``) at the size
of the black-box run that found lost attempts — 150 shell tasks created over HTTP with
Idempotency-Keys while gateway, scheduler, chat, MCP and two executors are killed -9 about every
1.5 s for 25 s and started again — then checked from the event log the same way: every task
created once and completed once, no attempt used up by churn, no attempt's command run twice.

It prints each run's figures (kills per kind, restarts, wall time, attempts used, requeues, the
client's retries) and any problem found; its exit code is 1 if any run found one.

Run: ``.venv/bin/python bench/chaos.py [--runs N] [--seed S] [--tasks 150] [--seconds 25]
[--every 1.5] [--nats]`` (``--nats``: kill nats-server instead of the services). Numbers:
docs/benchmarks.md, "Chaos".
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from chaos_support import SERVICE_KINDS, Plan, run_chaos  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1, help="runs, one after the other")
    parser.add_argument("--seed", type=int, help="the first run's seed (then +1 per run)")
    parser.add_argument("--tasks", type=int, default=150)
    parser.add_argument("--seconds", type=float, default=25.0, help="seconds of kills")
    parser.add_argument("--every", type=float, default=1.5, help="mean seconds between kills")
    parser.add_argument("--executors", type=int, default=2)
    parser.add_argument("--agents", type=int, default=3, help="agents per executor")
    parser.add_argument("--lease", type=float, default=2.0, help="agents' lease, seconds")
    parser.add_argument("--keep", action="store_true", help="keep each run's directory (logs)")
    parser.add_argument("--nats", action="store_true", help="kill nats-server, not the services")
    args = parser.parse_args()
    first = args.seed if args.seed is not None else random.randrange(1_000_000)
    failed = 0
    for run in range(args.runs):
        plan = Plan(
            seed=first + run,
            tasks=args.tasks,
            seconds=args.seconds,
            every=args.every,
            executors=args.executors,
            agents=args.agents,
            kinds=("nats",) if args.nats else SERVICE_KINDS,
            down=1.0 if args.nats else 0.5,
            lease=args.lease,
            settle=300.0,
        )
        began = time.monotonic()
        if args.keep:
            root = Path(tempfile.mkdtemp(prefix="swarm-chaos-"))
            outcome = run_chaos(root / "chaos", plan)
            print(f"  kept             {root}/chaos (logs/, events.json)")
        else:
            with tempfile.TemporaryDirectory(prefix="swarm-chaos-") as temporary:
                outcome = run_chaos(Path(temporary) / "chaos", plan)
        print(outcome.figures.report())
        print(f"  whole run        {time.monotonic() - began:.1f}s (with start and stop)")
        for problem in outcome.problems:
            print(f"  PROBLEM: {problem}")
        for line in outcome.churn:
            print(f"  CHURN: {line}")
        if outcome.problems or outcome.churn:
            failed += 1
        else:
            print("  every task created once and completed once; no attempt used up by churn")
        sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
