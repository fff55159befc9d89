"""``swarm events [--task T] [-f]``: the swarm's event log, one line per event; ``-f`` keeps
following it live (Ctrl-C to stop)."""

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
    stream = api.stream(
        f"/swarms/{swarm_of(api, args)}/events",
        since=args.since,
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
    parser = subparsers.add_parser("events", help="the swarm's event log; -f follows it")
    parser.add_argument("--task", help="only this task's events")
    parser.add_argument("--since", type=int, default=0, help="only events after this position")
    parser.add_argument("-f", "--follow", action="store_true", help="keep following new events")
    add_swarm_option(parser)
    parser.set_defaults(func=events_command)
