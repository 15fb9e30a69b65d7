"""The gate daemon end to end: a recording in, decisions, pins and rows out,
and the faults it must survive without ever granting by accident."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from gpiozero.pins.mock import MockFactory

from scanner.core.decision import Direction
from scanner.errors import CameraError, CameraTimeoutError
from scanner.gate.clock import FakeClock
from scanner.gate.config import CameraConfig, Config, GateConfig, Paths
from scanner.gate.control import send_command
from scanner.gate.daemon import run_gate
from scanner.gate.frames import FakeCamera
from scanner.gate.sdnotify import RecordingNotifier
from scanner.gate.signals import PinConfig
from scanner.record.chain import verify_chain
from scanner.record.log import ScanLog
from scanner.tools.synthetic import Presentation, background, presentation_frames, write_video

from .test_access_table import MOMENTS

BEFORE = MOMENTS["before"]  # 17:00 Berlin, 5 Dec 2026: before the show
PINS = PinConfig(green=17, red=27, buzzer=22, strike=23, strike_seconds=0.2)


def config_for(gate_dir: Path, camera: str = "file:unused", **camera_options) -> Config:
    return Config(
        gate=GateConfig(id="door-1", zone="backstage", direction=Direction.ENTRY, door_file=None),
        camera=CameraConfig(source=camera, hold_off_seconds=0.5, **camera_options),
        gpio=PINS,
        paths=Paths.in_folder(
            gate_dir, policy=gate_dir / "event.policy", trust=(gate_dir / "trust",)
        ),
        source="test",
    )


def rows(gate_dir: Path) -> list[dict]:
    with ScanLog(gate_dir / "scans.db", gate="door-1") as log:
        return list(log.scans())


def on_count(factory: MockFactory, pin: int) -> int:
    return sum(1 for s in factory.pin(pin).states[1:] if s.state)


class Run:
    """run_gate in a thread, with a fake clock, mock pins and a recording notifier."""

    def __init__(self, config: Config, *, frames=None, at: datetime = BEFORE) -> None:
        self.clock = FakeClock(at)
        self.factory = MockFactory()
        self.notifier = RecordingNotifier(watchdog_interval=0.4)
        self.stop = threading.Event()
        self.events: list[tuple[str, dict]] = []
        self.code: int | None = None
        self.thread = threading.Thread(target=self._run, args=(config, frames), daemon=True)

    def _run(self, config, frames):
        self.code = run_gate(
            config,
            stop=self.stop,
            clock=self.clock,
            notifier=self.notifier,
            factory=self.factory,
            open_frames=frames,
            emit=lambda event, **f: self.events.append((event, f)),
        )

    def start(self) -> Run:
        self.thread.start()
        return self

    def wait(self, timeout: float = 60) -> int:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the daemon did not stop"
        assert self.code is not None
        return self.code

    def named(self, event: str) -> list[dict]:
        return [f for e, f in self.events if e == event]


def test_a_recording_becomes_one_row_per_presentation(gate_dir, make_pass):
    people = [
        make_pass("aaa", 1, holder="Alex"),
        make_pass("vip", 2, holder="Sam"),
        make_pass("photo", 3, holder="Pat"),
        make_pass("aaa", 1, holder="Alex"),
    ]
    video = gate_dir / "door.avi"
    write_video(
        video,
        presentation_frames(
            [Presentation(p, frames=10, roll=15 * i, tilt=10) for i, p in enumerate(people)],
            gap_frames=10,
        ),
    )
    run = Run(config_for(gate_dir, f"file:{video}")).start()
    assert run.wait() == 0  # the recording ended: exit 0
    stored = rows(gate_dir)
    assert [(r["serial"], r["reason"]) for r in stored] == [
        (1, "ok"),
        (2, "ok"),
        (3, "zone_not_allowed"),
        (1, "already_inside"),
    ]
    assert [r["decision"] for r in stored] == ["granted", "granted", "denied", "denied"]
    assert all(r["gate"] == "door-1" and r["clock"] == "trusted" for r in stored)
    assert verify_chain(stored) == []
    # the door showed it: green came on for grants, the strike opened and closed again
    assert on_count(run.factory, 17) >= 1 and on_count(run.factory, 27) >= 1
    assert on_count(run.factory, 23) >= 1 and run.factory.pin(23).state is False
    assert run.notifier.count("READY=1") == 1


def test_a_pass_held_up_for_a_long_time_is_one_scan(gate_dir, make_pass):
    text = make_pass("aaa", 5)
    frames = list(presentation_frames([Presentation(text, frames=60)], gap_frames=2))
    run = Run(config_for(gate_dir), frames=lambda: FakeCamera(frames)).start()
    run.wait()
    assert len(rows(gate_dir)) == 1


def test_a_qr_code_that_is_not_a_pass_is_logged_by_hash_not_text(gate_dir):
    text = "https://example.com/win-a-prize"
    frames = list(presentation_frames([Presentation(text, frames=5)], gap_frames=1))
    run = Run(config_for(gate_dir), frames=lambda: FakeCamera(frames)).start()
    run.wait()
    (row,) = rows(gate_dir)
    assert row["reason"] == "malformed" and row["decision"] == "denied"
    assert text not in str(row.values())
    import hashlib

    assert row["code_sha256"] == hashlib.sha256(text.encode()).hexdigest()


def test_ready_waits_for_frames_and_the_watchdog_only_pings_while_frames_flow(gate_dir):
    hanging = threading.Event()
    empty = background(3).astype(np.uint8)

    def frames():
        for _ in range(30):
            yield empty
            time.sleep(0.03)
        hanging.set()
        time.sleep(2)  # the camera hangs: read() blocks, no frames for 2 s

    run = Run(config_for(gate_dir), frames=lambda: FakeCamera(frames())).start()
    assert run.notifier.count("READY=1") == 0
    pings_when_hung = None
    while run.thread.is_alive():
        run.clock.advance(0.1)
        time.sleep(0.01)
        if hanging.is_set() and pings_when_hung is None:
            time.sleep(0.05)
            pings_when_hung = run.notifier.count("WATCHDOG=1")
    run.wait()
    assert run.notifier.count("READY=1") == 1
    assert pings_when_hung is not None and pings_when_hung >= 2  # pinged while frames flowed
    assert run.notifier.count("WATCHDOG=1") == pings_when_hung  # and never while hung


def test_the_camera_going_away_is_a_fault_and_the_loop_carries_on(gate_dir, make_pass):
    first, second = make_pass("aaa", 1), make_pass("vip", 2)
    script = [
        *presentation_frames([Presentation(first, frames=5)], gap_frames=2),
        CameraError("the camera stopped delivering frames (unplugged?)"),
        *presentation_frames([Presentation(second, frames=5)], gap_frames=2),
    ]
    source = FakeCamera(script, live=True)
    run = Run(config_for(gate_dir), frames=lambda: source).start()
    run.wait()
    assert [r["serial"] for r in rows(gate_dir)] == [1, 2]
    faults = run.named("fault")
    assert faults and faults[0]["fault"] == "camera"
    assert run.named("fault_cleared")[0]["fault"] == "camera"


def test_a_corrupt_policy_file_is_a_fault_and_never_a_grant(gate_dir, make_pass, other_key):
    text = make_pass("aaa", 1)

    def corrupt():
        (gate_dir / "event.policy").write_bytes(b'{"format": "backstage-signed-v1", garbage')

    def frames():
        yield from presentation_frames([Presentation(text, frames=3)], gap_frames=2)
        corrupt()
        for _ in range(40):  # a few seconds of an empty door: housekeeping looks again
            time.sleep(0.01)
            yield background(1).astype(np.uint8)
        yield from presentation_frames([Presentation(make_pass("aaa", 2), frames=3)])

    run = Run(config_for(gate_dir), frames=lambda: FakeCamera(frames())).start()
    while run.thread.is_alive():
        run.clock.advance(0.1)
        time.sleep(0.005)
    run.wait()
    assert any(f["fault"] == "policy" for f in run.named("fault"))
    # the last verified policy stays in force; nothing from the corrupt file is used
    assert [r["reason"] for r in rows(gate_dir)] == ["ok", "ok"]


def test_no_policy_at_all_denies_with_a_fault(gate_dir, make_pass):
    (gate_dir / "event.policy").unlink()
    frames = list(presentation_frames([Presentation(make_pass("aaa", 1), frames=4)]))
    run = Run(config_for(gate_dir), frames=lambda: FakeCamera(frames)).start()
    run.wait()
    (row,) = rows(gate_dir)
    assert (row["decision"], row["reason"]) == ("denied", "no_policy")
    assert run.notifier.count("READY=1") == 0  # never ready without a policy


def test_a_clock_moved_back_is_untrusted_and_nobody_gets_in(gate_dir, make_pass):
    run_holder: list[Run] = []

    def set_back():
        run_holder[0].clock.set(BEFORE - timedelta(hours=5))

    script = [
        *presentation_frames([Presentation(make_pass("aaa", 1), frames=3)]),
        set_back,
        *presentation_frames([Presentation(make_pass("aaa", 2), frames=3)]),
    ]
    run = Run(config_for(gate_dir), frames=lambda: FakeCamera(script))
    run_holder.append(run)
    run.start().wait()
    stored = rows(gate_dir)
    assert [(r["decision"], r["reason"], r["clock"]) for r in stored] == [
        ("granted", "ok", "trusted"),
        ("denied", "clock_untrusted", "untrusted"),
    ]
    assert any(f["fault"] == "clock" for f in run.named("fault"))


def _can_mount() -> bool:
    return (
        os.geteuid() == 0
        and subprocess.run(["mount", "--version"], capture_output=True).returncode == 0
    )


@pytest.mark.skipif(not _can_mount(), reason="needs root to mount a small tmpfs")
def test_a_full_disk_loses_no_row_and_grants_nobody(gate_dir, make_pass, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(data)], check=True)
    try:
        config = config_for(gate_dir)
        config = replace(config, paths=replace(config.paths, db=data / "scans.db"))
        filler = data / "filler"

        def fill():
            with open(filler, "wb") as f:
                try:
                    while True:
                        f.write(b"\0" * 65536)
                except OSError:
                    pass

        def slow(frames):
            for frame in frames:
                time.sleep(0.01)
                yield frame

        def script():
            yield from presentation_frames([Presentation(make_pass("aaa", 1), frames=3)])
            fill()
            yield from slow(
                presentation_frames(
                    [
                        Presentation(make_pass("aaa", 2), frames=3),
                        Presentation(make_pass("aaa", 3), frames=3),
                    ]
                )
            )
            filler.unlink()
            yield from slow(
                presentation_frames([Presentation(make_pass("aaa", 4), frames=3)], gap_frames=30)
            )

        run = Run(config, frames=lambda: FakeCamera(script())).start()
        while run.thread.is_alive():
            run.clock.advance(0.1)
            time.sleep(0.005)
        assert run.wait() == 0
        with ScanLog(data / "scans.db", gate="door-1") as log:
            stored = list(log.scans())
            assert verify_chain(stored) == []
            integrity = log.db.conn.execute("PRAGMA integrity_check").fetchone()[0]
        assert integrity == "ok"
        assert [(r["serial"], r["reason"], r["decision"]) for r in stored] == [
            (1, "ok", "granted"),
            (2, "log_unavailable", "denied"),
            (3, "log_unavailable", "denied"),
            (4, "ok", "granted"),
        ]
        # the door showed what the rows say: nobody was let in while the disk was full
        shown = [f["signal"] for f in run.named("signal") if f["signal"] not in ("ready", "idle")]
        assert shown == ["granted", "fault", "fault", "granted"]
        assert any(f["fault"] == "storage" for f in run.named("fault"))
        assert run.named("fault_cleared")
    finally:
        subprocess.run(["umount", "-l", str(data)], check=False)


def test_the_phase_can_be_corrected_on_site_through_the_control_socket(gate_dir, make_pass):
    # Local crew may not go backstage during the show; 19:55 is before the show
    # by the schedule, but the show started early: the crew says so.
    at = datetime.fromisoformat("2026-12-05T19:55:00+01:00")
    frames_ready = threading.Event()
    release = threading.Event()

    def frames():
        for _ in range(5):
            yield background(2).astype(np.uint8)
        frames_ready.set()
        release.wait(10)
        yield from presentation_frames([Presentation(make_pass("local-crew", 3), frames=3)])

    run = Run(config_for(gate_dir), frames=lambda: FakeCamera(frames()), at=at).start()
    assert frames_ready.wait(10)
    answer_box: list[dict] = []
    asker = threading.Thread(
        target=lambda: answer_box.append(
            send_command(gate_dir / "control.sock", {"cmd": "phase", "phase": "during"})
        )
    )
    asker.start()
    time.sleep(0.3)
    release.set()
    asker.join(10)
    run.wait()
    assert answer_box and answer_box[0]["ok"] and "phase during" in answer_box[0]["status"]
    (row,) = rows(gate_dir)
    assert row["reason"] == "phase_not_allowed"
    with ScanLog(gate_dir / "scans.db", gate="door-1") as log:
        assert log.get_state("phase_override")["phase"] == "during"  # kept across restarts


def test_scanner_run_with_flags_only_and_a_bad_config_exits_2(tmp_path):
    bad = tmp_path / "scanner.toml"
    bad.write_text("[gpio]\ngreen = 99\n")
    result = subprocess.run(
        [sys.executable, "-m", "scanner.cli", "run", "--config", str(bad), "--zone", "backstage"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "gpio.green: 99 is not a BCM pin number" in result.stderr
    assert "Traceback" not in result.stderr


def test_kill_9_during_a_burst_loses_no_scan_whose_led_lit(gate_dir, tmp_path):
    """Power loss: every scan the door had signalled is on disk afterwards."""
    from scanner.tools.demo import make_demo_event
    from scanner.tools.synthetic import write_video as film

    event = make_demo_event(tmp_path / "event", datetime.now(UTC))
    texts = [p.text for p in event.passes]
    burst = [Presentation(texts[i % len(texts)], frames=2) for i in range(40)]
    video = tmp_path / "burst.avi"
    film(video, presentation_frames(burst, gap_frames=6))
    db = tmp_path / "kill.db"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "scanner.cli",
            "run",
            "--policy",
            str(event.policy),
            "--trust",
            str(event.trust),
            "--zone",
            "backstage",
            "--gate",
            "door-9",
            "--db",
            str(db),
            "--camera",
            f"file:{video}",
            "--gpio",
            "mock",
            "--control-socket",
            str(tmp_path / "c.sock"),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lit: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        if (
            "event=pin" in line
            and "state=on" in line
            and ("device=green" in line or "device=red" in line)
        ):
            lit.append(line)
        if "event=scan" in line:
            lit.append(line)
        if sum("event=scan" in x for x in lit) >= 6:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(10)
    signalled = [x for x in lit if "event=scan" in x]
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    count = conn.execute("SELECT count(*) FROM scans").fetchone()[0]
    assert count >= len(signalled) >= 6


def test_the_show_key_switch_sets_the_phase(gate_dir, make_pass):
    # 19:55 is before the show by the schedule; the stage manager turns the key.
    at = datetime.fromisoformat("2026-12-05T19:55:00+01:00")
    config = config_for(gate_dir)
    config = replace(config, gpio=replace(config.gpio, show_switch=24))
    turned = threading.Event()
    holder: list[Run] = []

    def frames():
        for _ in range(5):
            yield background(2).astype(np.uint8)
        holder[0].factory.pin(24).drive_low()  # the key switch closes: "show is on"
        turned.set()
        for _ in range(5):
            yield background(2).astype(np.uint8)
        yield from presentation_frames([Presentation(make_pass("local-crew", 3), frames=3)])

    run = Run(config, frames=lambda: FakeCamera(frames()), at=at)
    holder.append(run)
    run.start().wait()
    (row,) = rows(gate_dir)
    assert row["reason"] == "phase_not_allowed" and row["phase"].startswith("during")
    assert any(f.get("source") == "key switch" for f in run.named("phase"))


def _loop_on(gate_dir, script, notifier):
    from scanner.core.decision import Gate
    from scanner.gate.clock import ClockGuard
    from scanner.gate.daemon import open_policy_store
    from scanner.gate.scan_loop import LoopSettings, ScanLoop
    from scanner.gate.signals import DoorSignals

    config = config_for(gate_dir)
    source = FakeCamera(script, live=True)
    clock = FakeClock(BEFORE)
    log = ScanLog(config.paths.db, gate="door-1")
    loop = ScanLoop(
        settings=LoopSettings(
            gate_id="door-1", gate=Gate(zone="backstage"), reopen_every=0.01, housekeeping_every=0.0
        ),
        open_frames=lambda: source,
        decoder=_NoCodes(),
        log=log,
        signals=DoorSignals(MockFactory(), PINS),
        store=open_policy_store(config, state=log),
        clock=clock,
        guard=ClockGuard(BEFORE - timedelta(days=1)),
        notifier=notifier,
    )
    return loop


class _NoCodes:
    def decode(self, frame):
        return []


@pytest.mark.parametrize(
    ("trouble", "fed"),
    [
        (CameraError("the camera stopped delivering frames (unplugged?)"), True),
        (CameraTimeoutError("no frame for 2.0 s (hung?)"), False),
    ],
)
def test_an_unplugged_camera_keeps_the_watchdog_fed_and_a_hung_one_does_not(gate_dir, trouble, fed):
    empty = background(1).astype(np.uint8)
    notifier = RecordingNotifier(watchdog_interval=0.0)
    marks: dict[str, int] = {}
    script = [empty] * 5 + [lambda: marks.setdefault("trouble", notifier.count("WATCHDOG"))]
    script += [trouble] * 20
    script += [lambda: marks.setdefault("back", notifier.count("WATCHDOG"))] + [empty] * 5
    loop = _loop_on(gate_dir, script, notifier)
    loop.run(threading.Event())
    loop.signals.close()
    loop.log.close()
    assert loop.ready
    pinged_in_trouble = marks["back"] - marks["trouble"]
    assert (pinged_in_trouble >= 10) is fed
    if not fed:
        assert pinged_in_trouble == 0


def test_a_bad_config_under_systemd_keeps_the_fault_showing_instead_of_exiting():
    from scanner.gate.daemon import hold_config_fault

    stop = threading.Event()
    factory = MockFactory()
    notifier = RecordingNotifier()
    result: list[int] = []
    worker = threading.Thread(
        target=lambda: result.append(
            hold_config_fault(
                "gate.toml: zone: which zone does this door lead into?",
                stop=stop,
                notifier=notifier,
                factory=factory,
                emit=lambda *a, **k: None,
                every=0.05,
            )
        )
    )
    worker.start()
    deadline = time.monotonic() + 10
    while sum(s.state for s in factory.pin(27).states) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    worker.join(10)
    assert result == [2]
    assert sum(s.state for s in factory.pin(27).states) >= 2  # the red fault blink
    assert not any(s.state for s in factory.pin(17).states)  # never green
    # up, so the boot reaches its targets, and saying why it admits nobody
    assert notifier.count("READY=1") == 1
    assert any("CONFIGURATION FAULT" in m and "zone" in m
               for m in notifier.messages if m.startswith("STATUS="))


def test_the_daemon_makes_its_device_key_at_first_start(gate_dir):
    run = Run(config_for(gate_dir), frames=lambda: FakeCamera([])).start()
    run.wait()
    assert (gate_dir / "device.key").exists()
    assert oct((gate_dir / "device.key").stat().st_mode & 0o777) == "0o600"


def test_the_crew_sees_which_gate_how_many_and_who_came_last(gate_dir, make_pass):
    from click.testing import CliRunner

    from scanner.cli import cli

    frames_done = threading.Event()
    release = threading.Event()

    def frames():
        yield from presentation_frames(
            [
                Presentation(make_pass("aaa", 1, holder="Alex Rivera"), frames=3),
                Presentation(make_pass("vip", 2, holder="Sam Okafor"), frames=3),
            ]
        )
        frames_done.set()
        empty = background(2).astype(np.uint8)
        while not release.wait(0.02):  # the door keeps filming nobody
            yield empty

    run = Run(config_for(gate_dir), frames=lambda: FakeCamera(frames())).start()
    assert frames_done.wait(10)
    socket = str(gate_dir / "control.sock")
    try:
        status = CliRunner().invoke(cli, ["phase", "--socket", socket])
        changed = CliRunner().invoke(cli, ["phase", "after", "--socket", socket])
    finally:
        release.set()
        run.wait()
    assert status.exit_code == 0, status.output
    assert "gate door-1: entry into backstage" in status.output
    assert "2 granted, 0 denied; 2 passes let in this event" in status.output
    assert "last: granted Sam Okafor (vip #2)" in status.output
    assert "faults: none" in status.output
    assert changed.exit_code == 0, changed.output
    first = changed.output.splitlines()[0]
    assert first.startswith("gate door-1: the show is over since ")
    assert "scanner phase auto" in first
    assert "set on site at" in changed.output


def test_the_door_signals_only_after_the_row_is_on_disk(gate_dir, make_pass):
    # log before signal: whenever the door lights, a second reader already
    # finds the scan's row in the file (a crash after the light loses nothing)
    from scanner.gate.signals import DoorSignals

    seen_on_disk: list[bool] = []
    db = gate_dir / "scans.db"

    class Watching(DoorSignals):
        def show(self, name: str) -> None:
            if name != "ready":
                conn = sqlite3.connect(db)
                seen_on_disk.append(conn.execute("SELECT count(*) FROM scans").fetchone()[0])
                conn.close()
            super().show(name)

    import scanner.gate.daemon as daemon

    original = daemon.DoorSignals
    daemon.DoorSignals = Watching
    try:
        texts = [make_pass("aaa", i) for i in (1, 2, 3)]
        frames = presentation_frames([Presentation(t, frames=2) for t in texts], gap_frames=2)
        run = Run(config_for(gate_dir), frames=lambda: FakeCamera(frames)).start()
        assert run.wait() == 0
    finally:
        daemon.DoorSignals = original
    assert seen_on_disk == [1, 2, 3]


def test_every_decision_is_shown_by_its_named_signal_none_dropped(gate_dir, make_pass, other_key):
    people = [
        (make_pass("aaa", 1), "granted"),
        (make_pass("photo", 2), "not_here"),
        (make_pass("aaa", 3, not_after=BEFORE - timedelta(hours=1)), "time"),
        (make_pass("aaa", 1), "already_inside"),
        (make_pass("aaa", 4, key=other_key), "forged"),
    ]
    # presented back to back, faster than any pattern plays: none may be lost
    frames = presentation_frames([Presentation(t, frames=2) for t, _ in people], gap_frames=1)
    run = Run(config_for(gate_dir), frames=lambda: FakeCamera(frames)).start()
    assert run.wait() == 0
    shown = [f["signal"] for f in run.named("signal") if f["signal"] not in ("ready", "idle")]
    assert shown == [want for _, want in people]
    assert all(f["shows"] for f in run.named("signal"))
    granted = next(f for f in run.named("signal") if f["signal"] == "granted")
    assert granted["shows"] == "green steady 1.5 s, one short beep"


def test_the_same_pass_is_one_scan_until_out_of_sight_for_the_whole_hold_off():
    from scanner.gate.scan_loop import HoldOff

    hold = HoldOff(3.0)
    assert hold.is_new("BP1:A", 0.0)
    assert not hold.is_new("BP1:A", 2.5)  # still held up
    assert not hold.is_new("BP1:A", 5.5)  # seen again exactly 3 s after the last sighting
    assert hold.is_new("BP1:A", 8.75)  # out of sight for longer than the hold-off: new
    assert hold.is_new("BP1:B", 8.75)  # another pass is always new


class _HeardVenue:
    """The venue port, as the scan loop sees it, keeping what it was told."""

    def __init__(self):
        self.own_seqs = []

    def drain(self):
        return 0

    def door_view(self, policy):
        return None

    def own(self, row):
        self.own_seqs.append(row.seq)

    def status(self):
        return {"summary": "a venue the test keeps"}

    def housekeeping(self, policy, status, **kw):
        pass


def test_a_row_the_disk_took_late_still_reaches_the_venue_view(gate_dir, make_pass, monkeypatch):
    # The disk refuses Alex's row, then takes it before Sam's: both rows reach
    # the door's own venue view once on disk (a row left out would keep the
    # view's count of this door wrong, and grow its bookkeeping, all night).
    from scanner.errors import ScanLogError

    written = ScanLog.record_scan
    refusals = [1]

    def flaky(self, scan, **kw):
        if refusals:
            refusals.pop()
            raise ScanLogError("disk I/O error (refused by the test)")
        return written(self, scan, **kw)

    monkeypatch.setattr(ScanLog, "record_scan", flaky)
    loop = _loop_on(gate_dir, [], RecordingNotifier())
    loop.venue = venue = _HeardVenue()
    try:
        assert loop.scan(make_pass("aaa", 1, holder="Alex")).granted
        loop.writer.settle()
        assert loop.pending and venue.own_seqs == []  # denied, waiting for the disk
        loop.scan(make_pass("aaa", 2, holder="Sam"))
        loop.writer.settle()
        assert not loop.pending
        assert venue.own_seqs == [1, 2]
    finally:
        loop.writer.close()
        loop.signals.close()
        loop.log.close()


def test_rows_the_disk_still_refuses_at_the_end_are_printed_whole_for_the_journal(
    gate_dir, make_pass, monkeypatch
):
    """A log that never took a row back (storage fault to the end): the run
    exits 3 and the journal gets every unsaved row whole, to be recovered."""
    import io
    import json
    import shlex

    from scanner.errors import ScanLogError
    from scanner.gate.logfmt import Emitter

    written = ScanLog.record_scan

    def refuse_serial_2(self, scan, **kw):
        if scan.serial == 2:
            raise ScanLogError("disk I/O error (refused by the test)")
        return written(self, scan, **kw)

    monkeypatch.setattr(ScanLog, "record_scan", refuse_serial_2)
    video = gate_dir / "door.avi"
    write_video(video, presentation_frames(
        [Presentation(make_pass("aaa", 1, holder="Alex")),
         Presentation(make_pass("aaa", 2, holder="Sam O'Neil 2"))], gap_frames=10))
    out = io.StringIO()
    code = run_gate(config_for(gate_dir, f"file:{video}"), clock=FakeClock(BEFORE),
                    notifier=RecordingNotifier(), factory=MockFactory(), emit=Emitter(out))
    assert code == 3
    unsaved = [line for line in out.getvalue().splitlines() if "event=unsaved_scan" in line]
    assert len(unsaved) == 1, out.getvalue()
    fields = dict(part.split("=", 1) for part in shlex.split(unsaved[0]))
    row = json.loads(fields["row"])
    assert (row["serial"], row["holder"], row["event"]) == (2, "Sam O'Neil 2", "example-fest-2026")
    assert (row["decision"], row["reason"]) == ("denied", "log_unavailable")
    assert [r["serial"] for r in rows(gate_dir)] == [1]
    # The journal and the status tell what the door did: Sam was refused, not let in.
    said = {}
    for line in out.getvalue().splitlines():
        if "event=scan " in line:
            scan = dict(part.split("=", 1) for part in shlex.split(line))
            said[int(scan["serial"])] = (scan["decision"], scan["reason"])
    assert said == {1: ("granted", "ok"), 2: ("denied", "log_unavailable")}
    (stop,) = [line for line in out.getvalue().splitlines() if "event=stop" in line]
    assert "granted=1 " in stop + " " and "denied=1" in stop, stop


def test_a_poster_in_view_all_night_is_one_row_and_the_pass_beside_it_gets_in(
    gate_dir, make_pass
):
    """The door's decoder stops at the first code on most frames, and zxing-cpp meets
    the poster's smaller symbol first: the pass is still read, and the poster, out of
    sight of the decoder on most frames, is not scanned again and again."""
    from .test_decoders import _frame_with

    poster = ("TOUR MERCH", 20, 20)
    the_pass = make_pass("aaa", 7, holder="Robin")
    alone, beside = _frame_with(poster), _frame_with(poster, (the_pass, 380, 150))
    frames = [alone] * 20 + [beside] * 8 + [alone] * 20
    run = Run(config_for(gate_dir), frames=lambda: FakeCamera(frames, fps=30)).start()
    run.wait()
    assert [(r["serial"], r["reason"]) for r in rows(gate_dir)] == [(None, "malformed"), (7, "ok")]


def test_a_screen_flashing_decoys_beside_a_pass_cannot_keep_it_out_or_let_a_decoy_in(
    gate_dir, make_pass
):
    from .test_decoders import _frame_with

    the_pass = make_pass("aaa", 8, holder="Kim")
    frames = [_frame_with((f"D{i}", 20, 20), (the_pass, 380, 150)) for i in range(8)]
    run = Run(config_for(gate_dir), frames=lambda: FakeCamera(frames, fps=30)).start()
    run.wait()
    stored = rows(gate_dir)
    assert [(r["serial"], r["reason"]) for r in stored if r["decision"] == "granted"] == [(8, "ok")]
    assert all(r["reason"] == "malformed" for r in stored if r["serial"] != 8)


def test_a_phase_change_over_the_socket_is_logged_as_its_peer_never_as_the_key_switch(
    gate_dir, make_pass
):
    """A shell user sends {"phase": "during", "source": "key switch"}: the chained
    event row names the kernel's peer of the control socket; only the switch's
    own pins write "key switch"."""
    import getpass

    at = datetime.fromisoformat("2026-12-05T19:55:00+01:00")
    ready, release = threading.Event(), threading.Event()

    def frames():
        for _ in range(5):
            yield background(2).astype(np.uint8)
        ready.set()
        release.wait(10)
        yield background(2).astype(np.uint8)

    run = Run(config_for(gate_dir), frames=lambda: FakeCamera(frames()), at=at).start()
    assert ready.wait(10)
    answers: list[dict] = []
    asker = threading.Thread(target=lambda: answers.append(send_command(
        gate_dir / "control.sock",
        {"cmd": "phase", "phase": "during", "source": "key switch", "sudo_user": "stage-mgr"},
    )))  # fmt: skip
    asker.start()
    time.sleep(0.3)
    release.set()
    asker.join(10)
    run.wait()
    assert answers and answers[0]["ok"]
    with ScanLog(gate_dir / "scans.db", gate="door-1") as log:
        phases = [json.loads(e["detail"]) for e in log.events() if e["kind"] == "phase"]
    me = getpass.getuser()
    expected = (
        "shell user root (says sudo by stage-mgr, not checked)" if me == "root"
        else f"shell user {me}"
    )  # fmt: skip
    assert [p["source"] for p in phases] == [expected]
    assert all(f["source"] != "key switch" for f in run.named("phase"))


def _junk_grid(frame_no: int, extra: tuple[str, int, int] | None = None) -> np.ndarray:
    """A 640x480 frame filled with a grid of fresh codes that are not passes (a
    phone's screen of junk), with room at the bottom for a pass held up beside it."""
    from scanner.tools.synthetic import code_image

    frame = np.full((480, 640), 200, np.uint8)
    for n in range(27):
        image = code_image(f"J{frame_no}-{n}", module_px=2)
        y, x = 10 + (n // 9) * 78, 8 + (n % 9) * 70
        frame[y:y + image.shape[0], x:x + image.shape[1]] = image
    if extra is not None:
        text, x, y = extra
        image = code_image(text, module_px=2)
        frame[y:y + image.shape[0], x:x + image.shape[1]] = image
    return frame


def test_a_screen_of_junk_codes_is_one_row_one_signal_and_a_count(gate_dir, make_pass):
    """Eight frames of a grid of fresh codes that are not passes, a real pass held
    up beside them in five: the pass is decided and granted, the junk is
    one logged denial, one red 'forged' signal, and one 'noise' event that
    counts every code decided, never a row and a buzz for each."""
    from .test_door import events

    the_pass = make_pass("aaa", 5, holder="Rosa")
    frames = [_junk_grid(i, (the_pass, 250, 372) if 2 <= i <= 6 else None) for i in range(8)]
    frames += [background(2).astype(np.uint8)] * 200  # quiet: the burst ends
    run = Run(config_for(gate_dir), frames=lambda: FakeCamera(frames, fps=30)).start()
    run.wait()
    stored = rows(gate_dir)
    assert sorted((r["reason"], r["serial"] or 0) for r in stored) == [("malformed", 0), ("ok", 5)]
    shown = [s["signal"] for s in run.named("signal") if s["signal"] not in ("ready", "idle")]
    assert sorted(shown) == ["forged", "granted"]
    (noise,) = [e for e in events(gate_dir) if e["kind"] == "noise"]
    junk_decided = sum(1 for s in run.named("scan") if s["reason"] == "malformed")
    assert junk_decided == 1  # the one logged; the rest are counted in the event
    assert noise["detail"]["codes"] >= 27 and noise["detail"]["first"] == next(
        r["id"] for r in stored if r["reason"] == "malformed")
    assert noise["detail"]["reason_malformed"] == noise["detail"]["codes"]


def test_two_guests_with_last_years_passes_seconds_apart_are_each_denied_and_signalled(
    gate_dir, make_pass
):
    """Junk collapses into a burst only while it keeps coming: the next guest,
    whose phone comes up three seconds (of frame time) after the first one's
    went down, gets their own row and their own red signal, even when the
    gate reads the recording far faster than it was filmed."""
    last_year = [make_pass("aaa", n, event="example-fest-2025", holder=f"Guest {n}")
                 for n in (1, 2)]
    frames = list(presentation_frames(
        [Presentation(text, frames=5) for text in last_year], gap_frames=30))
    frames += [background(2).astype(np.uint8)] * 30
    run = Run(config_for(gate_dir), frames=lambda: FakeCamera(frames, fps=10)).start()
    run.wait()
    assert [(r["reason"], r["serial"]) for r in rows(gate_dir)] == [
        ("wrong_event", 1), ("wrong_event", 2)]
    shown = [s["signal"] for s in run.named("signal") if s["signal"] not in ("ready", "idle")]
    assert shown == ["not_here", "not_here"]  # each guest sees and hears their own red


def test_the_control_socket_opens_for_the_operators_group_without_touching_the_umask(
    tmp_path, monkeypatch
):
    """The guards' tools reach the socket (owner and group, never others), and
    while it is made the process's umask stays as it was: files other threads
    write at that moment (the log, a screen frame) keep their modes."""
    import queue
    import stat as stat_

    from scanner.gate.control import ControlServer

    umask_calls = []
    real_umask = os.umask
    monkeypatch.setattr(os, "umask", lambda mask: umask_calls.append(mask) or real_umask(mask))
    commands: queue.Queue = queue.Queue()
    server = ControlServer(tmp_path / "run" / "control.sock", commands)
    try:
        mode = stat_.S_IMODE((tmp_path / "run" / "control.sock").stat().st_mode)
        assert mode == 0o660
        assert umask_calls == []
    finally:
        server.close()


def test_a_gate_that_starts_on_an_untrusted_clock_never_chirps_ready_or_names_a_phase(gate_dir):
    """The guard must not hear "ready" or read "during" when the door will deny
    everyone: the fault blink and the clock fault stay, and the status says
    the phase cannot be known."""
    from .conftest import SIGNED_AT

    idle = [background(2).astype(np.uint8)] * 20
    run = Run(config_for(gate_dir), frames=lambda: FakeCamera(idle),
              at=SIGNED_AT - timedelta(days=2)).start()
    run.wait()
    assert any(f["fault"] == "clock" for f in run.named("fault"))
    shown = [s["signal"] for s in run.named("signal")]
    assert "ready" not in shown
    ready = [m for m in run.notifier.messages if "READY=1" in m]
    assert ready and "phase unknown (the clock cannot be trusted)" in ready[0], ready
    assert "0 passes let in" in ready[0], ready  # the door's count still shows
