"""The dispatch message: a claim on its way to the executor hosting the agent.

Published by the scheduler on ``swarm.dispatch.<swarm>.<agent>`` (stream ``SWARM_DISPATCH``, a
work queue) with ``Nats-Msg-Id: <swarm>:<task>:<attempt>`` (the swarm too: the stream and its
duplicate window are shared by all swarms), after the claim is in the log. The executor
appends ``running`` with ``expected_seq=claim_seq``: if the task moved on (cancelled, requeued),
that append conflicts and the dispatch is dropped.
"""

from __future__ import annotations

import msgspec


class Dispatch(msgspec.Struct, kw_only=True):
    swarm: str
    task: str
    agent: str
    attempt: int
    claim_seq: int

    @property
    def msg_id(self) -> str:
        return f"{self.swarm}:{self.task}:{self.attempt}"


def encode(dispatch: Dispatch) -> bytes:
    return msgspec.json.encode(dispatch)


def decode(data: bytes) -> Dispatch:
    return msgspec.json.decode(data, type=Dispatch)
