"""The manager's report: one self-contained HTML page from a merged scan log.

:func:`build_report` reads a database made by ``scanner logs merge`` and,
when given, the event policy (for the venue: which zone sits inside which,
the doors between them, how long a walk between two doors takes, and the
event's time zone). It returns a page that opens from a USB stick on any
laptop: no network, no external script, style sheet or font. The page is a
Jinja2 template (``templates/report.html``, autoescaped) fed with plain data;
Python keeps the queries. :func:`write_csv` writes every scan as CSV with a
``suspected_copy`` flag.

Rules this module keeps:

- Aggregation happens in SQLite (``GROUP BY``, window functions), never row
  by row in Python, so a million scans take seconds; only bounded lists
  (capped, and the page says so) come back to Python.
- Everything read from the database is untrusted text (a holder's name is
  whatever the organizer typed; a log may come from anywhere). It reaches
  the page through the template's autoescaping, or as JSON in one
  ``<script type="application/json">`` block with ``<``, ``>`` and ``&``
  escaped, which the page's script reads with ``JSON.parse`` and writes with
  ``textContent`` only. The page's Content-Security-Policy runs only its own
  script (by hash) and loads nothing from anywhere.
- Where a person is: a granted entry puts them in the gate's zone; a granted
  exit puts them where the door leads out to (the door's ``from`` zone, else
  the zone around, else outside). Being inside a zone is being in it or in
  a zone within it. Each person is where their last granted scan put them,
  so people are counted once, never once per zone.
- A suspected copy is the same pass (event and serial) scanned, granted or
  denied, at two different gates closer in time than a person can walk
  between their doors (:meth:`Venue.walk`: 0 at the same door, the policy's
  ``[[walks]]``, else its ``walk_seconds``; a gate whose door is unknown is
  the default walk from anywhere). Consecutive scans suffice: if any two
  scans are too close, two consecutive ones are too (walks add up).
- The door reports itself: overrides (a guard let a denied person in by
  hand: the ``override`` scan row, with the gate event that names the
  denied row and who) are listed per gate, and door alarms (forced, held
  open, tamper: gate events) are counted per gate. Event details are
  read with ``json_valid`` first: a malformed one is shown blank, never
  a failed report.
- Times are stored in UTC; the page shows them in the event's time zone
  (``tz`` overrides) and says which.
"""

from __future__ import annotations

import base64
import bisect
import csv
import hashlib
import itertools
import json
import math
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, tzinfo
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2
from markupsafe import Markup

from ..core.decision import Reason
from ..core.policy import OUTSIDE, Policy, Venue
from ..core.signed import format_utc
from ..core.venue_view import ScanPlace, walk_between
from ..errors import ConfigError, ScanLogError
from ..files import replacing
from ..record.schema import SCAN_COLUMNS
from ..record.spreadsheet import csv_columns_sql
from ..words import plural

__all__ = [
    "DEFAULT_WALK_SECONDS",
    "FORGED_REASONS",
    "REASON_LABELS",
    "REPORT_STEPS",
    "build_report",
    "write_csv",
    "write_report",
]

FORGED_REASONS = ("bad_signature", "unknown_key", "malformed")
REVOKED_REASONS = ("revoked",)
DEFAULT_WALK_SECONDS = 120.0  # between any two gates, when no policy says better

REASON_LABELS: dict[str, str] = {r.value: r.label for r in Reason}  # the core's words
DOOR_ALARMS: dict[str, str] = {  # gate event kind: what the report calls it
    "door_forced": "door forced",
    "door_held_open": "door held open",
    "tamper": "case opened (tamper)",
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

def _class_of_reason(code: str) -> str:
    """What kind of denial a reason is: the door's own signal class
    (``Reason.signal``), except that the report keeps revoked passes apart
    from forgeries (the door signals both alike: keep the pass)."""
    if code == Reason.REVOKED.value:
        return "revoked"
    try:
        return Reason(code).signal.value
    except ValueError:
        return "other"


DENIAL_CLASSES: dict[str, tuple[str, str]] = {  # class: (label, colour)
    "forged": ("forged or not a pass", "#D55E00"),
    "revoked": ("revoked", "#CC79A7"),
    "not_here": ("genuine pass, not allowed here", "#0072B2"),
    "time": ("wrong time for this pass", "#E69F00"),
    "already_inside": ("already inside", "#56B4E9"),
    "suspected_copy": ("suspected copy (too far, too soon)", "#009E73"),
    "fault": ("fault at the gate", "#666666"),
    "other": ("other", "#999999"),
}

TABLE_ROWS = 5000  # most recent scans inlined in the page...
TABLE_DENIALS = 5000  # ...and earlier denials on top
LIST_CAP = 500  # rows per list (inside per zone, copies, forged and revoked)
RENDER_CAP = 1000  # table rows the page draws at once; the filter narrows the rest
MOVES_CAP = 100_000  # scans of passes inlined for the time control and the paths
_CONTINUOUS_HOURS = 96  # longer spans show only the hours that have entries
_MAX_WINDOW = timedelta(days=31)  # the time control's longest span
NO_ZONE = "(no zone)"

REPORT_STEPS = ("totals", "copies", "moves", "table", "page")

_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("scanner.manager", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


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
    clock = _Clock(_zone(zone_name), zone_name, event_zone=tz is None and policy is not None)
    now = now or datetime.now(UTC)
    with _open(db_path) as db:
        d = _gather(
            db,
            policy=policy,
            walk_seconds=walk_seconds,
            table_rows=table_rows,
            table_denials=table_denials,
            moves_cap=moves_cap,
            clock=clock,
            step=step,
        )
    page = _render(d, clock, db_path=Path(db_path), now=now)
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
    with _open(db_path) as db:
        places, events = _places_and_events(db)
        _check_event(events, policy)
        layout = _Layout(policy, walk_seconds, (zone for _, zone, _, _ in places if zone))
        _find_copies(db, layout, places)
        # Built in SQL, so a million rows never pass through Python a field at a time.
        sql = (
            f"SELECT {csv_columns_sql()}, CASE WHEN {db.key} IN (SELECT k FROM temp.copy_keys) "
            "THEN 'true' ELSE 'false' END FROM scans ORDER BY ts, gate, seq"
        )

        def write(f: Any) -> None:
            nonlocal rows
            writer = csv.writer(f)
            writer.writerow([*SCAN_COLUMNS, "suspected_copy"])
            cursor = _query(db, sql)
            while batch := list(itertools.islice(cursor, 10_000)):
                writer.writerows(batch)
                rows += len(batch)

        _atomic_write(Path(out), write, newline="")
    return rows


# -- the venue as the report sees it -------------------------------------------


class _Layout:
    """Where a gate stands, where a granted scan leaves a person, how far
    apart two doors are: the policy's venue, or a flat one without it."""

    def __init__(
        self, policy: Policy | None, walk_seconds: float | None, zones_seen: Iterable[str]
    ) -> None:
        if policy is not None:
            venue, self.roster = policy.places, dict(policy.gates)
        else:
            venue, self.roster = Venue(tuple(sorted(set(zones_seen)))), {}
            if walk_seconds is None:
                walk_seconds = DEFAULT_WALK_SECONDS
        if walk_seconds:
            venue = replace(venue, walk_default=timedelta(seconds=walk_seconds))
        self.venue = venue
        self.checks_copies = walk_seconds != 0
        self.from_policy = policy is not None
        into: dict[str, list[str]] = defaultdict(list)
        for door in venue.doors.values():
            into[door.to_zone].append(door.id)
        # A zone with one door in: any gate of that zone stands at that door.
        self._only_door = {zone: doors[0] for zone, doors in into.items() if len(doors) == 1}

    def door(self, gate: str | None, zone: str | None, door: str | None) -> str | None:
        """The door a scan happened at: its own, the roster's, or the zone's only door."""
        if door:
            return door
        place = self.roster.get(gate or "")
        if place is not None and place.door and place.zone == zone:
            return place.door
        return self._only_door.get(zone or "")

    def after(
        self, gate: str | None, zone: str | None, direction: str | None, door: str | None
    ) -> str:
        """Where a granted scan at this gate leaves its holder: a zone or OUTSIDE."""
        if direction != "exit":
            return zone or NO_ZONE
        known = self.venue.doors.get(self.door(gate, zone, door) or "")
        if known is not None and known.to_zone == zone:
            return known.from_zone
        return self.venue.within.get(zone or NO_ZONE, OUTSIDE)

    def walk_between(self, first: ScanPlace, then: ScanPlace) -> float | None:
        """Seconds one person needs between two scans (None: never a copy)."""
        walk = walk_between(self.venue, self.roster, first, then)
        return None if walk is None else walk.total_seconds()

    @property
    def longest_walk(self) -> float:
        return self.venue.longest_walk.total_seconds()

    def zone_tree(self, seen: Iterable[str]) -> list[tuple[str, int]]:
        """Every zone (the venue's, then any others the log names) with its
        depth, each followed by the zones within it."""
        zones = list(self.venue.zones)
        zones += sorted(set(seen) - set(zones) - {OUTSIDE})
        known = set(zones)
        children: dict[str | None, list[str]] = defaultdict(list)
        for zone in zones:
            parent = self.venue.within.get(zone)
            children[parent if parent in known else None].append(zone)
        out: list[tuple[str, int]] = []

        def walk(parent: str | None, depth: int) -> None:
            for zone in children[parent]:
                out.append((zone, depth))
                walk(zone, depth + 1)

        walk(None, 0)
        return out

    def enclosing(self, zone: str) -> tuple[str, ...]:
        return () if zone == OUTSIDE else self.venue.enclosing(zone)


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

    def __enter__(self) -> _Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.close()


def _has_rowid(conn: sqlite3.Connection) -> bool:
    try:
        conn.execute("SELECT rowid FROM scans LIMIT 0")
    except sqlite3.OperationalError:  # a WITHOUT ROWID table
        return False
    return True


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


def _script(db: _Connection, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> None:
    try:
        if params:
            db.conn.execute(sql, params)
        else:
            db.conn.executescript(sql)
    except sqlite3.Error as err:
        raise ScanLogError(f"cannot read {db.path}: {err}") from err


def _places_and_events(
    db: _Connection,
) -> tuple[list[tuple[str, str | None, str | None, str | None]], set[str]]:
    """Each (gate, zone, direction, door) the log names, and its events."""
    places, events = set(), set()
    for gate, zone, direction, door, event in _query(
        db, "SELECT DISTINCT gate, zone, direction, door, event FROM scans"
    ):
        places.add((gate, zone, direction, door))
        events.add(event)
    return sorted(places, key=lambda p: tuple(x or "" for x in p)), events


def _check_event(events: Iterable[str | None], policy: Policy | None) -> None:
    named = sorted(e for e in events if e)
    if policy is not None and named and policy.event not in named:
        raise ConfigError(
            f"the policy is for event {policy.event!r}; this log holds "
            f"{', '.join(repr(e) for e in named)}: give that event's policy"
        )


def _find_copies(
    db: _Connection,
    layout: _Layout,
    places: Iterable[tuple[str, str | None, str | None, str | None]],
) -> None:
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
    del places  # the pairs name their own places
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
    pairs = list(
        _query(db, "SELECT DISTINCT prev_place, place FROM temp.copy_candidates")
    )
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
class _Data:
    layout: _Layout
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


def _gather(
    db: _Connection,
    *,
    policy: Policy | None,
    walk_seconds: float | None,
    table_rows: int,
    table_denials: int,
    moves_cap: int,
    clock: _Clock,
    step: Callable[[str], None],
) -> _Data:
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
    _check_event((r["event"] for r in rows), policy)
    zones = {r["zone"] for r in rows if r["zone"]}
    d = _Data(layout=_Layout(policy, walk_seconds, zones))
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

    _door(db, d)

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

    _find_copies(db, d.layout, d.places)
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


def _door(db: _Connection, d: _Data) -> None:
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


def _show_days(db: _Connection, policy: Policy | None) -> list[dict[str, Any]]:
    """Totals per show day of a policy with several (each day from its
    opening to its curfew, in one pass over the scans), and a last row for
    scans outside every day; nothing for a one-day event."""
    if policy is None or len(policy.days) < 2:
        return []
    bounds: list[Any] = []
    cases = []
    for number, day in enumerate(policy.days, 1):
        cases.append(f"WHEN t >= julianday(?) AND t < julianday(?) THEN {number:d}")
        bounds += [format_utc(day.opens), format_utc(day.curfew)]
    totals = {
        number: (n, granted, denied, by_hand, people)
        for number, n, granted, denied, by_hand, people in _query(
            db,
            f"""
        SELECT day, count(*), total(decision = 'granted'), total(decision = 'denied'),
               total(reason = 'override'),
               count(DISTINCT CASE WHEN decision = 'granted' THEN event || ':' || serial END)
        FROM (SELECT *, CASE {' '.join(cases)} ELSE 0 END AS day
              FROM (SELECT *, julianday(ts) AS t FROM scans))
        GROUP BY day
    """,
            bounds,
        )
    }
    rows = []
    for number, day in enumerate([*policy.days, None], 1):
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


def _window(d: _Data, policy: Policy | None) -> tuple[datetime, datetime] | None:
    """The span of the time control: the event (opens to curfew) and every
    scan made on a trusted clock (any scan, if none was), at most a month up
    to the last."""
    ends = [t for t in (_parse_utc(d.trusted_first), _parse_utc(d.trusted_last)) if t]
    if not ends:
        ends = [t for t in (_parse_utc(d.first_ts), _parse_utc(d.last_ts)) if t]
    if policy is not None:
        ends += [policy.opens, policy.curfew]
    if not ends:
        return None
    start, end = min(ends), max(ends)
    return max(start, end - _MAX_WINDOW), end


def _moves(db: _Connection, d: _Data, clock: _Clock, cap: int) -> dict[str, Any]:
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
    when = _parse_utc(ts) or window[1]
    when = min(max(when, window[0]), window[1])
    return int((when - t0).total_seconds())


def _parse_utc(ts: str | None) -> datetime | None:
    if not ts:
        return None
    try:
        when = datetime.fromisoformat(ts)
    except ValueError:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


# -- time ---------------------------------------------------------------------


def _zone(tz: str) -> tzinfo:
    if tz == "UTC":
        return UTC
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise ConfigError(f"unknown time zone {tz!r}: use a name like Europe/London") from err


class _Clock:
    """Shows stored UTC times in the report's time zone."""

    def __init__(self, zone: tzinfo, name: str, *, event_zone: bool = False) -> None:
        self.zone = zone
        self.name = name
        self.event_zone = event_zone

    def parse(self, ts: str | None) -> datetime | None:
        when = _parse_utc(ts)
        return when.astimezone(self.zone) if when else None

    def show(self, ts: str | None, *, date: bool = True) -> str:
        """``ts`` to the nearest second, as the timeline's moves round it too:
        one scan shows the same second in every section."""
        when = self.parse(ts)
        if when is None:
            return ts or ""
        when = (when + timedelta(microseconds=500_000)).replace(microsecond=0)
        return when.strftime("%Y-%m-%d %H:%M:%S" if date else "%H:%M:%S")

    def hour(self, key: str) -> datetime | None:
        """A ``YYYY-MM-DDTHH`` UTC hour from SQL, as an aware datetime."""
        try:
            return datetime.strptime(key, "%Y-%m-%dT%H").replace(tzinfo=UTC)
        except ValueError:
            return None

    def offsets(self, start: datetime, end: datetime) -> list[list[int]]:
        """[UTC second, offset in seconds] from ``start`` on, one per change:
        the page's script turns times to and from this zone with them alone."""

        def offset(at: datetime) -> int:
            return int((at.astimezone(self.zone).utcoffset() or timedelta(0)).total_seconds())

        out = [[int(start.timestamp()), offset(start)]]
        at = start
        while at < end:
            step = min(at + timedelta(hours=1), end)
            if offset(step) != offset(at):
                low, high = at, step  # the change is in (low, high]: find its second
                while high - low > timedelta(seconds=1):
                    mid = low + (high - low) / 2
                    low, high = (low, mid) if offset(mid) != offset(low) else (mid, high)
                out.append([int(high.timestamp()), offset(high)])
            at = step
        return out


# -- the page ---------------------------------------------------------------------


def _n(value: int | float) -> str:
    return f"{value:,}"


def _plural(n: int, one: str, many: str | None = None) -> str:
    return plural(n, one, many, shown=_n(n))


def _reason(code: str | None) -> str:
    return Reason.words(code) or "unknown"


def _gap(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"


_SAFE_JSON = str.maketrans(
    {"&": "\\u0026", "<": "\\u003c", ">": "\\u003e", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def _script_json(value: Any) -> Markup:
    """JSON safe inside a <script> element: no ``</script>``, no ``<!--``."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return Markup(text.translate(_SAFE_JSON))  # escaped just above


_TEMPLATES.filters["n"] = _n
_TEMPLATES.filters["plural"] = _plural
_TEMPLATES.filters["reason"] = _reason
_TEMPLATES.filters["gap"] = _gap
_TEMPLATES.filters["f1"] = lambda v: f"{v:.1f}"


@cache
def _script_source() -> tuple[str, str]:
    """The page's script and its CSP hash (the only script the page may run)."""
    text = _TEMPLATES.get_template("report.js").render()
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return text, "sha256-" + base64.b64encode(digest).decode("ascii")


def _render(d: _Data, clock: _Clock, *, db_path: Path, now: datetime) -> str:
    hours, zone_series, zone_colour, gate_grid = _hour_axes(d, clock)
    layout = d.layout
    events = ", ".join(sorted(d.events)) or "unknown event"
    script, script_hash = _script_source()

    denial_items = sorted(d.denials.items(), key=lambda kv: (-kv[1], kv[0]))
    denial_classes = sorted(
        {_class_of_reason(r) for r, _ in denial_items},
        key=list(DENIAL_CLASSES).index,
    )

    # Inside now, per zone: everyone in it or in a zone within it.
    tree = layout.zone_tree([*(p[1] for p in d.places if p[1]), *(r["where"] for r in d.inside)])
    by_zone: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in d.inside:
        for zone in layout.enclosing(row["where"]) or (row["where"],):
            by_zone[zone].append(row)
    inside_zones = [
        {
            "zone": zone,
            "depth": depth,
            "count": len(by_zone[zone]),
            "direct": sum(1 for r in by_zone[zone] if r["where"] == zone),
            "tiers": Counter(r["tier"] or "?" for r in by_zone[zone]).most_common(),
            "people": [_person(r, clock) for r in by_zone[zone][:LIST_CAP]],
        }
        for zone, depth in tree
        if by_zone[zone]
    ]

    copies = [
        {
            "serial": p["serial"],
            "holder": p["holder"] or p["prev_holder"],
            "tier": p["tier"],
            "first": {
                "at": clock.show(p["prev_ts"]),
                "decision": p["prev_decision"],
                "gate": p["prev_gate"],
                "door": p["prev_door"],
                "zone": p["prev_zone"],
                "direction": p["prev_direction"],
            },
            "then": {
                "at": clock.show(p["ts"]),
                "decision": p["decision"],
                "gate": p["gate"],
                "door": p["door"],
                "zone": p["zone"],
                "direction": p["direction"],
            },
            "gap": p["gap"],
            "walk": p["walk"],
            "untrusted": "untrusted" in (p["clock"], p["prev_clock"]),
        }
        for p in d.copies
    ]

    table_rows = [
        [
            clock.show(r["ts"]),
            r["gate"],
            r["door"],
            r["zone"],
            r["direction"],
            r["serial"],
            r["holder"],
            r["tier"],
            r["decision"],
            r["reason"],
            r["message"],
            bool(r["copy"]),
            r["clock"],
        ]
        for r in d.table
    ]
    data = {
        "table": {"rows": table_rows, "renderCap": RENDER_CAP},
        "reasons": REASON_LABELS,
        "moves": d.moves,
        "renderCap": RENDER_CAP,
    }
    walks = [
        {"doors": sorted(pair), "through": through, "seconds": w.total_seconds()}
        for (pair, through), w in sorted(
            layout.venue.walks.items(), key=lambda kv: (sorted(kv[0][0]), kv[0][1] or "")
        )
    ]
    context = {
        "events": events,
        "clock": clock,
        "d": d,
        "made": now.astimezone(clock.zone).strftime("%Y-%m-%d %H:%M"),
        "db_name": db_path.name,
        "first": clock.show(d.first_ts),
        "last": clock.show(d.last_ts),
        "people_inside": len(d.inside),
        "zone_sum": sum(z["count"] for z in inside_zones),
        "inside_zones": inside_zones,
        "list_cap": LIST_CAP,
        "entries": {
            "legend": [(name, colour) for name, colour, _ in zone_series],
            "bars": _stacked_bars(
                [h for h, _ in hours],
                zone_series,
                y_label="entries",
                label="Granted entries per hour, stacked by zone",
            )
            if hours
            else None,
            "heat": _heatmap(gate_grid, [h for h, _ in hours]) if hours else None,
        },
        "denials": {
            "legend": [DENIAL_CLASSES[c] for c in denial_classes],
            "bars": _hbars(
                [
                    (_reason(r), n, DENIAL_CLASSES[_class_of_reason(r)][1])
                    for r, n in denial_items
                ],
                label="Denials by reason",
            ),
            "rows": [
                {
                    "label": _reason(r),
                    "code": r,
                    "n": n,
                    "gate": d.denials_by_gate[r].most_common(1)[0],
                }
                for r, n in denial_items
            ],
        },
        "inside_bars": _hbars(
            [
                (
                    z["zone"],
                    z["count"],
                    zone_colour.get(z["zone"], OTHER_COLOUR),
                )
                for z in inside_zones
            ],
            label="People inside now, by zone (a zone counts the zones within it)",
        ),
        "copies": copies,
        "walk": {
            "on": layout.checks_copies,
            "default": layout.venue.walk_default.total_seconds(),
            "walks": walks,
            "from_policy": layout.from_policy,
        },
        "forged": sum(d.denials[r] for r in FORGED_REASONS),
        "revoked": sum(d.denials[r] for r in REVOKED_REASONS),
        "attempts": [
            {**a, "at": clock.show(a["ts"]), "label": _reason(a["reason"])} for a in d.attempts
        ],
        "gates": [
            {
                "gate": gate,
                "zones": ", ".join(sorted(g["zones"])),
                "doors": ", ".join(sorted(g["doors"])),
                "directions": ", ".join(sorted(g["directions"])),
                "scans": g["scans"],
                "granted": g["granted"],
                "denied": g["denied"],
                "first": clock.show(g["first_ts"]),
                "last": clock.show(g["last_ts"]),
                "export": clock.show(g["last_export_at"]),
                "overrides": g["overrides"],
                "alarms": ", ".join(
                    f"{_n(g[kind])} {label}" for kind, label in DOOR_ALARMS.items() if g[kind]
                ),
            }
            for gate, g in sorted(d.gates.items())
        ],
        "show_days": [{**day, **_day_span(day, clock)} for day in d.show_days],
        "overrides": [
            {
                **o,
                "at": clock.show(o["ts"]),
                "denied": _reason(o["denied_reason"]) if o["denied_reason"] else "?",
            }
            for o in d.overrides
        ],
        "alarms": [
            {"at": clock.show(a["ts"]), "gate": a["gate"], "what": DOOR_ALARMS[a["kind"]]}
            for a in d.alarms
        ],
        "table_note": _table_note(d),
        "moves_note": _moves_note(d),
        "zone_choices": [
            {"zone": z, "depth": depth}
            for z, depth in layout.zone_tree(d.moves.get("locations", [])[1:])
        ],
        "data": _script_json(data),
        "script": Markup(script),  # our own file, hashed for the CSP
        "csp": (
            "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
            f"script-src '{script_hash}'; base-uri 'none'; form-action 'none'"
        ),
    }
    return _TEMPLATES.get_template("report.html").render(context)


def _day_span(day: dict[str, Any], clock: _Clock) -> dict[str, str]:
    """A show day's name and hours as the page shows them ("Day 2", "Sat 06
    Dec 18:00", "02:00 Sun 07 Dec" when it runs past midnight)."""
    if day["day"] is None:
        return {"name": "outside the show days", "from": "", "to": ""}
    opens, curfew = day["opens"].astimezone(clock.zone), day["curfew"].astimezone(clock.zone)
    to = curfew.strftime("%H:%M") if curfew.date() == opens.date() else curfew.strftime(
        "%a %d %b %H:%M"
    )
    return {"name": f"Day {day['day']}", "from": opens.strftime("%a %d %b %H:%M"), "to": to}


def _person(row: dict[str, Any], clock: _Clock) -> dict[str, Any]:
    return {
        "holder": row["holder"],
        "tier": row["tier"],
        "serial": row["serial"],
        "where": row["where"],
        "since": clock.show(row["ts"]),
        "gate": row["gate"],
        "door": row["door"],
    }


def _table_note(d: _Data) -> str:
    if len(d.table) >= d.total:
        return f"All {_plural(d.total, 'scan')}, most recent first."
    return (
        f"This table holds the {_n(d.table_recent)} most recent scans and "
        f"{_plural(d.table_denials, 'earlier denial')}: {_n(len(d.table))} of "
        f"{_n(d.total)} scans. The CSV export (--csv) has them all."
    )


def _moves_note(d: _Data) -> str | None:
    if not d.moves or d.moves.get("cut") is None:
        return None
    held = len(d.moves["scans"]) // 5
    return (
        f"This log has {_n(d.with_serial)} scans of passes; the page holds the "
        f"{_n(held)} from {d.moves['cutText']} on (and where everyone was then), so "
        "the time control starts there and paths show those scans. The CSV export "
        "(--csv) has every scan."
    )


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
            by_hour[hour].append((zone or NO_ZONE, gate, n))
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


# -- charts: geometry here, markup in templates/charts.html -----------------------


def _nice_step(top: float, ticks: int = 5) -> float:
    raw = max(top, 1) / ticks
    power = 10.0 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):  # counts: ticks stay whole numbers
        if raw <= m * power:
            return max(1.0, m * power)
    return 10 * power


def _axis_labels(labels: Sequence[str], x_of: Callable[[int], float], y: float) -> list[Any]:
    """Tick labels along the x axis: every few hours, and each new day."""
    every = max(1, math.ceil(len(labels) / 24))
    out = []
    for i, text in enumerate(labels):
        if i % every == 0 or "\n" in text:
            lines = (text if i % every == 0 else text.split("\n", 1)[1]).split("\n")
            out.append({"x": x_of(i), "y": y, "lines": lines})
    return out


def _stacked_bars(
    labels: Sequence[str],
    series: Sequence[tuple[str, str, Sequence[int]]],
    *,
    y_label: str,
    label: str,
) -> dict[str, Any]:
    width, height = 1100, 340
    left, right, top, bottom = 64, 16, 14, 58
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(s[2][i] for s in series) for i in range(len(labels))]
    step = _nice_step(max(totals, default=0))
    y_max = step * math.ceil(max(max(totals, default=0), 1) / step)
    slot = plot_w / max(len(labels), 1)
    bar = min(56.0, max(1.0, slot * 0.78))
    grid = []
    tick = 0.0
    while tick <= y_max + 1e-9:
        grid.append({"y": top + plot_h - tick / y_max * plot_h, "text": _n(int(tick))})
        tick += step
    bars = []
    for i, text in enumerate(labels):
        x = left + i * slot + (slot - bar) / 2
        base: float = top + plot_h
        for name, colour, values in series:
            v = values[i]
            if not v:
                continue
            h = v / y_max * plot_h
            base -= h
            title = f"{text.split(chr(10))[0]} {name}: {_n(v)}"
            bars.append({"x": x, "y": base, "w": bar, "h": h, "colour": colour, "title": title})
    return {
        "width": width,
        "height": height,
        "label": label,
        "y_label": y_label,
        "y_label_at": (16, round(top + plot_h / 2)),
        "left": left,
        "right": width - right,
        "base": top + plot_h,
        "grid": grid,
        "bars": bars,
        "ticks": _axis_labels(labels, lambda i: left + i * slot + slot / 2, top + plot_h + 16),
    }


def _heatmap(grid: dict[tuple[str, str], dict[int, int]], labels: Sequence[str]) -> dict[str, Any]:
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
    out_rows, cells = [], []
    for r, (zone, gate) in enumerate(rows):
        y = top + r * cell_h
        name = f"{gate} ({zone})"
        row = grid[(zone, gate)]
        out_rows.append(
            {
                "y": y,
                "name": name,
                "short": name if len(name) <= 34 else name[:33] + "\u2026",
                "total": _n(sum(row.values())),
            }
        )
        for c in range(len(labels)):
            n = row.get(c, 0)
            if n:
                level = min(len(HEAT_COLOURS) - 1, bisect.bisect_left(bounds, n))
                colour = HEAT_COLOURS[level]
            else:
                level, colour = -1, EMPTY_CELL
            cells.append(
                {
                    "x": left + c * cell_w,
                    "y": y,
                    "w": max(cell_w - 1, 0.5),
                    "h": cell_h - 1,
                    "colour": colour,
                    "title": f"{gate} {labels[c].split(chr(10))[0]}: {_n(n)}",
                    "text": str(n) if n and cell_w >= 26 else None,
                    "ink": "#FFFFFF" if level >= 3 else "#000000",
                    "cx": left + c * cell_w + cell_w / 2,
                }
            )
    keys, low = [], 1
    for colour, high in zip(HEAT_COLOURS, bounds, strict=True):
        if high >= low:
            keys.append((f"{_n(low)}\u2013{_n(high)}" if high > low else _n(low), colour))
        low = high + 1
    base = top + cell_h * len(rows)
    return {
        "width": width,
        "height": height,
        "left": left,
        "total_x": left + plot_w + 6,
        "rows": out_rows,
        "cells": cells,
        "legend": [("none", EMPTY_CELL), *keys],
        "ticks": _axis_labels(labels, lambda c: left + c * cell_w + cell_w / 2, base + 14),
    }


def _hbars(items: Sequence[tuple[str, int, str]], *, label: str) -> dict[str, Any]:
    width = 1100
    left, right, row_h = 330, 90, 26
    plot_w = width - left - right
    peak = max((n for _, n, _ in items), default=1) or 1
    rows = []
    for i, (name, n, colour) in enumerate(items):
        w = max(2.0, n / peak * plot_w)
        rows.append(
            {
                "y": 5 + i * row_h,
                "name": name,
                "short": name if len(name) <= 48 else name[:47] + "\u2026",
                "w": w,
                "h": row_h - 6,
                "n": _n(n),
                "colour": colour,
            }
        )
    return {
        "width": width,
        "height": row_h * len(items) + 10,
        "label": label,
        "left": left,
        "rows": rows,
    }


def _atomic_write(out: Path, write: Any, newline: str | None = None) -> None:
    try:
        with replacing(out, text=True, newline=newline) as f:
            write(f)
    except OSError as err:
        raise ScanLogError(f"cannot write {out}: {err}") from err
