"""The Daytona backend's pure decisions, given/when/then, without a network or NATS: settings, what
a failure means (by HTTP status and which API answered), what to do in which sandbox state, which
server fits which SDK, the command that runs in the sandbox, and the bookkeeping of a replayed
output stream.
"""

from __future__ import annotations

import argparse
import inspect
import shutil
import subprocess
from pathlib import Path

import pytest
from daytona.common.errors import DaytonaError
from fake_daytona import start_answer
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from schemas.errors import Invalid
from services.executor import config as executor_config
from services.executor.sandboxes import SandboxFailed
from services.executor.sandboxes.daytona import DaytonaSettings, sandbox_labels, sandbox_name
from services.executor.sandboxes.daytona_errors import (
    DaytonaAuthRefused,
    DaytonaSkew,
    classify,
)
from services.executor.sandboxes.daytona_lines import judge, sdk_line, server_line
from services.executor.sandboxes.daytona_session import (
    Delivered,
    env_file,
    runner_script,
    session_command,
)
from services.executor.sandboxes.daytona_states import Seen, next_step, rank

CANARY = "sk-ant-canary-7f3a9c0d1e2b"
HOSTED_SDK = "0.226.1"
OSS_SDK = "0.190.1"
REQUIRED = {  # what the current SDK's models require (in part)
    "Sandbox": frozenset({"id", "kvm", "networkBlockAll"}),
    "SandboxListItem": frozenset({"id", "networkBlockAll"}),
}
REQUIRED_0190 = {"Sandbox": frozenset({"id"}), "SandboxListItem": frozenset({"id"})}


# --- settings ------------------------------------------------------------------------------------


def test_settings_come_from_the_environment_and_the_daytona_table() -> None:
    env = {
        "DAYTONA_API_KEY": "k-123",
        "DAYTONA_API_URL": "https://d.example/api/",
        "DAYTONA_TARGET": "eu",
    }
    table = {
        "image": "node:22",
        "cpu": 2,
        "memory": 4,
        "auto_stop_interval": 0,
        "shutdown": "stop",
        "request_timeout": 20,
    }
    settings = DaytonaSettings.read(table, env)
    assert (settings.api_url, settings.target, settings.image) == (
        "https://d.example/api",
        "eu",
        "node:22",
    )
    assert (settings.cpu, settings.memory, settings.disk) == (2, 4, None)
    assert (settings.auto_stop_interval, settings.shutdown) == (0, "stop")
    assert (settings.request_timeout, settings.timeout) == (20.0, 300.0)
    assert "k-123" not in repr(settings)


@pytest.mark.parametrize(
    ("table", "env", "field"),
    [
        ({}, {}, "DAYTONA_API_KEY"),
        ({"api_key": "x"}, {"DAYTONA_API_KEY": "k"}, "daytona.api_key"),
        ({"snapshot": "s", "image": "i"}, {"DAYTONA_API_KEY": "k"}, "daytona.image"),
        ({"snapshot": "s", "cpu": 2}, {"DAYTONA_API_KEY": "k"}, "daytona.cpu"),
        ({"shutdown": "explode"}, {"DAYTONA_API_KEY": "k"}, "daytona.shutdown"),
        ({"auto_stop_interval": -1}, {"DAYTONA_API_KEY": "k"}, "daytona.auto_stop_interval"),
        ({"request_timeout": 0}, {"DAYTONA_API_KEY": "k"}, "daytona.request_timeout"),
        ({"snapshop": "s"}, {"DAYTONA_API_KEY": "k"}, "daytona.snapshop"),
    ],
)
def test_bad_daytona_settings_are_refused_naming_the_field(table, env, field) -> None:
    with pytest.raises(Invalid) as caught:
        DaytonaSettings.read(table, env)
    assert caught.value.field == field


def test_the_backend_is_chosen_by_flag_env_or_swarm_toml(tmp_path: Path) -> None:
    toml = tmp_path / "swarm.toml"
    toml.write_text('[executor]\nbackend = "daytona"\n\n[daytona]\nsnapshot = "swarm-agent"\n')
    from_toml = executor_config.load(argparse.Namespace(config=str(toml)), {})
    assert from_toml.backend == "daytona" and from_toml.daytona == {"snapshot": "swarm-agent"}
    from_env = executor_config.load(
        argparse.Namespace(config=str(toml)), {"SWARM_SANDBOX_BACKEND": "local"}
    )
    assert from_env.backend == "local"
    flagged = argparse.Namespace(config=None, backend="daytona")
    assert executor_config.load(flagged, {}).backend == "daytona"


# --- what a failure means: by status and the API that answered, never by `source` ---------------


def answered(
    status: int, message: str = "refused", source: str | None = None, **headers: str
) -> DaytonaError:
    """An error as the installed SDK raises it for an HTTP answer (with the envelope's
    ``source`` when this SDK knows the field: classification must not read it)."""
    given_args: dict = {"status_code": status, "headers": headers}
    if "source" in inspect.signature(DaytonaError.__init__).parameters:
        given_args["source"] = source
    return DaytonaError(message, **given_args)


@pytest.mark.parametrize(
    ("status", "api", "kind"),
    [
        (401, "rest", "auth"),
        (403, "rest", "auth"),
        (404, "rest", "gone"),
        (409, "rest", "conflict"),
        (400, "rest", "other"),
        (500, "rest", "other"),
        (429, "rest", "busy"),
        (502, "toolbox", "busy"),
        (503, "rest", "busy"),
        (504, "toolbox", "busy"),
        # the toolbox: the proxy or the daemon -- the REST API is asked which
        (401, "toolbox", "refused"),
        (403, "toolbox", "refused"),
        (400, "toolbox", "refused"),
        (404, "toolbox", "refused"),
        # the daemon's own answers
        (408, "toolbox", "daemon"),
        (409, "toolbox", "daemon"),
        (500, "toolbox", "daemon"),
    ],
)
def test_a_failure_is_classified_by_status_and_the_api_that_answered(status, api, kind) -> None:
    assert classify(answered(status), api).kind == kind


def test_the_envelopes_source_is_not_read() -> None:
    # given: a 401 the envelope says came from the daemon, but the REST API answered it
    error = answered(401, "Invalid credentials", source="DAYTONA_DAEMON")
    # then: it is the API key, whatever the envelope says
    assert classify(error, "rest").kind == "auth"
    # and: a git 401 from the toolbox is not read as the API key, with or without a source
    assert classify(answered(401, "authentication required", "DAYTONA_DAEMON"), "toolbox").kind == (
        "refused"
    )
    assert classify(answered(401, "authentication required"), "toolbox").kind == "refused"


def test_the_failed_auth_throttle_is_a_refused_key_not_a_busy_daytona() -> None:
    # given: the API blocks the address after repeated bad keys (v0.190's failed-auth tracker)
    throttled = answered(
        429,
        "ThrottlerException: Too Many Requests",
        **{"Retry-After": "60", "X-RateLimit-Remaining-failed-auth": "0"},
    )
    # when
    failure = classify(throttled, "rest")
    reason = failure.error("creating a sandbox", api_url="https://d/api")
    # then: fails at once, naming the key and when to try again
    assert failure.kind == "auth" and failure.retry_after == 60.0
    assert isinstance(reason, DaytonaAuthRefused)
    assert "DAYTONA_API_KEY" in reason.reason and "retry after 60 s" in reason.reason
    # while an ordinary 429 is retried, honouring Retry-After
    ordinary = classify(answered(429, "slow down", **{"Retry-After": "2"}), "rest")
    assert (ordinary.kind, ordinary.retry_after) == ("busy", 2.0)


def test_no_answer_at_all_is_busy() -> None:
    assert classify(ConnectionRefusedError("refused"), "rest").kind == "busy"
    assert classify(TimeoutError(), "toolbox").kind == "busy"


def test_an_auth_failure_names_daytona_and_the_key_without_the_key() -> None:
    failure = classify(answered(401, "bad key k-secret-123456"), "rest")
    reason = failure.error(
        "creating a sandbox", api_url="https://x/api", secrets=("k-secret-123456",)
    )
    assert isinstance(reason, SandboxFailed)
    assert "Daytona auth failed" in reason.reason and "DAYTONA_API_KEY" in reason.reason
    assert "k-secret-123456" not in reason.reason


class Strict(BaseModel):
    id: str
    kvm: bool


def test_a_response_the_sdk_cannot_read_is_version_skew_naming_the_field() -> None:
    # given: what the SDK raises when a v0.190 server leaves out a field its models require
    try:
        Strict.model_validate({"id": "s1"})
    except ValidationError as invalid:
        try:
            raise DaytonaError("Failed to get sandbox: 1 validation error") from invalid
        except DaytonaError as error:
            skew = error
    # when
    failure = classify(skew, "rest")
    reason = failure.error("reading sandbox s1", api_url="http://d/api")
    # then
    assert failure.kind == "skew" and failure.missing == ("Strict.kvm",)
    assert isinstance(reason, DaytonaSkew)
    assert "Strict.kvm" in reason.reason and "daytona-oss" in reason.reason


# --- sandbox states: the next step, and which sandbox to take -----------------------------------


@pytest.mark.parametrize(
    ("state", "desired", "recoverable", "step"),
    [
        ("started", "started", False, "ready"),
        ("started", None, False, "ready"),
        ("started", "stopped", False, "wait"),  # a stop is pending: a start now is a 409
        ("stopped", "stopped", False, "start"),
        ("stopped", "archived", False, "start"),  # on its way to archived: start wins
        ("archiving", "archived", False, "start"),  # start from archiving: no wait for archived
        ("archived", "archived", False, "start"),
        ("paused", "paused", False, "start"),
        ("stopped", "started", False, "wait"),  # a start is pending
        ("restoring", "started", False, "wait"),  # a start now is a 409
        ("stopping", "stopped", False, "wait"),
        ("pausing", "paused", False, "wait"),
        ("creating", "started", False, "wait"),
        ("pending_build", "started", False, "wait"),
        ("building_snapshot", "started", False, "wait"),
        ("starting", "started", False, "wait"),
        ("unknown", None, False, "wait"),
        ("error", "started", True, "recover"),
        ("error", "started", False, "unusable"),
        ("build_failed", "started", True, "unusable"),
        ("started", "destroyed", False, "unusable"),  # on its way out
        ("destroying", "destroyed", False, "unusable"),
        ("destroyed", "destroyed", False, "unusable"),
    ],
)
def test_the_next_step_follows_daytonas_state_machine(state, desired, recoverable, step) -> None:
    assert next_step(Seen(state, desired, recoverable)) == step


def test_sandboxes_are_ranked_by_state_and_desired_state() -> None:
    # given: what a list may show for one agent
    running = Seen("started", "started")
    coming = Seen("starting", "started")
    being_stopped = Seen("started", "stopped")
    resting = Seen("stopped", "stopped")
    broken = Seen("error", "started", recoverable=True)
    leaving = Seen("started", "destroyed")
    # then: the running one first; a started one being stopped is no better than a stopped one;
    # one being destroyed is not taken at all
    assert rank(running) < rank(coming) < rank(being_stopped) == rank(resting) < rank(broken)  # type: ignore[operator]
    assert rank(leaving) is None


STATES = st.sampled_from(
    [
        "creating", "restoring", "destroyed", "destroying", "started", "stopped", "starting",
        "stopping", "error", "build_failed", "pending_build", "building_snapshot", "unknown",
        "pulling_snapshot", "archived", "archiving", "resizing", "snapshotting", "forking",
        "pausing", "paused", "resuming",
    ]
)  # fmt: skip
DESIRED = st.sampled_from(["started", "stopped", "archived", "destroyed", "paused"])


@given(STATES, DESIRED, st.booleans())
def test_a_start_is_tried_only_when_the_api_accepts_it(
    state: str, desired: str | None, recoverable: bool
) -> None:
    # given: any state the API may show; when: the backend decides
    step = next_step(Seen(state, desired, recoverable))
    answer, _ = start_answer(state, desired)  # v0.190's start rules (the fake's)
    # then: it starts only what the API starts, and never waits on what it could start (the
    # API always says where a sandbox is going; without it, a start is tried and a 409 waited on)
    if step == "start":
        assert answer == 200
    if step == "wait" and desired not in ("destroyed",):
        assert answer in (204, 400, 409)
    assert (rank(Seen(state, desired, recoverable)) is None) == (step == "unusable")


# --- which server fits which SDK ----------------------------------------------------------------


def test_the_sdk_and_server_lines_are_told_by_version() -> None:
    assert (sdk_line(OSS_SDK), sdk_line(HOSTED_SDK), sdk_line("0.150.0")) == (
        "open-source",
        "hosted",
        "unknown",
    )
    assert server_line("v0.190.0", "https://daytona.example.com/api") == "open-source"
    assert server_line("0.0.0-dev", "https://app.daytona.io/api") == "hosted"  # by its address
    # a version alone says nothing of another line (the hosted service's numbering is its own)
    assert server_line("0.231.0", "http://10.0.0.5:3000/api") == "unknown"
    assert server_line("0.0.0-dev", "http://localhost:3000/api") == "unknown"


def test_the_current_sdk_against_an_open_source_server_is_named_with_the_fix() -> None:
    verdict = judge(
        api_url="http://d:3000/api",
        sdk_version=HOSTED_SDK,
        server_version="0.190.0",
        required=REQUIRED,
    )
    assert not verdict.fits
    assert "Sandbox.kvm" in verdict.message and "SandboxListItem.networkBlockAll" in verdict.message
    assert "daytona-oss" in verdict.message


def test_what_the_server_sends_decides_even_without_a_version() -> None:
    # given: a server whose version says nothing, sending list items without networkBlockAll
    verdict = judge(
        api_url="http://d/api",
        sdk_version=HOSTED_SDK,
        server_version="0.0.0-dev",
        required=REQUIRED,
        samples={"SandboxListItem": [{"id": "a"}]},
    )
    assert not verdict.fits and "SandboxListItem.networkBlockAll" in verdict.message
    # and: the same items with the field fit
    fitting = judge(
        api_url="http://d/api",
        sdk_version=HOSTED_SDK,
        server_version="0.0.0-dev",
        required=REQUIRED,
        samples={"SandboxListItem": [{"id": "a", "networkBlockAll": False}]},
    )
    assert fitting.fits


def test_the_open_source_sdk_against_the_hosted_service_is_refused() -> None:
    verdict = judge(
        api_url="https://app.daytona.io/api",
        sdk_version=OSS_SDK,
        server_version="0.231.0",
        required=REQUIRED_0190,
    )
    assert not verdict.fits and "without the daytona-oss extra" in verdict.message


@pytest.mark.parametrize(
    ("sdk", "url", "server", "required"),
    [
        (HOSTED_SDK, "https://app.daytona.io/api", "0.231.0", REQUIRED),
        (OSS_SDK, "http://daytona.internal:3000/api", "0.190.0", REQUIRED_0190),
    ],
)
def test_the_supported_pairs_fit(sdk: str, url: str, server: str, required) -> None:
    assert judge(api_url=url, sdk_version=sdk, server_version=server, required=required).fits


def test_a_server_that_says_nothing_is_used_as_it_is() -> None:
    verdict = judge(api_url="u", sdk_version=HOSTED_SDK, server_version=None, required=REQUIRED)
    assert verdict.fits and "cannot be told" in verdict.message


# --- what runs in the sandbox --------------------------------------------------------------------


def test_the_command_line_and_script_hold_no_secret_only_the_env_file_does() -> None:
    script = runner_script(
        ["claude", "--print", "--", "it's a prompt"],
        "/home/d/project",
        "/home/d/.swarm/runs/1",
        with_env=True,
        with_stdin=False,
    )
    command = session_command("/home/d/.swarm/runs/1", merge_stderr=True)
    env = env_file({"ANTHROPIC_API_KEY": CANARY, "SWARM_TASK_ID": "t-1"})
    assert CANARY not in script and CANARY not in command
    assert f"export ANTHROPIC_API_KEY={CANARY}" in env
    assert (
        script.index('. "$run/env"') < script.index('rm -f -- "$run/env"') < script.index("claude")
    )
    assert command.endswith("2>&1")
    with pytest.raises(Invalid):
        env_file({"NOT A NAME": "x"})


def test_the_runner_needs_no_bash(tmp_path: Path) -> None:
    # given: a runner script and a PATH with a POSIX sh (dash here) and no bash
    dash = shutil.which("dash")
    if dash is None:
        pytest.skip("no dash on this machine to stand for a bash-less sh")
    tools = tmp_path / "tools"
    tools.mkdir()
    for tool, found in (("sh", dash), ("cat", shutil.which("cat")), ("rm", shutil.which("rm"))):
        assert found is not None
        (tools / tool).symlink_to(found)
    run = tmp_path / "run"
    run.mkdir()
    (run / "env").write_text(env_file({"GREETING": "it's here"}))
    (run / "stdin").write_text("fed\n")
    (run / "run.sh").write_text(
        runner_script(
            ["sh", "-c", 'echo "$GREETING"; cat; pwd'],
            str(tmp_path),
            str(run),
            with_env=True,
            with_stdin=True,
        )
    )
    # when: the session's command line runs it
    command = session_command(str(run), merge_stderr=True)
    assert not command.startswith("bash")
    done = subprocess.run(
        [dash, "-c", command], env={"PATH": str(tools)}, capture_output=True, text=True
    )
    # then
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"it's here\nfed\n{tmp_path}\n"
    assert not (run / "env").exists()  # read, then deleted


def test_labels_say_swarm_and_agent_only_and_names_are_fresh() -> None:
    assert sandbox_labels("s1", "qa-agent") == {
        "swarm": "s1",
        "agent": "qa-agent",
        "managed-by": "swarm",
    }
    first, second = sandbox_name("qa-agent"), sandbox_name("qa-agent")
    assert first != second and first.startswith("swarm-qa-agent-")


# --- a replayed output stream --------------------------------------------------------------------


def test_a_replayed_stream_skips_what_was_delivered() -> None:
    # given: two pieces delivered from the first stream
    delivered = Delivered()
    first = delivered.replay()
    assert delivered.take("stdout", "line 1\n", first) == "line 1\n"
    assert delivered.take("stderr", "oops\n", first) == "oops\n"
    # when: the stream is opened again and replays from the start, in other pieces
    again = delivered.replay()
    pieces = [
        delivered.take("stdout", "li", again),
        delivered.take("stdout", "ne 1\nline 2\n", again),
        delivered.take("stderr", "oops\nmore\n", again),
    ]
    # then: only what is new goes on; and the rest of a whole log starts after it
    assert pieces == ["", "line 2\n", "more\n"]
    # and: a partial line waits for its newline; a stream cut short drops what it held back
    assert delivered.take("stdout", "line 3\npart", again) == "line 3\n"
    assert delivered.take("stdout", "ial\n", again) == "partial\n"
    assert delivered.take("stdout", "line 5\n\x01", again) == "line 5\n"
    assert delivered.flush("stdout") == ""  # a partial stream marker is no output
    whole = "line 1\nline 2\nline 3\npartial\nline 5\nline 6\n"
    assert delivered.rest("stdout", whole) == "line 6\n"
    assert delivered.rest("stderr", "oops\nmore\n") == ""
