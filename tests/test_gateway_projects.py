"""Projects through the gateway on real NATS: create and attach, secrets refused, init/sync
rounds, each agent's checkout once the executors report (appended here by hand), waiting for a
round, and the same commands over NATS micro. The pure checks run without NATS."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import jsonschema
import pytest
from gateway_support import append, call, gateway_on, running

from schemas import events as ev
from schemas.board import Board, Checkout, ProjectView, SwarmView
from schemas.errors import Invalid
from schemas.fold import apply
from services.bus.service import Bus
from services.gateway.projects import round_complete
from services.gateway.service import Gateway
from services.gateway.validation import check_credentials_ref, check_git_url

TOKEN = "project-test-token-42"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
REPO = "https://github.com/example/app.git"


@pytest.fixture(scope="module")
async def gateway(nats_url: str) -> AsyncIterator[Gateway]:
    async with running(gateway_on(nats_url, TOKEN)) as started:
        yield started


@pytest.fixture
async def http(gateway: Gateway) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=gateway.url, headers=AUTH) as session:
        yield session


@pytest.fixture
async def swarm(bus: Bus, gateway: Gateway, swarm_id: str) -> str:
    """A swarm with two agents hosted by an executor."""
    now = time.time()
    await append(bus, gateway, ev.SwarmCreated(swarm=swarm_id, id=swarm_id, time=now, name="s"))
    for agent in ("fe", "be"):
        await append(
            bus,
            gateway,
            ev.AgentRegistered(swarm=swarm_id, id=agent, time=now, name=agent, executor="local"),
        )
    return swarm_id


async def create(http: aiohttp.ClientSession, swarm: str, **extra: Any) -> dict[str, Any]:
    body = {"name": "app", "gitUrl": REPO, "swarmId": swarm, **extra}
    status, project = await call(http, "POST", "/projects", json=body)
    assert status == 201, project
    return project


def report(swarm: str, project: str, agent: str, round_: int, **fields: Any) -> ev.Event:
    if "error" in fields:
        return ev.ProjectSyncFailed(
            swarm=swarm, id=project, time=time.time(), agent=agent, round=round_, **fields
        )
    return ev.ProjectSynced(
        swarm=swarm, id=project, time=time.time(), agent=agent, round=round_, **fields
    )


# --- create and attach ------------------------------------------------------------------------


async def test_create_attaches_the_project_to_its_swarm(
    http: aiohttp.ClientSession, swarm: str
) -> None:
    project = await create(http, swarm, branch="develop", credentialsRef="GITHUB_TOKEN")
    assert project["id"].startswith("p-")
    assert (project["swarm"], project["git_url"], project["branch"]) == (swarm, REPO, "develop")
    assert (project["credentials_ref"], project["attached"], project["round"]) == (
        "GITHUB_TOKEN",
        True,
        0,
    )
    assert [(c["agent"], c["state"]) for c in project["checkouts"]] == [
        ("be", "none"),  # agents registered at the same time: by id
        ("fe", "none"),
    ]
    status, shown = await call(http, "GET", f"/swarms/{swarm}/project")
    assert (status, shown) == (200, project)
    status, view = await call(http, "GET", f"/swarms/{swarm}")
    assert (status, view["project"]) == (200, project["id"])

    second = await create(http, swarm, name="other", gitUrl="git@github.com:example/other.git")
    status, listed = await call(http, "GET", f"/projects?swarm={swarm}")
    assert status == 200
    assert [(p["id"], p["attached"]) for p in listed] == [
        (project["id"], False),
        (second["id"], True),
    ]
    status, everything = await call(http, "GET", "/projects")
    assert {project["id"], second["id"]} <= {p["id"] for p in everything}


async def test_create_appends_created_then_attached_and_a_retry_adds_nothing(
    http: aiohttp.ClientSession, gateway: Gateway, swarm: str
) -> None:
    key = {"Idempotency-Key": "create-once"}
    body = {"name": "app", "git_url": REPO, "swarm": swarm}
    first = await call(http, "POST", "/projects", json=body, headers=key)
    again = await call(http, "POST", "/projects", json=body, headers=key)
    assert (first[0], again[0]) == (201, 200)
    assert first[1]["id"] == again[1]["id"]
    versions = gateway.projection.board.versions
    project = first[1]["id"]
    assert f"{swarm}/project/{project}" in versions
    status, listed = await call(http, "GET", f"/projects?swarm={swarm}")
    assert (status, [p["id"] for p in listed]) == (200, [project])


async def test_a_secret_in_the_request_is_refused_naming_the_field_and_never_echoed(
    http: aiohttp.ClientSession, swarm: str
) -> None:
    secret = "ghp_" + "a1B2c3D4e5" * 4
    for extra, field in (
        ({"gitUrl": f"https://user:{secret}@github.com/example/app.git"}, "git_url"),
        ({"gitUrl": f"https://{secret}@github.com/example/app.git"}, "git_url"),
        ({"gitUrl": f"https://github.com/example/app.git?access_token={secret}"}, "git_url"),
        ({"credentialsRef": secret}, "credentials_ref"),
        ({"credentialsRef": "export TOKEN=x"}, "credentials_ref"),
    ):
        body = {"name": "app", "gitUrl": REPO, "swarm": swarm, **extra}
        status, answer = await call(http, "POST", "/projects", json=body)
        assert (status, answer["error"]["field"]) == (400, field), answer
        assert secret not in json.dumps(answer)
    status, listed = await call(http, "GET", f"/projects?swarm={swarm}")
    assert (status, listed) == (200, [])


async def test_create_in_an_unknown_swarm_is_404(http: aiohttp.ClientSession) -> None:
    status, answer = await call(
        http, "POST", "/projects", json={"name": "a", "gitUrl": REPO, "swarm": "no-such-swarm"}
    )
    assert (status, answer["error"]["code"]) == (404, "not_found")


# --- init, sync and the agents' reports -------------------------------------------------------


async def test_init_and_sync_each_start_a_new_round_answered_202(
    http: aiohttp.ClientSession, swarm: str
) -> None:
    project = await create(http, swarm)
    status, started = await call(http, "POST", f"/projects/{project['id']}/init")
    assert status == 202, started
    assert (started["round"], started["request"], started["complete"]) == (1, "init", False)
    assert {c["state"] for c in started["checkouts"]} == {"pending"}
    status, synced = await call(http, "POST", f"/projects/{project['id']}/sync?swarm={swarm}")
    assert (status, synced["round"], synced["request"]) == (202, 2, "sync")

    status, answer = await call(http, "POST", "/projects/p-nothing/sync")
    assert status == 404
    second = await create(http, swarm, name="second")
    status, answer = await call(http, "POST", f"/projects/{project['id']}/sync")
    assert (status, answer["error"]["code"]) == (409, "conflict")  # no longer attached
    assert second["attached"]


async def test_the_project_shows_each_agents_checkout_once_reported(
    http: aiohttp.ClientSession, bus: Bus, gateway: Gateway, swarm: str
) -> None:
    project = (await create(http, swarm))["id"]
    await call(http, "POST", f"/projects/{project}/init")
    commit = "0123456789abcdef0123456789abcdef01234567"
    await append(bus, gateway, report(swarm, project, "fe", 1, commit=commit, dirty=True, ahead=2))
    status, shown = await call(http, "GET", f"/swarms/{swarm}/project")
    assert status == 200
    rows = {c["agent"]: c for c in shown["checkouts"]}
    assert (rows["fe"]["state"], rows["fe"]["commit"], rows["fe"]["dirty"]) == (
        "synced",
        commit,
        True,
    )
    assert (rows["fe"]["ahead"], rows["fe"]["behind"], rows["be"]["state"]) == (2, 0, "pending")
    assert shown["complete"] is False

    error = "fatal: unable to access 'https://github.com/example/app.git/': Could not resolve"
    await append(bus, gateway, report(swarm, project, "be", 1, error=error))
    status, shown = await call(http, "GET", f"/swarms/{swarm}/project")
    rows = {c["agent"]: c for c in shown["checkouts"]}
    assert (rows["be"]["state"], rows["be"]["error"]) == ("sync_failed", error)
    assert shown["complete"] is True


async def test_wait_answers_200_once_every_agent_answered_the_round(
    http: aiohttp.ClientSession, bus: Bus, gateway: Gateway, swarm: str
) -> None:
    project = (await create(http, swarm))["id"]

    async def executors_answer() -> None:
        board = gateway.projection.board
        deadline = time.monotonic() + 10
        while board.swarms[swarm].projects[project].round < 1:
            assert time.monotonic() < deadline, "init was never requested"
            await gateway.projection.wait_for(gateway.projection.seq + 1, timeout=10)
        for agent in ("fe", "be"):
            await append(bus, gateway, report(swarm, project, agent, 1, commit="c0ffee" * 6))

    answering = asyncio.create_task(executors_answer())
    status, done = await call(http, "POST", f"/projects/{project}/init?wait=1&timeout=20")
    await answering
    assert status == 200, done
    assert done["complete"] is True
    assert {c["state"] for c in done["checkouts"]} == {"synced"}

    status, late = await call(http, "POST", f"/projects/{project}/sync?wait=1&timeout=0.3")
    assert (status, late["round"], late["complete"]) == (202, 2, False)
    status, answer = await call(http, "POST", f"/projects/{project}/sync?wait=1&timeout=-1")
    assert (status, answer["error"]["field"]) == (400, "timeout")


# --- update and delete -----------------------------------------------------------------------


async def test_a_project_is_created_with_the_remotes_default_branch_and_integration_settings(
    http: aiohttp.ClientSession, swarm: str
) -> None:
    project = await create(http, swarm)
    assert (project["branch"], project["target"], project["mode"]) == (None, None, "integrate")
    assert (project["strategy"], project["verify"], project["on_conflict"]) == (
        "rebase",
        None,
        "resolve",
    )
    custom = await create(
        http, swarm, mode="branch", strategy="merge", verify="make test", onConflict="fail"
    )
    assert (custom["mode"], custom["strategy"], custom["verify"]) == (
        "branch",
        "merge",
        "make test",
    )
    assert custom["on_conflict"] == "fail"
    status, answer = await call(
        http, "POST", "/projects", json={"name": "x", "gitUrl": REPO, "mode": "sometimes"}
    )
    assert (status, answer["error"]["field"]) == (400, "mode")


async def test_update_changes_only_what_it_names_and_a_new_url_starts_an_init_round(
    http: aiohttp.ClientSession, gateway: Gateway, swarm: str
) -> None:
    project = await create(http, swarm, credentialsRef="GITHUB_TOKEN", verify="pytest -q")
    pid = project["id"]
    status, same = await call(http, "PATCH", f"/projects/{pid}", json={"mode": "integrate"})
    assert status == 200 and same["round"] == 0
    before = gateway.projection.board.version(swarm, "project", pid)

    status, answer = await call(http, "PATCH", f"/projects/{pid}", json={"mode": "integrate"})
    assert status == 200
    assert gateway.projection.board.version(swarm, "project", pid) == before  # nothing changed

    await call(http, "POST", f"/projects/{pid}/init")
    moved = "https://github.com/example/fixed.git"
    status, updated = await call(
        http,
        "PATCH",
        f"/projects/{pid}?swarm={swarm}",
        json={"gitUrl": moved, "branch": "master", "verify": "", "credentialsRef": ""},
    )
    assert status == 200, updated
    assert (updated["git_url"], updated["branch"], updated["target"]) == (moved, "master", "master")
    assert (updated["verify"], updated["credentials_ref"]) == (None, None)
    assert (updated["round"], updated["request"]) == (2, "init")  # every checkout follows
    assert {c["state"] for c in updated["checkouts"]} == {"pending"}

    status, answer = await call(
        http, "PATCH", f"/projects/{pid}", json={"gitUrl": "https://a:b@h/r"}
    )
    assert (status, answer["error"]["field"]) == (400, "git_url")
    assert "a:b" not in json.dumps(answer)
    status, answer = await call(http, "PATCH", f"/projects/{pid}", json={"branch": "a..b"})
    assert (status, answer["error"]["field"]) == (400, "branch")
    status, answer = await call(http, "PATCH", f"/projects/{pid}", json={"colour": "red"})
    assert (status, answer["error"]["field"]) == (400, "colour")
    status, answer = await call(http, "PATCH", "/projects/p-nothing", json={"mode": "off"})
    assert status == 404


async def test_delete_removes_the_project_and_detaches_it(
    http: aiohttp.ClientSession, swarm: str
) -> None:
    project = await create(http, swarm)
    status, answer = await call(http, "DELETE", f"/projects/{project['id']}")
    assert (status, answer) == (200, {"id": project["id"], "deleted": True})
    status, _ = await call(http, "GET", f"/swarms/{swarm}/project")
    assert status == 404
    status, view = await call(http, "GET", f"/swarms/{swarm}")
    assert view["project"] is None
    status, _ = await call(http, "DELETE", f"/projects/{project['id']}")
    assert status == 404
    again = await create(http, swarm, name="again")
    assert again["attached"]


# --- over NATS --------------------------------------------------------------------------------


async def ask(bus: Bus, subject: str, body: Any = None) -> tuple[str | None, Any]:
    payload = b"" if body is None else json.dumps(body).encode()
    reply = await bus.nc.request(subject, payload, timeout=5)
    return (reply.headers or {}).get("Nats-Service-Error-Code"), json.loads(reply.data)


async def test_project_commands_answer_over_nats_like_http(
    bus: Bus, gateway: Gateway, swarm: str
) -> None:
    code, project = await ask(
        bus, f"swarm.cmd.{swarm}.create_project", {"name": "app", "gitUrl": REPO}
    )
    assert (code, project["swarm"], project["attached"]) == (None, swarm, True)
    code, started = await ask(bus, f"swarm.cmd.{swarm}.init_project")
    assert (code, started["id"], started["round"]) == (None, project["id"], 1)
    code, synced = await ask(bus, "swarm.cmd._.sync_project", {"project": project["id"]})
    assert (code, synced["round"], synced["request"]) == (None, 2, "sync")
    code, shown = await ask(bus, f"swarm.cmd.{swarm}.get_project")
    assert (code, shown["round"]) == (None, 2)
    code, listed = await ask(bus, f"swarm.cmd.{swarm}.list_projects")
    assert [p["id"] for p in listed] == [project["id"]]
    code, answer = await ask(
        bus, f"swarm.cmd.{swarm}.create_project", {"name": "x", "gitUrl": "https://a:b@h/r"}
    )
    assert (code, answer["error"]["field"]) == ("400", "git_url")
    code, updated = await ask(
        bus, f"swarm.cmd.{swarm}.update_project", {"verify": "make check", "mode": "branch"}
    )
    assert (code, updated["verify"], updated["mode"]) == (None, "make check", "branch")
    code, answer = await ask(bus, f"swarm.cmd.{swarm}.update_project", {"mode": "never"})
    assert (code, answer["error"]["field"]) == ("400", "mode")
    code, deleted = await ask(bus, "swarm.cmd._.delete_project", {"project": project["id"]})
    assert (code, deleted["deleted"]) == (None, True)
    code, answer = await ask(bus, f"swarm.cmd.{swarm}.get_project")
    assert code == "404"


# --- pure -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/org/app.git",
        "http://git.local:8080/app",
        "ssh://git@github.com/org/app.git",
        "git@github.com:org/app.git",
        "git://example.org/app.git",
        "file:///srv/git/app.git",
        "/srv/git/app.git",
        "../app.git",
        "https://deploy@gitlab.example.com/app.git",
    ],
)
def test_git_urls_git_can_fetch_without_secrets_are_accepted(url: str) -> None:
    assert check_git_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "https://user:hunter2@github.com/org/app.git",
        "https://x-access-token:abc@github.com/org/app.git",
        "https://ghp_0123456789abcdefABCDEF0123456789abcd@github.com/org/app.git",
        "https://github.com/org/app.git?private_token=abc",
        "ext::sh -c touch% /tmp/pwned",
        "--upload-pack=touch /tmp/pwned",
        "ftp://example.org/app.git",
        "https:///no-host",
        "not a url",
        "",
    ],
)
def test_git_urls_with_secrets_or_that_run_programs_are_refused(url: str) -> None:
    with pytest.raises(Invalid) as caught:
        check_git_url(url)
    assert caught.value.field == "git_url"
    if "hunter2" in url:
        assert "hunter2" not in caught.value.message


def test_a_credentials_ref_is_a_variable_name_not_a_token() -> None:
    assert check_credentials_ref("GITHUB_TOKEN") == "GITHUB_TOKEN"
    assert check_credentials_ref("") is None
    assert check_credentials_ref(None) is None
    for bad in ("ghp_0123456789abcdefABCDEF0123456789abcd", "sk-ant-api03-xyz", "a b", "9LIVES"):
        with pytest.raises(Invalid) as caught:
            check_credentials_ref(bad)
        assert caught.value.field == "credentials_ref"


def given(*events: ev.Event) -> tuple[ProjectView, SwarmView]:
    board = Board()
    for seq, event in enumerate(events, start=1):
        apply(board, event, seq)
    swarm = board.swarms["s"]
    return swarm.projects["p"], swarm


def test_a_round_is_complete_when_every_hosted_live_agent_answered_it() -> None:
    t = 1.0
    base = [
        ev.SwarmCreated(swarm="s", id="s", time=t, name="s"),
        ev.AgentRegistered(swarm="s", id="a", time=t, name="a", executor="x"),
        ev.AgentRegistered(swarm="s", id="b", time=t, name="b", executor="x"),
        ev.AgentRegistered(swarm="s", id="waiting", time=t, name="w"),  # no executor yet
        ev.ProjectCreated(swarm="s", id="p", time=t, name="p", git_url=REPO),
        ev.ProjectAttached(swarm="s", id="p", time=t),
    ]
    project, swarm = given(*base)
    assert not round_complete(project, swarm)  # nothing asked yet

    init = ev.ProjectInitRequested(swarm="s", id="p", time=t)
    a_synced = ev.ProjectSynced(swarm="s", id="p", time=t, agent="a", round=1, commit="c1")
    b_failed = ev.ProjectSyncFailed(swarm="s", id="p", time=t, agent="b", round=1, error="no")
    project, swarm = given(*base, init, a_synced)
    assert not round_complete(project, swarm)
    project, swarm = given(*base, init, a_synced, b_failed)
    assert round_complete(project, swarm)

    sync = ev.ProjectSyncRequested(swarm="s", id="p", time=t)
    project, swarm = given(*base, init, a_synced, b_failed, sync)
    assert not round_complete(project, swarm)
    assert round_complete(project, swarm, 1)
    assert project.checkouts["a"] == Checkout(state="pending", round=1, commit="c1", at=t)


async def test_openapi_describes_the_project_routes_and_real_answers_match(
    http: aiohttp.ClientSession, swarm: str
) -> None:
    status, document = await call(http, "GET", "/openapi.json")
    assert status == 200
    paths = document["paths"]
    assert {"get", "post"} <= set(paths["/projects"])
    assert "get" in paths["/swarms/{swarm}/project"]
    assert {"200", "202", "409"} <= set(paths["/projects/{project}/sync"]["post"]["responses"])
    assert {"patch", "delete"} <= set(paths["/projects/{project}"])
    project = await create(http, swarm)
    status, started = await call(http, "POST", f"/projects/{project['id']}/init")
    status, updated = await call(
        http, "PATCH", f"/projects/{project['id']}", json={"verify": "true"}
    )
    status, listed = await call(http, "GET", "/projects")
    schema = {"$ref": "#/components/schemas/Project", "components": document["components"]}
    for value in (project, started, updated, *listed):
        jsonschema.validate(value, schema)
