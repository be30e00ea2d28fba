"""Finding and importing definition modules, isolating their failures.

`load_definitions(dirs)` imports, from each directory, every `*.py` module and every
package (a directory with `__init__.py`) whose name does not start with `_` or `.`, and
collects the jobs, schedules, sensors and run-status sensors they hold at module level.
It never raises for a bad definition: each problem becomes a `LoadError` naming the file
and the object, and everything else still loads.

How modules are imported:
* Under a unique name, `tickd_definitions_<8 hex of the directory's resolved path>.<stem>`,
  so `definitions/json.py` never shadows the standard library and two directories may
  both hold a `jobs.py`. A process that loads the same directories gets the same names,
  which is what lets worker processes unpickle a job by reference.
* Each directory is appended to `sys.path`, so a definitions module can import a sibling
  helper (`import _helpers`, `from reports import daily_report`). A sibling import of a
  module that the loader also imports resolves to that same module object, so a re-exported
  definition is one object, not a duplicate. Helpers that hold no definitions of their
  own are best named with a leading `_`: they are importable but not scanned.
* A package is scanned through its `__init__.py`: re-export from there the definitions its
  submodules hold.
* Every call is fresh: the modules a previous call imported from these directories are
  dropped from `sys.modules` first, so a reload (SIGHUP) runs the changed code.
  No bytecode is written into the definitions directories.

Names: jobs have their own namespace; schedules, sensors and run-status sensors share one
(their instigator names). The same object seen in two modules (imported from one into the
other) is one definition. Two different objects with one name is an error; the first in
file order is kept. A schedule or sensor that names an unknown job is an error, and is left
out of the registry (it could only fail at every tick).
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import threading
import traceback
import types
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, TypeAlias

from daemon.definitions import Job, RunStatusSensor, Schedule, Sensor
from daemon.errors import DefinitionError, TickdError

Instigator: TypeAlias = Schedule | Sensor | RunStatusSensor

MODULE_PREFIX: Final = "tickd_definitions_"


# ---- results -----------------------------------------------------------------------------


class LoadErrorKind(StrEnum):
    MISSING_DIRECTORY = "missing_directory"
    IMPORT_FAILED = "import_failed"  # the module raised (including a DefinitionError)
    DUPLICATE_NAME = "duplicate_name"
    UNKNOWN_JOB = "unknown_job"


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadError:
    """One problem with the definitions. Sorts by file, then object, then message."""

    kind: LoadErrorKind
    file: Path
    object: str | None  # "schedule 'nightly'", when known
    message: str  # one line: what is wrong and what to do
    traceback: str | None = None  # without locals; for import failures

    @property
    def sort_key(self) -> tuple[str, str, str]:
        return (str(self.file), self.object or "", self.message)

    def __lt__(self, other: LoadError) -> bool:
        return self.sort_key < other.sort_key

    def __str__(self) -> str:
        return f"{self.file}: {self.message}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Registry:
    """The loaded definitions, by name. Only definitions that passed validation."""

    jobs: Mapping[str, Job] = field(default_factory=lambda: types.MappingProxyType({}))
    schedules: Mapping[str, Schedule] = field(default_factory=lambda: types.MappingProxyType({}))
    sensors: Mapping[str, Sensor] = field(default_factory=lambda: types.MappingProxyType({}))
    run_status_sensors: Mapping[str, RunStatusSensor] = field(
        default_factory=lambda: types.MappingProxyType({})
    )
    sources: Mapping[int, Path] = field(
        default_factory=lambda: types.MappingProxyType({}), repr=False
    )  # id(definition) -> the file that defined it

    @property
    def instigators(self) -> Mapping[str, Instigator]:
        """Schedules, sensors and run-status sensors by name (one namespace)."""
        merged: dict[str, Instigator] = {
            **self.schedules,
            **self.sensors,
            **self.run_status_sensors,
        }
        return types.MappingProxyType(merged)

    def job(self, name: str) -> Job:
        """The job called `name`; UnknownDefinitionError (a LookupError) when there is none."""
        try:
            return self.jobs[name]
        except KeyError:
            raise UnknownDefinitionError("job", name, self.jobs) from None

    def instigator(self, name: str) -> Instigator:
        """The schedule or sensor called `name`; UnknownDefinitionError when there is none."""
        found = self.instigators.get(name)
        if found is None:
            raise UnknownDefinitionError("schedule or sensor", name, self.instigators)
        return found

    def source(self, definition: Job | Instigator) -> Path | None:
        """The file that defined `definition` (for a job only referenced by a schedule or
        sensor: the file of the first one that referenced it)."""
        return self.sources.get(id(definition))

    @property
    def total(self) -> int:
        """How many definitions, of every kind."""
        return (
            len(self.jobs) + len(self.schedules) + len(self.sensors) + len(self.run_status_sensors)
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadResult:
    registry: Registry
    errors: tuple[LoadError, ...] = ()
    modules: tuple[Path, ...] = ()  # every module or package file found, imported or not

    @property
    def ok(self) -> bool:
        return not self.errors


class UnknownDefinitionError(TickdError, LookupError):
    def __init__(self, what: str, name: str, known: Iterable[str]) -> None:
        self.what = what
        self.name = name
        close = difflib.get_close_matches(name, list(known), n=3)
        hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
        super().__init__(f"no {what} named {name!r}; {hint}list the definitions with `tickd check`")


class DefinitionsLoadError(TickdError):
    """Raised by `load_registry_or_raise` when any definition failed to load."""

    def __init__(self, errors: Sequence[LoadError]) -> None:
        self.errors = tuple(errors)
        count = len(self.errors)
        lines = "".join(f"\n  {e}" for e in self.errors)
        super().__init__(
            f"{count} problem{'s' if count != 1 else ''} in the definitions "
            f"(run `tickd check` for details):{lines}"
        )


# ---- the entry points --------------------------------------------------------------------

_LOCK = threading.Lock()  # loading mutates sys.modules, sys.path and sys.meta_path
_OWNED: dict[str, set[str]] = {}  # module prefix -> names the last load put in sys.modules


def load_definitions(dirs: Sequence[Path]) -> LoadResult:
    """Import every definitions module in `dirs` and collect what they define.

    Never raises for a bad definition module; see `LoadResult.errors`.
    """
    with _LOCK:
        found: list[_Module] = []
        errors: list[LoadError] = []
        module_files: list[Path] = []
        for directory in dirs:
            if not directory.is_dir():
                errors.append(_missing_directory(directory))
                continue
            candidates = _candidates(directory)
            module_files.extend(c.file for c in candidates)
            loaded, failed = _import_directory(directory, candidates)
            found.extend(loaded)
            errors.extend(failed)
        registry, invalid = _build_registry(found)
    return LoadResult(
        registry=registry, errors=tuple(sorted(errors + invalid)), modules=tuple(module_files)
    )


def load_registry_or_raise(dirs: Sequence[Path]) -> Registry:
    """The registry of `dirs`; DefinitionsLoadError listing every problem if there is any."""
    result = load_definitions(dirs)
    if result.errors:
        raise DefinitionsLoadError(result.errors)
    return result.registry


def log_load_result(result: LoadResult, log: Any, dirs: Sequence[Path]) -> None:
    """Log a load as events: one `definitions.load_failed` per error, then
    `definitions.loaded` with the counts."""
    for error in result.errors:
        log.error(
            "definitions.load_failed",
            file=str(error.file),
            object=error.object,
            problem=error.message,
            kind=error.kind.value,
            traceback=error.traceback,
        )
    registry = result.registry
    log.info(
        "definitions.loaded",
        directories=[str(d) for d in dirs],
        modules=len(result.modules),
        jobs=len(registry.jobs),
        schedules=len(registry.schedules),
        sensors=len(registry.sensors),
        run_status_sensors=len(registry.run_status_sensors),
        errors=len(result.errors),
    )


# ---- importing ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Candidate:
    stem: str
    file: Path  # the .py file, or the package's __init__.py


@dataclass(frozen=True, slots=True)
class _Module:
    file: Path
    module: types.ModuleType


def _missing_directory(directory: Path) -> LoadError:
    what = "is not a directory" if directory.exists() else "does not exist"
    return LoadError(
        kind=LoadErrorKind.MISSING_DIRECTORY,
        file=directory,
        object=None,
        message=f"definitions directory {directory} {what}; create it or pass --definitions",
    )


def _candidates(directory: Path) -> list[_Candidate]:
    out: list[_Candidate] = []
    for entry in sorted(directory.iterdir()):
        if entry.name.startswith(("_", ".")):
            continue
        if entry.is_file() and entry.suffix == ".py":
            out.append(_Candidate(entry.stem, entry))
        elif entry.is_dir() and (entry / "__init__.py").is_file():
            out.append(_Candidate(entry.name, entry / "__init__.py"))
    return out


def module_prefix(directory: Path) -> str:
    """The package name the modules of `directory` are imported under."""
    digest = hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:8]
    return f"{MODULE_PREFIX}{digest}"


def _import_directory(
    directory: Path, candidates: Sequence[_Candidate]
) -> tuple[list[_Module], list[LoadError]]:
    prefix = module_prefix(directory)
    root = directory.resolve()
    _forget(prefix)
    importlib.invalidate_caches()  # see files created since the last load
    if str(root) not in sys.path:
        sys.path.append(str(root))
    package = types.ModuleType(prefix, f"tickd definitions from {directory}")
    package.__path__ = [str(root)]
    sys.modules[prefix] = package

    before = set(sys.modules)
    finder = _SiblingFinder(prefix, root, {c.stem for c in candidates})
    loaded: list[_Module] = []
    errors: list[LoadError] = []
    with _importing(finder):
        for candidate in candidates:
            try:
                module = importlib.import_module(f"{prefix}.{candidate.stem}")
            except (Exception, SystemExit) as exc:  # a definitions module may do anything
                errors.append(_import_failed(candidate.file, root, exc))
                continue
            loaded.append(_Module(candidate.file, module))
    _OWNED[prefix] = {
        name for name in set(sys.modules) - before if _belongs(sys.modules.get(name), prefix, root)
    }
    return loaded, errors


def _forget(prefix: str) -> None:
    """Drop the modules a previous load of this directory imported."""
    stale = _OWNED.pop(prefix, set())
    stale |= {n for n in sys.modules if n == prefix or n.startswith(f"{prefix}.")}
    for name in stale:
        sys.modules.pop(name, None)


def _belongs(module: types.ModuleType | None, prefix: str, root: Path) -> bool:
    if module is None or module.__name__.partition(".")[0] == "daemon":
        return False  # never drop tickd itself, even with --definitions .
    if getattr(module, "__name__", "").startswith(f"{prefix}."):
        return True  # ours, or an alias of ours
    file = getattr(module, "__file__", None)
    return file is not None and Path(file).resolve().is_relative_to(root)


@contextmanager
def _importing(finder: _SiblingFinder) -> Iterator[None]:
    previous = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # no __pycache__ in (possibly read-only) definition dirs
    # After the built-in and frozen importers, so `time` stays the standard library's.
    machinery = importlib.machinery.PathFinder
    at = sys.meta_path.index(machinery) if machinery in sys.meta_path else len(sys.meta_path)
    sys.meta_path.insert(at, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        sys.dont_write_bytecode = previous


class _SiblingFinder(importlib.abc.MetaPathFinder):
    """Makes `import reports` inside a definitions module return the module the loader
    imports as `<prefix>.reports`, instead of a second copy with its own objects.

    It claims a top-level name only when the normal search of sys.path would find it in
    our directory (so `json` is still the standard library's), and submodules of such a
    name (`pkg.jobs` -> `<prefix>.pkg.jobs`).
    """

    def __init__(self, prefix: str, root: Path, stems: set[str]) -> None:
        self.prefix = prefix
        self.root = root
        self.stems = stems

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        top = fullname.partition(".")[0]
        if fullname.startswith(f"{self.prefix}.") or top not in self.stems:
            return None
        if top == fullname:
            spec = importlib.machinery.PathFinder.find_spec(fullname)
            origin = spec.origin if spec is not None else None
            if origin is None or not Path(origin).resolve().is_relative_to(self.root):
                return None
        else:
            parent = sys.modules.get(top)
            if getattr(parent, "__name__", None) != f"{self.prefix}.{top}":
                return None
        real = f"{self.prefix}.{fullname}"
        return importlib.util.spec_from_loader(fullname, _AliasLoader(real))


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, real: str) -> None:
        self.real = real

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return importlib.import_module(self.real)

    def exec_module(self, module: types.ModuleType) -> None:
        pass  # already executed under its real name


# ---- import failures ---------------------------------------------------------------------


def _import_failed(file: Path, root: Path, exc: BaseException) -> LoadError:
    line = _user_line(exc, file)
    where = f" (line {line})" if line is not None else ""
    obj: str | None = None
    if isinstance(exc, DefinitionError):
        obj = exc.obj
        message = f"{exc}{where}"
    elif isinstance(exc, SyntaxError):
        culprit = Path(exc.filename) if exc.filename else file
        inside = "" if culprit.resolve() == file.resolve() else f" in {exc.filename}"
        message = f"{type(exc).__name__}{inside}: {exc.msg} (line {exc.lineno}); fix the syntax"
    elif isinstance(exc, SystemExit):
        message = (
            f"the module called sys.exit({exc.code!r}) while being imported{where}; "
            "a definitions module must not exit"
        )
    else:
        summary = traceback.format_exception_only(exc)[-1].strip()
        message = f"import failed: {summary}{where}"
    return LoadError(
        kind=LoadErrorKind.IMPORT_FAILED,
        file=file,
        object=obj,
        message=message,
        traceback=_format_traceback(exc, root),
    )


def _user_line(exc: BaseException, file: Path) -> int | None:
    """The line of `file` the exception came through, last one first."""
    target = file.resolve()
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if Path(tb.tb_frame.f_code.co_filename).resolve() == target:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _format_traceback(exc: BaseException, root: Path) -> str:
    """The traceback from the first frame in the definitions directory (the loader's and
    importlib's frames cut). For a DefinitionError, also without the frames inside tickd
    that validated the definition: the user's line is what matters. Never with locals."""
    report = traceback.TracebackException(type(exc), exc, exc.__traceback__, capture_locals=False)
    frames = list(report.stack)
    ours = [i for i, f in enumerate(frames) if _is_under(f.filename, root)]
    if ours:
        last = ours[-1] + 1 if isinstance(exc, DefinitionError) else len(frames)
        frames = frames[ours[0] : last]
    else:
        frames = [f for f in frames if not _is_machinery(f.filename)]
    report.stack = traceback.StackSummary.from_list(frames)
    return "".join(report.format()).rstrip("\n")


_IMPORTLIB_DIR: Final = str(Path(importlib.__file__).parent)


def _is_machinery(filename: str) -> bool:
    return (
        filename == __file__
        or filename.startswith("<frozen importlib")
        or filename.startswith(_IMPORTLIB_DIR)
    )


def _is_under(filename: str, root: Path) -> bool:
    return not filename.startswith("<") and Path(filename).resolve().is_relative_to(root)


# ---- the registry ------------------------------------------------------------------------

_KINDS: Final = (Job, Schedule, Sensor, RunStatusSensor)


def _describe(definition: Job | Instigator) -> str:
    kind = {
        Job: "job",
        Schedule: "schedule",
        Sensor: "sensor",
        RunStatusSensor: "run_status_sensor",
    }[type(definition)]
    return f"{kind} {definition.name!r}"


class _Collector:
    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.instigators: dict[str, Instigator] = {}
        self.sources: dict[int, Path] = {}
        self.errors: list[LoadError] = []

    def add(self, definition: Job | Instigator, file: Path) -> None:
        table: dict[str, Any] = self.jobs if isinstance(definition, Job) else self.instigators
        existing = table.get(definition.name)
        if existing is definition:
            return
        if existing is not None:
            self.errors.append(self._duplicate(existing, definition, file))
            return
        table[definition.name] = definition
        self.sources[id(definition)] = file

    def _duplicate(
        self, kept: Job | Instigator, dropped: Job | Instigator, file: Path
    ) -> LoadError:
        first = self.sources[id(kept)]
        where = f"twice in {file}" if first == file else f"twice: in {first} and in {file}"
        if type(kept) is type(dropped):
            message = f"{_describe(dropped)} is defined {where}; rename one"
        else:
            message = (
                f"{_describe(kept)} in {first} and {_describe(dropped)} in {file} share the "
                "name; rename one (schedules and sensors share one namespace)"
            )
        return LoadError(
            kind=LoadErrorKind.DUPLICATE_NAME,
            file=file,
            object=_describe(dropped),
            message=f"{message} (the one in {first} was kept)",
        )

    def resolve(self, instigator: Instigator, ref: Job | str, role: str) -> bool:
        """Whether `ref` names a known job; records an error naming the fix if not."""
        file = self.sources[id(instigator)]
        name = ref if isinstance(ref, str) else ref.name
        known = self.jobs.get(name)
        if isinstance(ref, Job) and known is None:
            self.jobs[name] = ref  # a job only referenced, never bound at module level
            self.sources[id(ref)] = file
            return True
        if known is not None and (isinstance(ref, str) or known is ref):
            return True
        if known is None:
            close = difflib.get_close_matches(name, list(self.jobs), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problem = f"{role} {name!r}, which is not defined{hint}"
            fix = f"define @job {name!r} or fix the name"
        else:
            problem = (
                f"{role} {name!r}, a different object from the job {name!r} "
                f"in {self.sources[id(known)]}"
            )
            fix = "refer to that job, or rename one of them"
        self.errors.append(
            LoadError(
                kind=LoadErrorKind.UNKNOWN_JOB,
                file=file,
                object=_describe(instigator),
                message=f"{_describe(instigator)} refers to {problem}; {fix}",
            )
        )
        return False


def _references(instigator: Instigator) -> list[tuple[Job | str, str]]:
    if isinstance(instigator, Schedule):
        return [(instigator.job, "job")]
    if isinstance(instigator, Sensor):
        return [(j, "job") for j in instigator.jobs]
    watched = [(j, "watched job") for j in instigator.watched_jobs]
    return watched + [(j, "job") for j in instigator.jobs]


def _build_registry(modules: Sequence[_Module]) -> tuple[Registry, list[LoadError]]:
    collector = _Collector()
    # First every definition bound at module level, in file order, then the references,
    # so a job defined in a later file is found by a schedule in an earlier one.
    for loaded in modules:
        for value in list(vars(loaded.module).values()):
            if isinstance(value, _KINDS):
                collector.add(value, loaded.file)
    valid = []
    for instigator in list(collector.instigators.values()):
        resolved = [
            collector.resolve(instigator, ref, role) for ref, role in _references(instigator)
        ]
        if all(resolved):  # every reference checked, so each unknown job gets its error
            valid.append(instigator)
    proxy = types.MappingProxyType
    registry = Registry(
        jobs=proxy(dict(collector.jobs)),
        schedules=proxy({i.name: i for i in valid if isinstance(i, Schedule)}),
        sensors=proxy({i.name: i for i in valid if isinstance(i, Sensor)}),
        run_status_sensors=proxy({i.name: i for i in valid if isinstance(i, RunStatusSensor)}),
        sources=proxy(dict(collector.sources)),
    )
    return registry, collector.errors
