"""The CLI's pure parts: reading the positional task form, the task table and page, progress
lines on a terminal and off it."""

from __future__ import annotations

import io

import pytest

from cli import task_view
from cli.progress import CLEAR, Progress
from cli.tasks import read_positionals
from schemas.errors import Invalid

DEP = "t-9df2d62dbbb0"


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ([], (None, None, None)),
        (["frontend,ui"], ("frontend,ui", None, None)),
        (["frontend,ui", "high"], ("frontend,ui", "high", None)),
        (["qa,test", "medium", "t-123abc"], ("qa,test", "medium", "t-123abc")),
        (["critical"], (None, "critical", None)),
        (["High"], (None, "high", None)),
        (["qa", DEP], ("qa", None, DEP)),  # the example: a dependency, not a priority
        ([DEP], (None, None, DEP)),
        ([DEP, "qa"], ("qa", None, DEP)),
        ([f"{DEP},t-0a1b2c3d"], (None, None, f"{DEP},t-0a1b2c3d")),
        (["qa", DEP, "low"], ("qa", "low", DEP)),
        (["-", "low", "long-job"], ("-", "low", "long-job")),  # an id chosen with --id: third
        (["t-shirt"], ("t-shirt", None, None)),  # a tag that only starts like an id
    ],
)
def test_the_words_after_the_title_are_read_by_what_they_are(
    words: list[str], expected: tuple[str | None, str | None, str | None]
) -> None:
    assert read_positionals(words) == expected


def test_a_word_that_is_neither_a_priority_nor_task_ids_in_second_place_names_the_priority() -> (
    None
):
    with pytest.raises(Invalid) as raised:
        read_positionals(["ui", "urgent"])
    assert raised.value.message.startswith("priority: 'urgent' is not one of critical")


def test_too_many_or_unplaceable_words_are_refused() -> None:
    with pytest.raises(Invalid, match="at most 3 words"):
        read_positionals(["a", "high", DEP, "more"])
    with pytest.raises(Invalid, match="two of them"):
        read_positionals(["high", "low"])
    with pytest.raises(Invalid, match="cannot tell what 'more' is"):
        read_positionals([DEP, "qa", "more"])


def task(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": "t-1",
        "title": "Build it",
        "status": "pending",
        "priority": "medium",
        "attempt": 1,
        "tags": [],
        "depends": [],
    }
    return base | fields


def test_the_table_has_reason_cost_and_tags_and_ends_with_totals() -> None:
    tasks = [
        task(id="t-a", status="completed", agent="be", cost_usd=0.5, tags=["api"],
             usage={"input_tokens": 1000, "output_tokens": 200, "cache_read_input_tokens": 50}),
        task(id="t-b", status="failed", agent="be", cost_usd=0.25, reason="exit 1: boom",
             usage={"input_tokens": 10, "output_tokens": 5}),
        task(id="t-c", title="x" * 60),
    ]  # fmt: skip
    lines = task_view.table(tasks)
    assert lines[0].split() == [
        "ID", "STATUS", "PRIORITY", "AGENT", "COST", "TAGS", "TITLE", "REASON", "/", "GIT"
    ]  # fmt: skip
    assert lines[1].split()[:6] == ["t-a", "completed", "medium", "be", "$0.50", "api"]
    assert lines[2].split()[4] == "$0.25" and lines[2].endswith("exit 1: boom")
    assert "x" * 39 + "…" in lines[3]
    assert lines[-2:] == [
        "3 task(s): 1 pending, 1 completed, 1 failed",
        "Cost: $0.75  Tokens: 1,010 in, 205 out (50 cache read)",
    ]


def test_the_page_has_the_facts_the_landing_the_output_tail_and_the_result() -> None:
    shown = task(
        status="cancelled",
        agent="be",
        attempt=2,
        tags=["api", "db"],
        depends=["t-0", "t-gone"],
        reason="not needed",
        cancelled_by="cli",
        cost_usd=1.25,
        result="the answer",
        integration={"project": "p-1", "branch": "swarm/t-1", "base": "a" * 40,
                     "head": "b" * 40, "state": "landed", "onto": "main", "landed": "c" * 40},
    )  # fmt: skip
    output = {"attempt": 2, "output": "".join(f"line {n}\n" for n in range(30))}
    page = task_view.detail(shown, {"t-0": "completed"}, output, lines=3)
    assert page[:4] == ["t-1  Build it", "Status:     cancelled",
                        "Priority:   medium    Runtime: claude", "Tags:       api, db"]  # fmt: skip
    assert "Depends on: t-0 (completed), t-gone (gone)" in page
    assert {"Agent:      be", "Attempt:    2", "Reason:     not needed", "Cancelled:  by cli",
            "Cost:       $1.25", "Tokens:     none"} <= set(page)  # fmt: skip
    assert "Branch:     swarm/t-1 (project p-1)" in page
    assert "Commits:    aaaaaaa → bbbbbbb" in page
    assert f"Landed:     {'c' * 40} on main" in page
    assert page[-7:] == [
        "--- output, attempt 2 (last 3 lines) ---", "line 27", "line 28", "line 29",
        "", "--- result ---", "the answer",
    ]  # fmt: skip


def test_progress_off_a_terminal_is_plain_lines_once_each_without_the_ticker() -> None:
    stream = io.StringIO()
    progress = Progress(stream, live=False)
    progress.step("t-1 claimed", "(1s)")
    progress.step("t-1 claimed", "(2s)")
    progress.step("t-1 running")
    progress.note("gateway back")
    progress.clear()
    assert stream.getvalue() == "t-1 claimed\nt-1 running\ngateway back\n"


def test_progress_on_a_terminal_rewrites_one_line_and_clears_it() -> None:
    stream = io.StringIO()
    progress = Progress(stream, live=True)
    progress.step("t-1 claimed", "(1s)")
    progress.step("t-1 running", "(2s)")
    progress.note("a note stays")
    progress.step("t-1 completed")
    progress.clear()
    assert stream.getvalue() == (
        f"{CLEAR}t-1 claimed (1s){CLEAR}t-1 running (2s){CLEAR}a note stays\n"
        f"{CLEAR}t-1 completed{CLEAR}"
    )


def test_a_shell_task_s_page_does_not_repeat_its_output_as_the_result() -> None:
    output = {"attempt": 1, "output": "hello\nworld\n"}
    page = task_view.detail(task(runtime="shell", result="hello\nworld"), {}, output, lines=20)
    assert page[-2:] == ["hello", "world"] and "--- result ---" not in page
    page = task_view.detail(task(runtime="shell", result="hello\nworld"), {}, None, lines=20)
    assert page[-2:] == ["--- result ---", "hello\nworld"]


def test_the_page_says_how_the_attempts_went() -> None:
    assert "Attempt:    1" in task_view.detail(task(), {}, None, lines=0)
    shown = task(attempt=3, runs=2, runs_failed=1, runs_lost=1, claims_lost=1)
    page = task_view.detail(shown, {}, None, lines=0)
    assert "Attempt:    3 (2 runs: 1 failed, 1 lost, 1 claims lost)" in page
    assert "Attempt:    1 (1 run)" in task_view.detail(task(runs=1), {}, None, lines=0)
