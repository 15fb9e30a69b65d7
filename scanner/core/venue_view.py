"""The venue as the gates see it together: who is where, copies, capacity.

A :class:`VenueView` is fed *sightings*: one scan each, made at this gate or
at a peer, with no holder name (serial, tier, gate, door, zone, direction,
decision, time). It answers who is where, how many people are inside each
zone, which scans look like a copied pass, and, at a door, whether a pass
must be stopped for a reason that only the venue as a whole can know. It is
pure: no I/O, no clock (callers pass the time), no threads (one owner).

The rules are the manager's report's (:mod:`scanner.manager.report`), so the
live view, the gates and the report after the show agree:

- The door of a scan is its own, else the roster's for that gate and zone,
  else the zone's only door in (:func:`door_of`).
- A granted entry puts its holder in the gate's zone; a granted exit puts
  them where the door leads out to (its ``from`` zone), else the zone around,
  else outside (:func:`place_after`). Being inside a zone is being in it or
  in a zone within it. Each person is where their last granted scan put them
  (ordered by time, gate, then the gate's own sequence), so each is counted
  once and the order in which sightings arrive changes nothing.
- A suspected copy is the same pass scanned at two different gates closer in
  time than a person walks between their doors (:meth:`Venue.walk`: 0 at one
  doorway, so an entry and an exit box side by side never raise one).

At a door (:class:`DoorView`), for an entry, in this order:

1. ``suspected_copy``: the pass was let in or out at another gate's door
   more recently than anyone can walk from there, after allowing for the
   two boxes' clocks (a margin, plus the peer's measured offset). Sightings
   made on an untrusted clock never count.
2. ``already_inside``: the pass is inside the zone and has not left through
   any door of it. Only when the view *knows who is inside* the zone: every
   door across the zone's edge has an entry and an exit box on the roster
   (people leaving unscanned cannot be counted), and every gate whose scans
   move people in or out of it (the roster's gates of that zone and of the
   zones within it) is heard from recently, has delivered every scan it
   announced, and has a clock within the allowed offset. Otherwise the gate
   falls back to the timed anti-passback of its own door.
3. ``zone_full``: entering would put more people in a zone (or a zone around
   it that the holder is not yet inside) than its capacity; only when the
   view knows who is inside that zone.

Applying a sighting twice changes nothing: each gate's sequence numbers are
tracked (:class:`SeqSet`), and a (gate, sequence) seen before is ignored.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .keys import key_id, parse_public_key
from .policy import OUTSIDE, GatePlace, Venue

__all__ = [
    "NO_ZONE",
    "CopyPair",
    "DoorView",
    "PeerHealth",
    "ScanPlace",
    "SeqSet",
    "Sighting",
    "VenueView",
    "door_of",
    "place_after",
    "place_before",
    "walk_between",
]

NO_ZONE = "(no zone)"  # where an entry at a gate that logged no zone leaves its holder
RECENT_PER_PASS = 16  # scans of one pass kept for copy checks (a person scans a few times a minute)
OFFSET_SAMPLES = 8


@dataclass(frozen=True)
class Sighting:
    """One scan as the venue sees it: no holder name."""

    id: str
    gate: str
    seq: int
    ts: datetime
    event: str | None
    serial: int | None
    tier: str | None
    zone: str | None
    door: str | None
    direction: str | None
    granted: bool
    reason: str
    clock_trusted: bool = True
    phase: str | None = None
    # the key id of the box that signed it (a peer's scan), None for a gate's own
    signer: str | None = field(default=None, compare=False)

    @property
    def order(self) -> tuple[datetime, str, int]:
        """The report's order of scans: time, then gate, then the gate's own sequence."""
        return (self.ts, self.gate, self.seq)


@dataclass(frozen=True)
class CopyPair:
    """Two scans of one pass at two gates closer in time than the walk between them."""

    first: Sighting
    second: Sighting
    gap: timedelta
    walk: timedelta


class SeqSet:
    """Which sequence numbers of one gate have been applied: every one up to
    :attr:`upto`, and some beyond it (arrived out of order)."""

    def __init__(self) -> None:
        self.upto = 0
        self.beyond: set[int] = set()

    def add(self, seq: int) -> bool:
        """Record ``seq``; False when it was there already."""
        if seq in self:
            return False
        if seq == self.upto + 1:
            self.upto = seq
            while self.upto + 1 in self.beyond:
                self.beyond.remove(self.upto + 1)
                self.upto += 1
        else:
            self.beyond.add(seq)
        return True

    def __contains__(self, seq: object) -> bool:
        return isinstance(seq, int) and (seq <= self.upto or seq in self.beyond)

    def __len__(self) -> int:
        return self.upto + len(self.beyond)

    @property
    def missing(self) -> int:
        """The first sequence number not applied yet."""
        return self.upto + 1


@dataclass
class PeerHealth:
    """What this view last heard from a gate's heartbeat (times on the caller's
    monotonic clock; offsets in seconds, the gate's clock minus ours)."""

    gate: str
    heard: float  # when the newest heartbeat was sent, on our monotonic clock
    head: int  # the last scan the gate says it has written
    clock_trusted: bool = True
    offsets: deque[float] = field(default_factory=lambda: deque(maxlen=OFFSET_SAMPLES))
    detail: Mapping[str, object] = field(default_factory=dict)

    @property
    def offset(self) -> float:
        """The gate's clock minus ours: the sample that travelled fastest
        (each is the true offset minus that message's delay)."""
        return max(self.offsets) if self.offsets else 0.0


def door_of(
    venue: Venue,
    roster: Mapping[str, GatePlace],
    gate: str | None,
    zone: str | None,
    door: str | None,
) -> str | None:
    """The door a scan happened at: its own, the roster's, or the zone's only door."""
    if door:
        return door
    place = roster.get(gate or "")
    if place is not None and place.door and place.zone == zone:
        return place.door
    into = [d.id for d in venue.doors.values() if d.to_zone == zone]
    return into[0] if len(into) == 1 else None


def place_after(
    venue: Venue,
    roster: Mapping[str, GatePlace],
    gate: str | None,
    zone: str | None,
    direction: str | None,
    door: str | None,
) -> str:
    """Where a granted scan at this gate leaves its holder: a zone or OUTSIDE.
    An entry at a gate that logged no zone leaves them in :data:`NO_ZONE`:
    inside, somewhere; an entry never takes anyone out of the venue."""
    if direction != "exit":
        return zone or NO_ZONE
    known = venue.doors.get(door_of(venue, roster, gate, zone, door) or "")
    if known is not None and known.to_zone == zone:
        return known.from_zone
    return venue.within.get(zone or OUTSIDE, OUTSIDE)


def place_before(
    venue: Venue,
    roster: Mapping[str, GatePlace],
    gate: str | None,
    zone: str | None,
    direction: str | None,
    door: str | None,
) -> str:
    """Where a person stands just before a scan at this gate: the side of its
    door they come from (for an exit, the gate's zone, :data:`NO_ZONE` if it
    logged none)."""
    if direction == "exit":
        return zone or NO_ZONE
    known = venue.doors.get(door_of(venue, roster, gate, zone, door) or "")
    if known is not None and known.to_zone == zone:
        return known.from_zone
    return venue.within.get(zone or OUTSIDE, OUTSIDE)


@dataclass(frozen=True)
class ScanPlace:
    """Where a scan happened, as the copy rule needs it."""

    gate: str | None
    zone: str | None
    direction: str | None
    door: str | None
    granted: bool

    @classmethod
    def of(cls, sighting: Sighting) -> ScanPlace:
        s = sighting
        return cls(s.gate, s.zone, s.direction, s.door, s.granted)


def walk_between(
    venue: Venue, roster: Mapping[str, GatePlace], first: ScanPlace, then: ScanPlace
) -> timedelta | None:
    """The least time one person needs between two scans of their pass, or
    None when the pair can never show a copy.

    The path between two scans lies in the zone the first one left its
    holder in, when that is the zone the second one starts from (an entry's
    outer side, an exit's own zone); the policy's walk through that zone
    applies (``[[walks]] through``), else the quickest walk declared between
    the two doors. Let in at one door of a zone, then let out at another
    door of the same zone is a walk inside it, never a copy: whoever leaves
    was inside, and leaving admits nobody."""
    door_a = door_of(venue, roster, first.gate, first.zone, first.door)
    door_b = door_of(venue, roster, then.gate, then.zone, then.door)
    before = place_before(venue, roster, first.gate, first.zone, first.direction, first.door)
    left = (
        place_after(venue, roster, first.gate, first.zone, first.direction, first.door)
        if first.granted
        else before
    )
    starts = place_before(venue, roster, then.gate, then.zone, then.direction, then.door)
    if first.granted and first.direction != "exit" and then.direction == "exit" and (
        left == starts
    ):
        return None
    return venue.walk(door_a, door_b, left if left == starts else None)


def _seconds(delta: timedelta) -> str:
    seconds = max(int(delta.total_seconds()), 0)
    return f"{seconds} s" if seconds < 120 else f"{seconds // 60} min"


class VenueView:
    """Who is where, from every gate's scans of one event (see module doc).

    ``me`` is the gate this view decides for (None for an observer such as
    the live view); ``margin`` is the clock skew allowed between two boxes
    in copy checks; a peer whose clock is further off than ``max_offset``, or
    silent for ``stale_after`` seconds, does not count towards knowing who
    is inside.
    """

    def __init__(
        self,
        venue: Venue,
        roster: Mapping[str, GatePlace],
        event: str,
        *,
        me: str | None = None,
        margin: timedelta = timedelta(seconds=2),
        max_offset: timedelta = timedelta(seconds=5),
        stale_after: float = 10.0,
    ) -> None:
        self.venue = venue
        self.roster = dict(roster)
        self.event = event
        self.me = me
        self.margin = margin
        self.max_offset = max_offset
        self.stale_after = stale_after
        self.applied: dict[str, SeqSet] = {}
        self.health: dict[str, PeerHealth] = {}
        self.link_up = True  # False while this box cannot hear its peers at all
        self.copies: list[CopyPair] = []
        self.sightings = 0
        self.refused = 0  # sightings the roster does not back
        self._keys = {
            gate: key_id(parse_public_key(place.device_key))
            for gate, place in self.roster.items()
            if place.device_key is not None
        }
        self._last: dict[int, Sighting] = {}  # serial: its last granted scan
        self._where: dict[int, str] = {}  # serial: where that scan left its holder
        self._at: Counter[str] = Counter()  # location: people whose last grant put them there
        self._inside: Counter[str] = Counter()  # zone: people in it or in a zone within
        self._recent: dict[int, list[Sighting]] = {}
        self._longest = venue.longest_walk
        self._enclosing: dict[str, tuple[str, ...]] = {OUTSIDE: ()}
        self._uncounted: dict[str, dict[str, str]] = {}

    # -- applying sightings -------------------------------------------------

    def believes(self, sighting: Sighting) -> bool:
        """Whether the roster lets this sighting count: a peer's must come from
        a gate on the roster, at the door, zone and direction the roster gives
        it, and (when its signer is known) be signed by the roster's key for
        that gate. So a box taken off the roster, or replaced, loses its say
        the moment the new policy is in force."""
        if sighting.gate == self.me or not self.roster:
            return True
        place = self.roster.get(sighting.gate)
        if place is None or (sighting.zone, sighting.direction, sighting.door) != (
            place.zone,
            place.direction.value,
            place.door,
        ):
            return False
        return sighting.signer is None or self._keys.get(sighting.gate) == sighting.signer

    def add(self, sighting: Sighting) -> list[CopyPair]:
        """Apply one sighting (idempotent); returns the copy pairs it reveals.
        A sighting the roster does not back (:meth:`believes`) changes nothing."""
        if not self.believes(sighting):
            self.refused += 1
            return []
        seqs = self.applied.setdefault(sighting.gate, SeqSet())
        if not seqs.add(sighting.seq):
            return []
        self.sightings += 1
        if sighting.event != self.event or sighting.serial is None:
            return []
        serial = sighting.serial
        if sighting.granted:
            last = self._last.get(serial)
            if last is None or sighting.order > last.order:
                self._last[serial] = sighting
                self._move(serial, self.after(sighting))
        return self._remember(sighting)

    def add_all(self, sightings: Iterable[Sighting]) -> list[CopyPair]:
        found: list[CopyPair] = []
        for sighting in sightings:
            found += self.add(sighting)
        return found

    def _move(self, serial: int, where: str) -> None:
        old = self._where.get(serial)
        if old == where:
            return
        if old is not None:
            self._at[old] -= 1
            for zone in self.enclosing(old):
                self._inside[zone] -= 1
        self._where[serial] = where
        self._at[where] += 1
        for zone in self.enclosing(where):
            self._inside[zone] += 1

    def _remember(self, sighting: Sighting) -> list[CopyPair]:
        """Keep the pass's recent scans in order and pair the new one with its
        neighbours, as the report pairs consecutive scans."""
        assert sighting.serial is not None
        recent = self._recent.setdefault(sighting.serial, [])
        i = len(recent)
        while i > 0 and recent[i - 1].order > sighting.order:
            i -= 1
        recent.insert(i, sighting)
        found = []
        for a, b in (
            (recent[i - 1] if i > 0 else None, sighting),
            (sighting, recent[i + 1] if i + 1 < len(recent) else None),
        ):
            if a is None or b is None or a.gate == b.gate:
                continue
            gap = abs(b.ts - a.ts)
            walk = self.walk(a, b)
            if walk is not None and gap < walk:
                pair = CopyPair(a, b, gap, walk)
                self.copies.append(pair)
                found.append(pair)
        newest = recent[-1].ts
        while len(recent) > RECENT_PER_PASS or (
            len(recent) > 1 and newest - recent[0].ts > self._longest + self.margin * 4
        ):
            recent.pop(0)
        return found

    # -- places -------------------------------------------------------------

    def enclosing(self, where: str) -> tuple[str, ...]:
        found = self._enclosing.get(where)
        if found is None:
            found = self._enclosing[where] = self.venue.enclosing(where)
        return found

    def door(self, sighting: Sighting) -> str | None:
        return door_of(self.venue, self.roster, sighting.gate, sighting.zone, sighting.door)

    def after(self, sighting: Sighting) -> str:
        return place_after(
            self.venue,
            self.roster,
            sighting.gate,
            sighting.zone,
            sighting.direction,
            sighting.door,
        )

    def walk(self, a: Sighting, b: Sighting) -> timedelta | None:
        """The least time between two scans of one pass (``a`` the earlier),
        or None when the pair never shows a copy (:func:`walk_between`)."""
        return walk_between(self.venue, self.roster, ScanPlace.of(a), ScanPlace.of(b))

    def where(self, serial: int) -> str:
        """Where the pass's last granted scan left its holder (OUTSIDE if never let in)."""
        return self._where.get(serial, OUTSIDE)

    def last_grant(self, serial: int) -> Sighting | None:
        return self._last.get(serial)

    def inside(self, zone: str) -> int:
        """People inside ``zone``: in it or in a zone within it, each counted once."""
        return self._inside[zone]

    def people(self) -> dict[int, str]:
        """Every pass let in and not (yet) outside, with where it is."""
        return {s: w for s, w in self._where.items() if w != OUTSIDE}

    def occupancy(self) -> dict[str, int]:
        return {zone: self._inside[zone] for zone in self.venue.zones}

    # -- peers --------------------------------------------------------------

    def heard(
        self,
        gate: str,
        *,
        head: int,
        offset: float,
        at: float,
        clock_trusted: bool = True,
        detail: Mapping[str, object] | None = None,
    ) -> PeerHealth:
        """A heartbeat from ``gate`` arrived at ``at`` (monotonic): it has
        written scans up to ``head``; ``offset`` is one sample of its clock
        minus ours, in seconds."""
        health = self.health.get(gate)
        if health is None:
            health = self.health[gate] = PeerHealth(gate, at, head)
        health.offsets.append(offset)
        # A heartbeat held back on the way arrives with a smaller offset than
        # the fastest one: it was sent that much earlier. The peer counts as
        # heard when it *sent* its newest news, so withholding heartbeats and
        # releasing them late cannot keep a silent peer looking current.
        delay = max(0.0, health.offset - offset)
        health.heard = max(health.heard, at - delay) if health.offsets else at
        health.head = max(health.head, head)
        health.clock_trusted = clock_trusted
        if detail is not None:
            health.detail = detail
        return health

    def lagging(self, gate: str, now: float) -> str | None:
        """Why the view cannot count on ``gate`` right now, or None."""
        if gate == self.me:
            return None
        if not self.link_up:
            return "out of reach (no broker)"
        health = self.health.get(gate)
        if health is None:
            return "not heard from"
        if now - health.heard > self.stale_after:
            return f"silent for {_seconds(timedelta(seconds=now - health.heard))}"
        if not health.clock_trusted:
            return "its clock is untrusted"
        if abs(health.offset) > self.max_offset.total_seconds():
            return f"its clock is {abs(health.offset):.0f} s off"
        applied = self.applied.get(gate)
        have = applied.upto if applied is not None else 0
        if have < health.head:
            return f"{health.head - have} of its scans not here yet"
        return None

    def gates_of(self, zone: str) -> list[str]:
        """The roster's gates whose scans move people in or out of ``zone``."""
        return sorted(g for g, p in self.roster.items() if zone in self.enclosing(p.zone))

    def uncounted(self, zone: str) -> dict[str, str]:
        """Doors across ``zone``'s edge that no box scans both ways (by door, why):
        who passes them unscanned cannot be counted. From the roster alone."""
        found = self._uncounted.get(zone)
        if found is not None:
            return found
        found = {}
        crossing = [
            d
            for d in self.venue.doors.values()
            if (zone in self.enclosing(d.from_zone)) != (zone in self.enclosing(d.to_zone))
        ]
        boxes = {(p.door, p.direction.value) for p in self.roster.values()}
        for d in crossing:
            missing = [way for way in ("entry", "exit") if (d.id, way) not in boxes]
            if missing:
                found[f"door {d.id}"] = f"no {' or '.join(missing)} box on the roster"
        if not crossing:  # no doors declared: the zone's own boxes must scan both ways
            ways = {p.direction.value for p in self.roster.values() if p.zone == zone}
            for way in ("entry", "exit"):
                if way not in ways:
                    found[f"zone {zone}"] = f"no {way} box on the roster"
        self._uncounted[zone] = found
        return found

    def unknown_for(self, zone: str, now: float) -> dict[str, str]:
        """Doors and gates that keep this view from knowing who is inside
        ``zone`` (by name, why); empty when it knows."""
        out = dict(self.uncounted(zone))
        for gate in self.gates_of(zone):
            why = self.lagging(gate, now)
            if why is not None:
                out[gate] = why
        return out

    def offset_of(self, gate: str) -> float:
        health = self.health.get(gate)
        return health.offset if health is not None else 0.0

    def at_door(self, zone: str, door: str | None, now: float) -> DoorView:
        """This view as the gate ``me`` at ``door`` into ``zone`` sees it at ``now``."""
        return DoorView(self, zone, door, now)


@dataclass(frozen=True)
class DoorView:
    """The venue view at one door and moment: what :func:`~scanner.core.decision.decide`
    asks (see the module doc for the order of the checks)."""

    view: VenueView
    zone: str
    door: str | None
    now: float  # monotonic, for how fresh each peer is

    @property
    def knows_who_is_inside(self) -> bool:
        return not self.view.unknown_for(self.zone, self.now)

    def check(
        self, serial: int, at: datetime, *, anti_passback: bool = True
    ) -> tuple[str, str] | None:
        """(reason, why) when the venue stops this pass entering here, else None."""
        view = self.view
        copy = self._copy(serial, at)
        if copy is not None:
            return copy
        where = view.where(serial)
        if anti_passback and self.zone in view.enclosing(where) and self.knows_who_is_inside:
            last = view.last_grant(serial)
            came = ""
            if last is not None:
                door = view.door(last) or last.gate
                came = f" (let in at {door} {_seconds(at - last.ts)} ago, and has not left)"
            return "already_inside", f"already inside {self.zone}{came}"
        for zone in view.enclosing(self.zone):
            cap = view.venue.capacity.get(zone)
            if cap is None or zone in view.enclosing(where):
                continue
            if view.inside(zone) >= cap and not view.unknown_for(zone, self.now):
                return "zone_full", (
                    f"{zone} is full ({view.inside(zone)} of {cap} inside); "
                    "wait until someone leaves"
                )
        return None

    def _copy(self, serial: int, at: datetime) -> tuple[str, str] | None:
        view = self.view
        closest: tuple[timedelta, Sighting, timedelta] | None = None
        here = ScanPlace(view.me, self.zone, "entry", self.door, True)
        for seen in view._recent.get(serial, ()):
            if not seen.granted or seen.gate == view.me or not seen.clock_trusted:
                continue
            walk = walk_between(view.venue, view.roster, ScanPlace.of(seen), here)
            if walk is None:
                continue
            gap = abs(at - seen.ts)
            slack = view.margin + timedelta(seconds=abs(view.offset_of(seen.gate)))
            if gap + slack < walk and (closest is None or gap < closest[0]):
                closest = (gap, seen, walk)
        if closest is None:
            return None
        gap, seen, walk = closest
        where = view.door(seen) or seen.gate
        went = "out" if seen.direction == "exit" else "in"
        return "suspected_copy", (
            f"this pass was let {went} at {where} ({seen.gate}) {_seconds(gap)} ago, and "
            f"nobody walks from there in under {_seconds(walk)}: suspected copy; check the "
            "holder's name and face"
        )
