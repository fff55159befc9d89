"""``swarm project create|init|sync|status|list``: the swarm's git project.

``create <name> <gitUrl>`` creates it and attaches it to the swarm; ``init`` asks every agent
to clone it, ``sync`` to pull it (``--wait``: until every agent has answered; exit 1 if one
failed or the wait timed out); ``status`` shows each agent's checkout: short commit,
clean/dirty, ahead/behind, state or git's error. ``--credentials-ref`` takes the NAME of the
environment variable (on the executors) holding the git token, never the token.
"""

from __future__ import annotations

import argparse
import uuid
from typing import Any

from cli.api import TIMEOUT, Api
from cli.status import add_swarm_option, print_json, swarm_of

WAIT_TIMEOUT = 120.0


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
    return f"{row['agent']:<20} {short(row.get('commit')):<8} {tree:<6} {drift:<10} {state}"


def progress(project: dict[str, Any]) -> str:
    if not project["round"]:
        return "not initialised yet (swarm project init)"
    rows = project["checkouts"]
    answered = sum(1 for r in rows if r["state"] in ("synced", "sync_failed"))
    failed = sum(1 for r in rows if r["state"] == "sync_failed")
    summary = f"round {project['round']} ({project['request']}): {answered}/{len(rows)} answered"
    return summary + (f", {failed} failed" if failed else "")


def render_project(project: dict[str, Any]) -> str:
    lines = [
        "=== PROJECT ===",
        f"Name: {project['name']} ({project['id']})",
        f"Repository: {project['git_url']} (branch {project['branch']})",
    ]
    if project.get("credentials_ref"):
        lines.append(f"Credentials: ${project['credentials_ref']}")
    lines += [f"Status: {progress(project)}", "", "=== CHECKOUTS ==="]
    if project["checkouts"]:
        lines.append(f"{'AGENT':<20} {'COMMIT':<8} {'TREE':<6} {'AHEAD/BEH':<10} STATE")
        lines += [checkout_line(row) for row in project["checkouts"]]
    else:
        lines.append("No agents")
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
        "branch": args.branch,
        "swarm": swarm_of(api, args),
    }
    if args.credentials_ref:
        body["credentialsRef"] = args.credentials_ref
    if args.id:
        body["id"] = args.id
    key = uuid.uuid4().hex
    project = api.request("POST", "/projects", body, headers={"Idempotency-Key": key})
    if args.json:
        print_json(project)
    else:
        print(project["id"])
    return 0


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
    project = api.request(
        "POST",
        f"/projects/{project_id}/{args.kind}",
        query=query,
        headers={"Idempotency-Key": uuid.uuid4().hex},
        timeout=(args.timeout + TIMEOUT) if args.wait else TIMEOUT,
    )
    if args.json:
        print_json(project)
    elif args.wait:
        print(render_project(project))
    else:
        print(f"{project['id']} {args.kind} requested: round {project['round']}")
    if args.wait and not succeeded(project):
        return 1
    return 0


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
            f"{project['git_url']} ({project['branch']})"
        )
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "project",
        help="the swarm's git project: create, init, sync, status, list",
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
    create.add_argument("--branch", default="main", help="default: main")
    create.add_argument(
        "--credentials-ref",
        help="NAME of the environment variable holding the git token (e.g. GITHUB_TOKEN)",
    )
    create.add_argument("--id", help="choose the project's id (default: p-…)")
    add_swarm_option(create)
    create.set_defaults(func=create_command)

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
        "status", help="each agent's checkout: commit, clean/dirty, ahead/behind, state"
    )
    add_swarm_option(status)
    status.set_defaults(func=status_command)

    listing = actions.add_parser("list", help="every swarm's projects (* attached)")
    add_swarm_option(listing)
    listing.set_defaults(func=list_command)
