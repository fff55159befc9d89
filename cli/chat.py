"""``swarm chat``: post to the swarm's chat, read its history, or follow it live.

``swarm chat "message" [@mention ...]`` keeps the prototype's form and prints the message as
posted, with whom its mentions reached; ``swarm chat`` alone prints the recent history;
``swarm chat --follow`` prints it and keeps following (Ctrl-C to stop). Inside an agent's
sandbox ``SWARM_AGENT_TOKEN`` lets the agent post as itself.
"""

from __future__ import annotations

import argparse
import json
import uuid
from typing import Any

from cli.api import Api
from cli.status import add_swarm_option, message_line, print_json, swarm_of

RECENT = 20


def post_body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {"message": args.message}
    if args.mentions:
        body["mentions"] = [m if m.startswith("@") else f"@{m}" for m in args.mentions]
    if args.author:
        body["author"] = args.author
    if args.channel:
        body["channel"] = args.channel
    return body


def follow(api: Api, swarm: str, since: int, as_json: bool) -> None:
    for event in api.stream(f"/swarms/{swarm}/chat/stream", since=since):
        if event.event != "message":
            continue
        print(event.data if as_json else message_line(event.json() or {}), flush=True)


def chat_command(args: argparse.Namespace) -> int:
    api = Api()
    swarm = swarm_of(api, args)
    if args.message is not None:
        key = uuid.uuid4().hex
        message = api.request(
            "POST", f"/swarms/{swarm}/chat", post_body(args), headers={"Idempotency-Key": key}
        )
        if args.json:
            print_json(message)
        else:
            print(message_line(message))
            if message.get("recipients"):
                print(f"  → {', '.join(message['recipients'])}")
        return 0
    history = api.get(f"/swarms/{swarm}/chat", since=args.since or None, limit=args.limit)
    messages = history.get("messages", [])
    if args.json and not args.follow:
        print_json(history)
        return 0
    for message in messages:
        print(json.dumps(message) if args.json else message_line(message), flush=True)
    if not messages and not args.follow:
        print("No messages")
    if args.follow:
        last = max([args.since or 0, *(m.get("seq", 0) for m in messages)])
        follow(api, swarm, last, args.json)
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "chat",
        help='post to the swarm\'s chat: swarm chat "message" [@mention ...]; alone: history',
        description="Post a message (mentions: @all, @<role>, @<agent>), or without one print "
        "the recent history; --follow keeps printing new messages.",
    )
    parser.add_argument("message", nargs="?", help="the text; @mentions in it count too")
    parser.add_argument("mentions", nargs="*", help="extra mentions: @all, @frontend, @qa-agent")
    parser.add_argument("--author", help="who speaks (default: master; an agent token: itself)")
    parser.add_argument("--channel", help="the channel (default: general)")
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing new messages")
    parser.add_argument("--since", type=int, help="only messages after this position (seq)")
    parser.add_argument("--limit", type=int, default=RECENT, help=f"how many (default {RECENT})")
    add_swarm_option(parser)
    parser.set_defaults(func=chat_command)
