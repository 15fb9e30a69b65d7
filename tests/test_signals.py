"""What the door shows, read off gpiozero's mock pins."""

from __future__ import annotations

import io
import time

import pytest
from gpiozero.pins.mock import MockFactory

from scanner.core.decision import SignalClass
from scanner.gate.signals import PATTERNS, DoorSignals, PinConfig, PrintingMockFactory

PINS = PinConfig(green=17, red=27, buzzer=22, strike=23, strike_seconds=0.3)


@pytest.fixture
def factory():
    factory = MockFactory()
    yield factory
    factory.reset()


def changes(factory, pin):
    """The on/off values a pin went through, ignoring the starting low."""
    return [s.state for s in factory.pin(pin).states][1:]


def beeps(steps):
    out, prev = [], False
    for seconds, _g, _r, b in steps:
        if b and not prev:
            out.append(seconds)
        elif b and prev:
            out[-1] += seconds
        prev = b
    return out


def test_every_decision_class_has_a_pattern():
    for signal in SignalClass:
        assert signal.value in PATTERNS


def test_only_a_grant_is_one_short_beep_and_green():
    for name, steps in PATTERNS.items():
        one_short = beeps(steps) == [0.1]
        shows_green = any(g for _s, g, _r, _b in steps)
        if name == "granted":
            assert one_short and not any(r for _s, _g, r, _b in steps)
        else:
            assert not one_short, name
            if name in {"not_here", "time", "already_inside", "forged", "fault", "usb_failed"}:
                assert not shows_green, name


def test_denials_sound_different_from_each_other():
    sounds = {
        name: tuple(beeps(PATTERNS[name]))
        for name in ("granted", "not_here", "time", "already_inside", "forged", "fault")
    }
    assert len(set(sounds.values())) == len(sounds)


def test_a_grant_lights_green_beeps_once_and_pulses_the_strike(factory):
    with DoorSignals(factory, PINS) as door:
        door.show("granted")
        assert door.wait_idle(5)
        time.sleep(0.1)
        assert changes(factory, 17) == [True, False]
        assert changes(factory, 22) == [True, False]
        assert changes(factory, 27) == []
        assert changes(factory, 23) == [True, False]  # unlocked, then locked by itself


def test_already_inside_is_red_with_three_beeps(factory):
    with DoorSignals(factory, PINS) as door:
        door.show("already_inside")
        assert door.wait_idle(5)
        assert changes(factory, 27) == [True, False]
        assert changes(factory, 22) == [True, False] * 3
        assert changes(factory, 17) == []
        assert changes(factory, 23) == []


def test_show_returns_at_once(factory):
    with DoorSignals(factory, PINS) as door:
        start = time.monotonic()
        door.show("forged")
        assert time.monotonic() - start < 0.5  # the pattern itself takes 2 s


def test_a_fault_blinks_red_while_idle_and_never_green(factory):
    with DoorSignals(factory, PINS) as door:
        door.set_faults(frozenset({"camera"}))
        deadline = time.monotonic() + 5
        while changes(factory, 27).count(True) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert changes(factory, 27).count(True) >= 2
        assert changes(factory, 17) == []


def test_close_leaves_everything_off_and_can_be_called_twice(factory):
    door = DoorSignals(factory, PINS)
    door.show("granted")
    time.sleep(0.05)
    door.close()
    door.close()
    for pin in (17, 22, 23, 27):
        assert factory.pin(pin).state is False


def test_mock_gpio_prints_each_pin_change_with_a_timestamp():
    out = io.StringIO()
    factory = PrintingMockFactory(out)
    with DoorSignals(factory, PinConfig()) as door:
        door.show("granted")
        door.wait_idle(5)
    lines = out.getvalue().splitlines()
    assert any("device=green" in line and "state=on" in line for line in lines)
    assert all(line.startswith("ts=20") for line in lines)


def test_two_devices_on_one_pin_are_refused(factory):
    from scanner.errors import SignalError

    with pytest.raises(SignalError, match="share a pin"):
        DoorSignals(factory, PinConfig(green=17, red=17))


def test_without_a_pi_auto_says_once_what_it_tried_instead_of_a_flood_of_warnings(
    monkeypatch, recwarn
):
    """selftest or run on a laptop: gpiozero falls back through every factory,
    warning each time; the gate says it once, in its error, and no warning
    reaches the terminal."""
    import warnings

    from gpiozero import Device
    from gpiozero.exc import PinFactoryFallback

    from scanner.errors import SignalError
    from scanner.gate.signals import open_pin_factory

    def no_gpio():
        warnings.warn(PinFactoryFallback("Falling back from lgpio: No module named 'lgpio'"),
                      stacklevel=1)
        warnings.warn(PinFactoryFallback("Falling back from native: no Pi revision"),
                      stacklevel=1)
        raise RuntimeError("Unable to load any default pin factory!")

    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    monkeypatch.setattr(Device, "_default_pin_factory", staticmethod(no_gpio))
    with pytest.raises(SignalError) as err:
        open_pin_factory("auto")
    assert "tried: Falling back from lgpio" in str(err.value)
    assert "without a Pi use --gpio mock" in str(err.value)
    assert not [w for w in recwarn if issubclass(w.category, PinFactoryFallback)]


def test_a_whole_night_of_signals_keeps_only_the_last_few_in_memory(factory):
    """Thousands of scans a night: what the door remembers of them stays small."""
    from scanner.gate.signals import RECENT_SHOWN

    with DoorSignals(factory, PINS) as door:
        for i in range(5 * RECENT_SHOWN):
            door.show("granted" if i % 2 else "not_here")
        assert len(door.shown) == RECENT_SHOWN
        assert door.shown[-1] == "granted"
