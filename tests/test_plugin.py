"""The Claude Code plugin (``plugin/``): its manifest and the marketplace file are valid, every
command, agent and skill file has the front matter Claude Code needs, every ``swarm …``
invocation written in them is a real CLI command, and the CLI commands behind the slash commands
work end to end against an in-process gateway and chat service on real NATS."""

from __future__ import annotations

import argparse
import json
import re
import shlex
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from gateway_support import Run, cli_runner, gateway_on, running
from waiting import until

from cli.main import build_parser, main
from schemas import events as ev
from schemas.agent_tokens import make_agent_token
from services.bus.connection import NatsOptions
from services.bus.service import Bus
from services.chat.service import Chat
from services.gateway.service import Gateway

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = ROOT / "plugin"
COMMANDS = ("swarm-status", "swarm-task", "swarm-chat", "swarm-project")
MARKDOWN = sorted(PLUGIN.rglob("*.md"))
PLACEHOLDER = re.compile(r"[$<>…\[\]]")
TOKEN = "plugin-test-token"


# --- the files --------------------------------------------------------------------------------


def front_matter(path: Path) -> tuple[dict[str, Any], str]:
    """(the YAML front matter, the body) of a markdown file."""
    text = path.read_text()
    match = re.match(r"^---\n(.*?)\n---\n(.*)$", text, re.DOTALL)
    assert match, f"{path.relative_to(ROOT)} has no front matter"
    meta = yaml.safe_load(match.group(1))
    assert isinstance(meta, dict), f"{path.relative_to(ROOT)}: front matter is not a mapping"
    return meta, match.group(2)


def test_the_manifest_and_the_marketplace_describe_the_plugin() -> None:
    manifest = json.loads((PLUGIN / ".claude-plugin" / "plugin.json").read_text())
    assert manifest["name"] == "swarm"
    assert re.fullmatch(r"\d+\.\d+\.\d+", manifest["version"])
    assert manifest["description"] and manifest["author"]["name"]

    marketplace = json.loads((ROOT / ".claude-plugin" / "marketplace.json").read_text())
    assert marketplace["name"] and marketplace["owner"]["name"]
    (entry,) = [p for p in marketplace["plugins"] if p["name"] == manifest["name"]]
    assert (ROOT / entry["source"]).resolve() == PLUGIN
    assert entry["version"] == manifest["version"]


@pytest.mark.parametrize("name", COMMANDS)
def test_each_slash_command_has_its_front_matter_and_calls_the_cli(name: str) -> None:
    meta, body = front_matter(PLUGIN / "commands" / f"{name}.md")
    assert meta["description"].strip()
    assert isinstance(meta["argument-hint"], str)
    assert "Bash(swarm:*)" in meta["allowed-tools"]
    subcommand = name.removeprefix("swarm-")
    assert f"swarm {subcommand} $ARGUMENTS" in body


def test_the_prototypes_argument_forms_are_kept() -> None:
    hints = {
        name: front_matter(PLUGIN / "commands" / f"{name}.md")[0]["argument-hint"]
        for name in COMMANDS
    }
    assert hints["swarm-task"] == '"Task title" [tags] [priority] [depends]'
    assert hints["swarm-chat"].startswith('"message" [@mention')
    assert hints["swarm-project"].startswith("<create|init|sync|status> [name] [gitUrl]")


def test_the_master_agent_and_the_skill_have_their_front_matter() -> None:
    meta, body = front_matter(PLUGIN / "agents" / "swarm-master.md")
    assert meta["name"] == "swarm-master"
    assert meta["description"].strip() and "Bash" in meta["tools"]
    for needed in ("swarm task", "swarm status", "swarm chat", "swarm logs"):
        assert needed in body

    meta, body = front_matter(PLUGIN / "skills" / "swarm-cli" / "SKILL.md")
    assert meta["name"] == "swarm-cli"
    assert meta["description"].strip()
    assert "source .swarm/swarm.env" in body


# --- every ``swarm …`` written in the markdown is a real command ------------------------------


def invocations(text: str, *, inline: bool = True) -> list[str]:
    """``swarm …`` command lines in fenced code blocks and (``inline``) in inline code spans,
    where prose also names commands without their arguments (`swarm task`)."""
    found = []
    fenced = re.compile(r"^```[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)
    for block in fenced.findall(text):
        for line in block.splitlines():
            line = re.sub(r"\s+#\s.*$", "", line).strip()
            if line.startswith("swarm "):
                found.append(line)
    if inline:
        for span in re.findall(r"`([^`\n]+)`", fenced.sub("", text)):
            if span.startswith("swarm "):
                found.append(span.strip())
    return found


def subparsers_of(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def command_path(argv: list[str]) -> list[str]:
    """The subcommand words at the front of ``argv`` (``project sync`` of
    ``project sync --wait``)."""
    path: list[str] = []
    choices = subparsers_of(build_parser())
    for word in argv:
        if word not in choices:
            break
        path.append(word)
        choices = subparsers_of(choices[word])
    return path


ALL_INVOCATIONS = sorted(
    {
        (str(path.relative_to(ROOT)), line)
        for path in MARKDOWN
        for line in invocations(path.read_text())
    }
)


def test_the_markdown_is_full_of_swarm_invocations() -> None:
    files = {path for path, _ in ALL_INVOCATIONS}
    assert {str(p.relative_to(ROOT)) for p in MARKDOWN} <= files
    assert len(ALL_INVOCATIONS) > 40


def test_every_swarm_invocation_names_a_command_whose_help_works(
    capsys: pytest.CaptureFixture[str],
) -> None:
    paths: dict[tuple[str, ...], str] = {}
    for where, line in ALL_INVOCATIONS:
        argv = shlex.split(line)[1:]
        path = command_path(argv)
        assert path, f"{where}: `{line}` is not a swarm command"
        paths.setdefault(tuple(path), f"{where}: `{line}`")
    for words, example in sorted(paths.items()):
        with pytest.raises(SystemExit) as exited:
            main([*words, "--help"])
        assert exited.value.code == 0, example
        assert f"usage: swarm {' '.join(words)}" in capsys.readouterr().out
    assert {("chat",), ("project", "create"), ("project", "sync"), ("task",)} <= set(paths)


def test_every_concrete_example_in_a_code_block_parses(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = build_parser()
    examples = sorted(
        {
            (str(path.relative_to(ROOT)), line)
            for path in MARKDOWN
            for line in invocations(path.read_text(), inline=False)
        }
    )
    concrete = [(w, line) for w, line in examples if not PLACEHOLDER.search(line)]
    assert len(concrete) > 25
    for where, line in concrete:
        try:
            parser.parse_args(shlex.split(line)[1:])
        except SystemExit:
            pytest.fail(f"{where}: `{line}` does not parse: {capsys.readouterr().err}")


# --- the commands behind the slash commands, end to end ---------------------------------------


@pytest.fixture(scope="module")
async def services(nats_url: str) -> AsyncIterator[Gateway]:
    async with running(gateway_on(nats_url, TOKEN)) as gateway:
        yield gateway


@pytest.fixture(scope="module")
async def chat(nats_url: str) -> AsyncIterator[Chat]:
    async with running(Chat(nats=NatsOptions.from_env(nats_url))) as service:
        yield service


@pytest.fixture
async def swarm(services: Gateway, chat: Chat, bus: Bus, swarm_id: str) -> str:
    """A swarm with a frontend and a QA agent, folded in by the gateway and the chat service
    (which resolves mentions with its own fold)."""
    now = time.time()
    await bus.events.append(ev.SwarmCreated(swarm=swarm_id, id=swarm_id, time=now, name="s"), 0)
    seq = 0
    for agent, role in (("frontend-agent", "frontend"), ("qa-agent", "qa")):
        seq = await bus.events.append(
            ev.AgentRegistered(
                swarm=swarm_id, id=agent, time=now, name=agent, role=role, executor="local"
            ),
            0,
        )
    await services.projection.wait_for(seq)
    await chat.projection.wait_for(seq)
    return swarm_id


@pytest.fixture
def run(
    services: Gateway,
    swarm_id: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> Run:
    return cli_runner(monkeypatch, capsys, tmp_path, url=services.url, token=TOKEN, swarm=swarm_id)


def slash(command: str, arguments: str) -> list[str]:
    """The argv a slash command runs for ``arguments``: its ``swarm … $ARGUMENTS`` line."""
    body = front_matter(PLUGIN / "commands" / f"{command}.md")[1]
    (line,) = {line for line in invocations(body) if "$ARGUMENTS" in line}
    return shlex.split(line.replace("$ARGUMENTS", arguments))[1:]


async def test_slash_chat_posts_with_a_mention_and_without_arguments_shows_history(
    run: Run, swarm: str
) -> None:
    code, out, err = await run(*slash("swarm-chat", '"Ship the button" @frontend'))
    assert (code, err) == (0, "")
    assert "master: Ship the button" in out
    assert "→ frontend-agent" in out

    code, out, err = await run(*slash("swarm-chat", '"Who is @designer?"'))
    assert code == 1
    assert "@designer" in err

    code, out, _ = await run(*slash("swarm-chat", ""))
    assert code == 0
    assert out.strip().splitlines()[-1].endswith("master: Ship the button")
    code, out, _ = await run(*slash("swarm-status", ""))
    assert code == 0
    assert "=== CHAT ===" in out and "Ship the button" in out


async def test_slash_task_creates_the_task_in_the_positional_form(
    run: Run, swarm: str, services: Gateway
) -> None:
    code, out, err = await run(*slash("swarm-task", '"Create Button" frontend,ui high'))
    assert code == 0
    # the swarm's agents have roles but no skills: none can take a tagged task, and it says so
    assert err.startswith(f"swarm task: warning: no agent of swarm {swarm} has a skill among")
    task = await until(  # the gateway answers 202 when its view lags (a busy machine)
        lambda: services.projection.board.task(swarm, out.strip()), what="the task in the board"
    )
    assert (task.title, task.tags, task.priority) == ("Create Button", ["frontend", "ui"], "high")


async def test_slash_project_creates_inits_and_shows_each_agents_checkout(
    run: Run, swarm: str, services: Gateway, bus: Bus, tmp_path: Path
) -> None:
    remote = tmp_path / "app.git"
    code, out, err = await run(*slash("swarm-project", f"create app {remote}"))
    assert (code, err) == (0, "")
    project = out.strip()
    assert project.startswith("p-")

    code, out, _ = await run(*slash("swarm-project", "init"))
    assert (code, out.strip()) == (0, f"{project} init requested: round 1")

    commit = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
    answers: list[tuple[str, dict[str, Any]]] = [
        ("frontend-agent", {"commit": commit}),
        ("qa-agent", {}),
    ]
    for agent, fields in answers:
        event = (
            ev.ProjectSynced(
                swarm=swarm,
                id=project,
                time=time.time(),
                agent=agent,
                round=1,
                ahead=1,
                branch="main",
                **fields,
            )
            if fields
            else ev.ProjectSyncFailed(
                swarm=swarm,
                id=project,
                time=time.time(),
                agent=agent,
                round=1,
                error="fatal: repository not found",
            )
        )
        await services.projection.wait_for(await bus.events.append(event))

    code, out, _ = await run(*slash("swarm-project", "status"))
    assert code == 0
    assert f"Name: app ({project})" in out
    assert "round 1 (init): 2/2 answered, 1 failed" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.endswith("synced")}
    lines |= {line.split()[0]: line for line in out.splitlines() if "sync_failed:" in line}
    assert lines["frontend-agent"].split()[1:6] == ["4b825dc", "main", "clean", "↑1", "↓0"]
    assert "sync_failed: fatal: repository not found" in lines["qa-agent"]

    code, out, _ = await run("project", "sync", "--wait", "--timeout", "0.5")
    assert code == 1  # nobody answers round 2 here
    assert "round 2 (sync): 0/2 answered" in out


async def test_inside_a_sandbox_the_agent_token_posts_as_the_agent_reads_and_changes_nothing(
    run: Run, swarm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SWARM_API_TOKEN")
    monkeypatch.delenv("SWARM_DEFAULT_ID")  # the token names the swarm
    monkeypatch.setenv("SWARM_AGENT_TOKEN", make_agent_token(TOKEN, swarm, "qa-agent"))
    code, out, err = await run("chat", "Tests pass on main", "--author", "master")
    assert (code, err) == (0, "")
    assert "qa-agent: Tests pass on main" in out
    code, out, err = await run("status")
    assert (code, err) == (0, "")
    code, out, err = await run("task", "Sneaky task")  # idle: no run to follow up
    assert code == 1
    assert "only while it runs a task" in err
    code, out, err = await run("cancel", "t-anything")
    assert code == 1
    assert "an agent token cannot cancel task" in err
