"""``swarm swarms`` lists the swarms; ``swarm swarm create|delete`` manages them.

``swarm swarm create <id> [--name N] [--description D]`` prints the new swarm's id. Agents
registered in it through the API (``POST /swarms/<id>/agents``) are taken up by any executor
with room; the default agents stay in the default swarm.

``swarm swarm delete <id>`` refuses while tasks are claimed or running (naming them);
``--force`` deletes anyway and their runs are stopped. Everything of the swarm leaves the board;
the event log keeps its history.
"""

from __future__ import annotations

import argparse
from typing import Any

from cli.api import Api
from cli.status import print_json


def swarm_line(swarm: dict[str, Any], default: str) -> str:
    """``* default  default  3 agents  12 tasks  project p-1``: ``*`` marks the default swarm."""
    mark = "*" if swarm["id"] == default else " "
    parts = [f"{mark} {swarm['id']}", swarm.get("name") or swarm["id"]]
    parts += [f"{swarm.get('agents', 0)} agents", f"{swarm.get('tasks', 0)} tasks"]
    if swarm.get("project"):
        parts.append(f"project {swarm['project']}")
    return "  ".join(parts)


def swarms_command(args: argparse.Namespace) -> int:
    api = Api()
    swarms = api.get("/swarms")
    if args.json:
        print_json(swarms)
        return 0
    if not swarms:
        print("no swarms (swarm swarm create <id>)")
    for swarm in swarms:
        print(swarm_line(swarm, api.settings.swarm))
    return 0


def create_command(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"id": args.id}
    if args.name:
        body["name"] = args.name
    if args.description:
        body["description"] = args.description
    swarm = Api().request("POST", "/swarms", body)
    print_json(swarm) if args.json else print(swarm["id"])
    return 0


def delete_command(args: argparse.Namespace) -> int:
    query = {"force": 1 if args.force else None}
    answer = Api().request("DELETE", f"/swarms/{args.id}", query=query)
    print_json(answer) if args.json else print(f"deleted {answer['id']}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("swarms", help="list the swarms (* marks the default one)")
    parser.add_argument("--json", action="store_true", help="print the API's JSON answer")
    parser.set_defaults(func=swarms_command)

    parser = subparsers.add_parser("swarm", help="create or delete a swarm")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="create a swarm; prints its id")
    create.add_argument("id", help="its id: letters, digits, - or _")
    create.add_argument("--name", help="a name to show (default: the id)")
    create.add_argument("--description", help="what it is for")
    create.add_argument("--json", action="store_true", help="print the API's JSON answer")
    create.set_defaults(func=create_command)
    delete = actions.add_parser(
        "delete",
        help="delete a swarm (refused while tasks are claimed or running, unless --force)",
    )
    delete.add_argument("id")
    delete.add_argument(
        "--force", action="store_true", help="also with claimed or running tasks: they are stopped"
    )
    delete.add_argument("--json", action="store_true", help="print the API's JSON answer")
    delete.set_defaults(func=delete_command)
