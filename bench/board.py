"""The board in a browser (issue 13): how fast an event reaches the page, how heavy the page is,
and the screenshots of its main views.

One run, real processes under a temporary directory (``tests/processes.Cluster``: an embedded
nats-server, gateway, scheduler, chat service and an executor whose claude runtime is the
stand-in ``tests/fake_claude.py`` in ``success`` mode, so claude tasks cost something), and
Debian's Chromium through Playwright (``executable_path``; ``SWARM_CHROMIUM`` to name another).

1. Latency: a swarm with no agent, its board open. ``--events N`` tasks are created over HTTP one
   at a time; each ``task.created`` event carries the gateway's clock when it was made. For each,
   the time until (a) a plain NATS subscriber in this process receives it from JetStream (raw)
   and (b) its card is in the board's DOM (a MutationObserver in the page notes ``Date.now()``).
   Same machine, same clock; the next task is created once the card is there.
2. Page weight: the bytes of everything the board's first load fetches (page, script, styles,
   icon), and the first board message of the demo swarm.
3. ``--screenshots DIR``: a demo swarm (three agents, a project in a local bare repository, a
   small DAG with one task running, one failed, two blocked, one no agent can take, claude
   tasks with costs, a task whose work landed, a budget, chat with mentions), then the board,
   task pages, the graph, the chat, the sign-in page and the board at phone width.

Run: ``.venv/bin/python bench/board.py [--events 40] [--screenshots docs/screenshots]``.
Numbers: docs/benchmarks.md ("The board").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import aiohttp  # noqa: E402
import nats  # noqa: E402
from board_browser import chromium_path, no_chromium_reason, shell_gate  # noqa: E402
from git_support import Remote  # noqa: E402
from playwright.async_api import async_playwright  # noqa: E402
from processes import Cluster  # noqa: E402
from waiting import until  # noqa: E402

DEMO = "demo"
AGENTS = [
    "frontend-agent:frontend:frontend,ui",
    "backend-agent:backend:backend,api",
    "qa-agent:qa:qa,test",
]
OBSERVE = """() => {
  window.__seen = {};
  new MutationObserver(() => {
    for (const card of document.querySelectorAll('[data-task]')) {
      if (!(card.dataset.task in window.__seen)) window.__seen[card.dataset.task] = Date.now();
    }
  }).observe(document.getElementById('main'), {childList: true, subtree: true});
}"""


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


class Http:
    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def ok(self, method: str, path: str, body: Any = None) -> Any:
        async with self.session.request(method, path, json=body) as response:
            text = await response.text()
            assert response.status < 300, f"{method} {path} -> {response.status}: {text}"
            return json.loads(text) if text else None

    async def task(self, swarm: str, **body: Any) -> Any:
        return await self.ok("POST", f"/swarms/{swarm}/tasks", body)

    async def wait_status(self, swarm: str, task: str, statuses: set[str]) -> Any:
        async def reached() -> Any:
            found = await self.ok("GET", f"/swarms/{swarm}/tasks/{task}")
            return found if found["status"] in statuses else None

        return await until(reached, 60, f"{task} in {statuses}", every=0.05)


async def sign_in(context: Any, url: str, token: str) -> Any:
    page = await context.new_page()
    await page.goto(url + "/")
    await page.fill("#token", token)
    await page.click("#signin button[type=submit]")
    await page.wait_for_selector("#live[data-state=live], #main .empty")
    return page


# --- 1. latency ---------------------------------------------------------------------------------


async def latency(cluster: Cluster, http: Http, browser: Any, events: int) -> dict[str, Any]:
    swarm = f"bench-{uuid.uuid4().hex[:6]}"
    await http.ok("POST", "/swarms", {"id": swarm, "name": "bench"})
    arrived: dict[str, float] = {}
    connection = await nats.connect(cluster.nats.url)

    async def on_message(message: Any) -> None:
        event = json.loads(message.data)
        if event.get("type") == "task.created":
            arrived[event["id"]] = time.time()

    await connection.subscribe(f"swarm.evt.{swarm}.task.>", cb=on_message)
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await sign_in(context, cluster.api.url, cluster.token)
    await page.goto(f"{cluster.api.url}/#/{swarm}")
    await page.wait_for_selector("#live[data-state=live]")
    await page.evaluate(OBSERVE)
    made: dict[str, float] = {}
    for number in range(events):
        task = f"t-{number:03d}"
        created = await http.task(swarm, id=task, title=f"bench {number}", tags="nobody")
        await page.wait_for_selector(f'[data-task="{task}"]')
        detail = await http.ok("GET", f"/swarms/{swarm}/tasks/{task}")
        made[task] = detail["events"][0]["time"]
        assert created["status"] == "pending"
    seen: dict[str, int] = await page.evaluate("() => window.__seen")
    await context.close()
    await connection.close()
    raw = [(arrived[t] - made[t]) * 1000 for t in made]
    board = [(seen[t] / 1000 - made[t]) * 1000 for t in made]
    return {"raw": raw, "board": board}


# --- 2. page weight -----------------------------------------------------------------------------


async def weight(cluster: Cluster, browser: Any, swarm: str) -> dict[str, int]:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await sign_in(context, cluster.api.url, cluster.token)
    sizes: dict[str, int] = {}

    async def on_response(response: Any) -> None:
        if "/board/stream" in response.url or "/stream" in response.url:
            return  # live streams never end: measured apart
        try:
            sizes[response.url.replace(cluster.api.url, "")] = len(await response.body())
        except Exception:  # a redirect has no body
            pass

    page.on("response", on_response)
    await page.goto(f"{cluster.api.url}/#/{swarm}")
    await page.reload()
    await page.wait_for_selector("#live[data-state=live]")
    await page.wait_for_selector("[data-task]")
    await context.close()
    async with (
        aiohttp.ClientSession(
            base_url=cluster.api.url, headers={"Authorization": f"Bearer {cluster.token}"}
        ) as session,
        session.get(f"/swarms/{swarm}/board/stream?follow=0") as response,
    ):
        sizes["first board message (demo swarm)"] = len(await response.read())
    return sizes


# --- 3. the demo swarm and its screenshots ------------------------------------------------------


async def demo(cluster: Cluster, http: Http) -> Path:
    """The demo swarm; returns the gate that holds its running task."""
    await http.ok(
        "POST",
        "/swarms",
        {"id": DEMO, "name": "orders", "description": "orders page", "budget_usd": 0.5},
    )
    executor = cluster.executor("ex-demo", DEMO, AGENTS, {"FAKE_CLAUDE_MODE": "success"})
    cluster.wait_ready(executor)
    cluster.wait_agents(DEMO, {a.split(":")[0]: "ex-demo" for a in AGENTS})
    remote = Remote(cluster.root / "orders-app")  # a bare repository: the work lands there
    project = await http.ok(
        "POST", "/projects", {"name": "orders-app", "gitUrl": remote.url, "swarm": DEMO}
    )
    await http.ok("POST", f"/projects/{project['id']}/init?wait=1&timeout=60")
    await http.task(
        DEMO,
        id="t-migrate",
        title="Add the orders table",
        runtime="shell",
        prompt="mkdir -p db && printf 'CREATE TABLE orders (id serial, total int);\\n' "
        "> db/001_orders.sql && echo migration written",
        tags="api",
    )
    await http.wait_status(DEMO, "t-migrate", {"completed"})

    async def landed() -> bool:
        task = await http.ok("GET", f"/swarms/{DEMO}/tasks/t-migrate")
        return bool((task.get("integration") or {}).get("landed"))

    await until(landed, 60, "t-migrate landed", every=0.1)
    gate = cluster.root / "demo.gate"
    await http.task(
        DEMO,
        id="t-design",
        title="Design the orders API",
        prompt="Write docs/orders-api.md: endpoints, fields, errors.",
        tags="api",
        priority="high",
    )
    await http.task(
        DEMO,
        id="t-form",
        title="Build the order form",
        prompt="Add the order form component with validation.",
        tags="ui",
        depends=["t-design"],
    )
    for task in ("t-design", "t-form"):
        await http.wait_status(DEMO, task, {"completed"})
    await http.task(
        DEMO,
        id="t-api",
        title="Implement POST /orders",
        runtime="shell",
        prompt="echo migrating the orders table; echo adding the handler; "
        + shell_gate(gate, "running the API tests"),
        tags="api",
        priority="critical",
        depends=["t-design"],
    )
    await http.task(
        DEMO,
        id="t-lint",
        title="Lint the frontend",
        runtime="shell",
        prompt="echo 'src/OrderForm.tsx:41: unused variable total'; exit 1",
        tags="ui",
    )
    await http.task(
        DEMO,
        id="t-e2e",
        title="End-to-end tests for orders",
        prompt="Write Playwright tests for the order flow.",
        tags="test",
        depends=["t-api", "t-form"],
    )
    await http.task(
        DEMO,
        id="t-release",
        title="Release notes",
        prompt="Summarise the orders work for the changelog.",
        depends=["t-e2e"],
        priority="low",
    )
    await http.task(
        DEMO,
        id="t-logo",
        title="Design the logo",
        prompt="A logo for the orders page.",
        tags="design",
    )
    await http.wait_status(DEMO, "t-api", {"running"})
    await http.wait_status(DEMO, "t-lint", {"failed"})
    for text in (
        "@backend-agent keep the v1 route working until the mobile app moves over",
        "@qa please cover the empty-cart case in the end-to-end tests",
        "standup in 10 minutes @all",
    ):
        await http.ok("POST", f"/swarms/{DEMO}/chat", {"message": text})
    return gate


async def screenshots(cluster: Cluster, browser: Any, folder: Path) -> list[Path]:
    url = cluster.api.url
    shots: list[Path] = []
    context = await browser.new_context(viewport={"width": 1366, "height": 860})
    page = await context.new_page()
    await page.goto(url + "/")
    await page.wait_for_selector("#signin")
    shots.append(folder / "sign-in.png")
    await page.screenshot(path=str(shots[-1]))
    page = await sign_in(context, url, cluster.token)
    views = (
        ("board.png", f"#/{DEMO}", '[data-task="t-api"][data-status="running"]'),
        ("task.png", f"#/{DEMO}/task/t-design", '[data-field="result"]'),
        ("task-running.png", f"#/{DEMO}/task/t-api", '[data-field="output"]:has-text("API")'),
        (
            "task-landed.png",
            f"#/{DEMO}/task/t-migrate",
            '[data-field="output"]:has-text("migration")',
        ),
        ("graph.png", f"#/{DEMO}/graph", '[data-node="t-release"]'),
        ("chat.png", f"#/{DEMO}/chat", '.msg:has-text("standup")'),
    )
    for name, where, ready in views:
        await page.goto(f"{url}/{where}")
        await page.wait_for_selector(ready)
        shots.append(folder / name)
        await page.screenshot(path=str(shots[-1]), full_page=True)
    await context.close()
    phone = await browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    page = await sign_in(phone, url, cluster.token)
    await page.goto(f"{url}/#/{DEMO}")
    await page.wait_for_selector('[data-task="t-api"]')
    shots.append(folder / "phone.png")
    await page.screenshot(path=str(shots[-1]))
    await phone.close()
    return shots


async def run(args: argparse.Namespace) -> None:
    executable = chromium_path()
    if executable is None:
        raise SystemExit(no_chromium_reason())
    root = Path(tempfile.mkdtemp(prefix="swarm-board-bench-"))
    cluster = Cluster(root / "cluster").start_nats()
    processes = [cluster.gateway(), cluster.scheduler("main"), cluster.spawn("chat")]
    with cluster.serving(*processes):
        headers = {"Authorization": f"Bearer {cluster.token}"}
        async with (
            aiohttp.ClientSession(base_url=cluster.api.url, headers=headers) as session,
            async_playwright() as playwright,
        ):
            http = Http(session)
            browser = await playwright.chromium.launch(executable_path=executable)
            gate = await demo(cluster, http)
            times = await latency(cluster, http, browser, args.events)
            sizes = await weight(cluster, browser, DEMO)
            shots: list[Path] = []
            if args.screenshots:
                shots = await screenshots(cluster, browser, args.screenshots)
            await browser.close()
            gate.touch()
            await http.wait_status(DEMO, "t-api", {"completed"})
    print(f"board latency, {args.events} task.created events, one at a time (ms)")
    print(f"{'':30} {'median':>8} {'p95':>8} {'max':>8}")
    rows = (("raw JetStream subscriber", "raw"), ("board DOM (card in the page)", "board"))
    for label, key in rows:
        values = times[key]
        print(
            f"{label:30} {statistics.median(values):8.1f} {percentile(values, 0.95):8.1f} "
            f"{max(values):8.1f}"
        )
    ratio = statistics.median(times["board"]) / max(statistics.median(times["raw"]), 0.001)
    print(f"board / raw (medians): {ratio:.1f}x")
    print("page weight (bytes, uncompressed)")
    total = 0
    for name, size in sizes.items():
        print(f"  {name:45} {size:8d}")
        if not name.startswith("first board"):
            total += size
    print(f"  {'first load, all files':45} {total:8d}  ({total / 1024:.1f} KB)")
    for shot in shots:
        print(f"screenshot: {shot}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=40)
    parser.add_argument("--screenshots", type=Path, help="write the screenshots here")
    args = parser.parse_args()
    if args.screenshots:
        args.screenshots.mkdir(parents=True, exist_ok=True)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
