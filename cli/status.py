"""``swarm status``, ``swarm agents`` and ``swarm replay``: the board, now or as it was.

``status`` keeps the prototype's layout::

    === SWARM ===
    Name: dev-swarm
    Status: active
    Sandboxes: 3
    Spent: $1.25 of a $5.00 budget
    === AGENTS ===
    [🟢 IDLE] Frontend Agent (frontend)  $0.42
    [🔵 WORKING] Backend Agent (backend)  $0.83
      └─ Task: t-123
    === TASKS ===
    Pending: 3
    Running: 1
    Completed: 5
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

from cli.api import Api

AGENT_BADGES = {"idle": "🟢 IDLE", "working": "🔵 WORKING", "lost": "🔴 LOST"}
ALWAYS_SHOWN = ("pending", "running", "completed")
STATUS_ORDER = ("blocked", "pending", "requeued", "claimed", "running", "completed", "failed",
                "cancelled")  # fmt: skip


def add_swarm_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--swarm", "-s", help="the swarm (default: SWARM_DEFAULT_ID)")
    parser.add_argument("--json", action="store_true", help="print the API's JSON answer")


def swarm_of(api: Api, args: argparse.Namespace) -> str:
    return args.swarm or api.settings.swarm


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def agent_lines(agents: list[dict[str, Any]]) -> list[str]:
    lines = []
    for agent in agents:
        badge = AGENT_BADGES.get(agent["status"], agent["status"].upper())
        role = f" ({agent['role']})" if agent.get("role") else ""
        spent = f"  ${agent['spent_usd']:.2f}" if agent.get("spent_usd") else ""
        lines.append(f"[{badge}] {agent['name']}{role}{spent}")
        if agent.get("task"):
            lines.append(f"  └─ Task: {agent['task']}")
    return lines


def count_lines(counts: dict[str, int]) -> list[str]:
    if not counts.get("total"):
        return ["No tasks"]
    return [
        f"{status.capitalize()}: {counts.get(status, 0)}"
        for status in STATUS_ORDER
        if status in ALWAYS_SHOWN or counts.get(status)
    ]


def spend_lines(swarm: dict[str, Any]) -> list[str]:
    """``Spent: $1.25 of a $5.00 budget``, and why claude tasks are held once it is reached."""
    spent, budget = swarm.get("spent_usd") or 0.0, swarm.get("budget_usd")
    if budget is None:
        lines = [f"Spent: ${spent:.2f} (no budget)"]
    else:
        lines = [f"Spent: ${spent:.2f} of a ${budget:.2f} budget"]
    if swarm.get("budget_reached"):
        lines.append(f"Budget reached: {swarm['budget_reached']}")
    return lines


def render_status(status: dict[str, Any]) -> str:
    swarm = status["swarm"]
    held = bool(swarm.get("budget_reached"))
    lines = [
        "=== SWARM ===",
        f"Name: {swarm['name']}",
        "Status: budget reached (claude tasks held)" if held else "Status: active",
        f"Sandboxes: {swarm['agents']}",
        *spend_lines(swarm),
        "",
        "=== AGENTS ===",
        *(agent_lines(status["agents"]) or ["No agents"]),
        "",
        "=== TASKS ===",
        *count_lines(status["tasks"]),
    ]
    if status.get("warnings"):
        lines += ["", "=== WARNINGS ==="]
        lines += [f"⚠ {warning}" for warning in status["warnings"]]
    if status.get("chat"):
        lines += ["", "=== CHAT ==="]
        lines += [message_line(m) for m in status["chat"][-5:]]
    return "\n".join(lines)


def message_line(message: dict[str, Any]) -> str:
    """``[12:03:04] backend-agent: Done with the API @qa`` (channel shown when not general)."""
    moment = datetime.fromtimestamp(message.get("time") or 0).strftime("%H:%M:%S")
    channel = message.get("channel") or "general"
    where = "" if channel == "general" else f" #{channel}"
    author = message.get("author") or message.get("from") or "?"
    return f"[{moment}]{where} {author}: {message.get('text', '')}"


def work_note(task: dict[str, Any]) -> str:
    """Where a task's work is in git, in a few words (empty: no git around it)."""
    work = task.get("integration")
    if not work:
        return ""
    state = work["state"]
    onto = work.get("onto") or "the branch"
    if state == "landed":
        by = f" by {work['resolved_by']}" if work.get("resolved_by") else ""
        return f"landed {str(work.get('landed'))[:7]} on {onto}{by}"
    if state in ("conflict", "verify_failed", "failed"):
        what = {"conflict": "conflict in " + ", ".join(work.get("files") or ["?"])}.get(
            state, "verify failed" if state == "verify_failed" else "could not land"
        )
        resolver = f"; resolving: {work['resolver']}" if work.get("resolver") else ""
        return f"{what}{resolver}"
    notes = {
        "working": f"on {work['branch']}",
        "landing": f"landing on {onto}",
        "pushed": f"pushed {work['branch']}",
        "unchanged": "nothing to land",
    }
    return notes.get(state, str(state))


def task_line(task: dict[str, Any]) -> str:
    agent = task.get("agent") or "-"
    status, priority = task["status"], task["priority"]
    note = work_note(task)
    line = f"{task['id']:<16} {status:<10} {priority:<8} {agent:<18} {task['title']}"
    return f"{line}  [{note}]" if note else line


def when(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def status_command(args: argparse.Namespace) -> int:
    api = Api()
    status = api.get(f"/swarms/{swarm_of(api, args)}/status")
    print_json(status) if args.json else print(render_status(status))
    return 0


def agents_command(args: argparse.Namespace) -> int:
    api = Api()
    agents = api.get(f"/swarms/{swarm_of(api, args)}/agents")
    if args.json:
        print_json(agents)
        return 0
    if not agents:
        print("No agents")
    for agent in agents:
        badge = AGENT_BADGES.get(agent["status"], agent["status"].upper())
        skills = ",".join(agent.get("skills") or []) or "-"
        host = agent.get("executor") or "(waiting for an executor)"
        print(f"[{badge}] {agent['name']} ({agent.get('role') or '-'})  id={agent['id']}  "
              f"skills={skills}  executor={host}")  # fmt: skip
        if agent.get("task"):
            print(f"  └─ Task: {agent['task']}")
    return 0


def budget_command(args: argparse.Namespace) -> int:
    """``swarm budget`` shows the spend; ``swarm budget 20`` sets the budget, ``none`` removes
    it."""
    api = Api()
    path = f"/swarms/{swarm_of(api, args)}"
    if args.usd is None:
        swarm = api.get(path)
    else:
        wanted = None if args.usd.lower() in ("none", "off", "-") else _dollars(args.usd)
        swarm = api.request("PATCH", path, {"budget_usd": wanted})
    print_json(swarm) if args.json else print("\n".join(spend_lines(swarm)))
    return 0


def _dollars(text: str) -> float:
    try:
        return float(text.lstrip("$"))
    except ValueError:
        raise SystemExit(f"swarm budget: {text!r} is not an amount of dollars (or none)") from None


def replay_command(args: argparse.Namespace) -> int:
    api = Api()
    board = api.get(f"/swarms/{swarm_of(api, args)}/board", at=args.at, per_status=args.per_status)
    if args.json:
        print_json(board)
        return 0
    print(f"=== BOARD at seq {board['seq']} ({when(board.get('time'))}) ===")
    swarm = board.get("swarm")
    if swarm is None:
        print("The swarm did not exist yet.")
        return 0
    print(f"Name: {swarm['name']}")
    print("")
    print("=== AGENTS ===")
    print("\n".join(agent_lines(board["agents"]) or ["No agents"]))
    print("")
    print("=== TASKS ===")
    print("\n".join(count_lines(board["counts"])))
    for task in board["tasks"]:
        print("  " + task_line(task))
    for status, more in (board.get("more") or {}).items():
        print(f"  … {more} more {status} (--per-status, or swarm tasks --status {status})")
    project = board.get("project")
    if project:
        from cli.project import render_project  # the same view as `swarm project status`

        print("")
        print(render_project(project))
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("status", help="the swarm, its agents and task counts")
    add_swarm_option(parser)
    parser.set_defaults(func=status_command)

    parser = subparsers.add_parser("agents", help="the swarm's agents")
    add_swarm_option(parser)
    parser.set_defaults(func=agents_command)

    parser = subparsers.add_parser(
        "budget", help="the swarm's spend; set its budget (swarm budget 20) or remove it (none)"
    )
    parser.add_argument("usd", nargs="?", help="dollars, or none")
    add_swarm_option(parser)
    parser.set_defaults(func=budget_command)

    parser = subparsers.add_parser("replay", help="the board as it was at a log position or time")
    parser.add_argument(
        "--at",
        required=True,
        help="a log position (e.g. 42), epoch seconds, or an ISO time (2025-01-31T12:00:00Z)",
    )
    parser.add_argument(
        "--per-status",
        type=int,
        metavar="N",
        help="at most N tasks of each status (default 200, at most 1000): the next to be taken, "
        "the newest finished",
    )
    add_swarm_option(parser)
    parser.set_defaults(func=replay_command)
