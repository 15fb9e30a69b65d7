"""The scan log: durable rows, a hash chain that exposes tampering, and the
gate's state kept across restarts."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import pytest

from scanner.errors import ScanLogError
from scanner.record.chain import verify_chain
from scanner.record.log import ScanLog
from scanner.record.schema import SCHEMA_VERSIONS, expected_schema, migrations

T0 = datetime(2026, 12, 5, 19, 0, tzinfo=UTC)


def scan(n: int, **extra):
    row = {
        "ts": f"2026-12-05T19:00:{n:02d}Z",
        "zone": "backstage",
        "direction": "entry",
        "event": "example-fest-2026",
        "serial": n,
        "tier": "vip",
        "holder": f"Guest {n}",
        "decision": "granted",
        "reason": "ok",
        "key_id": "56475aa75463474c",
        "clock": "trusted",
        "phase": "before",
        "message": "Granted",
    }
    row.update(extra)
    return row


@pytest.fixture
def log(tmp_path):
    with ScanLog(tmp_path / "scans.db", gate="door-1") as log:
        yield log


def test_the_database_is_in_wal_mode_with_full_sync(log):
    conn = log.db.conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_rows_get_unique_ids_and_a_chain_that_verifies(log):
    rows = [log.record_scan(scan(n)) for n in range(1, 6)]
    assert len({r.id for r in rows}) == 5
    stored = list(log.scans())
    assert [r["seq"] for r in stored] == [1, 2, 3, 4, 5]
    assert stored[0]["gate"] == "door-1"
    assert verify_chain(stored) == []
    assert log.head == (5, stored[-1]["hash"])


def test_an_edited_row_is_detected(log, tmp_path):
    for n in range(1, 6):
        log.record_scan(scan(n))
    log.db.conn.execute("UPDATE scans SET decision = 'granted', holder = 'Mallory' WHERE seq = 3")
    log.db.conn.commit()
    problems = verify_chain(log.scans())
    assert [(p.seq, p.problem) for p in problems] == [(3, "was altered after it was written")]


def test_a_deleted_row_is_detected(log):
    for n in range(1, 6):
        log.record_scan(scan(n))
    log.db.conn.execute("DELETE FROM scans WHERE seq = 2")
    log.db.conn.commit()
    problems = verify_chain(log.scans())
    assert problems and problems[0].seq == 3
    assert "missing or out of order" in str(problems[0])


def test_reordered_rows_are_detected(log):
    for n in range(1, 4):
        log.record_scan(scan(n))
    rows = list(log.scans())
    rows[0]["seq"], rows[1]["seq"] = rows[1]["seq"], rows[0]["seq"]
    assert verify_chain(sorted(rows, key=lambda r: r["seq"]))


def test_the_chain_continues_across_restarts(tmp_path):
    with ScanLog(tmp_path / "scans.db", gate="door-1") as log:
        log.record_scan(scan(1))
    with ScanLog(tmp_path / "scans.db", gate="door-1") as log:
        log.record_scan(scan(2))
        assert verify_chain(log.scans()) == []
        assert log.head[0] == 2


def test_entries_for_anti_passback_survive_a_restart_per_event(tmp_path):
    with ScanLog(tmp_path / "scans.db", gate="door-1") as log:
        log.record_scan(scan(7, event="fest"))
        log.record_scan(scan(8, event="fest"))
        log.record_scan(scan(8, event="next-fest"))
        # none of these let anybody in
        log.record_scan(scan(9, event="fest", decision="denied", reason="revoked"))
        log.record_scan(scan(10, event="fest", direction="exit"))
        log.record_scan(scan(11, event="fest", zone="stage", serial=None))
        keys = [("fest", "backstage"), ("next-fest", "backstage"), ("fest", "stage")]
        live = {k: dict(log.entries(*k)) for k in keys}
    with ScanLog(tmp_path / "scans.db", gate="door-1") as log:
        # read back from the rows, exactly what the gate held before the restart
        assert {k: dict(log.entries(*k)) for k in live} == live
        assert set(log.entries("fest", "backstage")) == {7, 8}
        assert set(log.entries("next-fest", "backstage")) == {8}
        assert log.entries("fest", "stage") == {}
        when = log.entries("fest", "backstage")[7]
        assert when.tzinfo is not None


def test_a_text_serial_cannot_exist_in_a_log(tmp_path):
    # a spreadsheet would run "=HYPERLINK(...)" in a serial column as a formula
    with ScanLog(tmp_path / "scans.db", gate="door-1") as log:
        with pytest.raises(ScanLogError):
            log.record_scan({**scan(1), "serial": "=HYPERLINK(\"http://x\")"})
        with pytest.raises(ScanLogError):
            log.record_scan({**scan(1), "decision": "maybe"})
    conn = sqlite3.connect(tmp_path / "scans.db")
    assert conn.execute("SELECT count(*) FROM scans").fetchone() == (0,)


def test_state_and_events_are_kept(tmp_path):
    with ScanLog(tmp_path / "scans.db", gate="door-1") as log:
        log.set_state("phase_override", {"phase": "during", "since": "2026-12-05T19:20:00Z"})
        log.record_event(T0, "phase", phase="during")
    with ScanLog(tmp_path / "scans.db", gate="door-1") as log:
        assert log.get_state("phase_override")["phase"] == "during"
        (event,) = log.events()
        assert event["kind"] == "phase" and verify_chain([event]) == []


def test_a_retried_row_is_not_written_twice(log):
    row = scan(1, id="fixed-id")
    log.record_scan(row)
    log.record_scan(row)
    assert [r["id"] for r in log.scans()] == ["fixed-id"]


def test_a_read_only_database_raises_a_scan_log_error_and_recovers(tmp_path):
    path = tmp_path / "scans.db"
    with ScanLog(path, gate="door-1") as log:
        log.record_scan(scan(1))
        log.db.conn.execute("PRAGMA query_only = ON")  # the disk refuses writes
        with pytest.raises(ScanLogError, match="cannot write a scan"):
            log.record_scan(scan(2))
        log.record_scan(scan(2))  # reconnected
        assert [r["serial"] for r in log.scans()] == [1, 2]
        assert verify_chain(log.scans()) == []


def test_an_unopenable_database_does_not_stop_the_gate_from_starting(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    log = ScanLog(blocker / "scans.db", gate="door-1")
    assert log.open_error and "cannot open" in log.open_error
    with pytest.raises(ScanLogError):
        log.record_scan(scan(1))
    log.close()
    log.close()


def test_the_file_is_plain_sqlite_others_can_read(log, tmp_path):
    log.record_scan(scan(1))
    other = sqlite3.connect(tmp_path / "scans.db")
    assert other.execute("SELECT holder FROM scans").fetchone() == ("Guest 1",)
    assert other.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_an_edited_middle_row_with_its_own_hash_recomputed_breaks_the_next_link(log):
    # a forger who edits row 3 and recomputes its hash still breaks row 4's prev_hash
    from scanner.record.chain import chain_hash

    for n in range(1, 6):
        log.record_scan(scan(n))
    rows = list(log.scans())
    rows[2]["holder"] = "Mallory"
    rows[2]["hash"] = chain_hash(rows[2])
    problems = verify_chain(rows)
    assert [(p.seq, p.problem) for p in problems] == [(4, "does not follow the row before it")]


@pytest.mark.parametrize("field", ["ts", "gate", "serial", "decision", "door", "seq", "prev_hash"])
def test_every_field_of_a_row_is_covered_by_its_hash(log, field):
    log.record_scan(scan(1))
    (row,) = list(log.scans())
    changed = dict(row)
    changed[field] = {"ts": "2026-12-05T19:00:59Z", "gate": "door-2", "serial": 99,
                      "decision": "denied", "door": "side", "seq": 1,
                      "prev_hash": "1" * 64}[field]
    if changed[field] == row[field]:
        changed[field] = 2
    problems = verify_chain([changed])
    assert any(p.problem == "was altered after it was written" for p in problems), field


def test_every_migration_is_a_schema_version_a_reader_knows():
    import sqlite_utils

    assert [m.name for m in migrations.pending(sqlite_utils.Database(memory=True))] == list(
        SCHEMA_VERSIONS
    )


def test_a_log_from_the_first_version_keeps_every_row_and_comes_out_as_this_version_makes_it(
    tmp_path,
):
    """A box updated mid-tour opens its old log: the rows, their chain and who
    came in stay; the indexes and the entries table every scan paid for go;
    the file is then exactly what this version makes."""
    import sqlite_utils

    from scanner.record.chain import chain_hash
    from scanner.record.schema import SCAN_COLUMNS, TABLES_SQL

    path = tmp_path / "scans.db"
    db = sqlite_utils.Database(path)
    migrations.apply(db, stop_before=list(SCHEMA_VERSIONS[1:]))  # as the first version made it
    prev = "0" * 64
    with db.conn:
        db.execute("INSERT INTO state (key, value) VALUES ('gate', '\"door-1\"')")
        for n in range(1, 6):
            row = {c: None for c in SCAN_COLUMNS} | scan(n, gate="door-1", id=f"row-{n}", seq=n)
            row["prev_hash"] = prev
            row["hash"] = prev = chain_hash(row)
            db["scans"].insert(row)
            db.execute(
                "INSERT OR REPLACE INTO entries VALUES ('example-fest-2026', 'backstage', ?, ?)",
                [n, row["ts"]],
            )
    db.close()
    assert _schema(path) == expected_schema("m001_tables")
    assert any("CREATE TABLE entries" in sql for sql in TABLES_SQL)
    with ScanLog(path, gate="door-1") as log:
        rows = list(log.scans())
        assert [r["serial"] for r in rows] == [1, 2, 3, 4, 5]
        assert verify_chain(rows) == []
        assert set(log.entries("example-fest-2026", "backstage")) == {1, 2, 3, 4, 5}
        log.record_scan(scan(6))
        assert verify_chain(log.scans()) == []
    assert _schema(path) == expected_schema()
    names = {r[1] for r in expected_schema()}
    assert not names & {"scans_ts", "scans_serial", "entries", "sqlite_autoindex_scans_2"}


def test_a_scan_commits_as_few_pages_as_a_bare_one_row_table():
    """The scans table is its row and its id, no more b-trees: every page in a
    scan's commit is written and fsynced between the frame and the signal."""
    trees = {r[2] for r in expected_schema() if r[0] in ("table", "index") and r[2] == "scans"}
    indexes = [r for r in expected_schema() if r[0] == "index" and r[2] == "scans"]
    assert trees == {"scans"} and len(indexes) == 1  # the id's uniqueness, nothing else


def _schema(path):
    conn = sqlite3.connect(path)
    try:
        return frozenset(conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master"))
    finally:
        conn.close()
