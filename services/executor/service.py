"""The executor process: hosts agents and runs their tasks in sandboxes (filled by the lifecycle
issue)."""

from __future__ import annotations

from services.bus.service import Service


class Executor(Service):
    """Swarm executor: runs claimed tasks in agents' sandboxes."""

    name = "executor"
