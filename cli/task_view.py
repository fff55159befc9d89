"""How tasks read on a terminal: ``swarm tasks``' table and totals, ``swarm task show``'s page.
Pure: the gateway's JSON in, lines out (tested without a gateway)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from cli.status import STATUS_ORDER, work_note

REASON_CHARS = 80  # a reason is cut to this in the table (``task show`` has all of it)
TITLE_CHARS = 40
TAGS_CHARS = 20
USAGE_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
)


def short(text: str, limit: int) -> str:
    """One line of at most ``limit`` characters (``…`` where it was cut)."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def dollars(value: float | None) -> str:
    return f"${value or 0.0:.2f}"


def count(value: int) -> str:
    """``12,345`` below a million, ``1.2M`` above: tokens at a glance."""
    return f"{value:,}" if value < 1_000_000 else f"{value / 1_000_000:.1f}M"


def usage_of(task: Mapping[str, Any]) -> dict[str, int]:
    usage = task.get("usage") or {}
    return {name: int(usage.get(name) or 0) for name in USAGE_FIELDS}


def tokens_text(usage: Mapping[str, int]) -> str:
    """``1,200 in, 300 out (5,000 cache read, 800 cache written)``; ``none`` when all are 0."""
    if not any(usage.values()):
        return "none"
    text = f"{count(usage['input_tokens'])} in, {count(usage['output_tokens'])} out"
    cache = []
    if usage["cache_read_input_tokens"]:
        cache.append(f"{count(usage['cache_read_input_tokens'])} cache read")
    if usage["cache_creation_input_tokens"]:
        cache.append(f"{count(usage['cache_creation_input_tokens'])} cache written")
    return f"{text} ({', '.join(cache)})" if cache else text


def summed_usage(tasks: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    total = dict.fromkeys(USAGE_FIELDS, 0)
    for task in tasks:
        for name, value in usage_of(task).items():
            total[name] += value
    return total


def note_of(task: Mapping[str, Any]) -> str:
    """The table's last column: why it failed, was cancelled or requeued; where its work is."""
    parts = []
    if task.get("reason") and task["status"] != "completed":
        parts.append(short(task["reason"], REASON_CHARS))
    work = work_note(dict(task))
    if work:
        parts.append(f"[{work}]")
    return "  ".join(parts)


def table(tasks: Sequence[Mapping[str, Any]]) -> list[str]:
    """``swarm tasks``: one row per task, then the totals."""
    title_width = min(max((len(t["title"]) for t in tasks), default=5), TITLE_CHARS)
    header = (
        f"{'ID':<16} {'STATUS':<10} {'PRIORITY':<8} {'AGENT':<18} {'COST':>7}  "
        f"{'TAGS':<{TAGS_CHARS}} {'TITLE':<{title_width}}  REASON / GIT"
    )
    rows = [header]
    for task in tasks:
        tags = short(",".join(task.get("tags") or []) or "-", TAGS_CHARS)
        title = short(task["title"], title_width)
        row = (
            f"{task['id']:<16} {task['status']:<10} {task['priority']:<8} "
            f"{task.get('agent') or '-':<18} {dollars(task.get('cost_usd')):>7}  "
            f"{tags:<{TAGS_CHARS}} {title:<{title_width}}  {note_of(task)}"
        )
        rows.append(row.rstrip())
    return [*rows, "", *totals(tasks)]


def totals(tasks: Sequence[Mapping[str, Any]]) -> list[str]:
    """``3 tasks: 1 pending, 2 completed`` then cost and tokens together."""
    counts: dict[str, int] = {}
    for task in tasks:
        counts[task["status"]] = counts.get(task["status"], 0) + 1
    by_status = ", ".join(f"{counts[s]} {s}" for s in STATUS_ORDER if counts.get(s))
    cost = sum(float(t.get("cost_usd") or 0.0) for t in tasks)
    return [
        f"{len(tasks)} task(s): {by_status}",
        f"Cost: {dollars(cost)}  Tokens: {tokens_text(summed_usage(tasks))}",
    ]


def when(seconds: float | None) -> str:
    if not seconds:
        return "-"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def took(start: float | None, end: float | None) -> str:
    if not start or not end or end < start:
        return ""
    seconds = end - start
    if seconds < 60:
        return f" (took {seconds:.1f}s)"
    minutes, rest = divmod(int(seconds), 60)
    return f" (took {minutes}m{rest:02d}s)"


def git_lines(task: Mapping[str, Any]) -> list[str]:
    """Branch, base and head, and whether (and where) the work landed."""
    work = task.get("integration")
    if not work:
        return []
    lines = [f"Branch:     {work['branch']} (project {work['project']})"]
    base, head = work.get("base"), work.get("head")
    if base or head:
        lines.append(f"Commits:    {str(base or '?')[:7]} → {str(head or '?')[:7]}")
    if work.get("landed"):
        lines.append(f"Landed:     {work['landed']} on {work.get('onto') or 'the branch'}")
    lines.append(f"Git:        {work_note(dict(task))}")
    if work.get("output") and work["state"] in ("conflict", "verify_failed", "failed"):
        lines.append(f"            {short(work['output'], 200)}")
    return lines


ATTEMPT_COUNTS = (
    ("runs_failed", "failed"),
    ("runs_lost", "lost"),
    ("runs_stopped", "stopped"),
    ("claims_lost", "claims lost"),
)


def attempts_note(task: Mapping[str, Any]) -> str:
    """`` (2 runs: 1 failed, 1 lost)``: how its attempts went (empty before any run)."""
    runs = int(task.get("runs") or 0)
    ended = [f"{task[key]} {word}" for key, word in ATTEMPT_COUNTS if task.get(key)]
    if not runs and not ended:
        return ""
    what = f"{runs} run{'s' if runs != 1 else ''}"
    return f" ({what}: {', '.join(ended)})" if ended else f" ({what})"


def dependency_text(depends: list[str], statuses: Mapping[str, str]) -> str:
    return ", ".join(f"{d} ({statuses.get(d, 'gone')})" for d in depends) or "-"


def detail(
    task: Mapping[str, Any],
    statuses: Mapping[str, str],
    output: Mapping[str, Any] | None,
    lines: int,
) -> list[str]:
    """``swarm task show``: the task's facts, its landing, the tail of its output, the result.
    ``statuses``: the swarm's task statuses by id (for the dependencies)."""
    page = [
        f"{task['id']}  {task['title']}",
        f"Status:     {task['status']}",
        f"Priority:   {task['priority']}    Runtime: {task.get('runtime', 'claude')}",
        f"Tags:       {', '.join(task.get('tags') or []) or '-'}",
        f"Depends on: {dependency_text(task.get('depends') or [], statuses)}",
        f"Agent:      {task.get('agent') or '-'}",
        f"Attempt:    {task['attempt']}{attempts_note(task)}",
    ]
    if task.get("reason"):
        page.append(f"Reason:     {task['reason']}")
    if task.get("cancelled_by"):
        page.append(f"Cancelled:  by {task['cancelled_by']}")
    page += [
        f"Cost:       {dollars(task.get('cost_usd'))}",
        f"Tokens:     {tokens_text(usage_of(task))}",
        f"Created:    {when(task.get('created_at'))}",
    ]
    if task.get("started_at"):
        page.append(f"Started:    {when(task['started_at'])}")
    if task.get("finished_at"):
        started = task.get("started_at") or task.get("claimed_at")
        page.append(f"Finished:   {when(task['finished_at'])}{took(started, task['finished_at'])}")
    if task.get("parent"):
        page.append(f"Parent:     {task['parent']}")
    if task.get("resolves"):
        page.append(f"Resolves:   {task['resolves']}")
    page += git_lines(task)
    text = (output or {}).get("output") or ""
    if text:
        tail = text.rstrip("\n").splitlines()[-lines:]
        page += [
            "",
            f"--- output, attempt {(output or {}).get('attempt')} (last {lines} lines) ---",
        ]
        page += tail
    if task.get("result") and (task.get("runtime", "claude") == "claude" or not text):
        page += ["", "--- result ---", task["result"].rstrip("\n")]  # else: the output's tail
    return page
