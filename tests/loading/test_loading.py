"""The loader: every module imported in isolation, every problem reported, nothing lost."""

from __future__ import annotations

import shutil
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.definitions import Job, RunStatusSensor, Schedule, Sensor
from daemon.loading import (
    MODULE_PREFIX,
    DefinitionsLoadError,
    LoadError,
    LoadErrorKind,
    UnknownDefinitionError,
    load_definitions,
    load_registry_or_raise,
    module_prefix,
)

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def _isolate_imports() -> Iterator[None]:
    """Leave sys.path and sys.modules as they were: the loader edits both."""
    path = list(sys.path)
    modules = set(sys.modules)
    yield
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        if name.partition(".")[0] != "daemon":
            del sys.modules[name]


def copy_fixture(name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    shutil.copytree(FIXTURES / name, target)
    return target


def errors_of(errors: tuple[LoadError, ...], file: Path) -> list[LoadError]:
    return [e for e in errors if e.file == file]


# ---- broken modules ----------------------------------------------------------------------


def test_a_broken_module_does_not_stop_the_others(tmp_path: Path) -> None:
    d = copy_fixture("mixed", tmp_path)
    (d / "syntax.py").write_text("def broken(:\n    pass\n")

    result = load_definitions([d])

    assert set(result.registry.jobs) == {"good_job"}
    assert set(result.registry.schedules) == {"good_schedule"}
    failed = {e.file.name for e in result.errors}
    assert failed == {"raises.py", "exits.py", "bad_cron.py", "bad_timezone.py", "syntax.py"}
    assert all(e.kind is LoadErrorKind.IMPORT_FAILED for e in result.errors)
    assert not result.ok


def test_an_exception_at_import_names_it_with_its_line_and_keeps_the_traceback(
    tmp_path: Path,
) -> None:
    d = copy_fixture("mixed", tmp_path)
    [error] = errors_of(load_definitions([d]).errors, d / "raises.py")

    assert error.message == ("import failed: RuntimeError: cannot reach the database (line 10)")
    assert error.traceback is not None
    assert "Traceback (most recent call last)" in error.traceback
    assert 'raise RuntimeError("cannot reach the database")' in error.traceback
    assert "hunter2-secret" in error.traceback  # the source line itself is shown ...
    assert "password = " not in error.traceback  # ... but never a local variable's value
    assert "daemon/loading.py" not in error.traceback  # the loader's own frames are cut


def test_sys_exit_at_import_is_an_error_not_an_exit(tmp_path: Path) -> None:
    d = copy_fixture("mixed", tmp_path)
    [error] = errors_of(load_definitions([d]).errors, d / "exits.py")
    assert "sys.exit(3)" in error.message
    assert "must not exit" in error.message


def test_a_syntax_error_names_the_line(tmp_path: Path) -> None:
    d = copy_fixture("mixed", tmp_path)
    (d / "syntax.py").write_text("x = 1\ndef broken(:\n    pass\n")
    [error] = errors_of(load_definitions([d]).errors, d / "syntax.py")
    assert error.message.startswith("SyntaxError: ")
    assert "(line 2)" in error.message


def test_an_invalid_cron_shows_the_definition_error_first(tmp_path: Path) -> None:
    d = copy_fixture("mixed", tmp_path)
    [error] = errors_of(load_definitions([d]).errors, d / "bad_cron.py")
    assert error.message.startswith("cron '61 * * * *': invalid minute field")
    assert error.message.endswith("(line 9)")
    assert error.object == "cron '61 * * * *'"
    # the traceback shows the user's line, not tickd's validation internals
    assert error.traceback is not None
    assert 'nightly = Schedule(name="nightly", cron="61 * * * *", job=cron_job)' in error.traceback
    assert "daemon/domain/cron.py" not in error.traceback
    assert "importlib" not in error.traceback


def test_an_unknown_timezone_names_the_zone(tmp_path: Path) -> None:
    d = copy_fixture("mixed", tmp_path)
    [error] = errors_of(load_definitions([d]).errors, d / "bad_timezone.py")
    assert "unknown timezone 'Mars/Olympus_Mons'" in error.message
    assert "IANA" in error.message


def test_modules_starting_with_an_underscore_are_not_loaded(tmp_path: Path) -> None:
    d = copy_fixture("mixed", tmp_path)
    result = load_definitions([d])
    assert not errors_of(result.errors, d / "_helper.py")
    assert d / "_helper.py" not in result.modules


# ---- names ---------------------------------------------------------------------------------


def test_two_jobs_with_one_name_name_both_files(tmp_path: Path) -> None:
    d = copy_fixture("duplicates", tmp_path)
    result = load_definitions([d])

    [error] = result.errors
    assert error.kind is LoadErrorKind.DUPLICATE_NAME
    assert error.message == (
        f"job 'report' is defined twice: in {d / 'a.py'} and in {d / 'b.py'}; rename one "
        f"(the one in {d / 'a.py'} was kept)"
    )
    assert error.file == d / "b.py"
    assert result.registry.job("report").fn.__name__ == "report"  # the first one is kept


def test_schedules_and_sensors_share_one_namespace(tmp_path: Path) -> None:
    d = copy_fixture("cross_kind", tmp_path)
    result = load_definitions([d])
    [error] = result.errors
    assert "schedule 'shared'" in error.message and "sensor 'shared'" in error.message
    assert "share one namespace" in error.message
    assert isinstance(result.registry.instigator("shared"), Schedule)


def test_a_re_exported_definition_is_not_a_duplicate(tmp_path: Path) -> None:
    d = copy_fixture("reexport", tmp_path)
    result = load_definitions([d])

    assert result.errors == ()
    registry = result.registry
    assert set(registry.jobs) == {"nightly"}
    assert set(registry.schedules) == {"nightly_schedule", "frequent"}
    assert set(registry.sensors) == {"watcher"}
    # `from jobs import nightly` gave the loader's own module, so one object throughout
    assert registry.schedules["nightly_schedule"].job is registry.job("nightly")
    assert registry.source(registry.job("nightly")) == d / "jobs.py"
    assert registry.source(registry.schedules["nightly_schedule"]) == d / "schedules.py"
    prefix = module_prefix(d)
    assert sys.modules["jobs"] is sys.modules[f"{prefix}.jobs"]


# ---- references ----------------------------------------------------------------------------


def test_a_reference_to_an_unknown_job_is_an_error_with_the_fix(tmp_path: Path) -> None:
    d = copy_fixture("unknown_job", tmp_path)
    result = load_definitions([d])

    messages = sorted(e.message for e in result.errors)
    assert messages == [
        "run_status_sensor 'after_ghost' refers to watched job 'ghost', which is not defined; "
        "define @job 'ghost' or fix the name",
        "schedule 'impostor' refers to job 'shared_name', a different object from the job "
        f"'shared_name' in {d / 'impostor.py'}; refer to that job, or rename one of them",
        "schedule 'typo' refers to job 'reprot', which is not defined (did you mean 'report'?); "
        "define @job 'reprot' or fix the name",
        "sensor 'looks' refers to job 'missing_job', which is not defined; "
        "define @job 'missing_job' or fix the name",
    ]
    assert all(e.kind is LoadErrorKind.UNKNOWN_JOB for e in result.errors)
    assert {e.object for e in result.errors} == {
        "run_status_sensor 'after_ghost'",
        "schedule 'impostor'",
        "schedule 'typo'",
        "sensor 'looks'",
    }
    # invalid instigators are left out; the jobs stay
    assert len(result.registry.instigators) == 0
    assert set(result.registry.jobs) == {"report", "shared_name"}


def test_a_job_only_referenced_by_a_schedule_is_registered(tmp_path: Path) -> None:
    (tmp_path / "inline.py").write_text(
        "from daemon import Schedule\n"
        "from daemon.definitions import make_job\n"
        "def work(context):\n"
        "    pass\n"
        "only_schedule = Schedule(name='only', cron='0 * * * *', job=make_job(work))\n"
    )
    result = load_definitions([tmp_path])
    assert result.errors == ()
    assert result.registry.schedules["only"].job is result.registry.job("work")
    assert result.registry.source(result.registry.job("work")) == tmp_path / "inline.py"


# ---- packages, several directories, reloads --------------------------------------------------


def test_a_package_is_loaded_through_its_init(tmp_path: Path) -> None:
    d = copy_fixture("package", tmp_path)
    result = load_definitions([d])

    assert result.errors == ()
    assert set(result.registry.jobs) == {"packaged_job"}
    assert set(result.registry.schedules) == {"packaged_schedule", "second"}
    assert result.registry.source(result.registry.job("packaged_job")) == d / "pkg/__init__.py"
    assert d / "not_a_package" / "module.py" not in result.modules


def test_several_directories_may_hold_modules_of_one_name(tmp_path: Path) -> None:
    for name, job_name in (("one", "first"), ("two", "second")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "jobs.py").write_text(
            f"from daemon import job\n@job(name={job_name!r})\ndef fn(context):\n    pass\n"
        )
    result = load_definitions([tmp_path / "one", tmp_path / "two"])
    assert result.errors == ()
    assert set(result.registry.jobs) == {"first", "second"}


def test_modules_get_stable_unique_names(tmp_path: Path) -> None:
    d = copy_fixture("reexport", tmp_path)
    prefix = module_prefix(d)
    assert prefix.startswith(MODULE_PREFIX) and len(prefix) == len(MODULE_PREFIX) + 8
    assert module_prefix(d / ".") == prefix
    registry = load_definitions([d]).registry
    assert registry.job("nightly").fn.__module__ == f"{prefix}.jobs"


def test_a_reload_runs_the_changed_code(tmp_path: Path) -> None:
    (tmp_path / "_names.py").write_text("JOB = 'before'\n")
    module = tmp_path / "mod.py"
    module.write_text(
        "import _names\nfrom daemon import job\n@job(name=_names.JOB)\ndef fn(context):\n    pass\n"
    )
    assert set(load_definitions([tmp_path]).registry.jobs) == {"before"}

    (tmp_path / "_names.py").write_text("JOB = 'after, changed'\n")
    module.write_text(module.read_text() + "\n@job\ndef added(context):\n    pass\n")
    (tmp_path / "new.py").write_text(
        "from daemon import job\n@job\ndef fresh(context):\n    pass\n"
    )

    assert set(load_definitions([tmp_path]).registry.jobs) == {"after, changed", "added", "fresh"}
    assert not (tmp_path / "__pycache__").exists()  # no bytecode in the definitions dir


def test_a_reload_forgets_a_deleted_module(tmp_path: Path) -> None:
    (tmp_path / "gone.py").write_text(
        "from daemon import job\n@job\ndef gone(context):\n    pass\n"
    )
    assert set(load_definitions([tmp_path]).registry.jobs) == {"gone"}
    (tmp_path / "gone.py").unlink()
    assert load_definitions([tmp_path]).registry.jobs == {}


# ---- directories -----------------------------------------------------------------------------


def test_a_missing_directory_is_an_error_with_the_fix(tmp_path: Path) -> None:
    missing = tmp_path / "x"
    result = load_definitions([missing])
    [error] = result.errors
    assert error.kind is LoadErrorKind.MISSING_DIRECTORY
    assert error.message == (
        f"definitions directory {missing} does not exist; create it or pass --definitions"
    )


def test_an_empty_directory_loads_nothing_without_error(tmp_path: Path) -> None:
    result = load_definitions([tmp_path])
    assert result.ok and result.modules == () and result.registry.total == 0


# ---- the registry and the error values ---------------------------------------------------------


def test_the_registry_is_read_only_and_looks_up_by_name(tmp_path: Path) -> None:
    d = copy_fixture("reexport", tmp_path)
    registry = load_definitions([d]).registry
    assert isinstance(registry.jobs, types.MappingProxyType)
    with pytest.raises(TypeError):
        registry.jobs["x"] = registry.job("nightly")  # type: ignore[index]
    assert isinstance(registry.job("nightly"), Job)
    assert isinstance(registry.instigator("watcher"), Sensor)
    assert not isinstance(registry.instigator("frequent"), RunStatusSensor)
    with pytest.raises(UnknownDefinitionError, match=r"did you mean 'nightly'\?"):
        registry.job("nighty")
    with pytest.raises(LookupError, match="no schedule or sensor named 'nope'"):
        registry.instigator("nope")


def test_errors_are_sorted_and_stable(tmp_path: Path) -> None:
    d = copy_fixture("mixed", tmp_path)
    first = load_definitions([d, tmp_path / "missing"]).errors
    second = load_definitions([d, tmp_path / "missing"]).errors
    assert list(first) == sorted(first)
    assert [(e.file, e.object, e.message) for e in first] == [
        (e.file, e.object, e.message) for e in second
    ]


def test_load_registry_or_raise_lists_every_problem(tmp_path: Path) -> None:
    d = copy_fixture("duplicates", tmp_path)
    with pytest.raises(DefinitionsLoadError) as caught:
        load_registry_or_raise([d])
    assert "1 problem in the definitions" in str(caught.value)
    assert "job 'report' is defined twice" in str(caught.value)
    ok = copy_fixture("reexport", tmp_path)
    assert set(load_registry_or_raise([ok]).jobs) == {"nightly"}


def test_a_module_named_like_the_standard_library_shadows_nothing(tmp_path: Path) -> None:
    (tmp_path / "json.py").write_text(
        "from daemon import job\n@job\ndef json_job(context):\n    pass\n"
    )
    (tmp_path / "uses_json.py").write_text(
        "import json\nassert json.dumps({'a': 1}) == '{\"a\": 1}'\n"
    )
    result = load_definitions([tmp_path])
    assert result.errors == ()
    assert set(result.registry.jobs) == {"json_job"}
