"""``swarm project create|init|sync|status|list|update|delete``: the swarm's git project.

``create <name> <gitUrl>`` creates it and attaches it to the swarm (branch: the remote's default
unless ``--branch``; ``--mode integrate|branch|off``, ``--strategy rebase|merge``, ``--verify
CMD``, ``--on-conflict resolve|fail``); ``init`` asks every agent to clone it, ``sync`` to pull
it (``--wait``: until every agent has answered; exit 1 if one failed or the wait timed out);
``status`` shows the branch's tip, each agent's checkout (where it is now: commit, branch, the
task whose branch that is; state or git's error) and the tasks landed, in order; ``update``
changes any setting (``""`` clears branch, verify, credentials); ``delete`` removes it.
``--credentials-ref`` takes the NAME of the environment variable (on the executors) holding the
git token, never the token.
"""

from __future__ import annotations

import argparse
import contextlib
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import datetime
from typing import Any

from cli.api import TIMEOUT, Api
from cli.progress import Progress
from cli.status import add_swarm_option, print_json, swarm_of
from schemas.errors import Invalid, NotFound, SwarmError

WAIT_TIMEOUT = 120.0
POLL = 1.0  # seconds between looks at the agents' answers while --wait waits
FINISHED_STATES = frozenset({"synced", "sync_failed"})


def short(commit: str | None) -> str:
    return commit[:7] if commit else "-"


def checkout_line(row: dict[str, Any]) -> str:
    state = row["state"]
    if row.get("commit"):
        tree = "dirty" if row.get("dirty") else "clean"
        drift = f"↑{row.get('ahead', 0)} ↓{row.get('behind', 0)}"
    else:
        tree, drift = "-", "-"
    if state == "sync_failed" and row.get("error"):
        state = f"sync_failed: {row['error'].strip().splitlines()[-1][:200]}"
    on = row.get("branch") or "-"
    return (
        f"{row['agent']:<20} {short(row.get('commit')):<8} {on:<24} {tree:<6} {drift:<10} {state}"
    )


def landed_line(entry: dict[str, Any]) -> str:
    resolves = f" (resolves {entry['resolves']})" if entry.get("resolves") else ""
    moment = datetime.fromtimestamp(entry.get("at") or 0).strftime("%H:%M:%S")
    return (
        f"{short(entry['commit']):<8} {moment:<9} {entry['task']:<24} "
        f"{entry.get('agent') or '-'}{resolves}"
    )


def progress(project: dict[str, Any]) -> str:
    if not project["round"]:
        return "not initialised yet (swarm project init)"
    rows = project["checkouts"]
    answered = sum(1 for r in rows if r["state"] in ("synced", "sync_failed"))
    failed = sum(1 for r in rows if r["state"] == "sync_failed")
    summary = f"round {project['round']} ({project['request']}): {answered}/{len(rows)} answered"
    return summary + (f", {failed} failed" if failed else "")


def branch_text(project: dict[str, Any]) -> str:
    target = project.get("target")
    if project.get("branch"):
        return f"branch {project['branch']}"
    return f"branch {target} (the remote's default)" if target else "the remote's default branch"


def integration_text(project: dict[str, Any]) -> str:
    mode = project.get("mode", "integrate")
    if mode == "off":
        return "off (Swarm does no git around tasks)"
    if mode == "branch":
        return "branch (each task's branch swarm/<task> is pushed; nothing lands)"
    verify = f", verify `{project['verify']}`" if project.get("verify") else ""
    return (
        f"integrate ({project.get('strategy', 'rebase')}{verify}, on conflict: "
        f"{project.get('on_conflict', 'resolve')})"
    )


def render_project(project: dict[str, Any]) -> str:
    lines = [
        "=== PROJECT ===",
        f"Name: {project['name']} ({project['id']})",
        f"Repository: {project['git_url']} ({branch_text(project)})",
        f"Integration: {integration_text(project)}",
    ]
    if project.get("credentials_ref"):
        lines.append(f"Credentials: ${project['credentials_ref']}")
    lines.append(f"Status: {progress(project)}")
    if project.get("tip"):
        landed = project.get("landed_count", 0)
        lines.append(f"Tip: {short(project['tip'])} ({landed} task(s) landed)")
    lines += ["", "=== CHECKOUTS ==="]
    if project["checkouts"]:
        lines.append(f"{'AGENT':<20} {'COMMIT':<8} {'ON':<24} {'TREE':<6} {'AHEAD/BEH':<10} STATE")
        lines += [checkout_line(row) for row in project["checkouts"]]
    else:
        lines.append("No agents")
    if project.get("landed"):
        lines += ["", "=== LANDED (oldest first) ==="]
        lines += [landed_line(entry) for entry in project["landed"]]
    return "\n".join(lines)


def succeeded(project: dict[str, Any]) -> bool:
    return bool(project["complete"]) and all(
        row["state"] != "sync_failed" for row in project["checkouts"]
    )


def create_command(args: argparse.Namespace) -> int:
    api = Api()
    body: dict[str, Any] = {
        "name": args.name,
        "gitUrl": args.git_url,
        "swarm": swarm_of(api, args),
    }
    for name, value in (("branch", args.branch), ("credentialsRef", args.credentials_ref)):
        if value:
            body[name] = value
    body.update(settings_of(args))
    if args.id:
        body["id"] = args.id
    key = uuid.uuid4().hex
    project = api.request("POST", "/projects", body, headers={"Idempotency-Key": key})
    if args.json:
        print_json(project)
    else:
        print(project["id"])
    return 0


def settings_of(args: argparse.Namespace) -> dict[str, Any]:
    """The integration settings given on the command line."""
    given = {
        "mode": args.mode,
        "strategy": args.strategy,
        "verify": args.verify,
        "onConflict": args.on_conflict,
    }
    return {name: value for name, value in given.items() if value is not None}


def update_command(args: argparse.Namespace) -> int:
    api = Api()
    swarm = swarm_of(api, args)
    project_id = args.project or attached_project(api, swarm)["id"]
    body = settings_of(args)
    for name, value in (
        ("name", args.name),
        ("gitUrl", args.url),
        ("branch", args.branch),
        ("credentialsRef", args.credentials_ref),
    ):
        if value is not None:
            body[name] = value
    if not body:
        raise Invalid("update", "nothing to change: name at least one setting (see --help)")
    project = api.request(
        "PATCH", f"/projects/{project_id}", body, query={"swarm": swarm}, headers=idempotent()
    )
    print_json(project) if args.json else print(render_project(project))
    return 0


def delete_command(args: argparse.Namespace) -> int:
    api = Api()
    swarm = swarm_of(api, args)
    project_id = args.project or attached_project(api, swarm)["id"]
    answer = api.request(
        "DELETE", f"/projects/{project_id}", query={"swarm": swarm}, headers=idempotent()
    )
    print_json(answer) if args.json else print(f"{project_id} deleted")
    return 0


def idempotent() -> dict[str, str]:
    return {"Idempotency-Key": uuid.uuid4().hex}


def attached_project(api: Api, swarm: str) -> dict[str, Any]:
    project: dict[str, Any] = api.get(f"/swarms/{swarm}/project")
    return project


def request_command(args: argparse.Namespace) -> int:
    """``init`` or ``sync`` (``args.kind``)."""
    api = Api()
    swarm = swarm_of(api, args)
    project_id = args.project or attached_project(api, swarm)["id"]
    query: dict[str, Any] = {"swarm": swarm}
    if args.wait:
        query |= {"wait": 1, "timeout": args.timeout}

    def ask() -> dict[str, Any]:
        answer: dict[str, Any] = api.request(
            "POST",
            f"/projects/{project_id}/{args.kind}",
            query=query,
            headers={"Idempotency-Key": uuid.uuid4().hex},
            timeout=(args.timeout + TIMEOUT) if args.wait else TIMEOUT,
        )
        return answer

    attached = None
    if args.wait:
        with contextlib.suppress(NotFound):
            attached = attached_project(api, swarm)
    if attached is not None and attached["id"] == project_id:
        asked = attached["round"] + 1
        project = with_progress(ask, lambda: answered(api, swarm, asked), args.kind)
    else:
        project = ask()
    if args.json:
        print_json(project)
    elif args.wait:
        print(render_project(project))
    else:
        print(f"{project['id']} {args.kind} requested: round {project['round']}")
    if args.wait and not succeeded(project):
        return 1
    return 0


def answered(api: Api, swarm: str, round_asked: int) -> str:
    """``2 of 3 agents answered`` for the round asked for (its checkouts as they report)."""
    project = api.get(f"/swarms/{swarm}/project")
    rows = project["checkouts"]
    done = [row for row in rows if row["round"] >= round_asked and row["state"] in FINISHED_STATES]
    failed = sum(1 for row in done if row["state"] == "sync_failed")
    note = f" ({failed} failed)" if failed else ""
    shown = max(project["round"], round_asked)
    return f"round {shown}: {len(done)} of {len(rows)} agents answered{note}"


def with_progress(
    ask: Callable[[], dict[str, Any]], state: Callable[[], str], kind: str
) -> dict[str, Any]:
    """``ask()`` (a request the gateway holds until every agent answered) in a thread, while
    the agents' answers so far are shown as progress (read again every ``POLL`` seconds)."""
    progress = Progress()
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(ask)
        while True:
            try:
                project = pending.result(timeout=POLL)
                break
            except FutureTimeout:
                pass
            with contextlib.suppress(SwarmError):
                progress.step(f"{kind}: {state()}", f"({time.monotonic() - started:.0f}s)")
    progress.clear()
    return project


def status_command(args: argparse.Namespace) -> int:
    api = Api()
    project = attached_project(api, swarm_of(api, args))
    print_json(project) if args.json else print(render_project(project))
    return 0


def list_command(args: argparse.Namespace) -> int:
    api = Api()
    projects = api.get("/projects", swarm=args.swarm)
    if args.json:
        print_json(projects)
        return 0
    if not projects:
        print("No projects")
    for project in projects:
        mark = "*" if project["attached"] else " "
        print(
            f"{mark} {project['id']:<16} {project['swarm']:<16} {project['name']:<20} "
            f"{project['git_url']} ({branch_text(project)}, {project.get('mode', 'integrate')})"
        )
    return 0


def add_settings(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mode",
        choices=("integrate", "branch", "off"),
        help="integrate (default): each task's work lands on the branch; branch: only its "
        "branch swarm/<task> is pushed; off: no git around tasks",
    )
    parser.add_argument(
        "--strategy", choices=("rebase", "merge"), help="how work lands (default: rebase)"
    )
    parser.add_argument(
        "--verify", help="a command run on the integrated result before it is pushed"
    )
    parser.add_argument(
        "--on-conflict",
        choices=("resolve", "fail"),
        help="work that cannot land: a resolve task for an agent (default), or fail the task",
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "project",
        help="the swarm's git project: create, init, sync, status, list, update, delete",
        description="The swarm's git project, cloned into every agent's sandbox.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    create = actions.add_parser(
        "create",
        help="create a project and attach it to the swarm: create <name> <gitUrl>",
        description="Create a project and attach it to the swarm; prints its id.",
    )
    create.add_argument("name")
    create.add_argument("git_url", metavar="gitUrl", help="https://…, git@host:path, a path")
    create.add_argument("--branch", help="the branch work lands on (default: the remote's default)")
    create.add_argument(
        "--credentials-ref",
        help="NAME of the environment variable holding the git token (e.g. GITHUB_TOKEN)",
    )
    create.add_argument("--id", help="choose the project's id (default: p-…)")
    add_settings(create)
    add_swarm_option(create)
    create.set_defaults(func=create_command)

    update = actions.add_parser(
        "update",
        help="change the project: URL, branch, credentials, mode, strategy, verify, on-conflict",
        description="Change the project's settings. A new URL or branch makes every agent's "
        'checkout follow (a new init round). "" clears --branch, --verify, --credentials-ref.',
    )
    update.add_argument("project", nargs="?", help="the project (default: the swarm's)")
    update.add_argument("--name")
    update.add_argument("--url", help="the repository URL")
    update.add_argument("--branch", help='the branch work lands on ("": the remote\'s default)')
    update.add_argument("--credentials-ref", help="NAME of the token's environment variable")
    add_settings(update)
    add_swarm_option(update)
    update.set_defaults(func=update_command)

    delete = actions.add_parser("delete", help="delete the project (the checkouts stay on disk)")
    delete.add_argument("project", nargs="?", help="the project (default: the swarm's)")
    add_swarm_option(delete)
    delete.set_defaults(func=delete_command)

    for kind, text in (
        ("init", "clone the project into every agent's sandbox"),
        ("sync", "pull the project in every agent's sandbox"),
    ):
        action = actions.add_parser(kind, help=text, description=text[0].upper() + text[1:] + ".")
        action.add_argument("project", nargs="?", help="the project (default: the swarm's)")
        action.add_argument(
            "--wait", action="store_true", help="wait until every agent has answered"
        )
        action.add_argument(
            "--timeout",
            type=float,
            default=WAIT_TIMEOUT,
            help=f"seconds --wait waits (default {WAIT_TIMEOUT:g})",
        )
        add_swarm_option(action)
        action.set_defaults(func=request_command, kind=kind)

    status = actions.add_parser(
        "status",
        help="the branch's tip, each agent's checkout (commit, branch, state), tasks landed",
    )
    add_swarm_option(status)
    status.set_defaults(func=status_command)

    listing = actions.add_parser("list", help="every swarm's projects (* attached)")
    add_swarm_option(listing)
    listing.set_defaults(func=list_command)
