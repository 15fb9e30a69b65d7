"""Signals out: the green and red LEDs, the buzzer and the door strike.

What the door shows is data: :data:`PATTERNS` maps each signal to a timeline
of (seconds, green, red, buzzer) steps. They follow access-control reader
practice and are told apart by rhythm and sound as well as colour, so a
colour-blind guard, or one looking away, never mistakes a denial for a grant:

=================  ====================================  ======================
signal             lights                                sound
=================  ====================================  ======================
ready              green, red, green, red flashes        two chirps
granted            green, steady 1.5 s                   one short beep
not_here           red, steady 1.5 s                     one long beep
time               red, steady 1.5 s                     two medium beeps
already_inside     red, steady 1.5 s                     three short beeps
forged             red, fast flashing 2 s                a 1.5 s alarm buzz
suspected_copy     red flashes 2 s                       short-long-short-long beeps
fault (a scan)     red, slow blinks                      three long beeps
fault (idle)       red, one short blink every 2 s        silent
alarm (idle)       red, two short blinks every 2 s       two chirps with them
usb_done           green, three slow blinks              two short beeps
usb_failed         red, three fast blinks                one very long beep
=================  ====================================  ======================

A grant is the only signal with a single short beep and the only steady
green. Patterns play on a background thread: :meth:`DoorSignals.show`
returns at once, a newer signal replaces the one playing, and between
signals the door rests in its idle state (dark, or the fault blink while a
fault is active; the alarm blink, which chirps, while the door is forced or
held open or the case is open). The strike relay, when fitted, gets a timed pulse on a
grant and falls back to locked by itself. Every signal started, and every
change of the idle state, is reported by name to ``on_signal`` (the daemon
logs one line each), so the journal and the demo say what the door showed
even when a newer signal cut an older one short.

The inputs live here too, as gpiozero buttons on the same factory: the
guard's override button, the door-position contact and the case's tamper
switch (each optional). Contacts are wired to ground with the pin pulled
up, closed in the safe state (door shut, lid on), so a cut wire reads as
open: an alarm, never a quiet door.

Hardware is reached only through a gpiozero pin factory chosen at start:
the real one on a Pi, ``MockFactory`` for ``--gpio mock`` and in tests, and
:class:`PrintingMockFactory` for ``--gpio mock-pins``, which also prints
every pin change with a timestamp.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import entry_points
from typing import Any, TextIO

from gpiozero import LED, Button, Buzzer, Device, DigitalOutputDevice, Factory
from gpiozero.exc import GPIOZeroError, PinFactoryFallback
from gpiozero.pins.mock import MockFactory, MockPin

from ..core.reading import above, rule, within
from ..errors import SignalError
from .timing import OVERRIDE_SECONDS

__all__ = [
    "ALARM_FAULTS",
    "DESCRIPTIONS",
    "IDLE_ALARM",
    "IDLE_FAULT",
    "PATTERNS",
    "DoorSignals",
    "PinConfig",
    "PrintingMockFactory",
    "describe",
    "open_pin_factory",
]

Step = tuple[float, bool, bool, bool]  # seconds, green, red, buzzer

G, R, B, _ = True, True, True, False


def _beeps(
    count: int, on: float, off: float, *, green: bool, red: bool, total: float
) -> tuple[Step, ...]:
    steps: list[Step] = []
    for i in range(count):
        steps.append((on, green, red, B))
        if i < count - 1:
            steps.append((off, green, red, _))
    used = count * on + (count - 1) * off
    steps.append((max(total - used, 0.05), green, red, _))
    return tuple(steps)


def _flashes(
    count: int, on: float, off: float, *, green: bool, red: bool, buzz_first: float = 0.0
) -> tuple[Step, ...]:
    steps: list[Step] = []
    for i in range(count):
        steps.append((on, green, red, buzz_first > 0 and i * (on + off) < buzz_first))
        steps.append((off, _, _, buzz_first > 0 and i * (on + off) + on < buzz_first))
    return tuple(steps)


PATTERNS: Mapping[str, tuple[Step, ...]] = {
    "ready": ((0.15, G, _, B), (0.15, _, R, _), (0.15, G, _, B), (0.15, _, R, _)),
    "granted": ((0.1, G, _, B), (1.4, G, _, _)),
    "not_here": _beeps(1, 0.7, 0.0, green=_, red=R, total=1.5),
    "time": _beeps(2, 0.3, 0.2, green=_, red=R, total=1.5),
    "already_inside": _beeps(3, 0.08, 0.08, green=_, red=R, total=1.5),
    "forged": _flashes(10, 0.1, 0.1, green=_, red=R, buzz_first=1.5),
    # a genuine pass just used at another door: its own rhythm, never the forged buzz
    "suspected_copy": (
        (0.1, _, R, B),
        (0.1, _, _, _),
        (0.5, _, R, B),
        (0.15, _, _, _),
        (0.1, _, R, B),
        (0.1, _, _, _),
        (0.5, _, R, B),
        (0.45, _, _, _),
    ),
    "fault": (
        (0.4, _, R, B),
        (0.2, _, _, _),
        (0.4, _, R, B),
        (0.2, _, _, _),
        (0.4, _, R, B),
        (0.4, _, _, _),
    ),
    "usb_done": (
        *_beeps(2, 0.08, 0.12, green=G, red=_, total=0.3),
        (0.3, _, _, _),
        (0.3, G, _, _),
        (0.3, _, _, _),
        (0.3, G, _, _),
    ),
    "usb_failed": (
        (1.2, _, R, B),
        (0.1, _, _, _),
        (0.1, _, R, _),
        (0.1, _, _, _),
        (0.1, _, R, _),
        (0.1, _, _, _),
    ),
}
IDLE_FAULT: tuple[Step, ...] = ((0.2, _, R, _), (1.8, _, _, _))
# the door's alarms: heard as well as seen, as a door prop or forced alarm is
IDLE_ALARM: tuple[Step, ...] = ((0.12, _, R, B), (0.12, _, _, _), (0.12, _, R, B), (1.64, _, _, _))
ALARM_FAULTS = frozenset({"door_forced", "door_held_open", "tamper"})
IDLE_OK: tuple[Step, ...] = ((1.0, _, _, _),)

# What each pattern looks and sounds like, in the README's words: what the
# journal and the demo print, so a person reading them knows what the door did.
DESCRIPTIONS: Mapping[str, str] = {
    "ready": "green, red, green, red flashes, two chirps",
    "granted": "green steady 1.5 s, one short beep",
    "not_here": "red steady 1.5 s, one long beep",
    "time": "red steady 1.5 s, two medium beeps",
    "already_inside": "red steady 1.5 s, three short beeps",
    "forged": "red fast flashing 2 s, 1.5 s alarm buzz",
    "suspected_copy": "red flashes 2 s, short-long-short-long beeps",
    "fault": "red slow blinks, three long beeps",
    "usb_done": "green, three slow blinks, two short beeps",
    "usb_failed": "red, three fast blinks, one very long beep",
}
IDLE_DESCRIPTIONS = {
    "ok": "dark",
    "fault": "red blink every 2 s, silent",
    "alarm": "red double blink every 2 s, two chirps",
}


def _idle_kind(faults: frozenset[str]) -> str:
    return "alarm" if faults & ALARM_FAULTS else "fault" if faults else "ok"


def describe(name: str) -> str:
    """``granted: green steady 1.5 s, one short beep``."""
    return f"{name}: {DESCRIPTIONS[name]}"


BCM_PIN = within(0, 27, "a BCM pin number")


def override_window(value: float) -> float:
    """The override's window: long enough to look at a face and hear the tour
    manager; short enough that the button cannot admit somebody who walked
    away minutes ago."""
    if not 5 <= value <= 120:
        raise ValueError(f"{value} is not between 5 and 120 seconds")
    return value


@dataclass(frozen=True)
class PinConfig:
    """BCM pin numbers; ``strike``, ``show_switch`` and the door's inputs
    (``admit_button``, ``door_contact``, ``tamper``) are optional. As
    ``[gpio]`` in ``scanner.toml``, read by :func:`scanner.core.reading.read`."""

    green: int = field(default=17, metadata=rule(BCM_PIN))
    red: int = field(default=27, metadata=rule(BCM_PIN))
    buzzer: int = field(default=22, metadata=rule(BCM_PIN))
    strike: int | None = field(default=None, metadata=rule(BCM_PIN))
    strike_seconds: float = field(default=3.0, metadata=rule(above(0)))
    strike_active_high: bool = True
    show_switch: int | None = field(default=None, metadata=rule(BCM_PIN))
    # the guard's override: admit the last denied person
    admit_button: int | None = field(default=None, metadata=rule(BCM_PIN))
    # closed (low) while the door is shut
    door_contact: int | None = field(default=None, metadata=rule(BCM_PIN))
    tamper: int | None = field(default=None, metadata=rule(BCM_PIN))  # low while the case is shut
    # the door open longer than this: an alarm
    held_open_seconds: float = field(default=30.0, metadata=rule(above(0), expect="seconds"))
    # how long after a denial it may follow
    override_seconds: float = field(
        default=OVERRIDE_SECONDS, metadata=rule(override_window, expect="seconds")
    )

    def inputs(self) -> dict[str, int]:
        """The input pins that are fitted, by name."""
        named = {
            "show-switch": self.show_switch,
            "admit-button": self.admit_button,
            "door-contact": self.door_contact,
            "tamper": self.tamper,
        }
        return {k: v for k, v in named.items() if v is not None}

    def used(self) -> list[int]:
        """Every pin fitted, outputs then inputs (two devices must not share one)."""
        outputs = [self.green, self.red, self.buzzer, self.strike]
        return [p for p in outputs if p is not None] + list(self.inputs().values())


# -- pin factories -------------------------------------------------------------


class PrintingMockPin(MockPin):
    """A mock pin that also prints each change, for ``--gpio mock-pins``."""

    def _change_state(self, value: bool) -> bool:
        changed: bool = super()._change_state(value)
        if changed:
            factory = self.factory
            if isinstance(factory, PrintingMockFactory):
                factory.report(self, value)
        return changed


class PrintingMockFactory(MockFactory):  # type: ignore[misc]
    """gpiozero's MockFactory, printing every pin change with a timestamp
    (``--gpio mock-pins``)."""

    def __init__(self, out: TextIO | None = None) -> None:
        super().__init__(pin_class=PrintingMockPin)
        self.out = out or sys.stdout
        self.labels: dict[str, str] = {}
        self._lock = threading.Lock()

    def report(self, pin: MockPin, value: bool) -> None:
        ts = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        name = str(pin.info.name)
        label = self.labels.get(name, name)
        with self._lock:
            print(
                f"ts={ts} event=pin device={label} pin={name} state={'on' if value else 'off'}",
                file=self.out,
                flush=True,
            )


def open_pin_factory(kind: str = "auto") -> Factory:
    """The pin factory for ``kind``.

    ``mock`` records pin changes silently (also chosen by ``auto`` when
    GPIOZERO_PIN_FACTORY=mock; the daemon prints each signal by name),
    ``mock-pins`` also prints every pin change (for checking wiring
    patterns), ``auto`` lets gpiozero pick the real one (lgpio on a Pi), and
    any other name is a gpiozero factory such as ``lgpio``.
    """
    if kind == "auto" and os.environ.get("GPIOZERO_PIN_FACTORY", "").lower() == "mock":
        kind = "mock"
    if kind == "mock-pins":
        return PrintingMockFactory()
    if kind in ("mock", "mock-quiet"):
        return MockFactory()
    tried: list[str] = []
    try:
        with warnings.catch_warnings(record=True) as fallbacks:
            # gpiozero warns once per factory it falls back from: said once, below
            warnings.simplefilter("always", PinFactoryFallback)
            if kind == "auto":
                factory: Factory = Device._default_pin_factory()
                return factory
            for entry in entry_points(group="gpiozero_pin_factories"):
                if entry.name == kind:
                    factory = entry.load()()
                    return factory
    except Exception as err:  # gpiozero raises many kinds when no GPIO is present
        tried = [str(w.message) for w in fallbacks if issubclass(w.category, PinFactoryFallback)]
        why = f"; tried: {'; '.join(tried)}" if tried else ""
        raise SignalError(
            f"gpio: cannot open pin factory {kind!r} ({err}{why}); without a Pi use --gpio mock"
        ) from err
    raise SignalError(f"gpio: {kind!r} is not a gpiozero pin factory; try auto, lgpio or mock")


RECENT_SHOWN = 64  # signals kept for a look, at most


# -- the door ------------------------------------------------------------------


class DoorSignals:
    """Drives the LEDs, buzzer and strike from a background thread."""

    def __init__(
        self,
        factory: Factory,
        pins: PinConfig = PinConfig(),
        patterns: Mapping[str, tuple[Step, ...]] = PATTERNS,
        *,
        on_signal: Callable[[str, str], None] | None = None,
    ) -> None:
        self.patterns = patterns
        # told of every signal as it starts (name, description) and of every
        # change of the idle state ("idle", description): the journal's record
        # of what the door showed, one line each, none dropped
        self.on_signal = on_signal
        self.pins = pins
        chosen = pins.used()
        if len(set(chosen)) != len(chosen):
            raise SignalError(f"gpio: two devices share a pin ({chosen})")
        self._devices: list[Any] = []
        try:
            self.green = self._add(LED(pins.green, pin_factory=factory), "green", factory)
            self.red = self._add(LED(pins.red, pin_factory=factory), "red", factory)
            self.buzzer = self._add(Buzzer(pins.buzzer, pin_factory=factory), "buzzer", factory)
            self.strike = None
            if pins.strike is not None:
                self.strike = self._add(
                    DigitalOutputDevice(
                        pins.strike,
                        active_high=pins.strike_active_high,
                        initial_value=False,
                        pin_factory=factory,
                    ),
                    "strike",
                    factory,
                )
            self.show_switch = None
            if pins.show_switch is not None:
                self.show_switch = self._add(
                    Button(pins.show_switch, pull_up=True, bounce_time=0.05, pin_factory=factory),
                    "show-switch",
                    factory,
                )
            self.admit_button = self._input(pins.admit_button, "admit-button", factory)
            self.door_contact = self._input(pins.door_contact, "door-contact", factory)
            self.tamper_switch = self._input(pins.tamper, "tamper", factory)
        except (GPIOZeroError, ValueError, OSError) as err:
            self.close()
            raise SignalError(f"gpio: cannot set up the door's pins: {err}") from err
        self._cond = threading.Condition()
        self._pattern: tuple[Step, ...] | None = None
        self._pattern_name: str | None = None
        self._pattern_started = 0.0
        self._faults: frozenset[str] = frozenset()
        self._strike_until = 0.0
        self._closed = False
        # the last signals shown, in order (for a look while debugging): bounded, so
        # a night of scans never grows it
        self.shown: deque[str] = deque(maxlen=RECENT_SHOWN)
        self._thread = threading.Thread(target=self._run, name="door signals", daemon=True)
        self._thread.start()

    def _input(self, pin: int | None, label: str, factory: Factory) -> Any:
        if pin is None:
            return None
        return self._add(
            Button(pin, pull_up=True, bounce_time=0.05, pin_factory=factory), label, factory
        )

    def _add(self, device: Any, label: str, factory: Factory) -> Any:
        self._devices.append(device)
        if isinstance(factory, PrintingMockFactory):
            factory.labels[str(device.pin.info.name)] = label
        return device

    # -- what the loop calls (never blocks) --

    def show(self, name: str) -> None:
        """Play a pattern now, replacing any that is playing."""
        steps = self.patterns[name]
        with self._cond:
            self._pattern = steps
            self._pattern_name = name
            self._pattern_started = time.monotonic()
            if name == "granted" and self.strike is not None:
                self._strike_until = self._pattern_started + self.pins.strike_seconds
            self.shown.append(name)
            self._cond.notify_all()
        if self.on_signal is not None:
            self.on_signal(name, DESCRIPTIONS.get(name, name))

    def set_faults(self, faults: frozenset[str]) -> None:
        """The faults now active; any fault puts the idle state into the fault blink."""
        with self._cond:
            if faults == self._faults:
                return
            was = _idle_kind(self._faults)
            self._faults = faults
            self._cond.notify_all()
        now = _idle_kind(faults)
        if self.on_signal is not None and was != now:
            self.on_signal("idle", IDLE_DESCRIPTIONS[now])

    @property
    def faults(self) -> frozenset[str]:
        return self._faults

    def when_show_switch(self, on: Callable[[], None], off: Callable[[], None]) -> None:
        if self.show_switch is not None:
            self.show_switch.when_pressed = on
            self.show_switch.when_released = off

    def when_admit(self, pressed: Callable[[], None]) -> None:
        """Call ``pressed`` (on gpiozero's thread) when the override button is pressed."""
        if self.admit_button is not None:
            self.admit_button.when_pressed = pressed

    def when_door(self, opened: Callable[[], None], closed: Callable[[], None]) -> None:
        """Door-contact changes (on gpiozero's thread): the contact opens with the door."""
        if self.door_contact is not None:
            self.door_contact.when_released = opened
            self.door_contact.when_pressed = closed

    def when_case(self, opened: Callable[[], None], closed: Callable[[], None]) -> None:
        """Tamper-switch changes (on gpiozero's thread): the switch opens with the lid."""
        if self.tamper_switch is not None:
            self.tamper_switch.when_released = opened
            self.tamper_switch.when_pressed = closed

    @property
    def door_is_open(self) -> bool | None:
        """The door contact now: None when none is fitted."""
        return None if self.door_contact is None else not self.door_contact.is_pressed

    @property
    def case_is_open(self) -> bool | None:
        """The tamper switch now: None when none is fitted."""
        return None if self.tamper_switch is None else not self.tamper_switch.is_pressed

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until no pattern is playing (for tests and a clean exit)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pattern is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    # -- the player --

    def _state_at(self, now: float) -> tuple[tuple[bool, bool, bool], float]:
        """Outputs at ``now`` and the time of the next change."""
        if self._pattern is not None:
            t = now - self._pattern_started
            for seconds, g, r, b in self._pattern:
                if t < seconds:
                    return (g, r, b), now + (seconds - t)
                t -= seconds
            self._pattern = None
            self._pattern_name = None
            self._cond.notify_all()
        kind = _idle_kind(self._faults)
        idle = IDLE_ALARM if kind == "alarm" else IDLE_FAULT if kind == "fault" else IDLE_OK
        period = sum(s[0] for s in idle)
        t = now % period
        for seconds, g, r, b in idle:
            if t < seconds:
                return (g, r, b), now + (seconds - t)
            t -= seconds
        return (False, False, False), now + period  # pragma: no cover - float edge

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                (g, r, b), next_change = self._state_at(now)
                self._apply(self.green, g)
                self._apply(self.red, r)
                self._apply(self.buzzer, b)
                if self.strike is not None:
                    self._apply(self.strike, now < self._strike_until)
                    if now < self._strike_until:
                        next_change = min(next_change, self._strike_until)
                self._cond.wait(max(next_change - time.monotonic(), 0.001))

    @staticmethod
    def _apply(device: Any, value: bool) -> None:
        if bool(device.value) != value:
            if value:
                device.on()
            else:
                device.off()

    def close(self) -> None:
        """Everything off, strike locked, pins released; safe to call twice."""
        cond = getattr(self, "_cond", None)
        if cond is not None:
            with cond:
                self._closed = True
                cond.notify_all()
            thread = self._thread
            if thread is not threading.current_thread():
                thread.join(timeout=2.0)
        for device in reversed(getattr(self, "_devices", [])):
            try:
                if hasattr(device, "off"):
                    device.off()
                device.close()
            except GPIOZeroError:
                pass
        self._devices = []

    def __enter__(self) -> DoorSignals:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
