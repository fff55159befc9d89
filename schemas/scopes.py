"""Who may do what: the API token may do everything; an agent's own token (``agent_tokens``) may
read its swarm, post and read its chat, and create a bounded number of follow-up tasks there.

One set of rules for every edge: the gateway's HTTP routes and NATS micro endpoints, and the MCP
server's tools all name their command by its NATS verb (``create_task``, ``chat_post``, …) and
ask ``authorize``. The board-dependent part (is the agent still registered, is it running a task,
how many follow-ups has this run made) is ``follow_up``, asked by the command handler that
creates the task, so it holds whichever edge the request came through.

Pure: no clock, no I/O.
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass

from schemas.agent_tokens import verify_agent_token
from schemas.board import ACTIVE, SwarmView
from schemas.errors import Forbidden, Invalid, Unauthorized

DEFAULT_FOLLOW_UPS = 10  # follow-up tasks one run of an agent may create (SWARM_AGENT_FOLLOW_UPS)

# What an agent token may do, by verb (NATS verbs; server-sent streams by their route's name).
AGENT_READS: frozenset[str] = frozenset(
    {
        "get_swarm",
        "status",
        "board",
        "events",
        "list_tasks",
        "get_task",
        "task_output",
        "task_logs",
        "list_agents",
        "get_project",
        "chat_history",
        "chat_stream",
    }
)
AGENT_WRITES: frozenset[str] = frozenset({"chat_post", "create_task"})
AGENT_VERBS: frozenset[str] = AGENT_READS | AGENT_WRITES


CLI_PRODUCT = "swarm-cli"  # the ``swarm`` CLI's User-Agent: ``swarm-cli/<version>``


def principal(agent: str | None, user_agent: str | None, edge: str = "api") -> str:
    """Who the events a request writes name as their ``actor``: the agent whose own token it
    holds; else ``cli`` for the ``swarm`` CLI (its User-Agent), else the edge it came by
    (``api`` for HTTP, ``nats`` for the micro endpoints)."""
    if agent:
        return agent
    product = (user_agent or "").split("/", 1)[0].strip()
    return "cli" if product == CLI_PRODUCT else edge


@dataclass(frozen=True)
class Caller:
    """Who asks: ``agent`` None is full access (the API token, or no token configured)."""

    agent: str | None = None
    swarm: str | None = None  # the agent's swarm

    @property
    def is_agent(self) -> bool:
        return self.agent is not None


FULL = Caller()


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (None: no bearer token)."""
    scheme, _, given = (header or "").partition(" ")
    given = given.strip()
    return given if scheme.lower() == "bearer" and given else None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_listen(host: str, api_token: str | None) -> None:
    """A server without an API token listens on a loopback address only (``Invalid``)."""
    if not api_token and not is_loopback(host):
        raise Invalid(
            "SWARM_API_TOKEN",
            f"refusing to listen on non-loopback address {host} without SWARM_API_TOKEN",
        )


def identify(api_token: str | None, given: str | None) -> Caller:
    """The caller a bearer token stands for. No API token configured: everyone has full access
    (the gateway then listens on loopback only). ``Unauthorized`` for a missing or wrong one."""
    if not api_token:
        return FULL
    if not given:
        raise Unauthorized("missing bearer token (Authorization: Bearer <token>)")
    if hmac.compare_digest(given.encode(), api_token.encode()):
        return FULL
    holder = verify_agent_token(api_token, given)
    if holder is None:
        raise Unauthorized("wrong bearer token (Authorization: Bearer <token>)")
    swarm, agent = holder
    return Caller(agent=agent, swarm=swarm)


def authorize(caller: Caller, verb: str, swarm: str | None) -> None:
    """``Forbidden`` when an agent asks for ``verb`` outside its scope, or in another swarm
    (``swarm`` None: a command across swarms, which no agent may use)."""
    if not caller.is_agent:
        return
    if verb not in AGENT_VERBS:
        raise Forbidden(
            f"an agent token cannot {verb.replace('_', ' ')}: it reads its swarm, posts and reads "
            "chat, and creates follow-up tasks; this needs SWARM_API_TOKEN"
        )
    if swarm != caller.swarm:
        where = f"swarm {swarm}" if swarm else "every swarm"
        raise Forbidden(f"this agent token belongs to swarm {caller.swarm}, not {where}")


@dataclass(frozen=True)
class FollowUp:
    """What an agent's new task records: the task (and attempt) it was created from."""

    parent: str
    parent_attempt: int


def follow_up(swarm: SwarmView, agent_id: str, limit: int) -> FollowUp:
    """Whether ``agent_id`` may create one more task in ``swarm`` now: only while it runs a task,
    at most ``limit`` per run (counted from the board: tasks whose parent is that task at that
    attempt). ``Forbidden`` says why not."""
    agent = swarm.agents.get(agent_id)
    if agent is None:
        raise Forbidden(f"agent {agent_id} is not registered in swarm {swarm.id}")
    task = swarm.tasks.get(agent.task) if agent.task else None
    if task is None or task.status not in ACTIVE or task.agent != agent_id:
        raise Forbidden(
            f"agent {agent_id} creates follow-up tasks only while it runs a task of swarm "
            f"{swarm.id}"
        )
    made = sum(1 for t in swarm.tasks.follow_ups(task.id) if t.parent_attempt == task.attempt)
    if made >= limit:
        raise Forbidden(
            f"agent {agent_id} already created {made} follow-up tasks in this run of {task.id} "
            f"(at most {limit} per run: SWARM_AGENT_FOLLOW_UPS)"
        )
    return FollowUp(parent=task.id, parent_attempt=task.attempt)
