"""Configuration: defaults < tickd.toml < TICKD_* environment < command-line flags.

`resolve_config(...)` is the one entry point. It reads the TOML file (from `--config`,
else `TICKD_CONFIG`, else `./tickd.toml` when that exists), overlays the environment and
the flags, validates every value and returns a frozen `Config`. Any bad value raises
`ConfigError(key, problem)` naming the key exactly as the operator wrote it
("dispatch.max_concurrent_runs", "TICKD_STORE", "--store") and what is allowed.

Rules an operator can rely on:
* Unknown keys in the file are an error, so a typo never passes silently.
* Relative paths in the file are resolved against the file's directory; relative paths
  from the environment or the command line against the working directory.
* An empty environment variable counts as unset.
* Durations are "90s", "5m", "2h", "7d", "1w", combinations such as "1h30m", or a number
  of seconds. Retention periods also take "never" (or "off", "forever"): keep forever.
  A retention of 0 is refused: it would delete all history at the next purge.
* With no store configured anywhere, the store is `$STATE_DIRECTORY/tickd.db` under
  systemd (`StateDirectory=`), else `./var/tickd.db`.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Final, TypeVar

from daemon.definitions import ExecutorKind
from daemon.domain.limits import TagLimit
from daemon.errors import ConfigError
from daemon.ports import Retention

T = TypeVar("T")

DEFAULT_CONFIG_FILE: Final = Path("tickd.toml")
DEFAULT_STORE: Final = "./var/tickd.db"
DEFAULT_DEFINITIONS: Final[tuple[Path, ...]] = (Path("./definitions"),)
LOG_LEVELS: Final = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS: Final = ("auto", "json", "console")
_KEEP_FOREVER: Final = frozenset({"never", "off", "forever"})

ENV_CONFIG: Final = "TICKD_CONFIG"
ENV_STORE: Final = "TICKD_STORE"
ENV_DEFINITIONS: Final = "TICKD_DEFINITIONS"
ENV_LOG_LEVEL: Final = "TICKD_LOG_LEVEL"
ENV_LOG_FORMAT: Final = "TICKD_LOG_FORMAT"
ENV_MAX_CONCURRENT_RUNS: Final = "TICKD_MAX_CONCURRENT_RUNS"


@dataclass(frozen=True, slots=True, kw_only=True)
class DispatchConfig:
    max_concurrent_runs: int = 8
    default_executor: ExecutorKind = ExecutorKind.PROCESS
    drain_timeout: float = 60.0  # seconds a stop waits for running jobs before killing them
    tag_limits: tuple[TagLimit, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerConfig:
    max_concurrent_evaluations: int = 16  # schedules and sensors evaluated at once
    heartbeat_interval: float = 5.0  # seconds between lease renewals
    lease_ttl: float = 30.0  # seconds a lease outlives its last heartbeat


@dataclass(frozen=True, slots=True, kw_only=True)
class LogConfig:
    level: str = "info"
    format: str = "auto"  # auto: JSON when stdout is not a terminal, console when it is


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    store: str = DEFAULT_STORE  # a path, or a URL ("postgresql://…") later
    definitions: tuple[Path, ...] = DEFAULT_DEFINITIONS
    dispatch: DispatchConfig = field(default_factory=DispatchConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    retention: Retention = field(default_factory=Retention)
    log: LogConfig = field(default_factory=LogConfig)
    source: Path | None = None  # the TOML file read, if any


# ---- durations -------------------------------------------------------------------------

_UNIT_SECONDS: Final = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION_PART: Final = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([wdhms])", re.ASCII)


def parse_duration(value: object, key: str) -> timedelta:
    """A duration from "90s", "5m", "2h", "7d", "1w", "1h30m" or a number of seconds.

    Units must come largest first, each at most once. Negative durations are refused.
    """
    allowed = 'use a number of seconds or a duration such as "90s", "5m", "2h", "7d", "1h30m"'
    if isinstance(value, bool):
        raise ConfigError(key, f"{value!r} is not a duration; {allowed}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _parse_duration_text(value.strip(), key, allowed)
    else:
        raise ConfigError(key, f"{value!r} is not a duration; {allowed}")
    if seconds != seconds or seconds < 0 or seconds == float("inf"):
        raise ConfigError(key, f"{value!r} is not a duration of 0 or more; {allowed}")
    return timedelta(seconds=seconds)


def _parse_duration_text(text: str, key: str, allowed: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    total = 0.0
    pos = 0
    last_rank = -1
    ranks = list(_UNIT_SECONDS)
    while pos < len(text):
        match = _DURATION_PART.match(text, pos)
        if match is None:
            raise ConfigError(key, f"{text!r} is not a duration; {allowed}")
        rank = ranks.index(match.group(2))
        if rank <= last_rank:
            raise ConfigError(key, f"{text!r} repeats or misorders units; write e.g. 1h30m")
        last_rank = rank
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if not text:
        raise ConfigError(key, f"an empty value is not a duration; {allowed}")
    return total


def parse_retention(value: object, key: str) -> timedelta | None:
    """A retention period: a duration, or "never"/"off"/"forever" (None: keep forever)."""
    if isinstance(value, str) and value.strip().lower() in _KEEP_FOREVER:
        return None
    period = parse_duration(value, key)
    if not period:
        raise ConfigError(
            key, f'{value!r} would delete all history at every purge; use "never" to keep forever'
        )
    return period


# ---- scalar values ---------------------------------------------------------------------


def _positive_int(value: object, key: str) -> int:
    if isinstance(value, str) and re.fullmatch(r"\s*[0-9]+\s*", value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(key, f"{value!r} is not allowed; use a whole number of 1 or more")
    return value


def _seconds(value: object, key: str, *, minimum: float = 0.0) -> float:
    seconds = parse_duration(value, key).total_seconds()
    if seconds <= minimum:
        raise ConfigError(key, f"{value!r} is too short; use a duration above {minimum:g}s")
    return seconds


def _choice(value: object, key: str, choices: Sequence[str]) -> str:
    text = value.strip().lower() if isinstance(value, str) else value
    if text not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ConfigError(key, f"{value!r} is not allowed; use one of {allowed}")
    assert isinstance(text, str)
    return text


def _store(value: object, key: str, base: Path | None) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(key, f"{value!r} is not allowed; use a file path such as ./var/tickd.db")
    value = value.strip()
    if base is not None and not _is_url(value):
        return str(_relative_to(base, Path(value)))
    return value


def _is_url(location: str) -> bool:
    return "://" in location or location == ":memory:"


def _relative_to(base: Path, path: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else Path(os.path.normpath(base / path))


def _definitions(value: object, key: str, base: Path | None) -> tuple[Path, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(i, str) and i for i in items):
        raise ConfigError(key, f"{value!r} is not allowed; use a list of directories")
    paths = [Path(i).expanduser() for i in items]
    return tuple(_relative_to(base, p) if base is not None else p for p in paths)


def _tag_limits(value: object, key: str) -> tuple[TagLimit, ...]:
    example = '[{ key = "db", value = "warehouse", limit = 2 }]'
    if not isinstance(value, list):
        raise ConfigError(key, f"{value!r} is not allowed; use a list such as {example}")
    limits = []
    for i, item in enumerate(value):
        here = f"{key}[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(here, f"{item!r} is not allowed; use a table such as {example}")
        _no_unknown(item, here, ("key", "value", "limit", "per_value"))
        tag = item.get("key")
        if not isinstance(tag, str) or not tag:
            raise ConfigError(f"{here}.key", f'{tag!r} is not allowed; name a tag, e.g. "db"')
        tag_value = item.get("value")
        if tag_value is not None and not isinstance(tag_value, str):
            raise ConfigError(f"{here}.value", f"{tag_value!r} is not allowed; use a string")
        per_value = item.get("per_value", False)
        if not isinstance(per_value, bool):
            raise ConfigError(f"{here}.per_value", f"{per_value!r} is not allowed; use true/false")
        if per_value and tag_value is not None:
            raise ConfigError(here, "give either value or per_value = true, not both")
        if "limit" not in item:
            raise ConfigError(f"{here}.limit", "is missing; say how many runs may hold the tag")
        limit = _positive_int(item["limit"], f"{here}.limit")
        limits.append(TagLimit(key=tag, value=tag_value, limit=limit, per_value=per_value))
    return tuple(limits)


# ---- the file --------------------------------------------------------------------------

_SECTIONS: Final[Mapping[str, tuple[str, ...]]] = {
    "dispatch": ("max_concurrent_runs", "default_executor", "drain_timeout", "tag_limits"),
    "scheduler": ("max_concurrent_evaluations", "heartbeat_interval", "lease_ttl"),
    "retention": ("skipped_ticks", "ticks", "runs"),
    "log": ("level", "format"),
}
_TOP_LEVEL: Final = ("store", "definitions", *_SECTIONS)


def _no_unknown(table: Mapping[str, object], where: str, known: Sequence[str]) -> None:
    for name in table:
        if name not in known:
            allowed = ", ".join(known)
            full = f"{where}.{name}" if where else name
            raise ConfigError(full, f"unknown key; the keys allowed here are {allowed}")


def read_config_file(path: Path) -> dict[str, Any]:
    """The parsed TOML table of `path`, with unknown keys refused."""
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(str(path), "file does not exist; create it or fix the path") from None
    except IsADirectoryError:
        raise ConfigError(str(path), "is a directory; point --config at a file") from None
    except OSError as exc:
        raise ConfigError(str(path), f"cannot be read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"is not valid TOML: {exc}") from None
    try:
        _no_unknown(data, "", _TOP_LEVEL)
        for section, keys in _SECTIONS.items():
            table = data.get(section, {})
            if not isinstance(table, dict):
                raise ConfigError(section, f"must be a table ([{section}]), not {table!r}")
            _no_unknown(table, section, keys)
    except ConfigError as exc:
        raise _in_file(exc, path) from None
    return data


# ---- resolving -------------------------------------------------------------------------


def resolve_config(
    *,
    config_file: Path | None = None,
    store: str | None = None,
    definitions: Sequence[Path] = (),
    environ: Mapping[str, str] | None = None,
) -> Config:
    """The effective configuration: defaults < file < environment < these arguments.

    `config_file`, `store` and `definitions` are the command-line flags (None / empty:
    not given). `environ` defaults to `os.environ`.
    """
    env = {k: v for k, v in (os.environ if environ is None else environ).items() if v != ""}
    path = _config_path(config_file, env)
    data = read_config_file(path) if path is not None else {}
    base = path.parent if path is not None else None

    def in_file(section: str | None, name: str, parse: Callable[[object, str], T], default: T) -> T:
        table = data.get(section, {}) if section else data
        if name not in table:
            return default
        try:
            return parse(table[name], f"{section}.{name}" if section else name)
        except ConfigError as exc:
            raise _in_file(exc, path) from None

    # the file's values over the defaults
    resolved_store: str | None = in_file(None, "store", lambda v, k: _store(v, k, base), None)
    resolved_definitions = in_file(
        None, "definitions", lambda v, k: _definitions(v, k, base), DEFAULT_DEFINITIONS
    )
    d, s, r, lg = DispatchConfig(), SchedulerConfig(), Retention(), LogConfig()
    max_runs = in_file("dispatch", "max_concurrent_runs", _positive_int, d.max_concurrent_runs)
    executor = in_file(
        "dispatch",
        "default_executor",
        lambda v, k: ExecutorKind(_choice(v, k, [e.value for e in ExecutorKind])),
        d.default_executor,
    )
    drain_timeout = in_file("dispatch", "drain_timeout", _seconds, d.drain_timeout)
    tag_limits = in_file("dispatch", "tag_limits", _tag_limits, d.tag_limits)
    scheduler = SchedulerConfig(
        max_concurrent_evaluations=in_file(
            "scheduler", "max_concurrent_evaluations", _positive_int, s.max_concurrent_evaluations
        ),
        heartbeat_interval=in_file(
            "scheduler", "heartbeat_interval", _seconds, s.heartbeat_interval
        ),
        lease_ttl=in_file("scheduler", "lease_ttl", _seconds, s.lease_ttl),
    )
    if scheduler.lease_ttl < 2 * scheduler.heartbeat_interval:
        exc = ConfigError(
            "scheduler.lease_ttl",
            f"{scheduler.lease_ttl:g}s must be at least twice scheduler.heartbeat_interval "
            f"({scheduler.heartbeat_interval:g}s), or the lease lapses between heartbeats",
        )
        raise _in_file(exc, path)
    retention = Retention(
        skipped_ticks=in_file("retention", "skipped_ticks", parse_retention, r.skipped_ticks),
        ticks=in_file("retention", "ticks", parse_retention, r.ticks),
        runs=in_file("retention", "runs", parse_retention, r.runs),
    )
    level = in_file("log", "level", lambda v, k: _choice(v, k, LOG_LEVELS), lg.level)
    fmt = in_file("log", "format", lambda v, k: _choice(v, k, LOG_FORMATS), lg.format)

    # the environment over the file
    if ENV_STORE in env:
        resolved_store = _store(env[ENV_STORE], ENV_STORE, None)
    if ENV_DEFINITIONS in env:
        parts = [p for p in env[ENV_DEFINITIONS].split(os.pathsep) if p]
        resolved_definitions = _definitions(parts, ENV_DEFINITIONS, None)
    if ENV_MAX_CONCURRENT_RUNS in env:
        max_runs = _positive_int(env[ENV_MAX_CONCURRENT_RUNS], ENV_MAX_CONCURRENT_RUNS)
    if ENV_LOG_LEVEL in env:
        level = _choice(env[ENV_LOG_LEVEL], ENV_LOG_LEVEL, LOG_LEVELS)
    if ENV_LOG_FORMAT in env:
        fmt = _choice(env[ENV_LOG_FORMAT], ENV_LOG_FORMAT, LOG_FORMATS)

    # the flags over everything
    if store is not None:
        resolved_store = _store(store, "--store", None)
    if definitions:
        resolved_definitions = _definitions([str(p) for p in definitions], "--definitions", None)

    if resolved_store is None:
        resolved_store = _default_store(env)
    return Config(
        store=resolved_store,
        definitions=resolved_definitions,
        dispatch=DispatchConfig(
            max_concurrent_runs=max_runs,
            default_executor=executor,
            drain_timeout=drain_timeout,
            tag_limits=tag_limits,
        ),
        scheduler=scheduler,
        retention=retention,
        log=LogConfig(level=level, format=fmt),
        source=path,
    )


def _in_file(exc: ConfigError, path: Path | None) -> ConfigError:
    """`exc` with the file it came from appended, so the operator knows where to look."""
    if path is None:
        return exc
    problem = str(exc).removeprefix(f"configuration {exc.key}: ")
    return ConfigError(exc.key, f"{problem} (in {path})")


def _config_path(flag: Path | None, env: Mapping[str, str]) -> Path | None:
    """The file to read: --config, else TICKD_CONFIG, else ./tickd.toml if it exists."""
    if flag is not None:
        return _existing_file(flag, "--config")
    if ENV_CONFIG in env:
        return _existing_file(Path(env[ENV_CONFIG]), ENV_CONFIG)
    if DEFAULT_CONFIG_FILE.is_file():
        return DEFAULT_CONFIG_FILE
    return None


def _existing_file(path: Path, key: str) -> Path:
    path = path.expanduser()
    if not path.exists():
        raise ConfigError(key, f"{path} does not exist; create it or fix the path")
    if not path.is_file():
        raise ConfigError(key, f"{path} is not a file; point it at a tickd.toml")
    return path


def _default_store(env: Mapping[str, str]) -> str:
    state = env.get("STATE_DIRECTORY")
    if state:
        # systemd passes several directories colon-separated when the unit names several
        return str(Path(state.split(":")[0]) / "tickd.db")
    return DEFAULT_STORE
