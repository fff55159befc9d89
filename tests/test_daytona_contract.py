"""Contract tests: every answer the fake Daytona gives, on every endpoint the backend calls, is one
the real thing could give.

- (a) against the installed SDK's models (``daytona_api_client_async`` /
  ``daytona_toolbox_api_client_async``): the fake as the server line the SDK is for, driven both
  by the backend itself and by raw requests (so error answers and every endpoint are covered);
- (b) against what an open-source v0.190 server sends (``contracts/daytona_v0190.json``, derived
  from v0.190's DTOs, generated models and toolbox ``swagger.json``; nothing else allowed): the
  fake in open-source mode;
- the committed v0.190 schema against v0.190's sources, where they are at hand.

With ``./dev test-oss`` the installed models are v0.190's own, so (a) checks the open-source mode
against them too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import daytona_api_client_async.models as rest_models
import daytona_toolbox_api_client_async.models as toolbox_models
import jsonschema
import pytest
from daytona_v0190 import from_reference, load, reference_dir
from fake_daytona import FakeDaytona, sdk_server
from git_support import Remote

from services.executor.sandboxes import GitCall
from services.executor.sandboxes.daytona import DaytonaBackend

# operation (the fake's route name, Daytona's operationId) -> (API, the model of a 2xx body)
OPERATIONS: dict[str, tuple[str, str | None]] = {
    "getConfig": ("rest", "DaytonaConfiguration"),
    "createSandbox": ("rest", "Sandbox"),
    "listSandboxes": ("rest", "ListSandboxesResponse"),
    "getSandbox": ("rest", "Sandbox"),
    "startSandbox": ("rest", "Sandbox"),
    "stopSandbox": ("rest", "Sandbox"),
    "recoverSandbox": ("rest", "Sandbox"),
    "deleteSandbox": ("rest", "Sandbox"),
    "getToolboxProxyUrl": ("rest", "ToolboxProxyUrl"),
    "GetWorkDir": ("toolbox", "WorkDirResponse"),
    "GetUserHomeDir": ("toolbox", "UserHomeDirResponse"),
    "CreateFolder": ("toolbox", None),
    "UploadFiles": ("toolbox", None),
    "ExecuteCommand": ("toolbox", "ExecuteResponse"),
    "CreateSession": ("toolbox", None),
    "GetSession": ("toolbox", "Session"),
    "DeleteSession": ("toolbox", None),
    "SessionExecuteCommand": ("toolbox", "SessionExecuteResponse"),
    "GetSessionCommand": ("toolbox", "Command"),
    "GetSessionCommandLogs": ("toolbox", "SessionCommandLogsResponse"),
    "CloneRepository": ("toolbox", None),
    "GetStatus": ("toolbox", "GitStatus"),
}
V0190 = {"DaytonaConfiguration": "Config"}  # the v0.190 definition, where named otherwise


async def exercise(fake: FakeDaytona, remote: Remote) -> None:
    """Every endpoint, with its usual answers and its refusals, by raw requests."""
    key = {"Authorization": f"Bearer {fake.api_key}"}
    async with aiohttp.ClientSession(headers=key) as http:

        async def call(method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
            async with http.request(method, f"{fake.url}{path}", **kwargs) as answer:
                body = await answer.read()
                return answer.status, json.loads(body) if body else None

        api, labels = "/api/sandbox", {"swarm": "s", "agent": "a", "managed-by": "swarm"}
        assert (await call("GET", "/api/config"))[0] == 200
        status, made = await call("POST", api, json={"name": "contract", "labels": labels})
        assert status == 200
        sid = made["id"]
        assert (await call("POST", api, json={"name": "contract"}))[0] == 409
        assert (await call("GET", api, params={"labels": json.dumps(labels)}))[0] == 200
        assert (await call("GET", f"{api}/{sid}"))[0] == 200
        assert (await call("GET", f"{api}/no-such-sandbox"))[0] == 404
        assert (await call("GET", f"{api}/{sid}/toolbox-proxy-url"))[0] == 200
        box = f"/toolbox/{sid}"
        for path in ("/work-dir", "/user-home-dir"):
            assert (await call("GET", box + path))[0] == 200
        assert (await call("POST", f"{box}/files/folder", params={"path": "d", "mode": "755"}))[
            0
        ] == 201
        form = aiohttp.FormData()
        form.add_field("files[0].path", "d/f.txt")
        form.add_field("files[0].file", b"data", filename="f.txt")
        assert (await call("POST", f"{box}/files/bulk-upload", data=form))[0] == 200
        for command in ("echo hi", "exit 3"):
            assert (await call("POST", f"{box}/process/execute", json={"command": command}))[
                0
            ] == 200
        assert (await call("POST", f"{box}/process/execute", json={"command": " "}))[0] == 400
        session = f"{box}/process/session/s1"
        assert (await call("POST", f"{box}/process/session", json={"sessionId": "s1"}))[0] == 201
        assert (await call("POST", f"{box}/process/session", json={"sessionId": "s1"}))[0] == 409
        status, started = await call(
            "POST", f"{session}/exec", json={"command": "echo out; echo err >&2", "runAsync": True}
        )
        assert status == 202
        command_path = f"{session}/command/{started['cmdId']}"
        while (await call("GET", command_path))[1].get("exitCode") is None:
            pass
        assert (await call("GET", f"{command_path}/logs"))[0] == 200
        assert (await call("GET", f"{session}/command/nope"))[0] == 404
        assert (await call("POST", f"{session}/exec", json={"command": "echo sync"}))[0] == 200
        assert (await call("GET", session))[0] == 200
        assert (await call("DELETE", session))[0] == 204
        assert (await call("GET", session))[0] == 404
        clone = {"url": remote.url, "path": "project", "branch": "main"}
        assert (await call("POST", f"{box}/git/clone", json=clone))[0] == 200
        missing = {**clone, "path": "other", "branch": "no-such-branch"}
        assert (await call("POST", f"{box}/git/clone", json=missing))[0] == 404
        assert (await call("GET", f"{box}/git/status", params={"path": "project"}))[0] == 200
        assert (await call("GET", f"{box}/git/status", params={"path": "nowhere"}))[0] == 404
        assert (await call("POST", f"{api}/{sid}/stop"))[0] == 200
        assert (await call("GET", f"{box}/work-dir"))[0] == 400  # stopped: no toolbox
        assert (await call("POST", f"{api}/{sid}/stop"))[0] == 400
        assert (await call("POST", f"{api}/{sid}/start"))[0] == 200
        fake.break_sandbox(sid, recoverable=True)
        assert (await call("POST", f"{api}/{sid}/start"))[0] == 400
        assert (await call("POST", f"{api}/{sid}/recover"))[0] == 200
        assert (await call("POST", f"{api}/{sid}/recover"))[0] == 400
        assert (await call("DELETE", f"{api}/{sid}"))[0] == 200
        assert (await call("GET", f"{box}/work-dir"))[0] == 401  # a deleted sandbox's toolbox
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer wrong"}) as http:
        async with http.get(f"{fake.api_url}/sandbox") as answer:
            assert answer.status == 401
        async with http.get(f"{fake.url}/toolbox/{sid}/work-dir") as answer:
            assert answer.status == 401


async def drive_the_backend(fake: FakeDaytona, remote: Remote) -> None:
    """What the backend itself calls, through the installed SDK."""
    backend = DaytonaBackend.configured(
        {"retries": 2, "retry_backoff": 0.01},
        source_env={"DAYTONA_API_KEY": fake.api_key, "DAYTONA_API_URL": fake.api_url},
    )
    try:
        sandbox = await backend.create("s", "qa-agent")
        await sandbox.ready()
        result = await sandbox.exec(
            ["sh", "-c", "echo out; echo err >&2"], on_output=lambda s, d: None, env={"A": "b"}
        )
        assert result.exit_code == 0
        call = GitCall.within(30)
        await sandbox.git_clone(remote.url, "main", "project", call)
        await sandbox.git_checkout(remote.url, "main", "project", call)
        await sandbox.git_pull("project", call)
        await sandbox.git_status("main", "project", call)
        assert await sandbox.which("sh")
        await sandbox.destroy()
    finally:
        await backend.close()


@pytest.fixture
def remote(tmp_path: Path) -> Remote:
    return Remote(tmp_path / "git")


def sdk_model(api: str, name: str) -> Any:
    return getattr(rest_models if api == "rest" else toolbox_models, name)


def check_with_sdk(responses: list[tuple[str, str, int, Any]]) -> set[str]:
    """Every 2xx body read by the installed SDK's model for its operation (strict: a missing or
    mistyped field fails); error bodies carry what the SDK reads of them. The operations seen."""
    seen = set()
    for api, operation, status, body in responses:
        assert operation in OPERATIONS, f"the fake answers {operation}, which has no contract"
        seen.add(operation)
        expected_api, model = OPERATIONS[operation]
        assert api == expected_api
        if status >= 400:
            assert isinstance(body, dict) and isinstance(body.get("message"), str), body
            assert body.get("statusCode") == status
            continue
        if model is None:
            continue
        parsed = sdk_model(api, model).from_dict(body)
        assert parsed is not None, (operation, body)
    return seen


def check_with_v0190(responses: list[tuple[str, str, int, Any]]) -> None:
    """Every body valid for v0.190's schema: its fields, its types, nothing more."""
    schema = load()
    for api, operation, status, body in responses:
        _, model = OPERATIONS[operation]
        if status >= 400:
            name = "ApiError" if api == "rest" else "ToolboxError"
        elif model is None:
            assert body is None, (operation, body)
            continue
        else:
            name = V0190.get(model, model)
        target = {**schema, "$ref": f"#/definitions/{name}"}
        try:
            jsonschema.validate(body, target)
        except jsonschema.ValidationError as invalid:
            raise AssertionError(f"{operation} {status}: {invalid.message}") from invalid


async def test_every_answer_on_every_endpoint_fits_the_installed_sdks_models(
    remote: Remote,
) -> None:
    fake = await FakeDaytona().start()  # the server line of the installed SDK
    try:
        await drive_the_backend(fake, remote)
        backend_calls = check_with_sdk(fake.responses)
        fake.responses.clear()
        await exercise(fake, remote)
        every = check_with_sdk(fake.responses)
    finally:
        await fake.stop()
    # nothing else was asked but the SDK's event stream (socket.io: without it, the SDK polls)
    assert all("/socket.io" in path for _, path in fake.unrouted), fake.unrouted
    # every operation of the fake was answered (a new endpoint without a contract fails above)
    assert every == set(OPERATIONS)
    assert {"createSandbox", "SessionExecuteCommand", "CloneRepository"} <= backend_calls


async def test_the_open_source_mode_sends_what_a_v0190_server_sends(remote: Remote) -> None:
    fake = await FakeDaytona(server="oss").start()
    try:
        await exercise(fake, remote)
        check_with_v0190(fake.responses)
        if sdk_server() == "oss":  # the installed models are v0.190's own
            await drive_the_backend(fake, remote)
            check_with_sdk(fake.responses)
            check_with_v0190(fake.responses)
    finally:
        await fake.stop()
    bodies = [body for _, op, _, body in fake.responses if op == "getSandbox"]
    assert bodies and all("kvm" not in body and "source" not in body for body in bodies)


async def test_the_hosted_mode_is_not_what_a_v0190_server_sends(remote: Remote) -> None:
    # the check can fail: the hosted answers (kvm, networkBlockAll in list items, `source`) break it
    fake = await FakeDaytona(server="hosted").start()
    try:
        await exercise(fake, remote)
    finally:
        await fake.stop()
    with pytest.raises(AssertionError):
        check_with_v0190(fake.responses)


def test_the_v0190_schema_is_what_v0190s_sources_say() -> None:
    reference = reference_dir()
    if reference is None:
        pytest.skip(
            "the Daytona v0.190 reference sources are not on this machine "
            "(set DAYTONA_V0190_REF to their directory)"
        )
    assert load() == from_reference(reference), (
        "tests/contracts/daytona_v0190.json differs from the reference: "
        "run `python tests/daytona_v0190.py <reference>` and review the change"
    )
