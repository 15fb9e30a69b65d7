"""Writing a file whole or not at all, with the mode asked for; and how a count reads."""

from __future__ import annotations

import os
import stat
import threading

import pytest

from scanner.errors import MalformedError
from scanner.files import read_regular_file, replacing, write_atomically


def test_a_failed_write_leaves_the_old_file_and_no_temporary_behind(tmp_path):
    target = tmp_path / "passes.csv"
    target.write_text("the old list\n")
    with pytest.raises(RuntimeError), replacing(target, text=True) as out:
        out.write("half of the new")
        raise RuntimeError("the disk is full")
    assert target.read_text() == "the old list\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["passes.csv"]


def test_a_key_is_0600_from_the_first_byte_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        write_atomically(tmp_path / "organizer.key", b"secret", mode=0o600)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "organizer.key").stat().st_mode) == 0o600


def test_without_a_mode_the_users_umask_decides(tmp_path):
    old = os.umask(0o077)
    try:
        write_atomically(tmp_path / "sheet.html", "<p>names</p>")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "sheet.html").stat().st_mode) == 0o600


def test_a_link_planted_where_the_temporary_goes_is_never_written_through(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    target = tmp_path / "out.signed"
    (tmp_path / f".out.signed.{os.getpid()}.{threading.get_ident()}.tmp").symlink_to(victim)
    write_atomically(target, b"signed")
    assert victim.read_text() == "untouched" and target.read_bytes() == b"signed"


def test_counts_read_as_english():
    from scanner.words import plural

    assert [plural(n, "pass") for n in (0, 1, 2)] == ["0 passes", "1 pass", "2 passes"]
    assert plural(3, "gate") == "3 gates" and plural(1, "gate event") == "1 gate event"
    assert plural(1234, "scan", shown="1,234") == "1,234 scans"
    assert plural(2, "person", "people") == "2 people"


def test_a_file_is_read_only_if_it_is_a_regular_file_within_its_cap(tmp_path):
    good = tmp_path / "event.policy"
    good.write_bytes(b"x" * 10)
    assert read_regular_file(good, 10) == b"x" * 10
    with pytest.raises(MalformedError, match=r"^11 bytes; at most 10 are accepted$"):
        good.write_bytes(b"x" * 11)
        read_regular_file(good, 10)
    (tmp_path / "link").symlink_to(good)
    with pytest.raises(OSError):  # a link is never followed (ELOOP)
        read_regular_file(tmp_path / "link", 100)
    os.mkfifo(tmp_path / "fifo")  # opened without blocking, then refused
    with pytest.raises(MalformedError, match=r"not a regular file \(a device or pipe\)"):
        read_regular_file(tmp_path / "fifo", 100)
    with pytest.raises(MalformedError, match=r"not a regular file \(a folder\)"):
        read_regular_file(tmp_path, 100)
