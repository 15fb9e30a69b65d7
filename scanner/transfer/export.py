"""Logs leave the box: a signed, self-checking export of the scan log.

An export is a folder a manager can carry away and believe::

    scanner-logs/EVENT_GATE/20261205T231500Z/
        scans.db        a consistent snapshot (SQLite backup API) taken while
                        the daemon keeps writing
        scans.csv       the scans as CSV, for a spreadsheet
        device.pub      this gate's public device key
        manifest.json   gate, event, time range, row count, SHA-256 of each
                        file and the head of the hash chain, signed with the
                        gate's own Ed25519 device key (made at first start)

It is written under a temporary name and renamed when complete, never over
an earlier export, with names FAT accepts (no ``:``), after checking the
stick has room. :func:`verify_export` checks all of it on the manager's side:
the manifest signature, each file's hash, the chain from its first row, and
that the chain's head and row count match the manifest, so a deleted,
edited or reordered row, rows cut off the end, or an edited manifest are all
reported (by gate and row).
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import __version__
from ..core.keys import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
    generate_private_key,
    key_id,
    parse_public_key,
    public_key_text,
)
from ..core.signed import format_utc, open_document, sign_document
from ..errors import KeyFileError, SignatureError, TransferError
from ..gate.scanlog import SCAN_COLUMNS, csv_columns_sql, verify_chain
from ..keyfiles import load_private_key, write_key_pair

__all__ = [
    "MANIFEST_KIND",
    "ExportCheck",
    "ExportResult",
    "export_log",
    "load_or_create_device_key",
    "verify_export",
]

MANIFEST_KIND = "export-manifest"
EXPORT_ROOT = "scanner-logs"
FILES = ("scans.db", "scans.csv", "device.pub")
SPACE_MARGIN = 1024 * 1024


def load_or_create_device_key(path: Path) -> Ed25519PrivateKey:
    """The gate's own signing key; made (mode 0600) the first time it is needed."""
    if path.exists():
        return load_private_key(path)
    key = generate_private_key()
    pair = write_key_pair(path.parent, path.stem, key=key)
    if path.suffix != ".key":  # write_key_pair names it STEM.key
        pair.private.rename(path)
    match_owner(path.parent)
    return key


def match_owner(folder: Path) -> None:
    """Run as root (the USB unit), give files in ``folder`` to the folder's owner,
    so the daemon, which runs as that user, can still read and write them."""
    if os.geteuid() != 0:
        return
    try:
        st = folder.stat()
        for path in folder.iterdir():
            if path.is_symlink():
                continue
            if path.stat().st_uid != st.st_uid or path.stat().st_gid != st.st_gid:
                os.chown(path, st.st_uid, st.st_gid)
    except OSError:
        pass  # best effort; the unit's ExecStopPost chown is the backstop


def _fat_safe(text: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in text)
    return safe.strip(".") or "unknown"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems (FAT via some drivers) refuse fsync on directories
    finally:
        os.close(fd)


@dataclass(frozen=True)
class ExportResult:
    folder: Path
    rows: int
    first_ts: str | None
    last_ts: str | None
    head_hash: str


def export_log(
    db: Path,
    target: Path,
    *,
    gate: str,
    event: str | None,
    device_key: Ed25519PrivateKey,
    now: datetime,
) -> ExportResult:
    """Write a signed export of the scan log ``db`` under ``target``.

    Safe while the daemon writes: the snapshot is taken with SQLite's backup
    API. Raises :class:`TransferError` with a reason when it cannot be done.
    """
    if not db.exists():
        raise TransferError(f"there is no scan log at {db} yet")
    root = target / EXPORT_ROOT / _fat_safe(f"{event or 'no-event'}_{gate}")
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    try:
        target.mkdir(parents=True, exist_ok=True)
        needed = 2 * db.stat().st_size + SPACE_MARGIN
        free = shutil.disk_usage(target).free
    except OSError as err:
        raise TransferError(f"cannot use {target}: {err.strerror}") from err
    if free < needed:
        raise TransferError(
            f"not enough room on {target}: {free // 1024} KiB free, "
            f"about {needed // 1024} KiB needed"
        )
    final = root / stamp
    n = 1
    while final.exists():
        n += 1
        final = root / f"{stamp}-{n}"
    partial = root / f".{final.name}.partial"
    try:
        root.mkdir(parents=True, exist_ok=True)
        if partial.exists():
            shutil.rmtree(partial)
        partial.mkdir()
        snapshot = partial / "scans.db"
        _snapshot(db, snapshot)
        rows, first_ts, last_ts, head = _write_csv(snapshot, partial / "scans.csv")
        events_head = _head(snapshot, "events")
        (partial / "device.pub").write_text(
            f"{public_key_text(device_key.public_key())} {key_id(device_key)} {gate}\n"
        )
        files = {
            name: {"sha256": _sha256(partial / name), "bytes": (partial / name).stat().st_size}
            for name in FILES
        }
        body = {
            "gate": gate,
            "event": event,
            "exported_at": format_utc(now),
            "rows": rows,
            "first_ts": first_ts,
            "last_ts": last_ts,
            "chain_head": {"seq": head[0], "hash": head[1]},
            "events_head": {"seq": events_head[0], "hash": events_head[1]},
            "files": files,
            "device_key": public_key_text(device_key.public_key()),
            "scanner_version": __version__,
        }
        manifest = sign_document(device_key, MANIFEST_KIND, body, now)
        with (partial / "manifest.json").open("wb") as f:
            f.write(manifest)
            f.flush()
            os.fsync(f.fileno())
        for name in FILES:
            with (partial / name).open("rb") as f:
                os.fsync(f.fileno())
        _fsync_dir(partial)
        partial.rename(final)
        _fsync_dir(root)
    except (OSError, sqlite3.Error) as err:
        shutil.rmtree(partial, ignore_errors=True)
        raise TransferError(f"the export to {target} failed: {err}") from err
    return ExportResult(final, rows, first_ts, last_ts, head[1])


def _snapshot(db: Path, out: Path) -> None:
    source = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10.0)
    try:
        dest = sqlite3.connect(out)
        try:
            source.backup(dest)
            dest.execute("PRAGMA journal_mode=DELETE")
        finally:
            dest.close()
    finally:
        source.close()


def _head(db: Path, table: str) -> tuple[int, str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row = conn.execute(f"SELECT seq, hash FROM {table} ORDER BY seq DESC LIMIT 1").fetchone()
    finally:
        conn.close()
    return (row[0], row[1]) if row else (0, "0" * 64)


def _write_csv(snapshot: Path, out: Path) -> tuple[int, str | None, str | None, tuple[int, str]]:
    conn = sqlite3.connect(f"file:{snapshot}?mode=ro", uri=True)
    rows = 0
    first = last = None
    head = (0, "0" * 64)
    columns = list(SCAN_COLUMNS)
    try:
        with out.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            for row in conn.execute(f"SELECT {csv_columns_sql()} FROM scans ORDER BY seq"):
                writer.writerow(row)
                rows += 1
                ts = row[columns.index("ts")]
                first = first or ts
                last = ts
                head = (row[columns.index("seq")], row[columns.index("hash")])
    finally:
        conn.close()
    return rows, first, last, head


# -- the manager's side ------------------------------------------------------


@dataclass
class ExportCheck:
    """The result of checking one export folder."""

    folder: Path
    gate: str | None = None
    event: str | None = None
    rows: int = 0
    device_key_id: str | None = None
    known_gate: bool | None = None  # None: no list of known gates was given
    problems: list[str] = field(default_factory=list)
    manifest: Mapping[str, Any] = field(default_factory=dict)

    @property
    def intact(self) -> bool:
        return not self.problems

    def describe(self) -> str:
        who = f"gate {self.gate}" if self.gate else str(self.folder)
        if self.problems:
            return f"{who}: BROKEN: " + "; ".join(self.problems)
        signer = {
            True: "signed by a known gate",
            False: "signed by a gate NOT in the known list",
            None: "signed by the key it carries",
        }[self.known_gate]
        return f"{who}: intact, {self.rows} rows, {signer} (device key {self.device_key_id})"


def verify_export(
    folder: Path, known_gates: Mapping[str, Ed25519PublicKey] | None = None
) -> ExportCheck:
    """Check an export folder; every problem is named by gate and row."""
    check = ExportCheck(folder)
    try:
        data = (folder / "manifest.json").read_bytes()
    except OSError as err:
        check.problems.append(f"no readable manifest.json ({err.strerror})")
        return check
    try:
        document = open_document(data, kind=MANIFEST_KIND, trusted=None)
    except SignatureError as err:
        check.problems.append(f"manifest: {err}")
        return check
    body = document.body
    check.manifest = body
    check.gate = str(body.get("gate"))
    check.event = body.get("event")
    check.device_key_id = document.key_id
    try:
        claimed = parse_public_key(str(body.get("device_key", "")))
    except KeyFileError:
        claimed = None
    if claimed is None or key_id(claimed) != document.key_id:
        check.problems.append("manifest: signed by a key other than the device key it names")
    if known_gates is not None:
        expected = known_gates.get(check.gate)
        check.known_gate = expected is not None and key_id(expected) == document.key_id
        if expected is not None and not check.known_gate:
            check.problems.append(
                f"manifest: signed by device key {document.key_id}, "
                f"but gate {check.gate} has key {key_id(expected)}"
            )
    files = body.get("files")
    if not isinstance(files, dict) or set(files) != set(FILES):
        check.problems.append("manifest: the file list is not the export's")
        return check
    for name in FILES:
        path = folder / name
        if not path.is_file() or path.is_symlink():
            check.problems.append(f"{name}: missing")
        elif _sha256(path) != files[name].get("sha256"):
            check.problems.append(f"{name}: changed since the gate signed the manifest")
    if check.problems:
        return check
    check.rows, chain = _check_chain(folder / "scans.db", check.gate, body)
    check.problems.extend(chain)
    return check


def _check_chain(db: Path, gate: str, body: Mapping[str, Any]) -> tuple[int, list[str]]:
    problems: list[str] = []
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        cursor = conn.execute("SELECT * FROM scans ORDER BY seq")
        names = [d[0] for d in cursor.description]
        count = 0
        last: dict[str, Any] | None = None

        def rows() -> Iterable[dict[str, Any]]:
            nonlocal count, last
            for values in cursor:
                count += 1
                last = dict(zip(names, values, strict=True))
                yield last

        found = verify_chain(rows())
        integrity = conn.execute("PRAGMA quick_check").fetchone()[0]
        conn.close()
    except sqlite3.Error as err:
        return 0, [f"scans.db: not a readable scan log ({err})"]
    if integrity != "ok":
        problems.append(f"scans.db: integrity check failed: {integrity}")
    problems += [f"gate {gate}, {p}" for p in found]
    head = body.get("chain_head") or {}
    if count != body.get("rows"):
        problems.append(f"gate {gate}: {count} rows, the manifest says {body.get('rows')}")
    if last is not None and (
        last.get("seq") != head.get("seq") or last.get("hash") != head.get("hash")
    ):
        problems.append(
            f"gate {gate}: the log does not end where the manifest says "
            f"(row {head.get('seq')}): rows cut off or replaced"
        )
    return count, problems
