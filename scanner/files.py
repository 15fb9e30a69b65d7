"""Files, written so that a crash or a power cut never leaves half of one,
and read so that a link, a pipe or a huge file someone left never gets in.

Writing, one way for the whole product: the bytes go to a temporary file
beside the target, created exclusively (never through a link someone left
there) with its final mode from the first byte, are flushed to the disk,
renamed over the target, and the folder is flushed so the rename itself
survives. The product's hand-written copies of this, most of which never
flushed, all use it now.

Reading, :func:`read_regular_file`: opened without following a link and
without blocking on a pipe, ``fstat``-ed, refused unless a regular file,
and read with a cap that holds even if the file grows while it is read.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from .errors import MalformedError

__all__ = ["fsync_folder", "match_owner", "read_regular_file", "replacing", "write_atomically"]

_OPEN_TO_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@contextlib.contextmanager
def replacing(
    path: Path, *, mode: int | None = None, text: bool = False, newline: str | None = None
) -> Iterator[IO[Any]]:
    """A file to write ``path``'s new content into; it replaces ``path`` whole
    when the block ends without an error, and is removed when it does not.
    ``mode`` is the file's exact mode (a key's 0600; a file another service
    reads, 0644); without it the user's umask decides, as for any new file."""
    # one name per process and thread: two installers never share a temporary
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.unlink(missing_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    fd = os.open(tmp, flags, 0o666 if mode is None else mode)
    try:
        try:
            if mode is not None:
                os.fchmod(fd, mode)  # exactly what was asked, whatever the umask
            out_file = (
                os.fdopen(fd, "w", encoding="utf-8", newline=newline)
                if text
                else os.fdopen(fd, "wb")
            )
        except BaseException:
            os.close(fd)
            raise
        with out_file as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)


def fsync_folder(folder: Path) -> None:
    """Flush ``folder`` itself, so a rename or removal in it survives a power cut."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes | str, *, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` whole (see the module doc)."""
    with replacing(path, mode=mode, text=isinstance(data, str)) as out:
        out.write(data)


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


def read_regular_file(path: Path | str, limit: int, *, dir_fd: int | None = None) -> bytes:
    """The bytes of ``path`` (relative to ``dir_fd`` when given) if it is a
    regular file, not a link, of at most ``limit`` bytes. Raises
    :class:`~scanner.errors.MalformedError` saying why not, or ``OSError``
    (no such file, a link: ``ELOOP``)."""
    fd = os.open(path, _OPEN_TO_READ, dir_fd=dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a folder" if stat.S_ISDIR(st.st_mode) else "a device or pipe"
            raise MalformedError(f"not a regular file ({kind})")
        if st.st_size > limit:
            raise MalformedError(f"{st.st_size} bytes; at most {limit} are accepted")
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, min(1 << 20, limit + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:  # it grew while it was read
                raise MalformedError(f"more than {limit} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)
