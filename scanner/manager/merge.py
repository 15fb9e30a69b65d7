"""The manager's laptop: merge many gates' exports into one SQLite file.

``scanner logs merge EXPORT... -o all.db`` takes export folders (or folders
holding them, such as a stick's ``scanner-logs``), checks each one fully
(:func:`scanner.transfer.export.verify_export`: manifest signature, file
hashes, schema, every row's gate, event and types, both hash chains, their
heads, counts and time range as the gate's signed summary gives them: in the
manifest, or sealed beside it in an encrypted export) and merges only what
it could check completely. The rules:

* **Only checked bytes go in.** Each export's database is copied (and
  decrypted) once, as a stream, into a private folder beside the output
  and hashed on the way (:mod:`scanner.transfer.untrusted`); the checks (a
  SHA-256 per row in Python, in worker processes) read that copy, and the
  main process attaches the very same copy to insert: a file swapped on the
  stick afterwards changes nothing, the stick is read once, and a gigabyte
  costs a megabyte of memory and its size on the disk for a moment.
* **Gate identity from signed data.** With ``--policy`` (the signed roster)
  or ``--known-gates`` (files named after their gates), a key may sign only
  for the gate it is bound to; a gate may have several boxes over time (a
  spare that took over a door), and each row says which box signed it. An
  export signed by a key not in the set is refused before anything but its
  manifest is read, unless ``--allow-unknown-gates``, which merges it marked
  (``gates.known`` and ``exports.known_gate`` are 0). Without either, a
  second box claiming a gate id already merged with another key is refused.
* **Conflicts are never silent.** Before an export goes in, rows whose id is
  already merged with a different hash are looked for; if there are any the
  export is not merged, and each conflict is recorded in ``conflicts`` (the
  id, the gate and row of each side, which export) and reported. The same id
  with the same hash is the same row: merging again, or overlapping
  exports, changes nothing.
* **Encrypted exports** are decrypted in memory with ``--identity``; one that
  cannot be decrypted cannot be checked, and is not merged.

The merged file is plain SQLite that Datasette and the sqlite-utils CLI
open as-is: ``scans`` and ``events`` as on the gates (``STRICT``, the same
checks), plus ``gates`` (one row per gate and its device key), ``exports``
(one row per export merged) and ``conflicts``, with indexes on ``ts``,
``serial`` and ``gate``.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import sqlite_utils

from ..core.keys import key_id, parse_public_key
from ..core.policy import GATE_ID_PATTERN
from ..core.signed import format_utc
from ..errors import KeyFileError, ScanLogError, TransferError
from ..record.schema import EVENT_COLUMNS, SCAN_COLUMNS, TABLES_SQL
from ..transfer.export import ExportCheck, KnownGates, verify_export
from ..transfer.untrusted import attach_database_file, shown
from ..words import plural

__all__ = [
    "MergeReport",
    "combine_known",
    "create_merged",
    "find_exports",
    "load_known_gates",
    "merge_exports",
]

MAX_KEY_LIST = 1024 * 1024
MAX_CONFLICTS_SHOWN = 5

merged_migrations = sqlite_utils.Migrations("scanner.merged")


def _merged_table(sql: str, unique: str) -> str:
    # the gate's own table, but a row number is unique per gate, not across gates
    assert unique in sql, unique
    return sql.replace(unique, "seq INTEGER NOT NULL CHECK (seq >= 1)")


MERGED_SQL = (
    _merged_table(TABLES_SQL[0], "seq INTEGER NOT NULL UNIQUE CHECK (seq >= 1)"),
    "CREATE INDEX scans_ts ON scans (ts)",
    "CREATE INDEX scans_serial ON scans (serial)",
    "CREATE INDEX scans_gate ON scans (gate)",
    _merged_table(TABLES_SQL[3], "seq INTEGER NOT NULL UNIQUE CHECK (seq >= 1)"),
    "CREATE INDEX events_ts ON events (ts)",
    """CREATE TABLE gates (
    gate TEXT PRIMARY KEY NOT NULL,
    device_key_id TEXT NOT NULL,
    device_key TEXT NOT NULL,
    known INTEGER CHECK (known IN (0, 1)),
    rows INTEGER NOT NULL,
    last_export_at TEXT
) STRICT""",
    """CREATE TABLE exports (
    manifest_sha256 TEXT PRIMARY KEY NOT NULL,
    gate TEXT NOT NULL,
    event TEXT,
    events TEXT NOT NULL,
    exported_at TEXT,
    rows INTEGER NOT NULL,
    events_rows INTEGER NOT NULL,
    first_ts TEXT,
    last_ts TEXT,
    head_hash TEXT,
    known_gate INTEGER CHECK (known_gate IN (0, 1)),
    encrypted INTEGER NOT NULL CHECK (encrypted IN (0, 1)),
    folder TEXT NOT NULL,
    merged_at TEXT NOT NULL
) STRICT""",
    """CREATE TABLE conflicts (
    in_table TEXT NOT NULL CHECK (in_table IN ('scans', 'events')),
    id TEXT NOT NULL,
    merged_gate TEXT NOT NULL,
    merged_seq INTEGER NOT NULL,
    export_gate TEXT NOT NULL,
    export_seq INTEGER NOT NULL,
    export_sha256 TEXT NOT NULL,
    folder TEXT NOT NULL,
    found_at TEXT NOT NULL,
    PRIMARY KEY (in_table, id, export_sha256)
) STRICT""",
)


@merged_migrations()
def m001_merged_tables(db: sqlite_utils.Database) -> None:
    for sql in MERGED_SQL:
        db.execute(sql)


@merged_migrations()
def m002_boxes(db: sqlite_utils.Database) -> None:
    """A gate may have had several boxes (a spare that took over a door): each
    row says which box's key signed the export it came in, and ``boxes`` lists
    every box of every gate."""
    db.execute("ALTER TABLE scans ADD COLUMN box TEXT")
    db.execute("ALTER TABLE events ADD COLUMN box TEXT")
    db.execute(
        """CREATE TABLE boxes (
    gate TEXT NOT NULL,
    device_key_id TEXT NOT NULL,
    device_key TEXT NOT NULL,
    known INTEGER CHECK (known IN (0, 1)),
    first_export_at TEXT,
    last_export_at TEXT,
    PRIMARY KEY (gate, device_key_id)
) STRICT"""
    )
    db.execute(
        "INSERT INTO boxes SELECT gate, device_key_id, device_key, known, last_export_at, "
        "last_export_at FROM gates"
    )


def _schema(conn: sqlite3.Connection) -> frozenset[tuple[str, str, str, str | None]]:
    rows = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()
    return frozenset(rows)


def _expected_merged_schema() -> frozenset[tuple[str, str, str, str | None]]:
    db = sqlite_utils.Database(memory=True)
    merged_migrations.apply(db)
    found = _schema(db.conn)
    db.close()
    return found


def create_merged(path: Path) -> sqlite_utils.Database:
    """Open (creating if needed) a merged database with its tables and indexes;
    refuse one made by another version (its tables would not fit)."""
    try:
        db = sqlite_utils.Database(path)
        tables = set(db.table_names())
        if tables and "_sqlite_migrations" not in tables:
            missing = {("table", "_sqlite_migrations", "", None)}
        else:
            db.conn.execute("PRAGMA journal_mode=WAL")
            merged_migrations.apply(db)
            missing = _expected_merged_schema() - _schema(db.conn)
    except sqlite3.Error as err:
        raise ScanLogError(f"cannot open {path} as a merged log: {err}") from err
    if missing:
        db.close()
        names = ", ".join(sorted({str(row[1]) for row in missing})[:4])
        raise ScanLogError(
            f"{path} is not a merged log made by this version ({names} missing or "
            "different); merge into a new file"
        )
    return db


def find_exports(paths: Iterable[Path]) -> list[Path]:
    """Export folders (those holding a manifest.json) at or under ``paths``,
    in a stable order. Links are not followed."""
    found: list[Path] = []
    for path in paths:
        if (path / "manifest.json").exists() or (path / "manifest.json").is_symlink():
            found.append(path)
            continue
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            if "manifest.json" in files:
                found.append(Path(root))
                dirs[:] = []
    return found


def load_known_gates(path: Path) -> KnownGates:
    """Gate device keys: a folder of ``.pub`` files (``KEY ID LABEL`` lines,
    as a box's ``device.pub`` or an export's) or one such file. A file named
    after a gate (``artist-in.pub``) binds its keys to that gate, every line
    of it (a spare box's key on a second line): the manager's own naming,
    never a label written inside the file by a box. A key in a file named
    otherwise (``device.pub``) is known but proves no gate's name. Matched by
    key; a key id that does not fit its key, or a line that is not a key, is
    an error naming the file and line."""
    files = sorted(p for p in path.rglob("*.pub") if p.is_file()) if path.is_dir() else [path]
    if not files:
        raise KeyFileError(f"{path}: no .pub files of gates' device keys")
    keys: dict[str, str] = {}
    labels: dict[str, list[str]] = {}
    bound: dict[str, set[str]] = {}
    for file in files:
        try:
            if file.stat().st_size > MAX_KEY_LIST:
                raise KeyFileError(f"{file}: too large for a list of keys")
            lines = file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise KeyFileError(f"{file}: cannot be read as a key file ({err})") from err
        for number, line in enumerate(lines, 1):
            words = line.split()
            if not words or words[0].startswith("#"):
                continue
            try:
                key = parse_public_key(words[0])
            except KeyFileError as err:
                raise KeyFileError(f"{file}:{number}: {err}") from err
            kid = key_id(key)
            if len(words) >= 2 and words[1] != kid:
                raise KeyFileError(
                    f"{file}:{number}: the key id {shown(words[1], 40)} does not fit the key "
                    f"(its id is {kid})"
                )
            keys[kid] = words[0]
            names = labels.setdefault(kid, [])
            for label in words[2:3]:
                if label not in names:
                    names.append(label)
            if file.stem != "device" and GATE_ID_PATTERN.fullmatch(file.stem):
                bound.setdefault(file.stem, set()).add(kid)
    owner: dict[str, str] = {}
    for gate, kids in sorted(bound.items()):
        for kid in kids:
            other = owner.setdefault(kid, gate)
            if other != gate:
                raise KeyFileError(
                    f"{path}: key {kid} is in both {other}.pub and {gate}.pub: one box, one gate"
                )
    return KnownGates(
        keys,
        {kid: tuple(names) for kid, names in labels.items()},
        {gate: frozenset(kids) for gate, kids in bound.items()},
    )


def combine_known(first: KnownGates, second: KnownGates) -> KnownGates:
    """Two lists of known gates as one (the roster and the manager's files); a
    key bound to two different gates by them is refused."""
    gates: dict[str, set[str]] = {g: set(k) for g, k in first.gates.items()}
    for gate, kids in second.gates.items():
        for kid in kids:
            other = first.gate_of(kid)
            if other is not None and other != gate:
                raise KeyFileError(
                    f"key {kid} is gate {other}'s in {first.source} but gate {gate}'s in "
                    f"{second.source}: one box, one gate"
                )
        gates.setdefault(gate, set()).update(kids)
    labels = {**second.labels, **first.labels}
    return KnownGates(
        {**second.keys, **first.keys},
        labels,
        {g: frozenset(k) for g, k in gates.items()},
        source=f"{first.source} or {second.source}",
    )


@dataclass
class MergeReport:
    merged: list[ExportCheck] = field(default_factory=list)
    not_merged: list[ExportCheck] = field(default_factory=list)
    new_rows: int = 0
    new_events: int = 0
    conflicts: int = 0

    @property
    def ok(self) -> bool:
        return not self.not_merged


def _verify(args: tuple[Path, KnownGates | None, tuple[str, ...], Path, bool]) -> ExportCheck:
    folder, known, identities, workdir, allow_unknown = args
    workdir.mkdir(mode=0o700)
    return verify_export(
        folder, known, identities, decrypt_csv=False, workdir=workdir, allow_unknown=allow_unknown
    )


def _checked(
    folders: Sequence[Path],
    known: KnownGates | None,
    identities: tuple[str, ...],
    workers: int,
    workdir: Path,
    allow_unknown: bool,
) -> Iterator[ExportCheck]:
    jobs = [(f, known, identities, workdir / str(n), allow_unknown) for n, f in enumerate(folders)]
    if workers <= 1 or len(folders) <= 1:
        yield from map(_verify, jobs)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(_verify, jobs)


def merge_exports(
    folders: Sequence[Path],
    out: Path,
    *,
    known_gates: KnownGates | None = None,
    allow_unknown_gates: bool = False,
    identities: Sequence[str] = (),
    workers: int | None = None,
    progress: Callable[[ExportCheck], None] = lambda check: None,
) -> MergeReport:
    """Check every export and merge the ones fully checked into ``out``.

    Each export's database is copied (and decrypted) into a private folder
    beside ``out`` as a stream and checked there; the merge attaches that
    very copy, so an export of any size costs a little memory and its size on
    the disk, once, and is read from the stick once."""
    if workers is None:
        # checking is CPU-bound Python; the inserts run in SQLite meanwhile, so a
        # pool of workers beats one process (scripts/logs-scale times both).
        workers = max(1, min(len(folders), os.cpu_count() or 1))
    created = not out.exists()
    db = create_merged(out)
    conn = db.conn
    report = MergeReport()
    keys = tuple(identities)
    try:
        with tempfile.TemporaryDirectory(dir=out.parent, prefix=".scanner-merge-") as tmp:
            for check in _checked(
                folders, known_gates, keys, workers, Path(tmp), allow_unknown_gates
            ):
                _refusals(conn, check, known_gates, allow_unknown_gates)
                if check.problems or check.refusals:
                    report.not_merged.append(check)
                else:
                    _merge_one(conn, check, report)
                if check.db_path is not None:
                    shutil.rmtree(check.db_path.parent, ignore_errors=True)
                progress(check)
    except sqlite3.Error as err:
        raise ScanLogError(f"merging into {out} failed: {err}") from err
    finally:
        db.close()
    if created and not report.merged:  # a merge that merged nothing leaves no empty file
        for leftover in (out, out.with_name(out.name + "-wal"), out.with_name(out.name + "-shm")):
            leftover.unlink(missing_ok=True)
    return report


def _refusals(
    conn: sqlite3.Connection, check: ExportCheck, known: KnownGates | None, allow_unknown: bool
) -> None:
    """Why an intact export is still not merged, added to its refusals."""
    if not check.intact or check.refusals:
        return
    if not check.rows_checked:
        check.refusals.append(
            "its rows could not be checked (encrypted to the manager's key): give "
            "--identity FILE"
        )
    if check.bound_gate is False and not allow_unknown:
        check.refusals.append(
            f"signed by device key {check.device_key_id}, which is known but bound to no "
            f"gate: name its file after the gate ({check.gate}.pub), or give --policy with "
            "the roster (or merge it marked with --allow-unknown-gates)"
        )
    if known is not None and check.device_key_id in known.claimed(str(check.gate)):
        return  # signed data binds this key to this gate: another box of it is fine
    rows = conn.execute(
        "SELECT device_key_id FROM boxes WHERE gate = ? AND device_key_id IS NOT ?",
        [check.gate, check.device_key_id],
    ).fetchall()
    if rows:
        check.refusals.append(
            f"gate {check.gate}: signed by device key {check.device_key_id}, but earlier "
            f"exports of this gate were signed by {rows[0][0]}: another box claims its name "
            "(a spare that took over the door: put its key on the roster, or in the gate's "
            ".pub file, beside the old one)"
        )


def _merge_one(conn: sqlite3.Connection, check: ExportCheck, report: MergeReport) -> None:
    assert check.db_path is not None and check.db_file is not None
    try:
        attach_database_file(conn, check.db_path, str(check.db_file))
    except TransferError as err:
        check.problems.append(str(err))
        report.not_merged.append(check)
        return
    try:
        conflicts = _conflicts(conn)
        if conflicts:
            _record_conflicts(conn, check, conflicts)
            report.conflicts += len(conflicts)
            shown_ = [
                f"{table} row {seq} (id {rid}) is already merged from gate {other} "
                f"(row {other_seq}) with other contents"
                for table, rid, seq, other, other_seq in conflicts[:MAX_CONFLICTS_SHOWN]
            ]
            more = len(conflicts) - MAX_CONFLICTS_SHOWN
            check.refusals.append(
                f"{plural(len(conflicts), 'conflict')}: "
                + "; ".join(shown_)
                + (f"; and {more} more" if more > 0 else "")
                + " (see the conflicts table)"
            )
            report.not_merged.append(check)
            return
        try:
            new_rows, new_events = _insert(conn, check)
        except sqlite3.IntegrityError as err:  # checked already: only a crafted file gets here
            check.problems.append(f"gate {check.gate}: rows break the log's rules ({err})")
            report.not_merged.append(check)
            return
        report.new_rows += new_rows
        report.new_events += new_events
    finally:
        conn.execute("DETACH DATABASE ext")
    report.merged.append(check)


def _insert(conn: sqlite3.Connection, check: ExportCheck) -> tuple[int, int]:
    """Copy the attached export's rows in (one transaction), each marked with
    the box that signed it; (new scans, new events)."""
    scan_cols = ", ".join(SCAN_COLUMNS)
    event_cols = ", ".join(EVENT_COLUMNS)
    box = [check.device_key_id]
    with conn:
        before = conn.total_changes
        conn.execute(
            f"INSERT OR IGNORE INTO main.scans ({scan_cols}, box) "
            f"SELECT {scan_cols}, ? FROM ext.scans",
            box,
        )
        middle = conn.total_changes
        conn.execute(
            f"INSERT OR IGNORE INTO main.events ({event_cols}, box) "
            f"SELECT {event_cols}, ? FROM ext.events",
            box,
        )
        after = conn.total_changes
        _record_export(conn, check)
    return middle - before, after - middle


def _conflicts(conn: sqlite3.Connection) -> list[tuple[str, str, int, str, int]]:
    """Rows of the attached export whose id is merged already with another hash."""
    found: list[tuple[str, str, int, str, int]] = []
    for table in ("scans", "events"):
        found += conn.execute(
            f"SELECT '{table}', e.id, e.seq, m.gate, m.seq FROM ext.{table} e "
            f"JOIN main.{table} m ON m.id = e.id WHERE m.hash IS NOT e.hash ORDER BY e.seq"
        ).fetchall()
    return found


def _record_conflicts(
    conn: sqlite3.Connection, check: ExportCheck, conflicts: list[tuple[str, str, int, str, int]]
) -> None:
    now = format_utc(datetime.now(UTC))
    with conn:
        conn.executemany(
            "INSERT OR IGNORE INTO conflicts (in_table, id, merged_gate, merged_seq, "
            "export_gate, export_seq, export_sha256, folder, found_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    table,
                    rid,
                    other,
                    other_seq,
                    check.gate,
                    seq,
                    check.manifest_sha256,
                    str(check.folder),
                    now,
                )
                for table, rid, seq, other, other_seq in conflicts
            ],
        )


def _record_export(conn: sqlite3.Connection, check: ExportCheck) -> None:
    body = check.manifest
    summary = check.summary  # the checked one: from the manifest or the sealed summary
    assert summary is not None
    known = None if check.known_gate is None else int(check.known_gate)
    conn.execute(
        "INSERT OR IGNORE INTO exports (manifest_sha256, gate, event, events, exported_at, "
        "rows, events_rows, first_ts, last_ts, head_hash, known_gate, encrypted, folder, "
        "merged_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        [
            check.manifest_sha256,
            check.gate,
            check.event,
            json.dumps(check.events),
            body.get("exported_at"),
            check.rows,
            check.events_rows,
            summary["first_ts"],
            summary["last_ts"],
            summary["chain_head"]["hash"],
            known,
            int(check.encrypted),
            shown(check.folder, 1000),
            format_utc(datetime.now(UTC)),
        ],
    )
    rows = conn.execute("SELECT count(*) FROM scans WHERE gate = ?", [check.gate]).fetchone()[0]
    conn.execute(
        "INSERT INTO gates (gate, device_key_id, device_key, known, rows, last_export_at) "
        "VALUES (?,?,?,?,?,?) ON CONFLICT(gate) DO UPDATE SET rows = excluded.rows, "
        "known = coalesce(excluded.known, known), "
        "device_key_id = CASE WHEN excluded.last_export_at >= coalesce(last_export_at, '') "
        "THEN excluded.device_key_id ELSE device_key_id END, "
        "device_key = CASE WHEN excluded.last_export_at >= coalesce(last_export_at, '') "
        "THEN excluded.device_key ELSE device_key END, "
        "last_export_at = max(coalesce(last_export_at, ''), excluded.last_export_at)",
        [check.gate, check.device_key_id, check.device_key, known, rows, body.get("exported_at")],
    )
    conn.execute(
        "INSERT INTO boxes (gate, device_key_id, device_key, known, first_export_at, "
        "last_export_at) VALUES (?,?,?,?,?,?) ON CONFLICT(gate, device_key_id) DO UPDATE SET "
        "known = coalesce(excluded.known, known), "
        "first_export_at = min(coalesce(first_export_at, excluded.first_export_at), "
        "excluded.first_export_at), "
        "last_export_at = max(coalesce(last_export_at, ''), excluded.last_export_at)",
        [check.gate, check.device_key_id, check.device_key, known, body.get("exported_at"),
         body.get("exported_at")],
    )  # fmt: skip
