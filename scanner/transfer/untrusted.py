"""The one way to read files from a stick or an export folder.

Whatever lies in an export folder was written by somebody we do not trust
until its signature and hashes say otherwise, and its *name* is the first
thing an attacker controls: a folder called ``...#`` once made SQLite open a
sibling file the attacker supplied, because its path was pasted into a
``file:`` URI. So nothing here ever turns a path into text for another
parser. The rules:

* A folder is opened once (``O_DIRECTORY | O_NOFOLLOW``); each file is opened
  relative to it, by a fixed name, with ``O_NOFOLLOW``, and ``fstat``-ed: a
  regular file (not a link, a FIFO or a device) of at most a stated size.
  Its bytes are read once and hashed; callers check that hash and then use
  *those bytes*, never the path again. Nothing else in the folder is read.
  A large file (a database) is copied, not read into memory: streamed into a
  private folder of ours and hashed on the way (:meth:`Folder.copy`), so a
  gigabyte costs a megabyte of memory, and the copy is what gets checked and
  merged.
* A SQLite database is opened only from such bytes (``deserialize`` into
  memory) or such a copy (read-only, immutable), with
  ``trusted_schema=OFF``, ``query_only``, size limits and
  ``cell_size_check``; its ``sqlite_master`` must be exactly one of
  :func:`scanner.record.schema.known_schemas` (no views, triggers, virtual
  tables, extra or changed tables, columns or indexes) before any row is
  read, and ``PRAGMA integrity_check`` must pass.

Every failure is a :class:`~scanner.errors.TransferError` whose message says
what was wrong, never a traceback; names taken from a stick are shown
through :func:`shown`, so a file name cannot write escape codes to the
manager's terminal.
"""

from __future__ import annotations

import errno
import hashlib
import os
import sqlite3
import stat
from dataclasses import dataclass
from pathlib import Path

from ..errors import MalformedError, TransferError
from ..files import read_regular_file
from ..record.schema import known_schemas

__all__ = [
    "DATABASE_LIMIT",
    "MANIFEST_LIMIT",
    "CopiedFile",
    "Folder",
    "ReadBytes",
    "attach_database",
    "attach_database_file",
    "file_sha256",
    "open_database",
    "open_database_file",
    "shown",
]

MANIFEST_LIMIT = 1024 * 1024
DATABASE_LIMIT = 2 * 1024 * 1024 * 1024
_CHUNK = 1 << 20
_OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def shown(text: object, limit: int = 120) -> str:
    """``text`` (a name from a stick, a value from a file) safe to print: no
    control characters, no undecodable bytes, at most ``limit`` characters."""
    if isinstance(text, Path):
        text = os.fsencode(text).decode("utf-8", "backslashreplace")
    value = str(text)
    out = "".join(
        c if c.isprintable() and not 0xD800 <= ord(c) <= 0xDFFF else repr(c)[1:-1] for c in value
    )
    return out if len(out) <= limit else out[: limit - 3] + "..."


@dataclass(frozen=True)
class ReadBytes:
    """One file's bytes, exactly as read, and their SHA-256."""

    name: str
    data: bytes
    sha256: str


def _refusal(what: str, err: OSError) -> TransferError:
    if err.errno == errno.ENOENT:
        return TransferError(f"{what}: missing")
    if err.errno in (errno.ELOOP, errno.EMLINK):
        return TransferError(f"{what}: a link, not a file; links are never followed")
    if err.errno == errno.ENOTDIR:
        return TransferError(f"{what}: not a folder")
    return TransferError(f"{what}: cannot be read ({err.strerror})")


def _kind(mode: int) -> str:
    return "a folder" if stat.S_ISDIR(mode) else "a device or pipe"


@dataclass(frozen=True)
class CopiedFile:
    """A file from a stick, copied into a private folder of ours: its copy, the
    SHA-256 of the bytes copied, and their number."""

    name: str
    path: Path
    sha256: str
    size: int


def file_sha256(path: Path) -> str:
    """The SHA-256 of one of our own files, a chunk at a time."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class Folder:
    """A folder from a stick, opened once; its files are read by fixed names.

    A context manager; :meth:`close` is safe to call twice.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._fd: int | None = os.open(path, _OPEN_DIR)
        except OSError as err:
            if err.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(path):
                raise TransferError(
                    f"{shown(path)}: a link, not a folder; links are never followed"
                ) from err
            raise _refusal(shown(path), err) from err

    def read(self, name: str, limit: int) -> ReadBytes:
        """The bytes of the regular file ``name`` in this folder, at most ``limit``."""
        found = self.read_if_there(name, limit)
        if found is None:
            raise TransferError(f"{name}: missing")
        return found

    def read_if_there(self, name: str, limit: int) -> ReadBytes | None:
        """As :meth:`read`, but None when the folder has no such name (an
        update folder holds only the updates brought this time)."""
        if self._fd is None:
            raise TransferError(f"{shown(self.path)}: already closed")
        if not name or "/" in name or name in (".", ".."):
            raise TransferError(f"{shown(name)}: not a file name")
        try:
            data = read_regular_file(name, limit, dir_fd=self._fd)
        except FileNotFoundError:
            return None
        except MalformedError as err:
            raise TransferError(f"{name}: {err}") from err
        except OSError as err:
            raise _refusal(name, err) from err
        return ReadBytes(name, data, hashlib.sha256(data).hexdigest())

    def copy(
        self, name: str, limit: int, into: Path, *, expected: int | None = None
    ) -> CopiedFile:
        """Copy the regular file ``name`` (at most ``limit`` bytes) into the
        private folder ``into``, hashing it on the way: memory stays at one
        chunk whatever the file's size, and the copy is what gets checked and
        used (the stick's file may change afterwards; the copy cannot). With
        ``expected``, a file of another size is refused before it is read."""
        if self._fd is None:
            raise TransferError(f"{shown(self.path)}: already closed")
        if not name or "/" in name or name in (".", ".."):
            raise TransferError(f"{shown(name)}: not a file name")
        try:
            fd = os.open(name, _OPEN_FILE, dir_fd=self._fd)
        except OSError as err:
            raise _refusal(name, err) from err
        target = into / name
        out = -1
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise TransferError(f"{name}: not a regular file ({_kind(st.st_mode)})")
            if st.st_size > limit:
                raise TransferError(f"{name}: {st.st_size} bytes; at most {limit} are accepted")
            if expected is not None and st.st_size != expected:
                raise TransferError(
                    f"{name}: changed since the gate signed the manifest ({st.st_size} bytes, "
                    f"it says {expected}); nothing of it was read"
                )
            out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            digest = hashlib.sha256()
            size = 0
            while chunk := os.read(fd, min(_CHUNK, limit + 1 - size)):
                size += len(chunk)
                if size > limit:  # it grew while we read it
                    raise TransferError(f"{name}: more than {limit} bytes")
                digest.update(chunk)
                os.write(out, chunk)
        except OSError as err:
            raise _refusal(name, err) from err
        finally:
            os.close(fd)
            if out >= 0:
                os.close(out)
        return CopiedFile(name, target, digest.hexdigest(), size)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> Folder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- SQLite from bytes ---------------------------------------------------------

_LIMITS = (  # a genuine scan log needs far less; a crafted one gets no more
    (sqlite3.SQLITE_LIMIT_LENGTH, 1_000_000),
    (sqlite3.SQLITE_LIMIT_SQL_LENGTH, 100_000),
    (sqlite3.SQLITE_LIMIT_COLUMN, 100),
    (sqlite3.SQLITE_LIMIT_EXPR_DEPTH, 100),
    (sqlite3.SQLITE_LIMIT_ATTACHED, 1),
)


# What reading a hostile database can raise: SQLite's errors, and a
# UnicodeDecodeError when SQLite's own error message quotes bytes of the file
# that are not UTF-8 (a damaged schema, say).
SQLITE_FAILURES = (sqlite3.Error, UnicodeDecodeError)


def strict_text(data: bytes) -> str:
    """Text out of a hostile database: UTF-8 or a refusal (sqlite3.DataError,
    caught with every other SQLite error), never a UnicodeDecodeError from
    deep inside a query."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise sqlite3.DataError(f"text that is not UTF-8 ({err.reason})") from err


def _harden(conn: sqlite3.Connection) -> None:
    conn.text_factory = strict_text
    for limit, value in _LIMITS:
        conn.setlimit(limit, value)
    conn.execute("PRAGMA trusted_schema=OFF")
    conn.execute("PRAGMA cell_size_check=ON")
    conn.execute("PRAGMA mmap_size=0")


def check_schema(conn: sqlite3.Connection, what: str, schema: str = "main") -> None:
    """Refuse unless ``schema`` holds exactly what a scan log of this version
    (or of an earlier one) holds."""
    try:
        found = conn.execute(f"SELECT type, name, tbl_name, sql FROM {schema}.sqlite_master")
        rows = frozenset(found.fetchall())
    except SQLITE_FAILURES as err:
        raise TransferError(f"{what}: not a readable SQLite file ({err})") from err
    if rows in known_schemas():
        return
    expected = known_schemas()[0]
    extra = sorted(rows - expected, key=lambda r: (str(r[0]), str(r[1])))
    missing = sorted(expected - rows, key=lambda r: (str(r[0]), str(r[1])))
    details = [f"unexpected {r[0]} {shown(r[1], 60)}" for r in extra[:3]]
    details += [f"{r[0]} {r[1]} missing or changed" for r in missing[:3]]
    raise TransferError(f"{what}: not a scan log made by this version: {'; '.join(details)}")


def _integrity(conn: sqlite3.Connection, what: str, schema: str = "main") -> None:
    try:
        found = [r[0] for r in conn.execute(f"PRAGMA {schema}.integrity_check(5)")]
    except SQLITE_FAILURES as err:
        raise TransferError(f"{what}: not a readable SQLite file ({err})") from err
    if found != ["ok"]:
        raise TransferError(f"{what}: damaged: {shown('; '.join(map(str, found)), 200)}")


def open_database(data: bytes, what: str, *, integrity: bool = True) -> sqlite3.Connection:
    """A read-only, in-memory SQLite connection over ``data``, which must be a
    scan log with exactly the expected schema (and, with ``integrity``,
    pass ``PRAGMA integrity_check``)."""
    if not data:  # deserialize() raises MemoryError on no bytes at all
        raise TransferError(f"{what}: an empty file, not a SQLite file")
    conn = sqlite3.connect(":memory:")
    try:
        _harden(conn)
        try:
            conn.deserialize(data)
        except (*SQLITE_FAILURES, OverflowError, MemoryError) as err:
            raise TransferError(f"{what}: not a SQLite file ({err})") from err
        conn.execute("PRAGMA query_only=ON")
        check_schema(conn, what)
        if integrity:
            _integrity(conn, what)
    except BaseException:
        conn.close()
        raise
    return conn


def _uri(path: Path) -> str:
    # our own private copy (a name we chose), opened read-only and immutable:
    # no lock, no journal, nothing written beside it
    return path.resolve().as_uri() + "?mode=ro&immutable=1"


def open_database_file(path: Path, what: str, *, integrity: bool = True) -> sqlite3.Connection:
    """:func:`open_database` for a copy on our own disk (:meth:`Folder.copy`):
    the same checks, and SQLite reads it from the file, so a database of any
    allowed size costs its page cache, not its size in memory."""
    if not path.stat().st_size:
        raise TransferError(f"{what}: an empty file, not a SQLite file")
    try:
        conn = sqlite3.connect(_uri(path), uri=True)
    except SQLITE_FAILURES as err:
        raise TransferError(f"{what}: not a SQLite file ({err})") from err
    try:
        _harden(conn)
        conn.execute("PRAGMA query_only=ON")
        check_schema(conn, what)
        if integrity:
            _integrity(conn, what)
    except BaseException:
        conn.close()
        raise
    return conn


def attach_database_file(
    conn: sqlite3.Connection, path: Path, what: str, name: str = "ext"
) -> None:
    """:func:`attach_database` for a copy on our own disk, read-only."""
    if not path.stat().st_size:
        raise TransferError(f"{what}: an empty file, not a SQLite file")
    conn.text_factory = strict_text
    conn.execute("PRAGMA trusted_schema=OFF")
    try:
        conn.execute(f"ATTACH DATABASE ? AS {name}", [_uri(path)])
    except SQLITE_FAILURES as err:
        raise TransferError(f"{what}: not a SQLite file ({err})") from err
    try:
        check_schema(conn, what, name)
    except BaseException:
        conn.execute(f"DETACH DATABASE {name}")
        raise


def attach_database(
    conn: sqlite3.Connection, data: bytes, what: str, name: str = "ext"
) -> None:
    """Attach ``data`` to ``conn`` as schema ``name`` (in memory), refusing it
    unless it has exactly the expected schema. For merging: the rows can then
    be copied with SQLite's own ``INSERT ... SELECT``. Detach when done."""
    if not data:
        raise TransferError(f"{what}: an empty file, not a SQLite file")
    conn.text_factory = strict_text
    conn.execute("PRAGMA trusted_schema=OFF")
    conn.execute(f"ATTACH DATABASE ':memory:' AS {name}")
    try:
        try:
            conn.deserialize(data, name=name)
        except (*SQLITE_FAILURES, OverflowError, MemoryError) as err:
            raise TransferError(f"{what}: not a SQLite file ({err})") from err
        check_schema(conn, what, name)
    except BaseException:
        conn.execute(f"DETACH DATABASE {name}")
        raise

