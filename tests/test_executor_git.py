"""Git as commands and answers (services/executor/git.py): no git runs here."""

from __future__ import annotations

import base64

import pytest

from schemas.errors import Invalid
from services.executor import git

TOKEN = "ghp_secret0123456789"


def config_of(env: dict[str, str]) -> dict[str, str]:
    count = int(env["GIT_CONFIG_COUNT"])
    return {env[f"GIT_CONFIG_KEY_{i}"]: env[f"GIT_CONFIG_VALUE_{i}"] for i in range(count)}


def test_git_never_prompts_nor_asks_a_helper_for_credentials() -> None:
    env = git.git_env()
    assert env["GIT_TERMINAL_PROMPT"] == "0"
    assert env["GIT_ASKPASS"] == "" and env["SSH_ASKPASS"] == ""
    assert "BatchMode=yes" in env["GIT_SSH_COMMAND"]
    config = config_of(env)
    assert config["core.askPass"] == "" and config["credential.helper"] == ""
    assert config["protocol.ext.allow"] == "never"
    assert int(config["http.lowSpeedTime"]) > 0
    assert "http.extraHeader" not in config


def test_a_token_travels_as_a_basic_auth_header_in_the_environment_only() -> None:
    env = git.git_env(TOKEN)
    header = config_of(env)["http.extraHeader"]
    scheme, _, encoded = header.removeprefix("Authorization: ").partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(encoded).decode() == f"x-access-token:{TOKEN}"
    argv = git.clone_argv("https://example.com/r.git", "main")
    assert not any(TOKEN in part for part in argv)


def test_clone_goes_to_the_partial_directory_with_the_url_after_a_double_dash() -> None:
    assert git.clone_argv("https://example.com/r.git", "main") == [
        "git",
        "clone",
        "--branch",
        "main",
        "--",
        "https://example.com/r.git",
        "project.partial",
    ]


def test_commands_work_on_the_checkout_directory() -> None:
    assert git.pull_argv("project") == ["git", "-C", "project", "pull", "--ff-only"]
    assert git.fetch_argv("project")[:4] == ["git", "-C", "project", "fetch"]
    assert git.checkout_argv("project", "dev") == ["git", "-C", "project", "checkout", "dev", "--"]
    assert git.set_origin_argv("project", "/srv/r.git")[-2:] == ["--", "/srv/r.git"]
    assert git.ahead_behind_argv("project", "main")[-1] == "HEAD...refs/remotes/origin/main"


@pytest.mark.parametrize("branch", ["main", "release/1.2", "feature_x-y", "v1.0"])
def test_ordinary_branch_names_are_accepted(branch: str) -> None:
    assert git.check_branch(branch) == branch


@pytest.mark.parametrize(
    "branch",
    ["", "-f", "--orphan=x", "a..b", "a b", "x~1", "a:b", "a/", "a.lock", "@", "a@{1}", ".x"],
)
def test_branch_names_git_refuses_or_that_read_as_options_are_invalid(branch: str) -> None:
    with pytest.raises(Invalid) as caught:
        git.check_branch(branch)
    assert caught.value.field == "branch"


@pytest.mark.parametrize(
    "url", ["", "--upload-pack=touch /tmp/x", "ext::sh -c touch% /tmp/x", "fd::3", "a\nb"]
)
def test_urls_that_read_as_options_or_run_commands_are_invalid(url: str) -> None:
    with pytest.raises(Invalid) as caught:
        git.clone_argv(url, "main")
    assert caught.value.field == "git_url"


def test_status_gives_the_commit_the_branch_and_whether_anything_changed() -> None:
    clean = (
        "# branch.oid 9789670f8d39194bc1c78a34877368cfce044c9f\n"
        "# branch.head main\n# branch.upstream origin/main\n# branch.ab +0 -0\n"
    )
    assert git.parse_status(clean) == ("9789670f8d39194bc1c78a34877368cfce044c9f", "main", False)
    assert git.parse_status(clean + "? notes.txt\n")[2] is True
    assert git.parse_status(clean + "1 .M N... 100644 100644 100644 a b README\n")[2] is True


def test_status_of_a_detached_head_or_an_empty_repository() -> None:
    detached = "# branch.oid abc123\n# branch.head (detached)\n"
    assert git.parse_status(detached) == ("abc123", None, False)
    assert git.parse_status("# branch.oid (initial)\n# branch.head main\n")[0] is None


def test_ahead_and_behind_come_from_rev_list_counts() -> None:
    assert git.parse_ahead_behind("2\t5\n") == (2, 5)
    with pytest.raises(ValueError):
        git.parse_ahead_behind("fatal: bad revision\n")


def test_a_failure_reports_gits_fatal_lines_on_one_line() -> None:
    output = (
        "Cloning into 'project.partial'...\n"
        "fatal: '/nonexistent' does not appear to be a git repository\n"
        "fatal: Could not read from remote repository.\n\n"
        "Please make sure you have the correct access rights\nand the repository exists.\n"
    )
    assert git.failure("git clone", output) == (
        "git clone failed: fatal: '/nonexistent' does not appear to be a git repository "
        "fatal: Could not read from remote repository."
    )


def test_a_failure_without_fatal_lines_keeps_the_last_lines() -> None:
    assert git.failure("mv", "mv: cannot move 'a' to 'b': Directory not empty\n") == (
        "mv failed: mv: cannot move 'a' to 'b': Directory not empty"
    )
    assert git.failure("git pull", "") == "git pull failed: no output"


def test_a_failure_masks_secrets_and_url_credentials_and_is_bounded() -> None:
    output = (
        f"fatal: unable to access 'https://bob:{TOKEN}@example.com/r.git/': 403 {TOKEN}\n"
        + "error: " + "x" * 2000
    )  # fmt: skip
    message = git.failure("git clone", output, [TOKEN])
    assert TOKEN not in message and "bob" not in message
    assert "https://***@example.com/r.git/" in message
    assert len(message) <= git.ERROR_CHARS and message.endswith("…")
