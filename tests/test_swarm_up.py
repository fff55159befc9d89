"""`swarm up`: the pure decisions, then the real thing (real processes, real NATS, real ports)."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from waiting import until_sync

from cli import envfile
from cli.main import main
from cli.supervisor import BACKOFF_FIRST, BACKOFF_MAX, STABLE_AFTER, describe_exit, next_delay
from cli.up import (
    SERVICES,
    api_url,
    child_environment,
    choose_mcp_port,
    choose_nats_port,
    choose_token,
    ready_children,
)
from schemas.errors import Conflict, Invalid
from services.bus.embedded import free_port

# --- pure decisions ---------------------------------------------------------------------------


def test_a_first_death_restarts_at_once_then_backoff_doubles_up_to_a_ceiling() -> None:
    delays: list[float] = []
    for _ in range(10):
        delays.append(next_delay(delays[-1] if delays else None, uptime=1.0))

    assert delays[:5] == [
        0.0,
        BACKOFF_FIRST,
        BACKOFF_FIRST * 2,
        BACKOFF_FIRST * 4,
        BACKOFF_FIRST * 8,
    ]
    assert max(delays) == BACKOFF_MAX
    assert next_delay(BACKOFF_MAX, uptime=STABLE_AFTER) == 0.0  # a stable run starts over


def test_an_exit_by_signal_is_described_by_its_name() -> None:
    assert describe_exit(-9) == "code -9 (SIGKILL)"
    assert describe_exit(2) == "code 2"


def test_token_comes_from_the_flag_then_the_environment_then_last_time_then_a_new_one() -> None:
    env = {"SWARM_API_TOKEN": "from-env"}
    last = {"SWARM_API_TOKEN": "from-last-time"}

    assert choose_token("from-flag", env, last) == "from-flag"
    assert choose_token(None, env, last) == "from-env"
    assert choose_token(None, {}, last) == "from-last-time"
    fresh = choose_token(None, {}, {})
    assert len(fresh) >= 32 and fresh != choose_token(None, {}, {})
    with pytest.raises(Invalid):
        choose_token(" ", {}, {})


def test_nats_port_is_last_times_while_free_else_any() -> None:
    def taken(*ports: int) -> Callable[[int], bool]:
        return lambda port: port not in ports

    assert choose_nats_port(None, 4333, taken()) == 4333
    assert choose_nats_port(None, 4333, taken(4333)) == 0
    assert choose_nats_port(None, None, taken()) == 0
    assert choose_nats_port(4444, 4333, taken(4333)) == 4444


def test_mcp_port_is_the_asked_one_else_last_times_else_7701_else_any() -> None:
    def taken(*ports: int) -> Callable[[int], bool]:
        return lambda port: port not in ports

    assert choose_mcp_port(None, None, taken()) == 7701
    assert choose_mcp_port(None, 7802, taken()) == 7802
    assert choose_mcp_port(None, 7802, taken(7802)) == 7701
    assert choose_mcp_port(None, 7802, taken(7802, 7701)) == 0
    assert choose_mcp_port(7900, 7802, taken()) == 7900
    with pytest.raises(Conflict, match="--mcp-port"):
        choose_mcp_port(7900, None, taken(7900))


def test_a_taken_nats_port_asked_for_is_an_error_naming_port_and_flag() -> None:
    with pytest.raises(Conflict) as raised:
        choose_nats_port(4444, None, lambda port: False)
    assert "4444" in raised.value.message and "--nats-port" in raised.value.message


def test_api_url_of_a_wildcard_address_is_on_loopback() -> None:
    assert api_url("0.0.0.0", 7700) == "http://127.0.0.1:7700"
    assert api_url("127.0.0.1", 7701) == "http://127.0.0.1:7701"
    assert api_url("::1", 7700) == "http://[::1]:7700"


def test_services_get_where_everything_is_and_no_stray_nats_credentials() -> None:
    base = {"PATH": "/bin", "NATS_USER": "u", "NATS_PASSWORD": "p", "NATS_URL": "nats://old:1"}
    options: dict[str, Any] = dict(
        nats_url="nats://127.0.0.1:4333",
        token="t0ken-value",
        host="127.0.0.1",
        port=7700,
        swarm="dev",
        data_dir=Path("/data"),
    )

    embedded = child_environment(base, embedded=True, **options)
    external = child_environment(base, embedded=False, **options)

    assert embedded["NATS_URL"] == "nats://127.0.0.1:4333"
    assert embedded["SWARM_API_TOKEN"] == "t0ken-value"
    assert embedded["SWARM_GATEWAY_PORT"] == "7700"
    assert embedded["SWARM_API_URL"] == "http://127.0.0.1:7700"
    assert embedded["SWARM_DEFAULT_ID"] == "dev"
    assert embedded["SWARM_DATA_DIR"] == "/data"
    assert "SWARM_MCP_URL" not in embedded
    with_mcp = child_environment(base, embedded=True, mcp_port=7801, **options)
    assert with_mcp["SWARM_MCP_URL"] == "http://127.0.0.1:7801/mcp"
    assert with_mcp["SWARM_MCP_PORT"] == "7801"
    assert embedded["PATH"] == "/bin"
    assert "NATS_USER" not in embedded and "NATS_PASSWORD" not in embedded
    assert external["NATS_USER"] == "u" and external["NATS_PASSWORD"] == "p"


def test_only_our_own_ready_children_count_as_ready() -> None:
    def instance(pid: int, ready: bool = True, host: str = "here") -> dict:
        return {"pid": pid, "ready": ready, "host": host}

    report = {
        "services": {
            "gateway": {"instances": [instance(10)]},
            "scheduler": {"instances": [instance(20, ready=False), instance(99)]},
            "chat": {"instances": [instance(30, host="elsewhere")]},
            "executor": {"instances": [instance(40)]},
        }
    }
    pids = {"gateway": 10, "scheduler": 20, "chat": 30, "executor": None}

    assert ready_children(report, pids, "here") == {"gateway"}


def test_swarm_help_lists_the_environment_variables(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    shown = capsys.readouterr().out
    assert exited.value.code == 0
    for name in ("SWARM_API_URL", "SWARM_API_TOKEN", "SWARM_DEFAULT_ID", "SWARM_ENV_FILE"):
        assert name in shown


def test_a_bad_swarm_id_is_one_clear_line_and_a_failing_exit(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    code = main(["up", "--data-dir", str(tmp_path), "--swarm", "no.dots"])
    err = capsys.readouterr().err
    assert code != 0
    assert err.count("\n") == 1 and "--swarm" in err


# --- the real thing ---------------------------------------------------------------------------

START_WITHIN = 60.0  # generous: two CPUs shared with other test runs


def swarm_command() -> list[str]:
    script = Path(sysconfig.get_path("scripts")) / "swarm"
    return [str(script)] if script.exists() else [sys.executable, "-m", "cli.main"]


def clean_environment() -> dict[str, str]:
    """Ours, without anything that would point `swarm up` elsewhere."""
    drop = ("NATS_URL", "SWARM_API_TOKEN", "SWARM_ENV_FILE", "SWARM_DATA_DIR", "SWARM_DEFAULT_ID")
    return {k: v for k, v in os.environ.items() if k not in drop}


def swarm(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """Run ``swarm <args>`` to the end in a clean environment."""
    return subprocess.run(
        [*swarm_command(), *args],
        capture_output=True,
        text=True,
        env=clean_environment(),
        timeout=timeout,
    )


def wait_until(condition: Callable[[], object], what: str, timeout: float = START_WITHIN):
    return until_sync(condition, timeout, what)


def health(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:  # 503: not all ready, the body says which
        return json.load(error)
    except (OSError, ValueError):
        return None


def parent_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def ready_pids(url: str, parent: int) -> dict[str, int] | None:
    """Each service's pid when NATS and all four services, children of ``parent``, are ready."""
    report = health(url)
    if not report or report.get("nats") != "connected":
        return None
    pids = {}
    for name in SERVICES:
        ours = [
            i["pid"]
            for i in report["services"][name]["instances"]
            if i["ready"] and parent_of(i["pid"]) == parent
        ]
        if not ours:
            return None
        pids[name] = ours[0]
    return pids


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def processes_using(data_dir: Path) -> list[int]:
    """Every live process started for this data dir: services carry it in their environment,
    nats-server in its command line."""
    marker = str(data_dir).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if (b"SWARM_DATA_DIR=" + marker in environ or marker in cmdline) and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def nats_pid(data_dir: Path) -> int:
    (ports_file,) = (data_dir / "ports").glob("nats-server_*.ports")
    return int(ports_file.stem.rsplit("_", 1)[1])


class Up:
    """One `swarm up` process with its output in files (``env``: its environment, default ours
    without anything pointing elsewhere)."""

    def __init__(self, data_dir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.gateway_port = free_port()
        self.url = f"http://127.0.0.1:{self.gateway_port}"
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        self.out_path = data_dir.parent / f"{data_dir.name}-{time.monotonic_ns()}.out"
        self.err_path = self.out_path.with_suffix(".err")
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.process = subprocess.Popen(
                [
                    *swarm_command(),
                    "up",
                    "--data-dir",
                    str(data_dir),
                    "--gateway-port",
                    str(self.gateway_port),
                    *args,
                ],
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=clean_environment() if env is None else env,
                start_new_session=True,
            )

    @property
    def out(self) -> str:
        return self.out_path.read_text()

    @property
    def err(self) -> str:
        return self.err_path.read_text()

    def wait_ready(self) -> dict[str, int]:
        def ready() -> dict[str, int] | None:
            if self.process.poll() is not None:
                raise AssertionError(f"swarm up exited early:\n{self.out}\n{self.err}")
            return ready_pids(self.url, self.process.pid)

        return wait_until(ready, "NATS and all four services ready")

    def stop(self, signum: int = signal.SIGINT, timeout: float = 30.0) -> int:
        self.process.send_signal(signum)
        return self.process.wait(timeout)


@pytest.fixture
def swarm_up(tmp_path: Path) -> Iterator[Callable[..., Up]]:
    started: list[Up] = []

    def start(data_dir: Path | None = None, *args: str) -> Up:
        up = Up(data_dir or tmp_path / "data", *args)
        started.append(up)
        return up

    yield start
    for up in started:  # whatever a failed test left behind
        if up.process.poll() is None:
            up.process.kill()
            up.process.wait()
        for pid in processes_using(up.data_dir):
            os.kill(pid, signal.SIGKILL)


def test_swarm_up_starts_everything_restarts_a_killed_child_and_stops_cleanly_on_ctrl_c(
    swarm_up: Callable[..., Up],
) -> None:
    up = swarm_up()
    pids = up.wait_ready()
    nats = nats_pid(up.data_dir)
    assert alive(nats)
    wait_until(lambda: "ready: NATS, gateway" in up.out, "swarm up to say ready", timeout=10)
    wait_until(lambda: "board: http://127.0.0.1:" in up.out, "swarm up to say where the board is")
    # progress while it started: plain lines on stderr (a file, not a terminal), no ticker
    starting = [line for line in up.err.splitlines() if line.startswith("starting: waiting")]
    assert starting and "\r" not in up.err and "s)" not in "".join(starting)

    # the env file: the original names, private, for a shell to source
    env_path = up.data_dir / "swarm.env"
    values = envfile.read(env_path)
    assert values["SWARM_API_URL"] == up.url
    assert values["SWARM_DEFAULT_ID"] == "default"
    assert values["NATS_URL"].startswith("nats://127.0.0.1:")
    assert len(values["SWARM_API_TOKEN"]) >= 32
    assert stat.S_IMODE(env_path.stat().st_mode) == 0o600
    assert str(env_path) in up.out
    assert values["SWARM_API_TOKEN"] not in up.out + up.err
    # the MCP server is the fifth child: its URL in the env file, its health answering
    mcp_url = values["SWARM_MCP_URL"]
    assert mcp_url.startswith("http://127.0.0.1:") and mcp_url.endswith("/mcp")
    with urllib.request.urlopen(mcp_url.removesuffix("/mcp") + "/health", timeout=5) as answer:
        assert json.load(answer)["ok"] is True

    # a second swarm up on the same data dir refuses, naming the one running
    second = swarm("up", "--data-dir", str(up.data_dir), "--gateway-port", "1")
    assert second.returncode != 0
    assert "already running" in second.stderr and str(up.process.pid) in second.stderr

    # kill -9 a child: a new instance (another pid) becomes ready, and the death is logged
    killed = pids["scheduler"]
    os.kill(killed, signal.SIGKILL)
    restarted = wait_until(
        lambda: (
            (p := ready_pids(up.url, up.process.pid))
            and p["scheduler"] != killed
            and p["scheduler"]
        ),
        "the scheduler to be restarted",
    )
    assert alive(restarted)
    wait_until(
        lambda: f"scheduler (pid {killed}) exited with code -9 (SIGKILL)" in up.err,
        "the death to be logged",
        timeout=5,
    )
    assert f"scheduler (pid {killed}) exited with code -9 (SIGKILL); restarting now" in up.err
    wait_until(lambda: f"scheduler ready again (pid {restarted})" in up.out, "a ready notice", 10)

    # Ctrl-C: exit 0, nothing left behind
    seen = [*pids.values(), restarted, nats]
    assert up.stop(signal.SIGINT) == 0
    assert [pid for pid in seen if alive(pid)] == []
    assert processes_using(up.data_dir) == []
    assert "stopped" in up.out


def test_children_die_with_a_killed_swarm_up_and_the_next_one_reuses_the_nats_port(
    swarm_up: Callable[..., Up], tmp_path: Path
) -> None:
    first = swarm_up(tmp_path / "data")
    first_pids = first.wait_ready()
    first_nats_url = envfile.read(first.data_dir / "swarm.env")["NATS_URL"]
    first_token = envfile.read(first.data_dir / "swarm.env")["SWARM_API_TOKEN"]

    first.process.kill()  # kill -9: no chance to stop anything itself
    first.process.wait()
    # a child being torn down can no longer show its environment before it stops running
    wait_until(
        lambda: (
            not processes_using(first.data_dir)
            and not any(alive(pid) for pid in first_pids.values())
        ),
        "every child to die with it",
        15,
    )

    second = swarm_up(tmp_path / "data")
    second.wait_ready()
    values = envfile.read(second.data_dir / "swarm.env")
    assert values["NATS_URL"] == first_nats_url
    assert values["SWARM_API_TOKEN"] == first_token
    assert second.stop(signal.SIGTERM) == 0
    assert processes_using(second.data_dir) == []


def test_a_taken_gateway_port_is_an_error_naming_the_port_and_the_flag(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        result = swarm("up", "--data-dir", str(tmp_path / "d"), "--gateway-port", str(port))
    assert result.returncode != 0
    assert str(port) in result.stderr and "--gateway-port" in result.stderr
    assert processes_using(tmp_path / "d") == []  # nothing was started


def test_a_taken_nats_port_is_an_error_naming_the_port_and_the_flag(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        result = swarm(
            "up",
            "--data-dir",
            str(tmp_path / "d"),
            "--gateway-port",
            str(free_port()),
            "--nats-port",
            str(port),
        )
    assert result.returncode != 0
    assert str(port) in result.stderr and "--nats-port" in result.stderr
    assert processes_using(tmp_path / "d") == []


def test_with_nats_url_it_uses_that_server_and_starts_none(
    swarm_up: Callable[..., Up], nats_url: str
) -> None:
    up = swarm_up(None, "--nats-url", nats_url)
    wait_until(lambda: "ready: NATS, gateway" in up.out, "swarm up to say ready")

    values = envfile.read(up.data_dir / "swarm.env")
    assert values["NATS_URL"] == nats_url
    assert "SWARM_NATS_PORT" not in values
    # what `swarm up` started itself (a service's own children, such as the executor asking
    # `claude --version` what it can run, carry the data dir too and come and go)
    ours = [pid for pid in processes_using(up.data_dir) if parent_of(pid) == up.process.pid]
    assert len(ours) == len(SERVICES)  # the services, and no nats-server
    assert not (up.data_dir / "ports").exists()
    assert up.stop() == 0
    assert [pid for pid in ours if alive(pid)] == []


def test_an_unreachable_nats_url_is_an_error_naming_it(tmp_path: Path) -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    result = swarm("up", "--data-dir", str(tmp_path / "d"), "--nats-url", url)
    assert result.returncode != 0
    assert url in result.stderr
    assert processes_using(tmp_path / "d") == []


def test_swarm_down_stops_the_swarm_up_of_a_data_dir_and_then_finds_none(
    swarm_up: Callable[..., Up], nats_url: str
) -> None:
    up = swarm_up(None, "--nats-url", nats_url)
    wait_until(lambda: "ready: NATS, gateway" in up.out, "swarm up to say ready")
    ours = processes_using(up.data_dir)

    down = swarm("down", "--data-dir", str(up.data_dir), timeout=60)

    assert down.returncode == 0, down.stderr
    assert f"pid {up.process.pid}" in down.stdout
    assert up.process.wait(10) == 0
    assert [pid for pid in ours if alive(pid)] == []
    again = swarm("down", "--data-dir", str(up.data_dir), timeout=60)
    assert again.returncode != 0 and "no swarm up is running" in again.stderr
