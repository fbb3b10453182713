"""The ini keys of ``--artflow``: ``artflow_params`` (Parameter values per
flow), ``artflow_expect`` (artifact values an item checks) and ``artflow_paths``."""

from __future__ import annotations

import ast
import fnmatch
import glob
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ..settings import ini_key

if TYPE_CHECKING:
    from ..results import FlowRun


@dataclass(frozen=True)
class Entry:
    """One line of ``artflow_params`` or ``artflow_expect``:
    ``<flow pattern> <target>=<value>``."""

    pattern: str
    target: str
    value: Any
    line: str

    def matches(self, nodeid: str) -> bool:
        # "path.py" alone names every flow of the file.
        subject = nodeid if "::" in self.pattern else nodeid.split("::", 1)[0]
        return fnmatch.fnmatchcase(subject, self.pattern)


@dataclass(frozen=True)
class Settings:
    params: list[Entry]
    expect: list[Entry]

    def params_for(self, nodeid: str) -> dict[str, Any]:
        return {e.target: e.value for e in self.params if e.matches(nodeid)}

    def expect_for(self, nodeid: str) -> list[Entry]:
        return [e for e in self.expect if e.matches(nodeid)]


def _parse(config: pytest.Config, key: str, strict: bool) -> list[Entry]:
    entries = []
    for line in config.getini(key):
        pattern, _, assignment = line.strip().partition(" ")
        target, equals, text = assignment.strip().partition("=")
        target, text = target.strip(), text.strip()
        if not pattern or not equals or not target:
            raise pytest.UsageError(
                f"ini {key}: {line!r}: expected '<file.py::FlowClass> <name>=<value>'"
            )
        if strict and (target.count(".") != 1 or not all(map(str.isidentifier, target.split(".")))):
            raise pytest.UsageError(f"ini {key}: {line!r}: {target!r} should be <step>.<artifact>")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            if strict:
                raise pytest.UsageError(
                    f"ini {key}: {line!r}: {text!r} is not a Python literal (quote strings: 'text')"
                ) from None
            # A Parameter value is command-line text anyway: `name=hello` is "hello".
            value = text
        entries.append(Entry(pattern, target, value, line.strip()))
    return entries


def configure(config: pytest.Config) -> None:
    """Read the ini keys of ``--artflow`` (bad lines stop the session with a
    usage error) and add the ``artflow_paths`` globs to what is collected."""
    config.stash[ini_key] = Settings(
        params=_parse(config, "artflow_params", strict=False),
        expect=_parse(config, "artflow_expect", strict=True),
    )
    # Like testpaths: only when no paths were given on the command line.
    if config.args_source == pytest.Config.ArgsSource.ARGS:
        return
    if config.invocation_params.dir != config.rootpath:
        return
    current = [Path(a).resolve() for a in config.args]
    for pattern in config.getini("artflow_paths"):
        for match in sorted(glob.glob(pattern, root_dir=config.rootpath, recursive=True)):
            path = (config.rootpath / match).resolve()
            if not any(path == c or c in path.parents for c in current):
                config.args.append(str(path))
                current.append(path)


def enabled(config: pytest.Config) -> bool:
    return bool(config.getoption("artflow", False))


def check_expected(run: FlowRun, entries: list[Entry]) -> list[str]:
    """A message per ``artflow_expect`` line that does not hold."""
    from .. import compare
    from ..results import provenance

    problems = []
    for entry in entries:
        step, name = entry.target.split(".", 1)
        where = f"artflow_expect {entry.line!r}"
        if step not in run:
            problems.append(f"{where}: step {step!r} did not run (steps: {', '.join(run.steps)})")
            continue
        trace = run.trace(name)
        if step not in trace:
            known = ", ".join(sorted(run[step].tasks[0].artifacts)) if run[step].tasks else ""
            problems.append(
                f"{where}: step {step!r} has no artifact {name!r} (its artifacts: {known})"
            )
            continue
        if not compare.artifacts_equal(trace[step], entry.value):
            lines = [
                f"{where}: artifact {name!r} of step {step!r} is {trace[step]!r}, "
                f"expected {entry.value!r}",
                *(f"  {line}" for line in compare.explain(trace[step], entry.value)),
                *provenance.trace_lines(run, name, mark=step),
            ]
            problems.append("\n".join(lines))
    return problems


def snapshot_excludes_for(config: pytest.Config, nodeid: str) -> list[str]:
    """The ``step.artifact`` patterns of ``artflow_snapshot_exclude`` lines
    whose flow pattern matches ``nodeid``."""
    patterns = []
    for line in config.getini("artflow_snapshot_exclude"):
        pattern, _, targets = line.strip().partition(" ")
        entry = Entry(pattern, targets, None, line.strip())
        if entry.matches(nodeid):
            patterns += targets.replace(",", " ").split()
    return patterns
