"""The show's schedule and its phases, and the on-site correction of them.

Phases follow the event policy's schedule: ``before`` from ``opens`` (load-in)
until ``show_start``, ``during`` until ``show_end``, ``after`` until
``curfew``; outside that window there is no phase and nobody is admitted. The
photo window is the first ``photo_window_minutes`` of the show.

Shows run late, so the crew can correct the phase on site with a
:class:`PhaseOverride`: "the show is on since 20:25" (``during``, which also
starts the photo window then), "the show is over" (``after``), or "not
started yet" (``before``). An override never stretches the event window: a
pass is still refused before ``opens`` and after ``curfew``, which only a new
signed policy can move. The daemon stores the override and hands it to
:func:`phase_at`; this module does no I/O and reads no clock.

An event may run over several show days (a festival, a run of shows, an
all-nighter into the next morning): each day is a :class:`Schedule` of its
own, and :func:`day_at` says which one is on. Between two days nobody is
admitted, as after a curfew; an override holds only on the day it was set.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

__all__ = [
    "Phase",
    "PhaseOverride",
    "PhaseState",
    "Schedule",
    "day_at",
    "phase_at",
    "phases_reached",
]


class Phase(StrEnum):
    BEFORE = "before"
    DURING = "during"
    AFTER = "after"


@dataclass(frozen=True)
class Schedule:
    opens: datetime
    doors: datetime
    show_start: datetime
    show_end: datetime
    curfew: datetime
    photo_window: timedelta

    def __post_init__(self) -> None:
        order = [
            ("opens", self.opens),
            ("doors", self.doors),
            ("show_start", self.show_start),
            ("show_end", self.show_end),
            ("curfew", self.curfew),
        ]
        for (name_a, a), (name_b, b) in itertools.pairwise(order):
            if a.tzinfo is None or b.tzinfo is None:
                raise ValueError(
                    f"schedule.{name_a if a.tzinfo is None else name_b} needs an offset"
                )
            if b < a:
                raise ValueError(f"schedule.{name_b} ({b.isoformat()}) is before {name_a}")
        if self.show_end <= self.show_start:
            raise ValueError("schedule.show_end must be after show_start")
        if self.photo_window < timedelta(0):
            raise ValueError("schedule.photo_window_minutes must not be negative")


@dataclass(frozen=True)
class PhaseOverride:
    """The crew's correction: ``phase`` holds from ``since`` on."""

    phase: Phase
    since: datetime


@dataclass(frozen=True)
class PhaseState:
    """The phase at one moment; ``phase`` is None outside the event window."""

    phase: Phase | None
    photo_window: bool
    overridden: bool

    @property
    def label(self) -> str:
        if self.phase is None:
            return "outside"
        return "during (photo window)" if self.photo_window else self.phase.value

    @property
    def phrase(self) -> str:
        """The phase as words: 'before the show', 'during the show'... (the photo
        window is part of the show: a denial names the whole phase)."""
        if self.phase is None:
            return "outside the event"
        return f"{self.phase.value} the show"


def phase_at(schedule: Schedule, at: datetime, override: PhaseOverride | None = None) -> PhaseState:
    """The phase at ``at``, honouring an on-site ``override`` set at or before it."""
    if at < schedule.opens or at >= schedule.curfew:
        return PhaseState(None, False, False)
    if override is not None and schedule.opens <= override.since <= at:  # set on this day
        in_window = override.phase is Phase.DURING and at < override.since + schedule.photo_window
        return PhaseState(override.phase, in_window, True)
    if at < schedule.show_start:
        return PhaseState(Phase.BEFORE, False, False)
    if at < schedule.show_end:
        in_window = at < schedule.show_start + schedule.photo_window
        return PhaseState(Phase.DURING, in_window, False)
    return PhaseState(Phase.AFTER, False, False)


def day_at(days: Sequence[Schedule], at: datetime) -> Schedule:
    """The show day that is on at ``at``: the one whose opens..curfew holds
    it, else the next to come, else the last (``days`` in order)."""
    for day in days:
        if at < day.curfew:
            return day
    return days[-1]


def phases_reached(
    days: Sequence[Schedule], not_before: datetime | None, not_after: datetime | None
) -> tuple[frozenset[Phase], bool]:
    """The phases a validity window ``[not_before, not_after)`` overlaps on
    any of the show ``days``, and whether it reaches a photo window (None is
    open-ended)."""

    def overlaps(start: datetime, end: datetime) -> bool:
        return (not_before is None or not_before < end) and (
            not_after is None or not_after > start
        )

    reached: set[Phase] = set()
    photo = False
    for day in days:
        spans = {
            Phase.BEFORE: (day.opens, day.show_start),
            Phase.DURING: (day.show_start, day.show_end),
            Phase.AFTER: (day.show_end, day.curfew),
        }
        reached |= {p for p, (a, b) in spans.items() if overlaps(a, b)}
        photo = photo or (
            day.photo_window > timedelta(0)
            and overlaps(day.show_start, day.show_start + day.photo_window)
        )
    return frozenset(reached), photo
