"""The door as a guard and an intruder meet it: the override button and
``scanner admit``, the door contact (forced, held open) and the tamper
switch, all through the real daemon with gpiozero's mock pins driven the way
the wires would, and a shell user who tries to fake what only pins may say."""

from __future__ import annotations

import contextlib
import getpass
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from gpiozero.pins.mock import MockFactory, MockPin

from scanner.gate.config import ScreenConfig
from scanner.gate.control import send_command
from scanner.gate.door import DoorWatch, OverrideDesk
from scanner.gate.frames import FakeCamera
from scanner.record.chain import verify_chain
from scanner.record.log import ScanLog
from scanner.tools.synthetic import Presentation, background, presentation_frames

from .test_gate_daemon import PINS, Run, config_for, rows

ADMIT, DOOR, TAMPER = 5, 6, 13
EMPTY = background(3).astype(np.uint8)


def events(gate_dir: Path) -> list[dict]:
    with ScanLog(gate_dir / "scans.db", gate="door-1") as log:
        out = list(log.events())
    for e in out:
        e["detail"] = json.loads(e["detail"])
    return out


def kinds(gate_dir: Path) -> list[str]:
    return [e["kind"] for e in events(gate_dir)]


def door_config(gate_dir: Path, **pins):
    return replace(config_for(gate_dir), gpio=replace(PINS, **pins))


def showing(text: str, frames: int = 4) -> list:
    return list(presentation_frames([Presentation(text, frames=frames)], gap_frames=2))


def idle(n: int = 3) -> list:
    return [EMPTY] * n


class ContactPin(MockPin):
    """A mock input wired to a contact that is closed when the gate starts (a
    shut door, a lid on): low even with the pull-up, as the real wire reads."""

    def _set_pull(self, value):
        super()._set_pull(value)
        if self.info.name in getattr(self.factory, "closed_at_start", ()):
            self.drive_low()


class Door:
    """Runs the gate on a script of frames and actions (pins driven, time passing)."""

    def __init__(self, config, *, closed: Iterable[int] = ()) -> None:
        self.frames: Iterable = []
        self.run = Run(config, frames=lambda: FakeCamera(self.frames))
        self.run.factory = MockFactory(pin_class=ContactPin)
        self.run.factory.closed_at_start = {f"GPIO{n}" for n in closed}

    def pin(self, number: int):
        return self.run.factory.pin(number)

    def press(self, number: int = ADMIT):
        def act():
            self.pin(number).drive_low()
            self.pin(number).drive_high()

        return act

    def set(self, number: int, closed: bool):
        def act():
            if closed:
                self.pin(number).drive_low()
            else:
                self.pin(number).drive_high()

        return act

    def wait(self, seconds: float):
        return lambda: self.run.clock.advance(seconds)

    def go(self, script: list) -> Run:
        self.frames = [x for item in script for x in (item if isinstance(item, list) else [item])]
        self.run.start()
        assert self.run.wait() == 0
        return self.run


# -- the override -----------------------------------------------------------------------


def test_the_button_admits_the_last_denied_person_once_with_the_denial_on_record(
    gate_dir, make_pass
):
    door = Door(door_config(gate_dir, admit_button=ADMIT))
    photo = make_pass("photo", 7, holder="Pat Kowalski")  # not allowed backstage
    run = door.go([showing(photo), idle(), door.press(), idle(), door.press(), idle()])
    denied, override = rows(gate_dir)
    assert (denied["decision"], denied["reason"]) == ("denied", "zone_not_allowed")
    assert (override["decision"], override["reason"]) == ("granted", "override")
    assert (override["serial"], override["holder"], override["tier"]) == (7, "Pat Kowalski",
                                                                        "photo")
    assert "let in by the button" in override["message"]
    assert f"zone_not_allowed, row {denied['id']}" in override["message"]
    assert override["code_sha256"] == denied["code_sha256"]  # the same presentation
    (logged,) = [e for e in events(gate_dir) if e["kind"] == "override"]
    assert logged["detail"] == {
        "scan": override["id"],
        "denied": denied["id"],
        "reason": "zone_not_allowed",
        "serial": 7,
        "by": "the button",
    }
    assert verify_chain(rows(gate_dir)) == []
    # the door showed a grant and the strike opened, once: the second press is the same override
    shown = [f["signal"] for f in run.named("signal")]
    assert shown.count("granted") == 1
    assert sum(1 for s in run.factory.pin(23).states[1:] if s.state) == 1


def test_a_press_long_after_the_denial_lets_nobody_in(gate_dir, make_pass):
    door = Door(door_config(gate_dir, admit_button=ADMIT, override_seconds=30))
    run = door.go([showing(make_pass("photo", 7)), idle(), door.wait(31), door.press(), idle()])
    assert [r["reason"] for r in rows(gate_dir)] == ["zone_not_allowed"]
    (refused,) = run.named("override_refused")
    assert "the last denial was 31 s ago; an override must follow within 30 s" in refused["reason"]
    assert "granted" not in [f["signal"] for f in run.named("signal")]


def test_a_press_with_nobody_denied_opens_nothing(gate_dir, make_pass):
    door = Door(door_config(gate_dir, admit_button=ADMIT))
    run = door.go([showing(make_pass("aaa", 1)), idle(), door.press(), idle()])
    assert [r["reason"] for r in rows(gate_dir)] == ["ok"]
    assert "nobody has been denied" in run.named("override_refused")[0]["reason"]


def test_a_later_press_does_not_admit_the_same_denial_twice(gate_dir, make_pass):
    door = Door(door_config(gate_dir, admit_button=ADMIT))
    door.go([showing(make_pass("photo", 7)), idle(), door.press(), idle(), door.wait(10),
             door.press(), idle()])
    assert [r["reason"] for r in rows(gate_dir)] == ["zone_not_allowed", "override"]


def test_a_forged_pass_may_be_let_in_by_hand_and_the_row_says_it_was_forged(
    gate_dir, make_pass, other_key
):
    door = Door(door_config(gate_dir, admit_button=ADMIT))
    forged = make_pass("aaa", 66, key=other_key, holder="Eve")
    door.go([showing(forged), idle(), door.press(), idle()])
    denied, override = rows(gate_dir)
    assert denied["reason"] == "unknown_key"
    assert override["reason"] == "override" and override["decision"] == "granted"
    # nothing of the forged pass is believed: no name, no serial on the grant
    assert override["holder"] is None and override["serial"] is None
    assert "(unknown_key, row" in override["message"]


def test_an_override_that_cannot_be_logged_opens_nothing(gate_dir, make_pass, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(data)], check=True)
    try:
        config = door_config(gate_dir, admit_button=ADMIT, strike=23)
        door = Door(replace(config, paths=replace(config.paths, db=data / "scans.db")))

        def fill_the_disk():
            with open(data / "filler", "wb") as f, contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * 65536)

        run = door.go([showing(make_pass("photo", 7)), idle(), fill_the_disk, door.press(),
                       idle()])
    finally:
        subprocess.run(["umount", "-l", str(data)], check=False)
    assert "granted" not in [f["signal"] for f in run.named("signal")]
    assert not any(s.state for s in run.factory.pin(23).states[1:])  # the strike stayed shut
    assert "storage" in [f["fault"] for f in run.named("fault")]


# -- scanner admit, through the control socket -------------------------------------------


def _live_gate(gate_dir: Path, make_pass, **pins):
    """A gate that denied a photo pass and keeps running (frames keep coming)."""
    door = Door(door_config(gate_dir, **pins))
    stop_after = time.monotonic() + 30

    def frames():
        yield from showing(make_pass("photo", 7, holder="Pat Kowalski"))
        while time.monotonic() < stop_after and not door.run.stop.is_set():
            time.sleep(0.02)
            yield EMPTY

    door.frames = frames()
    door.run.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not door.run.named("scan"):
        time.sleep(0.05)
    return door


def test_scanner_admit_lets_the_last_denied_person_in_as_the_shell_user(gate_dir, make_pass):
    door = _live_gate(gate_dir, make_pass)
    try:
        asked = subprocess.run(
            [sys.executable, "-m", "scanner.cli", "admit", "--socket",
             str(gate_dir / "control.sock")],
            capture_output=True, text=True, timeout=30, env={"PATH": "/usr/bin:/bin"},
        )  # no terminal to ask, and no --row or --yes: shows whom, admits nobody
        result = subprocess.run(
            [sys.executable, "-m", "scanner.cli", "admit", "--yes", "--socket",
             str(gate_dir / "control.sock")],
            capture_output=True, text=True, timeout=30, env={"PATH": "/usr/bin:/bin"},
        )
        again = subprocess.run(
            [sys.executable, "-m", "scanner.cli", "admit", "--yes", "--socket",
             str(gate_dir / "control.sock")],
            capture_output=True, text=True, timeout=30, env={"PATH": "/usr/bin:/bin"},
        )
    finally:
        door.run.stop.set()
        door.run.wait()
    me = getpass.getuser()
    denied_row = rows(gate_dir)[0]["id"]
    assert asked.returncode == 2, asked.stderr
    assert asked.stdout.startswith("last denied: Pat Kowalski (Photo), zone_not_allowed, ")
    assert f"(row {denied_row})" in asked.stdout and f"--row {denied_row}" in asked.stderr
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1].startswith(
        f"let in: Pat Kowalski, denied as zone_not_allowed; logged as an override by "
        f"shell user {me} (row "
    )
    assert again.returncode == 1 and "nobody to let in" in again.stderr
    assert [r["reason"] for r in rows(gate_dir)] == ["zone_not_allowed", "override"]
    assert f"let in by shell user {me};" in rows(gate_dir)[1]["message"]


def test_scanner_admit_with_nobody_to_let_in_fails_and_says_why(gate_dir, make_pass):
    door = _live_gate(gate_dir, make_pass)
    try:
        send_command(gate_dir / "control.sock", {"cmd": "admit"})
        door.run.clock.advance(60)
        result = subprocess.run(
            [sys.executable, "-m", "scanner.cli", "admit", "--yes", "--socket",
             str(gate_dir / "control.sock")],
            capture_output=True, text=True, timeout=30,
        )
    finally:
        door.run.stop.set()
        door.run.wait()
    assert result.returncode == 1
    assert result.stderr.startswith("Error: nobody to let in: the last denied person was already")


def test_a_shell_user_cannot_pass_for_the_button_or_speak_for_the_door(gate_dir, make_pass):
    door = _live_gate(gate_dir, make_pass, door_contact=DOOR, held_open_seconds=5)
    sock = gate_dir / "control.sock"
    try:
        door.pin(DOOR).drive_low()  # the door is shut
        door.pin(DOOR).drive_high()  # and forced open: nobody was granted
        time.sleep(0.3)
        # the attacker: claims to be the button, then tells the gate the door is shut again
        answer = send_command(sock, {"cmd": "admit", "by": "the button"})
        fake = send_command(sock, {"cmd": "door_input", "sensor": "door", "open": False})
        status = send_command(sock, {"cmd": "status"})
    finally:
        door.run.stop.set()
        door.run.wait()
    assert answer["ok"] and answer["by"] == f"shell user {getpass.getuser()}"
    assert fake["ok"] is False
    assert "door_forced" in status["faults"]  # the alarm stands
    assert status["sensors"] == {"door": "open"}
    assert "door_closed" not in kinds(gate_dir)


def test_a_code_that_is_no_pass_shown_after_a_denial_leaves_that_person_to_admit(
    gate_dir, make_pass
):
    """Mallory is denied by name; a friend holds up a phone saying HELLO; the
    guard presses the button: Mallory is the one let in, and the override
    row says so."""
    door = Door(door_config(gate_dir, admit_button=ADMIT))
    mallory = make_pass("photo", 9, holder="Mallory Price")
    door.go([showing(mallory), idle(), showing("HELLO"), idle(), door.press(), idle()])
    denied, hello, override = rows(gate_dir)
    assert (denied["holder"], denied["reason"]) == ("Mallory Price", "zone_not_allowed")
    assert hello["reason"] == "malformed"
    assert (override["reason"], override["holder"], override["serial"]) == (
        "override", "Mallory Price", 9)
    assert denied["id"] in override["message"]


def test_scanner_admit_with_a_row_admits_only_that_denial(gate_dir, make_pass):
    """The guard read Pat's row on the screen; before they confirm, someone else
    is denied: admitting Pat's row now lets nobody in and says why."""
    door = Door(door_config(gate_dir))
    stop_after = time.monotonic() + 30
    shown = threading.Event()

    def frames():
        yield from showing(make_pass("photo", 7, holder="Pat Kowalski"))
        while not shown.is_set() and time.monotonic() < stop_after:
            time.sleep(0.02)
            yield EMPTY
        yield from showing(make_pass("photo", 8, holder="Nina Ortiz"))
        while time.monotonic() < stop_after and not door.run.stop.is_set():
            time.sleep(0.02)
            yield EMPTY

    door.frames = frames()
    door.run.start()
    sock = gate_dir / "control.sock"
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not door.run.named("scan"):
            time.sleep(0.05)
        pat = send_command(sock, {"cmd": "denied"})
        shown.set()
        while time.monotonic() < deadline and len(door.run.named("scan")) < 2:
            time.sleep(0.05)
        late = subprocess.run(
            [sys.executable, "-m", "scanner.cli", "admit", "--row", pat["row"], "--socket",
             str(sock)], capture_output=True, text=True, timeout=30)  # fmt: skip
    finally:
        door.run.stop.set()
        door.run.wait()
    assert pat["holder"] == "Pat Kowalski" and pat["tier"] == "Photo"
    assert late.returncode == 1
    assert "the last denial is now row" in late.stderr and "(Nina Ortiz)" in late.stderr
    assert [r["reason"] for r in rows(gate_dir)] == ["zone_not_allowed", "zone_not_allowed"]


# -- the door contact and the tamper switch ----------------------------------------------


def test_a_case_found_open_at_start_is_tamper_at_once(gate_dir):
    door = Door(door_config(gate_dir, tamper=TAMPER))  # the lid is off as the gate starts
    door.go([idle(), door.set(TAMPER, closed=True), idle()])
    assert [e["kind"] for e in events(gate_dir) if e["kind"].startswith("tamper")] == [
        "tamper", "tamper_cleared"]


def test_a_door_opened_without_a_grant_is_forced_until_it_shuts(gate_dir, make_pass):
    door = Door(door_config(gate_dir, door_contact=DOOR))
    run = door.go([
        door.set(DOOR, closed=True), idle(),
        door.set(DOOR, closed=False), idle(),  # nobody was granted: forced
        door.wait(2), door.set(DOOR, closed=True), idle(),
    ])
    found = [e for e in events(gate_dir) if e["kind"] in ("door_forced", "door_closed")]
    assert [e["kind"] for e in found] == ["door_forced", "door_closed"]
    assert found[0]["detail"] == {"after_grant_seconds": None}
    assert found[1]["detail"] == {"open_seconds": 2.0, "ended": ["door_forced"]}
    faults = [(f["fault"]) for f in run.named("fault")]
    assert "door_forced" in faults and "door_forced" in [
        f["fault"] for f in run.named("fault_cleared")
    ]
    idles = [f["shows"] for f in run.named("signal") if f["signal"] == "idle"]
    assert "red double blink every 2 s, two chirps" in idles  # the alarm is heard


def test_a_door_opened_after_a_grant_is_no_alarm(gate_dir, make_pass):
    door = Door(door_config(gate_dir, door_contact=DOOR, strike=23))
    door.go([
        door.set(DOOR, closed=True),
        showing(make_pass("aaa", 1)),
        door.set(DOOR, closed=False), idle(), door.wait(3), door.set(DOOR, closed=True), idle(),
    ])
    assert not {"door_forced", "door_held_open", "fault"} & set(kinds(gate_dir))


def test_a_door_opened_long_after_the_grant_is_forced(gate_dir, make_pass):
    door = Door(door_config(gate_dir, door_contact=DOOR, strike=23))
    door.go([
        door.set(DOOR, closed=True),
        showing(make_pass("aaa", 1)), door.wait(60),
        door.set(DOOR, closed=False), idle(), door.set(DOOR, closed=True), idle(),
    ])
    (forced,) = [e for e in events(gate_dir) if e["kind"] == "door_forced"]
    assert forced["detail"]["after_grant_seconds"] == 60.0


def test_a_door_held_open_is_an_alarm_until_it_shuts(gate_dir, make_pass):
    door = Door(door_config(gate_dir, door_contact=DOOR, held_open_seconds=20))
    run = door.go([
        door.set(DOOR, closed=True),
        showing(make_pass("aaa", 1)),
        door.set(DOOR, closed=False), idle(),
        door.wait(21), idle(3),
        door.set(DOOR, closed=True), idle(),
    ])
    found = [e for e in events(gate_dir) if e["kind"].startswith("door_")]
    assert [e["kind"] for e in found] == ["door_held_open", "door_closed"]
    assert found[1]["detail"]["ended"] == ["door_held_open"]
    assert "door_held_open" in [f["fault"] for f in run.named("fault")]


def test_opening_the_case_is_tamper_while_it_is_open(gate_dir, make_pass):
    door = Door(door_config(gate_dir, tamper=TAMPER), closed=[TAMPER])
    run = door.go([
        idle(),
        door.set(TAMPER, closed=False), idle(),
        door.set(TAMPER, closed=True), idle(),
    ])
    tamper = [e["kind"] for e in events(gate_dir) if e["kind"].startswith("tamper")]
    assert tamper == ["tamper", "tamper_cleared"]
    assert "tamper" in [f["fault"] for f in run.named("fault")]


def test_the_status_names_the_door_and_the_case(gate_dir, make_pass):
    door = _live_gate(gate_dir, make_pass, door_contact=DOOR, tamper=TAMPER)
    try:
        door.pin(DOOR).drive_low()
        door.pin(TAMPER).drive_low()
        time.sleep(0.3)
        status = send_command(gate_dir / "control.sock", {"cmd": "status"})
        result = subprocess.run(
            [sys.executable, "-m", "scanner.cli", "phase", "--socket",
             str(gate_dir / "control.sock")],
            capture_output=True, text=True, timeout=30,
        )
    finally:
        door.run.stop.set()
        door.run.wait()
    assert status["sensors"] == {"door": "closed", "case": "closed"}
    assert "door: closed; case: closed" in result.stdout
    assert status["status"].endswith("| door closed | case closed")


# -- the screen in the running gate ---------------------------------------------------------


def test_the_gate_draws_each_decision_and_the_override_on_its_screen(gate_dir, make_pass):
    config = door_config(gate_dir, admit_button=ADMIT)
    config = replace(config, screen=ScreenConfig(kind="png", folder=gate_dir / "screen",
                                                 hold_seconds=0.05))
    door = Door(config)
    door.go([showing(make_pass("aaa", 1, holder="Alex Rivera")), idle(),
             showing(make_pass("photo", 2, holder="Σωκράτης")), idle(), door.press(), idle()])
    frames = sorted(p.name for p in (gate_dir / "screen").glob("*.png"))
    drawn = [n[5:] for n in frames if not n.endswith(("-idle.png", "-fault.png"))]
    # one frame per decision, in order (the Greek name is drawn; the file name is ASCII)
    assert drawn == ["ok-alex-rivera.png", "zone-not-allowed-name.png", "override-name.png"]


def test_a_dead_screen_is_a_fault_and_the_door_goes_on(gate_dir, make_pass):
    config = replace(config_for(gate_dir), screen=ScreenConfig(
        kind="framebuffer", framebuffer=gate_dir / "no-such-fb"))
    door = Door(config)
    run = door.go([showing(make_pass("aaa", 1)), idle(), door.wait(2), idle(),
                   showing(make_pass("vip", 2)), idle()])
    assert [r["reason"] for r in rows(gate_dir)] == ["ok", "ok"]
    (fault,) = [f for f in run.named("fault") if f["fault"] == "screen"]
    assert "no-such-fb" in fault["message"]


# -- the rules, on their own ---------------------------------------------------------------


def test_the_override_window_is_measured_from_the_denial():
    from scanner.core.decision import Decision, Direction, Reason

    denial = Decision(False, Reason.EXPIRED, "Denied.", "backstage", Direction.ENTRY, "during")
    desk = OverrideDesk(window=30, hold_off=3)
    desk.denied("row-1", denial, None, now=100.0)
    assert desk.take(130.0)[0] is not None
    assert desk.take(130.5)[0] is None


def test_a_door_found_open_at_start_is_timed_not_forced():
    watch = DoorWatch(held_open_seconds=10, door_open=True, case_open=False)
    assert watch.start(0.0, door_open=True, case_open=False) == []
    assert [e.kind for e in watch.tick(11.0)] == ["door_held_open"]


# -- the door's settings in scanner.toml ------------------------------------------------


def _run_with(tmp_path: Path, toml: str):
    config = tmp_path / "scanner.toml"
    config.write_text(toml)
    return subprocess.run(
        [sys.executable, "-m", "scanner.cli", "run", "--config", str(config), "--zone",
         "backstage", "--gpio", "mock", "--camera", f"file:{tmp_path}"],
        capture_output=True, text=True, timeout=60,
    )


@pytest.mark.parametrize(
    "toml, says",
    [
        ("[gpio]\nadmit_button = 17\n", "gpio: two devices share a pin"),
        ("[gpio]\noverride_seconds = 600\n",
         "gpio.override_seconds: 600.0 is not between 5 and 120 seconds"),
        ("[gpio]\ndoor_contact = 40\n", "gpio.door_contact: 40 is not a BCM pin number"),
        ("[screen]\nkind = \"hdmi\"\n", "screen.kind: 'hdmi' is not one of none, luma"),
        ("[screen]\nkind = \"png\"\n", "screen.folder: kind = \"png\" needs a folder"),
        ("[screen]\nkind = \"luma\"\ndriver = \"st7789\"\n[gpio]\nstrike = 24\n",
         "screen.gpio_dc/gpio_rst: pin [24] is already used by [gpio]"),
    ],
)
def test_a_mistake_in_the_doors_settings_stops_the_gate_naming_the_key(tmp_path, toml, says):
    result = _run_with(tmp_path, toml)
    assert result.returncode == 2
    assert says in result.stderr


def test_the_door_alarm_is_heard_and_never_sounds_or_looks_like_a_grant():
    from scanner.gate.signals import IDLE_ALARM, IDLE_FAULT, PATTERNS

    beeps = [s for s, _g, _r, b in IDLE_ALARM if b]
    assert len(beeps) == 2  # two chirps a cycle: not the grant's one short beep
    assert not any(g for _s, g, _r, _b in IDLE_ALARM)  # never green
    assert IDLE_ALARM != IDLE_FAULT and not any(b for *_x, b in IDLE_FAULT)  # the fault is silent
    assert IDLE_ALARM not in PATTERNS.values()


def test_a_grant_is_timed_from_its_decision_even_when_its_row_is_slow_to_reach_the_disk(
    gate_dir, make_pass, monkeypatch
):
    # a slow SD card: the grant's row is still being written while 60 s pass
    # at the door; the door opened then is forced, 60 s after the grant
    import time

    import scanner.gate.daemon as daemon
    from scanner.record.log import ScanLog

    class SlowDisk(ScanLog):
        def record_scan(self, scan, **kw):
            time.sleep(0.3)
            return super().record_scan(scan, **kw)

    monkeypatch.setattr(daemon, "ScanLog", SlowDisk)
    door = Door(door_config(gate_dir, door_contact=DOOR, strike=23))
    door.go([
        door.set(DOOR, closed=True),
        showing(make_pass("aaa", 1), frames=1), door.wait(60),
        door.set(DOOR, closed=False), idle(), door.set(DOOR, closed=True), idle(),
    ])
    (forced,) = [e for e in events(gate_dir) if e["kind"] == "door_forced"]
    assert forced["detail"]["after_grant_seconds"] == 60.0


def test_only_root_may_say_who_ran_sudo_and_even_then_it_is_marked_as_a_claim():
    """The override's 'who' is the kernel's peer of the control socket. A user
    who is not root cannot name somebody else; root's word on who ran sudo is
    kept, marked as root's own claim."""
    from scanner.gate.control import Command
    from scanner.gate.scan_loop import _who

    assert _who(Command({"cmd": "admit", "sudo_user": "alice"}, peer="bob")) == "shell user bob"
    assert _who(Command({"cmd": "admit", "sudo_user": "alice"}, peer="root")) == (
        "shell user root (says sudo by alice, not checked)")  # fmt: skip
    assert _who(Command({"cmd": "admit", "sudo_user": "x; rm -rf"}, peer="root")) == (
        "shell user root")  # fmt: skip
    assert _who(Command({"cmd": "admit", "by": "the button"})) == "the button"
