"""``swarm events [--task T] [-f] [--from N]``: the swarm's event log, one line per event.
Without ``-f``: the whole log (or after ``--from``), then it ends. With ``-f``: only new events,
live (Ctrl-C to stop), unless ``--from`` names where to start (``--from 0``: everything)."""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from typing import Any

from cli.api import Api
from cli.status import add_swarm_option, swarm_of

SHOWN = ("title", "name", "agent", "attempt", "executor", "reason", "depends", "tags")


def event_line(seq: int | None, event: dict[str, Any]) -> str:
    moment = datetime.fromtimestamp(event.get("time", 0)).strftime("%H:%M:%S.%f")[:-3]
    details = []
    for name in SHOWN:
        value = event.get(name)
        if value not in (None, "", []):
            shown = ",".join(value) if isinstance(value, list) else value
            details.append(f"{name}={shown}")
    outcome = event.get("outcome") or {}
    if outcome.get("cost_usd") is not None:
        details.append(f"cost_usd={outcome['cost_usd']}")
    position = "" if seq is None else str(seq)
    return f"{position:>6}  {moment}  {event.get('type', '?'):<18} {event.get('id', '?')}  " + (
        " ".join(str(d) for d in details)
    )


def events_command(args: argparse.Namespace) -> int:
    api = Api()
    start = args.start
    stream = api.stream(
        f"/swarms/{swarm_of(api, args)}/events",
        since=start,
        tail=1 if args.follow and start is None else None,
        task=args.task,
        follow=1 if args.follow else 0,
    )
    for message in stream:
        if message.event == "end":
            break
        if args.json:
            print(message.data, flush=True)
            continue
        print(event_line(message.id, json.loads(message.data)), flush=True)
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "events", help="the swarm's event log; -f follows new events live"
    )
    parser.add_argument("--task", help="only this task's events")
    parser.add_argument(
        "--from",
        "--since",
        dest="start",
        type=int,
        metavar="POSITION",
        help="only events after this log position (default: all; with -f: only new ones)",
    )
    parser.add_argument("-f", "--follow", action="store_true", help="keep following new events")
    add_swarm_option(parser)
    parser.set_defaults(func=events_command)
