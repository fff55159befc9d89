"""`swarm doctor`'s judgement and the readiness health check, as pure functions: given the facts
a deployment shows, when judged, then these checks pass or fail with these fixes. (The real
thing against a running cluster is in test_deploy.py.)"""

from __future__ import annotations

import dataclasses
import json

from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import APIError, BadRequestError

from cli.doctor import (
    FAIL,
    OK,
    UNKNOWN,
    WARN,
    GatewayFacts,
    expected_replicas,
    judge,
    render,
)
from schemas.board import TaskView
from services.bus import streams
from services.bus.inspection import (
    BUCKET_STREAMS,
    EVENT_STREAMS,
    Agent,
    Facts,
    Monitor,
    Replica,
    Server,
    Stream,
    monitor_urls_for,
)
from services.bus.leases import Lease
from services.bus.presence import Presence
from services.bus.ready import local_readiness
from services.bus.service import Readiness
from services.executor import readiness

NOW = 1_000_000.0
AGENTS = ("frontend-agent", "backend-agent", "qa-agent")


def beat(
    service: str, instance: str, *, ready: bool = True, age: float = 1.0, **detail
) -> Readiness:
    return Readiness(
        service=service,
        instance=instance,
        ready=ready,
        seq=42,
        pid=100,
        host=f"host-{instance}",
        started_at=NOW - 100,
        time=NOW - age,
        detail=detail,
    )


def runs_report(backend: str = "local", claude_path: str | None = "/usr/bin/claude", **env: str):
    """What an executor's heartbeat says it can run (the executor's own report builder)."""
    return readiness.build(
        backend=backend,
        claude_bin="claude",
        claude_path=claude_path,
        claude_version="2.1.0 (Claude Code)",
        shell_path="/bin/sh",
        env={"ANTHROPIC_API_KEY": "sk-ant-secret-value", **env},
        project_credentials=["GITHUB_TOKEN"] if "GITHUB_TOKEN" in env else [],
    )


def waiting_task(task_id: str, *, tags=(), runtime="claude", age=5.0, status="pending"):
    return TaskView(
        swarm="default",
        id=task_id,
        title=task_id,
        prompt=task_id,
        tags=list(tags),
        runtime=runtime,
        status=status,
        created_at=NOW - age,
        updated_at=NOW - age,
    )


def stream(name: str, replicas: int = 3, **changes) -> Stream:
    peers = tuple(Replica(n, current=True, offline=False, lag=0) for n in ("n2", "n3"))
    base = Stream(
        name=name,
        replicas=replicas,
        storage="file",
        deny_delete=name == "SWARM_EVENTS",
        deny_purge=name == "SWARM_EVENTS",
        duplicate_window=120.0,
        persist_mode=None,
        messages=10,
        last_seq=10,
        leader="n1",
        peers=peers[: replicas - 1],
    )
    return dataclasses.replace(base, **changes)


def healthy(size: int = 3) -> Facts:
    """A 3-node cluster (or one server) where everything is as it should be."""
    names = [f"n{i}" for i in range(1, size + 1)]
    return Facts(
        nats="nats://n1:4222",
        now=NOW,
        server=Server("n1", "2.12.1", "swarm" if size > 1 else None, size, "n1:4222"),
        streams={name: stream(name, size) for name in EVENT_STREAMS + BUCKET_STREAMS},
        services=[
            beat("gateway", "g1"),
            beat("scheduler", "s1", leader=True),
            beat("scheduler", "s2", leader=False),
            beat("executor", "e1", executor="box-1", **runs_report()),
            beat("chat", "c1"),
        ],
        leases={"scheduler": Lease(instance="s1", time=NOW - 2)},
        presence={f"default.{a}": Presence(executor="box-1", time=NOW - 1) for a in AGENTS},
        agents=[Agent("default", a, "box-1", "idle", (a.split("-")[0],)) for a in AGENTS],
        waiting=[],
        monitors=[
            Monitor(url=f"http://{n}:8222", server=n, jetstream=True, sync_always=True)
            for n in names
        ],
    )


GATEWAY = GatewayFacts(
    url="http://gw:7700", health={"ok": True, "nats": "connected"}, token="accepted"
)


def statuses(facts: Facts, gateway: GatewayFacts = GATEWAY, replicas: int | None = None):
    return {c.name: c for c in judge(facts, gateway, replicas=replicas, lease=10.0)}


def test_a_healthy_cluster_passes_every_check() -> None:
    checks = statuses(healthy())

    assert {name: c.status for name, c in checks.items() if c.status != OK} == {}
    assert "cluster swarm of 3 servers" in checks["NATS"].detail
    assert "leader s1" in checks["scheduler"].detail
    assert render(list(checks.values())).endswith("All checks passed.")


def test_unreachable_nats_fails_with_how_to_fix_it_and_skips_what_needs_nats() -> None:
    facts = Facts(nats="nats://nowhere:4222", now=NOW, error="cannot reach NATS at nats://nowhere")

    checks = statuses(facts)

    assert checks["NATS"].status == FAIL and "NATS_URL" in checks["NATS"].fix
    assert "SWARM_EVENTS" not in checks and "agents" not in checks
    assert "1 problem(s) found." in render(list(checks.values()))


def test_jetstream_disabled_fails_saying_how_to_enable_it() -> None:
    facts = dataclasses.replace(healthy(1), jetstream_error="ServiceUnavailableError")

    check = statuses(facts)["JetStream"]

    assert check.status == FAIL and "-js" in check.fix and "sync_interval: always" in check.fix


def test_single_replica_streams_on_a_three_node_cluster_fail_with_the_replicas_fix() -> None:
    facts = healthy()
    facts.streams["SWARM_EVENTS"] = stream("SWARM_EVENTS", 1)
    facts.streams["KV_swarm_leader"] = stream("KV_swarm_leader", 1)

    checks = statuses(facts)

    assert checks["SWARM_EVENTS"].status == FAIL
    assert "1 replica(s), expected 3" in checks["SWARM_EVENTS"].detail
    assert "SWARM_REPLICAS=3" in checks["SWARM_EVENTS"].fix
    assert "nats stream edit SWARM_EVENTS --replicas 3" in checks["SWARM_EVENTS"].fix
    assert checks["buckets"].status == FAIL and "KV_swarm_leader" in checks["buckets"].detail


def test_replicas_expected_are_swarm_replicas_else_three_on_a_cluster_else_one() -> None:
    assert expected_replicas(None, 3) == 3
    assert expected_replicas(None, 1) == 1
    assert expected_replicas(1, 3) == 1
    check = statuses(healthy(1), replicas=3)["replicas"]
    assert check.status == FAIL and "SWARM_REPLICAS=3 but NATS has 1 server(s)" in check.detail


def test_an_event_log_that_allows_delete_or_purge_or_has_no_duplicate_window_fails() -> None:
    facts = healthy()
    facts.streams["SWARM_EVENTS"] = stream(
        "SWARM_EVENTS", deny_purge=False, duplicate_window=0.0, persist_mode="async"
    )

    check = statuses(facts)["SWARM_EVENTS"]

    assert check.status == FAIL
    assert "not append-only" in check.detail and "no duplicate window" in check.detail
    assert "persist_mode async" in check.detail
    assert "--deny-delete --deny-purge" in check.fix and "--dupe-window 2m" in check.fix


def test_live_output_made_async_passes_and_any_other_stream_made_async_fails() -> None:
    facts = healthy(1)  # one server: where provisioning makes the live output async
    facts.streams["SWARM_LOGS"] = stream("SWARM_LOGS", 1, persist_mode="async")
    facts.streams["SWARM_CHAT"] = stream("SWARM_CHAT", 1, persist_mode="async")

    checks = statuses(facts)

    assert checks["SWARM_LOGS"].status != FAIL
    assert checks["SWARM_CHAT"].status == FAIL
    assert "persist_mode async" in checks["SWARM_CHAT"].detail


def test_a_replica_on_a_node_that_is_down_fails_until_it_is_back() -> None:
    facts = healthy()
    down = (Replica("n2", current=False, offline=True, lag=0), Replica("n3", True, False, 0))
    facts.streams["SWARM_EVENTS"] = stream("SWARM_EVENTS", peers=down)

    check = statuses(facts)["SWARM_EVENTS"]

    assert check.status == FAIL and "replica on n2 offline" in check.detail
    assert "catches up by itself" in check.fix


def test_a_missing_stream_fails_saying_any_service_provisions_it() -> None:
    facts = healthy()
    facts.streams["SWARM_CHAT"] = None

    check = statuses(facts)["SWARM_CHAT"]

    assert (check.status, check.detail) == (FAIL, "missing")
    assert "provisions" in check.fix


def test_lazy_fsync_fails_and_no_monitoring_port_is_unknown_not_a_failure() -> None:
    lazy = healthy()
    lazy.monitors[1] = Monitor(
        url="http://n2:8222", server="n2", jetstream=True, sync_always=False, sync_interval=120
    )
    check = statuses(lazy)["fsync"]
    assert check.status == FAIL and "n2 (every 120s)" in check.detail
    assert "sync_interval: always" in check.fix

    blind = dataclasses.replace(
        healthy(), monitors=[Monitor(url="http://n1:8222", error="ClientConnectorError")]
    )
    check = statuses(blind)["fsync"]
    assert check.status == UNKNOWN and "NATS_MONITOR_URL" in check.fix
    assert "All checks passed (1 unknown)." in render(
        judge(blind, GATEWAY, replicas=None, lease=10)
    )

    partly = dataclasses.replace(healthy(), monitors=healthy().monitors[:1])
    assert statuses(partly)["fsync"].status == UNKNOWN


def test_a_service_not_heard_from_or_not_ready_fails_with_how_to_start_it() -> None:
    facts = healthy()
    facts.services = [b for b in facts.services if b.service != "chat"]
    facts.services.append(beat("chat", "old", age=60))
    facts.services = [
        beat("executor", "e1", ready=False) if b.service == "executor" else b
        for b in facts.services
    ]

    checks = statuses(facts)

    assert checks["chat"].status == FAIL and "docker compose up -d chat" in checks["chat"].fix
    assert checks["executor"].status == FAIL and "none ready" in checks["executor"].detail


def test_unreadable_heartbeats_make_the_services_unknown_not_failed() -> None:
    facts = dataclasses.replace(healthy(), services=[], services_error="TimeoutError")

    checks = statuses(facts)

    assert {checks[s].status for s in ("gateway", "scheduler", "executor", "chat")} == {UNKNOWN}


def test_schedulers_without_a_fresh_leader_lease_fail() -> None:
    facts = dataclasses.replace(
        healthy(), leases={"scheduler": Lease(instance="s1", time=NOW - 60)}
    )

    check = statuses(facts)["scheduler"]

    assert check.status == FAIL and "leader lease" in check.detail


def test_a_leader_lease_that_could_not_be_read_is_unknown_never_none_holds_it() -> None:
    facts = dataclasses.replace(healthy(), leases={}, leases_error="TimeoutError: nats: timeout")

    check = statuses(facts)["scheduler"]

    assert check.status == UNKNOWN
    assert "could not be read (TimeoutError" in check.detail
    assert "none holds" not in check.detail
    assert "heartbeats name leader s1" in check.detail  # what the schedulers themselves say


def test_presence_that_could_not_be_read_is_unknown_not_every_agent_missing() -> None:
    facts = dataclasses.replace(healthy(), presence={}, presence_error="TimeoutError")

    check = statuses(facts)["agents"]

    assert check.status == UNKNOWN
    assert "presence unknown" in check.detail and "no presence key" not in check.detail


def test_an_executor_without_claude_fails_while_claude_tasks_wait_and_warns_otherwise() -> None:
    facts = healthy()
    facts.services = [
        beat("executor", "e1", executor="box-1", **runs_report(claude_path=None)),
        beat("executor", "e2", executor="box-2", **runs_report(ANTHROPIC_API_KEY="")),
        *[b for b in facts.services if b.service != "executor"],
    ]

    quiet = statuses(facts)["runtimes"]
    facts.waiting = [waiting_task("t-1")]
    busy = statuses(facts)["runtimes"]

    assert quiet.status == WARN and "claude tasks would fail there" in quiet.detail
    assert busy.status == FAIL
    assert "box-1: no `claude` on its PATH;" in busy.detail
    assert "box-2: none of ANTHROPIC_API_KEY or CLAUDE_CODE_OAUTH_TOKEN set" in busy.detail
    assert "1 claude task(s) waiting (t-1)" in busy.detail
    assert "INSTALL_CLAUDE=1" in busy.fix
    assert "All checks passed (1 warning(s))." in render([quiet])


def test_a_missing_backend_key_or_project_token_variable_fails_naming_the_variable() -> None:
    facts = healthy()
    facts.services = [
        beat("executor", "e1", executor="box-1", **runs_report("daytona", DAYTONA_API_KEY="")),
        beat("executor", "e2", executor="box-2", **runs_report(GITHUB_TOKEN="")),
        *[b for b in facts.services if b.service != "executor"],
    ]

    check = statuses(facts)["runtimes"]

    assert check.status == FAIL
    assert "box-1: DAYTONA_API_KEY not set (the daytona backend needs it)" in check.detail
    assert "box-2: GITHUB_TOKEN not set (a project's credentials_ref)" in check.detail


def test_the_runtime_report_names_credentials_and_never_holds_their_values() -> None:
    report = runs_report(GITHUB_TOKEN="ghp_abcdefghijklmnop123456")

    assert report["runtimes"]["claude"]["credentials"] == {
        "ANTHROPIC_API_KEY": True,
        "CLAUDE_CODE_OAUTH_TOKEN": False,
    }
    assert report["project_credentials"] == {"GITHUB_TOKEN": True}
    text = json.dumps(report)
    assert "sk-ant-secret-value" not in text and "ghp_" not in text
    checks = statuses(healthy())
    assert checks["runtimes"].status == OK
    assert "box-1 (local: 2.1.0 (Claude Code) at /usr/bin/claude)" in checks["runtimes"].detail


def test_tasks_no_agent_can_take_fail_and_long_pending_ones_are_flagged() -> None:
    facts = healthy()
    facts.waiting = [
        waiting_task("t-ui", tags=["frontend"]),
        waiting_task("t-ml", tags=["ml", "gpu"]),
        waiting_task("t-old", tags=["qa"], age=3600),
        waiting_task("t-blocked", tags=["qa"], age=3600, status="blocked"),
    ]

    checks = statuses(facts)

    assert checks["tasks"].status == FAIL
    assert "1 task(s) no agent's skills can take: default/t-ml [ml,gpu]" in checks["tasks"].detail
    assert "POST /swarms/<swarm>/agents" in checks["tasks"].fix
    assert checks["pending"].status == WARN
    assert "1 task(s) pending over 600s (oldest 3600s): default/t-old" in checks["pending"].detail


def test_tasks_unknown_when_the_gateway_does_not_list_them() -> None:
    facts = dataclasses.replace(healthy(), waiting=None, waiting_error="no service answers")

    assert statuses(facts)["tasks"].status == UNKNOWN


def test_lost_stale_and_unhosted_agents_fail_naming_each() -> None:
    facts = healthy()
    facts.agents = [
        Agent("default", "frontend-agent", "box-1", "lost"),
        Agent("default", "backend-agent", "box-1", "idle"),
        Agent("default", "qa-agent", "box-1", "idle"),
        Agent("default", "docs-agent", None, "idle"),
    ]
    facts.presence["default.backend-agent"] = Presence(executor="box-1", time=NOW - 30)
    del facts.presence["default.qa-agent"]

    check = statuses(facts)["agents"]

    assert check.status == FAIL
    assert "default/frontend-agent is lost" in check.detail
    assert "default/backend-agent last present 30s ago" in check.detail
    assert "default/qa-agent is in no presence key (executor box-1" in check.detail
    assert "default/docs-agent waits for an executor" in check.detail


def test_agents_unknown_when_the_gateway_does_not_answer_over_nats() -> None:
    facts = dataclasses.replace(healthy(), agents=None, agents_error="no service answers")

    assert statuses(facts)["agents"].status == UNKNOWN


def test_an_unreachable_gateway_or_a_refused_token_fails() -> None:
    down = GatewayFacts(url="http://gw:7700", health_error="Connection refused", token="unknown")
    checks = statuses(healthy(), down)
    assert checks["gateway /health"].status == FAIL
    assert "SWARM_API_URL" in checks["gateway /health"].fix

    refused = dataclasses.replace(GATEWAY, token="refused", token_error="wrong bearer token")
    assert statuses(healthy(), refused)["API token"].status == FAIL
    missing = dataclasses.replace(GATEWAY, token="missing")
    assert "export SWARM_API_TOKEN" in statuses(healthy(), missing)["API token"].fix


def test_monitoring_ports_are_guessed_at_each_nats_host() -> None:
    urls = ["nats://n1:4222", "nats://u:p@n2:4222", "tls://n1:4443"]

    assert monitor_urls_for(urls) == ["http://n1:8222", "http://n2:8222"]


def test_readiness_check_passes_only_for_a_fresh_ready_instance_on_this_host() -> None:
    beats = [beat("executor", "a"), beat("executor", "b", ready=False), beat("chat", "c", age=30)]

    assert local_readiness(beats, "executor", "host-a", NOW)[0] is True
    ok, why = local_readiness(beats, "executor", "host-b", NOW)
    assert not ok and "not ready yet" in why
    ok, why = local_readiness(beats, "chat", "host-c", NOW)
    assert not ok and "last heard 30s ago" in why
    ok, why = local_readiness(beats, "gateway", None, NOW)
    assert not ok and "no gateway has announced itself anywhere" in why


def test_provisioning_waits_for_a_forming_cluster_but_not_for_a_refusal() -> None:
    forming = streams.cluster_forming

    assert forming(NatsTimeoutError())  # no meta leader yet
    assert forming(BadRequestError(code=400, err_code=10005, description="no peers"))
    assert forming(APIError(code=503, err_code=10008, description="unavailable"))
    assert not forming(BadRequestError(code=400, err_code=10052, description="bad"))
    assert not forming(APIError(code=503, description="JetStream not enabled"))


def test_an_executor_serving_several_swarms_counts_once_and_reports_every_projects_token() -> None:
    facts = healthy()
    facts.services = [
        *[b for b in facts.services if b.service != "executor"],
        beat("executor", "box-1", executor="box-1", swarms=["default", "web"]),  # its process
        beat("executor", "box-1.default", executor="box-1", **runs_report()),
        beat("executor", "box-1.web", executor="box-1", **runs_report(GITHUB_TOKEN="")),
    ]

    checks = statuses(facts)

    assert checks["executor"].detail == "1 ready (box-1)"
    assert checks["runtimes"].status == FAIL
    assert checks["runtimes"].detail == "box-1: GITHUB_TOKEN not set (a project's credentials_ref)"
