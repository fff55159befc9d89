"""The executor process (``python -m services.executor``): hosts agents of every swarm.

It folds every swarm's log and runs, in-process, one swarm-scoped ``Executor`` per swarm it
hosts agents of: its home swarm (``--swarm``, where its configured agents live; the built-in
agents only in the default swarm) and each swarm where it took up an agent. Each of those keeps
its own small fold, presence key and sandboxes (``<data dir>/swarms/<swarm>``
for a swarm other than the home one, so equal agent ids of two swarms never share a directory).

Placement (``placement.py``, pure): every executor heartbeats an offer — its room (max agents
minus the agents it hosts in every swarm), its labels, the swarms it serves — and each one
takes up (``agent.updated(executor=…)`` at the agent's expected sequence) the waiting agents
the common plan places on it, or any that fit it once they waited past the grace. The
swarm-scoped executors take up nothing themselves.

Membership: every run finds ``swarm`` on its PATH (a launcher in ``<data dir>/bin``, local
backend) with its agent's token, and — with ``SWARM_MCP_URL`` and an API token known — each
claude run gets the MCP server in ``--mcp-config`` (``membership.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from schemas import events as ev
from schemas.board import Board
from services.bus.connection import NatsOptions
from services.bus.eventlog import AppendConflict
from services.bus.ready import FRESH_FOR
from services.bus.service import Service, read_readiness
from services.executor import config as executor_config
from services.executor import membership, placement
from services.executor.config import ExecutorConfig
from services.executor.decisions import actor
from services.executor.service import Executor

ROUND_EVERY = 2.0  # seconds between placement rounds when nothing happens


def member_settings(
    config: ExecutorConfig, env: Mapping[str, str], bin_dir: Path | None
) -> tuple[ExecutorConfig, dict[str, str]]:
    """The swarm-scoped executors' configuration and environment: ``swarm`` on PATH (when
    ``bin_dir``), and the MCP server in claude runs when its URL and an API token are known."""
    environment = dict(env)
    if bin_dir is not None:
        environment["PATH"] = membership.with_bin(env.get("PATH"), str(bin_dir))
    if not (env.get(membership.URL_VARIABLE) and env.get("SWARM_API_TOKEN")):
        return config, environment
    claude = replace(config.claude, mcp_config=membership.mcp_config())  # its tools allowed
    pass_env = tuple(dict.fromkeys([*config.pass_env, membership.URL_VARIABLE]))
    return replace(config, claude=claude, pass_env=pass_env), environment


def swarms_hosted(board: Board, executor: str) -> set[str]:
    """The swarms where the fold shows agents hosted by ``executor``."""
    return {
        swarm.id
        for swarm in board.swarms.values()
        if any(agent.executor == executor for agent in swarm.agents.values())
    }


def hosted_count(board: Board, executor: str) -> int:
    return sum(
        1
        for swarm in board.swarms.values()
        for agent in swarm.agents.values()
        if agent.executor == executor
    )


class Fleet(Service):
    """Swarm executor: hosts agents of every swarm and runs their claimed tasks."""

    name = "executor"
    # placement reads agents and swarms only: task events (most of the log) are left to the
    # swarm-scoped executors' folds, not folded here a second time
    follows = ("agent", "swarm")

    def __init__(
        self,
        config: ExecutorConfig | None = None,
        *,
        nats: NatsOptions | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config or ExecutorConfig()
        self.me = self.config.executor_id
        super().__init__(
            nats=nats, instance=os.environ.get("SWARM_INSTANCE") or self.config.executor_id
        )
        self.env = dict(os.environ if env is None else env)
        self.members: dict[str, Executor] = {}  # swarm -> its swarm-scoped executor
        self._changed = asyncio.Event()
        self.member_config = self.config  # set up for members in on_ready
        self.member_env = self.env
        self.log = self.log.bind(executor=self.me)

    @property
    def board(self) -> Board:
        assert self.projection is not None
        return self.projection.board

    def offer(self) -> placement.Offer:
        hosted = hosted_count(self.board, self.me) if self.projection is not None else 0
        return placement.Offer(
            executor=self.me,
            free=self.config.max_agents - hosted,
            labels=frozenset(self.config.labels),
            swarms=None if self.config.swarms is None else frozenset(self.config.swarms),
        )

    def detail(self) -> dict[str, object]:
        return {**self.offer().detail(), "swarms_hosted": sorted(self.members)}

    @property
    def ready(self) -> bool:
        """Placement's fold caught up *and* the home swarm's executor ready (its own fold of the
        swarm, tasks and all, caught up): placement's fold (agents and swarms) is ready long
        before, and until the home executor is, the process serves none of its agents."""
        home = self.members.get(self.config.swarm)
        return super().ready and home is not None and home.ready

    # --- start and stop ---------------------------------------------------------------------

    async def on_start(self) -> None:
        assert self.projection is not None
        self.projection.listen(self._on_event)

    async def on_ready(self) -> None:
        bin_dir: Path | None = None
        if self.config.backend == "local":
            bin_dir = self.config.data_dir.resolve() / "bin"
            bin_dir.mkdir(parents=True, exist_ok=True)
            launcher = bin_dir / membership.LAUNCHER_NAME
            launcher.write_text(membership.launcher(sys.executable))
            launcher.chmod(0o755)
        self.member_config, self.member_env = member_settings(self.config, self.env, bin_dir)
        await self._member(self.config.swarm)
        self.spawn(self._rounds(), "placement")

    async def on_stop(self) -> None:
        members = list(self.members.values())
        self.members.clear()
        await asyncio.gather(*(member.stop() for member in members), return_exceptions=True)

    def _on_event(self, seq: int, event: ev.Event, board: Board) -> None:
        if isinstance(event, ev.AgentEvent | ev.SwarmEvent):
            self._changed.set()

    # --- the swarm-scoped executors ---------------------------------------------------------

    async def _member(self, swarm: str) -> None:
        """Start the executor of ``swarm`` (home: with the configured agents)."""
        if swarm in self.members:
            return
        home = swarm == self.config.swarm
        config = replace(
            self.member_config,
            swarm=swarm,
            swarm_name=self.config.swarm_name if home else swarm,
            agents=self.config.agents if home else (),
            max_agents=0,  # placement takes agents up, here
            data_dir=self.config.data_dir if home else self.config.data_dir / "swarms" / swarm,
        )
        member = Executor(
            config, nats=self.nats_options, instance=f"{self.instance}.{swarm}", env=self.member_env
        )
        self.members[swarm] = member
        try:
            await member.start()
        except Exception:
            self.members.pop(swarm, None)
            self.log.exception("executor.member_failed", swarm=swarm)
            await member.stop()
            return
        self.log.info("executor.member_started", swarm=swarm)

    async def _retire(self, swarm: str) -> None:
        member = self.members.pop(swarm, None)
        if member is not None:
            await member.stop()
            self.log.info("executor.member_stopped", swarm=swarm)

    # --- placement --------------------------------------------------------------------------

    async def _rounds(self) -> None:
        while not self.stopping.is_set():
            try:
                await asyncio.wait_for(self._changed.wait(), ROUND_EVERY)
            except TimeoutError:
                pass
            self._changed.clear()
            try:
                await self._round()
            except Exception:  # NATS away: the next round
                self.log.warning("executor.placement_round_failed", exc_info=True)

    async def _round(self) -> None:
        assert self.bus is not None and self.projection is not None
        now = time.time()
        others: list[placement.Offer] = []
        # the other executors' offers only matter with agents to place: not read on each round
        # (each agent event starts one; 1,000 agents registering made every executor read the
        # heartbeats, through a consumer made for the read, a thousand times)
        if placement.waiting(self.board):
            others = [
                offer
                for beat in await read_readiness(self.bus)
                if beat.service == self.name and now - beat.time <= FRESH_FOR
                for offer in [placement.offer_from(beat.detail)]
                if offer is not None and offer.executor != self.me
            ]
        for agent in placement.mine(self.board, self.offer(), others, now):
            update = ev.AgentUpdated(
                swarm=agent.swarm, id=agent.id, time=now, actor=actor(self.me), executor=self.me
            )
            expected = self.board.version(agent.swarm, "agent", agent.id)
            try:
                seq = await self.bus.events.append(update, expected_seq=expected, retry_for=5.0)
            except AppendConflict:
                continue  # another executor took it, or it changed: the next round sees
            await self.projection.wait_for(seq)
            self.log.info("executor.took_up", swarm=agent.swarm, agent=agent.id)
        wanted = swarms_hosted(self.board, self.me) | {self.config.swarm}
        for swarm in sorted(wanted - set(self.members)):
            if swarm in self.board.swarms:
                await self._member(swarm)
        for swarm in sorted(set(self.members) - wanted):
            await self._retire(swarm)
        for swarm in sorted(set(self.members) - {self.config.swarm}):
            if swarm not in self.board.swarms:
                await self._retire(swarm)

    # --- command line -----------------------------------------------------------------------

    @classmethod
    def arguments(cls, parser: argparse.ArgumentParser) -> None:
        executor_config.add_arguments(parser)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Fleet:
        return cls(executor_config.load(args), nats=NatsOptions.from_env(args.nats_url))
