"""Command-line flags more than one service takes, each defaulting to its environment variable:
``setting`` for any numeric one, ``add_auth_limits`` for the wrong-token limit
(``schemas.token_failures``) the gateway and the MCP server both keep."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

from schemas import token_failures
from schemas.token_failures import Limits


def setting(parser: argparse.ArgumentParser) -> Callable[[str, float, str], None]:
    """``setting("--auth-window", 300.0, "what it is")``: a flag whose default is the
    environment's ``SWARM_AUTH_WINDOW``, else the given default (whose type it has)."""

    def add(flag: str, default: float, meaning: str) -> None:
        env = "SWARM_" + flag.removeprefix("--").replace("-", "_").upper()
        kind = type(default)
        parser.add_argument(
            flag,
            type=kind,
            default=kind(os.environ.get(env, default)),
            help=f"{meaning} (env {env}, default {default:g})",
        )

    return add


def add_auth_limits(parser: argparse.ArgumentParser) -> None:
    """``--auth-failures``, ``--auth-window``, ``--auth-addresses`` (``SWARM_AUTH_*``)."""
    add = setting(parser)
    add(
        "--auth-failures",
        token_failures.FAILURES,
        "wrong tokens (API, board sign-in or MCP) one client address may give per window "
        "before its attempts answer 429; 0: no limit",
    )
    add(
        "--auth-window",
        token_failures.WINDOW,
        "seconds the wrong tokens are counted over, and an address past the limit waits",
    )
    add(
        "--auth-addresses",
        token_failures.ADDRESSES,
        "client addresses whose wrong tokens are tracked at most, the oldest forgotten first",
    )


def auth_limits(args: argparse.Namespace) -> Limits:
    """The limits ``add_auth_limits``'s flags gave."""
    return Limits(args.auth_failures, args.auth_window, args.auth_addresses)
