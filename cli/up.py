"""`swarm up`: all of Swarm on this machine.

An embedded nats-server (JetStream, its store in the data directory) unless --nats-url names an
existing NATS; then gateway, scheduler, chat and executor as child processes, restarted when they
die; <data dir>/swarm.env for the CLI and the plugin to source. Ctrl-C (SIGINT) or SIGTERM stops
the services in order, then NATS.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from cli import envfile
from cli.progress import Progress
from cli.supervisor import Child, Supervisor, die_with_parent
from schemas.errors import Conflict, Invalid
from schemas.subjects import check_token
from services.bus.connection import NatsOptions, connect, redact_url
from services.bus.embedded import EmbeddedNats, free_port, port_is_free

SERVICES = ("gateway", "scheduler", "chat", "executor", "mcp")  # start order, and stop order
DEFAULT_GATEWAY_PORT = 7700
DEFAULT_MCP_PORT = 7701
LOCK_FILE = "swarm.lock"
NATS_AUTH_ENV = ("NATS_USER", "NATS_PASSWORD", "NATS_TOKEN", "NATS_CREDS")
NATS_TLS_ENV = ("NATS_CA", "NATS_CERT", "NATS_KEY")
HEALTH_EVERY = 0.2  # seconds between /health polls until ready, then HEALTH_EVERY * 5
EPILOG = """\
environment:
  SWARM_API_TOKEN   the API token when --token is not given
  NATS_USER, NATS_PASSWORD, NATS_TOKEN, NATS_CREDS, NATS_CA, NATS_CERT, NATS_KEY
                    passed to the services with --nats-url
  SWARM_LOG_LEVEL   the services' log level (their logs: <data dir>/logs/)"""
SLOW_START_HINT = 30.0  # seconds without readiness before saying what is still missing


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "up",
        help="start NATS and every service on this machine (Ctrl-C stops them)",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(envfile.DEFAULT_DATA_DIR),
        help="NATS store, env file, logs (default ./.swarm)",
    )
    parser.add_argument(
        "--nats-port",
        type=int,
        help="port of the embedded NATS (default: the one used last time while free, else any)",
    )
    parser.add_argument(
        "--nats-url", help="use this NATS (cluster) instead of starting one, comma separated"
    )
    parser.add_argument("--gateway-host", default="127.0.0.1", help="default 127.0.0.1")
    parser.add_argument(
        "--gateway-port", type=int, default=DEFAULT_GATEWAY_PORT, help="default 7700"
    )
    parser.add_argument(
        "--mcp-port",
        type=int,
        help=f"port of the MCP server (default: last time's while free, else {DEFAULT_MCP_PORT} "
        "while free, else any); its URL goes into the env file as SWARM_MCP_URL",
    )
    parser.add_argument(
        "--swarm", default=envfile.DEFAULT_SWARM, help="default swarm id (default 'default')"
    )
    parser.add_argument(
        "--token",
        help="API token (default: $SWARM_API_TOKEN, else the one in swarm.env, else a new one); "
        "prefer the variable: arguments show in ps",
    )
    parser.set_defaults(func=run)


# --- decisions (pure) -------------------------------------------------------------------------


def check_port(value: int | None, flag: str) -> int | None:
    if value is not None and not 1 <= value <= 65535:
        raise Invalid(flag, f"{flag} {value} is not a port (1-65535)")
    return value


def choose_token(flag: str | None, environ: Mapping[str, str], previous: Mapping[str, str]) -> str:
    """``--token``, else ``$SWARM_API_TOKEN``, else last time's, else a new random one."""
    if flag is not None and not flag.strip():
        raise Invalid("--token", "--token must not be empty")
    return (
        flag
        or environ.get("SWARM_API_TOKEN")
        or previous.get("SWARM_API_TOKEN")
        or secrets.token_urlsafe(32)
    )


def remembered_port(previous: Mapping[str, str], name: str = "SWARM_NATS_PORT") -> int | None:
    try:
        port = int(previous.get(name, ""))
    except ValueError:
        return None
    return port if 1 <= port <= 65535 else None


def choose_nats_port(
    requested: int | None, remembered: int | None, is_free: Callable[[int], bool]
) -> int:
    """``--nats-port`` (which must be free), else last time's port while free, else 0 (any)."""
    if requested is not None:
        if not is_free(requested):
            raise Conflict(
                f"NATS port {requested} on 127.0.0.1 is taken by another process; "
                "choose another with --nats-port (or leave it out), or use that server "
                "with --nats-url"
            )
        return requested
    if remembered is not None and is_free(remembered):
        return remembered
    return 0


def choose_mcp_port(
    requested: int | None, remembered: int | None, is_free: Callable[[int], bool]
) -> int:
    """``--mcp-port`` (which must be free), else last time's while free, else 7701 while free,
    else 0 (any free port)."""
    if requested is not None:
        if not is_free(requested):
            raise Conflict(
                f"MCP port {requested} is taken by another process; choose another with "
                "--mcp-port (or leave it out)"
            )
        return requested
    for candidate in (remembered, DEFAULT_MCP_PORT):
        if candidate is not None and is_free(candidate):
            return candidate
    return 0


def api_url(host: str, port: int) -> str:
    """Where clients reach the gateway: a wildcard listen address is reached on loopback."""
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def env_file_values(
    *,
    url: str,
    token: str,
    swarm: str,
    nats_url: str,
    data_dir: Path,
    nats_port: int | None,
    monitor_url: str | None = None,
    mcp_url: str | None = None,
) -> dict[str, str]:
    values = {
        "SWARM_API_URL": url,
        "SWARM_API_TOKEN": token,
        "SWARM_DEFAULT_ID": swarm,
        "NATS_URL": nats_url,
        "SWARM_DATA_DIR": str(data_dir),
    }
    if mcp_url:
        values["SWARM_MCP_URL"] = mcp_url
    if nats_port is not None:
        values["SWARM_NATS_PORT"] = str(nats_port)
    if monitor_url:
        values["NATS_MONITOR_URL"] = monitor_url
    return values


def child_environment(
    base: Mapping[str, str],
    *,
    nats_url: str,
    token: str,
    host: str,
    port: int,
    swarm: str,
    data_dir: Path,
    embedded: bool,
    mcp_port: int | None = None,
) -> dict[str, str]:
    """The services' environment: ours, plus where everything is. The embedded server has no
    auth or TLS, so inherited NATS credentials would only get in the way."""
    dropped = (*NATS_AUTH_ENV, *NATS_TLS_ENV) if embedded else ()
    env = {k: v for k, v in base.items() if k not in dropped}
    env.update(
        NATS_URL=nats_url,
        SWARM_API_TOKEN=token,
        SWARM_GATEWAY_HOST=host,
        SWARM_GATEWAY_PORT=str(port),
        SWARM_API_URL=api_url(host, port),  # executors hand it (and agent tokens) to agents
        SWARM_DEFAULT_ID=swarm,
        SWARM_DATA_DIR=str(data_dir),
    )
    if mcp_port is not None:  # the MCP server listens beside the gateway; agents get its URL
        env.update(
            SWARM_MCP_HOST=host,
            SWARM_MCP_PORT=str(mcp_port),
            SWARM_MCP_URL=mcp_url(host, mcp_port),
        )
    return env


def ready_children(
    report: Mapping[str, Any], pids: Mapping[str, int | None], host: str
) -> set[str]:
    """Which of our children ``/health`` reports ready: an instance with the child's pid, on
    this host (other machines' services may share an external NATS)."""
    services = report.get("services") or {}
    ready = set()
    for name, pid in pids.items():
        if pid is None:
            continue
        for instance in (services.get(name) or {}).get("instances") or []:
            if (
                instance.get("pid") == pid
                and instance.get("host") == host
                and instance.get("ready")
            ):
                ready.add(name)
    return ready


def mcp_url(host: str, port: int) -> str:
    """Where MCP clients reach the MCP server (streamable HTTP at ``/mcp``)."""
    return f"{api_url(host, port)}/mcp"


# --- the data directory -----------------------------------------------------------------------


@contextlib.contextmanager
def locked(data_dir: Path) -> Iterator[None]:
    """Hold ``<data dir>/swarm.lock`` (flock) while running: one ``swarm up`` per data dir."""
    path = data_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            raise Conflict(
                f"already running on {data_dir} (pid {holder}); "
                "stop it first (Ctrl-C there), or use another --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # releases the lock


def leftover_servers(ports_dir: Path) -> list[int]:
    """Pids of nats-servers still running on this data dir (from a supervisor that could not
    stop them); ports files of dead ones are removed."""
    alive = []
    for ports_file in ports_dir.glob("nats-server_*.ports"):
        try:
            pid = int(ports_file.stem.rsplit("_", 1)[1])
        except ValueError:
            continue
        if _is_running_nats_server(pid):
            alive.append(pid)
        else:
            ports_file.unlink(missing_ok=True)
    return alive


def _is_running_nats_server(pid: int) -> bool:
    """Alive (not a zombie) and, where /proc tells, a nats-server (pids get reused)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path(f"/proc/{pid}")
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        name = (proc / "comm").read_text().strip()
    except (OSError, IndexError):
        return True  # no /proc here: trust kill(0)
    return state not in ("Z", "X") and name == "nats-server"


def address_is_free(host: str, port: int) -> bool:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as error:
        raise Invalid("--gateway-host", f"--gateway-host {host!r}: {error.strerror}") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError:
            return False
    return True


# --- output -----------------------------------------------------------------------------------


def say(line: str) -> None:
    print(line, flush=True)


def warn(line: str) -> None:
    print(f"{datetime.now().strftime('%H:%M:%S')} {line}", file=sys.stderr, flush=True)


# --- running ----------------------------------------------------------------------------------


class Stop(Exception):
    """SIGINT or SIGTERM before the supervisor took over: a clean stop."""


def _raise_stop(signum: int, frame: object) -> None:
    raise Stop(signal.Signals(signum).name)


def run(args: argparse.Namespace) -> int:
    check_port(args.nats_port, "--nats-port")
    check_port(args.gateway_port, "--gateway-port")
    check_port(args.mcp_port, "--mcp-port")
    check_token(args.swarm, "--swarm")
    if args.nats_url and args.nats_port is not None:
        raise Invalid("--nats-port", "--nats-port and --nats-url exclude each other")
    data_dir = args.data_dir.expanduser().resolve()
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise Invalid(
            "--data-dir", f"cannot create data dir {data_dir}: {error.strerror}"
        ) from None
    previous_handlers = {
        sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        with locked(data_dir):
            return _up(args, data_dir)
    except Stop:
        say("stopped")
        return 0
    finally:
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)


def _up(args: argparse.Namespace, data_dir: Path) -> int:
    env_path = data_dir / envfile.FILE_NAME
    previous = envfile.read(env_path)
    token = choose_token(args.token, os.environ, previous)
    if not address_is_free(args.gateway_host, args.gateway_port):
        raise Conflict(
            f"gateway port {args.gateway_port} on {args.gateway_host} is taken by another "
            "process; choose another with --gateway-port"
        )
    mcp_port = (
        choose_mcp_port(
            args.mcp_port,
            remembered_port(previous, "SWARM_MCP_PORT"),
            lambda port: port != args.gateway_port and address_is_free(args.gateway_host, port),
        )
        or free_port()
    )
    nats = None if args.nats_url else _embedded_nats(args.nats_port, data_dir, previous)
    try:
        if nats is None:
            nats_url = args.nats_url
            asyncio.run(_check_reachable(nats_url))
            nats_line = f"{redact_url(nats_url)} (external)"
        else:
            nats.start()
            assert nats.process is not None  # started
            nats_url = nats.url
            nats_line = f"{nats_url} (embedded, pid {nats.process.pid}, store {nats.store_dir})"
        url = api_url(args.gateway_host, args.gateway_port)
        now = datetime.now(UTC).isoformat(timespec="seconds")
        values = env_file_values(
            url=url,
            token=token,
            swarm=args.swarm,
            nats_url=nats_url,
            data_dir=data_dir,
            nats_port=nats.port if nats else None,
            monitor_url=nats.monitor_url if nats else None,
            mcp_url=mcp_url(args.gateway_host, mcp_port),
        )
        values["SWARM_MCP_PORT"] = str(mcp_port)
        header = (
            f"Swarm, written by `swarm up` at {now}.\n"
            f"Load it with: source {env_path}\n"
            "It holds the API token: keep it private."
        )
        envfile.write(env_path, values, header=header)
        logs_dir = data_dir / "logs"
        logs_dir.mkdir(exist_ok=True)
        say(f"Swarm is starting (pid {os.getpid()}, data dir {data_dir})")
        say(f"  API       {url}  (swarm {args.swarm!r}; token in the env file)")
        say(f"  MCP       {mcp_url(args.gateway_host, mcp_port)}  (same token)")
        say(f"  NATS      {nats_line}")
        say(f"  env file  {env_path}")
        say(f"            source {env_path}")
        say(f"  logs      {logs_dir}/")
        say(f"Stop with Ctrl-C, or `swarm down --data-dir {data_dir}` (pid {os.getpid()}).")
        environment = child_environment(
            os.environ,
            nats_url=nats_url,
            token=token,
            host=args.gateway_host,
            port=args.gateway_port,
            swarm=args.swarm,
            data_dir=data_dir,
            embedded=nats is not None,
            mcp_port=mcp_port,
        )
        children = [
            Child(
                name=name,
                argv=[sys.executable, "-m", f"services.{name}"],
                env=environment,
                log_path=logs_dir / f"{name}.log",
            )
            for name in SERVICES
        ]
        asyncio.run(_supervise(children, url, token))
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):  # stopping already: let it finish
            signal.signal(sig, signal.SIG_IGN)
        if nats is not None:
            nats.stop()  # last: SIGTERM, JetStream flushes
    say("stopped")
    return 0


def _embedded_nats(
    requested_port: int | None, data_dir: Path, previous: Mapping[str, str]
) -> EmbeddedNats:
    """The server to start (not started yet): on ``--nats-port``, else last time's port while
    it is free, else a free one; never beside a server of ours that is still running."""
    leftover = leftover_servers(data_dir / "ports")
    if leftover:
        raise Conflict(
            f"a nats-server (pid {', '.join(map(str, leftover))}) from an earlier swarm up "
            f"still runs on {data_dir}; stop it first"
        )
    port = choose_nats_port(requested_port, remembered_port(previous), port_is_free)
    return EmbeddedNats(
        data_dir,
        port or free_port(),
        monitor_port=free_port(),  # /varz, /healthz: what `swarm doctor` reads (fsync) locally
        preexec_fn=die_with_parent(signal.SIGTERM),
    )


async def _check_reachable(url: str) -> None:
    nc = await connect(NatsOptions.from_env(url))
    await nc.close()


async def _supervise(children: list[Child], url: str, token: str) -> None:
    supervisor = Supervisor(children, warn=warn, secrets=[token])
    loop = asyncio.get_running_loop()

    def stop(signum: signal.Signals) -> None:
        if not supervisor.stopping.is_set():
            say(f"stopping ({signum.name})…")
        supervisor.stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop, sig)
    watcher = asyncio.create_task(_watch_health(f"{url}/health", supervisor))
    try:
        await supervisor.run()
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)


async def _fetch(session: aiohttp.ClientSession, url: str) -> dict[str, Any] | None:
    try:
        async with session.get(url) as response:
            body: dict[str, Any] = await response.json(content_type=None)
            return body
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None


async def _watch_health(url: str, supervisor: Supervisor) -> None:
    """Poll ``GET /health``: say ``ready`` once all four services and NATS are, then say when a
    restarted child is ready again."""
    started = time.monotonic()
    host = socket.gethostname()
    announced: dict[str, int] = {}  # service -> pid we last said was ready
    all_ready = False
    hinted = False
    progress = Progress()
    timeout = aiohttp.ClientTimeout(total=2)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while not supervisor.stopping.is_set():
            report = await _fetch(session, url)
            pids = {child.name: child.pid for child in supervisor.children}
            if report is not None and report.get("nats") == "connected":
                for name in sorted(ready_children(report, pids, host)):
                    if announced.get(name) != pids[name]:
                        announced[name] = pids[name]  # type: ignore[assignment]
                        if all_ready:
                            say(f"{name} ready again (pid {pids[name]})")
                if not all_ready and set(announced) == set(SERVICES):
                    all_ready = True
                    progress.clear()
                    say(f"ready: NATS, {', '.join(SERVICES)} ({time.monotonic() - started:.1f}s)")
            if not all_ready:
                waiting = [name for name in SERVICES if name not in announced]
                nats = "" if report is not None else "the gateway's /health, "
                progress.step(
                    f"starting: waiting for {nats}{', '.join(waiting)}",
                    f"({time.monotonic() - started:.0f}s)",
                )
            if not all_ready and not hinted and time.monotonic() - started > SLOW_START_HINT:
                hinted = True
                missing = [name for name in SERVICES if name not in announced]
                progress.clear()
                warn(
                    f"still waiting for: {', '.join(missing)} "
                    f"(see {supervisor.children[0].log_path.parent}/)"
                )
            await asyncio.sleep(HEALTH_EVERY if not all_ready else HEALTH_EVERY * 5)
