"""The manager's report: one self-contained HTML page from a merged scan log.

:func:`build_report` reads a database made by ``scanner logs merge`` and
returns a page that opens from a USB stick on any laptop: no network, no
external script, style sheet or font. Charts are inline SVG drawn here;
a little vanilla JavaScript filters the table of scans. :func:`write_csv`
writes every scan as CSV with a ``suspected_copy`` flag.

Rules this module keeps:

- Aggregation happens in SQLite (``GROUP BY``, window functions), never row
  by row in Python, so a million scans take seconds; only bounded lists
  (capped, and the page says so) come back to Python.
- Everything read from the database is untrusted text (a pass holder's name
  is whatever the organizer typed): it is HTML-escaped, and the table's data
  is embedded as JSON in a ``<script type="application/json">`` block with
  ``<``, ``>`` and ``&`` escaped, which the script reads with ``JSON.parse``
  and writes with ``textContent`` only.
- A suspected copy is the same pass (event and serial) scanned, granted or
  denied, at two different gates closer in time than a person can walk
  (``walk_seconds``). Consecutive scans of a pass suffice: if any two scans
  at different gates are that close, two consecutive ones are too.
- Times are stored in UTC; the page shows them in ``tz`` (default UTC) and
  says which.
"""

from __future__ import annotations

import bisect
import csv
import html
import itertools
import json
import math
import os
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..errors import ConfigError, ScanLogError
from ..gate.scanlog import SCAN_COLUMNS, csv_columns_sql

__all__ = [
    "FORGED_REASONS",
    "REASON_LABELS",
    "build_report",
    "write_csv",
    "write_report",
]

FORGED_REASONS = ("bad_signature", "unknown_key", "malformed")
REVOKED_REASONS = ("revoked",)

REASON_LABELS: dict[str, str] = {
    "ok": "granted",
    "malformed": "not a pass (unreadable or malformed code)",
    "bad_signature": "forged or altered",
    "unknown_key": "signed by an unknown key (forged)",
    "wrong_event": "pass for another event",
    "unknown_tier": "pass type not in the event policy",
    "revoked": "revoked (lost or cancelled pass)",
    "clock_untrusted": "gate clock not trusted",
    "not_yet_valid": "pass not valid yet",
    "expired": "pass expired",
    "outside_event": "outside the event hours",
    "zone_not_allowed": "not allowed in this zone",
    "phase_not_allowed": "not allowed at this point of the show",
    "already_inside": "already inside (pass-back)",
    "no_policy": "gate had no event policy",
    "log_unavailable": "gate could not write its log",
}

# Colour-blind safe palettes. Zones: Paul Tol's "muted" scheme, grey for the
# rest. Denial classes: Okabe-Ito. Gate heat map: viridis, light to dark.
ZONE_COLOURS = (
    "#332288",
    "#88CCEE",
    "#44AA99",
    "#117733",
    "#999933",
    "#DDCC77",
    "#CC6677",
    "#882255",
    "#AA4499",
)
OTHER_COLOUR = "#BBBBBB"
HEAT_COLOURS = ("#FDE725", "#90D743", "#35B779", "#21918C", "#31688E", "#443983", "#440154")
EMPTY_CELL = "#F2F2F2"

# What kind of denial each reason is, as the door signals it (decision.py).
_CLASS_OF_REASON = {
    "malformed": "forged",
    "bad_signature": "forged",
    "unknown_key": "forged",
    "revoked": "revoked",
    "wrong_event": "not_here",
    "unknown_tier": "not_here",
    "zone_not_allowed": "not_here",
    "phase_not_allowed": "not_here",
    "not_yet_valid": "time",
    "expired": "time",
    "outside_event": "time",
    "already_inside": "already_inside",
    "clock_untrusted": "fault",
    "no_policy": "fault",
    "log_unavailable": "fault",
}
DENIAL_CLASSES: dict[str, tuple[str, str]] = {  # class: (label, colour)
    "forged": ("forged or not a pass", "#D55E00"),
    "revoked": ("revoked", "#CC79A7"),
    "not_here": ("genuine pass, not allowed here", "#0072B2"),
    "time": ("wrong time for this pass", "#E69F00"),
    "already_inside": ("already inside", "#56B4E9"),
    "fault": ("fault at the gate", "#666666"),
    "other": ("other", "#999999"),
}

TABLE_ROWS = 5000  # most recent scans inlined in the page...
TABLE_DENIALS = 5000  # ...and earlier denials on top
LIST_CAP = 500  # rows per list (inside per zone, copies, forged and revoked)
RENDER_CAP = 1000  # table rows the page draws at once; the filter narrows the rest
_CONTINUOUS_HOURS = 96  # longer spans show only the hours that have entries

_TABLE_FIELDS = (
    "id",
    "ts",
    "gate",
    "zone",
    "direction",
    "serial",
    "holder",
    "tier",
    "decision",
    "reason",
    "message",
    "clock",
)


def build_report(
    db_path: Path,
    *,
    walk_seconds: float = 120,
    now: datetime | None = None,
    tz: str | None = None,
    table_rows: int = TABLE_ROWS,
    table_denials: int = TABLE_DENIALS,
) -> str:
    """Read a merged scan log and return the report as one HTML page.

    ``walk_seconds``: two gates closer in time than this flag a suspected
    copy (0 turns the check off). ``now``: when the report was made (shown
    in the header). ``tz``: an IANA zone name (``Europe/London``) for the
    times shown; default UTC. The filterable table holds the ``table_rows``
    most recent scans and, on top, up to ``table_denials`` earlier denials.
    Raises :class:`ScanLogError` when the file is not a readable scan log
    and :class:`ConfigError` for an unknown ``tz``.
    """
    zone = _zone(tz)
    now = now or datetime.now(UTC)
    with _open(db_path) as conn:
        data = _gather(
            conn, walk_seconds=walk_seconds, table_rows=table_rows, table_denials=table_denials
        )
    return _render(
        data, _Clock(zone, tz or "UTC"), db_path=Path(db_path), now=now, walk_seconds=walk_seconds
    )


def write_report(db_path: Path, out: Path, **options: Any) -> None:
    """Build the report and write it to ``out`` (whole or not at all)."""
    page = build_report(db_path, **options)
    _atomic_write(Path(out), lambda f: f.write(page))


def write_csv(db_path: Path, out: Path, *, walk_seconds: float = 120) -> int:
    """Write every scan to ``out`` as CSV in time order; return the rows written.

    Columns are the scan log's, plus ``suspected_copy`` (``true``/``false``)
    by the report's rule. Text that a spreadsheet would run as a formula
    (starting with ``=``, ``+``, ``-``, ``@``) is prefixed with ``'``.
    """
    # Built in SQL, so a million rows never pass through Python a field at a time.
    guarded = csv_columns_sql()
    sql = (
        f"SELECT {guarded}, CASE WHEN id IN (SELECT id FROM temp.copy_ids) "
        "THEN 'true' ELSE 'false' END FROM scans ORDER BY ts, gate, seq"
    )
    rows = 0
    with _open(db_path) as conn:
        _find_copies(conn, walk_seconds)

        def write(f: Any) -> None:
            nonlocal rows
            writer = csv.writer(f)
            writer.writerow([*SCAN_COLUMNS, "suspected_copy"])
            cursor = _query(conn, sql)
            while batch := list(itertools.islice(cursor, 10_000)):
                writer.writerows(batch)
                rows += len(batch)

        _atomic_write(Path(out), write, newline="")
    return rows


# -- reading ------------------------------------------------------------------


class _Connection:
    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.is_file():
            raise ScanLogError(f"no scan log at {path}")
        try:
            self.conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        except sqlite3.Error as err:
            raise ScanLogError(f"cannot open {path}: {err}") from err
        try:
            self.tables = {
                r[0]
                for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
            if "scans" not in self.tables:
                raise ScanLogError(f"{path} is not a merged scan log: it has no scans table")
            have = {r[1] for r in self.conn.execute("PRAGMA table_info(scans)")}
            missing = [c for c in SCAN_COLUMNS if c not in have]
            if missing:
                raise ScanLogError(f"{path}: the scans table lacks {', '.join(missing)}")
        except (sqlite3.Error, ScanLogError) as err:
            self.conn.close()
            if isinstance(err, ScanLogError):
                raise
            raise ScanLogError(f"cannot read {path} as a scan log: {err}") from err

    def __enter__(self) -> _Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.close()


def _open(path: Path) -> _Connection:
    return _Connection(Path(path))


def _query(db: _Connection, sql: str, params: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
    try:
        yield from db.conn.execute(sql, params)
    except sqlite3.Error as err:
        raise ScanLogError(f"cannot read {db.path}: {err}") from err


def _dicts(db: _Connection, sql: str, params: Sequence[Any] = ()) -> Iterator[dict[str, Any]]:
    try:
        cursor = db.conn.execute(sql, params)
        names = [d[0] for d in cursor.description]
        for row in cursor:
            yield dict(zip(names, row, strict=True))
    except sqlite3.Error as err:
        raise ScanLogError(f"cannot read {db.path}: {err}") from err


def _find_copies(db: _Connection, walk_seconds: float) -> None:
    """Fill the temporary tables ``copy_pairs`` and ``copy_ids``.

    ``copy_pairs``: consecutive scans of one pass (event and serial) at two
    gates closer in time than ``walk_seconds``; ``copy_ids``: the scans in
    any such pair. The window runs over a plain table scan (``+serial`` keeps
    SQLite off the serial index, whose row-by-row lookups are slower here).
    """
    try:
        db.conn.executescript("""
            DROP TABLE IF EXISTS temp.copy_pairs;
            DROP TABLE IF EXISTS temp.copy_ids;
            CREATE TEMP TABLE copy_pairs (id, prev_id, event, serial, ts, prev_ts, gap);
            CREATE TEMP TABLE copy_ids (id TEXT PRIMARY KEY) WITHOUT ROWID;
        """)
        if walk_seconds <= 0:
            return
        db.conn.execute(
            """
            INSERT INTO copy_pairs
            SELECT id, prev_id, event, serial, ts, prev_ts,
                   abs(round((julianday(ts) - julianday(prev_ts)) * 86400.0, 3)) AS gap
            FROM (
                SELECT id, event, serial, ts, gate,
                       LAG(id) OVER w AS prev_id, LAG(ts) OVER w AS prev_ts,
                       LAG(gate) OVER w AS prev_gate
                FROM scans
                WHERE +serial IS NOT NULL
                WINDOW w AS (PARTITION BY event, serial ORDER BY ts, gate, id)
            )
            WHERE prev_gate IS NOT NULL AND gate <> prev_gate
              AND abs(round((julianday(ts) - julianday(prev_ts)) * 86400.0, 3)) < ?
        """,
            [walk_seconds],
        )
        db.conn.execute("""
            INSERT OR IGNORE INTO copy_ids
            SELECT id FROM copy_pairs UNION SELECT prev_id FROM copy_pairs
        """)
    except sqlite3.Error as err:
        raise ScanLogError(f"cannot read {db.path}: {err}") from err


@dataclass
class _Data:
    total: int = 0
    granted: int = 0
    denied: int = 0
    untrusted_clock: int = 0
    first_ts: str | None = None
    last_ts: str | None = None
    events: Counter[str] = field(default_factory=Counter)
    gates: dict[str, dict[str, Any]] = field(default_factory=dict)
    denials: Counter[str] = field(default_factory=Counter)
    denials_by_gate: dict[str, Counter[str]] = field(default_factory=dict)
    hourly: list[tuple[str, str, str, int]] = field(default_factory=list)  # hour, zone, gate, n
    inside: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    inside_counts: Counter[str] = field(default_factory=Counter)
    inside_tiers: dict[str, Counter[str]] = field(default_factory=dict)
    copies: list[dict[str, Any]] = field(default_factory=list)
    copies_total: int = 0
    copied_passes: int = 0
    attempts: list[dict[str, Any]] = field(default_factory=list)
    attempts_total: int = 0
    table: list[dict[str, Any]] = field(default_factory=list)
    table_recent: int = 0
    table_denials: int = 0
    exports: int = 0


def _new_gate() -> dict[str, Any]:
    return {
        "zones": set(),
        "directions": set(),
        "scans": 0,
        "granted": 0,
        "denied": 0,
        "first_ts": None,
        "last_ts": None,
        "device_key_id": None,
        "last_export_at": None,
        "exports": 0,
    }


def _gather(db: _Connection, *, walk_seconds: float, table_rows: int, table_denials: int) -> _Data:
    d = _Data()
    # One pass over the table for every total, per gate, per reason and per event.
    for row in _dicts(
        db,
        """
        SELECT event, gate, zone, direction, decision, reason, clock,
               count(*) AS n, min(ts) AS first_ts, max(ts) AS last_ts
        FROM scans GROUP BY event, gate, zone, direction, decision, reason, clock
    """,
    ):
        n = row["n"]
        d.total += n
        if row["decision"] == "granted":
            d.granted += n
        elif row["decision"] == "denied":
            d.denied += n
            reason = row["reason"] or "unknown"
            d.denials[reason] += n
            d.denials_by_gate.setdefault(reason, Counter())[row["gate"]] += n
        if row["clock"] == "untrusted":
            d.untrusted_clock += n
        if row["event"]:
            d.events[row["event"]] += n
        d.first_ts = min(filter(None, (d.first_ts, row["first_ts"])), default=None)
        d.last_ts = max(filter(None, (d.last_ts, row["last_ts"])), default=None)
        g = d.gates.setdefault(row["gate"], _new_gate())
        if row["zone"]:
            g["zones"].add(row["zone"])
        if row["direction"]:
            g["directions"].add(row["direction"])
        g["scans"] += n
        if row["decision"] in ("granted", "denied"):
            g[row["decision"]] += n
        g["first_ts"] = min(filter(None, (g["first_ts"], row["first_ts"])), default=None)
        g["last_ts"] = max(filter(None, (g["last_ts"], row["last_ts"])), default=None)

    if "gates" in db.tables:
        cols = {r[1] for r in _query(db, "PRAGMA table_info(gates)")}
        if {"gate", "device_key_id", "last_export_at"} <= cols:
            # A gate that exported an empty log is listed too: it saw nobody.
            for row in _dicts(db, "SELECT gate, device_key_id, last_export_at FROM gates"):
                g = d.gates.setdefault(row["gate"], _new_gate())
                g["device_key_id"] = row["device_key_id"]
                g["last_export_at"] = row["last_export_at"]
    if "exports" in db.tables:
        cols = {r[1] for r in _query(db, "PRAGMA table_info(exports)")}
        if "gate" in cols:
            for gate, n in _query(db, "SELECT gate, count(*) FROM exports GROUP BY gate"):
                d.exports += n
                if gate in d.gates:
                    d.gates[gate]["exports"] = n
        if "event" in cols:
            for (event,) in _query(db, "SELECT DISTINCT event FROM exports"):
                if event and event not in d.events:
                    d.events[event] += 0

    d.hourly = list(
        _query(
            db,
            """
        SELECT substr(ts, 1, 13) AS hour, zone, gate, count(*)
        FROM scans WHERE decision = 'granted' AND direction = 'entry'
        GROUP BY hour, zone, gate
    """,
        )
    )

    # Inside now: a pass whose last granted scan in a zone was an entry. With
    # max(), SQLite takes the other (bare) columns from the row holding the max.
    for row in _dicts(
        db,
        """
        SELECT zone, serial, event, holder, tier, ts, gate FROM (
            SELECT zone, serial, event, holder, tier, max(ts) AS ts, gate, direction
            FROM scans WHERE decision = 'granted' AND +serial IS NOT NULL
            GROUP BY event, zone, serial
        ) WHERE direction = 'entry'
        ORDER BY zone, holder COLLATE NOCASE, serial
    """,
    ):
        zone = row["zone"] or "(no zone)"
        d.inside_counts[zone] += 1
        d.inside_tiers.setdefault(zone, Counter())[row["tier"] or "?"] += 1
        listed = d.inside.setdefault(zone, [])
        if len(listed) < LIST_CAP:
            listed.append(row)

    _find_copies(db, walk_seconds)
    d.copies_total, d.copied_passes = next(
        _query(
            db,
            """
        SELECT count(*), (SELECT count(*) FROM (SELECT DISTINCT event, serial FROM copy_pairs))
        FROM copy_pairs
    """,
        )
    )
    d.copies = list(
        _dicts(
            db,
            f"""
        SELECT p.gap, p.serial, b.ts, b.gate, b.zone, b.direction, b.decision, b.clock,
               b.holder, b.tier, a.ts AS prev_ts, a.gate AS prev_gate, a.zone AS prev_zone,
               a.direction AS prev_direction, a.decision AS prev_decision,
               a.clock AS prev_clock, a.holder AS prev_holder
        FROM copy_pairs p JOIN scans a ON a.id = p.prev_id JOIN scans b ON b.id = p.id
        ORDER BY p.ts, b.gate LIMIT {LIST_CAP:d}
    """,
        )
    )

    marks = ", ".join("?" for _ in FORGED_REASONS + REVOKED_REASONS)
    params = [*FORGED_REASONS, *REVOKED_REASONS]
    d.attempts_total = sum(d.denials[r] for r in params)
    d.attempts = list(
        _dicts(
            db,
            f"""
        SELECT ts, gate, zone, direction, serial, holder, tier, reason, key_id, message
        FROM scans WHERE decision = 'denied' AND reason IN ({marks})
        ORDER BY ts DESC LIMIT {LIST_CAP:d}
    """,
            params,
        )
    )

    columns = ", ".join(_TABLE_FIELDS) + ", id IN (SELECT id FROM temp.copy_ids) AS copy"
    recent = list(_dicts(db, f"SELECT {columns} FROM scans ORDER BY ts DESC LIMIT ?", [table_rows]))
    chosen = {r["id"]: r for r in recent}
    d.table_recent = len(recent)
    if len(recent) == table_rows and table_denials > 0:
        oldest = recent[-1]["ts"]
        denials = list(
            _dicts(
                db,
                f"SELECT {columns} FROM scans WHERE decision = 'denied' "
                "AND ts <= ? ORDER BY ts DESC LIMIT ?",
                [oldest, table_denials + table_rows],
            )
        )
        earlier = [r for r in denials if r["id"] not in chosen][:table_denials]
        d.table_denials = len(earlier)
        chosen.update((r["id"], r) for r in earlier)
    d.table = sorted(chosen.values(), key=lambda r: (r["ts"] or "", r["gate"] or ""), reverse=True)
    return d


# -- time ---------------------------------------------------------------------


def _zone(tz: str | None) -> tzinfo:
    if not tz:
        return UTC
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise ConfigError(f"unknown time zone {tz!r}: use a name like Europe/London") from err


class _Clock:
    """Shows stored UTC times in the report's time zone."""

    def __init__(self, zone: tzinfo, name: str) -> None:
        self.zone = zone
        self.name = name

    def parse(self, ts: str | None) -> datetime | None:
        if not ts:
            return None
        try:
            when = datetime.fromisoformat(ts)
        except ValueError:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return when.astimezone(self.zone)

    def show(self, ts: str | None, *, date: bool = True) -> str:
        when = self.parse(ts)
        if when is None:
            return ts or ""
        return when.strftime("%Y-%m-%d %H:%M:%S" if date else "%H:%M:%S")

    def hour(self, key: str) -> datetime | None:
        """A ``YYYY-MM-DDTHH`` UTC hour from SQL, as an aware datetime."""
        try:
            return datetime.strptime(key, "%Y-%m-%dT%H").replace(tzinfo=UTC)
        except ValueError:
            return None


# -- rendering ----------------------------------------------------------------


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _n(value: int | float) -> str:
    return f"{value:,}"


def _reason(code: str | None) -> str:
    return REASON_LABELS.get(code or "", code or "unknown")


def _count(n: int, thing: str) -> str:
    return f"<b>{_n(n)}</b> {thing}{'' if n == 1 else 'es' if thing.endswith('s') else 's'}"


def _gap(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{int(seconds // 60)} min {seconds % 60:.0f} s"


def _render(d: _Data, clock: _Clock, *, db_path: Path, now: datetime, walk_seconds: float) -> str:
    hours, zone_series, zone_colour, gate_grid = _hour_axes(d, clock)
    events = ", ".join(sorted(d.events)) or "unknown event"
    parts: list[str] = []
    out = parts.append

    out(f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Access report: {_e(events)}</title>
<style>{_CSS}</style></head>
<body>
<header>
<h1>Backstage access report <span class="event">{_e(events)}</span></h1>
<p class="range">""")
    if d.total:
        out(
            f"Scans from <b>{_e(clock.show(d.first_ts))}</b> to "
            f"<b>{_e(clock.show(d.last_ts))}</b>, "
        )
    made = now.astimezone(clock.zone).strftime("%Y-%m-%d %H:%M")
    out(
        f"times in <b>{_e(clock.name)}</b>. Made {_e(made)} from "
        f'<code>{_e(db_path.name)}</code>.</p>\n<div class="tiles">'
    )
    inside_total = sum(d.inside_counts.values())
    for label, value, cls in (
        ("scans", d.total, ""),
        ("granted", d.granted, "ok"),
        ("denied", d.denied, "bad"),
        ("gates", len(d.gates), ""),
        ("inside now", inside_total, ""),
        ("suspected copies", d.copied_passes, "bad" if d.copied_passes else ""),
        ("forged or revoked", d.attempts_total, "bad" if d.attempts_total else ""),
    ):
        out(
            f'<div class="tile {cls}"><span class="v">{_n(value)}</span>'
            f'<span class="l">{label}</span></div>'
        )
    out("</div>\n")
    if d.untrusted_clock:
        out(
            f'<p class="warn">{_n(d.untrusted_clock)} scans were made while a gate could not '
            "trust its clock: their times may be wrong.</p>\n"
        )
    out(
        '<nav><a href="#entries">Entries</a> <a href="#denials">Denials</a> '
        '<a href="#inside">Inside now</a> <a href="#copies">Suspected copies</a> '
        '<a href="#attempts">Forged and revoked</a> <a href="#gates">Gates</a> '
        '<a href="#all">All scans</a></nav>\n</header>\n<main>\n'
    )
    if not d.total:
        out('<p class="empty">No scans in this database.</p>\n')

    # Entries per hour.
    out(
        '<section id="entries"><h2>Entries per hour</h2>\n'
        f"<p>Granted entries, by the hour they happened ({_e(clock.name)}).</p>\n"
    )
    if hours:
        out("<h3>By zone</h3>\n")
        out(_legend([(name, colour) for name, colour, _ in zone_series]))
        out(
            _stacked_bars(
                [h for h, _ in hours],
                zone_series,
                y_label="entries",
                label="Granted entries per hour, stacked by zone",
            )
        )
        out("<h3>By gate</h3>\n")
        out(_heatmap(gate_grid, [h for h, _ in hours], d))
    else:
        out('<p class="empty">No granted entries.</p>\n')
    out("</section>\n")

    # Denials.
    out('<section id="denials"><h2>Denials by reason</h2>\n')
    if d.denials:
        items = sorted(d.denials.items(), key=lambda kv: (-kv[1], kv[0]))
        classes = sorted(
            {_CLASS_OF_REASON.get(r, "other") for r, _ in items}, key=list(DENIAL_CLASSES).index
        )
        out(_legend([DENIAL_CLASSES[c] for c in classes]))
        out(
            _hbars(
                [
                    (_reason(r), n, DENIAL_CLASSES[_CLASS_OF_REASON.get(r, "other")][1])
                    for r, n in items
                ],
                label="Denials by reason",
            )
        )
        out(
            '<table class="compact"><thead><tr><th>reason</th><th>code</th>'
            '<th class="num">denials</th><th>most at gate</th></tr></thead><tbody>\n'
        )
        for r, n in items:
            gate, at = d.denials_by_gate[r].most_common(1)[0]
            out(
                f"<tr><td>{_e(_reason(r))}</td><td><code>{_e(r)}</code></td>"
                f'<td class="num">{_n(n)}</td><td>{_e(gate)} ({_n(at)})</td></tr>\n'
            )
        out("</tbody></table>\n")
    else:
        out('<p class="empty">No denials.</p>\n')
    out("</section>\n")

    # Inside now.
    out(
        '<section id="inside"><h2>Who is inside now</h2>\n<p>Per zone, the passes whose '
        "last granted scan there was an entry, with no granted exit after it, as of the "
        f"last scan in the log ({_e(clock.show(d.last_ts))}). A zone without exit gates "
        "keeps everyone who ever entered.</p>\n"
    )
    if d.inside_counts:
        zones = sorted(d.inside_counts, key=lambda z: (-d.inside_counts[z], z))
        out(
            _hbars(
                [(z, d.inside_counts[z], zone_colour.get(z, OTHER_COLOUR)) for z in zones],
                label="Passes inside now, by zone",
            )
        )
        for z in zones:
            count = d.inside_counts[z]
            tiers = ", ".join(f"{_e(t)} {_n(n)}" for t, n in d.inside_tiers[z].most_common())
            listed = d.inside[z]
            out(
                f'<details class="zone"><summary><b>{_e(z)}</b>: {_n(count)} inside '
                f'<span class="muted">({tiers})</span></summary>\n'
            )
            if len(listed) < count:
                out(
                    f'<p class="note">Showing {_n(len(listed))} of {_n(count)}, by name; '
                    "the CSV has every scan.</p>\n"
                )
            out(
                '<div class="scroll"><table class="compact"><thead><tr><th>holder</th><th>tier</th>'
                '<th class="num">serial</th><th>inside since</th><th>entered at</th></tr>'
                "</thead><tbody>\n"
            )
            for row in listed:
                out(
                    f"<tr><td>{_holder(row['holder'])}</td><td>{_e(row['tier'])}</td>"
                    f'<td class="num">{_e(row["serial"])}</td><td>{_e(clock.show(row["ts"]))}'
                    f"</td><td>{_e(row['gate'])}</td></tr>\n"
                )
            out("</tbody></table></div></details>\n")
    else:
        out('<p class="empty">Nobody is inside.</p>\n')
    out("</section>\n")

    # Suspected copies.
    out(
        '<section id="copies"><h2>Suspected copies</h2>\n<p>The same pass scanned at two '
        f"different gates less than <b>{_gap(walk_seconds)}</b> apart, faster than a person "
        "can walk between doors: one of the two is probably a copy. Granted and denied "
        "scans both count.</p>\n"
    )
    if walk_seconds <= 0:
        out('<p class="empty">The check was turned off for this report.</p>\n')
    elif d.copies:
        out(f"<p>{_count(d.copied_passes, 'pass')}, {_count(d.copies_total, 'pair')} of scans.")
        if d.copies_total > len(d.copies):
            out(f" The first {_n(len(d.copies))} pairs are listed; the CSV flags them all.")
        out(
            '</p>\n<div class="scroll"><table class="compact"><thead><tr>'
            '<th class="num">serial</th><th>holder</th><th>tier</th>'
            "<th>first scan</th><th>at gate</th><th>then</th><th>at gate</th>"
            '<th class="num">gap</th></tr></thead><tbody>\n'
        )
        for p in d.copies:
            warn = (
                ' <span class="muted">(clock not trusted)</span>'
                if "untrusted" in (p["clock"], p["prev_clock"])
                else ""
            )
            out(
                f'<tr><td class="num">{_e(p["serial"])}</td>'
                f"<td>{_holder(p['holder'] or p['prev_holder'])}</td><td>{_e(p['tier'])}</td>"
                f"<td>{_e(clock.show(p['prev_ts']))} {_decision(p['prev_decision'])}</td>"
                f'<td>{_e(p["prev_gate"])} <span class="muted">{_e(p["prev_zone"])} '
                f"{_e(p['prev_direction'])}</span></td>"
                f"<td>{_e(clock.show(p['ts']))} {_decision(p['decision'])}</td>"
                f'<td>{_e(p["gate"])} <span class="muted">{_e(p["zone"])} '
                f"{_e(p['direction'])}</span></td>"
                f'<td class="num">{_gap(p["gap"])}{warn}</td></tr>\n'
            )
        out("</tbody></table></div>\n")
    else:
        out('<p class="empty">None found.</p>\n')
    out("</section>\n")

    # Forged and revoked.
    out(
        '<section id="attempts"><h2>Forged and revoked passes</h2>\n<p>Scans refused '
        "because the code was not a genuine pass (forged, altered, signed by an unknown "
        "key, or not a pass at all) or because the pass was revoked. A forged code carries "
        "no name the gate can believe.</p>\n"
    )
    if d.attempts:
        forged = sum(d.denials[r] for r in FORGED_REASONS)
        revoked = sum(d.denials[r] for r in REVOKED_REASONS)
        out(f"<p>{_count(forged, 'forged or unreadable code')}, {_count(revoked, 'revoked pass')}.")
        if d.attempts_total > len(d.attempts):
            out(f" The {_n(len(d.attempts))} most recent are listed.")
        out(
            '</p>\n<div class="scroll"><table class="compact"><thead><tr><th>time</th>'
            "<th>gate</th><th>zone</th>"
            '<th>reason</th><th class="num">serial</th><th>holder</th><th>tier</th></tr>'
            "</thead><tbody>\n"
        )
        for a in d.attempts:
            out(
                f"<tr><td>{_e(clock.show(a['ts']))}</td><td>{_e(a['gate'])}</td>"
                f"<td>{_e(a['zone'])}</td><td>{_e(_reason(a['reason']))}</td>"
                f'<td class="num">{_e(a["serial"])}</td><td>{_holder(a["holder"])}</td>'
                f"<td>{_e(a['tier'])}</td></tr>\n"
            )
        out("</tbody></table></div>\n")
    else:
        out('<p class="empty">None.</p>\n')
    out("</section>\n")

    # Gates.
    out(
        '<section id="gates"><h2>Gates</h2>\n<table class="compact"><thead><tr><th>gate</th>'
        '<th>zone</th><th>direction</th><th class="num">scans</th><th class="num">granted</th>'
        '<th class="num">denied</th><th>first scan</th><th>last scan</th>'
        "<th>last export</th></tr></thead><tbody>\n"
    )
    for gate in sorted(d.gates):
        g = d.gates[gate]
        out(
            f"<tr><td>{_e(gate)}</td><td>{_e(', '.join(sorted(g['zones'])))}</td>"
            f"<td>{_e(', '.join(sorted(g['directions'])))}</td>"
            f'<td class="num">{_n(g["scans"])}</td><td class="num">{_n(g["granted"])}</td>'
            f'<td class="num">{_n(g["denied"])}</td><td>{_e(clock.show(g["first_ts"]))}</td>'
            f"<td>{_e(clock.show(g['last_ts']))}</td>"
            f"<td>{_e(clock.show(g['last_export_at']))}</td></tr>\n"
        )
    out("</tbody></table>\n")
    if d.exports:
        out(f'<p class="muted">Merged from {_n(d.exports)} exports.</p>\n')
    out("</section>\n")

    # All scans, filterable.
    out(_scan_table(d, clock))
    out(
        f"</main>\n<footer>Times in {_e(clock.name)}. Made by <code>scanner logs report"
        "</code>; this page needs no network.</footer>\n"
    )
    out(f"<script>{_JS}</script>\n</body></html>\n")
    return "".join(parts)


def _holder(name: str | None) -> str:
    return _e(name) if name else '<span class="muted">unknown</span>'


def _decision(decision: str | None) -> str:
    if decision == "granted":
        return '<span class="ok">&#10003; granted</span>'
    return f'<span class="bad">&#10007; {_e(decision or "?")}</span>'


def _hour_axes(
    d: _Data, clock: _Clock
) -> tuple[
    list[tuple[str, datetime]],
    list[tuple[str, str, list[int]]],
    dict[str, str],
    dict[tuple[str, str], dict[int, int]],
]:
    """Hours on the x axis, the zone series, the zone colours and the gate grid."""
    by_hour: dict[datetime, list[tuple[str, str, int]]] = defaultdict(list)
    for key, zone, gate, n in d.hourly:
        hour = clock.hour(key)
        if hour is not None:
            by_hour[hour].append((zone or "(no zone)", gate, n))
    if not by_hour:
        return [], [], {}, {}
    first, last = min(by_hour), max(by_hour)
    if (last - first) <= timedelta(hours=_CONTINUOUS_HOURS):
        span = [
            first + timedelta(hours=i)
            for i in range(int((last - first).total_seconds() // 3600) + 1)
        ]
    else:
        span = sorted(by_hour)
    hours: list[tuple[str, datetime]] = []
    previous_day = None
    for hour in span:
        local = hour.astimezone(clock.zone)
        day = local.strftime("%a %d %b")
        hours.append((local.strftime("%H:%M") + ("\n" + day if day != previous_day else ""), hour))
        previous_day = day
    index = {hour: i for i, (_, hour) in enumerate(hours)}

    zone_totals: Counter[str] = Counter()
    per_zone: dict[str, list[int]] = defaultdict(lambda: [0] * len(hours))
    grid: dict[tuple[str, str], dict[int, int]] = defaultdict(dict)
    for hour, items in by_hour.items():
        i = index[hour]
        for zone, gate, n in items:
            zone_totals[zone] += n
            per_zone[zone][i] += n
            cell = grid[(zone, gate)]
            cell[i] = cell.get(i, 0) + n
    ranked = sorted(zone_totals, key=lambda z: (-zone_totals[z], z))
    shown, rest = ranked[: len(ZONE_COLOURS)], ranked[len(ZONE_COLOURS) :]
    if len(rest) == 1:
        shown, rest = ranked, []
    colours = {
        z: ZONE_COLOURS[i] if i < len(ZONE_COLOURS) else OTHER_COLOUR for i, z in enumerate(shown)
    }
    series = [(z, colours[z], per_zone[z]) for z in shown]
    if rest:
        other = [sum(per_zone[z][i] for z in rest) for i in range(len(hours))]
        series.append((f"{len(rest)} other zones", OTHER_COLOUR, other))
        colours.update((z, OTHER_COLOUR) for z in rest)
    return hours, series, colours, dict(grid)


def _nice_step(top: float, ticks: int = 5) -> float:
    raw = max(top, 1) / ticks
    power = 10.0 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):  # counts: ticks stay whole numbers
        if raw <= m * power:
            return max(1.0, m * power)
    return 10 * power


def _legend(items: Sequence[tuple[str, str]]) -> str:
    keys = "".join(
        f'<span class="key"><span class="swatch" style="background:{colour}">'
        f"</span>{_e(name)}</span>"
        for name, colour in items
    )
    return f'<div class="legend">{keys}</div>\n'


def _axis_label(text: str, x: float, y: float) -> str:
    lines = text.split("\n")
    spans = "".join(
        f'<tspan x="{x:.1f}" dy="{0 if i == 0 else 13}">{_e(t)}</tspan>'
        for i, t in enumerate(lines)
    )
    return f'<text class="tick" x="{x:.1f}" y="{y:.1f}" text-anchor="middle">{spans}</text>'


def _stacked_bars(
    labels: Sequence[str],
    series: Sequence[tuple[str, str, Sequence[int]]],
    *,
    y_label: str,
    label: str,
) -> str:
    width, height = 1100, 340
    left, right, top, bottom = 64, 16, 14, 58
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(s[2][i] for s in series) for i in range(len(labels))]
    step = _nice_step(max(totals, default=0))
    y_max = step * math.ceil(max(max(totals, default=0), 1) / step)
    slot = plot_w / max(len(labels), 1)
    bar = min(56.0, max(1.0, slot * 0.78))
    svg = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{_e(label)}"><title>{_e(label)}</title>'
    ]
    tick = 0.0
    while tick <= y_max + 1e-9:
        y = top + plot_h - tick / y_max * plot_h
        svg.append(
            f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y:.1f}" '
            f'y2="{y:.1f}"/><text class="tick" x="{left - 6}" y="{y + 4:.1f}" '
            f'text-anchor="end">{_n(int(tick))}</text>'
        )
        tick += step
    svg.append(
        f'<text class="axis" transform="translate(16 {top + plot_h / 2:.0f}) '
        f'rotate(-90)" text-anchor="middle">{_e(y_label)}</text>'
    )
    every = max(1, math.ceil(len(labels) / 24))
    for i, text in enumerate(labels):
        x = left + i * slot + (slot - bar) / 2
        base: float = top + plot_h
        for name, colour, values in series:
            v = values[i]
            if not v:
                continue
            h = v / y_max * plot_h
            base -= h
            svg.append(
                f'<rect x="{x:.1f}" y="{base:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{colour}"><title>{_e(text.split(chr(10))[0])} '
                f"{_e(name)}: {_n(v)}</title></rect>"
            )
        if i % every == 0 or "\n" in text:
            svg.append(
                _axis_label(
                    text if i % every == 0 else text.split("\n", 1)[1],
                    left + i * slot + slot / 2,
                    top + plot_h + 16,
                )
            )
    svg.append(
        f'<line class="axisline" x1="{left}" x2="{width - right}" y1="{top + plot_h}" '
        f'y2="{top + plot_h}"/>'
    )
    svg.append("</svg>")
    return "".join(svg) + "\n"


def _heatmap(grid: dict[tuple[str, str], dict[int, int]], labels: Sequence[str], d: _Data) -> str:
    """Gates (rows, grouped by zone) by hours (columns); darker is busier."""
    rows = sorted(grid, key=lambda zg: (zg[0], zg[1]))
    peak = max((n for cells in grid.values() for n in cells.values()), default=1)
    width = 1100
    left, right, top = 230, 70, 8
    cell_h = 18
    plot_w: float = width - left - right
    cell_w = min(64.0, plot_w / max(len(labels), 1))
    plot_w = cell_w * len(labels)
    height = top + cell_h * len(rows) + 46
    bounds = [math.ceil(peak * (i + 1) / len(HEAT_COLOURS)) for i in range(len(HEAT_COLOURS))]
    svg = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        'aria-label="Granted entries per hour at each gate">'
        "<title>Granted entries per hour at each gate</title>"
    ]
    for r, (zone, gate) in enumerate(rows):
        y = top + r * cell_h
        name = f"{gate} ({zone})"
        short = name if len(name) <= 34 else name[:33] + "\u2026"
        svg.append(
            f'<text class="tick" x="{left - 6}" y="{y + 13}" text-anchor="end">'
            f"<title>{_e(name)}</title>{_e(short)}</text>"
        )
        cells = grid[(zone, gate)]
        for c in range(len(labels)):
            n = cells.get(c, 0)
            x = left + c * cell_w
            if n:
                level = min(len(HEAT_COLOURS) - 1, bisect.bisect_left(bounds, n))
                colour = HEAT_COLOURS[level]
            else:
                level, colour = -1, EMPTY_CELL
            hour = labels[c].split("\n")[0]
            svg.append(
                f'<rect x="{x:.1f}" y="{y}" width="{max(cell_w - 1, 0.5):.1f}" '
                f'height="{cell_h - 1}" fill="{colour}"><title>{_e(gate)} {_e(hour)}: '
                f"{_n(n)}</title></rect>"
            )
            if n and cell_w >= 26:
                ink = "#FFFFFF" if level >= 3 else "#000000"
                svg.append(
                    f'<text class="cell" x="{x + cell_w / 2:.1f}" y="{y + 13}" '
                    f'text-anchor="middle" fill="{ink}">{n}</text>'
                )
        total = sum(cells.values())
        svg.append(f'<text class="tick" x="{left + plot_w + 6}" y="{y + 13}">{_n(total)}</text>')
    every = max(1, math.ceil(len(labels) / 24))
    base = top + cell_h * len(rows)
    for c, text in enumerate(labels):
        if c % every == 0 or "\n" in text:
            svg.append(
                _axis_label(
                    text if c % every == 0 else text.split("\n", 1)[1],
                    left + c * cell_w + cell_w / 2,
                    base + 14,
                )
            )
    svg.append("</svg>")
    keys, low = [], 1
    for colour, high in zip(HEAT_COLOURS, bounds, strict=True):
        if high >= low:
            keys.append((f"{_n(low)}\u2013{_n(high)}" if high > low else _n(low), colour))
        low = high + 1
    legend = _legend([("none", EMPTY_CELL), *keys])
    return (
        f'{legend}<p class="note">Entries per gate and hour; the number at the right '
        "is the gate's total.</p>\n" + "".join(svg) + "\n"
    )


def _hbars(items: Sequence[tuple[str, int, str]], *, label: str) -> str:
    width = 1100
    left, right, row_h = 330, 90, 26
    plot_w = width - left - right
    height = row_h * len(items) + 10
    peak = max((n for _, n, _ in items), default=1) or 1
    svg = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{_e(label)}"><title>{_e(label)}</title>'
    ]
    for i, (name, n, colour) in enumerate(items):
        y = 5 + i * row_h
        w = max(2.0, n / peak * plot_w)
        short = name if len(name) <= 48 else name[:47] + "\u2026"
        svg.append(
            f'<text class="tick" x="{left - 8}" y="{y + 16}" text-anchor="end">'
            f"{_e(short)}</text>"
            f'<rect x="{left}" y="{y + 2}" width="{w:.1f}" height="{row_h - 6}" '
            f'fill="{colour}"><title>{_e(name)}: {_n(n)}</title></rect>'
            f'<text class="val" x="{left + w + 6:.1f}" y="{y + 16}">{_n(n)}</text>'
        )
    svg.append("</svg>")
    return "".join(svg) + "\n"


def _script_json(value: Any) -> str:
    """JSON safe inside a <script> element: no ``</script>``, no ``<!--``."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return (
        text.replace("&", "\\u0026")
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _scan_table(d: _Data, clock: _Clock) -> str:
    rows = [
        [
            clock.show(r["ts"]),
            r["gate"],
            r["zone"],
            r["direction"],
            r["serial"],
            r["holder"],
            r["tier"],
            r["decision"],
            r["reason"],
            r["message"],
            r["copy"],
            r["clock"],
        ]
        for r in d.table
    ]
    payload = {"rows": rows, "reasons": REASON_LABELS, "renderCap": RENDER_CAP}
    if len(d.table) >= d.total:
        note = f"All {_n(d.total)} scans, most recent first."
    else:
        note = (
            f"This table holds the {_n(d.table_recent)} most recent scans and "
            f"{_n(d.table_denials)} earlier denials: {_n(len(d.table))} of "
            f"{_n(d.total)} scans. The CSV export (<code>--csv</code>) has them all."
        )
    return f"""<section id="all"><h2>All scans</h2>
<p class="note">{note}</p>
<div class="filters">
<label>Search <input id="f-text" type="search" placeholder="name, serial, gate, message"></label>
<label>Gate <select id="f-gate"><option value="">all</option></select></label>
<label>Zone <select id="f-zone"><option value="">all</option></select></label>
<label>Decision <select id="f-decision"><option value="">all</option></select></label>
<label>Reason <select id="f-reason"><option value="">all</option></select></label>
<label><input id="f-copy" type="checkbox"> suspected copies only</label>
</div>
<p id="f-status" class="note">The filter needs JavaScript.</p>
<div class="scroll tall"><table id="scans" class="compact" data-ready="0"><thead><tr>
<th>time</th><th>gate</th><th>zone</th><th>direction</th><th class="num">serial</th>
<th>holder</th><th>tier</th><th>decision</th><th>reason</th><th>message</th></tr></thead><tbody></tbody></table></div>
<script type="application/json" id="scan-data">{_script_json(payload)}</script>
</section>
"""


def _atomic_write(out: Path, write: Any, newline: str | None = None) -> None:
    tmp = out.with_name(f".{out.name}.partial")
    try:
        with tmp.open("w", encoding="utf-8", newline=newline) as f:
            write(f)
        os.replace(tmp, out)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise ScanLogError(f"cannot write {out}: {err}") from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


_CSS = """
:root { --ink:#1d1d1f; --muted:#666; --line:#ddd; --ok:#006d2c; --bad:#b2182b; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color:var(--ink); background:#fafafa; }
header { background:#fff; border-bottom:1px solid var(--line); padding:18px 28px 10px; }
h1 { margin:0 0 4px; font-size:24px; }
h1 .event { color:#0072B2; }
h2 { margin:0 0 8px; font-size:20px; }
h3 { margin:18px 0 4px; font-size:16px; }
main { padding:0 28px 28px; max-width:1200px; }
section { background:#fff; border:1px solid var(--line); border-radius:8px; padding:16px 18px;
  margin:18px 0; }
.range { margin:0 0 12px; color:var(--muted); }
.tiles { display:flex; flex-wrap:wrap; gap:10px; }
.tile { border:1px solid var(--line); border-radius:8px; padding:8px 14px; min-width:120px;
  background:#fff; }
.tile .v { display:block; font-size:26px; font-weight:700; }
.tile .l { color:var(--muted); font-size:13px; }
.tile.ok .v, .ok { color:var(--ok); }
.tile.bad .v, .bad { color:var(--bad); }
nav { margin-top:12px; }
nav a { margin-right:14px; color:#0072B2; }
.warn { background:#fff4d6; border-left:4px solid #E69F00; padding:6px 10px; }
.muted, .note { color:var(--muted); }
.note { font-size:13px; }
.empty { color:var(--muted); font-style:italic; }
.legend { display:flex; flex-wrap:wrap; gap:6px 16px; margin:6px 0; font-size:13px; }
.key { display:inline-flex; align-items:center; gap:5px; }
.swatch { display:inline-block; width:14px; height:14px; border-radius:2px;
  border:1px solid rgba(0,0,0,.25); }
svg.chart { display:block; width:100%; height:auto; max-width:1100px; margin:4px 0 10px; }
svg .tick { font-size:11px; fill:#444; }
svg .axis { font-size:12px; fill:#444; }
svg .val { font-size:12px; fill:#222; }
svg .cell { font-size:10px; }
svg .grid { stroke:#e6e6e6; }
svg .axisline { stroke:#888; }
table { border-collapse:collapse; width:100%; }
table.compact th, table.compact td { padding:3px 8px; border-bottom:1px solid #eee;
  text-align:left; vertical-align:top; font-size:13px; }
th { background:#f3f3f3; position:sticky; top:0; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; }
tr.denied td { background:#fff5f5; }
tr.copy td:first-child { border-left:4px solid #D55E00; }
details.zone { margin:6px 0; }
.scroll { max-height:420px; overflow:auto; border:1px solid #eee; }
.scroll.tall { max-height:720px; }
#scans td, #copies td { white-space:nowrap; }
#scans td:last-child { white-space:normal; }
@media print { .scroll { max-height:none; overflow:visible; } }
details.zone summary { cursor:pointer; }
.filters { display:flex; flex-wrap:wrap; gap:8px 16px; margin:8px 0; font-size:14px; }
.filters input[type=search] { width:260px; }
footer { color:var(--muted); font-size:12px; padding:0 28px 24px; }
@media print { nav, .filters, #f-status { display:none; } section { break-inside:avoid; } }
"""

# Reads the JSON block, fills the drop-downs and draws the matching rows with
# textContent only (no HTML built from data). The filter is kept in the URL's
# #fragment so a filtered view can be reopened.
_JS = """
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("scan-data").textContent);
  var table = document.getElementById("scans");
  var body = table.tBodies[0];
  var status = document.getElementById("f-status");
  var text = document.getElementById("f-text");
  var copy = document.getElementById("f-copy");
  var cols = {gate: 1, zone: 2, decision: 7, reason: 8};
  var selects = {};
  var rows = data.rows;
  var hay = rows.map(function (r) {
    return [r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8],
            data.reasons[r[8]] || "", r[9]].join(" ").toLowerCase();
  });
  Object.keys(cols).forEach(function (name) {
    var select = document.getElementById("f-" + name);
    var seen = {};
    rows.forEach(function (r) { var v = r[cols[name]]; if (v != null) { seen[v] = 1; } });
    Object.keys(seen).sort().forEach(function (v) {
      var option = document.createElement("option");
      option.value = v;
      option.textContent = name === "reason" ? (data.reasons[v] || v) : v;
      select.appendChild(option);
    });
    selects[name] = select;
  });
  function cell(tr, value, cls) {
    var td = document.createElement("td");
    td.textContent = value == null ? "" : String(value);
    if (cls) { td.className = cls; }
    tr.appendChild(td);
  }
  function apply(fromUser) {
    var q = text.value.trim().toLowerCase();
    var want = {};
    Object.keys(selects).forEach(function (k) { want[k] = selects[k].value; });
    var matched = 0;
    var frag = document.createDocumentFragment();
    for (var i = 0; i < rows.length; i++) {
      var r = rows[i];
      if (q && hay[i].indexOf(q) < 0) { continue; }
      if (copy.checked && !r[10]) { continue; }
      var ok = true;
      for (var k in want) {
        if (want[k] && String(r[cols[k]]) !== want[k]) { ok = false; break; }
      }
      if (!ok) { continue; }
      matched++;
      if (matched > data.renderCap) { continue; }
      var tr = document.createElement("tr");
      if (r[7] === "denied") { tr.className = "denied"; }
      if (r[10]) { tr.className += " copy"; tr.title = "suspected copy"; }
      cell(tr, r[0]); cell(tr, r[1]); cell(tr, r[2]); cell(tr, r[3]);
      cell(tr, r[4], "num"); cell(tr, r[5]); cell(tr, r[6]);
      cell(tr, (r[7] === "granted" ? "\\u2713 " : "\\u2717 ") + r[7]);
      cell(tr, r[8] === "ok" ? "" : (data.reasons[r[8]] || r[8]));
      cell(tr, r[9]);
      frag.appendChild(tr);
    }
    body.replaceChildren(frag);
    status.textContent = matched > data.renderCap
      ? "Showing " + data.renderCap.toLocaleString() + " of " + matched.toLocaleString() +
        " matching rows; narrow the filter to see the rest."
      : matched.toLocaleString() + " of " + rows.length.toLocaleString() + " rows match.";
    if (fromUser !== true) { return; }
    var state = new URLSearchParams();
    if (q) { state.set("q", text.value.trim()); }
    Object.keys(want).forEach(function (k) { if (want[k]) { state.set(k, want[k]); } });
    if (copy.checked) { state.set("copy", "1"); }
    var hash = state.toString();
    if (hash !== location.hash.slice(1)) {
      history.replaceState(null, "", hash ? "#" + hash : location.href.split("#")[0]);
    }
  }
  // Only a fragment with "=" is a saved filter; "#copies" is a link to a section.
  var start = new URLSearchParams(location.hash.indexOf("=") >= 0 ? location.hash.slice(1) : "");
  text.value = start.get("q") || "";
  copy.checked = start.get("copy") === "1";
  Object.keys(selects).forEach(function (k) {
    var v = start.get(k);
    if (v) { selects[k].value = v; }
  });
  function changed() { apply(true); }
  text.addEventListener("input", changed);
  copy.addEventListener("change", changed);
  Object.keys(selects).forEach(function (k) { selects[k].addEventListener("change", changed); });
  apply(false);
  table.setAttribute("data-ready", "1");
})();
"""
