"""scanner selftest: a technician's check after flashing a door."""

from __future__ import annotations

from dataclasses import replace

from gpiozero.pins.mock import MockFactory

from scanner.gate.clock import FakeClock
from scanner.gate.selftest import WALK, run_selftest
from scanner.tools.synthetic import Presentation, presentation_frames, write_video

from .test_access_table import MOMENTS
from .test_gate_daemon import config_for


def quick_selftest(config, clock, *, camera_seconds):
    """The checks without the pattern walk, on mock pins."""
    return run_selftest(
        config,
        camera_seconds=camera_seconds,
        walk_pause=0,
        walk=False,
        say=lambda s: None,
        factory=MockFactory(),
        clock=clock,
    )


def recording(gate_dir, text):
    video = gate_dir / "held-up.avi"
    write_video(video, presentation_frames([Presentation(text, frames=6)], gap_frames=3))
    return f"file:{video}"


def test_a_healthy_gate_passes_every_check_and_walks_every_pattern(gate_dir, make_pass):
    config = config_for(gate_dir, recording(gate_dir, make_pass("vip", 3, holder="Tech")))
    factory = MockFactory()
    lines: list[str] = []
    report = run_selftest(
        config,
        camera_seconds=5,
        walk_pause=0,
        say=lines.append,
        factory=factory,
        clock=FakeClock(MOMENTS["before"]),
    )
    assert report.ok, lines
    assert [c.name for c in report.checks] == [
        "signals",
        "policy",
        "door",
        "storage",
        "clock",
        "identity",
        "camera",
    ]
    assert sum("now showing" in line for line in lines) == len(WALK)
    assert any(s.state for s in factory.pin(17).states)  # green lit at some point
    camera = report.checks[-1].detail
    assert "the door would say Granted: Tech" in camera
    identity = next(c for c in report.checks if c.name == "identity").detail
    assert "device key" in identity and (gate_dir / "device.key").exists()


def test_a_missing_policy_and_a_blind_camera_are_faults(gate_dir, make_pass, tmp_path):
    (gate_dir / "event.policy").unlink()
    empty = tmp_path / "nothing"
    empty.mkdir()
    config = config_for(gate_dir, f"file:{empty}")
    report = quick_selftest(config, FakeClock(MOMENTS["before"]), camera_seconds=1)
    assert not report.ok
    failed = {c.name for c in report.checks if not c.ok}
    assert failed == {"policy", "camera"}


def test_a_zone_the_policy_does_not_know_is_a_fault(gate_dir, make_pass):
    config = config_for(gate_dir, recording(gate_dir, make_pass("vip", 3)))
    config = replace(config, gate=replace(config.gate, zone="kitchen"))
    report = quick_selftest(config, FakeClock(MOMENTS["before"]), camera_seconds=3)
    door = next(c for c in report.checks if c.name == "door")
    assert not door.ok and "kitchen" in door.detail


def test_a_clock_behind_the_policy_is_a_fault(gate_dir, make_pass):
    from datetime import UTC, datetime

    config = config_for(gate_dir, recording(gate_dir, make_pass("vip", 3)))
    report = quick_selftest(config, FakeClock(datetime(2026, 1, 1, tzinfo=UTC)), camera_seconds=3)
    clock = next(c for c in report.checks if c.name == "clock")
    assert not clock.ok and "before a time" in clock.detail
    assert "set the real time" in clock.detail  # what to do next
    # the camera still reads the code, but says what the door would do: deny
    camera = next(c for c in report.checks if c.name == "camera")
    assert camera.ok and "read a code: the door would say Denied" in camera.detail, camera.detail
    assert "clock" in camera.detail.split("Denied", 1)[1]
