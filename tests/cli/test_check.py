"""`tickd check` through a real process: what an operator and CI see, and the exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from daemon.cli import main

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "definitions"


def tickd(
    *args: str | Path, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TICKD_")}
    clean.pop("STATE_DIRECTORY", None)
    clean["NO_COLOR"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "daemon", *map(str, args)],
        cwd=cwd,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_the_examples_load_cleanly_and_are_listed(tmp_path: Path) -> None:
    done = tickd("check", "--definitions", EXAMPLES, cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    out = done.stdout
    for name in (
        "heartbeat",
        "every_minute",
        "daily_report",
        "daily_report_schedule",
        "publish",
        "publish_after_report",
        "ingest",
        "inbox",
        "refresh_warehouse",
    ):
        assert f"  {name}  " in out, name
    assert "all, at most 3" in out
    assert "tags        db=warehouse" in out
    assert "CET" in out or "CEST" in out  # Berlin wall times next to UTC
    assert out.rstrip().endswith("OK: 5 jobs, 3 schedules, 1 sensor, 1 run-status sensor")
    assert "\033[" not in out
    assert not (tmp_path / "var").exists()  # loading created nothing: no store, no spool


def test_json_output_parses_and_carries_iso_times(tmp_path: Path) -> None:
    done = tickd("check", "--json", "--definitions", EXAMPLES, cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert set(report) >= {"jobs", "schedules", "sensors", "run_status_sensors", "errors"}
    assert report["errors"] == []
    jobs = {j["name"]: j for j in report["jobs"]}
    assert jobs["refresh_warehouse"]["tags"] == {"db": "warehouse"}
    assert jobs["refresh_warehouse"]["priority"] == 5
    assert jobs["heartbeat"]["executor"] == "process"
    schedules = {s["name"]: s for s in report["schedules"]}
    daily = schedules["daily_report_schedule"]
    assert (daily["catchup"], daily["max_catchup"], daily["timezone"]) == (
        "all",
        3,
        "Europe/Berlin",
    )
    assert len(daily["next"]) == 3
    for fire in daily["next"]:
        local, utc = datetime.fromisoformat(fire["local"]), datetime.fromisoformat(fire["utc"])
        assert local == utc and utc.utcoffset() is not None and local.utcoffset() is not None
        assert (local.hour, local.minute) == (0, 0)  # Berlin midnight
        assert fire["partition_key"] == (local.date() - timedelta(days=1)).isoformat()
    [sensor] = report["sensors"]
    assert (sensor["name"], sensor["minimum_interval"], sensor["jobs"]) == ("inbox", 10, ["ingest"])
    [chained] = report["run_status_sensors"]
    assert (chained["watched_jobs"], chained["statuses"], chained["jobs"]) == (
        ["daily_report"],
        ["SUCCESS"],
        ["publish"],
    )


def test_a_broken_module_fails_the_check_and_is_named(tmp_path: Path) -> None:
    defs = tmp_path / "defs"
    defs.mkdir()
    (defs / "fine.py").write_text("from daemon import job\n@job\ndef fine(context):\n    pass\n")
    (defs / "broken.py").write_text("import os\nraise KeyError('DATABASE_URL')\n")

    done = tickd("check", "--definitions", defs, cwd=tmp_path)

    assert done.returncode == 1
    assert str(defs / "broken.py") in done.stdout
    assert "import failed: KeyError: 'DATABASE_URL' (line 2)" in done.stdout
    assert "      Traceback (most recent call last):" in done.stdout  # indented traceback
    assert "  fine  " in done.stdout  # the good module still loaded
    assert "check failed: 1 problem" in done.stderr

    as_json = tickd("check", "--json", "--definitions", defs, cwd=tmp_path)
    assert as_json.returncode == 1
    [error] = json.loads(as_json.stdout)["errors"]
    assert error["file"] == str(defs / "broken.py")
    assert error["kind"] == "import_failed"
    assert "Traceback" in error["traceback"]


def test_a_missing_definitions_directory_says_what_to_do(tmp_path: Path) -> None:
    done = tickd("check", cwd=tmp_path)  # ./definitions by default
    assert done.returncode == 1
    assert "definitions directory definitions does not exist; create it or pass --definitions" in (
        done.stdout
    )


def test_an_empty_definitions_directory_is_fine(tmp_path: Path) -> None:
    (tmp_path / "definitions").mkdir()
    done = tickd("check", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "No definitions found." in done.stdout


def test_a_bad_flag_is_a_usage_error(tmp_path: Path) -> None:
    done = tickd("check", "--no-such-flag", cwd=tmp_path)
    assert done.returncode == 2
    assert "unrecognized arguments: --no-such-flag" in done.stderr
    assert done.stdout == ""


def test_a_bad_config_value_exits_78_naming_the_key(tmp_path: Path) -> None:
    (tmp_path / "tickd.toml").write_text("[dispatch]\nmax_concurrent_runs = 0\n")
    done = tickd("check", cwd=tmp_path)
    assert done.returncode == 78
    assert done.stderr.startswith("tickd: error: configuration dispatch.max_concurrent_runs: ")
    assert done.stdout == ""

    (tmp_path / "tickd.toml").unlink()
    env_done = tickd("check", cwd=tmp_path, env={"TICKD_LOG_LEVEL": "loud"})
    assert env_done.returncode == 78
    assert "TICKD_LOG_LEVEL" in env_done.stderr


# In-process: the argument parsing around the command (no subprocess needed).


def test_global_options_are_accepted_after_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TICKD_DEFINITIONS", raising=False)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one.py").write_text(
        "from daemon import job\n@job\ndef one(context):\n    pass\n"
    )
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "two.py").write_text(
        "from daemon import job\n@job\ndef two(context):\n    pass\n"
    )

    code = main(["--definitions", "a", "check", "--json", "--definitions", "b"])

    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["definitions"] == ["a", "b"]
    assert [j["name"] for j in report["jobs"]] == ["one", "two"]


def test_no_command_prints_help_and_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "check" in capsys.readouterr().err
