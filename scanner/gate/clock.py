"""Time, treated as hostile.

A Raspberry Pi 4 or older has no battery-backed clock: offline, its clock
after boot can be hours or days off. A gate must notice rather than admit
on a wrong time. :class:`ClockGuard` (pure) keeps a *floor*, the newest time
the gate knows has already happened: the policy's signing time, the image's
build time, the last logged scan, a signed time setting, and the newest time
it has seen while running. A wall clock below the floor, which is also what a
jump backwards looks like, is untrusted until it has caught up again.

The clock itself is a port: :class:`SystemClock` on the gate and
:class:`FakeClock` for tests and demos.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

__all__ = ["ClockGuard", "ClockState", "FakeClock", "SystemClock", "read_build_time"]


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
class ClockState:
    trusted: bool
    floor: datetime
    reason: str  # empty when trusted


class ClockGuard:
    """Decides whether wall-clock readings can be believed.

    ``tolerance`` absorbs small corrections (NTP slews, RTC drift).
    """

    def __init__(self, floor: datetime, *, tolerance: timedelta = timedelta(seconds=5)) -> None:
        self.floor = floor
        self.tolerance = tolerance

    def raise_floor(self, when: datetime) -> None:
        """Something signed or logged says ``when`` has happened."""
        if when > self.floor:
            self.floor = when

    def check(self, now: datetime) -> ClockState:
        """Whether ``now`` is believable; a believable ``now`` raises the floor."""
        if now + self.tolerance < self.floor:
            behind = self.floor - now
            return ClockState(
                False,
                self.floor,
                f"the clock reads {now:%Y-%m-%d %H:%M:%S}Z, {_human(behind)} before a time "
                "this gate has already seen",
            )
        self.raise_floor(now)
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
