"""A clock that is behind what the gate has already seen is not trusted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from scanner.gate.clock import ClockGuard, FakeClock, read_build_time

FLOOR = datetime(2026, 12, 5, 18, 0, tzinfo=UTC)


def test_a_clock_below_the_floor_is_untrusted():
    guard = ClockGuard(FLOOR)
    state = guard.check(FLOOR - timedelta(hours=3))
    assert not state.trusted
    assert "3 h before" in state.reason


def test_a_clock_at_or_after_the_floor_is_trusted_and_raises_it():
    guard = ClockGuard(FLOOR)
    later = FLOOR + timedelta(minutes=10)
    assert guard.check(later).trusted
    assert guard.floor == later


def test_a_jump_backwards_makes_the_clock_untrusted_until_it_catches_up():
    clock = FakeClock(FLOOR)
    guard = ClockGuard(FLOOR)
    clock.advance(600)
    assert guard.check(clock.now()).trusted
    clock.set(FLOOR)  # someone sets the clock back ten minutes
    assert not guard.check(clock.now()).trusted
    clock.advance(601)
    assert guard.check(clock.now()).trusted


def test_small_corrections_are_tolerated():
    guard = ClockGuard(FLOOR, tolerance=timedelta(seconds=5))
    assert guard.check(FLOOR - timedelta(seconds=3)).trusted


def test_the_build_time_file_is_read_when_sane(tmp_path):
    good = tmp_path / "build-time"
    good.write_text("2026-11-20T10:00:00Z\n")
    assert read_build_time(good) == datetime(2026, 11, 20, 10, tzinfo=UTC)
    bad = tmp_path / "bad"
    bad.write_text("yesterday")
    assert read_build_time(bad) is None
    assert read_build_time(tmp_path / "missing") is None
