"""The task that makes a stuck task's work land: what it is asked to do.

When a completed task's work cannot land on the project's branch (a conflict, or the project's
``verify`` failing on the result) and the project says ``on_conflict = "resolve"``, the scheduler
creates a resolve task ``<origin>-resolve-<round>`` with ``resolves`` naming the stuck task. The
executor that runs it checks out the branch's newest tip with the stuck task's changes applied on
top (``git merge --squash``: conflict markers in the conflicted files), the agent fixes the tree,
and Swarm commits and lands it like any other task's work. The stuck task's dependents wait for
it.

The task's own ``conflict`` trigger, when it has one, is the resolve task (e.g. a shell script
that regenerates a lock file); otherwise it is a claude task with the problem in its prompt. Pure.
"""

from __future__ import annotations

from schemas.board import ProjectView, TaskView
from schemas.events import TaskSpec
from schemas.landing import problem_text

OUTPUT_IN_PROMPT = 3000  # characters of verify's output a resolve prompt quotes


def resolve_spec(task: TaskView, project: ProjectView | None) -> TaskSpec:
    """The resolve task for ``task`` (completed, its work stuck)."""
    for trigger in task.triggers:
        if trigger.on == "conflict":
            return trigger.task
    work = task.integration
    assert work is not None
    onto = work.onto or (project.target if project else None) or "the project branch"
    title = f"Make {task.id}'s work land on {onto}: {problem_text(work)}"
    if len(title) > 200:
        title = title[:199] + "…"
    lines = [
        f'Task {task.id} ("{task.title}") finished, but its work cannot land on {onto}: '
        f"{problem_text(work)}.",
        "",
        f"Your working tree holds {onto}'s newest commit ({(work.tip or '?')[:12]}) with "
        f"{task.id}'s changes applied on top, not committed.",
    ]
    if work.problem == "conflict":
        lines += [
            "These files have conflict markers (<<<<<<< / ======= / >>>>>>>):",
            *[f"- {name}" for name in work.files],
            "",
            "Resolve every conflict so that both sides' intent is kept, and remove all markers.",
        ]
    else:
        verify = project.verify if project and project.verify else "the project's verify command"
        output = work.output[-OUTPUT_IN_PROMPT:]
        lines += [
            f"`{verify}` failed on that result. Its last output:",
            "```",
            output,
            "```",
            "",
            f"Fix the code so that `{verify}` passes, keeping {task.id}'s intent.",
        ]
    lines += [
        "Do not commit, push, rebase or switch branches: Swarm commits what you leave and lands "
        "it.",
        "",
        f"{task.id}'s own task was:",
        task.prompt,
    ]
    return TaskSpec(
        title=title,
        prompt="\n".join(lines),
        description=f"resolves {task.id}",
        tags=list(task.tags),
        priority=task.priority,
        runtime="claude",
        timeout=task.timeout,
    )
