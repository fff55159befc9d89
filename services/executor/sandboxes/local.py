"""The ``local`` sandbox: a working directory per agent on this machine, commands as child process
groups.

- Directory: ``<root>/<agent>`` (``root`` is ``<data dir>/agents``); it is also the command's
  ``HOME``, so tools that keep state in ``~`` (Claude Code's ``~/.claude``) keep it per agent.
- Environment: scrubbed. The command sees ``PATH``, ``HOME``, ``LANG``, ``TERM`` and only what the
  caller passes explicitly (credentials, ids); no other variable of the executor leaks in.
- Process group: each command leads a new session (``start_new_session``), so a timeout or a
  cancel signals the whole group: SIGTERM, then SIGKILL after ``kill_grace`` seconds. When the
  command ends by itself, whatever it left running in its group is killed too: a task's leftovers
  do not outlive it. (A process that makes its own session escapes the group; this sandbox is a
  working directory, not an isolation boundary: use a Daytona sandbox for that.)
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from schemas import subjects
from services.executor.sandboxes import Backend, ExecResult, OutputCallback, Sandbox

DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
READ_SIZE = 1 << 16


def scrubbed_env(
    source: Mapping[str, str], home: str, given: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The whole environment a command gets: the basics from ``source`` plus ``given``."""
    env = {
        "PATH": source.get("PATH") or DEFAULT_PATH,
        "HOME": home,
        "LANG": source.get("LANG") or "C.UTF-8",
        "TERM": source.get("TERM") or "dumb",
    }
    env.update(given or {})
    return env


class _Protocol(asyncio.subprocess.SubprocessStreamProtocol):
    """The standard one, plus an event when the process itself exits: ``Process.wait()`` also
    waits for its pipes to close, which a leftover background process can hold open forever."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=READ_SIZE, loop=loop)
        self.exited = asyncio.Event()

    def process_exited(self) -> None:
        super().process_exited()
        self.exited.set()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass  # the group is already gone


class LocalSandbox(Sandbox):
    def __init__(
        self,
        agent: str,
        workdir: Path,
        *,
        source_env: Mapping[str, str] | None = None,
        kill_grace: float = 2.0,
    ) -> None:
        self.agent = agent
        self.id = f"local:{agent}"
        self.workdir = str(workdir)
        self._source_env = dict(os.environ if source_env is None else source_env)
        self.kill_grace = kill_grace

    def environment(self, given: Mapping[str, str] | None = None) -> dict[str, str]:
        return scrubbed_env(self._source_env, self.workdir, given)

    async def exec(
        self,
        argv: Sequence[str],
        *,
        on_output: OutputCallback,
        env: Mapping[str, str] | None = None,
        stdin: bytes | None = None,
        timeout: float | None = None,
        cancel: asyncio.Event | None = None,
        merge_stderr: bool = False,
        cwd: str | None = None,
    ) -> ExecResult:
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        protocol = _Protocol(loop)
        transport, _ = await loop.subprocess_exec(
            lambda: protocol,
            *argv,
            cwd=os.path.join(self.workdir, cwd) if cwd else self.workdir,
            env=self.environment(env),
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT if merge_stderr else asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        process = asyncio.subprocess.Process(transport, protocol, loop)
        pgid = process.pid  # the leader of its own new session and group
        readers = [asyncio.create_task(self._pump(process.stdout, "stdout", on_output))]
        if not merge_stderr:
            readers.append(asyncio.create_task(self._pump(process.stderr, "stderr", on_output)))
        if stdin is not None:
            readers.append(asyncio.create_task(self._feed(process, stdin)))
        exited = asyncio.create_task(protocol.exited.wait())
        cancelled_task = asyncio.create_task(cancel.wait()) if cancel is not None else None
        timed_out = cancelled = False
        try:
            waiting = {exited} | ({cancelled_task} if cancelled_task else set())
            done, _ = await asyncio.wait(
                waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if exited not in done:
                cancelled = cancelled_task is not None and cancelled_task in done
                timed_out = not cancelled
                await self._stop_group(pgid, exited)
        except asyncio.CancelledError:
            _signal_group(pgid, signal.SIGKILL)
            raise
        finally:
            if cancelled_task is not None:
                cancelled_task.cancel()
            _signal_group(pgid, signal.SIGKILL)  # leftovers of a command that ended by itself
            await asyncio.wait(readers, timeout=self.kill_grace)
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            if not exited.done():
                exited.cancel()
            code = process.returncode
            transport.close()  # the pipes, even if an escaped process still holds their far end
        return ExecResult(
            exit_code=None if (timed_out or cancelled) else code,
            timed_out=timed_out,
            cancelled=cancelled,
            duration_s=time.monotonic() - started,
        )

    async def _stop_group(self, pgid: int, exited: asyncio.Task[object]) -> None:
        _signal_group(pgid, signal.SIGTERM)
        done, _ = await asyncio.wait({exited}, timeout=self.kill_grace)
        if not done:
            _signal_group(pgid, signal.SIGKILL)
            await exited

    @staticmethod
    async def _pump(
        stream: asyncio.StreamReader | None, name: str, on_output: OutputCallback
    ) -> None:
        if stream is None:
            return
        while chunk := await stream.read(READ_SIZE):
            result = on_output(name, chunk)
            if result is not None:
                await result

    @staticmethod
    async def _feed(process: asyncio.subprocess.Process, data: bytes) -> None:
        assert process.stdin is not None
        try:
            process.stdin.write(data)
            await process.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the command does not read its input: fine
        finally:
            process.stdin.close()

    async def path_exists(self, path: str) -> bool:
        return (Path(self.workdir) / path).exists()  # a local stat: no need for a thread

    async def destroy(self) -> None:
        await asyncio.to_thread(shutil.rmtree, self.workdir, True)


class LocalBackend(Backend):
    name = "local"

    def __init__(
        self,
        root: Path | str,
        *,
        source_env: Mapping[str, str] | None = None,
        kill_grace: float = 2.0,
    ) -> None:
        self.root = Path(root)
        self._source_env = source_env
        self._kill_grace = kill_grace

    async def create(self, swarm: str, agent: str, sandbox_id: str | None = None) -> LocalSandbox:
        """The directory ``<root>/<agent>``, made if missing (``sandbox_id`` is not used: a local
        sandbox is found by its agent)."""
        subjects.check_token(agent, "agent")
        workdir = self.root / agent
        workdir.mkdir(parents=True, exist_ok=True)
        return LocalSandbox(
            agent, workdir.resolve(), source_env=self._source_env, kill_grace=self._kill_grace
        )
