"""Chaos runs: the real processes killed -9 at random moments while tasks are created and run.

``run_chaos(root, plan)`` starts what ``swarm up`` starts (an embedded nats-server from the
wheel; gateway, scheduler, chat and MCP as ``python -m services.<name>`` with their settings in
the environment) plus ``plan.executors`` executors, each hosting ``plan.agents`` agents, through
``tests/processes.py``. Then, at once:

- a client creates ``plan.tasks`` shell tasks over HTTP, each with an ``Idempotency-Key`` of its
  own, sending a request again with the same key after any error (refused connection, reset,
  timeout, 5xx), as a client would, until it is answered 200, 201 or 202; and sending a part
  (``plan.resend``) of the answered requests once more, as if their answer had been lost;
- a chaos loop, for ``plan.seconds``, waits a random pause (the workload's pace, mean
  ``plan.every``) and kills one process with SIGKILL — every process of ``plan.kinds`` once per
  shuffled round (each executor on its own), so every kind dies — then starts it again (same
  settings, executor id and ports) after another random pause of at most ``plan.down``. With
  ``plan.kinds == ("nats",)`` it kills nats-server itself and restarts it on the same store and
  port.

The random choices come from ``random.Random(plan.seed)``: the seed is printed with the figures.
Once the chaos ends and every task was created, the run waits until every task is finished (a
condition polled with a deadline), reads the swarm's whole event log and checks it (``check``):

- ``problems``: a task created twice (two ``task.created`` for one request, or a request sent
  again answered with another id), asked for but missing, not ``completed``, or with more than
  one terminal event; an attempt whose command ran to the end twice; a completed attempt whose
  command never ran (each task's command appends ``<task> <attempt>`` to a file at its end);
- ``churn``: attempts used up without a run — a task's attempt that never reached ``running``
  (its claim lost with its agent to a dying executor) must go back to the queue as a lost claim
  (``task.requeued`` with ``cause: claim_lost``), which uses none of the task's run budgets,
  and one that ran must not.

The figures (tasks, kills per kind, restarts, wall time, attempts used, requeues, the client's
retries) print as one block; ``bench/chaos.py`` runs a longer plan and prints the same.
"""

from __future__ import annotations

import http.client
import itertools
import json
import random
import threading
import time
import urllib.error
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from processes import Cluster, Process

SERVICE_KINDS = ("gateway", "scheduler", "chat", "mcp", "executor")
TERMINAL = {"task.completed", "task.failed", "task.cancelled"}
FINISHED = {"completed", "failed", "cancelled"}
SWARM = "chaos"
CLIENT_PAUSE = 0.05  # seconds a client waits before sending a failed request again
CREATE_SPREAD = 0.6  # the tasks are created over this part of the chaos' time


@dataclass(frozen=True)
class Plan:
    """What a chaos run does. ``every``: mean seconds between kills; ``down``: at most this long
    between a kill and the restart; ``kinds``: what may be killed (``nats``: nats-server)."""

    seed: int
    tasks: int = 40
    seconds: float = 20.0
    every: float = 1.5
    down: float = 0.5
    executors: int = 2
    agents: int = 2
    kinds: tuple[str, ...] = SERVICE_KINDS
    work: tuple[float, float] = (0.2, 1.0)  # seconds each task's command sleeps: from, to
    resend: float = 0.25  # the part of the requests sent again once answered (answer "lost")
    # runs a task may lose with their agent before it fails: the chaos loses many on purpose;
    # a claim lost before its run must use none of it (``churn``)
    run_losses: int = 10
    lease: float = 2.0  # seconds without presence before an agent is lost (SWARM_LEASE_SECONDS)
    settle: float = 120.0  # seconds the tasks may take to finish once the chaos is over


@dataclass
class Figures:
    """What happened in one run."""

    seed: int
    tasks: int = 0
    kills: Counter[str] = field(default_factory=Counter)
    restarts: int = 0
    requests: int = 0  # HTTP requests the client sent to create the tasks
    retries: int = 0  # of which sent again after an error
    resent: int = 0  # requests sent again once answered, as if the answer had been lost
    answers: Counter[str] = field(default_factory=Counter)  # status or error -> how many
    chaos_seconds: float = 0.0
    settle_seconds: float = 0.0  # from the end of the chaos until every task was finished
    wall_seconds: float = 0.0  # from the first request to the last task finished
    attempts: int = 0  # attempts, summed over the tasks (1 per task without churn)
    claims_lost: int = 0  # attempts given back before they ran
    runs_lost: int = 0  # attempts given back after they started running
    most_runs_lost: int = 0  # by one task
    claims: int = 0
    runs: int = 0  # task.running events
    requeued_tasks: int = 0
    requeues: int = 0
    lines: int = 0  # commands that ran to the end
    longest: tuple[float, str] = (0.0, "")  # a task's longest wait between two of its events

    def report(self) -> str:
        kills = ", ".join(f"{kind} {n}" for kind, n in sorted(self.kills.items()))
        answers = ", ".join(f"{what} {n}" for what, n in sorted(self.answers.items()))
        return "\n".join(
            [
                f"chaos seed {self.seed}",
                f"  tasks            {self.tasks}",
                f"  kills            {sum(self.kills.values())} ({kills})",
                f"  restarts         {self.restarts}",
                f"  create requests  {self.requests} ({self.retries} sent again after an error, "
                f"{self.resent} once answered; {answers})",
                f"  wall time        {self.wall_seconds:.1f}s (chaos {self.chaos_seconds:.1f}s, "
                f"then {self.settle_seconds:.1f}s until every task finished)",
                f"  attempts         {self.attempts} ({self.claims} claims, {self.runs} runs; "
                f"given back: {self.claims_lost} before running, {self.runs_lost} while running, "
                f"at most {self.most_runs_lost} runs lost by one task)",
                f"  requeued         {self.requeued_tasks} tasks ({self.requeues} requeues)",
                f"  commands run     {self.lines} to the end",
                f"  longest step     {self.longest[0]:.1f}s ({self.longest[1]})",
            ]
        )


@dataclass
class Checked:
    """``problems``: tasks lost, duplicated, not completed, commands run twice; ``churn``:
    attempts used up without a run (a claim lost to a dying executor before ``running``)."""

    problems: list[str] = field(default_factory=list)
    churn: list[str] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    longest: tuple[float, str] = (0.0, "")  # the longest a task waited between two events


@dataclass
class Outcome:
    figures: Figures
    problems: list[str]
    churn: list[str]
    events: list[dict[str, Any]]


# --- the checks (pure: the event log and the lines the commands wrote) -----------------------


def check(
    events: list[dict[str, Any]],
    keys: dict[str, str],
    lines: list[str],
    again: dict[str, str] | None = None,
) -> Checked:
    """What is wrong with the run, and counts for the figures. ``keys``: idempotency key ->
    the task id the client was answered with; ``lines``: ``<task> <attempt>`` per command run
    to the end; ``again``: key -> the id named by the answer to the same request sent again."""
    checked = Checked()
    problems, churn, counts = checked.problems, checked.churn, checked.counts
    for key, task_id in sorted((again or {}).items()):
        if task_id != keys[key]:
            problems.append(f"the request {key} sent again named {task_id}, not {keys[key]}")
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        if event["type"].startswith("task."):
            by_task[event["id"]].append(event)
    created = Counter(e["title"] for e in events if e["type"] == "task.created")
    for title, count in sorted(created.items()):
        if count > 1:
            problems.append(f"{count} tasks created for one request: {title!r}")
    wanted = {f"chaos {key}" for key in keys}
    if set(created) != wanted:
        problems.append(
            f"created {sorted(set(created) - wanted)} unasked, {sorted(wanted - set(created))} "
            "asked for but missing"
        )
    ran = Counter(lines)
    for key, task_id in sorted(keys.items()):
        history = by_task.get(task_id, [])
        kinds = [e["type"] for e in history]
        ends = [e for e in history if e["type"] in TERMINAL]
        if [e["type"] for e in ends] != ["task.completed"]:
            problems.append(f"{task_id} ({key}) ended {[e['type'] for e in ends]}: {kinds}")
            continue
        finished = ends[0]["attempt"]
        started = sorted({e["attempt"] for e in history if e["type"] == "task.running"})
        for requeue in (e for e in history if e["type"] == "task.requeued"):
            ended = requeue["attempt"] - 1  # the attempt it gave back
            cause = requeue.get("cause")
            if ended not in started and cause != "claim_lost":
                churn.append(
                    f"{task_id}: attempt {ended} was lost before it ran, requeued as "
                    f"{cause or 'an attempt used up'}: {describe(history)}"
                )
            elif ended in started and cause == "claim_lost":
                churn.append(f"{task_id}: attempt {ended} ran, requeued as a lost claim")
            counts["claims_lost" if ended not in started else "runs_lost"] += 1
        lost_runs = sum(
            e["type"] == "task.requeued" and e["attempt"] - 1 in started for e in history
        )
        counts["most_runs_lost"] = max(counts["most_runs_lost"], lost_runs)
        for attempt in started:
            if ran[f"{task_id} {attempt}"] > 1:
                problems.append(f"{task_id}: attempt {attempt} ran to the end twice")
        if ran[f"{task_id} {finished}"] == 0:
            problems.append(f"{task_id}: completed attempt {finished} never ran its command")
        strays = [line for line in ran if line.split()[0] == task_id]
        if any(int(line.split()[1]) not in started for line in strays):
            problems.append(f"{task_id}: a command ran for an attempt that never started")
        counts["attempts"] += finished
        counts["claims"] += kinds.count("task.claimed")
        counts["runs"] += kinds.count("task.running")
        counts["requeues"] += kinds.count("task.requeued")
        counts["requeued_tasks"] += "task.requeued" in kinds
        for before, after in itertools.pairwise(history):
            gap = after["time"] - before["time"]
            if gap > checked.longest[0]:
                step = f"{before['type'][5:]} -> {after['type'][5:]}"
                checked.longest = (gap, f"{task_id} {step}")
    return checked


def describe(history: list[dict[str, Any]]) -> str:
    """A task's events in short: ``claimed(1, a11) requeued(2: why) …``."""
    parts = []
    for event in history:
        verb = event["type"].split(".", 1)[1]
        detail = [str(event.get("attempt", ""))]
        if event.get("agent"):
            detail.append(event["agent"])
        if event.get("reason"):
            detail.append(event["reason"])
        parts.append(f"{verb}({', '.join(d for d in detail if d)})")
    return " ".join(parts)


# --- the run ----------------------------------------------------------------------------------


class Client(threading.Thread):
    """Creates the tasks, each request sent again with its key until it is answered."""

    def __init__(self, cluster: Cluster, plan: Plan, ran_file: Path, rng: random.Random) -> None:
        super().__init__(name="chaos-client", daemon=True)
        self.cluster = cluster
        self.plan = plan
        self.ran_file = ran_file
        spread = plan.seconds * CREATE_SPREAD / plan.tasks
        self.gaps = [rng.uniform(0, 2 * spread) for _ in range(plan.tasks)]
        self.work = [round(rng.uniform(*plan.work), 2) for _ in range(plan.tasks)]
        self.resend = [rng.random() < plan.resend for _ in range(plan.tasks)]
        self.answered_again: dict[str, str] = {}  # key -> the id a request sent again named
        self.keys: dict[str, str] = {}  # idempotency key -> task id
        self.requests = 0
        self.retries = 0
        self.answers: Counter[str] = Counter()
        self.started_at = 0.0
        self.error: BaseException | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        self.started_at = time.monotonic()
        try:
            for index, gap in enumerate(self.gaps):
                if self.stop.wait(gap):  # the workload's pace
                    return
                key = f"{self.plan.seed}-{index}"
                self.keys[key] = self.create(key, self.work[index])
                if self.resend[index]:  # as if the answer had been lost on its way
                    self.answered_again[key] = self.create(key, self.work[index])
        except BaseException as error:  # surfaced by the test
            self.error = error

    def create(self, key: str, work: float) -> str:
        script = f'sleep {work}; echo "$SWARM_TASK_ID $SWARM_ATTEMPT" >> {self.ran_file}'
        body = {"title": f"chaos {key}", "runtime": "shell", "prompt": script}
        path = f"/swarms/{SWARM}/tasks"
        while not self.stop.is_set():
            self.requests += 1
            try:
                status, answer = self.cluster.api.call(
                    "POST", path, body, headers={"Idempotency-Key": key}, timeout=10
                )
            except (OSError, http.client.HTTPException, urllib.error.URLError) as error:
                self.answers[type(error).__name__] += 1
            else:
                self.answers[str(status)] += 1
                if status in (200, 201, 202):
                    return str(answer["id"])
            self.retries += 1
            self.stop.wait(CLIENT_PAUSE)
        raise RuntimeError(f"stopped before {key} was created")


class Chaos:
    """Kills one process at a time, at random, and starts it again."""

    def __init__(self, cluster: Cluster, services: dict[str, list[Process]], rng: random.Random):
        self.cluster = cluster
        self.services = services  # kind -> its processes
        self.rng = rng
        self.kills: Counter[str] = Counter()
        self.restarts = 0
        self.round: list[tuple[str, Process | None]] = []

    def victim(self, kinds: tuple[str, ...]) -> tuple[str, Process | None]:
        """The next in a shuffled round of every process of ``kinds`` (nats-server: None)."""
        if not self.round:
            self.round = [
                (kind, process)
                for kind in kinds
                for process in (self.services[kind] if kind != "nats" else [None])
            ]
            self.rng.shuffle(self.round)
        return self.round.pop()

    def strike(self, kind: str, process: Process | None, down: float) -> None:
        if process is None:
            self.cluster.nats.kill()
        else:
            process.kill()
        self.kills[kind] += 1
        time.sleep(self.rng.uniform(0, down))  # how long it stays dead: the workload
        if process is None:
            self.cluster.nats.start()
        else:
            process.start()
        self.restarts += 1


def run_chaos(root: Path, plan: Plan) -> Outcome:
    """One chaos run under ``root``; the cluster is closed (nothing may be left) before this
    returns."""
    rng = random.Random(plan.seed)
    cluster = Cluster(root, lease=plan.lease).start_nats()
    ran_file = root / "ran.txt"
    try:
        gateway = cluster.gateway()
        cluster.wait_ready(gateway, timeout=60)
        cluster.api.ok("POST", "/swarms", {"id": SWARM, "name": "chaos"})
        hosts = {
            f"agent-{e}{a}": f"ex-{e}"
            for e in range(1, plan.executors + 1)
            for a in range(1, plan.agents + 1)
        }
        executors = [
            cluster.executor(
                f"ex-{e}",
                SWARM,
                [f"{agent}:worker:work" for agent, host in hosts.items() if host == f"ex-{e}"],
            )
            for e in range(1, plan.executors + 1)
        ]
        losses = str(plan.run_losses)  # the older name too, for a scheduler that knows only it
        budgets = {"SWARM_MAX_RUN_LOSSES": losses, "SWARM_MAX_ATTEMPTS": losses}
        services = {
            "gateway": [gateway],
            "scheduler": [cluster.scheduler("main", budgets)],
            "chat": [cluster.spawn("chat")],
            "mcp": [cluster.mcp()],
            "executor": executors,
        }
        everything = [p for group in services.values() for p in group]
        cluster.wait_ready(*everything, timeout=90)
        cluster.wait_agents(SWARM, hosts, timeout=60)

        client = Client(cluster, plan, ran_file, rng)
        chaos = Chaos(cluster, services, rng)
        client.start()
        began = time.monotonic()
        try:
            while time.monotonic() - began < plan.seconds:
                time.sleep(rng.uniform(0.5, 1.5) * plan.every)  # the chaos' pace: the workload
                chaos.strike(*chaos.victim(plan.kinds), plan.down)
        finally:
            chaos_seconds = time.monotonic() - began
            client.join(timeout=plan.settle)
            client.stop.set()
            client.join()
        if client.error is not None:
            raise AssertionError(f"the client failed: {client.error!r}\n{cluster.tails()}")
        ids = set(client.keys.values())

        def all_finished() -> bool:
            try:
                status, tasks = cluster.api.call("GET", f"/swarms/{SWARM}/tasks", timeout=10)
            except (OSError, http.client.HTTPException, urllib.error.URLError):
                return False  # the gateway is starting again
            if status != 200:
                return False
            statuses = {t["id"]: t["status"] for t in tasks}
            return all(statuses.get(i) in FINISHED for i in ids)

        settle_began = time.monotonic()
        cluster.until(all_finished, plan.settle, f"all {len(ids)} tasks finished")
        finished_at = time.monotonic()
        cluster.wait_ready(*everything, timeout=60)  # every one restarted
        events = cluster.api.events(SWARM)
        (root / "events.json").write_text(json.dumps(events, indent=1))  # to look at afterwards
        lines = ran_file.read_text().splitlines() if ran_file.exists() else []
        checked = check(events, client.keys, lines, client.answered_again)
        counts = checked.counts
        figures = Figures(
            seed=plan.seed,
            tasks=len(ids),
            kills=chaos.kills,
            restarts=chaos.restarts,
            requests=client.requests,
            retries=client.retries,
            resent=len(client.answered_again),
            answers=client.answers,
            chaos_seconds=chaos_seconds,
            settle_seconds=finished_at - settle_began,
            wall_seconds=finished_at - client.started_at,
            lines=len(lines),
            attempts=counts["attempts"],
            claims=counts["claims"],
            runs=counts["runs"],
            requeued_tasks=counts["requeued_tasks"],
            requeues=counts["requeues"],
            claims_lost=counts["claims_lost"],
            runs_lost=counts["runs_lost"],
            most_runs_lost=counts["most_runs_lost"],
            longest=checked.longest,
        )
        return Outcome(figures, checked.problems, checked.churn, events)
    finally:
        cluster.close_cleanly()
