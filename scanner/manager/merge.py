"""The manager's laptop: merge many gates' exports into one SQLite file.

``scanner logs merge EXPORT... -o all.db`` takes export folders (or folders
holding them, such as a stick's ``scanner-logs``), checks each one fully
(:func:`scanner.transfer.export.verify_export`: manifest signature, file hashes, the
hash chain from its first row, its head and row count) and merges only the
intact ones. A broken export is reported by gate and row and left out, never
silently merged. Row ids are UUIDs, so merging the same or overlapping
exports again changes nothing.

Checking is the expensive part (a SHA-256 per row in Python), so it runs in
worker processes while the main process inserts the exports already checked
with SQLite's own ``INSERT OR IGNORE ... SELECT``: on two cores the merge
costs little more than that plain insert, which is its floor.

The merged file is plain SQLite that Datasette and the sqlite-utils CLI
open as-is: ``scans`` and ``events`` as on the gates, plus ``gates`` (one row
per gate and its device key) and ``exports`` (one row per export merged),
with indexes on ``ts``, ``serial`` and ``gate``.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import sqlite_utils

from ..core.keys import Ed25519PublicKey, parse_public_key
from ..core.signed import format_utc
from ..errors import KeyFileError, ScanLogError
from ..gate.scanlog import EVENT_COLUMNS, SCAN_COLUMNS
from ..transfer.export import ExportCheck, verify_export

__all__ = ["MergeReport", "create_merged", "find_exports", "load_known_gates", "merge_exports"]

merged_migrations = sqlite_utils.Migrations("scanner.merged")


@merged_migrations()
def m001_merged_tables(db: sqlite_utils.Database) -> None:
    db["scans"].create(SCAN_COLUMNS, pk="id")
    for column in ("ts", "serial", "gate"):
        db["scans"].create_index([column])
    db["events"].create(EVENT_COLUMNS, pk="id")
    db["events"].create_index(["ts"])
    db["gates"].create(
        {"gate": str, "device_key_id": str, "device_key": str, "rows": int, "last_export_at": str},
        pk="gate",
    )
    db["exports"].create(
        {
            "manifest_sha256": str,
            "gate": str,
            "event": str,
            "exported_at": str,
            "rows": int,
            "first_ts": str,
            "last_ts": str,
            "head_hash": str,
            "folder": str,
            "merged_at": str,
        },
        pk="manifest_sha256",
    )


def create_merged(path: Path) -> sqlite_utils.Database:
    """Open (creating if needed) a merged database with its tables and indexes."""
    try:
        db = sqlite_utils.Database(path)
        db.conn.execute("PRAGMA journal_mode=WAL")
        merged_migrations.apply(db)
    except sqlite3.Error as err:
        raise ScanLogError(f"cannot open {path} as a merged log: {err}") from err
    return db


def find_exports(paths: Iterable[Path]) -> list[Path]:
    """Export folders (those holding a manifest.json) at or under ``paths``."""
    found: list[Path] = []
    for path in paths:
        if (path / "manifest.json").is_file():
            found.append(path)
            continue
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            if "manifest.json" in files:
                found.append(Path(root))
                dirs[:] = []
    return found


def load_known_gates(path: Path) -> dict[str, Ed25519PublicKey]:
    """Gate device keys: a folder of ``device.pub`` files (``KEY ID GATE`` lines)
    or one file with such lines."""
    files = sorted(path.rglob("*.pub")) if path.is_dir() else [path]
    gates: dict[str, Ed25519PublicKey] = {}
    for file in files:
        for line in file.read_text(encoding="utf-8").splitlines():
            words = line.split()
            if len(words) < 3 or line.lstrip().startswith("#"):
                continue
            try:
                gates[words[2]] = parse_public_key(words[0])
            except KeyFileError as err:
                raise KeyFileError(f"{file}: {err}") from err
    return gates


@dataclass
class MergeReport:
    merged: list[ExportCheck] = field(default_factory=list)
    broken: list[ExportCheck] = field(default_factory=list)
    new_rows: int = 0

    @property
    def ok(self) -> bool:
        return not self.broken


def _verify(args: tuple[Path, Mapping[str, Ed25519PublicKey] | None]) -> ExportCheck:
    return verify_export(*args)


def _checked(
    folders: Sequence[Path], known: Mapping[str, Ed25519PublicKey] | None, workers: int
) -> Iterator[ExportCheck]:
    jobs = [(f, known) for f in folders]
    if workers <= 1 or len(folders) <= 1:
        yield from map(_verify, jobs)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(_verify, jobs)


def merge_exports(
    folders: Sequence[Path],
    out: Path,
    *,
    known_gates: Mapping[str, Ed25519PublicKey] | None = None,
    workers: int | None = None,
    progress: Callable[[ExportCheck], None] = lambda check: None,
) -> MergeReport:
    """Check every export and merge the intact ones into ``out``."""
    if workers is None:
        # checking is CPU-bound Python; the inserts run in SQLite meanwhile
        workers = max(1, min(len(folders), os.cpu_count() or 1))
    db = create_merged(out)
    conn = db.conn
    report = MergeReport()
    scan_cols = ", ".join(SCAN_COLUMNS)
    event_cols = ", ".join(EVENT_COLUMNS)
    try:
        for check in _checked(folders, known_gates, workers):
            if check.intact:
                _gate_key_problem(conn, check)
            if not check.intact:
                report.broken.append(check)
                progress(check)
                continue
            before = conn.total_changes
            conn.execute("ATTACH DATABASE ? AS ext", [f"file:{check.folder / 'scans.db'}?mode=ro"])
            try:
                with conn:
                    conn.execute(
                        f"INSERT OR IGNORE INTO scans ({scan_cols}) "
                        f"SELECT {scan_cols} FROM ext.scans"
                    )
                    report.new_rows += conn.total_changes - before
                    conn.execute(
                        f"INSERT OR IGNORE INTO events ({event_cols}) "
                        f"SELECT {event_cols} FROM ext.events"
                    )
                    _record_export(conn, check)
            finally:
                conn.execute("DETACH DATABASE ext")
            report.merged.append(check)
            progress(check)
    except sqlite3.Error as err:
        raise ScanLogError(f"merging into {out} failed: {err}") from err
    finally:
        db.close()
    return report


def _gate_key_problem(conn: sqlite3.Connection, check: ExportCheck) -> None:
    row = conn.execute("SELECT device_key_id FROM gates WHERE gate = ?", [check.gate]).fetchone()
    if row and row[0] != check.device_key_id:
        check.problems.append(
            f"gate {check.gate}: signed by device key {check.device_key_id}, but earlier "
            f"exports of this gate were signed by {row[0]}: another box claims its name"
        )


def _record_export(conn: sqlite3.Connection, check: ExportCheck) -> None:
    body = check.manifest
    manifest_sha = hashlib.sha256((check.folder / "manifest.json").read_bytes()).hexdigest()
    conn.execute(
        "INSERT OR IGNORE INTO exports (manifest_sha256, gate, event, exported_at, rows, "
        "first_ts, last_ts, head_hash, folder, merged_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
        [
            manifest_sha,
            check.gate,
            check.event,
            body.get("exported_at"),
            check.rows,
            body.get("first_ts"),
            body.get("last_ts"),
            (body.get("chain_head") or {}).get("hash"),
            str(check.folder),
            format_utc(datetime.now(UTC)),
        ],
    )
    rows = conn.execute("SELECT count(*) FROM scans WHERE gate = ?", [check.gate]).fetchone()[0]
    conn.execute(
        "INSERT INTO gates (gate, device_key_id, device_key, rows, last_export_at) "
        "VALUES (?,?,?,?,?) ON CONFLICT(gate) DO UPDATE SET rows = excluded.rows, "
        "last_export_at = max(coalesce(last_export_at, ''), excluded.last_export_at)",
        [check.gate, check.device_key_id, body.get("device_key"), rows, body.get("exported_at")],
    )
