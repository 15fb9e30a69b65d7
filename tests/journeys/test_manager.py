"""The manager's journey, end to end, through the scanner CLI and real files.

The organizer makes the keys and a manager key, signs a policy whose roster
puts three boxes at two doors (an entry and an exit box at the artist
entrance, an entry box at the dressing rooms, a door inside backstage) and
issues passes. Each box runs the real gate daemon on its own files (config,
gate.toml with only its id, the trusted key, the policy, its scan log and the
device key it makes at first start), on a recording of people holding up
passes at its door; its clock follows the evening's script. After the show
each box exports to its own stick as the USB service does, the manager
collects the boxes' own device.pub files, merges the three sticks with the
README's flags and opens the report in headless Chromium.

Asserted where a manager looks: who was inside the dressing rooms at 22:00
(and that they count as inside backstage), no false copy alarm for the
nested doors or for the entry and exit boxes of one doorway, a real copy
(one pass at two doors faster than anyone walks) flagged, and someone who
left through the exit box coming back in through the entry box (separate
boxes never lock people out).
"""

from __future__ import annotations

import csv
import shutil
import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from gpiozero.pins.mock import MockFactory

from scanner.cli import cli
from scanner.gate.clock import FakeClock
from scanner.gate.config import load_config
from scanner.gate.daemon import run_gate
from scanner.gate.frames import FakeCamera
from scanner.gate.sdnotify import RecordingNotifier
from scanner.tools.synthetic import Presentation, presentation_frames

from ..conftest import example_event
from ..test_report import CHROMIUM, column, open_in_chromium

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs headless Chromium (scripts/bootstrap test)"
)

BERLIN = ZoneInfo("Europe/Berlin")
# The show is the day after tomorrow: the policy is signed now, on the real
# clock, and the boxes' clocks must never read earlier than that.
DAY = (datetime.now(BERLIN) + timedelta(days=2)).date().isoformat()
BOXES = {  # gate id: (door, direction), as the policy's roster says
    "artist-in": ("artist-entrance", "entry"),
    "artist-out": ("artist-entrance", "exit"),
    "dressing-in": ("dressing-rooms", "entry"),
}
ROSTER = """
[gates.artist-in]
door = "artist-entrance"
direction = "entry"

[gates.artist-out]
door = "artist-entrance"
direction = "exit"

[gates.dressing-in]
door = "dressing-rooms"
direction = "entry"
"""
PEOPLE = {  # holder: tier
    "Ann Artist": "aaa",
    "Ben Guest": "vip",
    "Cleo Crew": "working",
    "Dora Double": "aaa",
    "Eli Encore": "aaa",
    "Fay Friend": "vip",
}
# The evening at the doors, Berlin time (the show runs 20:00 to 23:00). The
# policy says a walk from the artist entrance to the dressing rooms takes 20 s.
EVENING = [
    ("21:00:00", "artist-in", "Ann Artist", "ok"),
    ("21:00:35", "dressing-in", "Ann Artist", "ok"),  # walked in: no copy
    ("21:05:00", "artist-in", "Ben Guest", "ok"),
    ("21:05:40", "dressing-in", "Ben Guest", "zone_not_allowed"),  # a denied try inward
    ("21:10:00", "artist-in", "Cleo Crew", "ok"),
    ("21:10:08", "artist-out", "Cleo Crew", "ok"),  # in and out of one doorway, 8 s
    ("21:20:00", "artist-in", "Dora Double", "ok"),
    ("21:20:05", "dressing-in", "Dora Double", "ok"),  # 5 s: nobody walks that fast: a copy
    ("21:30:00", "artist-in", "Eli Encore", "ok"),
    ("21:45:00", "artist-out", "Eli Encore", "ok"),  # leaves through the exit box ...
    ("21:47:00", "artist-in", "Eli Encore", "ok"),  # ... and is let back in
    ("21:50:00", "artist-in", "Fay Friend", "ok"),
    ("21:50:40", "artist-in", "Fay Friend", "already_inside"),  # the pass handed back out
]


def scanner(*args: object, ok: bool = True) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result.output


def at(hms: str) -> datetime:
    return datetime.fromisoformat(f"{DAY}T{hms}").replace(tzinfo=BERLIN)


@dataclass
class Box:
    gate: str
    folder: Path

    @property
    def config(self) -> Path:
        return self.folder / "etc" / "scanner.toml"


def set_up_box(root: Path, gate: str, policy: Path, organizer_pub: Path) -> Box:
    """A box as a technician leaves it: the image's config and trusted key,
    the policy, and gate.toml on the boot partition saying only its id."""
    box = Box(gate, root / gate)
    etc, boot, state = box.folder / "etc", box.folder / "boot", box.folder / "var"
    for folder in (etc / "trust", boot, state):
        folder.mkdir(parents=True)
    shutil.copy(organizer_pub, etc / "trust" / "organizer.pub")
    if policy.exists():  # else it comes once the boxes are enrolled and it is signed
        shutil.copy(policy, etc / "event.policy")
    (boot / "gate.toml").write_text(f'id = "{gate}"\n')
    box.config.write_text(
        f'[gate]\ndoor_file = "{boot / "gate.toml"}"\n'
        f'[gpio]\nfactory = "mock"\n'
        "[paths]\n"
        f'policy = "{state / "event.policy"}"\n'
        f'initial_policy = "{etc / "event.policy"}"\n'
        f'trust = ["{etc / "trust"}"]\n'
        f'revocations = "{state / "revocations.signed"}"\n'
        f'trust_update = "{state / "trust.signed"}"\n'
        f'db = "{state / "scans.db"}"\n'
        f'control_socket = ""\n'
        f'build_time = "{etc / "build-time"}"\n'
        f'device_key = "{state / "device.key"}"\n'
    )
    return box


def run_box(box: Box, passes: dict[str, str]) -> None:
    """The real daemon on the box's files, on a recording of its door; the
    box's clock follows the evening (each person steps up at their time)."""
    clock = FakeClock(at("20:59:00"))
    script: list = []
    for hms, gate, holder, _ in EVENING:
        if gate != box.gate:
            continue
        when = at(hms)
        script.append(lambda when=when: clock.set(when))
        # 40 frames (4 s) of nobody first: longer than the 3 s hold-off
        script.extend(presentation_frames([Presentation(passes[holder], frames=6)], gap_frames=40))
    config = load_config(box.config, require_zone=False)
    code = run_gate(
        config,
        stop=threading.Event(),
        clock=clock,
        notifier=RecordingNotifier(),
        factory=MockFactory(),
        open_frames=lambda: FakeCamera(script),
        emit=lambda event, /, **fields: None,
    )
    assert code == 0


@pytest.fixture(scope="module")
def show(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("show")
    # -- the organizer: keys, the manager's key, the policy, the passes
    keys = tmp / "keys"
    scanner("keygen", "--out", keys)
    passphrase = pytest.MonkeyPatch()  # the manager's key under a passphrase, as the README says
    passphrase.setenv("SCANNER_KEY_PASSPHRASE", "the manager's own long passphrase")
    try:
        scanner("keygen", "--manager", "--passphrase", "--out", keys)
        recipient = (keys / "manager.pub").read_text().split()[0]
        # -- the technicians set up three boxes and enrol each: its device key
        policy = tmp / "event.policy"
        boxes = [set_up_box(tmp / "boxes", g, policy, keys / "organizer.pub") for g in BOXES]
        roster = ROSTER
        for box in boxes:
            entry = scanner("venue", "enrol", "--config", box.config)
            key_line = next(line for line in entry.splitlines() if line.startswith("device_key"))
            head = f"[gates.{box.gate}]\n"
            roster = roster.replace(head, head + key_line + "\n")
        toml = tmp / "event.toml"
        toml.write_text(
            example_event(at("20:00:00")) + roster + f'\n[export]\nrecipients = ["{recipient}"]\n'
        )
        scanner("policy", "sign", toml, "--key", keys / "organizer.key", "-o", policy)
        for box in boxes:
            shutil.copy(policy, box.folder / "etc" / "event.policy")
        passes = {
            holder: scanner(
                "issue", "--key", keys / "organizer.key", "--policy", policy,
                "--tier", tier, "--holder", holder,
            ).splitlines()[0]
            for holder, tier in PEOPLE.items()
        }
        # -- the show runs
        for box in boxes:
            run_box(box, passes)
        # -- after the show: a stick into each box, and the boxes' own keys collected
        gates = tmp / "manager" / "gates"
        gates.mkdir(parents=True)
        sticks = []
        for box in boxes:
            stick = tmp / "sticks" / box.gate
            scanner("export", "--config", box.config, "--to", stick)
            shutil.copy(box.folder / "var" / "device.pub", gates / f"{box.gate}.pub")
            sticks.append(stick / "scanner-logs")
        # -- the manager, with README's commands
        merged = tmp / "manager" / "all.db"
        merge = scanner(
            "logs", "merge", *sticks, "-o", merged, "--known-gates", gates,
            "--identity", keys / "manager.key",
        )
        # and as the README now says: gate identity from the signed roster
        by_roster = scanner(
            "logs", "merge", *sticks, "-o", tmp / "manager" / "by-roster.db",
            "--policy", policy, "--trust", keys / "organizer.pub",
            "--identity", keys / "manager.key",
        )
    finally:
        passphrase.undo()
    report = tmp / "manager" / "report.html"
    scanner(
        "logs", "report", merged, "-o", report, "--csv", tmp / "manager" / "all.csv",
        "--policy", policy, "--trust", keys / "organizer.pub",
    )
    return {"tmp": tmp, "merge": merge, "merged": merged, "report": report, "gates": gates,
            "by_roster": by_roster}


def test_every_box_knows_its_door_from_the_policy_and_logs_every_scan(show):
    conn = sqlite3.connect(show["merged"])
    rows = conn.execute(
        "SELECT ts, gate, door, direction, holder, reason FROM scans ORDER BY ts"
    ).fetchall()
    assert [(g, h, r) for _, g, _, _, h, r in rows] == [(g, h, r) for _, g, h, r in EVENING]
    for _, gate, door, direction, _, _ in rows:
        assert (door, direction) == BOXES[gate]
    first = datetime.fromisoformat(rows[0][0].replace("Z", "+00:00"))
    assert first == at("21:00:00")


def test_the_boxes_own_device_keys_vouch_for_all_three_sticks(show):
    assert "merged 3 exports" in show["merge"]
    assert "merged 3 exports" in show["by_roster"]  # the roster's keys, signed by the organizer
    known = sqlite3.connect(show["merged"]).execute("SELECT gate, known FROM gates").fetchall()
    assert sorted(known) == [("artist-in", 1), ("artist-out", 1), ("dressing-in", 1)]
    # what went on the sticks carried no holder name in the clear
    for stick in (show["tmp"] / "sticks").glob("*/scanner-logs/*/*"):
        names = {p.name for p in stick.iterdir()}
        assert "scans.db" not in names and "scans.db.age" in names
        assert b"Ann Artist" not in (stick / "scans.db.age").read_bytes()


def test_someone_who_left_by_the_exit_box_is_let_back_in(show):
    conn = sqlite3.connect(show["merged"])
    eli = conn.execute(
        "SELECT gate, decision FROM scans WHERE holder = 'Eli Encore' ORDER BY ts"
    ).fetchall()
    assert eli == [("artist-in", "granted"), ("artist-out", "granted"), ("artist-in", "granted")]


@pytest.fixture(scope="module")
def views(show, tmp_path_factory):
    url = show["report"].as_uri()
    found, log = open_in_chromium(
        [
            url + f"#at={DAY}T22:00&in=dressing-rooms&path=Dora",
            url + f"#at={DAY}T22:00&in=backstage&path=Cleo",
            url,
        ],
        tmp_path_factory.mktemp("chromium"),
    )
    return found, log


def test_who_was_inside_the_dressing_rooms_at_22_00(views):
    found, _ = views
    dressing, backstage = found[0], found[1]
    assert dressing["atSummary"].startswith(f"2 people inside dressing-rooms at {DAY} 22:00:00")
    assert sorted(column(dressing["atPeople"], 0)) == ["Ann Artist", "Dora Double"]
    # being in the dressing rooms is being backstage too; Cleo left
    assert sorted(column(backstage["atPeople"], 0)) == sorted(
        ["Ann Artist", "Ben Guest", "Dora Double", "Eli Encore", "Fay Friend"]
    )


def test_only_the_real_copy_is_flagged(views, show):
    found, _ = views
    flagged = {(r["cells"][1], r["cells"][6]) for r in found[2]["scans"] if "copy" in r["cls"]}
    assert flagged == {("artist-in", "Dora Double"), ("dressing-in", "Dora Double")}
    with (show["tmp"] / "manager" / "all.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(EVENING)
    assert sorted((r["gate"], r["holder"]) for r in rows if r["suspected_copy"] == "true") == [
        ("artist-in", "Dora Double"),
        ("dressing-in", "Dora Double"),
    ]


def test_one_passs_path_across_the_doors(views):
    found, _ = views
    cleo = found[1]
    assert [r["cells"][3] for r in cleo["path"]] == ["artist-in", "artist-out"]
    assert "copy" not in " ".join(r["cls"] for r in cleo["path"])


def test_the_page_shows_berlin_time_and_makes_no_requests(views):
    found, log = views
    assert all(view["tz"].startswith("Europe/Berlin") for view in found)
    assert all(view["resources"] == [] for view in found)
    assert "Uncaught" not in log
