"""The venue as the report sees it: the policy's, or a flat one without it.

Where a gate stands, where a granted scan leaves its holder and how long a
walk between two scans takes are the core's rules
(:func:`~scanner.core.venue_view.door_of`,
:func:`~scanner.core.venue_view.place_after`,
:func:`~scanner.core.venue_view.walk_between`), the ones the gates and the
live view apply, so the report after the show agrees with them. This module
only chooses the venue they run on: without a policy every zone the log
names stands alone and every two gates are :data:`DEFAULT_WALK_SECONDS`
apart.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace
from datetime import timedelta

from ...core.policy import OUTSIDE, Policy, Venue
from ...core.venue_view import ScanPlace, door_of, place_after, walk_between

DEFAULT_WALK_SECONDS = 120.0  # between any two gates, when no policy says better


class Layout:
    """The venue, the gates' roster and the copy check's walks for one report."""

    def __init__(
        self, policy: Policy | None, walk_seconds: float | None, zones_seen: Iterable[str]
    ) -> None:
        if policy is not None:
            venue, self.roster = policy.places, dict(policy.gates)
        else:
            venue, self.roster = Venue(tuple(sorted(set(zones_seen)))), {}
            if walk_seconds is None:
                walk_seconds = DEFAULT_WALK_SECONDS
        if walk_seconds:
            venue = replace(venue, walk_default=timedelta(seconds=walk_seconds))
        self.venue = venue
        self.checks_copies = walk_seconds != 0
        self.from_policy = policy is not None

    def door(self, gate: str | None, zone: str | None, door: str | None) -> str | None:
        """The door a scan happened at (:func:`~scanner.core.venue_view.door_of`)."""
        return door_of(self.venue, self.roster, gate, zone, door)

    def after(
        self, gate: str | None, zone: str | None, direction: str | None, door: str | None
    ) -> str:
        """Where a granted scan at this gate leaves its holder
        (:func:`~scanner.core.venue_view.place_after`)."""
        return place_after(self.venue, self.roster, gate, zone, direction, door)

    def walk_between(self, first: ScanPlace, then: ScanPlace) -> float | None:
        """Seconds one person needs between two scans (None: never a copy)."""
        walk = walk_between(self.venue, self.roster, first, then)
        return None if walk is None else walk.total_seconds()

    @property
    def longest_walk(self) -> float:
        return self.venue.longest_walk.total_seconds()

    def zone_tree(self, seen: Iterable[str]) -> list[tuple[str, int]]:
        """Every zone (the venue's, then any others the log names) with its
        depth, each followed by the zones within it."""
        zones = list(self.venue.zones)
        zones += sorted(set(seen) - set(zones) - {OUTSIDE})
        known = set(zones)
        children: dict[str | None, list[str]] = defaultdict(list)
        for zone in zones:
            parent = self.venue.within.get(zone)
            children[parent if parent in known else None].append(zone)
        out: list[tuple[str, int]] = []

        def walk(parent: str | None, depth: int) -> None:
            for zone in children[parent]:
                out.append((zone, depth))
                walk(zone, depth + 1)

        walk(None, 0)
        return out

    def enclosing(self, zone: str) -> tuple[str, ...]:
        """``zone`` and every zone around it; nothing for OUTSIDE."""
        return () if zone == OUTSIDE else self.venue.enclosing(zone)
