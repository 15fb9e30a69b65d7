"""Logs leave the box: a signed, self-checking export of the scan log.

An export is a folder a manager can carry away and believe::

    scanner-logs/EVENT_GATE/20261205T231500Z/
        scans.db.age      a consistent snapshot of the log (SQLite), taken
                          while the daemon keeps writing, encrypted with age
                          to the manager keys the signed policy names
        scans.csv.age     the scans as CSV (every cell defused), encrypted too
        summary.json.age  what the log holds: row counts, first and last scan
                          time, the heads of both hash chains, its events and
                          the clear files' sizes and SHA-256; encrypted too
        device.pub        this gate's public device key
        manifest.json     gate, event, when it was exported, and each file's
                          size and SHA-256 as it lies on the stick, signed
                          with the gate's own Ed25519 device key; it names
                          the sealed summary, and says nothing of the log's
                          contents in the clear

Holder names are personal data, and a stick gets lost: when the policy names
no manager key (``[export] recipients``), a gate refuses to put its log on a
stick. Whoever finds the stick learns which gate wrote it and when, never how
many scans it holds or when they were made (only the encrypted files' sizes
hint at the log's size). Only ``scanner export
--plaintext`` from a shell writes ``scans.db`` and ``scans.csv`` in the
clear, and then the summary's fields stand in the manifest itself (there is
no ``summary.json.age``).

Writing: the snapshot is taken in memory (SQLite's backup API), so no
plaintext copy touches the stick even for a moment; the files go into a
uniquely named hidden folder (created exclusively, files ``O_EXCL``) that is
renamed when complete, never over an earlier export; every folder is opened
without following links, so a link on the stick cannot send the export
elsewhere; names are FAT-safe; free space is checked first.

Checking (:func:`verify_export`, the manager's side) reads every file through
:mod:`scanner.transfer.untrusted`: fixed names, no links, size limits, and
the very bytes whose SHA-256 the manifest signs. The signer comes first: with
the manager's list of gates (the policy's roster, or ``--known-gates``), a
key it does not hold, or a key bound to another gate than the manifest
names, is refused before any other file is read. The sealed summary (at
most 64 KiB, its hash signed) is decrypted with the manager's identity and
must be JSON of exactly the summary's fields; without the identity only the
signature and the files' hashes are checked. The database is copied
(and decrypted) into a private folder as a stream, hashed on the way, so a
gigabyte costs a megabyte of memory; the copy is what is checked and then
merged. Then, in the clear bytes:
the exact schema, SQLite's integrity check, every row's types, gate and
event, both hash chains from their first row, and that each chain ends
where the summary says, with as many rows, from its first to its last scan
time, and the events it lists. A deleted, edited, reordered or foreign row,
rows cut off the end, an edited manifest or summary, another export's
summary or an extra view all show up, named by gate and row. Exports written
before the summary was sealed (its fields in the clear manifest, no
``summary.json.age``) are still read.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import os
import secrets
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import __version__
from ..core.keys import (
    Ed25519PrivateKey,
    key_id,
    parse_public_key,
    public_key_text,
)
from ..core.policy import GATE_ID_PATTERN
from ..core.signed import format_utc, open_document, sign_document
from ..core.untrusted import parse_json
from ..errors import KeyFileError, MalformedError, SignatureError, TransferError
from ..keyfiles import load_private_key
from ..record.chain import verify_chain
from ..record.schema import EVENT_COLUMNS, SCAN_COLUMNS
from ..record.spreadsheet import csv_columns_sql
from ..words import plural
from .untrusted import (
    DATABASE_LIMIT,
    MANIFEST_LIMIT,
    SQLITE_FAILURES,
    Folder,
    file_sha256,
    open_database_file,
    shown,
)

__all__ = [
    "MANIFEST_KIND",
    "ExportCheck",
    "ExportResult",
    "KnownGates",
    "decrypt",
    "decrypt_file",
    "export_log",
    "known_gates_from_policy",
    "load_device_key",
    "verify_export",
]

MANIFEST_KIND = "export-manifest"
EXPORT_ROOT = "scanner-logs"
PLAIN_FILES = ("scans.db", "scans.csv", "device.pub")
ENCRYPTED_FILES = ("scans.db.age", "scans.csv.age", "device.pub")  # summary in the clear
SUMMARY_FILE = "summary.json.age"
SEALED_FILES = (*ENCRYPTED_FILES, SUMMARY_FILE)
# what the log holds: in the sealed summary, or in the manifest of a plaintext
# export (and of an encrypted one written before the summary was sealed)
SUMMARY_FIELDS = ("events", "rows", "first_ts", "last_ts", "chain_head", "events_rows",
                  "events_head")  # fmt: skip
SUMMARY_LIMIT = 64 * 1024  # a genuine one is well under 1 KiB, a few events more
SUMMARY_DEPTH = 4
DEVICE_PUB_LIMIT = 4096
SPACE_MARGIN = 1024 * 1024
MAX_PROBLEMS = 20  # per table: enough to see what happened, not a flood
_HEX = frozenset("0123456789abcdef")


# -- the gate's key ------------------------------------------------------------


def load_device_key(path: Path) -> Ed25519PrivateKey:
    """The gate's signing key for an export; never made here, so an export run
    from a shell writes nothing outside the folder it was given."""
    if not path.exists():
        raise TransferError(
            f"no device key at {path}: a gate makes it at its first start (scanner run); "
            "export on the gate itself, or give --config with the gate's [paths] device_key"
        )
    return load_private_key(path)


# -- the gate's side: writing an export ------------------------------------------


def _fat_safe(text: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in text)
    return safe.strip(".") or "unknown"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class ExportResult:
    folder: Path
    rows: int
    first_ts: str | None
    last_ts: str | None
    head_hash: str
    encrypted_to: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Snapshot:
    db: bytes
    csv: bytes
    rows: int
    first_ts: str | None
    last_ts: str | None
    head: tuple[int, str]
    events_rows: int
    events_head: tuple[int, str]
    events: list[str]


def _head(conn: sqlite3.Connection, table: str) -> tuple[int, str]:
    row = conn.execute(f"SELECT seq, hash FROM {table} ORDER BY seq DESC LIMIT 1").fetchone()
    return (row[0], row[1]) if row else (0, "0" * 64)


def _snapshot(db: Path) -> _Snapshot:
    """The log as one consistent, stand-alone SQLite image, in memory."""
    source = sqlite3.connect(db.resolve().as_uri() + "?mode=ro", uri=True, timeout=10.0)
    memory = sqlite3.connect(":memory:")
    try:
        source.backup(memory)
        source.close()
        # a file of its own: no WAL flag in its header (a reader opens it
        # from bytes), no free pages
        memory.execute("VACUUM")
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(SCAN_COLUMNS)
        writer.writerows(memory.execute(f"SELECT {csv_columns_sql()} FROM scans ORDER BY seq"))
        rows, first, last = memory.execute(
            "SELECT count(*), min(ts), max(ts) FROM scans"
        ).fetchone()
        events_rows = memory.execute("SELECT count(*) FROM events").fetchone()[0]
        events = [
            r[0]
            for r in memory.execute(
                "SELECT DISTINCT event FROM scans WHERE event IS NOT NULL ORDER BY event"
            )
        ]
        return _Snapshot(
            db=memory.serialize(),
            csv=out.getvalue().encode("utf-8"),
            rows=rows,
            first_ts=first,
            last_ts=last,
            head=_head(memory, "scans"),
            events_rows=events_rows,
            events_head=_head(memory, "events"),
            events=events,
        )
    finally:
        source.close()
        memory.close()


def _open_dir(name: str | Path, dir_fd: int | None = None, *, create: bool = False) -> int:
    """A folder's descriptor, never following a link (the stick's or a shell's)."""
    if create:
        try:
            os.mkdir(name, 0o755, dir_fd=dir_fd)
        except FileExistsError:
            pass
    try:
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENOTDIR):
            raise TransferError(f"{shown(name)}: a link or a file, not a folder") from err
        raise


def _write_file(dir_fd: int, name: str, data: bytes) -> None:
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=dir_fd)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync(fd: int) -> None:
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems (FAT via some drivers) refuse fsync on folders


def _encrypt(data: bytes, recipients: Sequence[str]) -> bytes:
    import pyrage

    try:
        keys = [pyrage.x25519.Recipient.from_str(r) for r in recipients]
        return bytes(pyrage.encrypt(data, keys))
    except (pyrage.RecipientError, pyrage.EncryptError, ValueError) as err:
        raise TransferError(f"cannot encrypt the export: {err}") from err


def export_log(
    db: Path,
    target: Path,
    *,
    gate: str,
    event: str | None,
    device_key: Ed25519PrivateKey,
    now: datetime,
    recipients: Sequence[str] = (),
    plaintext: bool = False,
) -> ExportResult:
    """Write a signed export of the scan log ``db`` under ``target``.

    Encrypted to ``recipients`` (age public keys); with none, refused unless
    ``plaintext``. Safe while the daemon writes. Raises
    :class:`TransferError` with a reason when it cannot be done.
    """
    if plaintext:
        recipients = ()
    elif not recipients:
        raise TransferError(
            "no manager key to encrypt the export to, and holder names never leave in "
            "the clear: name the manager's age key (scanner keygen --manager) in the "
            "event policy's [export] recipients"
        )
    if not db.is_file():
        raise TransferError(f"there is no scan log at {db} yet")
    try:
        needed = 2 * db.stat().st_size + SPACE_MARGIN
        target.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(target).free
    except OSError as err:
        raise TransferError(f"cannot use {target}: {err.strerror}") from err
    if free < needed:
        raise TransferError(
            f"not enough room on {target}: {free // 1024} KiB free, "
            f"about {needed // 1024} KiB needed"
        )
    try:
        snap = _snapshot(db)
    except sqlite3.Error as err:
        raise TransferError(f"cannot read the scan log {db}: {err}") from err

    pub = f"{public_key_text(device_key.public_key())} {key_id(device_key)} {gate}\n".encode()
    summary: dict[str, Any] = {
        "events": snap.events,
        "rows": snap.rows,
        "first_ts": snap.first_ts,
        "last_ts": snap.last_ts,
        "chain_head": {"seq": snap.head[0], "hash": snap.head[1]},
        "events_rows": snap.events_rows,
        "events_head": {"seq": snap.events_head[0], "hash": snap.events_head[1]},
    }
    files: dict[str, bytes] = {}
    listing: dict[str, dict[str, Any]] = {}
    clear: dict[str, dict[str, Any]] = {}
    for name, data in (("scans.db", snap.db), ("scans.csv", snap.csv)):
        if recipients:
            files[name + ".age"] = _encrypt(data, recipients)
            clear[name + ".age"] = {"plaintext_sha256": _sha256(data), "plaintext_bytes": len(data)}
        else:
            files[name] = data
    if recipients:  # what the log holds is sealed too: a finder learns no count, no time
        sealed = _encrypt(_summary_json({**summary, "files": clear}), recipients)
        if len(sealed) > SUMMARY_LIMIT:
            raise TransferError(
                f"the export's summary would be {len(sealed)} bytes, more than a manager "
                f"reads ({SUMMARY_LIMIT}): this log names too many events"
            )
        files[SUMMARY_FILE] = sealed
    files["device.pub"] = pub
    for name, data in files.items():
        listing[name] = {"sha256": _sha256(data), "bytes": len(data)}
    body: dict[str, Any] = {"gate": gate, "event": event, "exported_at": format_utc(now)}
    if recipients:
        body["sealed"] = SUMMARY_FILE
    else:
        body.update(summary)
    body.update({
        "files": listing,
        "encrypted_to": list(recipients),
        "device_key": public_key_text(device_key.public_key()),
        "scanner_version": __version__,
    })  # fmt: skip
    files["manifest.json"] = sign_document(device_key, MANIFEST_KIND, body, now)
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    folder = _write_export(target, _fat_safe(f"{event or 'no-event'}_{gate}"), stamp, files)
    return ExportResult(
        folder, snap.rows, snap.first_ts, snap.last_ts, snap.head[1], tuple(recipients)
    )


def _summary_json(summary: Mapping[str, Any]) -> bytes:
    return json.dumps(summary, sort_keys=True, separators=(",", ":")).encode("ascii")


def _write_export(target: Path, gate_folder: str, stamp: str, files: Mapping[str, bytes]) -> Path:
    """Write ``files`` into a new folder ``target/scanner-logs/GATE/STAMP[-n]``."""
    fds: list[int] = []
    partial: str | None = None
    written: list[str] = []
    try:
        fds.append(os.open(target, os.O_RDONLY | os.O_DIRECTORY))  # the folder given
        fds.append(_open_dir(EXPORT_ROOT, fds[-1], create=True))
        root = _open_dir(gate_folder, fds[-1], create=True)
        fds.append(root)
        for _ in range(100):  # a unique hidden name: two writers never share one
            candidate = f".{stamp}-{secrets.token_hex(4)}.partial"
            try:
                os.mkdir(candidate, 0o755, dir_fd=root)
            except FileExistsError:
                continue
            partial = candidate
            break
        if partial is None:
            raise TransferError(f"cannot make a folder for the export in {target}")
        inner = _open_dir(partial, root)
        fds.append(inner)
        for name, data in files.items():
            _write_file(inner, name, data)
            written.append(name)
        _fsync(inner)
        for n in range(1, 1000):
            final = stamp if n == 1 else f"{stamp}-{n}"
            try:
                os.stat(final, dir_fd=root, follow_symlinks=False)
                continue  # never over an earlier export
            except FileNotFoundError:
                pass
            try:
                os.rename(partial, final, src_dir_fd=root, dst_dir_fd=root)
            except OSError as err:  # another writer took the name in between
                if err.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
                    continue
                raise
            partial = None
            _fsync(root)
            return target / EXPORT_ROOT / gate_folder / final
        raise TransferError(f"too many exports of this gate at {stamp} in {target}")
    except OSError as err:
        raise TransferError(f"the export to {target} failed: {err.strerror or err}") from err
    finally:
        if partial is not None and len(fds) >= 3:
            for name in written:
                try:
                    os.unlink(name, dir_fd=fds[3])
                except OSError:
                    pass
            try:
                os.rmdir(partial, dir_fd=fds[2])
            except OSError:
                pass
        for fd in fds:
            os.close(fd)


# -- the manager's side: checking an export --------------------------------------


@dataclass(frozen=True)
class KnownGates:
    """The gates' device keys the manager trusts, matched by key, never by a
    label a file gives itself: ``keys`` maps a key id to its ``ed25519:...``
    text; ``gates`` maps a gate id to the ids of the keys bound to it by
    signed data (the policy's roster: ``device_key`` and
    ``former_device_keys``) or by the manager's own files (a file named after
    the gate, ``GATE.pub``); ``labels`` keeps what the files called each key,
    for messages. A key bound to no gate is known, but proves no gate's name.
    Plain data, so it travels to worker processes as it is."""

    keys: Mapping[str, str]
    labels: Mapping[str, tuple[str, ...]]
    gates: Mapping[str, frozenset[str]] = field(default_factory=dict)
    source: str = "--known-gates"

    def claimed(self, gate: str) -> set[str]:
        """Ids of the keys bound to ``gate``."""
        return set(self.gates.get(gate, frozenset()))

    def gate_of(self, kid: str) -> str | None:
        """The gate ``kid`` is bound to, if any."""
        return next((g for g, kids in self.gates.items() if kid in kids), None)


def known_gates_from_policy(policy: Any) -> KnownGates:
    """The gates and keys the signed policy's roster names: each gate's device
    key and the keys of the boxes it replaced (``former_device_keys``)."""
    keys: dict[str, str] = {}
    gates: dict[str, frozenset[str]] = {}
    labels: dict[str, tuple[str, ...]] = {}
    for gate, place in policy.gates.items():
        texts = [t for t in (place.device_key, *place.former_device_keys) if t]
        kids = set()
        for text in texts:
            kid = key_id(parse_public_key(text))
            keys[kid] = text
            kids.add(kid)
            labels[kid] = (gate,)
        if kids:
            gates[gate] = frozenset(kids)
    return KnownGates(keys, labels, gates, source="the policy's roster")


@dataclass
class ExportCheck:
    """The result of checking one export folder."""

    folder: Path
    gate: str | None = None
    event: str | None = None
    events: list[str] = field(default_factory=list)
    rows: int = 0
    events_rows: int = 0
    device_key_id: str | None = None
    device_key: str | None = None
    known_gate: bool | None = None  # None: no list of known gates was given
    labels: tuple[str, ...] = ()
    encrypted: bool = False
    sealed: bool = False  # what the log holds is in summary.json.age, not the manifest
    rows_checked: bool = False
    problems: list[str] = field(default_factory=list)  # what is wrong with it
    refusals: list[str] = field(default_factory=list)  # why a merge left it out anyway
    manifest: Mapping[str, Any] = field(default_factory=dict)
    # what the gate signed about the log (SUMMARY_FIELDS and, when encrypted,
    # the clear files' "files"): from the manifest, or from the sealed summary
    # once decrypted; None while it is sealed
    summary: Mapping[str, Any] | None = None
    manifest_sha256: str | None = None  # of the signed part: the export's identity
    db_file: str | None = None
    db_sha256: str | None = None  # the database file as it lies on the stick
    plain_sha256: str | None = None  # the database whose rows were checked
    db_path: Path | None = None  # our private copy of those checked bytes (with a workdir)
    bound_gate: bool | None = None  # False: a known key that no signed data binds to a gate

    @property
    def intact(self) -> bool:
        return not self.problems

    @property
    def complete(self) -> bool:
        """Intact and every row checked (an encrypted export needs --identity)."""
        return self.intact and self.rows_checked

    @property
    def who(self) -> str:
        return f"gate {self.gate}" if self.gate else "an export"

    @property
    def summary_source(self) -> str:
        """Where the summary that the rows are checked against comes from."""
        return f"the sealed summary ({SUMMARY_FILE})" if self.sealed else "the manifest"

    def time_range(self) -> str:
        """`` (FIRST .. LAST)``, the scans' times as checked, or nothing."""
        first = (self.summary or {}).get("first_ts")
        if not self.rows_checked or first is None:
            return ""
        return f" ({shown(first, 40)} .. {shown((self.summary or {}).get('last_ts'), 40)})"

    def signer(self) -> str:
        if self.known_gate is None:
            return f"signed by the key it carries (device key {self.device_key_id})"
        if self.known_gate:
            known_as = f", known as {', '.join(self.labels)}" if self.labels else ""
            return f"signed by a known gate (device key {self.device_key_id}{known_as})"
        return f"signed by a gate NOT in --known-gates (device key {self.device_key_id})"

    def describe(self) -> str:
        if self.problems:
            return f"{self.who}: BROKEN: " + "; ".join(self.problems)
        if self.known_gate is False and not self.rows_checked and self.refusals:
            return f"{self.who}: NOT CHECKED: " + "; ".join(self.refusals)
        if self.refusals:
            return f"{self.who}: intact, but " + "; ".join(self.refusals)
        if not self.rows_checked:
            sealed = ", and its counts and times are sealed with them" if self.sealed else ""
            return (
                f"{self.who}: signature and file hashes good, {self.signer()}; its rows "
                f"could NOT be checked{sealed}: they are encrypted to the manager's key "
                "(give --identity FILE)"
            )
        return (
            f"{self.who}: intact, {plural(self.rows, 'scan')}{self.time_range()} and "
            f"{plural(self.events_rows, 'gate event')}, "
            f"{'encrypted, ' if self.encrypted else ''}{self.signer()}"
        )


def _age_identities(identities: Sequence[str]) -> list[Any]:
    import pyrage

    try:
        return [pyrage.x25519.Identity.from_str(i) for i in identities]
    except (pyrage.IdentityError, ValueError) as err:
        raise TransferError(f"the identity is not an age key: {err}") from err


def _undecryptable(what: str) -> str:
    return (
        f"{what}: cannot be decrypted with the identity given (not encrypted to it, or damaged)"
    )


def decrypt(data: bytes, identities: Sequence[str], what: str) -> bytes:
    """Decrypt an age file in memory with the manager's identities."""
    import pyrage

    keys = _age_identities(identities)
    try:
        return bytes(pyrage.decrypt(data, keys))
    except (pyrage.DecryptError, ValueError) as err:
        raise TransferError(_undecryptable(what)) from err


def decrypt_file(src: Path, dest: Path, identities: Sequence[str], what: str) -> None:
    """Decrypt an age file of ours into another, as a stream (any size, little
    memory)."""
    import pyrage

    keys = _age_identities(identities)
    try:
        with src.open("rb") as reader, dest.open("xb") as writer:
            os.chmod(dest, 0o600)
            pyrage.decrypt_io(reader, writer, keys)
    except (pyrage.DecryptError, ValueError, OSError) as err:
        raise TransferError(_undecryptable(what)) from err


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _head_ok(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and _is_int(value.get("seq"))
        and isinstance(value.get("hash"), str)
    )


def _summary_shape(fields: Mapping[str, Any]) -> list[str]:
    """Which of the summary's fields (SUMMARY_FIELDS) in ``fields`` are
    missing or of the wrong shape."""
    wrong: list[str] = []
    events = fields.get("events")
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        wrong.append("events")
    for name in ("rows", "events_rows"):
        if not _is_int(fields.get(name)) or fields[name] < 0:
            wrong.append(name)
    for name in ("first_ts", "last_ts"):
        if fields.get(name) is not None and not isinstance(fields.get(name), str):
            wrong.append(name)
    for name in ("chain_head", "events_head"):
        if not _head_ok(fields.get(name)):
            wrong.append(name)
    return wrong


def _manifest_problems(body: Mapping[str, Any]) -> list[str]:
    """What is missing or of the wrong shape in a (verified) manifest body.

    Two shapes are read: a sealed one (``"sealed": "summary.json.age"``, an
    encrypted export of this version) says nothing of the log's contents; any
    other (a plaintext export, or an encrypted one written before the summary
    was sealed) carries the summary's fields itself."""
    wrong: list[str] = []
    gate = body.get("gate")
    if not isinstance(gate, str) or not GATE_ID_PATTERN.fullmatch(gate):
        wrong.append("gate")
    if body.get("event") is not None and not isinstance(body.get("event"), str):
        wrong.append("event")
    if not isinstance(body.get("exported_at"), str):
        wrong.append("exported_at")
    sealed = body.get("sealed")
    if sealed is None:
        wrong += _summary_shape(body)
    elif sealed != SUMMARY_FILE or not body.get("encrypted_to"):
        wrong.append("sealed")
    if not isinstance(body.get("files"), dict):
        wrong.append("files")
    recipients = body.get("encrypted_to")
    if not isinstance(recipients, list) or not all(isinstance(r, str) for r in recipients):
        wrong.append("encrypted_to")
    if not isinstance(body.get("device_key"), str):
        wrong.append("device_key")
    problems = []
    if wrong:
        problems.append(f"manifest: {', '.join(wrong)} missing or not as this version writes it")
    if sealed is not None:
        clear = [name for name in SUMMARY_FIELDS if name in body]
        if clear:
            problems.append(
                f"manifest: its summary is sealed, yet it gives {', '.join(clear)} in the clear"
            )
    return problems


def _is_sha256(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX


def _summary_problems(summary: Any) -> list[str]:
    """What is wrong with a decrypted summary: exactly the summary's fields,
    each of its shape, and the two clear files' sizes and hashes."""
    what = SUMMARY_FILE
    if not isinstance(summary, dict):
        return [f"{what}: not an export's summary (not a JSON object)"]
    expected = {*SUMMARY_FIELDS, "files"}
    extra = sorted(set(summary) - expected)
    problems = []
    if extra:
        names = ", ".join(shown(name, 40) for name in extra[:5])
        problems.append(f"{what}: fields no export's summary has: {names}")
    wrong = [name for name in SUMMARY_FIELDS if name not in summary]
    wrong += [name for name in _summary_shape(summary) if name not in wrong]
    for name in ("chain_head", "events_head"):
        head = summary.get(name)
        if name in wrong or not isinstance(head, dict):
            continue
        if set(head) != {"seq", "hash"} or not _is_sha256(head["hash"]):
            wrong.append(name)
    files = summary.get("files")
    if not (
        isinstance(files, dict)
        and set(files) == set(ENCRYPTED_FILES[:2])
        and all(
            isinstance(entry, dict)
            and set(entry) == {"plaintext_sha256", "plaintext_bytes"}
            and _is_sha256(entry["plaintext_sha256"])
            and _is_int(entry["plaintext_bytes"])
            and entry["plaintext_bytes"] >= 0
            for entry in files.values()
        )
    ):
        wrong.append("files")
    if wrong:
        problems.append(f"{what}: {', '.join(wrong)} missing or not as this version writes it")
    return problems


def _open_summary(sealed: bytes, identities: Sequence[str]) -> Mapping[str, Any]:
    """The sealed summary (bytes whose hash the manifest signs), decrypted and
    checked; TransferError with the reason when it is not an export's."""
    plain = decrypt(sealed, identities, SUMMARY_FILE)
    try:
        summary = parse_json(plain, max_bytes=SUMMARY_LIMIT, max_depth=SUMMARY_DEPTH)
    except MalformedError as err:
        raise TransferError(f"{SUMMARY_FILE}: {err}") from err
    problems = _summary_problems(summary)
    if problems:
        raise TransferError("; ".join(problems))
    return dict(summary)


def _clear_summary(body: Mapping[str, Any]) -> dict[str, Any]:
    """The summary a manifest carries itself (a plaintext export's, or an
    encrypted one's written before the summary was sealed)."""
    summary = {name: body.get(name) for name in SUMMARY_FIELDS}
    summary["files"] = {
        name: {key: entry.get(key) for key in ("plaintext_sha256", "plaintext_bytes")}
        for name, entry in body["files"].items()
        if name.endswith(".age") and isinstance(entry, dict)
    }
    return summary


def _take_summary(check: ExportCheck, summary: Mapping[str, Any]) -> None:
    check.summary = summary
    check.events = list(summary["events"])


def verify_export(
    folder: Path,
    known_gates: KnownGates | None = None,
    identities: Sequence[str] = (),
    *,
    decrypt_csv: bool = True,
    workdir: Path | None = None,
    allow_unknown: bool = False,
) -> ExportCheck:
    """Check an export folder; every problem is named by gate and row.

    ``identities`` (age secret keys) decrypt an encrypted export (as a
    stream, into a private copy); without them its rows are not checked
    (``rows_checked`` stays False). ``decrypt_csv=False`` skips decrypting the
    CSV (its bytes on the stick are still checked): a merge does not read it.
    With ``known_gates``, an export signed by a key not among them is refused
    before any file but the manifest is read, unless ``allow_unknown``.
    ``workdir`` is a private folder for the copies (a temporary one by
    default); with it, the checked clear database stays there as
    ``check.db_path`` for a merge to use, the very bytes that were checked.
    """
    check = ExportCheck(folder)
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="scanner-check-") as tmp:
            return verify_export(
                folder, known_gates, identities, decrypt_csv=decrypt_csv,
                workdir=Path(tmp), allow_unknown=allow_unknown,
            )  # fmt: skip
    try:
        with Folder(folder) as files:
            path = read_export(
                files, check, known_gates, identities, workdir,
                decrypt_csv=decrypt_csv, allow_unknown=allow_unknown,
            )  # fmt: skip
    except TransferError as err:
        check.problems.append(str(err))
        return check
    if path is not None and not check.problems:
        check_rows(path, check)
        if check.rows_checked:
            check.db_path = path
    return check


def read_export(
    files: Folder,
    check: ExportCheck,
    known_gates: KnownGates | None,
    identities: Sequence[str],
    workdir: Path,
    *,
    decrypt_csv: bool = True,
    allow_unknown: bool = False,
) -> Path | None:
    """Check the manifest, the signer and every file's hash; return the path
    of the clear database, copied (and decrypted) into ``workdir`` (None if it
    cannot or need not be checked). A signer the manager does not know is
    refused before anything but the manifest is read."""
    manifest = files.read("manifest.json", MANIFEST_LIMIT)
    try:
        document = open_document(
            manifest.data, kind=MANIFEST_KIND, trusted=None, max_bytes=MANIFEST_LIMIT
        )
        signed = parse_json(manifest.data, max_bytes=MANIFEST_LIMIT)["signed"]
    except (SignatureError, MalformedError) as err:
        check.problems.append(f"manifest: {err}")
        return None
    body = document.body
    check.manifest = body
    check.manifest_sha256 = _sha256(signed.encode("utf-8"))
    check.device_key_id = document.key_id
    shape = _manifest_problems(body)
    if shape:
        check.problems += shape
        return None
    check.gate = body["gate"]
    check.event = body["event"]
    check.device_key = body["device_key"]
    check.encrypted = bool(body["encrypted_to"])
    check.sealed = body.get("sealed") is not None
    if not check.sealed:
        _take_summary(check, _clear_summary(body))
    try:
        claimed = parse_public_key(body["device_key"])
    except KeyFileError:
        claimed = None
    if claimed is None or key_id(claimed) != document.key_id:
        check.problems.append("manifest: signed by a key other than the device key it names")
    if known_gates is not None:
        kid = document.key_id
        check.known_gate = kid in known_gates.keys
        check.labels = known_gates.labels.get(kid, ())
        bound = known_gates.gate_of(kid)
        mine = known_gates.claimed(check.gate)
        others = mine - {kid} if kid not in mine else set()
        if bound is not None and bound != check.gate:
            check.problems.append(
                f"manifest: names gate {check.gate}, but it is signed by the device key of "
                f"gate {bound} ({kid}) in {known_gates.source}: a box claims another gate's name"
            )
        elif others:
            check.problems.append(
                f"manifest: signed by device key {kid}, but gate {check.gate} has key "
                f"{', '.join(sorted(others))} in {known_gates.source}: another box claims "
                "its name"
            )
        elif check.known_gate and bound is None:
            check.bound_gate = False
        if check.problems:
            return None
        if not check.known_gate and not allow_unknown:
            # refused before a byte of it is read: an unknown signer costs nothing
            check.refusals.append(
                f"signed by device key {kid}, which is not in {known_gates.source}: "
                "nothing else in it was read (add the gate's key, or merge it marked with "
                "--allow-unknown-gates)"
            )
            return None

    expected: tuple[str, ...]
    if check.sealed:
        expected = SEALED_FILES
    else:
        expected = ENCRYPTED_FILES if check.encrypted else PLAIN_FILES
    listing = body["files"]
    if set(listing) != set(expected) or not all(
        isinstance(entry, dict) for entry in listing.values()
    ):
        check.problems.append("manifest: the file list is not an export's")
        return None
    found: dict[str, Path] = {}
    sealed = b""
    for name in expected:
        entry = listing[name]
        try:
            if name == SUMMARY_FILE:
                summary_file = files.read(name, SUMMARY_LIMIT)
                got_sha256, got_size = summary_file.sha256, len(summary_file.data)
                sealed = summary_file.data
            elif name == "device.pub":
                pub = files.read(name, DEVICE_PUB_LIMIT)
                got_sha256, got_size = pub.sha256, len(pub.data)
                words = pub.data.split()
                if not words or words[0].decode("ascii", "replace") != body["device_key"]:
                    check.problems.append("device.pub: not the key that signed the manifest")
            else:
                copied = files.copy(name, DATABASE_LIMIT, workdir, expected=_declared(entry))
                got_sha256, got_size = copied.sha256, copied.size
                found[name] = copied.path
        except TransferError as err:
            check.problems.append(str(err))
            continue
        if got_sha256 != entry.get("sha256") or got_size != entry.get("bytes"):
            check.problems.append(f"{name}: changed since the gate signed the manifest")
    if check.problems:
        return None
    check.db_file = expected[0]
    check.db_sha256 = listing[expected[0]]["sha256"]
    if not check.encrypted:
        check.plain_sha256 = check.db_sha256
        return found["scans.db"]
    if not identities:
        return None  # and a sealed summary stays sealed: no count, no time is known
    if check.sealed:
        try:
            _take_summary(check, _open_summary(sealed, identities))
        except TransferError as err:
            check.problems.append(str(err))
            return None
    assert check.summary is not None
    clear: dict[str, Path] = {}
    for name in ENCRYPTED_FILES[: 2 if decrypt_csv else 1]:
        out = workdir / name.removesuffix(".age")
        decrypt_file(found[name], out, identities, name)
        entry = check.summary["files"].get(name, {})
        if file_sha256(out) != entry.get("plaintext_sha256") or out.stat().st_size != entry.get(
            "plaintext_bytes"
        ):
            check.problems.append(f"{name}: its contents are not what the gate signed")
        clear[name] = out
    check.plain_sha256 = check.summary["files"]["scans.db.age"].get("plaintext_sha256")
    return None if check.problems else clear["scans.db.age"]


def _declared(entry: Mapping[str, Any]) -> int:
    """The size the signed manifest gives a file: no more is copied."""
    size = entry.get("bytes")
    return size if _is_int(size) and size >= 0 else 0


def check_rows(path: Path, check: ExportCheck) -> None:
    """Check the clear database of an export whose manifest and files are good
    (its private copy at ``path``) against the summary the gate signed."""
    gate = str(check.gate)
    summary = check.summary
    if summary is None:  # sealed and not opened: nothing to check the rows against
        check.problems.append(f"{SUMMARY_FILE}: not decrypted, so the rows cannot be checked")
        return
    source = check.summary_source
    try:
        conn = open_database_file(path, "scans.db")
    except TransferError as err:
        check.problems.append(str(err))
        return
    try:
        owner = conn.execute("SELECT value FROM state WHERE key = 'gate'").fetchone()
        if owner is not None and owner[0] != json.dumps(gate):
            check.problems.append(
                f"scans.db: the log belongs to gate {shown(owner[0], 60)}, not {gate}"
            )
        events = check.events
        for table, columns, count_key, head_key in (
            ("scans", SCAN_COLUMNS, "rows", "chain_head"),
            ("events", EVENT_COLUMNS, "events_rows", "events_head"),
        ):
            count, last = _check_table(conn, table, columns, gate, events, check.problems, source)
            if table == "scans":
                check.rows = count
            else:
                check.events_rows = count
            label = "scans" if table == "scans" else "gate events"
            if count != summary[count_key]:
                check.problems.append(
                    f"gate {gate}: {plural(count, 'row')} of {label}, "
                    f"{source} says {summary[count_key]}"
                )
            head = summary[head_key]
            if (last or (0, "0" * 64)) != (head["seq"], head["hash"]):
                check.problems.append(
                    f"gate {gate}: the {label} do not end where {source} says "
                    f"(row {head['seq']}): rows cut off or replaced"
                )
        _check_extent(conn, gate, summary, source, check.problems)
    except SQLITE_FAILURES as err:
        check.problems.append(f"scans.db: cannot be read ({err})")
    finally:
        conn.close()
    check.rows_checked = not check.problems


def _check_extent(
    conn: sqlite3.Connection,
    gate: str,
    summary: Mapping[str, Any],
    source: str,
    problems: list[str],
) -> None:
    """The scans' first and last times and their events are what the summary
    says: what a manager is shown of an export is what its rows hold."""
    first, last = conn.execute("SELECT min(ts), max(ts) FROM scans").fetchone()
    if (first, last) != (summary["first_ts"], summary["last_ts"]):
        problems.append(
            f"gate {gate}: the scans run from {shown(first, 40)} to {shown(last, 40)}, "
            f"{source} says {shown(summary['first_ts'], 40)} to {shown(summary['last_ts'], 40)}"
        )
    held = [
        event
        for (event,) in conn.execute(
            "SELECT DISTINCT event FROM scans WHERE event IS NOT NULL ORDER BY event"
        )
    ]
    listed = list(summary["events"])
    # a row of an event not listed is named row by row; here, a list that says more
    if held != listed and set(held) <= set(listed):
        problems.append(
            f"gate {gate}: {source} lists the events {shown(', '.join(listed), 200)}, "
            f"its scans are of {shown(', '.join(held), 200) or 'none'}"
        )


def _plain(value: Any) -> Any:
    """A value of a type no genuine row holds, made hashable for the chain check."""
    return value if value is None or type(value) in (str, int) else repr(value)


def _check_table(
    conn: sqlite3.Connection,
    table: str,
    columns: Mapping[str, type],
    gate: str,
    events: list[str],
    problems: list[str],
    source: str = "the manifest",
) -> tuple[int, tuple[int, str] | None]:
    """Check every row of ``table`` (types, gate and event in SQLite, the hash
    chain in Python); returns the row count and the last (seq, hash)."""
    names = list(columns)
    label = "" if table == "scans" else "gate event "
    found: list[str] = []
    sql_type = {str: "text", int: "integer"}
    wrong_type = " OR ".join(
        f"typeof({c}) NOT IN ('{sql_type[kind]}', 'null')" for c, kind in columns.items()
    )
    odd = conn.execute(
        f"SELECT seq FROM {table} WHERE {wrong_type} ORDER BY seq LIMIT {MAX_PROBLEMS + 1}"
    ).fetchall()
    found += [f"{label}row {shown(seq)}: a value of a wrong type" for (seq,) in odd]
    for seq, other in conn.execute(
        f"SELECT seq, gate FROM {table} WHERE gate IS NOT ? ORDER BY seq LIMIT {MAX_PROBLEMS + 1}",
        [gate],
    ):
        found.append(
            f"{label}row {shown(seq)}: a row of gate {shown(other, 60)}, in gate {gate}'s export"
        )
    if table == "scans":
        for seq, event in conn.execute(
            "SELECT seq, event FROM scans WHERE event IS NOT NULL AND event NOT IN "
            f"(SELECT value FROM json_each(?)) ORDER BY seq LIMIT {MAX_PROBLEMS + 1}",
            [json.dumps(events)],
        ):
            found.append(f"row {shown(seq)}: event {shown(event, 60)} is not one {source} lists")
    count = 0
    last: tuple[int, str] | None = None

    def rows() -> Iterator[dict[str, Any]]:
        nonlocal count, last
        for values in conn.execute(f"SELECT {', '.join(names)} FROM {table} ORDER BY seq"):
            row = dict(zip(names, values, strict=True))
            if odd:  # a crafted file: make every value hashable for the chain check
                row = {c: _plain(v) for c, v in row.items()}
            count += 1
            last = (row["seq"], row["hash"])
            yield row

    found += [f"{label}{p}" for p in map(str, verify_chain(rows()))]
    if len(found) > MAX_PROBLEMS:
        found = [*found[:MAX_PROBLEMS], f"and {len(found) - MAX_PROBLEMS} more"]
    problems += [f"gate {gate}, {p}" for p in found]
    return count, last
