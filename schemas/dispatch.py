"""The dispatch message: a claim on its way to the executor hosting the agent.

Published by the scheduler on ``swarm.dispatch.<swarm>.<agent>`` (stream ``SWARM_DISPATCH``, a
work queue) with ``Nats-Msg-Id: <swarm>:<task>:<attempt>`` (the swarm too: the stream and its
duplicate window are shared by all swarms), after the claim is in the log. The executor
appends ``running`` with ``expected_seq=claim_seq``: if the task moved on (cancelled, requeued),
that append conflicts and the dispatch is dropped.

``max_run_failures``, ``max_run_losses``, ``max_interruptions`` and ``retry_in``: the scheduler's
budgets (``schemas.attempts``) and the seconds to wait before the next attempt if this run fails
on its own while its run-failure budget is not used up. A dispatch without them (an older
scheduler) means: a failed run fails the task (and a give-back cannot say which budget it used:
0 is "not known").
"""

from __future__ import annotations

import msgspec


class Dispatch(msgspec.Struct, kw_only=True):
    swarm: str
    task: str
    agent: str
    attempt: int
    claim_seq: int
    max_run_failures: int = 1
    max_run_losses: int = 0
    max_interruptions: int = 0
    retry_in: float = 0.0

    @property
    def msg_id(self) -> str:
        return f"{self.swarm}:{self.task}:{self.attempt}"


def encode(dispatch: Dispatch) -> bytes:
    return msgspec.json.encode(dispatch)


def decode(data: bytes) -> Dispatch:
    return msgspec.json.decode(data, type=Dispatch)
