"""pytest plugin, registered as the ``pytest11`` entry point ``flopcalc``: a fixture and a session report.

* ``flopcalc_analyze(model, inputs, **options)`` — a fixture returning :func:`flopcalc.analyze`, which also
  records the counts of every model it analyses. Pass its report to the :mod:`flopcalc.testing` helpers.
* ``--flopcalc-report FILE`` — at the end of the session, write every recorded report as JSON:
  ``{"schema_version", "models": [...]}``, each model being the test's node id (``"test"``) and the report in
  the schema of :func:`flopcalc.render.json.to_dict` (``"model"``, ``"totals"``, ``"layers"``, ...).

flopcalc (and so torch) is imported only when the fixture is used, so the plugin costs nothing in projects
that have flopcalc installed but do not use it. Records live in the pytest process that ran the test, so
under pytest-xdist the report of the controlling process is empty (not supported yet). A report path that
cannot be written is a usage error at startup (before any test runs), never an INTERNALERROR at the end.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from flopcalc.report import Report

_RECORDS = pytest.StashKey[list[dict[str, Any]]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("flopcalc", "flopcalc parameter and FLOP counts")
    group.addoption(
        "--flopcalc-report",
        metavar="FILE",
        default=None,
        help="write the counts (JSON) of every model analysed through the flopcalc_analyze fixture to FILE",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_RECORDS] = []
    path = _report_path(config)
    if path is not None:
        problem = _unwritable(path)
        if problem:
            raise pytest.UsageError(f"--flopcalc-report {path}: {problem}; give a file path in a writable folder")


def _unwritable(path: Path) -> str | None:
    """Why ``path`` cannot be written (the folder is created when missing), or ``None``."""
    if path.is_dir():
        return "is a folder"
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        return f"{folder} is a file, not a folder"
    if not os.access(folder, os.W_OK):
        return f"{folder} is not writable"
    return None


@pytest.fixture
def flopcalc_analyze(request: pytest.FixtureRequest) -> Callable[..., Report]:
    """``analyze(model, inputs, **options)`` that also records the report when ``--flopcalc-report`` is given.

    ``options`` are those of :func:`flopcalc.analyze` (``device``, ``kwargs``, ``training``, ``extra``,
    ``name``). Returns the :class:`flopcalc.Report`.
    """
    from flopcalc.analyze import analyze
    from flopcalc.render.json import to_dict

    records = request.config.stash[_RECORDS]
    recording = _report_path(request.config) is not None

    def run(model: Any, inputs: Any = None, **options: Any) -> Report:
        report = analyze(model, inputs, **options)
        if recording:
            records.append({"test": request.node.nodeid, **to_dict(report)})
        return report

    return run


def _report_path(config: pytest.Config) -> Path | None:
    value = config.getoption("flopcalc_report")
    return Path(config.invocation_params.dir, value) if value else None


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = _report_path(session.config)
    if path is None:
        return
    from flopcalc.report import SCHEMA_VERSION

    document = {"schema_version": SCHEMA_VERSION, "models": session.config.stash[_RECORDS]}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    except OSError as exc:
        session.config.stash[_WRITE_ERROR] = f"{type(exc).__name__}: {exc}"
        session.exitstatus = pytest.ExitCode.USAGE_ERROR


_WRITE_ERROR = pytest.StashKey[str]()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    path = _report_path(config)
    if path is None:
        return
    failure = config.stash.get(_WRITE_ERROR, None)
    if failure:
        terminalreporter.write_line(f"flopcalc: could not write the report to {path}: {failure}", red=True)
    else:
        count = len(config.stash[_RECORDS])
        terminalreporter.write_line(f"flopcalc: counts of {count} model(s) written to {path}")
