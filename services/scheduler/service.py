"""The scheduler process: claims, unblocks, requeues (filled by the lifecycle issue)."""

from __future__ import annotations

from services.bus.service import Service


class Scheduler(Service):
    """Swarm scheduler: matches pending tasks to idle agents."""

    name = "scheduler"
