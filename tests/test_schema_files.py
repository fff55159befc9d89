"""The JSON Schema files beside ``schemas/`` match the Structs, and real encoded messages
validate against them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest

from schemas import events as ev
from schemas import export
from schemas.board import Board, tasks_in_full
from schemas.fold import fold

ROOT = Path(__file__).resolve().parent.parent


def schema_file(name: str) -> dict[str, Any]:
    return json.loads((export.JSON_DIR / name).read_text(encoding="utf-8"))


def validator(name: str) -> jsonschema.Draft202012Validator:
    schema = schema_file(name)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def wire(message: Any) -> Any:
    """What goes on the wire (or into a snapshot), as a JSON value."""
    return json.loads(msgspec.json.encode(message, enc_hook=tasks_in_full))


def test_schema_files_on_disk_match_the_structs() -> None:
    assert export.problems() == [], "stale schema files: run `python -m schemas.export`"


def test_every_event_type_has_a_schema_file() -> None:
    names = {p.name for p in export.JSON_DIR.glob("*.json")}
    for event_type in ev.EVENT_TYPES:
        assert f"{event_type}.json" in names
    assert {"event.json", "board.json"} <= names


def test_check_names_stale_missing_and_extra_files(tmp_path: Path) -> None:
    export.write(tmp_path)
    assert export.problems(tmp_path) == []
    (tmp_path / "task.claimed.json").write_text("{}\n", encoding="utf-8")
    (tmp_path / "agent.lost.json").unlink()
    (tmp_path / "task.exploded.json").write_text("{}\n", encoding="utf-8")

    assert export.problems(tmp_path) == [
        "missing: agent.lost.json",
        "stale: task.claimed.json",
        "extra: task.exploded.json",
    ]
    assert export.main(["--check", "--dir", str(tmp_path)]) == 1

    export.write(tmp_path)
    assert export.problems(tmp_path) == []
    assert export.main(["--check", "--dir", str(tmp_path)]) == 0


def test_export_output_is_byte_for_byte_stable() -> None:
    first = export.expected()
    second = export.expected()
    assert first == second
    for name, content in first.items():
        assert content.endswith("}\n"), name
        assert json.dumps(json.loads(content), indent=2, sort_keys=True) + "\n" == content


def test_check_command_exits_non_zero_and_lists_a_stale_file(tmp_path: Path) -> None:
    export.write(tmp_path)
    (tmp_path / "board.json").write_text("{}\n", encoding="utf-8")
    run = subprocess.run(
        [sys.executable, "-m", "schemas.export", "--check", "--dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1
    assert "stale: board.json" in run.stdout


REAL_EVENTS: list[ev.Event] = [
    ev.SwarmCreated(swarm="dev", id="dev", time=1.0, name="Dev", description="the dev swarm"),
    ev.TaskCreated(
        swarm="dev",
        id="t-7f3a",
        time=2.0,
        title="Create Button",
        tags=["ui"],
        priority="high",
        depends=["t-1"],
        triggers=[ev.Trigger(on="completed", task=ev.TaskSpec(title="Review Button"))],
        actor="gateway",
        correlation_id="req-1",
    ),
    ev.TaskClaimed(swarm="dev", id="t-7f3a", time=3.0, agent="frontend-agent", attempt=1),
    ev.TaskRunning(
        swarm="dev", id="t-7f3a", time=4.0, agent="frontend-agent", attempt=1, executor="local"
    ),
    ev.TaskCompleted(
        swarm="dev",
        id="t-7f3a",
        time=5.0,
        agent="frontend-agent",
        attempt=1,
        outcome=ev.RunOutcome(
            result="done",
            exit_code=0,
            cost_usd=0.12,
            turns=3,
            usage=ev.Usage(input_tokens=10, output_tokens=20),
            session_id="s-1",
            duration_s=12.5,
        ),
    ),
    ev.TaskFailed(swarm="dev", id="t-2", time=6.0, reason="dependency t-1 failed"),
    ev.TaskRequeued(swarm="dev", id="t-3", time=7.0, attempt=2, reason="agent lost", retry_at=9.0),
    ev.AgentRegistered(
        swarm="dev", id="qa-agent", time=8.0, name="QA Agent", role="qa", skills=["qa", "test"]
    ),
    ev.ProjectCreated(
        swarm="dev", id="p1", time=9.0, name="app", git_url="https://example.com/app.git"
    ),
    ev.ProjectSynced(swarm="dev", id="p1", time=10.0, agent="qa-agent", round=1, commit="abc123"),
    ev.ProjectSyncFailed(swarm="dev", id="p1", time=11.0, agent="qa-agent", round=2, error="x"),
]


@pytest.mark.parametrize("event", REAL_EVENTS, ids=lambda e: e.type)
def test_encoded_event_is_valid_against_its_own_schema_and_the_any_event_schema(
    event: ev.Event,
) -> None:
    document = wire(event)
    validator(f"{event.type}.json").validate(document)
    validator("event.json").validate(document)


def test_event_schema_refuses_a_claim_without_an_agent() -> None:
    document = wire(ev.TaskClaimed(swarm="dev", id="t1", time=1.0, agent="a1", attempt=1))
    del document["agent"]
    errors = list(validator("task.claimed.json").iter_errors(document))
    assert any("'agent' is a required property" in error.message for error in errors)


def test_event_schema_refuses_another_event_type() -> None:
    document = wire(ev.TaskRunning(swarm="dev", id="t1", time=1.0, agent="a1", attempt=1))
    assert not validator("task.claimed.json").is_valid(document)


def test_event_schema_refuses_a_priority_outside_the_enum() -> None:
    document = wire(ev.TaskCreated(swarm="dev", id="t1", time=1.0, title="x"))
    document["priority"] = "urgent"
    assert not validator("task.created.json").is_valid(document)
    assert not validator("event.json").is_valid(document)


def test_folded_board_is_valid_against_the_board_schema() -> None:
    life = [
        REAL_EVENTS[0],
        REAL_EVENTS[7],
        ev.TaskCreated(swarm="dev", id="t1", time=2.0, title="Test it", tags=["qa"]),
        ev.TaskClaimed(swarm="dev", id="t1", time=3.0, agent="qa-agent", attempt=1),
        ev.TaskRunning(swarm="dev", id="t1", time=4.0, agent="qa-agent", attempt=1),
        ev.TaskCompleted(swarm="dev", id="t1", time=5.0, agent="qa-agent", attempt=1),
        REAL_EVENTS[8],
        REAL_EVENTS[9],
    ]
    board = fold(list(enumerate(life, start=1)))
    assert board.swarms["dev"].tasks["t1"].status == "completed"
    assert board.swarms["dev"].projects["p1"].checkouts["qa-agent"].state == "synced"
    document = wire(board)
    validator("board.json").validate(document)
    document["swarms"]["dev"]["tasks"]["t1"]["status"] = "exploded"
    assert not validator("board.json").is_valid(document)


def test_board_schema_accepts_an_empty_board() -> None:
    validator("board.json").validate(wire(Board()))
