"""The scan log's tables, written out once: their columns, the ``STRICT``
tables with their ``CHECK`` constraints (a serial is an integer in range, a
decision is granted or denied), and the migrations from one version of the
file to the next. :func:`known_schemas` is what a reader of a file from a
stick compares it against (this version's schema, or an earlier one's,
exactly)."""

from __future__ import annotations

import functools

import sqlite_utils

__all__ = [
    "EVENT_COLUMNS",
    "SCAN_COLUMNS",
    "SCHEMA_VERSIONS",
    "TABLES_SQL",
    "Schema",
    "expected_schema",
    "known_schemas",
    "migrations",
]

SCAN_COLUMNS: dict[str, type] = {
    "id": str,
    "seq": int,
    "ts": str,
    "gate": str,
    "zone": str,
    "direction": str,
    "door": str,
    "event": str,
    "serial": int,
    "tier": str,
    "holder": str,
    "decision": str,
    "reason": str,
    "key_id": str,
    "clock": str,
    "phase": str,
    "message": str,
    "code_sha256": str,
    "prev_hash": str,
    "hash": str,
}
EVENT_COLUMNS: dict[str, type] = {
    "id": str,
    "seq": int,
    "ts": str,
    "gate": str,
    "kind": str,
    "detail": str,
    "prev_hash": str,
    "hash": str,
}

migrations = sqlite_utils.Migrations("scanner.scanlog")


TABLES_SQL = (
    """CREATE TABLE scans (
    id TEXT PRIMARY KEY NOT NULL CHECK (length(id) BETWEEN 1 AND 64),
    seq INTEGER NOT NULL UNIQUE CHECK (seq >= 1),
    ts TEXT NOT NULL,
    gate TEXT NOT NULL,
    zone TEXT,
    direction TEXT CHECK (direction IN ('entry', 'exit')),
    door TEXT,
    event TEXT,
    serial INTEGER CHECK (serial BETWEEN 0 AND 4294967295),
    tier TEXT,
    holder TEXT,
    decision TEXT NOT NULL CHECK (decision IN ('granted', 'denied')),
    reason TEXT NOT NULL,
    key_id TEXT,
    clock TEXT CHECK (clock IN ('trusted', 'untrusted')),
    phase TEXT,
    message TEXT,
    code_sha256 TEXT,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
) STRICT""",
    "CREATE INDEX scans_ts ON scans (ts)",
    "CREATE INDEX scans_serial ON scans (serial)",
    """CREATE TABLE events (
    id TEXT PRIMARY KEY NOT NULL CHECK (length(id) BETWEEN 1 AND 64),
    seq INTEGER NOT NULL UNIQUE CHECK (seq >= 1),
    ts TEXT NOT NULL,
    gate TEXT NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
) STRICT""",
    """CREATE TABLE entries (
    event TEXT NOT NULL,
    zone TEXT NOT NULL,
    serial INTEGER NOT NULL CHECK (serial BETWEEN 0 AND 4294967295),
    at TEXT NOT NULL,
    PRIMARY KEY (event, zone, serial)
) STRICT""",
    "CREATE TABLE state (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL) STRICT",
)


@migrations()
def m001_tables(db: sqlite_utils.Database) -> None:
    for sql in TABLES_SQL:
        db.execute(sql)


@migrations()
def m002_no_lookup_indexes(db: sqlite_utils.Database) -> None:
    """The gate never looks a scan up by time or serial (it reads its log in
    ``seq`` order; the manager's merged file has indexes of its own), and
    each index was one more page in every scan's commit, between the frame
    and the door's signal."""
    db.execute("DROP INDEX IF EXISTS scans_ts")
    db.execute("DROP INDEX IF EXISTS scans_serial")


SCANS_SQL = """CREATE TABLE scans (
    id TEXT NOT NULL UNIQUE CHECK (length(id) BETWEEN 1 AND 64),
    seq INTEGER PRIMARY KEY CHECK (seq >= 1),
    ts TEXT NOT NULL,
    gate TEXT NOT NULL,
    zone TEXT,
    direction TEXT CHECK (direction IN ('entry', 'exit')),
    door TEXT,
    event TEXT,
    serial INTEGER CHECK (serial BETWEEN 0 AND 4294967295),
    tier TEXT,
    holder TEXT,
    decision TEXT NOT NULL CHECK (decision IN ('granted', 'denied')),
    reason TEXT NOT NULL,
    key_id TEXT,
    clock TEXT CHECK (clock IN ('trusted', 'untrusted')),
    phase TEXT,
    message TEXT,
    code_sha256 TEXT,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
) STRICT"""


@migrations()
def m003_seq_is_the_rowid(db: sqlite_utils.Database) -> None:
    """``seq`` becomes the table's own key (no separate index for it), and the
    ``entries`` table goes: who came in is read back from the granted entries
    when the log opens. Each was one more page, or two, in every scan's
    commit. The rows are copied as they are, in order; their hashes hold."""
    columns = ", ".join(SCAN_COLUMNS)
    db.execute("ALTER TABLE scans RENAME TO scans_m002")
    db.execute(SCANS_SQL)
    db.execute(f"INSERT INTO scans ({columns}) SELECT {columns} FROM scans_m002 ORDER BY seq")
    db.execute("DROP TABLE scans_m002")
    db.execute("DROP TABLE entries")


# every migration, in order
SCHEMA_VERSIONS = ("m001_tables", "m002_no_lookup_indexes", "m003_seq_is_the_rowid")

Schema = frozenset[tuple[str, str, str, str | None]]


def expected_schema(version: str = SCHEMA_VERSIONS[-1]) -> Schema:
    """(type, name, table, sql) of everything a scan log holds after the
    migration ``version`` (by default, as this version makes it): what a file
    claiming to be one must hold, exactly."""
    later = SCHEMA_VERSIONS[SCHEMA_VERSIONS.index(version) + 1 :]
    db = sqlite_utils.Database(memory=True)
    migrations.apply(db, stop_before=later)
    rows = db.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()
    db.close()
    return frozenset(rows)


@functools.cache
def known_schemas() -> tuple[Schema, ...]:
    """The schema of a scan log made by this version, then those made by
    earlier ones (an export from a gate not yet updated is still read)."""
    return tuple(expected_schema(v) for v in reversed(SCHEMA_VERSIONS))

