"""``swarm task``, ``swarm task show``, ``swarm tasks``, ``swarm wait``, ``swarm cancel`` and
``swarm logs``.

``swarm task "Title" [tags] [priority] [depends]`` keeps the prototype's positional form
(``swarm task "Test Button" qa,test medium t-123``) and prints the new task's id. The words
after the title are read by what they are, wherever they stand: a priority word is the priority,
task ids (``t-…``, comma separated) are the dependencies, the first other word is the tags (``-``:
none), and a third word is the dependencies (for ids chosen with ``--id``). The gateway's
``warnings`` (no agent can take the task) are printed on stderr.

``--wait`` follows the task until it ends (``cli.waiting``): exit 0 only when it completed, 1 when
it failed or was cancelled, ``WAIT_TIMED_OUT`` after ``--wait-timeout`` seconds.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
import uuid
from typing import Any

from cli import task_view
from cli.api import Api
from cli.progress import Progress
from cli.status import add_swarm_option, print_json, swarm_of
from cli.waiting import TERMINAL, TimedOut, wait_for_end
from schemas.errors import Invalid, NotFound

PRIORITIES = ("critical", "high", "medium", "low")
TASK_ID = re.compile(r"^t-[0-9a-f]{6,}$")  # the ids the gateway makes (``t-`` and hex)
WAIT_TIMED_OUT = 124  # the exit code of a wait that timed out (as timeout(1))
SHOW_LINES = 20  # output lines ``swarm task show`` prints by default


def is_task_ids(word: str) -> bool:
    """Whether ``word`` is one or more gateway-made task ids, comma separated."""
    parts = [part.strip() for part in word.split(",") if part.strip()]
    return bool(parts) and all(TASK_ID.match(part) for part in parts)


def read_positionals(words: list[str]) -> tuple[str | None, str | None, str | None]:
    """``(tags, priority, depends)`` from the words after the title, read by what each is: a
    priority word, task ids (dependencies), else the tags (the first such word) and the
    dependencies (a further one in third place: ids chosen with ``--id``)."""
    tags: str | None = None
    priority: str | None = None
    depends: str | None = None
    if len(words) > 3:
        raise Invalid("depends", f"at most 3 words after the title (tags, priority, depends), "
                      f"not {len(words)}: {' '.join(words)}")  # fmt: skip
    for position, word in enumerate(words):
        if word.lower() in PRIORITIES:
            if priority is not None:
                raise Invalid("priority", f"priority: two of them ({priority}, {word})")
            priority = word.lower()
        elif is_task_ids(word) and depends is None:
            depends = word
        elif tags is None:
            tags = word
        elif depends is None and position == 2:
            depends = word
        elif position == 1 and priority is None:
            raise Invalid(
                "priority",
                f"priority: {word!r} is not one of {', '.join(PRIORITIES)} (nor task ids, t-…)",
            )
        else:
            raise Invalid("depends", f"cannot tell what {word!r} is: tags come first, then the "
                          "priority, then the task ids it depends on")  # fmt: skip
    return tags, priority, depends


def task_body(args: argparse.Namespace) -> dict[str, Any]:
    """The create-task body from the positional form and flags."""
    tags, priority, depends = read_positionals(args.words)
    body: dict[str, Any] = {"title": args.title}
    if tags and tags != "-":
        body["tags"] = tags
    if priority:
        body["priority"] = priority
    if depends:
        body["depends"] = depends
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


def print_end(task: dict[str, Any]) -> None:
    """How a waited-for task ended: ``t-1 completed ($0.12)``, the reason, the result."""
    cost = f" (${task['cost_usd']:.2f})" if task.get("cost_usd") else ""
    print(f"{task['id']} {task['status']}{cost}")
    if task.get("reason") and task["status"] != "completed":
        print(task["reason"])
    if task.get("result"):
        print(task["result"].rstrip("\n"))


def wait_and_report(
    api: Api, swarm: str, task_id: str, timeout: float | None, as_json: bool
) -> int:
    """Wait for the task (with progress on stderr), print how it ended; the exit code."""
    try:
        ended = wait_for_end(api, swarm, task_id, timeout=timeout, progress=Progress())
    except TimedOut as stopped:
        print(
            f"swarm: gave up waiting after {stopped.waited:g}s: {task_id} is still "
            f"{stopped.task.get('status')} (it goes on; see `swarm task show {task_id}`)",
            file=sys.stderr,
        )
        return WAIT_TIMED_OUT
    print_json(ended) if as_json else print_end(ended)
    return 0 if ended["status"] == "completed" else 1


def print_warnings(answer: dict[str, Any]) -> None:
    for warning in answer.get("warnings") or []:
        print(f"swarm task: warning: {warning}", file=sys.stderr)


def task_command(args: argparse.Namespace) -> int:
    api = Api()
    swarm = swarm_of(api, args)
    key = args.key or uuid.uuid4().hex
    task = api.request(
        "POST", f"/swarms/{swarm}/tasks", task_body(args), headers={"Idempotency-Key": key}
    )
    print_json(task) if args.json else print(task["id"], flush=True)
    print_warnings(task)
    if not args.wait:
        return 0
    return wait_and_report(api, swarm, task["id"], args.wait_timeout, args.json)


def wait_command(args: argparse.Namespace) -> int:
    api = Api()
    return wait_and_report(api, swarm_of(api, args), args.task, args.timeout, args.json)


def show_command(args: argparse.Namespace) -> int:
    api = Api()
    swarm = swarm_of(api, args)
    path = f"/swarms/{swarm}/tasks/{args.task}"
    task = api.get(path)
    if args.json:
        print_json(task)
        return 0
    statuses = dependency_statuses(api, swarm, task.get("depends") or [])
    output = api.get(f"{path}/output") if args.lines > 0 else None
    print("\n".join(task_view.detail(task, statuses, output, args.lines)))
    return 0


def dependency_statuses(api: Api, swarm: str, depends: list[str]) -> dict[str, str]:
    """Each dependency's status, asked one by one (a task gone is left out)."""
    statuses = {}
    for dependency in dict.fromkeys(depends):
        try:
            statuses[dependency] = api.get(f"/swarms/{swarm}/tasks/{dependency}")["status"]
        except NotFound:
            continue
    return statuses


def tasks_command(args: argparse.Namespace) -> int:
    api = Api()
    filters = {"status": args.status, "tag": args.tag, "agent": args.agent}
    tasks, following = api.page(
        f"/swarms/{swarm_of(api, args)}/tasks", **filters, limit=args.limit, after=args.after
    )
    if args.json:
        print_json(tasks)
    elif not tasks:
        print("No tasks")
    else:
        print("\n".join(task_view.table(tasks)))
    if following is not None:  # the next page: the same command after this page's last task
        words = ["swarm", "tasks"]
        flags = [("swarm", args.swarm), *filters.items()]
        for name, value in [*flags, ("limit", args.limit), ("after", following)]:
            words += [f"--{name}", str(value)] if value else []
        print(f"more: {shlex.join(words)}", file=sys.stderr)
    return 0


def cancel_command(args: argparse.Namespace) -> int:
    api = Api()
    body = {"reason": args.reason} if args.reason else {}
    task = api.request("POST", f"/swarms/{swarm_of(api, args)}/tasks/{args.task}/cancel", body)
    print_json(task) if args.json else print(f"{task['id']} {task['status']}")
    return 0


def result_lines(task: dict[str, Any]) -> list[str]:
    """What ``swarm logs`` ends with for a finished claude task: its final answer (for other
    runtimes the result is the output's tail, already shown)."""
    if task.get("runtime", "claude") != "claude" or task["status"] not in TERMINAL:
        return []
    if not task.get("result"):
        return []
    return ["--- result ---", task["result"].rstrip("\n")]


def logs_command(args: argparse.Namespace) -> int:
    api = Api()
    swarm = swarm_of(api, args)
    path = f"/swarms/{swarm}/tasks/{args.task}"
    task = api.get(path)
    if args.follow and task["status"] not in TERMINAL:
        for message in api.stream(f"{path}/logs", follow=1, attempt=args.attempt):
            if message.event == "chunk":
                sys.stdout.write((message.json() or {}).get("text", ""))
                sys.stdout.flush()
            elif message.event == "end":
                break
        if args.attempt is None:
            ending = result_lines(api.get(path))
            if ending:
                print("\n".join(ending))
        return 0
    output = api.get(f"{path}/output", attempt=args.attempt)
    if args.json:
        print_json(output)
        return 0
    text = output["output"]
    sys.stdout.write(text if not text or text.endswith("\n") else text + "\n")
    if not output["complete"] and output["source"] == "result":
        print("(only the tail of the output was kept)", file=sys.stderr)
    if args.attempt in (None, task["attempt"]) and output["source"] != "result":
        ending = result_lines(task)
        if ending:
            print("\n".join(ending))
    return 0


SHOW = "task-show"  # ``swarm task show <id>`` is this command (``main`` routes it)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "task",
        help='create a task: swarm task "Title" [tags] [priority] [depends]; '
        "swarm task show <id>: one task",
        description="Create a task and print its id (`swarm task show <id>` shows one; a task "
        "titled show: swarm task -- show).",
        epilog="The words after the title are read by what they are: a priority word is the "
        "priority, task ids (t-…, comma separated) are its dependencies, the first other word "
        "is its tags (- for none), a third word its dependencies.",
    )
    parser.add_argument("title")
    parser.add_argument(
        "words",
        nargs="*",
        metavar="[tags] [priority] [depends]",
        help="comma-separated tags (e.g. frontend,ui); critical, high, medium (default) or low; "
        "comma-separated ids of tasks it waits for",
    )
    parser.add_argument("--prompt", help="what the agent is asked (default: the title)")
    parser.add_argument("--description")
    parser.add_argument("--runtime", choices=("claude", "shell", "instant"))
    parser.add_argument("--timeout", type=float, help="seconds the run may take")
    parser.add_argument("--id", help="choose the task's id")
    parser.add_argument("--key", help="Idempotency-Key (default: a fresh one)")
    parser.add_argument("--wait", action="store_true", help="wait until it ends")
    parser.add_argument(
        "--wait-timeout",
        type=float,
        metavar="SECONDS",
        help=f"with --wait: give up after this long (exit {WAIT_TIMED_OUT}; the task goes on)",
    )
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

    parser = subparsers.add_parser(
        SHOW,
        prog="swarm task show",
        description="One task: reason, tags, dependencies, agent, attempts, cost, tokens, "
        "branch and landed commit, the last lines of its output and its result.",
    )
    parser.add_argument("task")
    parser.add_argument(
        "-n",
        "--lines",
        type=int,
        default=SHOW_LINES,
        help=f"output lines to show (default {SHOW_LINES}; 0: none)",
    )
    add_swarm_option(parser)
    parser.set_defaults(func=show_command)

    parser = subparsers.add_parser(
        "tasks",
        help="list the swarm's tasks (reason, cost, totals)",
        description="The swarm's tasks, oldest first, then totals: counts by status, cost, "
        "tokens (of the tasks listed).",
    )
    parser.add_argument("--status", help="only tasks in this status")
    parser.add_argument("--tag", help="only tasks with this tag")
    parser.add_argument("--agent", help="only tasks of this agent (running, or the last one)")
    parser.add_argument(
        "--limit",
        type=int,
        metavar="N",
        help="at most N tasks (a page; stderr then says how to ask the next one)",
    )
    parser.add_argument("--after", metavar="ID", help="only tasks after this one")
    add_swarm_option(parser)
    parser.set_defaults(func=tasks_command)

    parser = subparsers.add_parser(
        "wait",
        help="wait until a task ends (exit 0: completed)",
        description=f"Wait until the task ends; exit 0 when it completed, 1 when it failed or "
        f"was cancelled, {WAIT_TIMED_OUT} when --timeout passed first.",
    )
    parser.add_argument("task")
    parser.add_argument("--timeout", type=float, metavar="SECONDS", help="give up after this")
    add_swarm_option(parser)
    parser.set_defaults(func=wait_command)

    parser = subparsers.add_parser("cancel", help="cancel a task (stops it if running)")
    parser.add_argument("task")
    parser.add_argument("--reason")
    add_swarm_option(parser)
    parser.set_defaults(func=cancel_command)

    parser = subparsers.add_parser(
        "logs", help="a task's output, ending with its result; -f follows it live"
    )
    parser.add_argument("task")
    parser.add_argument("-f", "--follow", action="store_true", help="follow until it ends")
    parser.add_argument("--attempt", type=int, help="which attempt (default: the latest)")
    add_swarm_option(parser)
    parser.set_defaults(func=logs_command)
