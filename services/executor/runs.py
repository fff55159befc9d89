"""One attempt of one task in an agent's sandbox: build the runtime's command, run it with the
task's timeout and the run's cancel, stream what it prints, and say how it ended.

Environment of a run, beyond the sandbox's basics: the ``pass_env`` names, the agent's API
access and git identity (``extra_env``), the run's ids; a ``claude`` run also gets every Claude
Code setting set in the executor's environment (``schemas.environment``: credentials, base URL,
models, Bedrock/Vertex/Foundry and their cloud credentials, proxies, CA bundles, telemetry
switches...), a ``shell`` run the proxies and CA bundles only."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from schemas import environment
from schemas.agent_tokens import make_agent_token
from schemas.board import TaskView
from schemas.chat import InboxEntry
from schemas.events import RunOutcome
from services.executor import claude_settings, runtimes
from services.executor.claude_settings import ClaudeOptions, ClaudeRun
from services.executor.runtimes import ClaudeOutput, ShellOutput, Verdict
from services.executor.sandboxes import Sandbox


@dataclass(frozen=True)
class RunSettings:
    """What every run of this executor shares. ``source_env``: the executor's environment, from
    which only credentials (claude runtime) and the ``pass_env`` names reach the sandbox."""

    claude: ClaudeOptions = field(default_factory=ClaudeOptions)
    default_timeout: float = 600.0
    source_env: Mapping[str, str] = field(default_factory=dict)
    pass_env: tuple[str, ...] = ()
    backend: str = "local"  # the sandbox backend: it decides the claude permission default


def api_access(source_env: Mapping[str, str], swarm: str, agent: str) -> dict[str, str]:
    """What lets an agent talk to Swarm from its sandbox: ``SWARM_API_URL``,
    ``SWARM_DEFAULT_ID`` and ``SWARM_AGENT_TOKEN`` (a token that may only post chat, as this
    agent). The token is given only when the executor knows the API (``SWARM_API_URL`` and
    ``SWARM_API_TOKEN`` in its environment, as ``swarm up`` sets them)."""
    env = {"SWARM_DEFAULT_ID": swarm}
    url = source_env.get("SWARM_API_URL", "").strip()
    api_token = source_env.get("SWARM_API_TOKEN", "")
    if url:
        env["SWARM_API_URL"] = url
        if api_token:
            env["SWARM_AGENT_TOKEN"] = make_agent_token(api_token, swarm, agent)
    return env


def sandbox_env(
    settings: RunSettings,
    task: TaskView,
    agent: str,
    *,
    claude: ClaudeRun | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """What the command gets beyond the sandbox's basics: the network settings, for a claude
    run (``claude`` given) every Claude Code setting, the passed-through variables, ``extra``
    (the agent's API access and git identity) and the run's ids."""
    source = settings.source_env
    if claude is not None:
        env = claude_settings.environment_of(source, claude)
    else:
        env = environment.network_settings(source)
    env.update({name: source[name] for name in settings.pass_env if name in source})
    env.update(extra or {})
    env.update(
        SWARM_SWARM_ID=task.swarm,
        SWARM_TASK_ID=task.id,
        SWARM_AGENT_ID=agent,
        SWARM_ATTEMPT=str(task.attempt),
    )
    return env


async def execute(
    task: TaskView,
    agent: str,
    sandbox: Sandbox,
    write: Callable[[str], None],
    settings: RunSettings,
    cancel: asyncio.Event,
    *,
    tail: Callable[[], str] = lambda: "",
    mentions: Sequence[InboxEntry] = (),
    extra_env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    claude: ClaudeRun | None = None,
) -> Verdict:
    """Run the task once; ``write`` gets readable output as it comes, ``tail`` returns the last
    of it. A run stopped through ``cancel`` still gets a verdict; its caller knows why it stopped
    and decides what it means. ``mentions`` go in front of a claude prompt; ``extra_env`` is
    given to the command; ``cwd`` (relative to the sandbox's working directory) is where it
    runs; ``claude``: the claude run's flags (default: the settings' for this task, new
    session)."""
    if task.runtime == "instant":
        return runtimes.instant()
    output: ShellOutput | ClaudeOutput
    if task.runtime == "shell":
        command = runtimes.shell_command(task.prompt)
        output = ShellOutput()
        env = sandbox_env(settings, task, agent, extra=extra_env)
    else:
        # the sandbox looks (a Daytona sandbox checks inside itself: `command -v`)
        binary = await sandbox.which(settings.claude.bin, settings.source_env.get("PATH"))
        if binary is None:
            verdict = runtimes.missing_claude(settings.claude.bin, sandbox.place)
            write(verdict.reason + "\n" if verdict.reason else "")
            return verdict
        if claude is None:
            claude = claude_settings.resolve(settings.claude, settings.backend, task=task.claude)
        if claude.resume:
            prompt = runtimes.resume_prompt(task, mentions)
            write(f"· resuming session {claude.resume} of an earlier attempt\n")
        else:
            prompt = runtimes.task_prompt(task, mentions)
        write(f"· {claude_settings.describe(claude)}\n")
        command = runtimes.claude_command(claude, binary, prompt)
        env = sandbox_env(settings, task, agent, claude=claude, extra=extra_env)
        output = ClaudeOutput(
            credentials_given=bool(runtimes.credentials(env)), api=runtimes.api_place(env)
        )
    timeout = task.timeout or settings.default_timeout

    def on_output(stream: str, data: bytes) -> None:
        write(output.feed(stream, data))

    try:
        result = await sandbox.exec(
            command.argv,
            on_output=on_output,
            env=env,
            stdin=command.stdin,
            timeout=timeout,
            cancel=cancel,
            merge_stderr=command.merge_stderr,
            cwd=cwd,
        )
    except OSError as error:  # could not start the command at all
        reason = f"could not start {command.argv[0]!r} in the sandbox: {error}"
        write(reason + "\n")
        verdict = Verdict(False, RunOutcome(result=reason, is_error=True), reason)
        return verdict
    write(output.flush())
    verdict = output.verdict(result.exit_code, tail())
    verdict.outcome.duration_s = round(result.duration_s, 3)
    if claude is not None and verdict.outcome.session_id is None:
        verdict.outcome.session_id = claude.resume or claude.session_id  # it said nothing yet
    if result.timed_out:
        verdict = runtimes.timed_out(
            verdict, timeout, from_task=task.timeout is not None, meanwhile=output.meanwhile()
        )
    return verdict
