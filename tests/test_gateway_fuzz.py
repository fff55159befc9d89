"""A bounded property-based run of the gateway's own ``/openapi.json`` (schemathesis): every
operation gets generated requests, valid and invalid, against a real gateway with a real
scheduler, chat service and executor (one that hosts no agent, so no generated task runs) on a
private nats-server. It fails on any 5xx, on a status code, content type or header the document
does not list, and on any answer whose body contradicts the document's schema for it.

Bounded: a fixed seed, deterministic generation, a fixed number of examples per operation, one
worker; the requests it made are counted from its HAR report and printed.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aiohttp
import pytest
from gateway_support import call, running

from services.bus.connection import NatsOptions
from services.bus.embedded import free_port
from services.chat.service import Chat
from services.executor.config import ExecutorConfig
from services.executor.service import Executor
from services.gateway.service import Gateway
from services.scheduler.decide import Config
from services.scheduler.service import Scheduler

TOKEN = "fuzz-token-0123456789abcdef"
SEED = 20260101
EXAMPLES = 12  # per operation and phase
BUDGET = 60  # seconds the run takes on an idle machine; the subprocess is stopped at 5x that
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
)
LIVE_STREAMS = ("chat_stream",)  # never ends by itself: tested in test_gateway_http.py


def config_file(path: Path, swarm: str) -> Path:
    """Known ids for most generated paths (else nearly every request is a 404 for an unknown
    swarm), and the streams that can end asked to (``follow=false``)."""
    path.write_text(
        f"""
[dictionaries.swarm]
values = ["{swarm}"]
[dictionaries.task]
values = ["t-fuzz"]
[dictionaries.project]
values = ["p-fuzz"]
[dictionaries.sandbox]
values = ["fuzz-agent"]

[parameters]
"path.swarm" = {{ dictionary = "swarm", probability = 0.8 }}
"path.task" = {{ dictionary = "task", probability = 0.6 }}
"path.project" = {{ dictionary = "project", probability = 0.6 }}
"path.sandbox" = {{ dictionary = "sandbox", probability = 0.6 }}

[[operations]]
include-operation-id = "events"
parameters = {{ "query.follow" = "false" }}

[[operations]]
include-operation-id = "task_logs"
parameters = {{ "query.follow" = "false" }}

[[operations]]
include-operation-id = "board_stream"
parameters = {{ "query.follow" = "false" }}
"""
    )
    return path


async def seed_data(gateway: Gateway, swarm: str) -> None:
    """A task, an agent and a project in the swarm (the executor created it) for the generated
    requests to reach."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(base_url=gateway.url, headers=headers) as http:
        for method, path, body in (
            ("POST", f"/swarms/{swarm}/tasks", {"id": "t-fuzz", "title": "fuzz", "tags": "x"}),
            ("POST", f"/swarms/{swarm}/agents", {"id": "fuzz-agent", "name": "Fuzz Agent"}),
            (
                "POST",
                "/projects",
                {"id": "p-fuzz", "name": "p", "git_url": "/tmp/p", "swarm": swarm},
            ),
        ):
            status, answer = await call(http, method, path, json=body)
            assert status == 201, (path, answer)


@pytest.mark.timeout(600)
async def test_the_gateway_answers_generated_requests_as_its_openapi_document_says(
    nats_factory, tmp_path: Path
) -> None:
    server = nats_factory()
    nats = NatsOptions.from_env(server.url)
    swarm = f"fuzz-{uuid.uuid4().hex[:6]}"
    executor = Executor(
        ExecutorConfig(swarm=swarm, executor_id="fuzz", data_dir=tmp_path, agents=(), max_agents=0),
        nats=nats,
        env={"PATH": "/usr/bin:/bin"},
    )
    async with (
        running(Gateway(nats=nats, port=free_port(), token=TOKEN)) as gateway,
        running(Chat(nats=nats)),
        running(Scheduler(nats=nats, config=Config(lease=5.0), snapshot_every=0)),
        running(executor),
    ):
        await seed_data(gateway, swarm)
        har = tmp_path / "requests.har"
        argv = [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            f"{gateway.url}/openapi.json",
            "--header",
            f"Authorization: Bearer {TOKEN}",
            "--checks",
            ",".join(CHECKS),
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            str(EXAMPLES),
            "--seed",
            str(SEED),
            "--generation-deterministic",
            "--workers",
            "1",
            "--request-timeout",
            "10",
            "--no-color",
            "--report",
            "har",
            "--report-har-path",
            str(har),
            *[arg for op in LIVE_STREAMS for arg in ("--exclude-operation-id", op)],
        ]
        started = time.monotonic()
        ran = await asyncio.to_thread(
            subprocess.run,
            [*argv[:3], "--config-file", str(config_file(tmp_path / "st.toml", swarm)), *argv[3:]],
            capture_output=True,
            text=True,
            timeout=BUDGET * 5,
            cwd=tmp_path,
        )
        took = time.monotonic() - started
    requests = len(json.loads(har.read_text())["log"]["entries"]) if har.exists() else 0
    print(f"schemathesis: {requests} requests in {took:.0f}s (seed {SEED})")
    assert ran.returncode == 0, ran.stdout[-20000:] + ran.stderr[-4000:]
    assert requests > 200  # it really exercised the API
