"""``swarm``: the command line's entry point (console script ``swarm = cli.main:main``).

Each command lives in its own module in ``COMMAND_MODULES``, exposing
``register(subparsers)``: it adds its subparser and ``set_defaults(func=...)``, where ``func``
takes the parsed arguments and returns the exit code. Adding a command is one module and one
line here. Typed errors (``schemas.errors.SwarmError``) become one line on stderr and exit 1.
"""

from __future__ import annotations

import argparse
import sys

from cli import chat, doctor, down, envfile, events, project, status, swarms, tasks, up
from schemas.errors import SwarmError

COMMAND_MODULES = [up, down, status, swarms, tasks, events, chat, project, doctor]


def environment_help() -> str:
    width = max(len(name) for name, _ in envfile.VARIABLES)
    lines = [f"  {name:<{width}}  {meaning}" for name, meaning in envfile.VARIABLES]
    return (
        "environment (wins over the env file):\n"
        + "\n".join(lines)
        + "\n\n`swarm up` writes the env file; `source .swarm/swarm.env` loads it into a shell."
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="swarm",
        description="Swarm: many Claude Code agents in parallel on one shared project.",
        epilog=environment_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        module.register(subparsers)
    return parser


def routed(argv: list[str]) -> list[str]:
    """``swarm task show <id>`` is the ``task-show`` command (``swarm task -- show`` still
    creates a task titled show)."""
    if argv[:2] == ["task", "show"]:
        return [tasks.SHOW, *argv[2:]]
    return argv


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(routed(sys.argv[1:] if argv is None else argv))
    try:
        return int(args.func(args) or 0)
    except SwarmError as error:
        print(f"swarm {args.command}: {error.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
