"""One command in a Daytona sandbox: a session of its own, run asynchronously, its output followed.

A runner script (POSIX ``sh``: an image need not have bash) and, when there is one, an
environment file (the credentials) are uploaded to a private directory; the session runs the
script, which reads the environment file and deletes it before it starts the command. So
credentials reach the command's environment only, at execution time: never the sandbox's labels
or its environment, nor the command line Daytona records.

Output comes through the SDK's log follow (a websocket). The daemon frames it per line -- a
partial line shows once complete, an unterminated last line gets a ``\\n``, NUL bytes are dropped
-- and closes the socket about a second after the command exits. Only whole lines are handed on
(``Delivered``). A dropped stream (the SDK's keepalive gives up, the proxy cuts it), or one that
ends while the command has no exit code, is opened again: it replays from the start and what was
delivered is skipped. A stream silent for ``QUIET_CHECK`` seconds is checked against the
command's exit code; once the command has ended and the stream has not closed, the rest of the
output is read in one request. Streams that fail again and again with nothing coming through give
way to polling the whole log. Timeout, cancel or a cancelled caller delete the session: the
daemon stops the command's whole process tree (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shlex
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import structlog
from daytona import AsyncSandbox, FileUpload, SessionExecuteRequest

from schemas.errors import Invalid
from services.bus.logs import scrub
from services.executor.sandboxes import ExecResult, OutputCallback, SandboxFailed
from services.executor.sandboxes.daytona_errors import (
    DaemonRefused,
    DaytonaUnavailable,
    backoff,
    classify,
)
from services.executor.sandboxes.daytona_states import poll_interval

log = structlog.get_logger("executor.daytona")

T = TypeVar("T")

RUNS_DIR = ".swarm/runs"  # under the sandbox user's home: one private directory per command
KILL_GRACE = 5.0  # after the session is deleted, how long the last output may take to arrive
QUIET_CHECK = 15.0  # a followed command silent this long: is it still running?
CLOSE_GRACE = 3.0  # the daemon closes a followed log ~1 s after the command exits
EXIT_CODE_WAIT = 5.0  # after the stream ends: how long the exit code may take to show
RETRY_CAP = 8.0
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
STREAMS = ("stdout", "stderr")


# --- pure pieces ---------------------------------------------------------------------------------


def env_file(env: Mapping[str, str]) -> str:
    """A file the runner script sources: ``export NAME='value'`` per variable."""
    lines = []
    for name, value in env.items():
        if not ENV_NAME.fullmatch(name):
            raise Invalid("env", f"{name!r} is not an environment variable name")
        lines.append(f"export {name}={shlex.quote(value)}")
    return "\n".join(lines) + "\n"


def runner_script(
    argv: Sequence[str], directory: str, run_dir: str, *, with_env: bool, with_stdin: bool
) -> str:
    """The script a session runs for one command (POSIX sh, no bash needed): it reads the
    environment file (and deletes it), goes to ``directory`` and runs ``argv`` (its stdin: the
    uploaded input, or nothing). The script itself holds no secret."""
    if not argv:
        raise Invalid("argv", "no command to run")
    lines = [
        "# swarm: one command of a task (its environment file is read, then deleted)",
        f"run={shlex.quote(run_dir)}",
    ]
    if with_env:
        lines += ['. "$run/env"', 'rm -f -- "$run/env"']
    lines.append(f"cd -- {shlex.quote(directory)} || exit 126")
    source = '"$run/stdin"' if with_stdin else "/dev/null"
    lines.append(f"{shlex.join(argv)} < {source}")
    return "\n".join(lines) + "\n"


def session_command(run_dir: str, merge_stderr: bool) -> str:
    """What the session runs (and Daytona records): the runner script, nothing secret."""
    command = f"sh {shlex.quote(run_dir.rstrip('/') + '/run.sh')}"
    return command + " 2>&1" if merge_stderr else command


@dataclass
class Delivered:
    """How much of a command's output (characters, per stream) went to ``on_output``.

    The daemon frames output per line, so only whole lines are handed on: what follows the last
    newline waits for its newline (or a clean end). That keeps a stream cut short from handing
    on the SDK's leftovers (a partial stream marker, half a character): a stream opened again
    replays from the start and skips exactly what was handed on; the whole log, read in one
    request, goes on from there."""

    sent: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STREAMS, 0))
    held: dict[str, str] = field(default_factory=lambda: dict.fromkeys(STREAMS, ""))
    last: float = field(default_factory=time.monotonic)  # when output last arrived

    @property
    def total(self) -> int:
        return sum(self.sent.values())

    def replay(self) -> dict[str, int]:
        """A new stream: what it must skip (it starts from the beginning again); what the last
        one held back is dropped (the new one brings it again)."""
        self.held = dict.fromkeys(STREAMS, "")
        return dict(self.sent)

    def take(self, stream: str, text: str, skip: dict[str, int]) -> str:
        """Of ``text`` (the next piece of ``stream``), the new whole lines: counted as sent."""
        if skip[stream]:
            cut = min(skip[stream], len(text))
            skip[stream] -= cut
            text = text[cut:]
        self.last = time.monotonic()
        held = self.held[stream] + text
        end = held.rfind("\n") + 1
        self.held[stream] = held[end:]
        self.sent[stream] += end
        return held[:end]

    def flush(self, stream: str) -> str:
        """The stream ended cleanly: what it held back (but a partial stream marker)."""
        text = self.held[stream].rstrip("\x01\x02")
        self.held[stream] = ""
        self.sent[stream] += len(text)
        return text

    def rest(self, stream: str, whole: str) -> str:
        """Of ``whole`` (all of ``stream`` so far), what was not sent yet: counted as sent."""
        self.held[stream] = ""
        text = whole[self.sent[stream] :]
        self.sent[stream] += len(text)
        return text


# --- a command's run -----------------------------------------------------------------------------


class Host(Protocol):
    """What a run needs of its sandbox (``daytona.DaytonaSandbox``)."""

    id: str
    agent: str
    home: str
    workdir: str

    @property
    def retries(self) -> int: ...

    @property
    def retry_backoff(self) -> float: ...

    @property
    def api_url(self) -> str: ...

    @property
    def secrets(self) -> tuple[str, ...]: ...

    async def toolbox(
        self,
        action: str,
        fn: Callable[..., Awaitable[T]],
        *args: Any,
        within: float | None = None,
        retry: bool = True,
        **kwargs: Any,
    ) -> T: ...

    async def direct(self, action: str, fn: Callable[..., Awaitable[T]], *args: Any) -> T: ...

    async def was_down(self) -> bool: ...


class SessionRun:
    """One command, in a session of its own, on ``remote`` (the started sandbox)."""

    def __init__(self, host: Host, remote: AsyncSandbox, on_output: OutputCallback) -> None:
        self.host = host
        self.remote = remote
        self.on_output = on_output
        run = uuid.uuid4().hex[:12]
        self.run_dir = f"{host.home.rstrip('/')}/{RUNS_DIR}/{run}"
        self.session = f"swarm-{run}"

    async def run(
        self,
        argv: Sequence[str],
        *,
        directory: str,
        env: Mapping[str, str] | None = None,
        stdin: bytes | None = None,
        timeout: float | None = None,
        cancel: asyncio.Event | None = None,
        merge_stderr: bool = False,
    ) -> ExecResult:
        started = time.monotonic()
        script = runner_script(
            argv, directory, self.run_dir, with_env=bool(env), with_stdin=stdin is not None
        )
        uploads = [FileUpload(script.encode(), f"{self.run_dir}/run.sh")]
        if env:
            uploads.append(FileUpload(env_file(env).encode(), f"{self.run_dir}/env"))
        if stdin is not None:
            uploads.append(FileUpload(stdin, f"{self.run_dir}/stdin"))
        fs, process = self.remote.fs, self.remote.process
        opened = False
        timed_out = cancelled = False
        exit_code: int | None = None
        try:
            await self.host.toolbox("preparing the command", fs.create_folder, self.run_dir, "700")
            await self.host.toolbox("uploading the command", fs.upload_files, uploads)
            await self._open_session()
            opened = True
            command = await self._start(session_command(self.run_dir, merge_stderr))
            follow = asyncio.create_task(self._follow(command))
            stop = asyncio.create_task(cancel.wait()) if cancel is not None else None
            waiting: set[asyncio.Task[object]] = {follow} | ({stop} if stop is not None else set())
            try:
                done, _ = await asyncio.wait(
                    waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if follow in done:
                    exit_code = follow.result()
                else:
                    cancelled = stop is not None and stop in done
                    timed_out = not cancelled
                    opened = not await self._end(process)  # kills the command
                    await asyncio.wait({follow}, timeout=KILL_GRACE)  # its last words
            finally:
                for task in waiting:
                    task.cancel()
                await asyncio.gather(*waiting, return_exceptions=True)
        finally:
            cleanup = asyncio.ensure_future(self._clean_up(opened))
            await asyncio.shield(cleanup)
        return ExecResult(
            exit_code=None if (timed_out or cancelled) else exit_code,
            timed_out=timed_out,
            cancelled=cancelled,
            duration_s=time.monotonic() - started,
        )

    async def _open_session(self) -> None:
        """Create the command's session (a retried creation that had gone through answers 409:
        the session is ours, it is there)."""
        process = self.remote.process
        try:
            await self.host.toolbox("opening a session", process.create_session, self.session)
        except DaemonRefused as error:
            if error.status != 409:
                raise

    async def _start(self, command: str) -> str:
        """Start the session's command, exactly once: a start whose answer was lost is looked
        for in the session before it is sent again. The command's id."""
        process = self.remote.process
        request = SessionExecuteRequest(command=command, run_async=True)
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self.host.toolbox(
                    "starting the command",
                    process.execute_session_command,
                    self.session,
                    request,
                    retry=False,
                )
                return str(response.cmd_id)
            except DaytonaUnavailable:
                if attempt > self.host.retries:
                    raise
                found = await self.host.toolbox(
                    "reading the session", process.get_session, self.session
                )
                if found.commands:
                    return str(found.commands[0].id)
                await asyncio.sleep(backoff(attempt, self.host.retry_backoff, RETRY_CAP))

    async def _hand_on(self, stream: str, text: str) -> None:
        if text:
            result = self.on_output(stream, text.encode("utf-8"))
            if result is not None:
                await result

    async def _follow(self, command: str) -> int | None:
        """Stream the command's output until it ends; its exit code."""
        delivered = Delivered()
        failures = 0
        while True:
            if failures > self.host.retries:
                return await self._poll(command, delivered)
            skip = delivered.replay()

            def handler(
                stream: str, skip: dict[str, int] = skip
            ) -> Callable[[str], Awaitable[None]]:
                async def handle(text: str) -> None:
                    await self._hand_on(stream, delivered.take(stream, text, skip))

                return handle

            opened, before = time.monotonic(), delivered.total
            stream = asyncio.create_task(
                self.remote.process.get_session_command_logs_async(
                    self.session, command, handler("stdout"), handler("stderr")
                )
            )
            try:
                ended = await self._watch(command, stream, delivered)
            finally:
                if not stream.done():
                    stream.cancel()
                await asyncio.gather(stream, return_exceptions=True)
            if ended is not None:  # the command ended while its stream was silent
                await self._rest(command, delivered)
                return ended
            error = stream.exception()
            if error is None:
                code = await self._exit_code(command, EXIT_CODE_WAIT)
                if code is not None:
                    for name in STREAMS:
                        await self._hand_on(name, delivered.flush(name))
                    return code
                why = "the stream ended before the command did"
            else:
                why = await self._stream_failed(error)
            progressed = delivered.total > before or time.monotonic() - opened >= QUIET_CHECK
            failures = 1 if progressed else failures + 1
            code = await self._exit_code(command, 0.0)
            if code is not None:  # it ended meanwhile: the rest in one request
                await self._rest(command, delivered)
                return code
            log.warning(
                "daytona.output_reconnect", agent=self.host.agent, sandbox=self.host.id, why=why
            )
            await asyncio.sleep(backoff(failures, self.host.retry_backoff, RETRY_CAP))

    async def _stream_failed(self, error: BaseException) -> str:
        """Why the stream failed, when it may be opened again; raise when it may not (the key
        refused, the sandbox lost or stopped, an SDK that cannot read the server)."""
        failure = classify(error, "toolbox")
        if failure.kind in ("refused", "skew", "auth"):
            if failure.kind == "refused" and await self.host.was_down():
                raise SandboxFailed(
                    f"Daytona sandbox {self.host.id} was stopped while a command ran"
                ) from error
            raise failure.error(
                "following the command's output",
                api_url=self.host.api_url,
                secrets=self.host.secrets,
            ) from error
        return scrub(failure.message, self.host.secrets)

    async def _watch(
        self, command: str, stream: asyncio.Task[None], delivered: Delivered
    ) -> int | None:
        """Wait for ``stream`` to end (None); or, when it stays silent and the command has
        ended without the stream closing, the command's exit code."""
        while True:
            quiet_for = time.monotonic() - delivered.last
            await asyncio.wait({stream}, timeout=max(0.05, QUIET_CHECK - quiet_for))
            if stream.done():
                return None
            if time.monotonic() - delivered.last < QUIET_CHECK:
                continue
            code = await self._exit_code(command, 0.0)
            delivered.last = time.monotonic()
            if code is None:
                continue
            await asyncio.wait({stream}, timeout=CLOSE_GRACE)
            if stream.done():
                return None
            log.warning("daytona.output_stalled", agent=self.host.agent, sandbox=self.host.id)
            return code

    async def _poll(self, command: str, delivered: Delivered) -> int | None:
        """Follow the command by reading its whole log now and then, until it has an exit code
        (when its stream cannot be kept open)."""
        log.warning("daytona.output_polled", agent=self.host.agent, sandbox=self.host.id)
        waited = 0
        while True:
            code = await self._exit_code(command, 0.0)
            await self._rest(command, delivered)
            if code is not None:
                return code
            await asyncio.sleep(poll_interval(waited, 0.5, 5.0))
            waited += 1

    async def _rest(self, command: str, delivered: Delivered) -> None:
        """Deliver what the stream did not: the command's whole log, read in one request."""
        logs = await self.host.toolbox(
            "reading the command's output",
            self.remote.process.get_session_command_logs,
            self.session,
            command,
        )
        for stream in STREAMS:
            await self._hand_on(stream, delivered.rest(stream, getattr(logs, stream, None) or ""))

    async def _exit_code(self, command: str, within: float) -> int | None:
        """The session command's exit code (the daemon writes it before it closes the stream),
        waited for up to ``within`` seconds; None while it runs."""
        deadline = time.monotonic() + within
        waited = 0
        while True:
            found = await self.host.toolbox(
                "reading the exit code",
                self.remote.process.get_session_command,
                self.session,
                command,
            )
            if found.exit_code is not None or time.monotonic() >= deadline:
                return found.exit_code
            await asyncio.sleep(poll_interval(waited, 0.05, 0.5))
            waited += 1

    async def _end(self, process: Any) -> bool:
        """Delete the session: the daemon stops the command's process tree. Whether it did."""
        try:
            await self.host.direct("stopping the command", process.delete_session, self.session)
            return True
        except SandboxFailed as error:
            log.warning("daytona.session_not_deleted", sandbox=self.host.id, error=error.reason)
            return False

    async def _clean_up(self, opened: bool) -> None:
        """Best effort, bounded: the session (and what it still runs), the command's files."""
        process = self.remote.process
        try:
            async with asyncio.timeout(30):
                if opened:
                    with contextlib.suppress(Exception):
                        await process.delete_session(self.session)
                with contextlib.suppress(Exception):
                    await process.exec(
                        f"rm -rf -- {shlex.quote(self.run_dir)}",
                        cwd=self.host.workdir or None,
                        timeout=30,
                    )
        except TimeoutError:
            log.warning("daytona.cleanup_timed_out", sandbox=self.host.id, session=self.session)
