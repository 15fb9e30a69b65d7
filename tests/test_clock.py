"""A clock that is behind what the gate has already seen is not trusted, and no
wrong time, however far ahead, can lock a gate out for good."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from scanner.gate.clock import (
    CEILING_MARGIN,
    HORIZON,
    ClockGuard,
    FakeClock,
    FloorReset,
    floor_ceiling,
    read_build_time,
    starting_floor,
)

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


# -- a wrong time never locks a gate out for good -------------------------------------

CURFEW = datetime(2026, 12, 6, 0, 0, tzinfo=UTC)


def test_readings_beyond_the_events_curfew_and_a_day_neither_count_nor_raise_the_floor():
    guard = ClockGuard(FLOOR, ceiling=lambda: floor_ceiling(CURFEW, None))
    state = guard.check(datetime(2099, 1, 1, tzinfo=UTC))
    assert not state.trusted and "after the latest time this gate can believe" in state.reason
    assert not guard.raise_floor(CURFEW + timedelta(days=2))  # a policy signed on a fast laptop
    assert guard.floor == FLOOR
    assert guard.check(FLOOR + timedelta(minutes=1)).trusted  # the clock is right again


def test_without_a_policy_the_horizon_runs_from_the_image_build_time():
    build = datetime(2026, 11, 1, tzinfo=UTC)
    assert floor_ceiling(None, build) == build + HORIZON
    assert floor_ceiling(CURFEW, build) == CURFEW + CEILING_MARGIN
    assert floor_ceiling(None, None) is None


def test_the_starting_floor_ignores_unbelievable_and_discredited_times():
    build = datetime(2026, 11, 1, tzinfo=UTC)
    ceiling = floor_ceiling(CURFEW, build)
    wrong = CURFEW + timedelta(hours=12)  # believable, but wrong
    assert starting_floor(build=build, sources=[wrong, None], ceiling=ceiling, reset=None) == wrong
    reset = FloorReset(at=FLOOR, before=wrong)
    assert starting_floor(build=build, sources=[wrong], ceiling=ceiling, reset=reset) == FLOOR
    later = wrong + timedelta(minutes=5)  # seen after the reset: counts again
    assert starting_floor(build=build, sources=[later], ceiling=ceiling, reset=reset) == later
    far = datetime(2099, 1, 1, tzinfo=UTC)
    assert starting_floor(build=build, sources=[far], ceiling=ceiling, reset=None) == build


def test_a_guard_follows_a_signed_lowering_as_soon_as_it_is_recorded():
    high = CURFEW + timedelta(hours=12)
    recorded: list[FloorReset] = []
    guard = ClockGuard(high, resets=lambda: recorded[-1] if recorded else None)
    assert not guard.check(FLOOR).trusted
    recorded.append(FloorReset(at=FLOOR - timedelta(minutes=1), before=high))
    assert guard.check(FLOOR).trusted
    assert not guard.raise_floor(high)  # the wrong time is evidence of nothing now


def test_the_configured_tolerance_is_the_one_the_gate_uses(gate_dir, tmp_path):
    from dataclasses import replace

    from scanner.gate.daemon import clock_guard, open_policy_store
    from scanner.record.log import ScanLog

    from .test_gate_daemon import config_for

    config = config_for(gate_dir)
    with ScanLog(config.paths.db, gate="door-1") as log:
        store = open_policy_store(config, state=log)
        behind = clock_guard(config, log, store).floor - timedelta(seconds=60)
        assert not clock_guard(config, log, store).check(behind).trusted
        lenient = replace(config, clock=replace(config.clock, tolerance_seconds=120))
        assert clock_guard(lenient, log, store).check(behind).trusted
