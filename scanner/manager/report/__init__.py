"""The manager's report: one self-contained HTML page from a merged scan log.

:func:`build_report` reads a database made by ``scanner logs merge`` and,
when given, the event policy (for the venue: which zone sits inside which,
the doors between them, how long a walk between two doors takes, and the
event's time zone). It returns a page that opens from a USB stick on any
laptop. :func:`write_csv` writes every scan as CSV with a
``suspected_copy`` flag.

The parts, each with its own rules in its docstring:

- :mod:`.queries`: SQL in, plain data out (aggregation stays in SQLite);
- :mod:`.layout`: the venue the core's rules run on (where a person is,
  which door a gate stands at, the walks that make a copy);
- :mod:`.reasons`: the core's words and signal classes for denials;
- :mod:`.clock`: times stored in UTC, shown in the event's time zone;
- :mod:`.charts`: the charts' geometry;
- :mod:`.page`: the Jinja2 templates (``scanner/manager/templates/``) fed
  with plain data.

This module is the edge: it opens the log, writes the files (whole or not
at all) and keeps the package's public names.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ...core.policy import Policy
from ...errors import ScanLogError
from ...files import replacing
from ...record.schema import SCAN_COLUMNS
from .charts import HEAT_COLOURS as HEAT_COLOURS  # tests check the page's colours
from .charts import ZONE_COLOURS as ZONE_COLOURS
from .clock import Clock, zone_named
from .layout import DEFAULT_WALK_SECONDS, Layout
from .page import render
from .queries import (
    MOVES_CAP,
    REPORT_STEPS,
    TABLE_DENIALS,
    TABLE_ROWS,
    check_event,
    csv_rows,
    find_copies,
    gather,
    open_log,
    places_and_events,
)
from .reasons import DENIAL_CLASSES as DENIAL_CLASSES
from .reasons import FORGED_REASONS, REASON_LABELS

__all__ = [
    "DEFAULT_WALK_SECONDS",
    "FORGED_REASONS",
    "REASON_LABELS",
    "REPORT_STEPS",
    "build_report",
    "write_csv",
    "write_report",
]

def build_report(
    db_path: Path,
    *,
    policy: Policy | None = None,
    walk_seconds: float | None = None,
    now: datetime | None = None,
    tz: str | None = None,
    table_rows: int = TABLE_ROWS,
    table_denials: int = TABLE_DENIALS,
    moves_cap: int = MOVES_CAP,
    progress: Callable[[str], None] | None = None,
) -> str:
    """Read a merged scan log and return the report as one HTML page.

    ``policy``: the verified event policy; its venue (nesting, doors, walks)
    places people and judges copies, and its time zone is the page's.
    Without it the venue is flat and every two gates are ``walk_seconds``
    apart (default 120). ``walk_seconds``: with a policy, replaces its
    default walk (door pairs its ``[[walks]]`` name keep theirs); 0 turns
    the copy check off. ``tz``: an IANA zone name for the times shown.
    The filterable table holds the ``table_rows`` most recent scans and, on
    top, up to ``table_denials`` earlier denials; the time control and the
    paths hold the last ``moves_cap`` scans of passes (all, in most logs).
    ``progress`` is called once per step of :data:`REPORT_STEPS`.
    Raises :class:`ScanLogError` when the file is not a readable scan log
    and :class:`ConfigError` for an unknown ``tz`` or a policy for another
    event.
    """
    step = progress or (lambda _name: None)
    zone_name = tz or (policy.timezone if policy is not None else "UTC")
    clock = Clock(zone_named(zone_name), zone_name, event_zone=tz is None and policy is not None)
    now = now or datetime.now(UTC)
    with open_log(db_path) as db:
        d = gather(
            db,
            policy=policy,
            walk_seconds=walk_seconds,
            table_rows=table_rows,
            table_denials=table_denials,
            moves_cap=moves_cap,
            clock=clock,
            step=step,
        )
    page = render(d, clock, db_path=Path(db_path), now=now)
    step("page")
    return page


def write_report(db_path: Path, out: Path, **options: Any) -> None:
    """Build the report and write it to ``out`` (whole or not at all)."""
    page = build_report(db_path, **options)
    _atomic_write(Path(out), lambda f: f.write(page))


def write_csv(
    db_path: Path,
    out: Path,
    *,
    policy: Policy | None = None,
    walk_seconds: float | None = None,
) -> int:
    """Write every scan to ``out`` as CSV in time order; return the rows written.

    Columns are the scan log's, plus ``suspected_copy`` (``true``/``false``)
    by the report's rule (same ``policy`` and ``walk_seconds``). Every cell
    goes through the scan log's one CSV rule (:func:`scanner.record.spreadsheet.defuse`): text a
    spreadsheet would run as a formula gets a leading ``'``.
    """
    rows = 0
    with open_log(db_path) as db:
        places, events = places_and_events(db)
        check_event(events, policy)
        find_copies(db, Layout(policy, walk_seconds, (zone for _, zone, _, _ in places if zone)))

        def write(f: Any) -> None:
            nonlocal rows
            writer = csv.writer(f)
            writer.writerow([*SCAN_COLUMNS, "suspected_copy"])
            cursor = csv_rows(db)
            while batch := list(itertools.islice(cursor, 10_000)):
                writer.writerows(batch)
                rows += len(batch)

        _atomic_write(Path(out), write, newline="")
    return rows


def _atomic_write(out: Path, write: Any, newline: str | None = None) -> None:
    try:
        with replacing(out, text=True, newline=newline) as f:
            write(f)
    except OSError as err:
        raise ScanLogError(f"cannot write {out}: {err}") from err
