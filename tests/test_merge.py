"""The manager's merge, and properties that hold for ANY tampering with an
export: whatever an attacker does to the files on a stick (change a byte,
rename, add a file, splice two genuine exports), ``scanner logs verify``
reports it or ``scanner logs merge`` writes nothing new. Hypothesis draws
the tampering; every example runs the real command on real folders."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scanner.errors import ScanLogError
from scanner.manager.merge import create_merged, merge_exports
from scanner.transfer import export as export_module

from .exporting import count, dump, export, fill, make_gate, make_manager, run

EXPORT_FILES = (
    "manifest.json", "scans.db", "scans.csv", "scans.db.age", "scans.csv.age", "summary.json.age"
)  # fmt: skip
PROPERTY = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,  # the same run on every machine: no examples kept between runs
)


@dataclass(frozen=True)
class Show:
    """Two gates' genuine exports (in the clear and encrypted) and their merge."""

    exports: dict[str, Path]
    identity: Path
    baseline: Path


@pytest.fixture(scope="module")
def show(tmp_path_factory, organizer_key) -> Show:
    root = tmp_path_factory.mktemp("show")
    manager = make_manager(root / "manager")
    keys = [manager.recipient]
    door1 = make_gate(root / "gates", "door-1", organizer_key, recipients=keys, rows=6)
    door2 = make_gate(root / "gates", "door-2", organizer_key, recipients=keys, rows=4)
    stick = root / "stick"
    exports = {
        "door-1 plain": export(door1, stick, "--plaintext"),
        "door-1 sealed": export(door1, stick),
        "door-2 plain": export(door2, stick, "--plaintext"),
        "door-2 sealed": export(door2, stick),
    }
    baseline = root / "baseline.db"
    result = run("logs", "merge", stick, "-o", baseline, "--identity", manager.identity)
    assert result.exit_code == 0, result.output
    return Show(exports, manager.identity, baseline)


def attack_leaves_no_trace(show: Show, tamper) -> None:
    """Copy a stick, let ``tamper`` change it, then: whatever verify says,
    a merge into the genuine merge changes nothing; and what verify reports,
    merge refuses too (a fresh merge gets no rows from it)."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        folder = tamper(work)
        verdict = run("logs", "verify", folder, "--identity", show.identity)
        assert "Traceback" not in verdict.output
        merged = work / "merged.db"
        shutil.copy(show.baseline, merged)
        result = run("logs", "merge", folder, "-o", merged, "--identity", show.identity)
        assert dump(merged) == dump(show.baseline), (verdict.output, result.output)
        if verdict.exit_code != 0:
            fresh = work / "fresh.db"
            result = run("logs", "merge", folder, "-o", fresh, "--identity", show.identity)
            assert result.exit_code != 0
            assert count(fresh) == 0 and count(fresh, "events") == 0


def copy_export(show: Show, which: str, work: Path, name: str | None = None) -> Path:
    source = show.exports[which]
    folder = work / "stick" / "scanner-logs" / source.parent.name / (name or source.name)
    shutil.copytree(source, folder)
    return folder


exports = st.sampled_from(["door-1 plain", "door-1 sealed", "door-2 plain", "door-2 sealed"])
names = st.text(
    st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=30,
).filter(lambda n: n not in (".", "..") and len(n.encode()) < 200)


@PROPERTY
@given(which=exports, data=st.data())
def test_any_changed_byte_in_any_file_is_reported_or_changes_nothing(show, which, data):
    files = sorted(p.name for p in show.exports[which].iterdir())
    name = data.draw(st.sampled_from(files))
    size = (show.exports[which] / name).stat().st_size
    position = data.draw(st.integers(0, size - 1))
    value = data.draw(st.integers(0, 255))

    def tamper(work: Path) -> Path:
        folder = copy_export(show, which, work)
        raw = bytearray((folder / name).read_bytes())
        if raw[position] == value:
            raw[position] ^= 0x01
        else:
            raw[position] = value
        (folder / name).write_bytes(bytes(raw))
        return folder

    attack_leaves_no_trace(show, tamper)


@PROPERTY
@given(which=exports, folder_name=names, data=st.data())
def test_any_rename_of_the_folder_or_its_files_is_reported_or_changes_nothing(
    show, which, folder_name, data
):
    files = sorted(p.name for p in show.exports[which].iterdir())
    renames = data.draw(
        st.dictionaries(st.sampled_from(files), st.one_of(st.sampled_from(EXPORT_FILES), names),
                        max_size=3)
    )

    def tamper(work: Path) -> Path:
        folder = copy_export(show, which, work, folder_name)
        moved = {old: (folder / old).read_bytes() for old in renames}
        for old in renames:
            (folder / old).unlink()
        for old, new in renames.items():
            (folder / new).write_bytes(moved[old])
        return folder

    attack_leaves_no_trace(show, tamper)


@PROPERTY
@given(
    which=exports,
    extra=st.lists(st.tuples(names, st.binary(max_size=300)), min_size=1, max_size=3),
)
def test_any_extra_file_is_ignored_and_changes_nothing(show, which, extra):
    def tamper(work: Path) -> Path:
        folder = copy_export(show, which, work)
        for name, content in extra:
            if name not in EXPORT_FILES and name != "device.pub":
                (folder / name).write_bytes(content)
        return folder

    attack_leaves_no_trace(show, tamper)


@PROPERTY
@given(
    manifest_of=exports,
    files_of=exports,
    taken=st.sets(st.sampled_from(["scans.db", "scans.csv", "scans.db.age", "scans.csv.age",
                                   "summary.json.age", "device.pub"])),
)
def test_any_splice_of_two_genuine_exports_is_reported_or_changes_nothing(
    show, manifest_of, files_of, taken
):
    def tamper(work: Path) -> Path:
        folder = copy_export(show, manifest_of, work)
        for name in taken:
            source = show.exports[files_of] / name
            if source.exists():
                shutil.copy(source, folder / name)
        return folder

    attack_leaves_no_trace(show, tamper)


def test_a_splice_of_another_gates_database_is_reported(show):
    # the example the property must catch, stated once by hand
    def tamper(work: Path) -> Path:
        folder = copy_export(show, "door-1 plain", work)
        shutil.copy(show.exports["door-2 plain"] / "scans.db", folder / "scans.db")
        return folder

    with tempfile.TemporaryDirectory() as tmp:
        folder = tamper(Path(tmp))
        result = run("logs", "verify", folder)
        assert result.exit_code == 1
        assert "scans.db: changed since the gate signed the manifest" in result.output


# -- the merge itself ----------------------------------------------------------


def test_merging_the_same_exports_again_changes_nothing(show, tmp_path):
    out = tmp_path / "again.db"
    shutil.copy(show.baseline, out)
    stick = next(iter(show.exports.values())).parents[2]
    result = run("logs", "merge", stick, "-o", out, "--identity", show.identity)
    assert result.exit_code == 0, result.output
    assert "(0 new scans, 0 new gate events)" in result.output
    assert dump(out) == dump(show.baseline)


def test_an_export_swapped_on_the_stick_after_its_check_merges_what_was_checked(
    show, tmp_path, monkeypatch
):
    # the race a reader of paths leaves open: checked, then replaced on the stick
    # before the rows go in. The merge never reads the stick again: it inserts
    # from its own copy of the very bytes it checked, so the swap changes nothing.
    folder = shutil.copytree(show.exports["door-1 plain"], tmp_path / "export")
    real = export_module.verify_export

    def check_then_swap(path, *args, **kwargs):
        check = real(path, *args, **kwargs)
        shutil.copy(show.exports["door-2 plain"] / "scans.db", path / "scans.db")
        return check

    monkeypatch.setattr("scanner.manager.merge.verify_export", check_then_swap)
    report = merge_exports([folder], tmp_path / "all.db", workers=1)
    assert [c.gate for c in report.merged] == ["door-1"]
    conn = sqlite3.connect(tmp_path / "all.db")
    gates = conn.execute("SELECT DISTINCT gate FROM scans").fetchall()
    conn.close()
    assert gates == [("door-1",)] and count(tmp_path / "all.db") == 6


def test_the_merged_tables_are_strict(show):
    conn = sqlite3.connect(show.baseline)
    sql = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'"))
    for table in ("scans", "events", "gates", "exports", "conflicts"):
        assert sql[table].endswith("STRICT"), table
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("UPDATE scans SET serial = '=cmd' WHERE rowid = 1")
    indexed = {r[0] for r in conn.execute("SELECT sql FROM sqlite_master WHERE type = 'index'")}
    for column in ("ts", "serial", "gate"):
        assert f"CREATE INDEX scans_{column} ON scans ({column})" in indexed
    conn.close()


def test_the_merge_records_each_gate_and_export(show):
    conn = sqlite3.connect(show.baseline)
    gates = conn.execute("SELECT gate, rows, known FROM gates ORDER BY gate").fetchall()
    assert gates == [("door-1", 6, None), ("door-2", 4, None)]  # no --known-gates given
    exports = conn.execute("SELECT gate, encrypted FROM exports ORDER BY gate, encrypted")
    assert exports.fetchall() == [("door-1", 0), ("door-1", 1), ("door-2", 0), ("door-2", 1)]
    conn.close()


def test_a_merged_file_of_an_older_version_is_refused(show, tmp_path):
    old = tmp_path / "old.db"
    conn = sqlite3.connect(old)
    conn.execute("CREATE TABLE scans (id TEXT PRIMARY KEY, holder TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(ScanLogError, match="merge into a new file"):
        create_merged(old)
    stick = next(iter(show.exports.values())).parents[2]
    result = run("logs", "merge", stick, "-o", old, "--identity", show.identity)
    assert result.exit_code == 2 and "merge into a new file" in result.output


def test_a_report_reads_the_merged_file(show, tmp_path):
    result = run("logs", "report", show.baseline, "--csv", tmp_path / "all.csv")
    assert result.exit_code == 0, result.output
    assert len((tmp_path / "all.csv").read_text().splitlines()) == 1 + 6 + 4


def test_a_gate_seen_before_keeps_its_rows_when_a_later_export_adds_more(
    tmp_path, organizer_key
):
    manager = make_manager(tmp_path / "manager")
    gate = make_gate(tmp_path / "gates", "door-1", organizer_key, recipients=[manager.recipient],
                     rows=3)
    stick = tmp_path / "stick"
    export(gate, stick)
    fill(gate.db, "door-1", 2, 3)
    export(gate, stick)
    out = tmp_path / "all.db"
    result = run("logs", "merge", stick, "-o", out, "--identity", manager.identity)
    assert result.exit_code == 0, result.output
    assert "merged 2 exports (5 new scans" in result.output
    assert sqlite3.connect(out).execute("SELECT rows FROM gates").fetchone() == (5,)
