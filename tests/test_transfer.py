"""Logs leave the box and updates come in: signed exports that expose any
tampering, a merge that never loses or doubles a row, and updates that are
applied only when the gate can verify them."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from scanner.cli import cli
from scanner.core.keys import generate_private_key, key_id
from scanner.core.policy import sign_policy
from scanner.core.revocations import sign_revocation_list
from scanner.core.signed import sign_document
from scanner.core.trust import extend_chain
from scanner.errors import PolicyError
from scanner.gate.clock import FakeClock
from scanner.gate.config import Config
from scanner.gate.daemon import open_policy_store
from scanner.gate.frames import FakeCamera
from scanner.keyfiles import load_or_create_device_key
from scanner.manager.merge import find_exports, load_known_gates, merge_exports
from scanner.record.log import ScanLog
from scanner.tools.synthetic import Presentation, presentation_frames
from scanner.transfer.export import export_log, verify_export
from scanner.transfer.updates import sign_time_setting
from scanner.transfer.usb import export_to, import_from

from .conftest import EXAMPLE_POLICY, SIGNED_AT
from .test_gate_daemon import Run, config_for

NOW = datetime(2026, 12, 5, 23, 30, tzinfo=UTC)


def gate_config(gate_dir: Path, gate: str = "door-1") -> Config:
    config = config_for(gate_dir)
    return replace(
        config,
        gate=replace(config.gate, id=gate),
        paths=replace(config.paths, trust_update=gate_dir / "trust.signed"),
    )


def fill_log(db: Path, gate: str, n: int, start: int = 0) -> None:
    with ScanLog(db, gate=gate) as log:
        for i in range(start, start + n):
            log.record_scan(
                {
                    "ts": f"2026-12-05T19:{i // 60 % 60:02d}:{i % 60:02d}Z",
                    "zone": "backstage",
                    "direction": "entry",
                    "event": "example-fest-2026",
                    "serial": i,
                    "tier": "vip",
                    "holder": f"Guest {i}",
                    "decision": "granted",
                    "reason": "ok",
                    "clock": "trusted",
                    "phase": "before",
                    "message": "ok",
                }
            )


@pytest.fixture
def export(tmp_path, gate_dir):
    """A gate with 20 scans, exported once, in the clear (as --plaintext does)."""
    fill_log(gate_dir / "scans.db", "door-1", 20)
    load_or_create_device_key(gate_dir / "device.key")  # the daemon makes it at first start
    return export_to(gate_config(gate_dir), tmp_path / "stick", now=NOW, plaintext=True).folder


# -- export ------------------------------------------------------------------


def test_an_export_is_complete_signed_and_fat_safe(export):
    names = sorted(p.name for p in export.iterdir())
    assert names == ["device.pub", "manifest.json", "scans.csv", "scans.db"]
    assert ":" not in str(export.relative_to(export.parents[2]))
    assert export.parent.name == "example-fest-2026_door-1"
    check = verify_export(export)
    assert check.intact, check.problems
    assert check.rows == 20 and check.gate == "door-1"
    manifest = check.manifest
    assert manifest["rows"] == 20 and manifest["chain_head"]["seq"] == 20
    assert manifest["first_ts"] == "2026-12-05T19:00:00Z"
    csv_lines = (export / "scans.csv").read_text().splitlines()
    assert len(csv_lines) == 21 and csv_lines[0].startswith("id,seq,ts,gate")


def test_exports_never_overwrite_each_other(tmp_path, gate_dir, export):
    again = export_to(gate_config(gate_dir), tmp_path / "stick", now=NOW, plaintext=True).folder
    assert again != export and again.parent == export.parent
    assert verify_export(export).intact and verify_export(again).intact


def test_the_device_key_is_made_once_and_kept_private(tmp_path):
    path = tmp_path / "state" / "device.key"
    first = load_or_create_device_key(path)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert key_id(load_or_create_device_key(path)) == key_id(first)


def test_a_full_stick_is_refused_before_writing(tmp_path, gate_dir, monkeypatch):
    fill_log(gate_dir / "scans.db", "door-1", 5)
    load_or_create_device_key(gate_dir / "device.key")
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(1, 1, 10))
    from scanner.errors import TransferError

    with pytest.raises(TransferError, match="not enough room"):
        export_to(gate_config(gate_dir), tmp_path / "stick", now=NOW, plaintext=True)
    assert not (tmp_path / "stick" / "scanner-logs").exists() or not any(
        (tmp_path / "stick" / "scanner-logs").rglob("manifest.json")
    )


def test_export_while_the_daemon_writes_loses_and_doubles_nothing(tmp_path, gate_dir, make_pass):
    texts = [make_pass("aaa", i) for i in range(1, 41)]
    gate = gate_config(gate_dir)
    exported: list[Path] = []

    def frames():
        for i, text in enumerate(texts):
            yield from presentation_frames([Presentation(text, frames=2)], gap_frames=1)
            if i in (12, 27):  # a manager plugs a stick in, twice, mid-show
                exported.append(export_to(gate, tmp_path / "stick", plaintext=True).folder)

    run = Run(gate, frames=lambda: FakeCamera(frames())).start()
    assert run.wait() == 0
    exported.append(export_to(gate, tmp_path / "stick", plaintext=True).folder)
    counts = []
    for folder in exported:
        check = verify_export(folder)
        assert check.intact, check.problems
        conn = sqlite3.connect(folder / "scans.db")
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        counts.append(conn.execute("SELECT count(*) FROM scans").fetchone()[0])
        assert counts[-1] == check.manifest["rows"]
    assert counts[0] < counts[1] < counts[2] == 40
    report = merge_exports(exported, tmp_path / "all.db")
    assert report.ok and report.new_rows == 40
    merged = sqlite3.connect(tmp_path / "all.db")
    assert merged.execute("SELECT count(*), count(DISTINCT id) FROM scans").fetchone() == (40, 40)
    assert sorted(r[0] for r in merged.execute("SELECT serial FROM scans")) == list(range(1, 41))


# -- tampering ---------------------------------------------------------------


def _tamper_db(folder: Path, sql: str) -> None:
    conn = sqlite3.connect(folder / "scans.db")
    conn.executescript(sql)
    conn.commit()
    conn.close()


def _resign(folder: Path, device_key) -> None:
    """What a forger holding the device key would do: fix hashes, sign again."""
    import hashlib

    body = (
        verify_export(folder).manifest
        or json.loads(json.loads((folder / "manifest.json").read_text())["signed"])["body"]
    )
    body = dict(body)
    from scanner.core.keys import public_key_text

    body["device_key"] = public_key_text(device_key.public_key())
    body["files"] = {
        n: {
            "sha256": hashlib.sha256((folder / n).read_bytes()).hexdigest(),
            "bytes": (folder / n).stat().st_size,
        }
        for n in ("scans.db", "scans.csv", "device.pub")
    }
    (folder / "manifest.json").write_bytes(sign_document(device_key, "export-manifest", body, NOW))


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("DELETE FROM scans WHERE seq = 7", "row 8"),
        ("UPDATE scans SET decision = 'denied' WHERE seq = 5", "row 5: was altered"),
        (
            "UPDATE scans SET seq = 1000 + seq WHERE seq IN (3, 4); "
            "UPDATE scans SET seq = 1007 - seq WHERE seq > 1000",
            "row 3",
        ),
        ("DELETE FROM scans WHERE seq = 20", "rows cut off"),
    ],
    ids=["deleted", "edited", "reordered", "cut-off-the-end"],
)
def test_a_tampered_row_is_found_by_verify_and_merge(tmp_path, gate_dir, export, sql, expected):
    # with the file hashes in the manifest fixed and signed again by the device key,
    # only the chain can tell; it names the gate and the row
    before = verify_export(export).manifest
    _tamper_db(export, sql)
    _resign(export, load_or_create_device_key(gate_dir / "device.key"))
    check = verify_export(export)
    assert not check.intact
    assert any(expected in p and "door-1" in p for p in check.problems), check.problems
    result = CliRunner().invoke(cli, ["logs", "verify", str(export)])
    assert result.exit_code == 1 and "BROKEN" in result.output
    report = merge_exports([export], tmp_path / "all.db")
    assert report.not_merged and not report.merged
    assert not (tmp_path / "all.db").exists()  # a merge that merged nothing leaves no file
    assert before["rows"] == 20


def test_an_edited_database_without_a_new_signature_is_found(export):
    _tamper_db(export, "UPDATE scans SET holder = 'Mallory' WHERE seq = 2")
    assert "scans.db: changed since the gate signed the manifest" in verify_export(export).problems


def test_an_edited_manifest_is_found(export):
    envelope = json.loads((export / "manifest.json").read_text())
    envelope["signed"] = envelope["signed"].replace('"rows":20', '"rows":19')
    (export / "manifest.json").write_text(json.dumps(envelope))
    problems = verify_export(export).problems
    assert problems and "altered or forged" in problems[0]


def test_an_export_signed_by_another_box_is_not_from_a_known_gate(tmp_path, gate_dir, export):
    known = tmp_path / "known"
    known.mkdir()
    (known / "door-1.pub").write_text((export / "device.pub").read_text())
    assert verify_export(export, load_known_gates(known)).known_gate is True
    impostor = generate_private_key()
    _resign(export, impostor)
    check = verify_export(export, load_known_gates(known))
    assert not check.intact and "gate door-1 has key" in check.problems[0]


# -- merge -------------------------------------------------------------------


def test_merging_twice_or_overlapping_exports_changes_nothing(tmp_path, gate_dir):
    gate = gate_config(gate_dir)
    fill_log(gate_dir / "scans.db", "door-1", 10)
    load_or_create_device_key(gate_dir / "device.key")
    first = export_to(gate, tmp_path / "stick", now=NOW, plaintext=True).folder
    fill_log(gate_dir / "scans.db", "door-1", 5, start=10)
    second = export_to(
        gate, tmp_path / "stick", now=NOW + timedelta(minutes=1), plaintext=True
    ).folder
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    fill_log(other_dir / "scans.db", "door-2", 7)
    third = export_log(
        other_dir / "scans.db",
        tmp_path / "stick",
        gate="door-2",
        event="example-fest-2026",
        device_key=load_or_create_device_key(other_dir / "device.key"),
        now=NOW,
        plaintext=True,
    ).folder
    out = tmp_path / "all.db"
    assert merge_exports(find_exports([tmp_path / "stick"]), out).new_rows == 22
    snapshot = sqlite3.connect(out).execute("SELECT id, hash FROM scans ORDER BY id").fetchall()
    again = merge_exports([first, second, third, first], out)
    assert again.ok and again.new_rows == 0
    assert (
        sqlite3.connect(out).execute("SELECT id, hash FROM scans ORDER BY id").fetchall()
        == snapshot
    )
    gates = dict(sqlite3.connect(out).execute("SELECT gate, rows FROM gates").fetchall())
    assert gates == {"door-1": 15, "door-2": 7}


def test_the_merged_file_is_plain_sqlite_with_the_indexes_a_manager_needs(tmp_path, export):
    merge_exports([export], tmp_path / "all.db")
    import sqlite_utils

    db = sqlite_utils.Database(tmp_path / "all.db")
    indexed = {tuple(i.columns) for i in db["scans"].indexes}
    assert {("ts",), ("serial",), ("gate",)} <= indexed
    assert db["scans"].columns_dict["serial"] is int
    assert set(db.table_names()) >= {"scans", "events", "gates", "exports"}


def test_logs_merge_cli_reports_broken_exports_and_exits_1(tmp_path, export):
    _tamper_db(export, "DELETE FROM scans WHERE seq = 3")
    result = CliRunner().invoke(
        cli, ["logs", "merge", str(tmp_path / "stick"), "-o", str(tmp_path / "all.db")]
    )
    assert result.exit_code == 1
    assert "NOT MERGED" in result.output and "door-1" in result.output


# -- import ------------------------------------------------------------------


@pytest.fixture
def stick(tmp_path):
    folder = tmp_path / "stick" / "scanner-update"
    folder.mkdir(parents=True)
    return folder


def policy_bytes(key, *, signed_at=SIGNED_AT + timedelta(days=1), text=None):
    return sign_policy(
        text
        or EXAMPLE_POLICY.read_text().replace(
            "photo_window_minutes = 15", "photo_window_minutes = 20"
        ),
        key,
        signed_at,
    )


def installed(gate_dir: Path) -> bytes:
    return (gate_dir / "event.policy").read_bytes()


def test_a_good_policy_update_is_applied_and_survives_a_restart(gate_dir, stick, organizer_key):
    stick.joinpath("event.policy").write_bytes(policy_bytes(organizer_key))
    (result,) = import_from(gate_config(gate_dir), stick.parent)
    assert result.applied, result.message
    assert (gate_dir / "event.policy.previous").exists()
    store = open_policy_store(gate_config(gate_dir))  # a restart reads it afresh
    assert store.policy.schedule.photo_window == timedelta(minutes=20)
    with ScanLog(gate_dir / "scans.db", gate="door-1") as log:
        (event,) = [e for e in log.events() if e["kind"] == "update"]
    assert json.loads(event["detail"])["applied"] is True


def _bad_updates(organizer_key, other_key):
    other_event = EXAMPLE_POLICY.read_text().replace(
        'id = "example-fest-2026"', 'id = "another-show"'
    )
    tampered = json.loads(policy_bytes(organizer_key))
    tampered["signed"] = tampered["signed"].replace(
        '"photo_window_minutes":20', '"photo_window_minutes":240'
    )
    unsigned = json.loads(policy_bytes(organizer_key))
    del unsigned["signature"]
    return {
        "unsigned": (json.dumps(unsigned).encode(), "unsigned"),
        "tampered": (json.dumps(tampered).encode(), "altered or forged"),
        "unknown key": (policy_bytes(other_key), "not trusted"),
        "another event": (policy_bytes(organizer_key, text=other_event), "another-show"),
        "older": (
            policy_bytes(organizer_key, signed_at=SIGNED_AT - timedelta(days=1)),
            "older than the one installed",
        ),
        "oversized": (b" " * (1024 * 1024 + 1), "at most"),
        "not a policy": (b"#!/bin/sh\nrm -rf /\n", "not a signed document"),
    }


@pytest.mark.parametrize(
    "case",
    ["unsigned", "tampered", "unknown key", "another event", "older", "oversized", "not a policy"],
)
def test_a_bad_policy_update_is_refused_and_the_policy_stays(
    gate_dir, stick, organizer_key, other_key, case
):
    data, reason = _bad_updates(organizer_key, other_key)[case]
    before = installed(gate_dir)
    stick.joinpath("event.policy").write_bytes(data)
    (result,) = import_from(gate_config(gate_dir), stick.parent)
    assert result.refused and not result.applied
    assert reason in result.message
    assert installed(gate_dir) == before
    with ScanLog(gate_dir / "scans.db", gate="door-1") as log:
        (event,) = [e for e in log.events() if e["kind"] == "update"]
    assert json.loads(event["detail"])["refused"] is True


def test_links_and_odd_files_on_the_stick_are_refused(gate_dir, stick, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("do not read")
    (stick / "event.policy").symlink_to("../../secret")
    os.mkfifo(stick / "revocations.signed")
    results = {r.name: r for r in import_from(gate_config(gate_dir), stick.parent)}
    assert results["event.policy"].refused and "link" in results["event.policy"].message
    assert results["revocations.signed"].refused
    assert "not a regular file" in results["revocations.signed"].message


def test_an_update_folder_that_is_a_link_is_not_followed(gate_dir, tmp_path, organizer_key):
    real = tmp_path / "elsewhere"
    real.mkdir()
    (real / "event.policy").write_bytes(policy_bytes(organizer_key))
    stick = tmp_path / "stick2"
    stick.mkdir()
    (stick / "scanner-update").symlink_to(real)
    results = import_from(gate_config(gate_dir), stick)
    assert all(not r.applied for r in results)


def test_other_files_on_the_stick_are_never_read(gate_dir, stick, monkeypatch):
    (stick / "autorun.sh").write_text("#!/bin/sh\n")
    opened: list[str] = []
    real_open = os.open

    def spy(path, *args, **kwargs):
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", spy)
    import_from(gate_config(gate_dir), stick.parent)
    assert not any("autorun" in p for p in opened)


def test_a_revocation_list_is_applied_and_denies_the_pass(gate_dir, stick, organizer_key):
    stick.joinpath("revocations.signed").write_bytes(
        sign_revocation_list(organizer_key, "example-fest-2026", [42, 43], NOW)
    )
    (result,) = import_from(gate_config(gate_dir), stick.parent)
    assert result.applied
    assert open_policy_store(gate_config(gate_dir)).policy.revoked >= {42, 43}


def test_a_revocation_list_for_another_event_is_refused(gate_dir, stick, organizer_key):
    stick.joinpath("revocations.signed").write_bytes(
        sign_revocation_list(organizer_key, "another-show", [42], NOW)
    )
    (result,) = import_from(gate_config(gate_dir), stick.parent)
    assert result.refused and "another-show" in result.message


def test_a_key_update_rotates_the_organizer_key(gate_dir, stick, organizer_key, tmp_path):
    new_key = generate_private_key()
    chain, _ = extend_chain(None, organizer_key, [new_key.public_key()], NOW)
    stick.joinpath("trust.signed").write_bytes(chain)
    stick.joinpath("event.policy").write_bytes(policy_bytes(new_key))
    results = import_from(gate_config(gate_dir), stick.parent)
    assert [r.applied for r in results] == [True, True], [r.message for r in results]
    store = open_policy_store(gate_config(gate_dir))
    assert list(store.trusted) == [key_id(new_key)]
    assert store.policy.signer == key_id(new_key)


@pytest.fixture
def gate_clock(monkeypatch):
    """The gate's wall clock during an import, fixed at the show's night."""
    clock = FakeClock(NOW)
    monkeypatch.setattr("scanner.transfer.usb.SystemClock", lambda: clock)
    return clock


def time_setting(key, signed_at, sequence=1, **fields):
    return sign_time_setting(
        key, event="example-fest-2026", signed_at=signed_at, sequence=sequence, **fields
    )


def test_a_time_setting_moves_the_floor_forward_only(gate_dir, stick, organizer_key, gate_clock):
    fill_log(gate_dir / "scans.db", "door-1", 1)  # the gate has seen 2026-12-05T19:00:00Z
    gate_clock.set(datetime(2026, 12, 5, 17, 0, tzinfo=UTC))  # booted behind: untrusted
    stick.joinpath("time.signed").write_bytes(
        time_setting(organizer_key, datetime(2026, 12, 5, 18, 0, tzinfo=UTC))
    )
    (back,) = import_from(gate_config(gate_dir), stick.parent)
    assert back.refused and "already seen" in back.message and "--lower-floor" in back.message
    stick.joinpath("time.signed").write_bytes(
        time_setting(organizer_key, datetime(2026, 12, 5, 21, 0, tzinfo=UTC), sequence=2)
    )
    (forward,) = import_from(gate_config(gate_dir), stick.parent)
    assert forward.applied, forward.message
    with ScanLog(gate_dir / "scans.db", gate="door-1") as log:
        assert log.get_state("clock_floor") == "2026-12-05T21:00:00Z"


def test_rollback_puts_the_previous_policy_back(gate_dir, stick, organizer_key):
    before = installed(gate_dir)
    stick.joinpath("event.policy").write_bytes(policy_bytes(organizer_key))
    import_from(gate_config(gate_dir), stick.parent)
    assert installed(gate_dir) != before
    from scanner.transfer.updates import rollback

    rollback(gate_dir / "event.policy")
    assert installed(gate_dir) == before


def test_rollback_after_the_first_update_brings_back_the_policy_the_image_shipped(
    gate_dir, stick, organizer_key
):
    """On a flashed box the policy in force is the image's (/etc); the first
    update installs one beside it with nothing to keep as .previous. Rolling
    that update back puts the image's policy back in force."""
    shipped = gate_dir / "shipped.policy"
    (gate_dir / "event.policy").rename(shipped)
    config = gate_config(gate_dir)
    config = replace(config, paths=replace(config.paths, initial_policy=shipped))
    assert open_policy_store(config).policy.schedule.photo_window == timedelta(minutes=15)
    stick.joinpath("event.policy").write_bytes(policy_bytes(organizer_key))
    (result,) = import_from(config, stick.parent)
    assert result.applied, result.message
    assert not (gate_dir / "event.policy.previous").exists()
    assert open_policy_store(config).policy.schedule.photo_window == timedelta(minutes=20)
    from scanner.transfer.updates import rollback

    assert rollback(gate_dir / "event.policy", shipped=shipped) == shipped
    assert open_policy_store(config).policy.schedule.photo_window == timedelta(minutes=15)
    assert shipped.exists()  # the image's file is never touched
    with pytest.raises(PolicyError, match="no previous version"):
        rollback(gate_dir / "event.policy", shipped=shipped)  # one step, not two


def test_export_and_import_commands_work_without_a_config_file(
    gate_dir, stick, organizer_key, tmp_path, monkeypatch
):
    monkeypatch.setattr("scanner.gate.config.DEFAULT_CONFIG", tmp_path / "absent.toml")
    fill_log(gate_dir / "scans.db", "door-7", 3)
    flags = [
        "--gate",
        "door-7",
        "--db",
        str(gate_dir / "scans.db"),
        "--policy",
        str(gate_dir / "event.policy"),
        "--trust",
        str(gate_dir / "trust"),
    ]
    runner = CliRunner()
    result = runner.invoke(cli, ["export", *flags, "--to", str(tmp_path / "out")])
    assert result.exit_code == 1 and "--plaintext" in result.output  # no manager key named
    assert not (tmp_path / "out").exists()
    stick.joinpath("event.policy").write_bytes(b"junk")
    result = runner.invoke(cli, ["import", *flags, str(stick.parent)])
    assert result.exit_code == 1 and "refused" in result.output


def test_the_running_gate_shows_the_usb_result(gate_dir, make_pass):
    import numpy as np

    from scanner.tools.synthetic import background
    from scanner.transfer.usb import signal_daemon

    gate = gate_config(gate_dir)
    go = threading.Event()

    def frames():
        while not go.is_set():
            time.sleep(0.02)
            yield background(1).astype(np.uint8)

    run = Run(gate, frames=lambda: FakeCamera(frames())).start()
    deadline = time.monotonic() + 10
    while not (gate_dir / "control.sock").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert signal_daemon(gate, "usb_done")
    go.set()
    run.wait()
    with ScanLog(gate_dir / "scans.db", gate="door-1") as log:
        assert any(e["kind"] == "usb" for e in log.events())
    assert run.factory.pin(17).states[-1].state is False  # done pattern played green, then off
    assert any(s.state for s in run.factory.pin(17).states)


def test_from_stick_to_report_with_the_commands_a_manager_types(tmp_path, export):
    runner = CliRunner()
    out = tmp_path / "all.db"
    result = runner.invoke(cli, ["logs", "merge", str(tmp_path / "stick"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        cli,
        [
            "logs",
            "report",
            str(out),
            "-o",
            str(tmp_path / "r.html"),
            "--csv",
            str(tmp_path / "s.csv"),
        ],
    )
    assert result.exit_code == 0, result.output
    page = (tmp_path / "r.html").read_text()
    assert "door-1" in page and "<svg" in page
    assert len((tmp_path / "s.csv").read_text().splitlines()) == 21
    import subprocess
    import sys

    shown = subprocess.run(
        [sys.executable, "-m", "sqlite_utils", "rows", str(out), "scans", "--limit", "1"],
        capture_output=True,
        text=True,
    )
    assert shown.returncode == 0 and "door-1" in shown.stdout  # plain SQLite for other tools
