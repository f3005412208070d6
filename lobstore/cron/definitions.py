"""The jobs file: which commands the scheduler runs, when, and how (TOML, read with tomllib).

::

    [scheduler]                      # optional
    catch_up_window = 60             # s: a slot missed while no scheduler ran runs once at start-up
                                     #    if it is at most this old (upstream's misfire grace)
    stop_grace = 20                  # s: running jobs get this long on shutdown, then are killed

    [defaults]                       # optional: what every job gets unless it says otherwise
    timeout = 300
    env = { VAULT_PATH = "/home/lobwife/vault" }

    [jobs.task-manager]
    command = ["python3", "/opt/lobmob/scripts/server/lobmob-task-manager.py"]  # or a shell line
    schedule = "*/5 * * * *"         # 5 fields, UTC
    description = "Task assignment, timeout detection, orphan recovery"
    concurrency = "forbid"           # forbid (default): skip a slot while the last run is alive; allow
    timeout = 300                    # s (default 300): past it the run's process group is killed
    env = { LOG_DIR = "/tmp" }       # added to the server's environment; $VAR / ${VAR} expand
    working_dir = "/opt/lobmob"      # default: the jobs file's folder
    enabled = true                   # the first value only: after that the stored state wins

A file that cannot be used is refused as a whole, with the file, the job and the field named.
"""

from __future__ import annotations

import os
import re
import shlex
import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError
from ..repositories.jobs import CONCURRENCY, MAX_DURATION, job_name
from .schedule import CronSchedule

DEFAULT_TIMEOUT = 300.0  # upstream lobwife's
DEFAULT_CATCH_UP_WINDOW = 60.0  # upstream lobwife's misfire_grace_time
DEFAULT_STOP_GRACE = 20.0
SHELL = "/bin/sh"

JOB_FIELDS = ("command", "schedule", "description", "concurrency", "timeout", "env", "working_dir", "enabled")
DEFAULT_FIELDS = ("concurrency", "timeout", "env", "working_dir", "enabled")
SCHEDULER_FIELDS = ("catch_up_window", "stop_grace")
TOP_LEVEL = ("scheduler", "defaults", "jobs")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class JobDefinition:
    """One job of the jobs file, checked."""

    name: str
    command: tuple[str, ...] | str  # an argv list, or a line for /bin/sh -c
    schedule: CronSchedule
    description: str = ""
    concurrency: str = "forbid"
    timeout: float = DEFAULT_TIMEOUT
    env: Mapping[str, str] = field(default_factory=dict)  # added to the server's environment
    working_dir: Path = field(default_factory=Path.cwd)
    enabled: bool = True  # the initial value only

    @property
    def argv(self) -> list[str]:
        return [SHELL, "-c", self.command] if isinstance(self.command, str) else list(self.command)

    @property
    def command_line(self) -> str:
        """The command as one line (what the API shows as ``command`` and ``script``)."""
        return self.command if isinstance(self.command, str) else shlex.join(self.command)


@dataclass(frozen=True)
class JobsFile:
    path: Path | None
    jobs: tuple[JobDefinition, ...]
    catch_up_window: float = DEFAULT_CATCH_UP_WINDOW
    stop_grace: float = DEFAULT_STOP_GRACE


def load_jobs(path: str | Path, environ: Mapping[str, str] = os.environ) -> JobsFile:
    """Read and check a jobs file. ``environ`` is what ``$VAR`` in ``env`` values expands from."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigurationError(f"jobs file {path}: no such file") from None
    except OSError as exc:
        raise ConfigurationError(f"jobs file {path}: cannot be read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"jobs file {path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:  # tomllib decodes the bytes as UTF-8 itself
        raise ConfigurationError(f"jobs file {path}: not UTF-8 text: {exc}") from None
    return parse_jobs(data, path=path, environ=environ)


def parse_jobs(data: Mapping[str, Any], *, path: Path | None = None,
               environ: Mapping[str, str] = os.environ) -> JobsFile:
    """Check the contents of a jobs file (as tomllib reads it). Relative working directories
    are taken from the file's folder (else the current one)."""
    where = f"jobs file {path}" if path is not None else "jobs"
    base = path.parent.resolve() if path is not None else Path.cwd()

    def fail(job: str | None, key: str | None, problem: str) -> ConfigurationError:
        parts = [where] + ([f"job {job!r}"] if job else []) + ([key] if key else [])
        return ConfigurationError(f"{': '.join(parts)}: {problem}", job=job, field=key)

    _only(data, TOP_LEVEL, lambda key, problem: fail(None, key, problem))
    scheduler = _table(data.get("scheduler", {}), lambda problem: fail(None, "scheduler", problem))
    _only(scheduler, SCHEDULER_FIELDS, lambda key, problem: fail(None, f"scheduler.{key}", problem))
    settings = {}
    for key, default in (("catch_up_window", DEFAULT_CATCH_UP_WINDOW), ("stop_grace", DEFAULT_STOP_GRACE)):
        try:
            settings[key] = _seconds(scheduler.get(key, default), zero=True)
        except ValueError as exc:
            raise fail(None, f"scheduler.{key}", str(exc)) from None

    defaults = _table(data.get("defaults", {}), lambda problem: fail(None, "defaults", problem))
    _only(defaults, DEFAULT_FIELDS, lambda key, problem: fail(None, f"defaults.{key}", problem))
    jobs_table = _table(data.get("jobs"), lambda problem: fail(None, "jobs", problem))
    if not jobs_table:
        raise fail(None, "jobs", "no jobs defined: add a [jobs.NAME] table with a command and a schedule")

    jobs = []
    for name, spec in jobs_table.items():
        try:
            job_name(name)
        except ValueError as exc:
            raise fail(name, None, f"the job name {exc}") from None
        spec = _table(spec, lambda problem: fail(name, None, problem))
        _only(spec, JOB_FIELDS, lambda key, problem: fail(name, key, problem))
        merged = {**defaults, **spec, "env": {**_table(defaults.get("env", {}), lambda p: fail(None, "defaults.env", p)),
                                               **_table(spec.get("env", {}), lambda p: fail(name, "env", p))}}
        jobs.append(_job(name, merged, base, environ, lambda key, problem, name=name: fail(name, key, problem)))
    return JobsFile(path=path, jobs=tuple(jobs), **settings)


def _job(name: str, spec: Mapping[str, Any], base: Path, environ: Mapping[str, str], fail: Any) -> JobDefinition:
    checks = {
        "command": _command,
        "schedule": lambda v: CronSchedule(_required(v)),
        "description": lambda v: _text(v, 1000) if v is not None else "",
        "concurrency": lambda v: _concurrency("forbid" if v is None else v),
        "timeout": lambda v: _seconds(DEFAULT_TIMEOUT if v is None else v, zero=False),
        "env": lambda v: _env(v, environ),
        "working_dir": lambda v: _folder(base if v is None else v, base),
        "enabled": lambda v: _bool(True if v is None else v),
    }
    values: dict[str, Any] = {}
    for key, check in checks.items():
        try:
            values[key] = check(spec.get(key))
        except ValueError as exc:
            raise fail(key, str(exc)) from None
    return JobDefinition(name=name, **values)


def _only(table: Mapping[str, Any], known: tuple[str, ...], fail: Any) -> None:
    for key in table:
        if key not in known:
            raise fail(key, f"unknown field (known: {', '.join(known)})")


def _table(value: Any, fail: Any) -> dict[str, Any]:
    if value is None:
        raise fail("is missing: add a [jobs.NAME] table per job")
    if not isinstance(value, dict):
        raise fail(f"must be a table, not {_kind(value)}")
    return value


def _required(value: Any) -> Any:
    if value is None:
        raise ValueError("is required")
    return value


def _command(value: Any) -> tuple[str, ...] | str:
    value = _required(value)
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("must not be empty: a shell line, or a list of the program and its arguments")
        _no_nul(value)
        return value
    if isinstance(value, list):
        if not value:
            raise ValueError("must not be an empty list: give the program and its arguments")
        for item in value:
            if not isinstance(item, str):
                raise ValueError(f"must be a list of strings; {item!r} is {_kind(item)}")
            _no_nul(item)
        if not value[0]:
            raise ValueError("the program (the list's first item) must not be empty")
        return tuple(value)
    raise ValueError(f"must be a shell line (string) or a list of strings, not {_kind(value)}")


def _text(value: Any, limit: int) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {_kind(value)}")
    if len(value) > limit:
        raise ValueError(f"must be at most {limit} characters, got {len(value)}")
    _no_nul(value)
    return value


def _concurrency(value: Any) -> str:
    if value not in CONCURRENCY:
        raise ValueError(f"must be one of {', '.join(CONCURRENCY)}, got {value!r}")
    return value


def _seconds(value: Any, *, zero: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ValueError(f"must be a number of seconds, not {_kind(value)}")
    if value < 0 or (not zero and value == 0) or value > MAX_DURATION:
        low = "0" if zero else "above 0"
        raise ValueError(f"must be {low} and at most {MAX_DURATION:.0f} seconds, got {value}")
    return float(value)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, not {_kind(value)}")
    return value


def _env(value: Any, environ: Mapping[str, str]) -> dict[str, str]:
    out = {}
    for key, raw in value.items():
        if not _ENV_NAME.match(key):
            raise ValueError(f"{key!r} is not a variable name (letters, digits and _, not starting with a digit)")
        if not isinstance(raw, str):
            raise ValueError(f"{key} must be a string, not {_kind(raw)} (quote numbers: {key} = \"{raw}\")")
        _no_nul(raw)
        try:
            out[key] = string.Template(raw).substitute(environ)
        except KeyError as exc:
            raise ValueError(f"{key} uses ${exc.args[0]}, which is not set in the server's environment") from None
        except ValueError:
            raise ValueError(f"{key}: a $ must start $NAME or ${{NAME}}; write $$ for a literal $") from None
    return out


def _folder(value: Any, base: Path) -> Path:
    if not isinstance(value, (str, Path)) or not str(value):
        raise ValueError(f"must be a folder path, not {_kind(value)}")
    folder = (base / Path(value).expanduser()).resolve()
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder")
    return folder


def _no_nul(value: str) -> None:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")


def _kind(value: Any) -> str:
    return {dict: "a table", list: "a list", str: "a string", bool: "a boolean"}.get(type(value), type(value).__name__)
