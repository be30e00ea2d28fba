"""Configuration: defaults < tickd.toml < TICKD_* environment < flags; every bad value named."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from daemon.config import (
    Config,
    parse_duration,
    parse_retention,
    resolve_config,
)
from daemon.definitions import ExecutorKind
from daemon.domain.limits import TagLimit
from daemon.errors import ConfigError
from daemon.ports import Retention


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # ./tickd.toml is looked up in the working directory


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ---- durations -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("5m", 300),
        ("2h", 7200),
        ("7d", 604800),
        ("1w", 604800),
        ("1h30m", 5400),
        ("1d 2h", 93600),
        ("1.5h", 5400),
        ("0s", 0),
        ("45", 45),
        ("2.5", 2.5),
        (30, 30),
        (0.5, 0.5),
    ],
)
def test_durations(text: str | float, seconds: float) -> None:
    assert parse_duration(text, "k") == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "5x", "m", "-5s", "-1", "30m1h", "1h1h", "5 m s", True, None])
def test_bad_durations_name_the_key(text: object) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_duration(text, "dispatch.drain_timeout")
    assert caught.value.key == "dispatch.drain_timeout"
    assert str(caught.value).startswith("configuration dispatch.drain_timeout: ")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("7d", timedelta(days=7)), ("never", None), ("off", None), ("Forever", None), (60, 60)],
)
def test_retention_periods(value: object, expected: timedelta | int | None) -> None:
    if isinstance(expected, int):
        expected = timedelta(seconds=expected)
    assert parse_retention(value, "retention.runs") == expected


def test_a_zero_retention_is_refused_with_the_alternative() -> None:
    with pytest.raises(ConfigError, match='use "never" to keep forever'):
        parse_retention("0s", "retention.runs")


# ---- sources and precedence ----------------------------------------------------------------


def test_defaults_run_from_a_checkout() -> None:
    config = resolve_config(environ={})
    assert config == Config()
    assert config.store == "./var/tickd.db"
    assert config.definitions == (Path("./definitions"),)
    assert config.dispatch.max_concurrent_runs == 8
    assert config.dispatch.default_executor is ExecutorKind.PROCESS
    assert config.dispatch.drain_timeout == 60
    assert config.scheduler.max_concurrent_evaluations == 16
    assert config.scheduler.heartbeat_interval == 5
    assert config.scheduler.lease_ttl == 30
    assert config.retention == Retention()
    assert (config.log.level, config.log.format) == ("info", "auto")
    assert config.source is None


FILE = """\
store = "file.db"
definitions = ["file-defs"]
[dispatch]
max_concurrent_runs = 3
[log]
level = "warning"
format = "console"
"""


@pytest.mark.parametrize(
    ("file", "env", "flags", "expected"),
    [
        # nothing: the defaults
        (None, {}, {}, ("./var/tickd.db", ("definitions",), 8, "info", "auto")),
        # the file over the defaults (paths relative to the file's directory)
        ("etc", {}, {}, ("etc/file.db", ("etc/file-defs",), 3, "warning", "console")),
        # the environment over the file
        (
            "etc",
            {
                "TICKD_STORE": "env.db",
                "TICKD_DEFINITIONS": "a:b",
                "TICKD_MAX_CONCURRENT_RUNS": "5",
                "TICKD_LOG_LEVEL": "DEBUG",
                "TICKD_LOG_FORMAT": "json",
            },
            {},
            ("env.db", ("a", "b"), 5, "debug", "json"),
        ),
        # an empty variable counts as unset
        (
            "etc",
            {"TICKD_STORE": ""},
            {},
            ("etc/file.db", ("etc/file-defs",), 3, "warning", "console"),
        ),
        # the flags over everything
        (
            "etc",
            {"TICKD_STORE": "env.db", "TICKD_DEFINITIONS": "a"},
            {"store": "flag.db", "definitions": [Path("x"), Path("y")]},
            ("flag.db", ("x", "y"), 3, "warning", "console"),
        ),
    ],
)
def test_precedence(
    tmp_path: Path,
    file: str | None,
    env: dict[str, str],
    flags: dict[str, object],
    expected: tuple[str, tuple[str, ...], int, str, str],
) -> None:
    config_file = write(tmp_path / file / "tickd.toml", FILE) if file else None
    config = resolve_config(config_file=config_file, environ=env, **flags)  # type: ignore[arg-type]
    store, definitions, max_runs, level, fmt = expected
    assert config.store == (str(tmp_path / store) if store.startswith("etc") else store)
    assert config.definitions == tuple(
        tmp_path / d if d.startswith("etc") else Path(d) for d in definitions
    )
    assert config.dispatch.max_concurrent_runs == max_runs
    assert (config.log.level, config.log.format) == (level, fmt)


def test_the_config_file_comes_from_the_flag_then_the_environment_then_the_working_dir(
    tmp_path: Path,
) -> None:
    flag = write(tmp_path / "flag.toml", 'store = "/flag.db"\n')
    env = write(tmp_path / "env.toml", 'store = "/env.db"\n')
    write(tmp_path / "tickd.toml", 'store = "/cwd.db"\n')
    assert resolve_config(config_file=flag, environ={"TICKD_CONFIG": str(env)}).store == "/flag.db"
    assert resolve_config(environ={"TICKD_CONFIG": str(env)}).store == "/env.db"
    config = resolve_config(environ={})
    assert config.store == "/cwd.db"
    assert config.source == Path("tickd.toml")


def test_a_named_config_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_config(config_file=tmp_path / "nope.toml", environ={})
    assert caught.value.key == "--config"
    with pytest.raises(ConfigError) as caught:
        resolve_config(environ={"TICKD_CONFIG": str(tmp_path / "nope.toml")})
    assert caught.value.key == "TICKD_CONFIG"


def test_state_directory_is_the_default_store_under_systemd() -> None:
    env = {"STATE_DIRECTORY": "/var/lib/tickd"}
    assert resolve_config(environ=env).store == "/var/lib/tickd/tickd.db"
    assert resolve_config(environ={"STATE_DIRECTORY": "/a:/b"}).store == "/a/tickd.db"
    # a configured store wins over it
    assert resolve_config(environ={**env, "TICKD_STORE": "/x.db"}).store == "/x.db"
    assert resolve_config(store="y.db", environ=env).store == "y.db"


def test_urls_in_the_file_are_not_treated_as_paths(tmp_path: Path) -> None:
    path = write(tmp_path / "etc" / "tickd.toml", 'store = "postgresql://db/tickd"\n')
    assert resolve_config(config_file=path, environ={}).store == "postgresql://db/tickd"


def test_every_key_of_the_example_file(tmp_path: Path) -> None:
    path = write(
        tmp_path / "tickd.toml",
        """\
store = "/var/lib/tickd/tickd.db"
definitions = "/etc/tickd/definitions"
[dispatch]
max_concurrent_runs = 4
default_executor = "thread"
drain_timeout = "2m"
tag_limits = [{ key = "db", value = "warehouse", limit = 2 },
              { key = "team", per_value = true, limit = 3 },
              { key = "gpu", limit = 1 }]
[scheduler]
max_concurrent_evaluations = 4
heartbeat_interval = "2s"
lease_ttl = "10s"
[retention]
skipped_ticks = "1d"
ticks = "never"
runs = "1w"
[log]
level = "error"
format = "json"
""",
    )
    config = resolve_config(config_file=path, environ={})
    assert config.definitions == (Path("/etc/tickd/definitions"),)
    assert config.dispatch.default_executor is ExecutorKind.THREAD
    assert config.dispatch.drain_timeout == 120
    assert config.dispatch.tag_limits == (
        TagLimit(key="db", value="warehouse", limit=2),
        TagLimit(key="team", per_value=True, limit=3),
        TagLimit(key="gpu", limit=1),
    )
    assert (config.scheduler.heartbeat_interval, config.scheduler.lease_ttl) == (2, 10)
    assert config.retention == Retention(
        skipped_ticks=timedelta(days=1), ticks=None, runs=timedelta(weeks=1)
    )


def test_the_shipped_example_config_is_valid() -> None:
    example = Path(__file__).parent.parent / "deploy" / "tickd.toml"
    config = resolve_config(config_file=example, environ={})
    assert config.dispatch.tag_limits == (TagLimit(key="db", value="warehouse", limit=2),)


# ---- bad values --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key", "says"),
    [
        ("[dispatch]\nmax_concurrent_runs = 0\n", "dispatch.max_concurrent_runs", "1 or more"),
        ("[dispatch]\nmax_concurrent_runs = true\n", "dispatch.max_concurrent_runs", "1 or more"),
        ("[dispatch]\ndefault_executor = 'fork'\n", "dispatch.default_executor", "'process'"),
        ("[dispatch]\ndrain_timeout = 'soon'\n", "dispatch.drain_timeout", '"90s"'),
        ("[dispatch]\ndrain_timeout = 0\n", "dispatch.drain_timeout", "above 0s"),
        ("[dispatch]\nmax_concurent_runs = 3\n", "dispatch.max_concurent_runs", "unknown key"),
        ("stor = 'x.db'\n", "stor", "unknown key"),
        ("[dispatch]\ntag_limits = {}\n", "dispatch.tag_limits", "use a list"),
        ("[dispatch]\ntag_limits = [{ key = 'db' }]\n", "dispatch.tag_limits[0].limit", "missing"),
        (
            "[dispatch]\ntag_limits = [{ key = 'db', limit = 1 }, { key = 'a', limt = 1 }]\n",
            "dispatch.tag_limits[1].limt",
            "unknown key",
        ),
        (
            "[dispatch]\ntag_limits = [{ key = 'db', value = 'x', per_value = true, limit = 1 }]\n",
            "dispatch.tag_limits[0]",
            "not both",
        ),
        ("[scheduler]\nlease_ttl = '6s'\n", "scheduler.lease_ttl", "twice"),
        ("[retention]\nruns = 0\n", "retention.runs", "never"),
        ("[log]\nlevel = 'loud'\n", "log.level", "'debug'"),
        ("[log]\nformat = 'xml'\n", "log.format", "'json'"),
        ("dispatch = 3\n", "dispatch", "must be a table"),
        ("store = ''\n", "store", "file path"),
        ("definitions = []\n", "definitions", "list of directories"),
    ],
)
def test_a_bad_file_value_names_the_key_and_the_file(
    tmp_path: Path, text: str, key: str, says: str
) -> None:
    path = write(tmp_path / "tickd.toml", text)
    with pytest.raises(ConfigError) as caught:
        resolve_config(config_file=path, environ={})
    assert caught.value.key == key
    assert says in str(caught.value)
    assert str(caught.value).endswith(f"(in {path})")


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "tickd.toml", "store = \n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        resolve_config(config_file=path, environ={})


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"TICKD_MAX_CONCURRENT_RUNS": "many"}, "TICKD_MAX_CONCURRENT_RUNS"),
        ({"TICKD_MAX_CONCURRENT_RUNS": "-1"}, "TICKD_MAX_CONCURRENT_RUNS"),
        ({"TICKD_LOG_LEVEL": "chatty"}, "TICKD_LOG_LEVEL"),
        ({"TICKD_LOG_FORMAT": "yaml"}, "TICKD_LOG_FORMAT"),
        ({"TICKD_STORE": "   "}, "TICKD_STORE"),
    ],
)
def test_a_bad_environment_value_names_the_variable(env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_config(environ=env)
    assert caught.value.key == key


def test_a_bad_flag_value_names_the_flag() -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_config(store=" ", environ={})
    assert caught.value.key == "--store"
