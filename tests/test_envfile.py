"""The env file: written atomically and privately, readable by a shell and by the CLI."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from cli import envfile
from schemas.errors import Invalid

TRICKY = 'a "quoted" $HOME `date` back\\slash \' single'


def test_written_file_is_private_and_reads_back_the_same_values(tmp_path: Path) -> None:
    path = tmp_path / "data" / "swarm.env"
    values = {"SWARM_API_URL": "http://127.0.0.1:7700", "SWARM_API_TOKEN": TRICKY}

    envfile.write(path, values, header="written by a test\nsecond line")

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert envfile.read(path) == values
    assert path.read_text().startswith("# written by a test\n# second line\n")
    assert 'export SWARM_API_URL="http://127.0.0.1:7700"\n' in path.read_text()


def test_a_shell_sourcing_the_file_sees_exactly_the_written_values(tmp_path: Path) -> None:
    path = envfile.write(tmp_path / "swarm.env", {"SWARM_API_TOKEN": TRICKY, "EMPTY": ""})

    shown = subprocess.run(
        ["bash", "-c", f'source "{path}" && printf "%s|%s" "$SWARM_API_TOKEN" "$EMPTY"'],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": os.environ["PATH"], "HOME": "/nonexistent"},
    ).stdout

    assert shown == f"{TRICKY}|"


def test_rewriting_replaces_the_file_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "swarm.env"
    path.write_text('export OLD="1"\n')
    path.chmod(0o644)

    envfile.write(path, {"NEW": "2"})

    assert envfile.read(path) == {"NEW": "2"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["swarm.env"]


def test_the_original_plugin_file_format_parses_without_expanding_anything() -> None:
    text = (
        "# API\n"
        'export SWARM_API_URL="https://example.fly.dev"\n'
        'export SWARM_DEFAULT_ID="swarm-1769380552744"\n'
        "\n"
        'export PATH="$FLYCTL_INSTALL/bin:$PATH"\n'
        "PLAIN=value\n"
        "SINGLE='it is $x'\n"
        "source something-else.env\n"
    )

    assert envfile.parse(text) == {
        "SWARM_API_URL": "https://example.fly.dev",
        "SWARM_DEFAULT_ID": "swarm-1769380552744",
        "PATH": "$FLYCTL_INSTALL/bin:$PATH",
        "PLAIN": "value",
        "SINGLE": "it is $x",
    }


def test_reading_a_missing_file_gives_nothing(tmp_path: Path) -> None:
    assert envfile.read(tmp_path / "absent.env") == {}


def test_a_value_spanning_lines_is_refused(tmp_path: Path) -> None:
    with pytest.raises(Invalid):
        envfile.write(tmp_path / "swarm.env", {"SWARM_API_TOKEN": "one\ntwo"})
    assert not (tmp_path / "swarm.env").exists()


def _project_with_env_file(tmp_path: Path, **values: str) -> Path:
    envfile.write(tmp_path / ".swarm" / "swarm.env", values)
    return tmp_path


def test_settings_come_from_the_env_file_in_the_current_directory(tmp_path: Path) -> None:
    cwd = _project_with_env_file(
        tmp_path,
        SWARM_API_URL="http://127.0.0.1:7711/",
        SWARM_API_TOKEN="file-token",
        SWARM_DEFAULT_ID="dev",
        NATS_URL="nats://127.0.0.1:4333",
    )

    settings = envfile.load_settings({}, cwd)

    assert settings.api_url == "http://127.0.0.1:7711"
    assert settings.api_token == "file-token"
    assert settings.swarm == "dev"
    assert settings.nats_url == "nats://127.0.0.1:4333"
    assert settings.env_file == cwd / ".swarm" / "swarm.env"


def test_environment_variables_win_over_the_env_file(tmp_path: Path) -> None:
    cwd = _project_with_env_file(
        tmp_path, SWARM_API_TOKEN="file-token", SWARM_DEFAULT_ID="dev", NATS_URL="nats://a:1"
    )

    settings = envfile.load_settings(
        {"SWARM_API_TOKEN": "env-token", "SWARM_DEFAULT_ID": "", "NATS_URL": "nats://b:2"}, cwd
    )

    assert settings.api_token == "env-token"
    assert settings.swarm == "dev"  # an empty variable counts as unset
    assert settings.nats_url == "nats://b:2"


def test_swarm_env_file_names_the_file_to_read(tmp_path: Path) -> None:
    _project_with_env_file(tmp_path, SWARM_DEFAULT_ID="from-default-place")
    other = envfile.write(tmp_path / "elsewhere" / "mine.env", {"SWARM_DEFAULT_ID": "named"})

    settings = envfile.load_settings({"SWARM_ENV_FILE": str(other)}, tmp_path)

    assert settings.swarm == "named"
    assert settings.env_file == other


def test_swarm_data_dir_locates_the_env_file(tmp_path: Path) -> None:
    envfile.write(tmp_path / "data" / "swarm.env", {"SWARM_DEFAULT_ID": "from-data-dir"})

    settings = envfile.load_settings({"SWARM_DATA_DIR": str(tmp_path / "data")}, tmp_path / "x")

    assert settings.swarm == "from-data-dir"


def test_a_missing_swarm_env_file_is_an_error_naming_the_variable(tmp_path: Path) -> None:
    with pytest.raises(Invalid) as raised:
        envfile.load_settings({"SWARM_ENV_FILE": str(tmp_path / "nope.env")}, tmp_path)
    assert raised.value.field == "SWARM_ENV_FILE"
    assert "nope.env" in raised.value.message


def test_without_any_env_file_settings_are_the_defaults(tmp_path: Path) -> None:
    settings = envfile.load_settings({}, tmp_path)

    assert settings.api_url == envfile.DEFAULT_API_URL
    assert settings.api_token is None
    assert settings.swarm == "default"
    assert settings.env_file is None


def test_settings_never_show_the_token(tmp_path: Path) -> None:
    settings = envfile.load_settings({"SWARM_API_TOKEN": "very-secret-token"}, tmp_path)
    assert "very-secret-token" not in repr(settings)


def test_the_env_file_is_found_in_a_parent_directory_the_nearest_first(tmp_path: Path) -> None:
    _project_with_env_file(tmp_path, SWARM_DEFAULT_ID="outer")
    inner = _project_with_env_file(tmp_path / "a", SWARM_DEFAULT_ID="inner")
    deep = inner / "src" / "pkg"
    deep.mkdir(parents=True)

    assert envfile.load_settings({}, deep).swarm == "inner"
    assert envfile.load_settings({}, deep).env_file == inner / ".swarm" / "swarm.env"
    assert envfile.load_settings({}, tmp_path / "a" / "..").swarm == "outer"


def test_settings_say_where_the_api_url_came_from(tmp_path: Path) -> None:
    nowhere = envfile.load_settings({}, tmp_path)
    assert nowhere.api_url_from == (
        f"the default: SWARM_API_URL is not set and there is no .swarm/swarm.env in {tmp_path} "
        "or a parent directory"
    )
    project = _project_with_env_file(tmp_path / "p", SWARM_API_URL="http://127.0.0.1:7711")
    (project / "sub").mkdir()
    from_file = envfile.load_settings({}, project / "sub")
    assert from_file.api_url_from == f"SWARM_API_URL in {project / '.swarm' / 'swarm.env'}"
    from_env = envfile.load_settings({"SWARM_API_URL": "http://h:1"}, project)
    assert (from_env.api_url, from_env.api_url_from) == (
        "http://h:1",
        "SWARM_API_URL in the environment",
    )
    bare = _project_with_env_file(tmp_path / "q", SWARM_DEFAULT_ID="x")
    assert envfile.load_settings({}, bare).api_url_from == (
        f"the default: {bare / '.swarm' / 'swarm.env'} has no SWARM_API_URL"
    )
