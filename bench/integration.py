"""The integration benchmark (issue 11): what landing a task's work costs, and how it grows when
several agents land at once; then a swarm building a small project from a task DAG.

1. Landing at once (the executor's git steps, ``services/executor/integration.py``, on local
   sandboxes, a bare repository on local disk as the remote). For N = 1, 4, 8 agents, per round:
   every agent starts a task's branch from the tip, writes a file of its own and keeps it
   (commit + push of ``swarm/<task>``: not measured), then all N land at the same moment. Per
   task: the seconds its landing took (fetch, trailer check, rebase, push; each lost push race
   means all of it again) and its tries. Next to it, raw git: one ``fetch + rebase + push`` of
   such a commit from a plain clone with nobody else pushing, the floor a landing cannot go
   under.
2. ``--swarm``: the real thing. ``swarm up`` (embedded NATS, gateway, scheduler, chat and an
   executor hosting ``--agents`` agents) in a temp directory, a project on a bare repository
   with ``verify`` (the project's own unit tests), and a task DAG of shell tasks building a
   small Python package: every task's work must end on the remote's branch. Prints each task's
   landing (commit, tries, seconds from ``completed`` to ``integrated``) and the remote's log.

Run: ``.venv/bin/python bench/integration.py [--rounds R] [--swarm [--agents M]]``. Numbers:
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.bus.embedded import free_port
from services.executor import integration
from services.executor.git import CHECKOUT_DIR
from services.executor.sandboxes import GitCall
from services.executor.sandboxes.local import LocalBackend, LocalSandbox
from services.executor.workplan import Landed, WorkPlan

REPO = Path(__file__).resolve().parent.parent
GIT_ENV = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null"}


def git(*args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=Bench", "-c", "user.email=bench@swarm.local", *args],
        cwd=cwd, env=GIT_ENV, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.strip()


def bare_remote(root: Path) -> Path:
    """A bare repository on ``main`` with a seed commit."""
    bare, seed = root / "remote.git", root / "seed"
    git("init", "-q", "--bare", "-b", "main", str(bare))
    git("init", "-q", "-b", "main", str(seed))
    (seed / "README").write_text("bench\n")
    git("add", "README", cwd=seed)
    git("commit", "-q", "-m", "seed", cwd=seed)
    git("remote", "add", "origin", str(bare), cwd=seed)
    git("push", "-q", "origin", "main", cwd=seed)
    return bare


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.0f} ms"


# --- 1. landing at once ------------------------------------------------------------------------


def plan_for(task: str, agent: str) -> WorkPlan:
    return WorkPlan(
        swarm="bench", task=task, attempt=1, title=f"bench {task}", project="p1",
        mode="integrate", onto="main", branch=f"swarm/{task}", strategy="rebase", verify=None,
        identity=(agent, f"{agent}@swarm.local"),
    )  # fmt: skip


@dataclass
class Round:
    agents: int
    seconds: list[float]  # per task: its landing
    tries: list[int]
    wall: float  # from the start of the landings to the last one landed


async def landing_round(
    sandboxes: list[LocalSandbox], round_no: int, call: Callable[[WorkPlan], GitCall]
) -> Round:
    size = len(sandboxes)
    plans = [plan_for(f"n{size}-r{round_no}-{i}", s.agent) for i, s in enumerate(sandboxes)]
    ready: list[tuple[str, str]] = []
    for sandbox, plan in zip(sandboxes, plans, strict=True):
        base = await integration.start(sandbox, plan, call(plan))
        path = Path(sandbox.workdir) / CHECKOUT_DIR / f"{plan.task}.txt"
        path.write_text(f"{plan.task}\n")
        head, _ = await integration.keep(sandbox, plan, call(plan))
        ready.append((base, head))
    started = time.monotonic()
    outcomes = await asyncio.gather(
        *(
            integration.land(sandbox, plan, base, head, functools.partial(call, plan))
            for sandbox, plan, (base, head) in zip(sandboxes, plans, ready, strict=True)
        )
    )
    wall = time.monotonic() - started
    landed = [o for o in outcomes if isinstance(o, Landed)]
    if len(landed) != len(outcomes):
        raise SystemExit(f"a landing did not land: {outcomes}")
    return Round(len(sandboxes), [o.seconds for o in landed], [o.tries for o in landed], wall)


def raw_landing(bare: Path, root: Path, rounds: int) -> list[float]:
    """``fetch + rebase + push`` of one new commit from a plain clone, nobody else pushing."""
    clone = root / "raw"
    git("clone", "-q", str(bare), str(clone))
    took = []
    for index in range(rounds):
        (clone / f"raw-{index}.txt").write_text("raw\n")
        git("add", "-A", cwd=clone)
        git("commit", "-q", "-m", f"raw {index}", cwd=clone)
        started = time.monotonic()
        git("fetch", "-q", "origin", cwd=clone)
        git("rebase", "-q", "origin/main", cwd=clone)
        git("push", "-q", "origin", "HEAD:main", cwd=clone)
        took.append(time.monotonic() - started)
    return took


async def landing_bench(rounds: int, sizes: list[int]) -> None:
    root = Path(tempfile.mkdtemp(prefix="swarm-bench-integration-"))
    try:
        bare = bare_remote(root)
        backend = LocalBackend(root / "agents")

        def call(plan: WorkPlan) -> GitCall:
            return GitCall.within(120, identity=plan.identity)

        raw = raw_landing(bare, root, max(rounds * 2, 10))
        rows = []
        for size in sizes:
            sandboxes = []
            for i in range(size):
                sandbox = await backend.create("bench", f"n{size}-a{i}")
                await sandbox.git_clone(f"file://{bare}", "main", CHECKOUT_DIR, GitCall.within(60))
                sandboxes.append(sandbox)
            found = [await landing_round(sandboxes, r, call) for r in range(rounds)]
            rows.append(found)
        load = os.getloadavg()
        print(
            f"Landing at once: {rounds} rounds per size, local bare remote, "
            f"{os.cpu_count()} cores, load average {load[0]:.1f}"
        )
        print()
        print(
            f"{'agents':>6}  {'landings':>8}  {'p50/task':>10}  {'p90/task':>10}  "
            f"{'max/task':>10}  {'tries avg':>9}  {'tries max':>9}  {'all landed':>10}"
        )
        for found in rows:
            seconds = [s for r in found for s in r.seconds]
            tries = [t for r in found for t in r.tries]
            walls = [r.wall for r in found]
            print(
                f"{found[0].agents:>6}  {len(seconds):>8}  {ms(percentile(seconds, 50)):>10}  "
                f"{ms(percentile(seconds, 90)):>10}  {ms(max(seconds)):>10}  "
                f"{statistics.mean(tries):>9.2f}  {max(tries):>9}  "
                f"{ms(statistics.median(walls)):>10}"
            )
        print(
            f"{'raw':>6}  {len(raw):>8}  {ms(percentile(raw, 50)):>10}  "
            f"{ms(percentile(raw, 90)):>10}  {ms(max(raw)):>10}  "
            f"{'':>9}  {'':>9}  (fetch + rebase + push, no race)"
        )
        landed = int(git("--git-dir", str(bare), "rev-list", "--count", "main"))
        expected = 1 + rounds * sum(sizes) + len(raw)
        print(f"\ncommits on main: {landed} (expected {expected}: every landing exactly once)")
        if landed != expected:
            raise SystemExit("the branch does not hold every landing exactly once")
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --- 2. a swarm building a small project -------------------------------------------------------

OPS = {"add": "a + b", "sub": "a - b", "mul": "a * b", "div": "a / b"}


def dag() -> list[dict[str, Any]]:
    """A small package, one shell task per piece: the package, then each operation and its
    test in parallel, then the docs and a CLI that need all of them."""
    tasks: list[dict[str, Any]] = [
        {
            "id": "package",
            "prompt": 'mkdir -p calc tests && echo \'"""A small calculator."""\' > calc/__init__.py'
            " && touch tests/__init__.py && echo __pycache__/ > .gitignore",
        }
    ]
    for op, expr in OPS.items():
        tasks.append(
            {
                "id": f"op-{op}",
                "depends": ["package"],
                "prompt": f"printf 'def {op}(a, b):\\n    return {expr}\\n' > calc/{op}.py",
            }
        )
        tasks.append(
            {
                "id": f"test-{op}",
                "depends": [f"op-{op}"],
                "prompt": (
                    f"printf 'import unittest\\nfrom calc.{op} import {op}\\n\\n\\n"
                    f"class T(unittest.TestCase):\\n    def test_{op}(self):\\n"
                    f"        self.assertEqual({op}(6, 3), {eval(expr, {'a': 6, 'b': 3})!r})\\n'"
                    f" > tests/test_{op}.py"
                ),
            }
        )
    ops = [f"op-{op}" for op in OPS]
    tasks.append(
        {
            "id": "docs",
            "depends": ops,
            "prompt": "{ echo '# calc'; for f in calc/*.py; do echo \"- $f\"; done; } > README",
        }
    )
    tasks.append(
        {
            "id": "cli",
            "depends": [*ops, *(f"test-{op}" for op in OPS)],
            "prompt": (
                "printf 'import sys\\nfrom calc import add, sub, mul, div\\n\\n"
                'OPS = {"add": add.add, "sub": sub.sub, "mul": mul.mul, "div": div.div}\\n'
                "print(OPS[sys.argv[1]](float(sys.argv[2]), float(sys.argv[3])))\\n'"
                " > calc/__main__.py && python3 -m calc mul 6 7"
            ),
        }
    )
    return tasks


class Http:
    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read() or b"null")


def wait(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = condition()
        except (urllib.error.URLError, ConnectionError, OSError):
            found = None
        if found:
            return found
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def swarm_bench(agents: int) -> int:
    root = Path(tempfile.mkdtemp(prefix="swarm-bench-dag-"))
    token = secrets.token_hex(16)
    port = free_port()
    config = root / "swarm.toml"
    config.write_text(
        "".join(
            f'[[agents]]\nid = "dev-{i}"\nname = "Dev {i}"\nrole = "dev"\nskills = ["dev"]\n\n'
            for i in range(1, agents + 1)
        )
    )
    bare = bare_remote(root)
    env = {**os.environ, "SWARM_API_TOKEN": token, "SWARM_CONFIG": str(config)}
    up = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "up", "--data-dir", str(root / "data"),
         "--gateway-port", str(port), "--swarm", "demo"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    api = Http(f"http://127.0.0.1:{port}", token)
    try:
        wait(lambda: api.call("GET", "/health")["ok"], 90, "swarm up to be healthy")
        wait(
            lambda: (
                len([a for a in api.call("GET", "/swarms/demo/agents") if a["executor"]]) == agents
            ),
            60,
            "the agents",
        )
        project = api.call(
            "POST",
            "/projects",
            {"name": "calc", "gitUrl": f"file://{bare}", "swarm": "demo",
             "verify": "python3 -m unittest discover -q 2>&1 | tail -3"},
        )  # fmt: skip
        api.call("POST", f"/projects/{project['id']}/init?wait=1&timeout=60")
        started = time.monotonic()
        for spec in dag():
            api.call("POST", "/swarms/demo/tasks",
                     {"title": spec["id"], "runtime": "shell", **spec})  # fmt: skip

        def settled() -> list[dict[str, Any]] | None:
            tasks = [api.call("GET", f"/swarms/demo/tasks/{spec['id']}") for spec in dag()]
            for task in tasks:
                if task["status"] not in ("completed", "failed", "cancelled"):
                    return None
                if (task.get("integration") or {}).get("state") == "landing":
                    return None
            return tasks

        tasks = wait(settled, 300, "every task to finish and land")
        wall = time.monotonic() - started
        print(f"\nA swarm of {agents} agents building a small package from a DAG of "
              f"{len(tasks)} shell tasks (verify: the package's unit tests)\n")  # fmt: skip
        print(f"{'task':<10} {'status':<10} {'agent':<7} {'base':<8} {'landed':<8} "
              f"{'tries':>5} {'landing':>9} {'completed→integrated':>21}")  # fmt: skip
        for task in tasks:
            work = task.get("integration") or {}
            times = {e["type"]: e["time"] for e in task["events"]}
            gap = times.get("task.integrated", 0) - times.get("task.completed", 0)
            print(
                f"{task['id']:<10} {task['status']:<10} {task['agent']:<7} "
                f"{str(work.get('base'))[:7]:<8} {str(work.get('landed'))[:7]:<8} "
                f"{work.get('tries', 0):>5} {ms(work.get('seconds') or 0):>9} {ms(gap):>21}"
            )
        landed_all = all((t.get("integration") or {}).get("state") == "landed" for t in tasks)
        print(f"\nwall time, first task created to last landed: {wall:.1f} s")
        print(f"every task's work on main: {landed_all}\n")
        trailer = "%(trailers:key=Swarm-Task,valueonly,separator=)"
        print(git("--git-dir", str(bare), "log", f"--format=%h %<(8)%an %s  [{trailer}]", "main"))
        print()
        print(git("--git-dir", str(bare), "ls-tree", "-r", "--name-only", "main"))
        return 0 if landed_all else 1
    finally:
        os.killpg(up.pid, signal.SIGTERM)
        try:
            up.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds per size (default 5)")
    parser.add_argument("--sizes", default="1,4,8", help="agents landing at once (default 1,4,8)")
    parser.add_argument("--swarm", action="store_true", help="also run the DAG through swarm up")
    parser.add_argument("--agents", type=int, default=4, help="agents for --swarm (default 4)")
    args = parser.parse_args(argv)
    asyncio.run(landing_bench(args.rounds, [int(s) for s in args.sizes.split(",")]))
    if args.swarm:
        return swarm_bench(args.agents)
    return 0


if __name__ == "__main__":
    sys.exit(main())
