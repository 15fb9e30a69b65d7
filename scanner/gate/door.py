"""The door's own rules: the guard's override, the door contact, the tamper switch.

Two small state machines, pure in the h11 sense: they are told what
happened and when (seconds on the loop's monotonic clock) and answer with
values; the scan loop does the logging, signalling and drawing.

:class:`OverrideDesk`: the guard's button and ``scanner admit`` admit the
*last denied* person only, and only within ``window`` seconds of that denial
(30 s by default: long enough to look at a face and hear the tour manager,
too short to admit somebody who walked off minutes ago). A denial is let in
at most once: a second press within ``hold_off`` seconds is the same
override (answered, not logged again); a later press is refused until
somebody else is denied. Every denial may be overridden, a forged or
revoked pass included: a guard may have to let in a performer whose pass
broke, and refusing would only push the admission off the record. The row
says what the pass was, and the report lists every override by gate.

:class:`DoorWatch`: the door-position contact and the case's tamper switch,
as access-control doors report them. The door opening without a grant in
the last ``open_window`` seconds is *forced*; open for longer than
``held_open_seconds`` is *held open*; the case's switch opening is
*tamper*. Each is an event for the log and a fault while it lasts (the
alarm pattern, a line in the status); the door closing (or the lid going
back on) ends it, and that is an event too. Ordinary openings after a
grant are not logged: the scan row already says who went through.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..core.decision import Decision
from .timing import HOLD_OFF_SECONDS, OVERRIDE_SECONDS

__all__ = ["DoorEvent", "DoorWatch", "LastDenial", "OverrideDesk"]


# -- the override --------------------------------------------------------------------


@dataclass
class LastDenial:
    """The last denied presentation at this door: what an override would admit."""

    row_id: str
    decision: Decision
    code_sha256: str | None
    at: float  # monotonic seconds
    let_in_at: float | None = None  # when an override admitted it
    let_in_by: str | None = None


@dataclass
class OverrideDesk:
    """Which denial an override may admit (see the module doc)."""

    window: float = OVERRIDE_SECONDS
    hold_off: float = HOLD_OFF_SECONDS
    last: LastDenial | None = None

    def denied(self, row_id: str, decision: Decision, code_sha256: str | None, now: float) -> None:
        """A presentation was denied (and logged as row ``row_id``)."""
        self.last = LastDenial(row_id, decision, code_sha256, now)

    def take(self, now: float) -> tuple[LastDenial | None, str | None]:
        """(the denial to admit, None) or (None, why not); (denial, "again") for a
        second press within the hold-off, which admits nobody new."""
        last = self.last
        if last is None:
            return None, "nobody has been denied at this door since the gate started"
        if last.let_in_at is not None:
            if now - last.let_in_at <= self.hold_off:
                return last, "again"
            return None, (
                f"the last denied person was already let in by {last.let_in_by} "
                f"{_ago(now - last.let_in_at)} ago; nobody has been denied since"
            )
        age = now - last.at
        if age > self.window:
            return None, (
                f"the last denial was {_ago(age)} ago; an override must follow within "
                f"{_ago(self.window)}: hold the pass up again first"
            )
        return last, None

    def admitted(self, denial: LastDenial, by: str, now: float) -> None:
        """The override of ``denial`` is on disk."""
        denial.let_in_at = now
        denial.let_in_by = by


@dataclass
class NoiseBurst:
    """Codes that are not passes of this event (a screen of junk, a poster),
    collapsed (see :class:`~scanner.gate.scan_loop.ScanLoop`): the first one
    of a burst is logged and signalled as any denial; the rest, until
    ``quiet`` seconds pass without one, are only counted, and the count goes
    into one gate event when the burst ends. Two seconds: a screen of junk
    shows a code every frame, while the next guest's phone comes up later
    than that, and gets their own row and signal."""

    quiet: float = 2.0
    first_row: str | None = None
    started: float = 0.0
    last: float = 0.0
    codes: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.first_row is not None

    def open(self, row_id: str, reason: str, now: float) -> None:
        self.first_row, self.started, self.last = row_id, now, now
        self.codes, self.reasons = 1, {reason: 1}

    def more(self, reason: str, now: float, n: int = 1) -> None:
        self.last = now
        self.codes += n
        self.reasons[reason] = self.reasons.get(reason, 0) + n

    def lasts(self, now: float) -> bool:
        """Whether a code that is not a pass at ``now`` still belongs to this burst."""
        return self.active and now - self.last <= self.quiet

    def close(self) -> dict[str, Any] | None:
        """The burst's summary for the gate's events, if it had more than its first code."""
        if self.first_row is None:
            return None
        summary = None
        if self.codes > 1:
            summary = {
                "first": self.first_row,
                "codes": self.codes,
                "seconds": round(self.last - self.started, 1),
                **{f"reason_{k}": v for k, v in sorted(self.reasons.items())},
            }
        self.first_row, self.codes, self.reasons = None, 0, {}
        return summary


def _ago(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    return f"{seconds} s" if seconds < 120 else f"{seconds // 60} min"


# -- the door's sensors ------------------------------------------------------------------


@dataclass(frozen=True)
class DoorEvent:
    """Something the door reported: an event for the log (``kind`` and
    ``detail``), and the faults it raises (name: message) or clears (name: None)."""

    kind: str
    faults: dict[str, str | None]
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class DoorWatch:
    """The door contact and tamper switch (see the module doc). ``door_open``
    and ``case_open`` are None when that sensor is not fitted."""

    held_open_seconds: float = 30.0
    open_window: float = 5.0  # a grant lets the door open within this many seconds
    door_open: bool | None = None
    case_open: bool | None = None
    _opened_at: float | None = None
    _forced: bool = False
    _held: bool = False
    _last_grant: float | None = None

    def start(
        self, now: float, *, door_open: bool | None, case_open: bool | None
    ) -> list[DoorEvent]:
        """The sensors as found at start: an open case is tamper at once; an
        open door is timed from now (nobody knows how it was opened)."""
        self.door_open = door_open
        self._opened_at = now if door_open else None
        self.case_open = None if case_open is None else False
        return self.case(True, now) if case_open else []

    def granted(self, now: float) -> None:
        """The gate granted a pass (or a guard overrode a denial): the door may open."""
        self._last_grant = now

    def door(self, is_open: bool, now: float) -> list[DoorEvent]:
        """The door contact changed."""
        if self.door_open is None or is_open == self.door_open:
            return []
        self.door_open = is_open
        if is_open:
            self._opened_at = now
            grant = self._last_grant
            if grant is not None and 0 <= now - grant <= self.open_window:
                return []
            self._forced = True
            since = (
                "no pass had been granted"
                if grant is None
                else f"the last grant was {_ago(now - grant)} before"
            )
            return [
                DoorEvent(
                    "door_forced",
                    {"door_forced": f"the door was opened without a grant ({since})"},
                    {"after_grant_seconds": None if grant is None else round(now - grant, 1)},
                )
            ]
        seconds = 0.0 if self._opened_at is None else now - self._opened_at
        alarms = {"door_forced": self._forced, "door_held_open": self._held}
        ended = [name for name, on in alarms.items() if on]
        self._forced = self._held = False
        self._opened_at = None
        if not ended:
            return []
        return [
            DoorEvent(
                "door_closed",
                dict.fromkeys(ended),
                {"open_seconds": round(seconds, 1), "ended": ended},
            )
        ]

    def tick(self, now: float) -> list[DoorEvent]:
        """Time passes: a door open too long is held open."""
        if not self.door_open or self._held or self._opened_at is None:
            return []
        seconds = now - self._opened_at
        if seconds <= self.held_open_seconds:
            return []
        self._held = True
        message = f"the door has been open for more than {_ago(self.held_open_seconds)}"
        return [
            DoorEvent(
                "door_held_open", {"door_held_open": message}, {"open_seconds": round(seconds, 1)}
            )
        ]

    def case(self, is_open: bool, now: float) -> list[DoorEvent]:
        """The tamper switch changed."""
        if self.case_open is None or is_open == self.case_open:
            return []
        self.case_open = is_open
        if is_open:
            return [DoorEvent("tamper", {"tamper": "the case has been opened"})]
        return [DoorEvent("tamper_cleared", {"tamper": None})]

    def state(self) -> dict[str, str]:
        """The sensors as the status shows them (only those fitted)."""
        out = {}
        if self.door_open is not None:
            out["door"] = "open" if self.door_open else "closed"
        if self.case_open is not None:
            out["case"] = "open" if self.case_open else "closed"
        return out
