"""The manager's report and CSV, read from real merged SQLite files.

A small hand-made show (one event, five gates) checks the figures a manager
reads; a generated log checks the page in headless Chromium. The generator
also builds the 1M-row scale log:

    .venv/bin/python -m tests.test_report bench [GATES] [SCANS_PER_GATE]
"""

from __future__ import annotations

import csv
import html
import json
import random
import re
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from scanner.errors import ConfigError, ScanLogError
from scanner.gate.scanlog import SCAN_COLUMNS
from scanner.manager.report import (
    DENIAL_CLASSES,
    HEAT_COLOURS,
    ZONE_COLOURS,
    build_report,
    write_csv,
    write_report,
)

from .test_access_table import ZONES

EVENT = "tour-2026-12-05"
NOW = datetime(2026, 12, 5, 23, 0, tzinfo=UTC)
CHROMIUM = Path("/usr/bin/chromium")

# -- building merged logs ------------------------------------------------------


def create_merged_db(path: Path, *, with_gates: bool = False) -> sqlite3.Connection:
    """An empty database with the merged schema (as ``scanner logs merge`` makes it)."""
    types = {str: "TEXT", int: "INTEGER"}
    cols = ", ".join(
        f"{name} {types[kind]}" + (" PRIMARY KEY" if name == "id" else "")
        for name, kind in SCAN_COLUMNS.items()
    )
    conn = sqlite3.connect(path)
    conn.execute(f"CREATE TABLE scans ({cols})")
    if with_gates:
        conn.execute(
            "CREATE TABLE gates (gate TEXT PRIMARY KEY, device_key_id TEXT, "
            "rows INTEGER, last_export_at TEXT)"
        )
        conn.execute(
            "CREATE TABLE exports (gate TEXT, event TEXT, exported_at TEXT, "
            "rows INTEGER, first_ts TEXT, last_ts TEXT, head_hash TEXT, "
            "folder TEXT, merged_at TEXT)"
        )
    return conn


def index_merged_db(conn: sqlite3.Connection) -> None:
    for col in ("ts", "serial", "gate"):
        conn.execute(f"CREATE INDEX IF NOT EXISTS scans_{col} ON scans ({col})")
    conn.commit()


def insert_scans(conn: sqlite3.Connection, rows: Iterable[Sequence[Any]]) -> None:
    marks = ", ".join("?" for _ in SCAN_COLUMNS)
    conn.executemany(f"INSERT INTO scans ({', '.join(SCAN_COLUMNS)}) VALUES ({marks})", rows)


GATES = {  # gate: (zone, direction)
    "stage-door-in": ("backstage", "entry"),
    "stage-door-out": ("backstage", "exit"),
    "green-in": ("green-room", "entry"),
    "green-out": ("green-room", "exit"),
    "dock-in": ("loading-dock", "entry"),
}


def scan(
    at: str,
    gate: str,
    serial: int | None,
    holder: str | None,
    tier: str | None,
    reason: str = "ok",
    *,
    event: str | None = EVENT,
    clock: str = "trusted",
    direction: str | None = None,
) -> dict[str, Any]:
    zone, gate_direction = GATES[gate]
    decision = "granted" if reason == "ok" else "denied"
    return {
        "id": str(uuid.uuid4()),
        "ts": f"2026-12-05T{at}Z",
        "gate": gate,
        "zone": zone,
        "direction": direction or gate_direction,
        "door": None,
        "event": event,
        "serial": serial,
        "tier": tier,
        "holder": holder,
        "decision": decision,
        "reason": reason,
        "key_id": "k1" if serial is not None else None,
        "clock": clock,
        "phase": "during",
        "message": f"{decision.capitalize()}: {holder or 'no pass'}.",
        "code_sha256": "c" * 64,
        "prev_hash": "0" * 64,
        "hash": "f" * 64,
    }


BOB = "Bob <script>alert('x')</script></script><!--"

SHOW = [
    # Alice goes in and out: not inside.
    scan("19:00:00", "stage-door-in", 1, "Alice Able", "aaa"),
    scan("19:30:00", "stage-door-out", 1, "Alice Able", "aaa"),
    # Bob (a hostile name) goes in: inside backstage.
    scan("19:05:00", "stage-door-in", 2, BOB, "vip"),
    # Carol's pass at two doors 30 s apart: a suspected copy.
    scan("19:10:00", "stage-door-in", 3, "Carol Copy", "working"),
    scan("19:10:30", "green-in", 3, "Carol Copy", "working"),
    # Serial 3 of another event between them: a different pass, not a copy.
    scan("19:10:10", "dock-in", 3, "Stranger", "aaa", "wrong_event", event=None),
    # Dan walks between the same doors in 10 minutes: not a copy.
    scan("20:00:00", "stage-door-in", 4, "Dan Distant", "aaa"),
    scan("20:10:00", "green-in", 4, "Dan Distant", "aaa"),
    # Refusals.
    scan("20:15:00", "dock-in", 5, "Eve Revoked", "local-crew", "revoked"),
    scan("20:20:00", "green-in", None, None, None, "bad_signature", event=None),
    scan("20:21:00", "dock-in", None, None, None, "unknown_key", event=None),
    scan("20:22:00", "stage-door-in", None, None, None, "malformed", event=None),
    scan("20:30:00", "green-in", 6, "Frank Photo", "photo", "zone_not_allowed"),
    scan("20:40:00", "stage-door-in", 7, "Gus Gone", "after-show", "expired"),
    scan("20:41:00", "stage-door-in", 7, "Gus Gone", "after-show", "expired"),
]


def write_show(path: Path, rows: Sequence[dict[str, Any]] = SHOW, **kw: Any) -> Path:
    conn = create_merged_db(path, **kw)
    seqs: dict[str, int] = {}
    ordered = []
    for row in sorted(rows, key=lambda r: (r["gate"], r["ts"])):
        seqs[row["gate"]] = seqs.get(row["gate"], 0) + 1
        ordered.append([{**row, "seq": seqs[row["gate"]]}[c] for c in SCAN_COLUMNS])
    insert_scans(conn, ordered)
    index_merged_db(conn)
    conn.close()
    return path


@pytest.fixture
def show_db(tmp_path: Path) -> Path:
    return write_show(tmp_path / "all.db")


@pytest.fixture
def page(show_db: Path) -> str:
    return build_report(show_db, now=NOW)


def section(page: str, name: str) -> str:
    return page.split(f'<section id="{name}">', 1)[1].split("</section>", 1)[0]


def tile(page: str, label: str) -> int:
    found = re.search(rf'<span class="v">([\d,]+)</span><span class="l">{label}</span>', page)
    assert found, f"no {label!r} figure in the header"
    return int(found.group(1).replace(",", ""))


def table_data(page: str) -> dict[str, Any]:
    block = page.split('<script type="application/json" id="scan-data">', 1)[1]
    return json.loads(block.split("</script>", 1)[0])


# -- the figures -----------------------------------------------------------------


def test_the_header_gives_the_event_and_totals(page: str) -> None:
    assert EVENT in page.split("</header>")[0]
    assert tile(page, "scans") == 15
    assert tile(page, "granted") == 7
    assert tile(page, "denied") == 8
    assert tile(page, "gates") == 4  # green-out saw nobody
    assert "2026-12-05 19:00:00" in page and "2026-12-05 20:41:00" in page
    assert "times in <b>UTC</b>" in page


def test_denials_are_counted_by_reason_in_plain_words(page: str) -> None:
    denials = section(page, "denials")
    for label, code, count in [
        ("pass expired", "expired", 2),
        ("forged or altered", "bad_signature", 1),
        ("revoked (lost or cancelled pass)", "revoked", 1),
        ("signed by an unknown key (forged)", "unknown_key", 1),
        ("not a pass (unreadable or malformed code)", "malformed", 1),
        ("not allowed in this zone", "zone_not_allowed", 1),
        ("pass for another event", "wrong_event", 1),
    ]:
        assert (
            f'<td>{html.escape(label)}</td><td><code>{code}</code></td><td class="num">{count}</td>'
        ) in denials, label
    assert "<svg" in denials
    assert "granted" not in denials.split("<table")[1]


def test_two_gates_thirty_seconds_apart_are_a_suspected_copy(page: str) -> None:
    copies = section(page, "copies")
    assert "Carol Copy" in copies
    assert "stage-door-in" in copies and "green-in" in copies
    assert "30 s" in copies
    assert tile(page, "suspected copies") == 1


def test_ten_minutes_between_doors_or_another_event_is_not_a_copy(page: str) -> None:
    copies = section(page, "copies")
    assert "Dan Distant" not in copies
    assert "Stranger" not in copies
    assert "<b>1</b> pass, <b>1</b> pair of scans" in copies


def test_a_longer_walking_time_catches_slower_copies(show_db: Path) -> None:
    copies = section(build_report(show_db, walk_seconds=15 * 60, now=NOW), "copies")
    assert "Dan Distant" in copies and "10 min 0 s" in copies
    off = section(build_report(show_db, walk_seconds=0, now=NOW), "copies")
    assert "turned off" in off and "Carol" not in off


def test_who_is_inside_counts_entries_without_a_later_exit(page: str) -> None:
    inside = section(page, "inside")
    zones = dict(re.findall(r"<summary><b>([^<]+)</b>: (\d+) inside", inside))
    assert zones == {"backstage": "3", "green-room": "2"}
    backstage = inside.split("<b>backstage</b>")[1].split("</details>")[0]
    assert "Alice Able" not in backstage  # in at 19:00, out at 19:30
    assert "Carol Copy" in backstage and "Dan Distant" in backstage
    assert "2026-12-05 19:05:00" in backstage  # Bob inside since
    green = inside.split("<b>green-room</b>")[1].split("</details>")[0]
    assert "Carol Copy" in green and "Dan Distant" in green
    # Denied passes never count as inside.
    assert "Gus Gone" not in inside and "Eve Revoked" not in inside
    assert tile(page, "inside now") == 5


def test_revoked_and_forged_attempts_are_listed(page: str) -> None:
    attempts = section(page, "attempts")
    rows = attempts.split("<tbody>")[1].split("<tr>")[1:]
    assert len(rows) == 4
    assert "Eve Revoked" in attempts and "revoked (lost or cancelled pass)" in attempts
    assert "forged or altered" in attempts and "signed by an unknown key" in attempts
    assert "<b>3</b> forged or unreadable codes, <b>1</b> revoked pass." in attempts
    assert "not a pass" in attempts
    assert "Frank Photo" not in attempts  # a genuine pass in the wrong zone
    assert tile(page, "forged or revoked") == 4


def test_holder_names_are_escaped_never_live_markup(page: str) -> None:
    assert "<script>alert" not in page
    assert "<!--" not in page
    assert html.escape(BOB) in section(page, "inside")
    # Only the page's own two script elements exist, and the data survives intact.
    assert page.count("<script") == 2
    assert page.count("</script>") == 2
    holders = {row[5] for row in table_data(page)["rows"]}
    assert BOB in holders


def test_the_page_needs_no_network(page: str) -> None:
    links = re.findall(r"""\b(?:src|href)\s*=\s*["']?([^"'\s>]*)""", page)
    assert links and all(link.startswith("#") for link in links)
    assert "http" not in page and "@import" not in page and "url(" not in page


def test_the_table_holds_every_scan_of_a_small_log(page: str) -> None:
    data = table_data(page)
    assert len(data["rows"]) == 15
    assert data["rows"][0][0] == "2026-12-05 20:41:00"  # most recent first
    assert "All 15 scans" in section(page, "all")
    flagged = [row for row in data["rows"] if row[10]]
    assert {(row[1], row[5]) for row in flagged} == {
        ("stage-door-in", "Carol Copy"),
        ("green-in", "Carol Copy"),
    }


def test_a_large_log_inlines_recent_scans_and_denials_and_says_so(show_db: Path) -> None:
    page = build_report(show_db, now=NOW, table_rows=3, table_denials=4)
    rows = table_data(page)["rows"]
    # The 3 most recent (all denials) and the 4 denials before them; 8 denials in all.
    assert [r[0][11:] for r in rows] == [
        "20:41:00",
        "20:40:00",
        "20:30:00",
        "20:22:00",
        "20:21:00",
        "20:20:00",
        "20:15:00",
    ]
    assert "3 most recent scans and 4 earlier denials: 7 of 15 scans" in page
    assert "--csv" in section(page, "all")


def test_times_can_be_shown_in_the_event_time_zone(show_db: Path) -> None:
    page = build_report(show_db, now=NOW, tz="Europe/Berlin")
    assert "times in <b>Europe/Berlin</b>" in page
    assert "2026-12-05 20:00:00" in page  # Alice's 19:00 UTC entry
    assert "21:41:00" in page and "20:41:00" not in page
    with pytest.raises(ConfigError, match="Mars/Olympus"):
        build_report(show_db, tz="Mars/Olympus")


def test_gates_and_exports_add_the_last_export(tmp_path: Path) -> None:
    db = write_show(tmp_path / "all.db", with_gates=True)
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO gates VALUES ('dock-in', 'dk1', 3, '2026-12-05T21:00:00Z')")
    conn.execute("INSERT INTO gates VALUES ('green-out', 'dk2', 0, '2026-12-05T21:05:00Z')")
    conn.execute("INSERT INTO exports (gate, event) VALUES ('dock-in', ?)", [EVENT])
    conn.commit()
    conn.close()
    gates = section(build_report(db, now=NOW), "gates")
    dock = gates.split("<td>dock-in</td>")[1].split("</tr>")[0]
    assert "2026-12-05 21:00:00" in dock
    assert "Merged from 1 exports" in gates
    quiet = gates.split("<td>green-out</td>")[1].split("</tr>")[0]
    assert '<td class="num">0</td>' in quiet and "2026-12-05 21:05:00" in quiet


def test_an_empty_log_says_so(tmp_path: Path) -> None:
    db = write_show(tmp_path / "empty.db", rows=[])
    page = build_report(db, now=NOW)
    assert "No scans in this database" in page
    assert tile(page, "scans") == 0


def test_a_file_that_is_not_a_scan_log_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ScanLogError, match="no scan log"):
        build_report(tmp_path / "missing.db")
    junk = tmp_path / "junk.db"
    junk.write_text("not a database at all, just text " * 100)
    with pytest.raises(ScanLogError, match="cannot read"):
        build_report(junk)
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(ScanLogError, match="no scans table"):
        build_report(other)
    with pytest.raises(ScanLogError):
        write_csv(other, tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


def test_write_report_writes_the_page(show_db: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    write_report(show_db, out, now=NOW)
    assert out.read_text(encoding="utf-8") == build_report(show_db, now=NOW)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all.db", "report.html"]


# -- CSV ---------------------------------------------------------------------------


def test_the_csv_has_every_scan_in_time_order_with_copy_flags(
    show_db: Path, tmp_path: Path
) -> None:
    out = tmp_path / "scans.csv"
    assert write_csv(show_db, out) == 15
    with out.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == [*SCAN_COLUMNS, "suspected_copy"]
    assert len(rows) == 15
    assert [r["ts"] for r in rows] == sorted(r["ts"] for r in rows)
    flagged = {(r["gate"], r["holder"]) for r in rows if r["suspected_copy"] == "true"}
    assert flagged == {("stage-door-in", "Carol Copy"), ("green-in", "Carol Copy")}
    assert {r["suspected_copy"] for r in rows} == {"true", "false"}
    assert BOB in {r["holder"] for r in rows}


def test_the_csv_uses_the_same_walking_time(show_db: Path, tmp_path: Path) -> None:
    out = tmp_path / "scans.csv"
    write_csv(show_db, out, walk_seconds=15 * 60)
    with out.open(newline="", encoding="utf-8") as f:
        flagged = {r["holder"] for r in csv.DictReader(f) if r["suspected_copy"] == "true"}
    assert flagged == {"Carol Copy", "Dan Distant"}


def test_the_csv_never_hands_a_spreadsheet_a_formula(tmp_path: Path) -> None:
    db = write_show(
        tmp_path / "all.db", rows=[scan("19:00:00", "dock-in", 9, '=HYPERLINK("x")', "aaa")]
    )
    out = tmp_path / "scans.csv"
    write_csv(db, out)
    with out.open(newline="", encoding="utf-8") as f:
        (row,) = list(csv.DictReader(f))
    assert row["holder"] == '\'=HYPERLINK("x")'


# -- in a browser ------------------------------------------------------------------


def generate_merged_db(
    path: Path, *, gates: int = 50, scans_per_gate: int = 20_000, seed: int = 1
) -> int:
    """A plausible merged log: passes walk between zones, a few copies and forgeries.

    Gates come in entry/exit pairs, one pair per zone in turn. Each pass makes
    about 50 scans over the evening, a few minutes apart at least; every
    500th pass is also scanned at another gate 30 s later (a copy), about 1 in
    20 scans is denied. Returns the rows written.
    """
    rng = random.Random(seed)
    zones = list(ZONES)
    tiers = ["aaa", "vip", "working", "local-crew", "staff", "photo", "after-show"]
    denials = [
        "zone_not_allowed",
        "phase_not_allowed",
        "already_inside",
        "expired",
        "revoked",
        "bad_signature",
        "unknown_key",
        "malformed",
        "wrong_event",
        "clock_untrusted",
    ]
    names = [f"gate-{i:02d}" for i in range(gates)]
    gate_zone = [zones[(i // 2) % len(zones)] for i in range(gates)]
    gate_dir = ["entry" if i % 2 == 0 else "exit" for i in range(gates)]
    start = int(datetime(2026, 12, 5, 16, 0, tzinfo=UTC).timestamp())
    per_pass = 50
    total = gates * scans_per_gate
    rows: list[tuple[Any, ...]] = []
    serial = 0
    while len(rows) < total:
        serial += 1
        tier = rng.choice(tiers)
        holder = f"Holder {serial}"
        t = start + rng.randrange(0, 2 * 3600)
        entry = True
        gate = rng.randrange(0, gates, 2)
        for _ in range(min(per_pass, total - len(rows))):
            g = gate if entry else gate + 1 if gate + 1 < gates else gate
            reason = rng.choice(denials) if rng.random() < 0.05 else "ok"
            forged = reason in ("bad_signature", "unknown_key", "malformed")
            rows.append((t, g, None if forged else serial, tier, holder, reason))
            if serial % 500 == 0 and entry and len(rows) < total:
                other = (g + 2) % gates
                rows.append((t + 30, other, serial, tier, holder, "ok"))
            t += 180 + int(rng.expovariate(1 / 600))
            if reason == "ok":
                entry = not entry
                if entry:
                    gate = rng.randrange(0, gates, 2)
    rows = rows[:total]
    rows.sort(key=lambda r: (r[1], r[0]))
    conn = create_merged_db(path, with_gates=True)
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    seq = [0] * gates
    batch = []
    for t, g, ser, tier, holder, reason in rows:
        seq[g] += 1
        forged = ser is None
        batch.append(
            (
                str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                seq[g],
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)),
                names[g],
                gate_zone[g],
                gate_dir[g],
                None,
                None if forged or reason == "wrong_event" else EVENT,
                ser,
                None if forged else tier,
                None if forged else holder,
                "granted" if reason == "ok" else "denied",
                reason,
                None if forged else "k1",
                "untrusted" if reason == "clock_untrusted" else "trusted",
                "during",
                "Granted." if reason == "ok" else f"Denied: {reason}.",
                "c" * 64,
                "0" * 64,
                "f" * 64,
            )
        )
        if len(batch) >= 50_000:
            insert_scans(conn, batch)
            batch = []
    insert_scans(conn, batch)
    conn.executemany(
        "INSERT INTO gates VALUES (?, ?, ?, ?)",
        [(names[g], f"dk{g}", seq[g], "2026-12-06T03:00:00Z") for g in range(gates)],
    )
    index_merged_db(conn)
    conn.close()
    return len(rows)


def chromium(*args: str, tmp: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            f"--user-data-dir={tmp / 'chromium-profile'}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium (scripts/bootstrap test installs it)"
)


@pytest.fixture(scope="module")
def busy_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("busy")
    db = tmp / "all.db"
    generate_merged_db(db, gates=12, scans_per_gate=400)
    out = tmp / "report.html"
    write_report(db, out, now=NOW)
    return out


@needs_chromium
def test_the_report_runs_its_script_in_chromium_without_errors(
    busy_report: Path, tmp_path: Path
) -> None:
    url = busy_report.as_uri() + "#decision=denied"
    result = chromium("--dump-dom", "--virtual-time-budget=3000", url, tmp=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Uncaught" not in result.stderr, result.stderr[-2000:]
    dom = result.stdout
    assert 'id="scans" class="compact" data-ready="1"' in dom
    body = dom.split('id="scans"', 1)[1].split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    rows = re.findall(r"<tr[^>]*>.*?</tr>", body, re.S)
    assert rows, "the filtered table drew no rows"
    assert all("\u2717 denied" in row for row in rows)
    assert re.search(r'id="f-status"[^>]*>[\d,]+ of [\d,]+ rows match', dom)


@needs_chromium
def test_a_hostile_name_stays_text_in_the_browser(show_db: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    write_report(show_db, out, now=NOW)
    result = chromium(
        "--dump-dom", "--virtual-time-budget=3000", out.as_uri() + "#q=bob", tmp=tmp_path
    )
    assert "Uncaught" not in result.stderr, result.stderr[-2000:]
    dom = result.stdout
    body = dom.split('id="scans"', 1)[1].split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    rows = re.findall(r"<tr[^>]*>.*?</tr>", body, re.S)
    assert len(rows) == 1
    assert html.escape(BOB, quote=False) in rows[0]
    assert dom.count("<script") == 2  # the page's own: the name added none


@needs_chromium
def test_the_report_shows_its_charts_in_chromium(busy_report: Path, tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    cv2 = pytest.importorskip("cv2")
    shot = tmp_path / "report.png"
    result = chromium(
        f"--screenshot={shot}",
        "--window-size=1280,2000",
        "--hide-scrollbars",
        busy_report.as_uri(),
        tmp=tmp_path,
    )
    assert shot.exists(), result.stderr[-2000:]
    assert "Uncaught" not in result.stderr
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (2000, 1280)

    def pixels(colour: str) -> int:
        rgb = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
        bgr = np.array(rgb[::-1], dtype=np.int16)
        return int((np.abs(image.astype(np.int16) - bgr).max(axis=2) <= 6).sum())

    # Legend swatches are 14 px squares (under 200 pixels): only drawn charts pass this.
    zone_colours = [c for c in ZONE_COLOURS if pixels(c) > 2000]
    assert len(zone_colours) >= 5, "the stacked entries chart is missing"
    heat = [c for c in HEAT_COLOURS if pixels(c) > 1000]
    assert len(heat) >= 4, "the gate heat map is missing"
    assert pixels(DENIAL_CLASSES["forged"][1]) > 2000, "the denials chart is missing"


# -- scale -----------------------------------------------------------------------------


def bench(gates: int, scans_per_gate: int) -> None:
    """Time the report and CSV on a generated log (not a test: figures vary by machine)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "all.db"
        t0 = time.perf_counter()
        rows = generate_merged_db(db, gates=gates, scans_per_gate=scans_per_gate)
        t1 = time.perf_counter()
        print(f"generated {rows:,} rows in {t1 - t0:.1f} s ({db.stat().st_size / 1e6:.0f} MB)")
        write_report(db, Path(tmp) / "report.html")
        t2 = time.perf_counter()
        size = (Path(tmp) / "report.html").stat().st_size
        print(f"logs report: {t2 - t1:.1f} s, page {size / 1e6:.1f} MB")
        written = write_csv(db, Path(tmp) / "scans.csv")
        t3 = time.perf_counter()
        print(f"logs report --csv: {written:,} rows in {t3 - t2:.1f} s")


if __name__ == "__main__":
    if sys.argv[1:2] != ["bench"]:
        sys.exit(__doc__)
    sizes = [int(a) for a in sys.argv[2:4]]
    bench(*(sizes + [50, 20_000][len(sizes) :]))
