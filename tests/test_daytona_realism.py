"""The Daytona backend against a fake that behaves like Daytona's server (``fake_daytona.py``), one
realism switch at a time: timed state transitions and the 409s they bring, an eventually
consistent paged list, error envelopes without ``source``, git's real status codes and
single-branch clones, a deleted sandbox's toolbox answering 401/400, bad keys turning 401 into
429, log sockets dropped, left unanswered (pings) or stalled, the daemon's line framing, creations
whose answer is lost, calls that never answer, and an SDK that does not fit the server.

The real ``daytona`` SDK (whichever line is installed: ``./dev test`` the hosted one,
``./dev test-oss`` 0.190) talks to the fake; no executor, no NATS.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from fake_daytona import FakeDaytona, sdk_server
from git_support import Remote, git
from waiting import until

from services.executor.git import GitFailed
from services.executor.sandboxes import GitCall, SandboxFailed, SandboxLost, daytona_session
from services.executor.sandboxes import daytona as daytona_module
from services.executor.sandboxes.daytona import DaytonaBackend, DaytonaSandbox
from services.executor.sandboxes.daytona_errors import (
    DaytonaAuthRefused,
    DaytonaSkew,
    DaytonaUnavailable,
)

FAST = {"retries": 3, "retry_backoff": 0.01}
HOSTED_SDK = sdk_server() == "hosted"


@asynccontextmanager
async def daytona(
    settings: dict[str, Any] | None = None, api_key: str | None = None, **switches: Any
) -> AsyncIterator[tuple[FakeDaytona, DaytonaBackend]]:
    """A fake with ``switches`` and a backend on it (``settings``: the [daytona] table)."""
    fake = await FakeDaytona(**switches).start()
    backend = DaytonaBackend.configured(
        {**FAST, **(settings or {})},
        source_env={"DAYTONA_API_KEY": api_key or fake.api_key, "DAYTONA_API_URL": fake.api_url},
    )
    try:
        yield fake, backend
    finally:
        await backend.close()
        await fake.stop()


async def started(backend: DaytonaBackend, agent: str = "qa-agent") -> DaytonaSandbox:
    sandbox = await backend.create("s1", agent)
    await sandbox.ready()
    return sandbox


def states(fake: FakeDaytona, sandbox_id: str) -> list[str]:
    """The states the sandbox went through (consecutive repeats folded)."""
    seen: list[str] = []
    for since, state, _ in fake.sandboxes[sandbox_id].history:
        if since <= time.monotonic() and (not seen or seen[-1] != state):
            seen.append(state)
    return seen


def answers(fake: FakeDaytona, operation: str) -> list[int]:
    return [status for _, op, status, _ in fake.responses if op == operation]


async def raw(fake: FakeDaytona, method: str, path: str) -> tuple[int, Any]:
    """Another client of the same Daytona (the dashboard, a colleague's script)."""
    headers = {"Authorization": f"Bearer {fake.api_key}"}
    async with aiohttp.ClientSession() as http:
        async with http.request(method, f"{fake.api_url}{path}", headers=headers) as answer:
            return answer.status, await answer.json()


def collect() -> tuple[list[tuple[str, bytes]], Callable[[str, bytes], None]]:
    out: list[tuple[str, bytes]] = []
    return out, lambda stream, data: out.append((stream, data))


def text(out: list[tuple[str, bytes]], stream: str = "stdout") -> str:
    return b"".join(data for name, data in out if name == stream).decode()


@pytest.fixture
def always_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """Read the sandbox through the API before every call (no 'seen working moments ago')."""
    monkeypatch.setattr(daytona_module, "FRESH_SECONDS", 0.0)


# --- timed transitions ---------------------------------------------------------------------------


async def test_a_new_sandbox_goes_through_creating_and_starting_before_its_first_command() -> None:
    async with daytona(creating=0.3, starting=0.3, create_waits=False) as (fake, backend):
        sandbox = await started(backend)
        assert states(fake, sandbox.id) == ["creating", "starting", "started"]
        out, on_output = collect()
        result = await sandbox.exec(["sh", "-c", "echo up"], on_output=on_output)
        assert result.exit_code == 0 and text(out) == "up\n"


async def test_the_api_answers_a_create_only_once_the_sandbox_started() -> None:
    async with daytona(creating=0.2, starting=0.2) as (fake, backend):
        await started(backend)
        (body,) = [body for _, op, _, body in fake.responses if op == "createSandbox"]
        assert body["state"] == "started"


@pytest.mark.usefixtures("always_check")
async def test_a_sandbox_being_stopped_is_waited_for_then_started_not_replaced() -> None:
    async with daytona(stopping=0.6) as (fake, backend):
        sandbox = await started(backend)
        first = sandbox.id
        fake.halt(first)  # Daytona's auto-stop: stopping for 0.6 s
        assert fake.sandboxes[first].state == "stopping"
        await sandbox.ready()
        assert sandbox.id == first and len(fake.create_requests) == 1
        assert states(fake, first)[-3:] == ["stopping", "stopped", "started"] or states(
            fake, first
        )[-4:] == ["stopping", "stopped", "starting", "started"]
        assert 409 not in answers(fake, "startSandbox")  # no start while it was stopping


@pytest.mark.usefixtures("always_check")
async def test_an_archiving_sandbox_is_started_at_once_not_after_the_archive() -> None:
    async with daytona(archiving=30.0, restoring=0.2) as (fake, backend):
        sandbox = await started(backend)
        fake.archive(sandbox.id)  # stopped, then archiving for 30 s
        assert fake.sandboxes[sandbox.id].state == "archiving"
        began = time.monotonic()
        await sandbox.ready()
        assert time.monotonic() - began < 30  # did not wait for "archived"
        assert states(fake, sandbox.id)[-3:] == ["archiving", "restoring", "started"]


@pytest.mark.usefixtures("always_check")
async def test_an_archived_sandbox_is_restored() -> None:
    async with daytona(restoring=0.3) as (fake, backend):
        sandbox = await started(backend)
        fake.archive(sandbox.id, settle=True)
        assert fake.sandboxes[sandbox.id].state == "archived"
        await sandbox.ready()
        assert states(fake, sandbox.id)[-3:] == ["archived", "restoring", "started"]


@pytest.mark.usefixtures("always_check")
async def test_a_start_during_restoring_answers_409_so_the_backend_waits_instead() -> None:
    async with daytona(restoring=1.0) as (fake, backend):
        sandbox = await started(backend)
        fake.archive(sandbox.id, settle=True)
        # given: another client starts it: it restores for a second
        assert (await raw(fake, "POST", f"/sandbox/{sandbox.id}/start"))[0] == 200
        # and: a second start now is refused, as the API does
        status, body = await raw(fake, "POST", f"/sandbox/{sandbox.id}/start")
        assert status == 409 and "state change in progress" in body["message"]
        refused = answers(fake, "startSandbox").count(409)
        # when
        await sandbox.ready()
        # then: it waited for the restore, starting nothing itself
        assert fake.sandboxes[sandbox.id].state == "started"
        assert answers(fake, "startSandbox").count(409) == refused


async def test_a_sandbox_from_an_image_waits_through_its_build() -> None:
    async with daytona({"image": "node:22"}, building=0.5) as (fake, backend):
        sandbox = await started(backend)
        assert states(fake, sandbox.id)[:1] == ["pending_build"]
        assert fake.sandboxes[sandbox.id].state == "started"


@pytest.mark.usefixtures("always_check")
async def test_a_recoverable_error_is_recovered_and_an_unrecoverable_one_replaced() -> None:
    async with daytona(starting=0.2) as (fake, backend):
        sandbox = await started(backend)
        first = sandbox.id
        fake.break_sandbox(first, recoverable=True, reason="disk full")
        await sandbox.ready()
        assert sandbox.id == first and answers(fake, "recoverSandbox") == [200]
        fake.break_sandbox(first, recoverable=False, reason="runner gone")
        with pytest.raises(SandboxLost) as lost:
            await sandbox.ready()
        assert "error" in lost.value.reason and sandbox.id != first
        assert len(fake.create_requests) == 2


@pytest.mark.usefixtures("always_check")
async def test_a_pausing_sandbox_is_waited_for_then_resumed() -> None:
    async with daytona(starting=0.1) as (fake, backend):
        sandbox = await started(backend)
        fake.pause(sandbox.id, seconds=0.5)
        await sandbox.ready()
        assert states(fake, sandbox.id)[-3:] == ["paused", "resuming", "started"]
        assert 409 not in answers(fake, "startSandbox")


async def test_a_delete_mid_transition_waits_for_the_transition() -> None:
    async with daytona(stopping=0.6) as (fake, backend):
        sandbox = await started(backend)
        removed = sandbox.id
        fake.halt(removed)
        await sandbox.destroy()
        assert answers(fake, "deleteSandbox")[0] == 409  # the API refused it while stopping
        assert fake.sandboxes[removed].state == "destroyed"


# --- the list: paged, eventually consistent ------------------------------------------------------


async def test_every_page_of_the_list_is_read_and_the_best_sandbox_taken() -> None:
    async with daytona(page_size=1) as (fake, backend):
        # given: three sandboxes labelled for the agent (as earlier executors may have left),
        # the two older ones stopped
        deadline = time.monotonic() + 30
        made = [await backend._make("s1", "qa-agent", deadline) for _ in range(3)]
        for remote in made[:-1]:
            fake.sandboxes[remote.id].plan("stopped", ("stopped", 0))
        lists = answers(fake, "listSandboxes").count(200)
        # when: the agent's sandbox is looked up
        sandbox = await started(backend)
        # then: the three pages were read and the running one taken
        assert sandbox.id == made[-1].id
        assert answers(fake, "listSandboxes").count(200) - lists >= 3  # (and the probe's)


@pytest.mark.usefixtures("always_check")
async def test_a_lagging_list_neither_resurrects_a_deleted_sandbox_nor_hides_a_new_one() -> None:
    async with daytona(list_lag=2.0) as (fake, backend):
        sandbox = await started(backend)
        first = sandbox.id

        async def listed() -> list[str]:
            return [item["id"] for item in (await raw(fake, "GET", "/sandbox"))[1]["items"]]

        assert await listed() == []  # too new to be listed yet
        await until(listed, timeout=10)
        fake.lose(first)  # deleted in the dashboard; the list still shows it started
        assert await listed() == [first]
        with pytest.raises(SandboxLost):
            await sandbox.ready()
        second = sandbox.id
        assert second != first and len(fake.create_requests) == 2
        await sandbox.ready()  # the new one is not listed yet: it is not made a third time
        assert sandbox.id == second and len(fake.create_requests) == 2


# --- creations whose answer is lost --------------------------------------------------------------


async def test_a_create_that_times_out_does_not_make_a_second_sandbox() -> None:
    # given: the API answers a create only once the sandbox started (3 s), the backend waits 1 s
    async with daytona({"timeout": 1.0}, creating=3.0) as (fake, backend):
        sandbox = await backend.create("s1", "qa-agent")
        with pytest.raises(SandboxFailed):
            await sandbox.ready()
        assert len(fake.create_requests) == 1
        # when: the next command comes after the sandbox is up
        await until(lambda: all(s.state == "started" for s in fake.sandboxes.values()), timeout=10)
        await sandbox.ready()
        # then: it is the same sandbox, found by the name it was created under
        assert len(fake.create_requests) == 1 and sandbox.id in fake.sandboxes


async def test_a_create_whose_wait_times_out_is_found_by_its_id_or_name() -> None:
    # given: an image build longer than the backend's patience; the SDK's own wait gives up
    async with daytona({"image": "node:22", "timeout": 1.0}, building=2.5) as (fake, backend):
        sandbox = await backend.create("s1", "qa-agent")
        with pytest.raises(SandboxFailed) as failed:
            await sandbox.ready()
        assert "pending_build" in failed.value.reason or "still" in failed.value.reason
        await until(lambda: all(s.state == "started" for s in fake.sandboxes.values()), 10)
        await sandbox.ready()
        assert len(fake.create_requests) == 1 and len(fake.sandboxes) == 1


async def test_a_create_whose_answer_is_dropped_is_found_not_made_again() -> None:
    async with daytona() as (fake, backend):
        fake.drop_create_answers(1)
        sandbox = await started(backend)
        assert len(fake.sandboxes) == 1 and sandbox.id in fake.sandboxes
        assert len(fake.create_requests) == 1


# --- answers without `source`; git's real status codes --------------------------------------------


@pytest.fixture
def remote(tmp_path: Path) -> Remote:
    remote = Remote(tmp_path / "git")
    remote.push("DEV", "on dev\n", branch="dev")
    return remote


def call(timeout: float = 30.0, token: str | None = None) -> GitCall:
    return GitCall.within(timeout, token)


@pytest.mark.parametrize("sources", [True, False])
async def test_git_refusing_credentials_is_git_failing_not_the_daytona_key(
    remote: Remote, sources: bool
) -> None:
    async with daytona(sources=sources) as (fake, backend):
        fake.require_git_token(remote.url, "the-right-token")
        sandbox = await started(backend)
        with pytest.raises(GitFailed) as failed:
            await sandbox.git_clone(remote.url, "main", "project", call(token="a-wrong-token"))
        assert "authentication required" in failed.value.message
        assert "credentials" in failed.value.message
        assert "DAYTONA_API_KEY" not in failed.value.message
        assert answers(fake, "CloneRepository") == [401]
        await sandbox.git_clone(remote.url, "main", "project", call(token="the-right-token"))


@pytest.mark.parametrize("sources", [True, False])
async def test_a_missing_branch_is_git_failing_not_a_lost_sandbox(
    remote: Remote, sources: bool
) -> None:
    async with daytona(sources=sources) as (fake, backend):
        sandbox = await started(backend)
        first = sandbox.id
        with pytest.raises(GitFailed) as failed:
            await sandbox.git_clone(remote.url, "no-such-branch", "project", call())
        assert "reference not found" in failed.value.message
        assert answers(fake, "CloneRepository") == [404]
        assert sandbox.id == first and len(fake.create_requests) == 1


@pytest.mark.parametrize(
    ("setup", "status", "words"),
    [
        ("forbidden", 403, "authorization failed"),
        ("no-repository", 404, "repository not found"),
        ("occupied", 409, "repository already exists"),
        ("broken", 500, "git clone failed"),
    ],
)
async def test_git_failures_carry_the_daemons_status_codes(
    remote: Remote, tmp_path: Path, setup: str, status: int, words: str
) -> None:
    async with daytona(sources=False) as (fake, backend):
        sandbox = await started(backend)
        url = remote.url
        if setup == "forbidden":
            fake.require_git_token(url, "token", forbidden=True)
        elif setup == "no-repository":
            url = f"file://{tmp_path}/nowhere.git"
        elif setup == "broken":  # the target is under a file: git cannot make it
            (fake.sandboxes[sandbox.id].root / "afile").write_text("x")
        remote_sandbox = await sandbox.ready()
        if setup == "occupied":  # the daemon's own clone into a directory already full
            (fake.sandboxes[sandbox.id].root / "full" / "x").parent.mkdir()
            (fake.sandboxes[sandbox.id].root / "full" / "x").write_text("x")
        login = {"username": "x-access-token", "password": "token"} if setup == "forbidden" else {}
        with pytest.raises(GitFailed) as failed:
            await sandbox._git_api(
                "git clone",
                call(),
                remote_sandbox.git.clone,
                url=url,
                path={"occupied": "full", "broken": "afile/project"}.get(setup, "project"),
                branch="main",
                **login,
            )
        assert answers(fake, "CloneRepository") == [status]
        assert words in failed.value.message


async def test_a_clone_is_single_branch_yet_another_branch_can_be_checked_out(
    remote: Remote,
) -> None:
    async with daytona() as (fake, backend):
        sandbox = await started(backend)
        remote_sandbox = await sandbox.ready()
        root = fake.sandboxes[sandbox.id].root
        # given: the daemon clones a single branch
        await remote_sandbox.git.clone(url=remote.url, path="raw", branch="main")
        assert git("config", "--get-all", "remote.origin.fetch", cwd=root / "raw") == (
            "+refs/heads/main:refs/remotes/origin/main"
        )
        # when: the backend clones main, then the project moves to dev
        await sandbox.git_clone(remote.url, "main", "project", call())
        await sandbox.git_checkout(remote.url, "dev", "project", call())
        status = await sandbox.git_status("dev", "project", call())
        # then
        assert status.branch == "dev" and (root / "project" / "DEV").exists()
        newer = remote.push("MORE", "more\n", branch="dev")
        await sandbox.git_pull("project", call())
        assert (await sandbox.git_status("dev", "project", call())).commit == newer


async def test_status_comes_from_git_not_from_go_git(remote: Remote) -> None:
    async with daytona() as (fake, backend):
        sandbox = await started(backend)
        await sandbox.git_clone(remote.url, "main", "project", call())
        root = fake.sandboxes[sandbox.id].root / "project"
        git("checkout", "--quiet", "--detach", "HEAD", cwd=root)
        (root / "scratch.txt").write_text("untracked\n")
        # the toolbox's status (go-git): a detached HEAD is the branch "HEAD", no `detached`
        status, body = await raw_toolbox(fake, sandbox.id, "/git/status?path=project")
        assert status == 200 and body["currentBranch"] == "HEAD" and "detached" not in body
        # the backend's: git's own
        checked = await sandbox.git_status("main", "project", call())
        assert checked.branch is None and checked.dirty and checked.commit == remote.seed


async def raw_toolbox(fake: FakeDaytona, sandbox_id: str, path: str) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {fake.api_key}"}
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{fake.url}/toolbox/{sandbox_id}{path}", headers=headers) as answer:
            return answer.status, await answer.json()


# --- a deleted sandbox's toolbox; bad keys -------------------------------------------------------


@pytest.mark.parametrize("status", [401, 400])
async def test_a_deleted_sandboxs_toolbox_answers_401_or_400_and_it_is_made_anew(
    status: int,
) -> None:
    async with daytona(toolbox_gone=status, sources=False) as (fake, backend):
        sandbox = await started(backend)
        first = sandbox.id
        fake.lose(first)
        out, on_output = collect()
        with pytest.raises(SandboxLost):  # the call went straight to the toolbox
            await sandbox.exec(["sh", "-c", "echo hi"], on_output=on_output)
        assert status in [s for api, _, s, _ in fake.responses if api == "toolbox"]
        assert sandbox.id != first and len(fake.create_requests) == 2
        result = await sandbox.exec(["sh", "-c", "echo hi"], on_output=on_output)
        assert result.exit_code == 0 and text(out) == "hi\n"


async def test_repeated_bad_keys_turn_401_into_429_and_fail_at_once_naming_the_key() -> None:
    async with daytona(api_key="dtn-wrong-key", failed_auth_limit=3) as (fake, backend):
        sandbox = await backend.create("s1", "qa-agent")
        began = time.monotonic()
        for _ in range(3):
            with pytest.raises(DaytonaAuthRefused) as refused:
                await sandbox.ready()
            assert "DAYTONA_API_KEY" in refused.value.reason
            assert "dtn-wrong-key" not in refused.value.reason
        assert "429" in refused.value.reason and "retry after" in refused.value.reason
        assert time.monotonic() - began < 10  # not retried as a busy Daytona
        rest = [status for api, _, status, _ in fake.responses if api == "rest"]
        assert 401 in rest and 429 in rest and not fake.create_requests


# --- the log stream -------------------------------------------------------------------------------

NUMBERED = "i=1; while [ $i -le 120 ]; do echo line $i; i=$((i+1)); sleep 0.005; done; exit 3"
EXPECTED = "".join(f"line {i}\n" for i in range(1, 121))


@pytest.mark.parametrize("how", ["abort", "1011"])
async def test_a_stream_dropped_mid_command_is_reopened_losing_and_doubling_nothing(
    how: str,
) -> None:
    async with daytona() as (fake, backend):
        sandbox = await started(backend)
        fake.drop_streams(after=600, times=2, how=how)
        out, on_output = collect()
        result = await sandbox.exec(["sh", "-c", NUMBERED], on_output=on_output)
        assert result.exit_code == 3 and text(out) == EXPECTED
        assert fake.streams_opened >= 3  # the reconnect path ran


@pytest.mark.skipif(not HOSTED_SDK, reason="the 0.190 SDK sends no keepalive pings")
async def test_a_socket_the_sdks_keepalive_drops_is_reopened(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import daytona._async.process as sdk_process

    monkeypatch.setattr(sdk_process, "WS_KEEPALIVE_INTERVAL_SECONDS", 0.2)
    script = "echo before; sleep 1.5; echo after"
    async with daytona(answer_pings=False) as (fake, backend):
        sandbox = await started(backend)
        out, on_output = collect()
        result = await sandbox.exec(["sh", "-c", script], on_output=on_output)
        assert result.exit_code == 0 and text(out) == "before\nafter\n"
        assert fake.streams_opened >= 2  # the keepalive dropped the silent socket
    async with daytona(answer_pings=True) as (fake, backend):  # pings answered: one socket
        sandbox = await started(backend)
        out, on_output = collect()
        result = await sandbox.exec(["sh", "-c", script], on_output=on_output)
        assert text(out) == "before\nafter\n" and fake.streams_opened == 1


async def test_a_stalled_stream_is_left_once_the_command_has_ended(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(daytona_session, "QUIET_CHECK", 0.3)
    monkeypatch.setattr(daytona_session, "CLOSE_GRACE", 0.3)
    async with daytona() as (fake, backend):
        sandbox = await started(backend)
        fake.stall_streams(after=300)
        out, on_output = collect()
        result = await asyncio.wait_for(
            sandbox.exec(["sh", "-c", NUMBERED], on_output=on_output), 30
        )
        assert result.exit_code == 3 and text(out) == EXPECTED
        assert answers(fake, "GetSessionCommandLogs").count(200) >= 1  # the rest, in one read


async def test_output_is_framed_per_line_as_the_daemon_frames_it() -> None:
    async with daytona() as (_, backend):
        sandbox = await started(backend)
        out, on_output = collect()
        script = "printf 'a\\000b\\n'; printf 'x'; sleep 0.5; printf 'y\\n'; printf 'no newline'"
        result = await sandbox.exec(["sh", "-c", script], on_output=on_output)
        # NUL dropped; the partial line "x" held back until its newline; a newline added last
        assert result.exit_code == 0 and text(out) == "ab\nxy\nno newline\n"
        assert not any(data == b"x" for _, data in out)
        out.clear()
        await sandbox.exec(["sh", "-c", "echo out; echo err >&2"], on_output=on_output)
        assert (text(out), text(out, "stderr")) == ("out\n", "err\n")


async def test_a_followed_log_closes_about_a_second_after_the_command_exits() -> None:
    async with daytona(close_after_exit=0.5) as (_, backend):
        sandbox = await started(backend)
        remote = await sandbox.ready()
        await remote.process.create_session("s")
        command = await remote.process.execute_session_command(
            "s", _request("echo done"), timeout=None
        )
        closed = asyncio.Event()
        received: list[str] = []

        async def follow() -> None:
            await remote.process.get_session_command_logs_async(
                "s", command.cmd_id, received.append, received.append
            )
            closed.set()

        following = asyncio.create_task(follow())
        await until(lambda: received, timeout=10)
        exited = time.monotonic()
        await asyncio.wait_for(closed.wait(), 10)
        await following
        assert received == ["done\n"] and time.monotonic() - exited >= 0.4


def _request(command: str) -> Any:
    from daytona import SessionExecuteRequest

    return SessionExecuteRequest(command=command, run_async=True)


async def test_commands_need_no_bash_in_the_sandbox() -> None:
    async with daytona(without_bash=True) as (fake, backend):
        sandbox = await started(backend)
        out, on_output = collect()
        result = await sandbox.exec(
            ["sh", "-c", "command -v bash || echo no bash; echo ok"],
            on_output=on_output,
            env={"GREETING": "hi"},
            stdin=b"fed\n",
        )
        assert result.exit_code == 0 and text(out) == "no bash\nok\n"
        assert all(not command.startswith("bash") for command in fake.session_commands)


# --- every call bounded --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "method", "action"),
    [("/api/sandbox", "GET", "looking up"), ("/files/folder", "POST", "preparing the command")],
)
async def test_a_call_that_never_answers_gives_up_at_the_request_timeout(
    path: str, method: str, action: str
) -> None:
    async with daytona({"request_timeout": 0.5, "retries": 1}) as (fake, backend):
        if path.startswith("/files"):
            sandbox = await started(backend)
        else:
            sandbox = await backend.create("s1", "qa-agent")
        fake.hang(path, 60, method=method, times=5)
        began = time.monotonic()
        with pytest.raises(DaytonaUnavailable) as failed:
            if path.startswith("/files"):
                await sandbox.exec(["true"], on_output=lambda s, d: None)
            else:
                await sandbox.ready()
        assert action in failed.value.reason and "2 tries" in failed.value.reason
        assert time.monotonic() - began < 20


# --- an SDK that does not fit the server ----------------------------------------------------------


@pytest.mark.skipif(
    not HOSTED_SDK,
    reason="the 0.190 SDK reads a newer server's answers; the hosted service is told by its "
    "address (test_daytona_decisions)",
)
async def test_the_start_up_probe_names_an_sdk_that_does_not_fit_the_server() -> None:
    async with daytona(server="oss") as (fake, backend):
        sandbox = await backend.create("s1", "qa-agent")
        with pytest.raises(DaytonaSkew) as skew:
            await sandbox.ready()
        reason = skew.value.reason
        assert "kvm" in reason and "networkBlockAll" in reason and "daytona-oss" in reason
        assert await backend.check() == reason
        assert not fake.create_requests  # refused before anything was made
