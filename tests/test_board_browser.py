"""The board in a real browser (Debian's Chromium through Playwright) against real processes: a
gateway, a scheduler, the chat service and an executor running shell tasks, on a real
nats-server. Every wait is on the page's DOM (Playwright's ``wait_for_selector``) or on the
API; the tasks themselves wait for files the test creates, so each state can be watched.

Each test ends by asserting the browser logged no console error or warning and threw no page
error. Skipped, with the reason, only when no Chromium is found (``board_browser``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from board_browser import Browser, chromium_path, no_chromium_reason, shell_gate, sign_in
from processes import Cluster

CHROMIUM = chromium_path()
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason=no_chromium_reason()),
    pytest.mark.timeout(300),
]
AGENT = "dev-agent"
WAIT = 20_000  # ms: the longest any one state may take to show


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    shared = Cluster(tmp_path_factory.mktemp("board")).start_nats()
    with shared.serving(shared.gateway(), shared.scheduler("main"), shared.spawn("chat")):
        yield shared


@pytest.fixture(scope="module")
def swarm(cluster: Cluster) -> str:
    """A swarm with one agent (skills ``dev``): one task runs at a time."""
    swarm = f"board-{uuid.uuid4().hex[:8]}"
    cluster.api.ok("POST", "/swarms", {"id": swarm, "name": "board"})
    executor = cluster.executor("ex-board", swarm, [f"{AGENT}:developer:dev"])
    cluster.wait_ready(executor)
    cluster.wait_agents(swarm, {AGENT: "ex-board"})
    return swarm


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM is not None
    with Browser(CHROMIUM) as started:
        yield started


@pytest.fixture
def page(browser: Browser, cluster: Cluster) -> Iterator[Any]:
    """A signed-in page at laptop size; no console error or page error by the test's end."""
    browser.problems.clear()
    opened = browser.page(viewport={"width": 1280, "height": 800})
    sign_in(opened, cluster.api.url, cluster.token)
    yield opened
    opened.context.close()
    assert browser.problems == []


def card(task: str, status: str) -> str:
    return f'[data-task="{task}"][data-status="{status}"]'


def create(cluster: Cluster, swarm: str, task: str, prompt: str, **fields: Any) -> dict:
    body = {"id": task, "title": fields.pop("title", task), "runtime": "shell", "prompt": prompt}
    return cluster.api.ok("POST", f"/swarms/{swarm}/tasks", {**body, **fields})


def open_board(
    page: Any, cluster: Cluster, swarm: str, view: str = "", *, per_status: int | None = None
) -> None:
    query = f"?per_status={per_status}" if per_status else ""
    page.goto(f"{cluster.api.url}/{query}#/{swarm}{'/' + view if view else ''}")
    page.wait_for_selector("#live[data-state=live]", timeout=WAIT)


def gate(cluster: Cluster, name: str) -> Path:
    return cluster.root / f"{name}-{uuid.uuid4().hex[:6]}.gate"


# --- signing in ---------------------------------------------------------------------------------


def test_the_board_asks_for_the_token_and_keeps_only_an_httponly_session(
    browser: Browser, cluster: Cluster, swarm: str
) -> None:
    browser.problems.clear()
    page = browser.page()
    answer = page.goto(cluster.api.url + "/")
    assert answer.status == 200
    page.wait_for_selector("form#signin input#token")

    page.fill("#token", "not-the-token")
    page.click("#signin button[type=submit]")
    page.wait_for_selector("#signin-error:text('not this Swarm')")
    assert page.context.cookies() == []
    browser.problems.clear()  # the refused sign-in's 401 is logged by the browser, as it should

    page.fill("#token", cluster.token)
    page.click("#signin button[type=submit]")
    page.wait_for_selector("#live[data-state=live]", timeout=WAIT)

    (cookie,) = page.context.cookies()
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    assert cluster.token not in cookie["value"] and cluster.token not in page.url
    stored = page.evaluate("() => JSON.stringify([{...localStorage}, {...sessionStorage}])")
    assert cluster.token not in stored and stored == "[{},{}]"
    assert page.evaluate("() => document.cookie") == ""  # HttpOnly: no script sees it

    page.click(".signout button")
    page.wait_for_selector("form#signin")
    assert page.context.cookies() == []
    page.context.close()
    assert browser.problems == []


def test_pages_carry_a_csp_and_the_board_asks_nothing_of_another_origin(
    browser: Browser, cluster: Cluster, swarm: str
) -> None:
    browser.problems.clear()
    page = browser.page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    sign_in(page, cluster.api.url, cluster.token)
    page.goto(f"{cluster.api.url}/#/{swarm}")
    answer = page.reload()  # the page itself, loaded afresh (a hash change loads nothing)
    page.wait_for_selector("#live[data-state=live]", timeout=WAIT)

    csp = answer.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "unsafe-inline" not in csp
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert requested and all(url.startswith(cluster.api.url + "/") for url in requested)
    inline = page.evaluate("() => [...document.scripts].filter(s => !s.src).length")
    assert inline == 0
    page.context.close()
    assert browser.problems == []


# --- live -----------------------------------------------------------------------------------


def test_a_task_moves_pending_running_completed_live_with_its_output(
    page: Any, cluster: Cluster, swarm: str
) -> None:
    hold, release = gate(cluster, "hold"), gate(cluster, "release")
    create(cluster, swarm, "t-hold", shell_gate(hold), tags=["dev"])
    open_board(page, cluster, swarm)
    page.wait_for_selector(card("t-hold", "running"), timeout=WAIT)

    create(cluster, swarm, "t-live", shell_gate(release, "halfway there"), priority="high")
    page.wait_for_selector(card("t-live", "pending"), timeout=WAIT)
    assert page.locator('[data-column="pending"] ' + card("t-live", "pending")).count() == 1
    hold.touch()  # the agent finishes t-hold and takes t-live

    page.wait_for_selector(card("t-live", "running"), timeout=WAIT)
    page.wait_for_selector(f'[data-agent="{AGENT}"] a.current:text("t-live")', timeout=WAIT)
    page.click(card("t-live", "running"))
    page.wait_for_selector('[data-task-page="t-live"]', timeout=WAIT)
    page.wait_for_selector('[data-field="output"]:has-text("halfway there")', timeout=WAIT)
    release.touch()

    page.wait_for_selector('[data-task-page="t-live"][data-status="completed"]', timeout=WAIT)
    page.wait_for_selector('tr[data-event="task.completed"]', timeout=WAIT)
    page.click(".back a")
    page.wait_for_selector('[data-column="completed"] ' + card("t-live", "completed"))
    page.wait_for_selector('[data-column="completed"] ' + card("t-hold", "completed"))


def test_a_failed_task_shows_why_on_its_card_and_its_page(
    page: Any, cluster: Cluster, swarm: str
) -> None:
    open_board(page, cluster, swarm)
    create(cluster, swarm, "t-broken", "echo about to fail; exit 7", title="Broken build")

    # locators, not element handles: the board redraws on every change, so a handle to a card
    # may be gone a moment later; a locator finds the card again
    failed = page.locator('[data-column="failed"] ' + card("t-broken", "failed"))
    failed.wait_for(timeout=WAIT)
    assert "exited with code 7" in failed.inner_text()
    failed.click()
    reason = page.locator('[data-field="reason"]')
    reason.wait_for(timeout=WAIT)
    assert "exited with code 7" in reason.inner_text()
    page.wait_for_selector('[data-field="output"]:has-text("about to fail")', timeout=WAIT)


def test_the_graph_shows_what_waits_on_what_and_follows_it_live(
    page: Any, cluster: Cluster, swarm: str
) -> None:
    start = gate(cluster, "dag")
    create(cluster, swarm, "t-a", shell_gate(start), title="Build the API")
    create(cluster, swarm, "t-b", "echo ui", title="Build the UI", depends=["t-a"])
    create(cluster, swarm, "t-c", "echo qa", title="Test both", depends=["t-a", "t-b"])
    open_board(page, cluster, swarm, "graph")

    for node in ("t-a", "t-b", "t-c"):
        page.wait_for_selector(f'[data-node="{node}"]', timeout=WAIT)
    edges = page.eval_on_selector_all("[data-edge]", "all => all.map(e => e.dataset.edge)")
    assert {"t-a->t-b", "t-a->t-c", "t-b->t-c"} <= set(edges)
    page.wait_for_selector('[data-blocked="t-c"]', timeout=WAIT)
    waiting = page.locator('[data-blocked="t-c"]').inner_text()
    assert "t-a (" in waiting and "t-b (blocked)" in waiting
    start.touch()

    page.wait_for_selector('[data-node="t-c"][data-status="completed"]', timeout=WAIT)
    page.wait_for_selector('.waiting p.none:text("Nothing is blocked")', timeout=WAIT)


def test_a_chat_message_posted_on_the_board_comes_back_through_the_stream(
    page: Any, cluster: Cluster, swarm: str
) -> None:
    open_board(page, cluster, swarm, "chat")
    text = f"please look at the build @{AGENT} ({uuid.uuid4().hex[:6]})"
    page.fill("#chat-text", text)
    page.click("#chat-form button[type=submit]")

    message = page.locator(f'.msg:has-text("{text[-7:]}")')
    message.wait_for(timeout=WAIT)
    assert message.locator(".mention").inner_text() == f"@{AGENT}"
    assert AGENT in message.locator(".recipients").inner_text()
    assert page.input_value("#chat-text") == ""
    history = cluster.api.ok("GET", f"/swarms/{swarm}/chat")["messages"]
    assert [m["recipients"] for m in history if m["text"] == text] == [[AGENT]]


def test_the_replay_slider_shows_the_board_as_it_was(
    page: Any, cluster: Cluster, swarm: str
) -> None:
    create(cluster, swarm, "t-replay", "echo replayed")
    done = cluster.wait_task(swarm, "t-replay", {"completed"})
    at = next(e["seq"] for e in done["events"] if e["type"] == "task.created")
    open_board(page, cluster, swarm)
    page.wait_for_selector(card("t-replay", "completed"), timeout=WAIT)

    page.eval_on_selector(
        "#replay-at", "(el, at) => { el.value = at; el.dispatchEvent(new Event('input')) }", at
    )
    page.wait_for_selector(f"#replay-label:text('at #{at}')", timeout=WAIT)
    page.wait_for_selector(card("t-replay", "pending"), timeout=WAIT)
    page.click("#replay-live")
    page.wait_for_selector(card("t-replay", "completed"), timeout=WAIT)


# --- a board of many tasks: a bounded number of each status, more on request ------------------


def column(page: Any, key: str, cards: list[str], count: int, more: str | None) -> None:
    """Wait until column ``key`` shows ``cards`` in that order, ``count`` in its heading, and
    ``more`` as its "more" button's text (None: no button)."""
    page.wait_for_function(
        """([key, cards, count, more]) => {
            const column = document.querySelector(`[data-column="${key}"]`);
            if (!column) return false;
            const shown = [...column.querySelectorAll("[data-task]")].map((e) => e.dataset.task);
            const button = column.querySelector("button.more");
            return JSON.stringify(shown) === JSON.stringify(cards)
                && column.querySelector("h2 .n").textContent === String(count)
                && (button ? button.textContent : null) === more;
        }""",
        arg=[key, cards, count, more],
        timeout=WAIT,
    )


def quiet_swarm(cluster: Cluster, name: str, *tasks: tuple[str, str]) -> str:
    """A swarm with no agent, holding ``tasks`` (id, priority): they stay pending until
    cancelled."""
    swarm = f"{name}-{uuid.uuid4().hex[:8]}"
    cluster.api.ok("POST", "/swarms", {"id": swarm, "name": name})
    for task, priority in tasks:
        create(cluster, swarm, task, "echo never", priority=priority)
    return swarm


def test_a_long_column_shows_the_next_to_take_follows_changes_and_loads_the_rest(
    page: Any, cluster: Cluster
) -> None:
    swarm = quiet_swarm(
        cluster, "queue", ("t-low", "low"), ("t-crit", "critical"), ("t-mid", "medium"),
        ("t-high", "high"),
    )  # fmt: skip
    open_board(page, cluster, swarm, per_status=2)
    column(page, "pending", ["t-crit", "t-high"], 4, "2 more")

    # a task the page does not hold: shown when it comes before the last card
    create(cluster, swarm, "t-urgent", "echo never", priority="critical")
    column(page, "pending", ["t-crit", "t-urgent"], 5, "3 more")  # t-high made room
    cluster.api.ok("POST", f"/swarms/{swarm}/tasks/t-crit/cancel", {})
    column(page, "cancelled", ["t-crit"], 1, None)
    column(page, "pending", ["t-urgent"], 4, "3 more")
    # ... else only counted: t-high and t-mid, not shown either, come before it
    create(cluster, swarm, "t-later", "echo never", priority="low")
    column(page, "pending", ["t-urgent"], 5, "4 more")

    page.click('[data-column="pending"] button.more')  # the next page, in the same order
    column(page, "pending", ["t-urgent", "t-high", "t-mid"], 5, "2 more")
    page.click('[data-column="pending"] button.more')
    column(page, "pending", ["t-urgent", "t-high", "t-mid", "t-low", "t-later"], 5, None)

    cluster.api.ok("POST", f"/swarms/{swarm}/tasks/t-mid/cancel", {})
    column(page, "cancelled", ["t-mid", "t-crit"], 2, None)  # newest first
    column(page, "pending", ["t-urgent", "t-high", "t-low", "t-later"], 4, None)


def test_a_page_loaded_while_its_tasks_change_does_not_bring_back_what_the_stream_removed(
    page: Any, cluster: Cluster
) -> None:
    swarm = quiet_swarm(cluster, "race", ("t-a", "critical"), ("t-b", "high"), ("t-c", "medium"))
    open_board(page, cluster, swarm, per_status=1)
    column(page, "pending", ["t-a"], 3, "2 more")

    held: list[tuple[Any, Any]] = []  # the listing's answer, held back until the test says

    def hold(route: Any) -> None:
        held.append((route, route.fetch()))

    page.route(f"**/swarms/{swarm}/tasks?*", hold, times=1)
    page.click('[data-column="pending"] button.more')
    page.wait_for_selector('[data-column="pending"] button.more:text("loading…")', timeout=WAIT)
    cluster.api.ok("DELETE", f"/swarms/{swarm}/tasks/t-b")  # after the page was read
    column(page, "pending", ["t-a"], 2, "loading…")  # the stream's change came first
    route, answer = held[0]
    route.fulfill(response=answer)  # the page still lists t-b

    column(page, "pending", ["t-a"], 2, "1 more")  # no t-b: the change was newer
    page.click('[data-column="pending"] button.more')  # after t-b, gone: from the start again
    column(page, "pending", ["t-a", "t-c"], 2, None)


def test_a_finished_column_shows_the_newest_and_loads_older_ones(
    page: Any, cluster: Cluster
) -> None:
    swarm = quiet_swarm(cluster, "history")
    for i in range(5):
        create(cluster, swarm, f"c{i}", "echo never")
        cluster.api.ok("POST", f"/swarms/{swarm}/tasks/c{i}/cancel", {})
    open_board(page, cluster, swarm, per_status=2)
    column(page, "cancelled", ["c4", "c3"], 5, "3 more")

    create(cluster, swarm, "c5", "echo never")
    cluster.api.ok("POST", f"/swarms/{swarm}/tasks/c5/cancel", {})
    column(page, "cancelled", ["c5", "c4"], 6, "4 more")  # the oldest shown made room
    page.click('[data-column="cancelled"] button.more')
    column(page, "cancelled", ["c5", "c4", "c3", "c2"], 6, "2 more")

    # the slider's past board is as the gateway sent it: the rest counted, not loaded
    at = cluster.api.task(swarm, "c4")["events"][-1]["seq"]
    page.eval_on_selector(
        "#replay-at", "(el, at) => { el.value = at; el.dispatchEvent(new Event('input')) }", at
    )
    page.wait_for_selector(f"#replay-label:text('at #{at}')", timeout=WAIT)
    page.wait_for_selector('[data-column="cancelled"] p.more:text("3 more")', timeout=WAIT)
    shown = page.eval_on_selector_all(
        '[data-column="cancelled"] [data-task]', "all => all.map(e => e.dataset.task)"
    )
    assert shown == ["c4", "c3"]


def test_the_switch_moves_between_swarms(page: Any, cluster: Cluster, swarm: str) -> None:
    other = f"other-{uuid.uuid4().hex[:8]}"
    cluster.api.ok("POST", "/swarms", {"id": other, "name": "other"})
    create(cluster, other, "t-elsewhere", "echo never runs: no agent here")
    open_board(page, cluster, swarm)

    page.click("#swarm-switch")  # the list is refreshed when it is opened
    page.wait_for_selector(f'#swarm-switch option[value="{other}"]', state="attached")
    page.select_option("#swarm-switch", other)
    page.wait_for_selector(card("t-elsewhere", "pending"), timeout=WAIT)
    warning = page.locator(card("t-elsewhere", "pending") + " .warning")
    assert "no agent can take" in warning.inner_text()
    assert "no agent is registered" in (warning.get_attribute("title") or "")
    assert page.url.endswith(f"#/{other}")
    assert page.locator('[data-task="t-live"]').count() == 0


def test_on_a_phone_the_columns_stack(browser: Browser, cluster: Cluster, swarm: str) -> None:
    browser.problems.clear()
    phone = browser.page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    sign_in(phone, cluster.api.url, cluster.token)
    open_board(phone, cluster, swarm)
    pending = phone.locator('[data-column="pending"]').bounding_box()
    running = phone.locator('[data-column="running"]').bounding_box()
    assert pending["x"] == running["x"] and running["y"] > pending["y"]
    width = phone.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 390
    phone.context.close()
    assert browser.problems == []
