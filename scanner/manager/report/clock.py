"""Times as the report shows them.

The log stores UTC; the page shows the event's time zone (or the one asked
for) and says which. Every time is rounded to the nearest second the same
way, so one scan shows one second in every table and on the time control.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ...errors import ConfigError


def zone_named(tz: str) -> tzinfo:
    """The time zone called ``tz`` (an IANA name); :class:`ConfigError` if unknown."""
    if tz == "UTC":
        return UTC
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise ConfigError(f"unknown time zone {tz!r}: use a name like Europe/London") from err


def parse_utc(ts: str | None) -> datetime | None:
    """A stored time as an aware UTC datetime; None for none or nonsense."""
    if not ts:
        return None
    try:
        when = datetime.fromisoformat(ts)
    except ValueError:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


class Clock:
    """Shows stored UTC times in the report's time zone."""

    def __init__(self, zone: tzinfo, name: str, *, event_zone: bool = False) -> None:
        self.zone = zone
        self.name = name
        self.event_zone = event_zone

    def parse(self, ts: str | None) -> datetime | None:
        when = parse_utc(ts)
        return when.astimezone(self.zone) if when else None

    def show(self, ts: str | None, *, date: bool = True) -> str:
        """``ts`` to the nearest second, as the timeline's moves round it too:
        one scan shows the same second in every section."""
        when = self.parse(ts)
        if when is None:
            return ts or ""
        when = (when + timedelta(microseconds=500_000)).replace(microsecond=0)
        return when.strftime("%Y-%m-%d %H:%M:%S" if date else "%H:%M:%S")

    def hour(self, key: str) -> datetime | None:
        """A ``YYYY-MM-DDTHH`` UTC hour from SQL, as an aware datetime."""
        try:
            return datetime.strptime(key, "%Y-%m-%dT%H").replace(tzinfo=UTC)
        except ValueError:
            return None

    def offsets(self, start: datetime, end: datetime) -> list[list[int]]:
        """[UTC second, offset in seconds] from ``start`` on, one per change:
        the page's script turns times to and from this zone with them alone."""

        def offset(at: datetime) -> int:
            return int((at.astimezone(self.zone).utcoffset() or timedelta(0)).total_seconds())

        out = [[int(start.timestamp()), offset(start)]]
        at = start
        while at < end:
            step = min(at + timedelta(hours=1), end)
            if offset(step) != offset(at):
                low, high = at, step  # the change is in (low, high]: find its second
                while high - low > timedelta(seconds=1):
                    mid = low + (high - low) / 2
                    low, high = (low, mid) if offset(mid) != offset(low) else (mid, high)
                out.append([int(high.timestamp()), offset(high)])
            at = step
        return out
