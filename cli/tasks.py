"""``swarm task``, ``swarm tasks``, ``swarm cancel`` and ``swarm logs``.

``swarm task "Title" [tags] [priority] [depends]`` keeps the prototype's positional form
(``swarm task "Test Button" qa,test medium t-123``) and prints the new task's id; ``--wait``
follows the task's events until it ends (exit 0 only when it completed).
"""

from __future__ import annotations

import argparse
import sys
import uuid
from typing import Any

from cli.api import Api
from cli.status import add_swarm_option, print_json, swarm_of, task_line

PRIORITIES = ("critical", "high", "medium", "low")
TERMINAL = frozenset({"completed", "failed", "cancelled"})
TERMINAL_EVENTS = frozenset({"task.completed", "task.failed", "task.cancelled", "task.deleted"})


def task_body(args: argparse.Namespace) -> dict[str, Any]:
    """The create-task body from the positional form and flags. A priority word given where
    the tags go (``swarm task "Fix" high``) is taken as the priority."""
    tags, priority = args.tags, args.priority
    if tags in PRIORITIES and priority is None:
        tags, priority = None, tags
    body: dict[str, Any] = {"title": args.title}
    if tags and tags != "-":
        body["tags"] = tags
    if priority:
        body["priority"] = priority
    if args.depends:
        body["depends"] = args.depends
    for name in ("prompt", "description", "runtime", "timeout", "id"):
        value = getattr(args, name)
        if value is not None:
            body[name] = value
    claude = claude_settings(args)
    if claude:
        body["claude"] = claude
    return body


def claude_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The task's own claude settings from ``--permission-mode``, ``--allow-tool``,
    ``--deny-tool``, ``--max-budget-usd`` and ``--model`` (only the ones given)."""
    settings: dict[str, Any] = {}
    if args.permission_mode:
        settings["permission_mode"] = args.permission_mode
    if args.allow_tool:
        settings["allowed_tools"] = args.allow_tool
    if args.deny_tool:
        settings["disallowed_tools"] = args.deny_tool
    if args.max_budget_usd is not None:
        settings["max_budget_usd"] = args.max_budget_usd
    if args.model:
        settings["model"] = args.model
    return settings


def progress(event: dict[str, Any]) -> str:
    kind = event.get("type", "?")
    details = [f"{k}={event[k]}" for k in ("agent", "attempt", "reason") if event.get(k)]
    return " ".join([event.get("id", "?"), kind.removeprefix("task."), *details])


def wait_for_end(api: Api, swarm: str, task_id: str) -> dict[str, Any]:
    """Follow the task's events (from its first) until it ends; the task as it ended."""
    for message in api.stream(f"/swarms/{swarm}/events", task=task_id, follow=1):
        if message.event == "end":
            break
        event = message.json() or {}
        print(progress(event), file=sys.stderr, flush=True)
        if message.event in TERMINAL_EVENTS:
            if message.event == "task.deleted":
                return {"id": task_id, "status": "deleted", "result": None}
            task: dict[str, Any] = api.get(f"/swarms/{swarm}/tasks/{task_id}")
            if task["status"] in TERMINAL:
                return task
    last: dict[str, Any] = api.get(f"/swarms/{swarm}/tasks/{task_id}")
    return last


def task_command(args: argparse.Namespace) -> int:
    api = Api()
    swarm = swarm_of(api, args)
    key = args.key or uuid.uuid4().hex
    task = api.request(
        "POST", f"/swarms/{swarm}/tasks", task_body(args), headers={"Idempotency-Key": key}
    )
    print_json(task) if args.json else print(task["id"], flush=True)
    if not args.wait:
        return 0
    ended = wait_for_end(api, swarm, task["id"])
    if args.json:
        print_json(ended)
    else:
        cost = f" (${ended['cost_usd']:.2f})" if ended.get("cost_usd") else ""
        print(f"{ended['id']} {ended['status']}{cost}")
        if ended.get("reason") and ended["status"] != "completed":
            print(ended["reason"])
        if ended.get("result"):
            print(ended["result"].rstrip("\n"))
    return 0 if ended["status"] == "completed" else 1


def tasks_command(args: argparse.Namespace) -> int:
    api = Api()
    tasks = api.get(f"/swarms/{swarm_of(api, args)}/tasks", status=args.status, tag=args.tag)
    if args.json:
        print_json(tasks)
    elif not tasks:
        print("No tasks")
    else:
        print(f"{'ID':<16} {'STATUS':<10} {'PRIORITY':<8} {'AGENT':<18} TITLE")
        for task in tasks:
            print(task_line(task))
    return 0


def cancel_command(args: argparse.Namespace) -> int:
    api = Api()
    body = {"reason": args.reason} if args.reason else {}
    task = api.request("POST", f"/swarms/{swarm_of(api, args)}/tasks/{args.task}/cancel", body)
    print_json(task) if args.json else print(f"{task['id']} {task['status']}")
    return 0


def logs_command(args: argparse.Namespace) -> int:
    api = Api()
    swarm = swarm_of(api, args)
    path = f"/swarms/{swarm}/tasks/{args.task}"
    if args.follow and api.get(path)["status"] not in TERMINAL:
        for message in api.stream(f"{path}/logs", follow=1, attempt=args.attempt):
            if message.event == "chunk":
                sys.stdout.write((message.json() or {}).get("text", ""))
                sys.stdout.flush()
            elif message.event == "end":
                break
        return 0
    output = api.get(f"{path}/output", attempt=args.attempt)
    if args.json:
        print_json(output)
        return 0
    text = output["output"]
    sys.stdout.write(text if not text or text.endswith("\n") else text + "\n")
    if not output["complete"] and output["source"] == "result":
        print("(only the tail of the output was kept)", file=sys.stderr)
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "task",
        help='create a task: swarm task "Title" [tags] [priority] [depends]',
        description="Create a task and print its id.",
    )
    parser.add_argument("title")
    parser.add_argument("tags", nargs="?", help="comma-separated tags (e.g. frontend,ui)")
    parser.add_argument("priority", nargs="?", help="critical, high, medium (default) or low")
    parser.add_argument("depends", nargs="?", help="comma-separated ids of tasks it waits for")
    parser.add_argument("--prompt", help="what the agent is asked (default: the title)")
    parser.add_argument("--description")
    parser.add_argument("--runtime", choices=("claude", "shell", "instant"))
    parser.add_argument("--timeout", type=float, help="seconds")
    parser.add_argument("--id", help="choose the task's id")
    parser.add_argument("--key", help="Idempotency-Key (default: a fresh one)")
    parser.add_argument("--wait", action="store_true", help="wait until it ends")
    claude = parser.add_argument_group("claude runs (default: the agent's, else the swarm's)")
    claude.add_argument(
        "--permission-mode",
        choices=("default", "acceptEdits", "auto", "bypassPermissions", "dontAsk", "plan"),
    )
    claude.add_argument(
        "--allow-tool", action="append", metavar="RULE", help='also allow, e.g. "Bash(make *)"'
    )
    claude.add_argument("--deny-tool", action="append", metavar="RULE", help="always deny")
    claude.add_argument(
        "--max-budget-usd", type=float, help="stop the run when its cost reaches this"
    )
    claude.add_argument("--model", help="claude --model for this task")
    add_swarm_option(parser)
    parser.set_defaults(func=task_command)

    parser = subparsers.add_parser("tasks", help="list the swarm's tasks")
    parser.add_argument("--status", help="only tasks in this status")
    parser.add_argument("--tag", help="only tasks with this tag")
    add_swarm_option(parser)
    parser.set_defaults(func=tasks_command)

    parser = subparsers.add_parser("cancel", help="cancel a task (stops it if running)")
    parser.add_argument("task")
    parser.add_argument("--reason")
    add_swarm_option(parser)
    parser.set_defaults(func=cancel_command)

    parser = subparsers.add_parser("logs", help="a task's output; -f follows it live")
    parser.add_argument("task")
    parser.add_argument("-f", "--follow", action="store_true", help="follow until it ends")
    parser.add_argument("--attempt", type=int, help="which attempt (default: the latest)")
    add_swarm_option(parser)
    parser.set_defaults(func=logs_command)
