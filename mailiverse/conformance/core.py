"""The conformance runner's machinery: the checker registry and the case loop."""

from __future__ import annotations

import contextvars
import importlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Top-level keys that describe a file rather than hold cases.
METADATA_KEYS = frozenset({"description", "schema", "set", "encodings", "comparison", "notes"})

#: Modules that register checkers; imported lazily by :func:`load_checkers`.
CHECKER_MODULES = (
    "mailiverse.conformance.files_crypto",
    "mailiverse.conformance.files_srp",
    "mailiverse.conformance.files_mime",
)


class NotUnderstood(Exception):
    """A vector file, section or case that no checker knows how to run."""


@dataclass(frozen=True)
class Case:
    """One vector: ``run()`` raises (AssertionError or anything else) on failure."""

    label: str
    run: Callable[[], None]


CheckerFn = Callable[[dict[str, Any]], Iterable[Case]]


@dataclass(frozen=True)
class Checker:
    name: str
    sections: frozenset[str]
    fn: CheckerFn


_REGISTRY: dict[str, Checker] = {}

_CURRENT_FILE: contextvars.ContextVar[Path] = contextvars.ContextVar("current_vector_file")


def current_vector_file() -> Path:
    """The vector file being checked, so a checker can load its siblings (e.g. rsa_keys.json)."""
    try:
        return _CURRENT_FILE.get()
    except LookupError:
        raise NotUnderstood("no vector file is being checked") from None


def sibling_document(name: str) -> dict[str, Any]:
    """Load ``name`` (e.g. ``"rsa_keys.json"``) from the directory of the file being checked."""
    path = current_vector_file().parent / name
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise NotUnderstood(f"needs {name} beside it: {e}") from None
    if not isinstance(value, dict):
        raise NotUnderstood(f"{name} is not a vector file")
    return value


def checker(name: str, sections: Iterable[str]) -> Callable[[CheckerFn], CheckerFn]:
    """Register ``fn`` as the checker of vector file ``name``.

    ``sections`` lists every non-metadata top-level key the checker consumes;
    any other key in a file makes the runner report the file as not understood.
    """

    def register(fn: CheckerFn) -> CheckerFn:
        _REGISTRY[name] = Checker(name, frozenset(sections), fn)
        return fn

    return register


def load_checkers() -> dict[str, Checker]:
    for module in CHECKER_MODULES:
        importlib.import_module(module)
    return _REGISTRY


@dataclass
class FileReport:
    name: str
    passed: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)

    def fail(self, label: str, why: str) -> None:
        self.failed += 1
        self.failures.append(f"{label}: {why}")


def run_file(path: Path) -> FileReport:
    """Run every case of one vector file; problems become failures, never skips."""
    name = path.stem
    report = FileReport(name)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        report.fail("<file>", f"unreadable: {e}")
        return report
    checkers = load_checkers()
    found = checkers.get(name)
    if found is None or not isinstance(doc, dict):
        report.fail("<file>", "not understood: no checker for this vector file")
        return report
    unknown = sorted(set(doc) - METADATA_KEYS - found.sections)
    for key in unknown:
        report.fail(key, "section not understood")
    token = _CURRENT_FILE.set(path)
    try:
        cases: Iterator[Case] = iter(found.fn(doc))
        while True:
            try:
                case = next(cases)
            except StopIteration:
                break
            try:
                case.run()
            except AssertionError as e:
                report.fail(case.label, f"mismatch: {e}" if str(e) else "mismatch")
            except Exception as e:  # noqa: BLE001 - every case must be reported
                report.fail(case.label, f"could not run: {type(e).__name__}: {e}")
            else:
                report.passed += 1
    except NotUnderstood as e:
        report.fail("<file>", f"not understood: {e}")
    except Exception as e:  # noqa: BLE001
        report.fail("<file>", f"checker crashed: {type(e).__name__}: {e}")
    finally:
        _CURRENT_FILE.reset(token)
    if report.passed + report.failed == 0:
        report.fail("<file>", "no cases found")
    return report


def vector_files(directories: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for directory in directories:
        if directory.is_file():
            files.append(directory)
        else:
            files.extend(sorted(directory.glob("*.json")))
    return files


def run_directories(directories: Iterable[Path]) -> list[FileReport]:
    return [run_file(p) for p in vector_files(directories)]
