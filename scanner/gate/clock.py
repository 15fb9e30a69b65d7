"""Time, treated as hostile, and never a reason to lock a gate out for good.

A Raspberry Pi 4 or older has no battery-backed clock: offline, its clock
after boot can be hours or days off. A gate must notice rather than admit
on a wrong time. :class:`ClockGuard` (pure) keeps a *floor*, the newest time
the gate knows has already happened: the policy's signing time, the image's
build time, the last scan logged on a trusted clock, a signed time setting,
and the newest time it has seen while running. A wall clock below the floor,
which is also what a jump backwards looks like, is untrusted until it has
caught up again.

The floor must never lock a gate out for good, so what may raise it is
bounded by a *ceiling*: the curfew of the policy in force plus
:data:`CEILING_MARGIN` (a signed bound: nobody is admitted after curfew
anyway), or, with no policy, :data:`HORIZON` after the image's build time.
A far-future RTC reading, a scan row written on a wrong clock or a policy
signed on a laptop with a wrong clock count for nothing beyond it, and a
wall clock beyond it is untrusted too. Below the ceiling a wrong time can
still raise the floor; a technician then brings a signed time setting that
*lowers* it (``scanner update time --lower-floor``): the gate records a
:class:`FloorReset`, after which the times between the new floor and the old
one count as evidence of nothing (except the image's build time and what the
clock shows from then on).

The clock itself is a port: :class:`SystemClock` on the gate and
:class:`FakeClock` for tests and demos.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

__all__ = [
    "CEILING_MARGIN",
    "FLOOR_STATE",
    "HORIZON",
    "RESET_STATE",
    "ClockGuard",
    "ClockState",
    "FakeClock",
    "FloorReset",
    "SystemClock",
    "floor_ceiling",
    "read_build_time",
    "starting_floor",
]

CEILING_MARGIN = timedelta(days=1)
HORIZON = timedelta(days=730)  # an image older than this needs a policy to believe a clock
EPOCH = datetime.fromtimestamp(0, UTC)
FLOOR_STATE = "clock_floor"  # state-table keys in the scan log
RESET_STATE = "clock_floor_reset"


class SystemClock:
    """The machine's wall clock and monotonic clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


class FakeClock:
    """A clock that moves only when told to (thread-safe)."""

    def __init__(self, start: datetime) -> None:
        self._now = start
        self._mono = 1000.0
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += timedelta(seconds=seconds)
            self._mono += seconds

    def set(self, when: datetime) -> None:
        """Set the wall clock (as a person or a bad RTC would); monotonic time goes on."""
        with self._lock:
            self._now = when


@dataclass(frozen=True)
class FloorReset:
    """A signed time setting lowered the floor from ``before`` to ``at``:
    times in (``at``, ``before``] seen until then are evidence of nothing."""

    at: datetime
    before: datetime
    sequence: int = 0  # the time setting's sequence, for the log

    def discredits(self, when: datetime) -> bool:
        return self.at < when <= self.before

    def to_state(self) -> dict[str, Any]:
        from ..core.signed import format_utc

        return {
            "at": format_utc(self.at),
            "before": format_utc(self.before),
            "sequence": self.sequence,
        }

    @classmethod
    def from_state(cls, value: Any) -> FloorReset | None:
        """Read a saved reset; None if there is none or it is not readable."""
        from ..core.signed import parse_utc

        if not isinstance(value, dict):
            return None
        try:
            sequence = value.get("sequence", 0)
            return cls(
                parse_utc(str(value["at"])),
                parse_utc(str(value["before"])),
                sequence if isinstance(sequence, int) else 0,
            )
        except (KeyError, ValueError):
            return None


def floor_ceiling(curfew: datetime | None, build: datetime | None) -> datetime | None:
    """The latest time that may count towards the floor (None: no bound known)."""
    if curfew is not None:
        return curfew + CEILING_MARGIN
    if build is not None:
        return build + HORIZON
    return None


def starting_floor(
    *,
    build: datetime | None,
    sources: Iterable[datetime | None],
    ceiling: datetime | None,
    reset: FloorReset | None,
) -> datetime:
    """The floor a gate starts with: the image's build time, and each other
    source unless it lies beyond ``ceiling`` or was discredited by ``reset``."""
    floor = build or EPOCH
    if reset is not None:
        floor = max(floor, reset.at)
    for when in sources:
        if when is None or (ceiling is not None and when > ceiling):
            continue
        if reset is not None and reset.discredits(when):
            continue
        floor = max(floor, when)
    return floor


@dataclass(frozen=True)
class ClockState:
    trusted: bool
    floor: datetime
    reason: str  # empty when trusted


class ClockGuard:
    """Decides whether wall-clock readings can be believed.

    ``tolerance`` absorbs small corrections (NTP slews, RTC drift).
    ``ceiling`` says, each time it is asked, the latest believable time (see
    the module docstring); ``resets`` says the newest signed lowering of the
    floor, which the guard follows as soon as it appears.
    """

    def __init__(
        self,
        floor: datetime,
        *,
        tolerance: timedelta = timedelta(seconds=5),
        ceiling: Callable[[], datetime | None] = lambda: None,
        resets: Callable[[], FloorReset | None] = lambda: None,
    ) -> None:
        self.floor = floor
        self.tolerance = tolerance
        self.ceiling = ceiling
        self.resets = resets
        self.reset = resets()

    def _follow_resets(self) -> None:
        reset = self.resets()
        if reset is not None and reset != self.reset:
            self.reset = reset
            self.floor = reset.at

    def raise_floor(self, when: datetime) -> bool:
        """Something signed or logged says ``when`` has happened. It counts
        only up to the ceiling and outside a discredited span; True if the
        floor rose."""
        self._follow_resets()
        ceiling = self.ceiling()
        if ceiling is not None and when > ceiling:
            return False
        if self.reset is not None and self.reset.discredits(when):
            return False
        if when > self.floor:
            self.floor = when
            return True
        return False

    def check(self, now: datetime) -> ClockState:
        """Whether ``now`` is believable; a believable ``now`` raises the floor."""
        self._follow_resets()
        ceiling = self.ceiling()
        if ceiling is not None and now - self.tolerance > ceiling:
            return ClockState(
                False,
                self.floor,
                f"the clock reads {now:%Y-%m-%d %H:%M:%S}Z, {_human(now - ceiling)} after the "
                "latest time this gate can believe (the policy's curfew plus a day, or two "
                "years after the image was built)",
            )
        if now + self.tolerance < self.floor:
            behind = self.floor - now
            return ClockState(
                False,
                self.floor,
                f"the clock reads {now:%Y-%m-%d %H:%M:%S}Z, {_human(behind)} before a time "
                "this gate has already seen",
            )
        self.floor = max(self.floor, now if ceiling is None else min(now, ceiling))
        return ClockState(True, self.floor, "")


def _human(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


def read_build_time(path: Path) -> datetime | None:
    """The image's build time (one ISO 8601 line), if the file is there and sane."""
    try:
        text = path.read_text(encoding="ascii").strip()
        when = datetime.fromisoformat(text)
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return when.astimezone(UTC) if when.tzinfo else None
