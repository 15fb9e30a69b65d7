"""Writing a file whole or not at all, with the mode asked for; and how a count reads."""

from __future__ import annotations

import os
import stat
import threading

import pytest

from scanner.files import replacing, write_atomically


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
