"""The guard's journey: the door as the README promises it, through the real
commands. The demo is the door a guard stands at: every person held up a
pass, every decision shown by its named signal, none dropped; a technician's
typo in the door's zone stops the box with the fault, never a door that
denies everyone."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from ..conftest import ROOT

SCANNER = [sys.executable, "-m", "scanner.cli"]
SIGNAL_OF = {
    "ok": "granted",
    "phase_not_allowed": "not_here",
    "zone_not_allowed": "not_here",
    "bad_signature": "forged",
    "revoked": "forged",
    "unknown_key": "forged",
    "expired": "time",
    "already_inside": "already_inside",
}


def test_the_demo_door_shows_one_named_signal_per_person(tmp_path):
    # exactly as the README says: scripts/demo (with --fast: no real-time playback)
    result = subprocess.run(
        [str(ROOT / "scripts" / "demo"), "--fast", "--dir", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    expected = re.findall(r"^  \d+\. .*  -> expect (\w+)$", out, re.M)
    assert len(expected) == 9
    decisions = re.findall(r"^  (Granted|Denied): .*\n    the door shows (\w+): (.+)$", out, re.M)
    assert [shown for _, shown, _ in decisions] == [SIGNAL_OF[e] for e in expected]
    for verdict, shown, how in decisions:
        assert (verdict == "Granted") == (shown == "granted")
        # a colour-blind guard tells them apart by sound: only a grant is one short beep
        assert ("one short beep" in how) == (shown == "granted")
    assert "door signals: one per decision, each the right one" in out
    assert "as expected: yes" in out and "hash chain: intact" in out
    assert "event=pin" not in out  # signals by name, not pin lines
    # what the guard saw: one screen frame per person, saved where the demo says
    saw = re.search(r"what the guard saw: \d+ screen frames \((\d+) decisions.*\) in (\S+)$",
                    out, re.M)
    assert saw and int(saw[1]) == 9
    frames = sorted(Path(saw[2]).glob("*.png"))
    decided = [p.name[5:-4] for p in frames if not p.name.endswith(("-idle.png", "-fault.png"))]
    assert [d.split("-")[0] for d in decided] == [
        "ok", "ok", "phase", "zone", "bad", "revoked", "expired", "already", "unknown"]


def _demo_event(tmp_path: Path) -> tuple[Path, Path]:
    keys = tmp_path / "keys"
    subprocess.run([*SCANNER, "keygen", "--out", str(keys)], check=True, capture_output=True)
    policy = tmp_path / "event.policy"
    subprocess.run(
        [*SCANNER, "policy", "sign", str(ROOT / "config" / "example-event.toml"),
         "--key", str(keys / "organizer.key"), "-o", str(policy)],
        check=True,
        capture_output=True,
    )
    return policy, keys / "organizer.pub"


def test_a_zone_typo_stops_the_box_from_a_shell(tmp_path):
    policy, trust = _demo_event(tmp_path)
    result = subprocess.run(
        [*SCANNER, "run", "--policy", str(policy), "--trust", str(trust),
         "--zone", "backstge", "--db", str(tmp_path / "scans.db"),
         "--camera", f"file:{tmp_path}", "--gpio", "mock",
         "--control-socket", str(tmp_path / "c.sock")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "gate.zone: zone 'backstge' is not in the event policy" in result.stderr
    assert "backstage" in result.stderr  # it lists the zones that exist
    assert not (tmp_path / "scans.db").exists()  # no door ran, no scan was denied


def box_with_a_zone_typo(tmp_path: Path) -> tuple[Path, Path]:
    """A box whose gate.toml misspells its zone: its scanner.toml and door file."""
    policy, trust = _demo_event(tmp_path)
    door = tmp_path / "gate.toml"
    door.write_text('id = "stage-left"\nzone = "backstge"\n')
    config = tmp_path / "scanner.toml"
    config.write_text(
        f'[gate]\ndoor_file = "{door}"\n[paths]\npolicy = "{policy}"\ntrust = ["{trust}"]\n'
        f'initial_policy = ""\ndb = "{tmp_path / "scans.db"}"\n'
        f'control_socket = "{tmp_path / "c.sock"}"\n[gpio]\nfactory = "mock"\n'
    )
    return config, door


def test_a_zone_typo_under_systemd_shows_the_fault_and_says_why(tmp_path):
    config, door = box_with_a_zone_typo(tmp_path)
    notify = tmp_path / "notify"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(notify))
    listener.settimeout(20)
    proc = subprocess.Popen(
        [*SCANNER, "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NOTIFY_SOCKET": str(notify), "PYTHONUNBUFFERED": "1"},
    )
    try:
        # the notifications may come in several datagrams: gather them until
        # both READY and the fault's STATUS have come (bounded by the timeout)
        status = listener.recv(4096).decode()
        while not ("READY=1" in status and "CONFIGURATION FAULT" in status):
            status += "\n" + listener.recv(4096).decode()
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:  # never leave a daemon behind the suite
                proc.kill()
                proc.communicate()
        listener.close()
    assert proc.returncode == 2
    assert f"{door}: gate.zone: zone 'backstge' is not in the event policy" in status
    assert "event=signal signal=idle" in out and "red blink every 2 s" in out
    # Up (the boot reaches its targets) and saying why it admits nobody.
    assert "READY=1" in status and "CONFIGURATION FAULT" in status


# -- a door with a screen, an override button, a door contact and a tamper switch ---------


def test_a_guards_shift_at_a_door_that_reports_itself_reaches_the_managers_report(
    tmp_path, organizer_key, make_pass
):
    from dataclasses import replace

    from scanner.core.decision import Direction
    from scanner.gate.config import ScreenConfig
    from scanner.gate.signals import PinConfig

    from ..exporting import export, make_gate, run
    from ..test_door import EMPTY, Door, showing

    gate = make_gate(tmp_path / "gates", "stage-door", organizer_key, recipients=[])
    config = gate.config()
    config = replace(
        config,
        gate=replace(config.gate, zone="backstage", direction=Direction.ENTRY),
        gpio=PinConfig(strike=23, strike_seconds=0.2, admit_button=5, door_contact=6, tamper=13,
                       held_open_seconds=20),
        screen=ScreenConfig(kind="png", folder=tmp_path / "screen", hold_seconds=0.05),
    )
    door = Door(config, closed=[6, 13])  # the door shut, the lid on
    shut, opened = door.set(6, closed=True), door.set(6, closed=False)
    door.go([
        [EMPTY] * 3,
        # the tour manager's guest: a photo pass at the backstage door, let in by the guard
        showing(make_pass("photo", 21, holder="Ana Lima")), door.press(), door.press(),
        opened, [EMPTY] * 2, door.wait(2), shut,
        # later, somebody pushes the door open with nobody granted; then props it open
        door.wait(600), opened, [EMPTY] * 2, door.wait(25), [EMPTY] * 3, shut, [EMPTY] * 2,
        # and the lid of the box comes off
        door.set(13, closed=False), [EMPTY] * 2, door.set(13, closed=True), [EMPTY] * 2,
    ])
    # what the guard saw: the denial, then the override, drawn on the screen
    drawn = [p.name[5:] for p in sorted((tmp_path / "screen").glob("*.png"))]
    assert [n for n in drawn if n.startswith(("zone", "override"))] == [
        "zone-not-allowed-ana-lima.png", "override-ana-lima.png"]

    stick = tmp_path / "stick"
    stick.mkdir()
    folder = export(gate, stick, "--plaintext")
    merged, report = tmp_path / "all.db", tmp_path / "report.html"
    result = run("logs", "merge", folder, "-o", merged)
    assert result.exit_code == 0, result.output
    result = run("logs", "report", merged, "-o", report)
    assert result.exit_code == 0, result.output
    page = report.read_text()
    door_section = page[page.index('<section id="door">'):page.index('<section id="gates">')]
    assert "<b>1 override</b>" in door_section
    assert "Ana Lima" in door_section and "not allowed in this zone" in door_section
    assert "the button" in door_section
    assert "<b>3 alarms</b>" in door_section  # forced, held open, tamper
    for what in ("door forced", "door held open", "case opened (tamper)"):
        assert f"<td>{what}</td>" in door_section
    gates = page[page.index('<section id="gates">'):page.index('<section id="all">')]
    assert '<td>stage-door</td>' in gates
    # the door's alarms, in the gate's own row, in one column
    assert '<td class="bad">1 door forced, 1 door held open, 1 case opened (tamper)</td>' in gates
