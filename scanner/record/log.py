"""The scan log: one SQLite file per gate, durable and tamper-evident.

Every scan, granted or denied, is one row of ``scans``; what happens to the
gate itself (start, stop, faults, phase changes, updates) is a row of
``events``. Both tables are hash chains: each row stores the hash of the row
before it (``prev_hash``) and its own ``hash`` over all its fields, so a
deleted, edited or reordered row is detectable later by
:func:`verify_chain`; an export's manifest carries the head of the chain so
that rows cut off the end are detectable too.

Durability comes first: WAL journal with ``synchronous=FULL``, and one
transaction per scan, committed before the caller lights an LED, and as
few pages in it as a bare one-row commit: the row and its id. The state the
gate needs across restarts lives in the same file: who came in through this
door and when, per event (for timed anti-passback: read back from the
granted entries themselves when the log opens, so a scan writes nothing
else), the phase override and the clock floor.

The tables are ``STRICT`` with ``CHECK`` constraints: a serial is an integer
in range, a decision is granted or denied, so no row that a spreadsheet
would run as a formula, or that a reader would take for another type, can
exist in a log. The schema is written out once here; :func:`known_schemas`
is what a reader of an export compares a file from a stick against (this
version's, or an earlier version's, exactly).

Row ids are UUIDs so logs of many gates merge without clashes. If the disk
fails, :class:`ScanLog` raises
:class:`~scanner.errors.ScanLogError` and reconnects on the next write; the
caller keeps the row and retries, so nothing is lost or written twice.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from ..core.signed import format_utc, parse_utc
from ..errors import ScanLogError
from .chain import ChainWriter
from .row import ScanRow
from .schema import EVENT_COLUMNS, SCAN_COLUMNS, migrations

__all__ = ["ENTRIES_SQL", "ScanLog", "entry_of", "log_identity"]


# A granted entry: what timed anti-passback remembers (entry_of() says the same in Python).
ENTRIES_SQL = """SELECT event, zone, serial, ts FROM scans WHERE seq IN (
    SELECT max(seq) FROM scans
    WHERE decision = 'granted' AND direction = 'entry'
        AND event IS NOT NULL AND zone IS NOT NULL AND serial IS NOT NULL
    GROUP BY event, zone, serial)"""


def entry_of(row: Mapping[str, Any]) -> tuple[str, str, int] | None:
    """(event, zone, serial) of a row that let a pass in through an entry, else None."""
    if row.get("decision") != "granted" or row.get("direction") != "entry":
        return None
    event, zone, serial = row.get("event"), row.get("zone"), row.get("serial")
    if event is None or zone is None or serial is None:
        return None
    return str(event), str(zone), int(serial)


def _remembered_gate(conn: sqlite3.Connection) -> str | None:
    row = conn.execute("SELECT value FROM state WHERE key = 'gate'").fetchone()
    return str(json.loads(row[0])) if row else None


def log_identity(path: Path) -> tuple[str | None, list[str]]:
    """(gate id, events of its rows, the latest last) of the scan log at ``path``, read-only:
    what an export from a shell labels itself with when no gate is given.
    The gate is None when the log does not say (an empty log of an old version)."""
    if not path.is_file():
        raise ScanLogError(f"there is no scan log at {path}")
    try:
        conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=10.0)
        try:
            gate = _remembered_gate(conn)
            if gate is None:
                gates = [r[0] for r in conn.execute("SELECT DISTINCT gate FROM scans")]
                gate = gates[0] if len(gates) == 1 else None
            events = [  # the latest last
                r[0]
                for r in conn.execute(
                    "SELECT event FROM scans WHERE event IS NOT NULL "
                    "GROUP BY event ORDER BY max(seq)"
                )
            ]
        finally:
            conn.close()
    except sqlite3.Error as err:
        raise ScanLogError(f"cannot read the scan log {path}: {err}") from err
    return gate, events


class ScanLog:
    """The gate's SQLite file. Not thread-safe: one thread at a time uses it (the
    scan loop hands it to its writer thread and waits before using it again).

    It remembers the gate id it was made for and refuses to be opened as
    another gate's log (:class:`~scanner.errors.ScanLogError`).
    """

    def __init__(self, path: Path | str, *, gate: str) -> None:
        self.path = Path(path)
        self.gate = gate
        self._db: sqlite_utils.Database | None = None
        self._scans = ChainWriter("scans", SCAN_COLUMNS)
        self._events = ChainWriter("events", EVENT_COLUMNS)
        self._entries: dict[tuple[str, str], dict[int, datetime]] = {}
        self.open_error: str | None = None
        try:
            self._open()
        except ScanLogError as err:
            # The gate still starts and shows the fault; every write retries.
            self.open_error = str(err)

    # -- connection --

    def _open(self) -> sqlite_utils.Database:
        if self._db is not None:
            return self._db
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # One thread at a time, but not always the same one (see the class doc).
            conn = sqlite3.connect(str(self.path), timeout=10.0, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=10000")
            db = sqlite_utils.Database(conn)
            migrations.apply(db)
            self._claim(conn)
            self._entries = {}
            for event, zone, serial, at in conn.execute(ENTRIES_SQL):
                self._entries.setdefault((event, zone), {})[serial] = parse_utc(at)
        except ScanLogError:  # another gate's log (an OSError too: caught first)
            conn.close()
            raise
        except (sqlite3.Error, OSError) as err:
            raise ScanLogError(f"cannot open the scan log {self.path}: {err}") from err
        self._db = db
        self.open_error = None
        return db

    def _claim(self, conn: sqlite3.Connection) -> None:
        """A log remembers the gate it was made for (``state.gate``, set when
        it is created) and is never written as another gate's log: its rows
        and exports would carry two names.

        A log that holds no row yet carries no name: the gate that opens it
        takes it over. A technician's ``scanner selftest`` on a card whose
        gate.toml is not filled in yet opens the log under the placeholder id;
        the door's real id must still get it once gate.toml is set."""
        with conn:
            remembered = _remembered_gate(conn)
            if remembered not in (None, self.gate) and not conn.execute(
                "SELECT EXISTS (SELECT 1 FROM scans) OR EXISTS (SELECT 1 FROM events)"
            ).fetchone()[0]:
                conn.execute(
                    "UPDATE state SET value = ? WHERE key = 'gate'", [json.dumps(self.gate)]
                )
            elif remembered is None:
                last = conn.execute("SELECT gate FROM scans ORDER BY seq DESC LIMIT 1").fetchone()
                if last is None or last[0] == self.gate:  # a new log, or one made before this rule
                    conn.execute(
                        "INSERT OR IGNORE INTO state (key, value) VALUES ('gate', ?)",
                        [json.dumps(self.gate)],
                    )
        owner = _remembered_gate(conn) or conn.execute(
            "SELECT gate FROM scans ORDER BY seq DESC LIMIT 1"
        ).fetchone()[0]
        if owner != self.gate:
            raise ScanLogError(
                f"this log belongs to gate {owner}, not {self.gate} ({self.path}); "
                f"use gate id {owner} with it, or export it and move it away to start "
                f"a new log for {self.gate}"
            )

    def _fail(self, err: Exception, doing: str) -> ScanLogError:
        db, self._db = self._db, None
        if db is not None:
            try:
                db.conn.rollback()
                db.conn.close()
            except sqlite3.Error:
                pass
        return ScanLogError(f"cannot {doing} in {self.path}: {err}")

    @property
    def db(self) -> sqlite_utils.Database:
        return self._open()

    def close(self) -> None:
        """Close the file; safe to call twice."""
        db, self._db = self._db, None
        if db is not None:
            db.conn.close()

    def __enter__(self) -> ScanLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing --

    def record_scan(self, scan: ScanRow | Mapping[str, Any]) -> ScanRow:
        """Append one scan and commit it to disk (fsync) before returning.

        A granted entry (:func:`entry_of`) is remembered for timed
        anti-passback: the row itself is the record. ``scan`` may carry its
        own ``id`` so a retried row is never written twice. Returns the row
        as written, with its place in the chain (none for such a retry).
        """
        db = self._open()
        fields = scan.as_dict() if isinstance(scan, ScanRow) else dict(scan)
        fields.setdefault("gate", self.gate)
        conn = db.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = self._scans.append(conn, fields)
            except sqlite3.IntegrityError:
                # The id is unique: a row already there with it is a retry of
                # a row that did reach the disk (looked for only then, not every scan).
                if fields.get("id") and self._already_written(conn, str(fields["id"])):
                    conn.rollback()
                    return ScanRow.from_mapping({**fields, "seq": None, "hash": None})
                raise
            conn.commit()
        except sqlite3.Error as err:
            raise self._fail(err, "write a scan") from err
        entered = entry_of(row)
        if entered is not None:
            self._entries.setdefault(entered[:2], {})[entered[2]] = parse_utc(row["ts"])
        return ScanRow.from_mapping(row)

    @staticmethod
    def _already_written(conn: sqlite3.Connection, row_id: str) -> bool:
        return conn.execute("SELECT 1 FROM scans WHERE id = ?", [row_id]).fetchone() is not None

    def record_event(self, ts: datetime, kind: str, **detail: Any) -> dict[str, Any]:
        """Append a gate event (start, fault, phase change, update...)."""
        conn = self._open().conn
        fields = {
            "ts": format_utc(ts),
            "gate": self.gate,
            "kind": kind,
            "detail": json.dumps(detail, sort_keys=True, default=str),
        }
        try:
            conn.execute("BEGIN IMMEDIATE")
            row = self._events.append(conn, fields)
            conn.commit()
        except sqlite3.Error as err:
            raise self._fail(err, "write an event") from err
        return row

    def set_state(self, key: str, value: Any) -> None:
        db = self._open()
        try:
            with db.conn:
                if value is None:
                    db.conn.execute("DELETE FROM state WHERE key = ?", [key])
                else:
                    db.conn.execute(
                        "INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)",
                        [key, json.dumps(value)],
                    )
        except sqlite3.Error as err:
            raise self._fail(err, "save state") from err

    # -- reading --

    def get_state(self, key: str) -> Any:
        try:
            row = (
                self._open().conn.execute("SELECT value FROM state WHERE key = ?", [key]).fetchone()
            )
        except sqlite3.Error as err:
            raise self._fail(err, "read state") from err
        return json.loads(row[0]) if row else None

    def entries(self, event: str, zone: str) -> Mapping[int, datetime]:
        """When each serial last came in through this gate into ``zone`` for
        ``event``: a live read-only view, not a copy."""
        return self._entries.setdefault((event, zone), {})

    def last_scan_time(self) -> datetime | None:
        row = self._open().conn.execute("SELECT ts FROM scans ORDER BY seq DESC LIMIT 1").fetchone()
        return parse_utc(row[0]) if row else None

    @property
    def head(self) -> tuple[int, str]:
        """(rows, hash of the last row) of the scan chain."""
        return self._scans.head(self._open().conn)

    def scans(self) -> Iterator[dict[str, Any]]:
        yield from self._open()["scans"].rows_where(order_by="seq")

    def events(self) -> Iterator[dict[str, Any]]:
        yield from self._open()["events"].rows_where(order_by="seq")

    def counts(self) -> dict[str, int]:
        rows = self._open().conn.execute("SELECT decision, count(*) FROM scans GROUP BY decision")
        return dict(rows.fetchall())
