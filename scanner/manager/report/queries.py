"""The report's queries: a merged scan log in, plain data out.

Rules this module keeps:

- Aggregation happens in SQLite (``GROUP BY``, window functions), never row
  by row in Python, so a million scans take seconds; only bounded lists
  (capped at :data:`LIST_CAP`, and the page says so) come back to Python.
- A log may come from anywhere: it is opened read-only, nothing in its
  schema runs (``trusted_schema=OFF``), and every SQLite error becomes a
  :class:`ScanLogError` naming the file. Event details are read with
  ``json_valid`` first: a malformed one is blank, never a failed report.
- A suspected copy is the same pass (event and serial) scanned, granted or
  denied, at two different gates closer in time than a person can walk
  between their doors (the core's :func:`~scanner.core.venue_view.walk_between`).
  Consecutive scans suffice: if any two scans are too close, two
  consecutive ones are too (walks add up).
- Each person is where their last granted scan put them
  (:meth:`Layout.after`), so people are counted once, never once per zone.
- Overrides (the ``override`` scan row, with the gate event that names the
  denied row and who) and door alarms (gate events) are counted per gate.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ...core.policy import OUTSIDE, Policy
from ...core.schedule import Schedule
from ...core.signed import format_utc
from ...core.venue_view import NO_ZONE, ScanPlace
from ...errors import ConfigError, ScanLogError
from ...record.schema import SCAN_COLUMNS
from ...record.spreadsheet import csv_columns_sql
from .clock import Clock, parse_utc
from .layout import Layout
from .reasons import DOOR_ALARMS, FORGED_REASONS, REVOKED_REASONS

TABLE_ROWS = 5000  # most recent scans inlined in the page...
TABLE_DENIALS = 5000  # ...and earlier denials on top
LIST_CAP = 500  # rows per list (inside per zone, copies, forged and revoked)
MOVES_CAP = 100_000  # scans of passes inlined for the time control and the paths
_MAX_WINDOW = timedelta(days=31)  # the time control's longest span

REPORT_STEPS = ("totals", "copies", "moves", "table", "page")


class MergedLog:
    """A merged scan log, open read-only; refused unless its ``scans`` table
    has every column of the scan log. Close it (or use ``with``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.is_file():
            raise ScanLogError(f"no scan log at {path}")
        try:
            self.conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        except sqlite3.Error as err:
            raise ScanLogError(f"cannot open {path}: {err}") from err
        try:
            # A log may come from anywhere: nothing in its schema runs here.
            self.conn.execute("PRAGMA trusted_schema=OFF")
            self.tables = {
                r[0]
                for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
            if "scans" not in self.tables:
                raise ScanLogError(f"{path} is not a merged scan log: it has no scans table")
            have = {r[1] for r in self.conn.execute("PRAGMA table_info(scans)")}
            # Scans are marked by rowid where the table has one (integers
            # index fast); a WITHOUT ROWID table is marked by its id.
            rowid = "rowid" not in have and _has_rowid(self.conn)
            self.key = "rowid" if rowid else "id"
            self.key_column = "k INTEGER PRIMARY KEY" if rowid else "k PRIMARY KEY"
            missing = [c for c in SCAN_COLUMNS if c not in have]
            if missing:
                raise ScanLogError(f"{path}: the scans table lacks {', '.join(missing)}")
        except (sqlite3.Error, ScanLogError) as err:
            self.conn.close()
            if isinstance(err, ScanLogError):
                raise
            raise ScanLogError(f"cannot read {path} as a scan log: {err}") from err

    def __enter__(self) -> MergedLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.close()


def _has_rowid(conn: sqlite3.Connection) -> bool:
    try:
        conn.execute("SELECT rowid FROM scans LIMIT 0")
    except sqlite3.OperationalError:  # a WITHOUT ROWID table
        return False
    return True


def open_log(path: Path) -> MergedLog:
    """Open the merged log at ``path`` (:class:`ScanLogError` if it is none)."""
    return MergedLog(Path(path))


def _query(
    db: MergedLog, sql: str, params: Sequence[Any] | dict[str, Any] = ()
) -> Iterator[tuple[Any, ...]]:
    try:
        yield from db.conn.execute(sql, params)
    except sqlite3.Error as err:
        raise ScanLogError(f"cannot read {db.path}: {err}") from err


def _dicts(db: MergedLog, sql: str, params: Sequence[Any] = ()) -> Iterator[dict[str, Any]]:
    try:
        cursor = db.conn.execute(sql, params)
        names = [d[0] for d in cursor.description]
        for row in cursor:
            yield dict(zip(names, row, strict=True))
    except sqlite3.Error as err:
        raise ScanLogError(f"cannot read {db.path}: {err}") from err


def _script(db: MergedLog, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> None:
    try:
        if params:
            db.conn.execute(sql, params)
        else:
            db.conn.executescript(sql)
    except sqlite3.Error as err:
        raise ScanLogError(f"cannot read {db.path}: {err}") from err


def places_and_events(
    db: MergedLog,
) -> tuple[list[tuple[str, str | None, str | None, str | None]], set[str]]:
    """Each (gate, zone, direction, door) the log names, and its events."""
    places, events = set(), set()
    for gate, zone, direction, door, event in _query(
        db, "SELECT DISTINCT gate, zone, direction, door, event FROM scans"
    ):
        places.add((gate, zone, direction, door))
        events.add(event)
    return sorted(places, key=lambda p: tuple(x or "" for x in p)), events


def check_event(events: Iterable[str | None], policy: Policy | None) -> None:
    """Refuse (:class:`ConfigError`) a policy for another event than the log's."""
    named = sorted(e for e in events if e)
    if policy is not None and named and policy.event not in named:
        raise ConfigError(
            f"the policy is for event {policy.event!r}; this log holds "
            f"{', '.join(repr(e) for e in named)}: give that event's policy"
        )


def find_copies(db: MergedLog, layout: Layout) -> None:
    """Fill the temporary tables ``copy_pairs`` and ``copy_keys``.

    ``copy_pairs``: consecutive scans of one pass (event and serial) at two
    gates closer in time than one person could make both; ``copy_keys``:
    the scans in any such pair (by ``db.key``). The least time between two
    scans is the core's rule (:func:`~scanner.core.venue_view.walk_between`:
    the walk through the zone the path lies in, none for an entry then an
    exit of one zone), the one the gates apply live. SQL finds the pairs no
    further apart than the longest walk; the rule is then worked out once
    per pair of places (gate, zone, direction, door, decision) in them. The
    window runs over a plain table scan (``+serial`` keeps SQLite off the
    serial index, whose row-by-row lookups are slower).
    """
    key = db.key
    _script(
        db,
        f"""
        DROP TABLE IF EXISTS temp.copy_pairs;
        DROP TABLE IF EXISTS temp.copy_keys;
        DROP TABLE IF EXISTS temp.copy_candidates;
        DROP TABLE IF EXISTS temp.report_walks;
        CREATE TEMP TABLE copy_pairs (k, prev_k, event, serial, ts, prev_ts, gate, gap, walk);
        CREATE TEMP TABLE copy_keys ({db.key_column});
        CREATE TEMP TABLE copy_candidates (k, prev_k, event, serial, ts, prev_ts, gate, gap,
                                           place TEXT, prev_place TEXT);
        CREATE TEMP TABLE report_walks (a TEXT, b TEXT, seconds REAL,
                                        PRIMARY KEY (a, b)) WITHOUT ROWID;
    """,
    )
    if not layout.checks_copies:
        return
    place = (
        "json_array(gate, zone, direction, door, decision = 'granted')",
        "json_array(prev_gate, prev_zone, prev_direction, prev_door, prev_decision = 'granted')",
    )
    _script(
        db,
        f"""
        INSERT INTO copy_candidates
        SELECT k, prev_k, event, serial, ts, prev_ts, gate, gap, {place[0]}, {place[1]}
        FROM (
            SELECT *, abs(round((julianday(ts) - julianday(prev_ts)) * 86400.0, 3)) AS gap
            FROM (
                SELECT {key} AS k, event, serial, ts, gate, zone, direction, door, decision,
                       LAG({key}) OVER w AS prev_k, LAG(ts) OVER w AS prev_ts,
                       LAG(gate) OVER w AS prev_gate, LAG(zone) OVER w AS prev_zone,
                       LAG(direction) OVER w AS prev_direction, LAG(door) OVER w AS prev_door,
                       LAG(decision) OVER w AS prev_decision
                FROM scans
                WHERE +serial IS NOT NULL
                WINDOW w AS (PARTITION BY event, serial ORDER BY ts, gate, id)
            )
            WHERE prev_gate IS NOT NULL AND gate <> prev_gate
        )
        WHERE gap < :longest
    """,
        {"longest": layout.longest_walk},
    )
    pairs = list(_query(db, "SELECT DISTINCT prev_place, place FROM temp.copy_candidates"))
    walks = []
    for first, then in pairs:
        walk = layout.walk_between(_scan_place(first), _scan_place(then))
        walks.append((first, then, None if walk is None else walk))
    try:
        db.conn.executemany("INSERT INTO temp.report_walks VALUES (?, ?, ?)", walks)
    except sqlite3.Error as err:
        raise ScanLogError(f"cannot read {db.path}: {err}") from err
    _script(
        db,
        """
        INSERT INTO copy_pairs
        SELECT c.k, c.prev_k, c.event, c.serial, c.ts, c.prev_ts, c.gate, c.gap, w.seconds
        FROM temp.copy_candidates c
        JOIN temp.report_walks w ON w.a = c.prev_place AND w.b = c.place
        WHERE w.seconds IS NOT NULL AND c.gap < w.seconds;
        INSERT OR IGNORE INTO copy_keys
        SELECT k FROM copy_pairs UNION ALL SELECT prev_k FROM copy_pairs;
        DROP TABLE temp.copy_candidates;
    """,
    )


def _scan_place(text: str) -> ScanPlace:
    gate, zone, direction, door, granted = json.loads(text)
    return ScanPlace(gate, zone, direction, door, bool(granted))


@dataclass
class ReportData:
    """Everything the page shows, as plain values: totals, per gate, per
    reason and per hour, and the capped lists."""

    layout: Layout
    total: int = 0
    granted: int = 0
    denied: int = 0
    untrusted_clock: int = 0
    with_serial: int = 0
    first_ts: str | None = None
    last_ts: str | None = None
    trusted_first: str | None = None
    trusted_last: str | None = None
    events: Counter[str] = field(default_factory=Counter)
    gates: dict[str, dict[str, Any]] = field(default_factory=dict)
    places: list[tuple[str, str | None, str | None, str | None]] = field(default_factory=list)
    denials: Counter[str] = field(default_factory=Counter)
    denials_by_gate: dict[str, Counter[str]] = field(default_factory=dict)
    hourly: list[tuple[str, str, str, int]] = field(default_factory=list)  # hour, zone, gate, n
    inside: list[dict[str, Any]] = field(default_factory=list)  # people inside now
    copies: list[dict[str, Any]] = field(default_factory=list)
    copies_total: int = 0
    copied_passes: int = 0
    attempts: list[dict[str, Any]] = field(default_factory=list)
    attempts_total: int = 0
    table: list[dict[str, Any]] = field(default_factory=list)
    table_recent: int = 0
    table_denials: int = 0
    exports: int = 0
    window: tuple[datetime, datetime] | None = None
    moves: dict[str, Any] = field(default_factory=dict)
    overrides: list[dict[str, Any]] = field(default_factory=list)
    overrides_total: int = 0
    alarms: list[dict[str, Any]] = field(default_factory=list)
    alarms_total: int = 0
    show_days: list[dict[str, Any]] = field(default_factory=list)  # totals per show day


def _new_gate() -> dict[str, Any]:
    return {
        "zones": set(),
        "directions": set(),
        "doors": set(),
        "scans": 0,
        "granted": 0,
        "denied": 0,
        "first_ts": None,
        "last_ts": None,
        "device_key_id": None,
        "last_export_at": None,
        "exports": 0,
        "overrides": 0,
        **dict.fromkeys(DOOR_ALARMS, 0),
    }


def _earlier(a: str | None, b: str | None) -> str | None:
    return min(filter(None, (a, b)), default=None)


def _later(a: str | None, b: str | None) -> str | None:
    return max(filter(None, (a, b)), default=None)


def csv_rows(db: MergedLog) -> Iterator[tuple[Any, ...]]:
    """Every scan in time order, as the CSV's cells (the scan log's columns,
    each defused, then ``suspected_copy``); :func:`find_copies` first.
    Built in SQL, so a million rows never pass through Python a field at a time."""
    sql = (
        f"SELECT {csv_columns_sql()}, CASE WHEN {db.key} IN (SELECT k FROM temp.copy_keys) "
        "THEN 'true' ELSE 'false' END FROM scans ORDER BY ts, gate, seq"
    )
    return _query(db, sql)


def gather(
    db: MergedLog,
    *,
    policy: Policy | None,
    walk_seconds: float | None,
    table_rows: int,
    table_denials: int,
    moves_cap: int,
    clock: Clock,
    step: Callable[[str], None],
) -> ReportData:
    """Read everything the page shows (see the module doc), calling ``step``
    after each of the first four :data:`REPORT_STEPS`."""
    rows = list(
        _dicts(
            db,
            """
        SELECT event, gate, zone, direction, door, decision, reason, clock,
               count(*) AS n, count(serial) AS with_serial,
               min(ts) AS first_ts, max(ts) AS last_ts
        FROM scans GROUP BY event, gate, zone, direction, door, decision, reason, clock
    """,
        )
    )
    check_event((r["event"] for r in rows), policy)
    zones = {r["zone"] for r in rows if r["zone"]}
    d = ReportData(layout=Layout(policy, walk_seconds, zones))
    places: set[tuple[str, str | None, str | None, str | None]] = set()
    # One pass over the table for every total, per gate, per reason and per event.
    for row in rows:
        n = row["n"]
        d.total += n
        d.with_serial += row["with_serial"]
        if row["decision"] == "granted":
            d.granted += n
        elif row["decision"] == "denied":
            d.denied += n
            reason = row["reason"] or "unknown"
            d.denials[reason] += n
            d.denials_by_gate.setdefault(reason, Counter())[row["gate"]] += n
        if row["clock"] == "untrusted":
            d.untrusted_clock += n
        else:
            d.trusted_first = _earlier(d.trusted_first, row["first_ts"])
            d.trusted_last = _later(d.trusted_last, row["last_ts"])
        if row["event"]:
            d.events[row["event"]] += n
        d.first_ts = _earlier(d.first_ts, row["first_ts"])
        d.last_ts = _later(d.last_ts, row["last_ts"])
        places.add((row["gate"], row["zone"], row["direction"], row["door"]))
        g = d.gates.setdefault(row["gate"], _new_gate())
        for key, value in (("zones", "zone"), ("directions", "direction"), ("doors", "door")):
            if row[value]:
                g[key].add(row[value])
        g["scans"] += n
        if row["decision"] in ("granted", "denied"):
            g[row["decision"]] += n
        g["first_ts"] = _earlier(g["first_ts"], row["first_ts"])
        g["last_ts"] = _later(g["last_ts"], row["last_ts"])
    d.places = sorted(places, key=lambda p: tuple(x or "" for x in p))

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

    _door_report(db, d)

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
    step("totals")

    find_copies(db, d.layout)
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
        SELECT p.gap, p.walk, p.serial, b.ts, b.gate, b.zone, b.direction, b.door, b.decision,
               b.clock, b.holder, b.tier, a.ts AS prev_ts, a.gate AS prev_gate,
               a.zone AS prev_zone, a.direction AS prev_direction, a.door AS prev_door,
               a.decision AS prev_decision, a.clock AS prev_clock, a.holder AS prev_holder
        FROM (SELECT * FROM copy_pairs ORDER BY ts, gate LIMIT {LIST_CAP:d}) p
        JOIN scans a ON a.{db.key} = p.prev_k JOIN scans b ON b.{db.key} = p.k
        ORDER BY p.ts, p.gate
    """,
        )
    )
    for pair in d.copies:
        pair["door"] = d.layout.door(pair["gate"], pair["zone"], pair["door"])
        pair["prev_door"] = d.layout.door(pair["prev_gate"], pair["prev_zone"], pair["prev_door"])
    step("copies")

    d.show_days = _show_days(db, policy)
    d.window = _window(d, policy)
    d.moves = _moves(db, d, clock, moves_cap)
    d.inside.sort(key=lambda r: ((r["holder"] or "").casefold(), r["serial"]))
    step("moves")

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

    columns = (
        "id, ts, gate, door, zone, direction, serial, holder, tier, decision, reason, "
        f"message, clock, {db.key} IN (SELECT k FROM temp.copy_keys) AS copy"
    )
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
    step("table")
    return d


def _door_report(db: MergedLog, d: ReportData) -> None:
    """Overrides and door alarms, per gate (see the module doc)."""
    for gate, n in _query(
        db, "SELECT gate, count(*) FROM scans WHERE reason = 'override' GROUP BY gate"
    ):
        d.gates.setdefault(gate, _new_gate())["overrides"] = n
        d.overrides_total += n
    has_events = "events" in db.tables and {"gate", "kind", "detail", "ts"} <= {
        r[1] for r in _query(db, "PRAGMA table_info(events)")
    }

    def field_(name: str) -> str:
        return f"CASE WHEN json_valid(e.detail) THEN json_extract(e.detail, '$.{name}') END"

    join = (
        "LEFT JOIN events e ON e.kind = 'override' AND json_valid(e.detail) "
        "AND json_extract(e.detail, '$.scan') = s.id"
        if has_events
        else ""
    )
    columns = (
        f"{field_('by')} AS by, {field_('reason')} AS denied_reason, "
        f"{field_('denied')} AS denied_row"
        if has_events
        else "NULL AS by, NULL AS denied_reason, NULL AS denied_row"
    )
    d.overrides = list(
        _dicts(
            db,
            f"""
        SELECT s.ts, s.gate, s.door, s.zone, s.serial, s.holder, s.tier, s.message, {columns}
        FROM scans s {join} WHERE s.reason = 'override' ORDER BY s.ts LIMIT {LIST_CAP:d}
    """,
        )
    )
    if not has_events:
        return
    kinds = ", ".join(f"'{k}'" for k in DOOR_ALARMS)
    for gate, kind, n in _query(
        db, f"SELECT gate, kind, count(*) FROM events WHERE kind IN ({kinds}) GROUP BY gate, kind"
    ):
        d.gates.setdefault(gate, _new_gate())[kind] = n
        d.alarms_total += n
    d.alarms = list(
        _dicts(
            db,
            f"SELECT ts, gate, kind FROM events WHERE kind IN ({kinds}) "
            f"ORDER BY ts LIMIT {LIST_CAP:d}",
        )
    )


def _show_days(db: MergedLog, policy: Policy | None) -> list[dict[str, Any]]:
    """Totals per show day of a policy with several (each day from its
    opening to its curfew, in one pass over the scans), and a last row for
    scans outside every day; nothing for a one-day event."""
    if policy is None or len(policy.days) < 2:
        return []
    bounds: list[Any] = []
    cases = []
    for number, show_day in enumerate(policy.days, 1):
        cases.append(f"WHEN t >= julianday(?) AND t < julianday(?) THEN {number:d}")
        bounds += [format_utc(show_day.opens), format_utc(show_day.curfew)]
    totals = {
        number: (n, granted, denied, by_hand, people)
        for number, n, granted, denied, by_hand, people in _query(
            db,
            f"""
        SELECT day, count(*), total(decision = 'granted'), total(decision = 'denied'),
               total(reason = 'override'),
               count(DISTINCT CASE WHEN decision = 'granted' THEN event || ':' || serial END)
        FROM (SELECT *, CASE {" ".join(cases)} ELSE 0 END AS day
              FROM (SELECT *, julianday(ts) AS t FROM scans))
        GROUP BY day
    """,
            bounds,
        )
    }
    rows = []
    days: list[Schedule | None] = [*policy.days, None]
    for number, day in enumerate(days, 1):
        n, granted, denied, by_hand, people = totals.get(
            number if day is not None else 0, (0, 0, 0, 0, 0)
        )
        if day is None and not n:
            break
        rows.append(
            {
                "day": number if day is not None else None,
                "opens": day.opens if day is not None else None,
                "curfew": day.curfew if day is not None else None,
                "scans": n,
                "granted": int(granted),
                "denied": int(denied),
                "overrides": int(by_hand),
                "people": people,
            }
        )
    return rows


def _window(d: ReportData, policy: Policy | None) -> tuple[datetime, datetime] | None:
    """The span of the time control: the event (opens to curfew) and every
    scan made on a trusted clock (any scan, if none was), at most a month up
    to the last."""
    ends = [t for t in (parse_utc(d.trusted_first), parse_utc(d.trusted_last)) if t]
    if not ends:
        ends = [t for t in (parse_utc(d.first_ts), parse_utc(d.last_ts)) if t]
    if policy is not None:
        ends += [policy.opens, policy.curfew]
    if not ends:
        return None
    start, end = min(ends), max(ends)
    return max(start, end - _MAX_WINDOW), end


def _moves(db: MergedLog, d: ReportData, clock: Clock, cap: int) -> dict[str, Any]:
    """The scans of passes, as plain numbers, for the time control and the paths.

    ``scans`` is a flat list of five numbers per scan, in time order: the
    person (index into ``people``), the second (from ``t0``), the place
    (index into ``places``: gate, door, zone, direction and where a grant
    there leaves its holder), the reason (index into ``reasons``) and flags
    (1 granted, 2 suspected copy). A log with more than ``cap`` such scans
    keeps its last ``cap``; each pass's last grant before them comes first,
    so who is where stays exact from ``cut`` on. Each pass's last grant in
    these rows is where it is now: ``d.inside`` gets everyone not outside.
    """
    layout = d.layout
    if d.window is None:
        return {}
    t0 = d.window[0].replace(microsecond=0)
    tree = layout.zone_tree(z for _, z, _, _ in d.places if z)
    locations = [OUTSIDE] + [z for z, _ in tree]
    if any(not z for _, z, _, _ in d.places) and NO_ZONE not in locations:
        locations.append(NO_ZONE)
    loc_index = {z: i for i, z in enumerate(locations)}
    place_index: dict[tuple[Any, ...], int] = {}
    places: list[list[Any]] = []

    def place(gate: str, zone: str | None, direction: str | None, door: str | None) -> int:
        key = (gate, zone, direction, door)
        found = place_index.get(key)
        if found is None:
            where = layout.after(gate, zone, direction, door)
            if where not in loc_index:
                loc_index[where] = len(locations)
                locations.append(where)
            found = place_index[key] = len(places)
            places.append([gate, layout.door(gate, zone, door), zone, direction, loc_index[where]])
        return found

    reasons: dict[str, int] = {}
    people: dict[tuple[Any, Any], int] = {}
    person_rows: list[list[Any]] = []
    last_grant: dict[int, tuple[int, str]] = {}  # person: (place, ts)
    flat: list[int] = []
    cut: str | None = None
    if d.with_serial > cap:
        found = next(
            _query(
                db,
                "SELECT ts FROM scans WHERE +serial IS NOT NULL ORDER BY ts DESC LIMIT 1 OFFSET ?",
                [cap],
            ),
            None,
        )
        cut = found[0] if found else None
    offset = "CAST(round((julianday(ts) - julianday(:t0)) * 86400.0) AS INTEGER)"
    sources = []
    if cut is not None:
        sources.append(
            f"""
            SELECT event, serial, holder, tier, gate, zone, direction, door, reason, decision,
                   {offset} AS t, 0 AS copy, max(ts) AS ts
            FROM scans WHERE decision = 'granted' AND +serial IS NOT NULL AND ts <= :cut
            GROUP BY event, serial ORDER BY ts
        """
        )
    sources.append(
        f"""
        SELECT event, serial, holder, tier, gate, zone, direction, door, reason, decision,
               {offset} AS t, {db.key} IN (SELECT k FROM temp.copy_keys) AS copy, ts
        FROM scans WHERE +serial IS NOT NULL AND ts > :cut
        ORDER BY ts, gate, seq
    """
    )
    params = {"t0": t0.isoformat(), "cut": cut or ""}
    for sql in sources:
        for row in _query(db, sql, params):
            (
                event,
                serial,
                holder,
                tier,
                gate,
                zone,
                direction,
                door,
                reason,
                decision,
                t,
                copy,
                ts,
            ) = row
            key = (event, serial)
            who = people.get(key)
            if who is None:
                who = people[key] = len(person_rows)
                person_rows.append([event, serial, holder, tier])
            elif holder:
                person_rows[who][2], person_rows[who][3] = holder, tier
            why = reasons.setdefault(reason or "", len(reasons))
            here = place(gate, zone, direction, door)
            granted = decision == "granted"
            if granted:
                last_grant[who] = (here, ts)
            flat += (who, t or 0, here, why, (1 if granted else 0) | (2 if copy else 0))
    for who, (here, ts) in last_grant.items():
        gate, door, _zone, _direction, where = places[here]
        if where != loc_index[OUTSIDE]:
            event, serial, holder, tier = person_rows[who]
            d.inside.append(
                {"event": event, "serial": serial, "holder": holder, "tier": tier, "ts": ts}
                | {"gate": gate, "door": door, "where": locations[where]}
            )
    enclosing = [
        [loc_index[z] for z in layout.enclosing(loc) if z in loc_index] for loc in locations
    ]
    depth = dict(tree)
    return {
        "t0": int(t0.timestamp()),
        "start": 0,
        "end": int((d.window[1] - t0).total_seconds()),
        "now": _seconds_from(t0, d.last_ts, d.window),
        "cut": _seconds_from(t0, cut, d.window) if cut else None,
        "cutText": clock.show(cut) if cut else None,
        "offsets": clock.offsets(*d.window),
        "zone": clock.name,
        "locations": locations,
        "depth": [depth.get(z, 0) for z in locations],
        "enclosing": enclosing,
        "places": places,
        "reasons": list(reasons),
        "people": person_rows,
        "scans": flat,
    }


def _seconds_from(t0: datetime, ts: str | None, window: tuple[datetime, datetime]) -> int:
    when = parse_utc(ts) or window[1]
    when = min(max(when, window[0]), window[1])
    return int((when - t0).total_seconds())
