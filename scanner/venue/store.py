"""What a gate keeps of the venue link: its peers' scans, how far its own
scans are acknowledged, and what it refused.

``peers.db`` sits beside the scan log and is written by the link's thread
only, never by the scan loop, so applying peers' scans never holds the lock
the scan's own commit needs. It is ``STRICT`` SQLite in WAL mode with
``synchronous=NORMAL``: a peer's scan lost to a power cut is only a gap,
and gaps are asked for again (the peer still has it in its own log).

- ``peer_scans``: one row per peer scan with the key id that signed it, its
  id the primary key and (gate, seq) unique, so applying the same scan twice changes nothing and a
  second scan claiming an id or a sequence number already held with other
  contents is a conflict (reported, never stored).
- ``state``: how far this gate's own scans are acknowledged by the broker
  (the outbox is the scan log itself: every scan after that point, read in
  order and published again after a reconnect).
- ``drops``: refused messages, at most one row per reason and source per
  minute with a count, and at most :data:`MAX_DROP_ROWS` rows, so a flood
  cannot fill the disk.

The gate's own log is only ever read here (:meth:`OwnLog.after`), through a
read-only connection: the scan chain stays exactly as the scan loop writes it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from ..core.signed import format_utc, parse_utc
from ..core.venue_view import Sighting
from ..errors import VenueError

__all__ = [
    "MAX_DROP_ROWS",
    "OWN_SIGHTING_COLUMNS",
    "SIGHTING_COLUMNS",
    "OwnLog",
    "PeerStore",
    "Stored",
    "sighting_from_row",
]

MAX_DROP_ROWS = 10_000
migrations = sqlite_utils.Migrations("scanner.venue.store")


@migrations()
def m001_tables(db: sqlite_utils.Database) -> None:
    db.execute(
        """CREATE TABLE peer_scans (
    id TEXT PRIMARY KEY NOT NULL,
    gate TEXT NOT NULL,
    seq INTEGER NOT NULL CHECK (seq >= 1),
    ts TEXT NOT NULL,
    event TEXT,
    serial INTEGER CHECK (serial BETWEEN 0 AND 4294967295),
    tier TEXT,
    zone TEXT,
    door TEXT,
    direction TEXT CHECK (direction IN ('entry', 'exit')),
    decision TEXT NOT NULL CHECK (decision IN ('granted', 'denied')),
    reason TEXT NOT NULL,
    clock TEXT CHECK (clock IN ('trusted', 'untrusted')),
    phase TEXT,
    received TEXT NOT NULL,
    UNIQUE (gate, seq)
) STRICT"""
    )
    db.execute("CREATE INDEX peer_scans_event ON peer_scans (event, decision)")
    db.execute("CREATE TABLE state (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL) STRICT")
    db.execute(
        """CREATE TABLE drops (
    minute TEXT NOT NULL,
    reason TEXT NOT NULL,
    source TEXT NOT NULL,
    count INTEGER NOT NULL,
    detail TEXT NOT NULL,
    PRIMARY KEY (minute, reason, source)
) STRICT"""
    )


@migrations()
def m002_signer(db: sqlite_utils.Database) -> None:
    """Each peer scan remembers the key that signed it, so a box taken off the
    roster (or a gate given another key) can be forgotten with all it said.
    Scans stored before this are dropped: the peers still have them and send
    them again when asked."""
    db.execute("DELETE FROM peer_scans")
    db.execute("ALTER TABLE peer_scans ADD COLUMN signer TEXT")


class Stored:
    """What storing a batch did: new scans, duplicates, conflicts."""

    def __init__(self) -> None:
        self.new: list[Sighting] = []
        self.duplicates = 0
        self.conflicts: list[tuple[Sighting, str]] = []


def _row(s: Sighting, received: str) -> tuple[Any, ...]:
    return (
        s.id,
        s.gate,
        s.seq,
        format_utc(s.ts),
        s.event,
        s.serial,
        s.tier,
        s.zone,
        s.door,
        s.direction,
        "granted" if s.granted else "denied",
        s.reason,
        "trusted" if s.clock_trusted else "untrusted",
        s.phase,
        s.signer,
        received,
    )


def sighting_from_row(row: sqlite3.Row | tuple[Any, ...]) -> Sighting:
    (
        sid,
        gate,
        seq,
        ts,
        event,
        serial,
        tier,
        zone,
        door,
        direction,
        decision,
        reason,
        clock,
        phase,
        signer,
    ) = tuple(row)[:15]
    return Sighting(
        id=sid,
        gate=gate,
        seq=seq,
        ts=parse_utc(ts),
        event=event,
        serial=serial,
        tier=tier,
        zone=zone,
        door=door,
        direction=direction,
        granted=decision == "granted",
        reason=reason,
        clock_trusted=clock != "untrusted",
        phase=phase,
        signer=signer,
    )


SIGHTING_COLUMNS = (
    "id, gate, seq, ts, event, serial, tier, zone, door, direction, decision, reason, clock, "
    "phase, signer"
)
# The same, read from a gate's own scan log (its scans have no signer: they are its own).
OWN_SIGHTING_COLUMNS = SIGHTING_COLUMNS.replace("signer", "NULL AS signer")


class PeerStore:
    """``peers.db``: owned by one thread (the link's); safe to close twice."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(str(self.path), timeout=10.0, check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            migrations.apply(sqlite_utils.Database(self.conn))
        except (sqlite3.Error, OSError) as err:
            raise VenueError(f"cannot open the peer store {self.path}: {err}") from err
        self._closed = False

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.conn.close()

    def __enter__(self) -> PeerStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- peers' scans --

    def store(self, sightings: Iterable[Sighting], now: datetime) -> Stored:
        """Store a batch in one transaction; each scan at most once."""
        out = Stored()
        received = format_utc(now)
        marks = ", ".join("?" for _ in range(16))
        sql = f"INSERT OR IGNORE INTO peer_scans ({SIGHTING_COLUMNS}, received) VALUES ({marks})"
        try:
            with self.conn:
                for s in sightings:
                    if self.conn.execute(sql, _row(s, received)).rowcount == 1:
                        out.new.append(s)
                        continue
                    held = self.conn.execute(
                        f"SELECT {SIGHTING_COLUMNS} FROM peer_scans "
                        "WHERE id = ? OR (gate = ? AND seq = ?)",
                        [s.id, s.gate, s.seq],
                    ).fetchall()
                    if any(sighting_from_row(h) == s for h in held):
                        out.duplicates += 1
                    else:
                        other = tuple(held[0][:3]) if held else ("?", "?", "?")
                        out.conflicts.append(
                            (
                                s,
                                f"gate {s.gate} row {s.seq} (scan {s.id}): scan {other[0]} of "
                                f"gate {other[1]} row {other[2]} is held with other contents",
                            )
                        )
        except sqlite3.Error as err:
            raise VenueError(f"cannot store peers' scans in {self.path}: {err}") from err
        return out

    def forget(self, keep: Mapping[str, str]) -> int:
        """Delete every scan not signed by the key ``keep`` gives its gate
        (gate -> key id): a box off the roster, or a gate whose box was
        replaced, is forgotten with everything it said. Returns how many."""
        try:
            with self.conn:
                rows = self.conn.execute("SELECT DISTINCT gate, signer FROM peer_scans").fetchall()
                gone = 0
                for gate, signer in rows:
                    if keep.get(gate) != signer or signer is None:
                        gone += self.conn.execute(
                            "DELETE FROM peer_scans WHERE gate = ? AND signer IS ?", [gate, signer]
                        ).rowcount
        except sqlite3.Error as err:
            raise VenueError(f"cannot forget scans in {self.path}: {err}") from err
        return gone

    def held(self, gate: str, seq: int) -> Sighting | None:
        """The scan stored as ``gate``'s row ``seq``, if any."""
        row = self.conn.execute(
            f"SELECT {SIGHTING_COLUMNS} FROM peer_scans WHERE gate = ? AND seq = ?", [gate, seq]
        ).fetchone()
        return sighting_from_row(row) if row else None

    def sightings(self, event: str) -> Iterator[Sighting]:
        """Every stored scan of ``event``, in (gate, seq) order."""
        cursor = self.conn.execute(
            f"SELECT {SIGHTING_COLUMNS} FROM peer_scans WHERE event = ? ORDER BY gate, seq",
            [event],
        )
        for row in cursor:
            yield sighting_from_row(row)

    def seqs(self) -> Iterator[tuple[str, int]]:
        """(gate, seq) of every stored scan, whatever its event."""
        yield from self.conn.execute("SELECT gate, seq FROM peer_scans ORDER BY gate, seq")

    def ids(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT id FROM peer_scans")}

    # -- state --

    def get(self, key: str) -> Any:
        row = self.conn.execute("SELECT value FROM state WHERE key = ?", [key]).fetchone()
        return json.loads(row[0]) if row else None

    def set(self, key: str, value: Any) -> None:
        try:
            with self.conn:
                self.conn.execute(
                    "INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)",
                    [key, json.dumps(value)],
                )
        except sqlite3.Error as err:
            raise VenueError(f"cannot save the link's state in {self.path}: {err}") from err

    # -- drops --

    def record_drops(self, counts: dict[tuple[str, str], tuple[int, str]], now: datetime) -> None:
        """Add refused messages, counted per (reason, source) and minute."""
        minute = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")
        try:
            with self.conn:
                for (reason, source), (count, detail) in counts.items():
                    self.conn.execute(
                        "INSERT INTO drops (minute, reason, source, count, detail) "
                        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (minute, reason, source) "
                        "DO UPDATE SET count = count + excluded.count",
                        [minute, reason, source[:64], count, detail[:300]],
                    )
                over = self.conn.execute("SELECT count(*) FROM drops").fetchone()[0] - MAX_DROP_ROWS
                if over > 0:
                    self.conn.execute(
                        "DELETE FROM drops WHERE rowid IN "
                        "(SELECT rowid FROM drops ORDER BY minute LIMIT ?)",
                        [over],
                    )
        except sqlite3.Error as err:
            raise VenueError(f"cannot record refused messages in {self.path}: {err}") from err

    def drops(self) -> list[dict[str, Any]]:
        cursor = self.conn.execute(
            "SELECT minute, reason, source, count, detail FROM drops ORDER BY minute, reason"
        )
        return [
            dict(zip(("minute", "reason", "source", "count", "detail"), r, strict=True))
            for r in cursor
        ]


class OwnLog:
    """The gate's own scan log, read-only: the outbox the link publishes from."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None

    def _open(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                self._conn = sqlite3.connect(
                    self.path.resolve().as_uri() + "?mode=ro",
                    uri=True,
                    timeout=5.0,
                    check_same_thread=False,
                )
            except sqlite3.Error as err:
                raise VenueError(f"cannot read the scan log {self.path}: {err}") from err
        return self._conn

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    COLUMNS = (
        "id, seq, ts, gate, event, door, zone, direction, serial, tier, decision, reason, "
        "clock, phase"
    )

    def after(self, seq: int, limit: int) -> list[dict[str, Any]]:
        """Scans after ``seq``, in order, as rows (holder-free columns only)."""
        try:
            cursor = self._open().execute(
                f"SELECT {self.COLUMNS} FROM scans WHERE seq > ? ORDER BY seq LIMIT ?",
                [seq, limit],
            )
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor]
        except sqlite3.Error as err:
            self.close()
            raise VenueError(f"cannot read the scan log {self.path}: {err}") from err

    def head(self) -> int:
        try:
            row = self._open().execute("SELECT max(seq) FROM scans").fetchone()
        except sqlite3.Error as err:
            self.close()
            raise VenueError(f"cannot read the scan log {self.path}: {err}") from err
        return int(row[0] or 0)
