"""The event policy: who may go where, and when, as data.

An organizer writes the policy as TOML (see ``config/example-event.toml``):
the event, the venue's zones, the schedule, and one table per tier naming
the zones it opens in each phase (``before``, ``during``, ``after``) and in
the photo window. ``"*"`` means every zone and ``"!zone"`` takes one away,
so "everywhere but the dressing rooms" reads as it is said. A tier with
``requires_zones = true`` (staff) admits only to the zones printed on the
pass; on any other pass, explicit zones replace the tier's zones while the
tier still decides *when*.

The organizer signs the policy (``scanner policy sign``) into a
:mod:`signed <scanner.core.signed>` document. A gate only ever builds a
:class:`Policy` from a verified document: :func:`open_policy` refuses one that
is unsigned, altered, signed by a key it does not trust, or for another event.
Every mistake in the TOML is reported with the key that holds it
(``tiers.working.before: unknown zone 'dresing-rooms'``).

Besides the access table, the policy describes the venue (which zone sits
inside which, the doors between zones, how long a walk between two doors
takes, and zone capacities), the roster of gates (which box guards which
door, in which direction), the re-entry window for anti-passback, and the
keys that exports are encrypted to. A roster entry may carry the box's
device key (``device_key = "ed25519:..."``, from its ``device.pub``): then
the gates trust scans shared by that box, and by no other. Times in the TOML may be written without
an offset: they are read in the event's time zone when the policy is signed,
and an offset that does not fit that zone on that day is refused, so the
signed policy always holds unambiguous times. No I/O here.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from ..errors import MalformedError, PolicyError, SignatureError
from .keys import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
    key_id,
    parse_public_key,
    public_key_text,
)
from .passes import EVENT_TAG_BYTES, TIER_TAG_BYTES, ZONE_TAG_BYTES, id_tag, key_tag
from .schedule import Phase, PhaseState, Schedule, day_at
from .signed import SignedDocument, open_document, sign_document
from .untrusted import parse_toml, time_zone

__all__ = [
    "OUTSIDE",
    "POLICY_KIND",
    "BrokerPlan",
    "Direction",
    "Door",
    "GatePlace",
    "Policy",
    "Tier",
    "Venue",
    "local_time",
    "open_policy",
    "parse_policy",
    "policy_body_from_toml",
    "sign_policy",
]

POLICY_KIND = "policy"
MAX_POLICY_TOML = 256 * 1024
ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
SLOTS = ("before", "during", "after", "photo_window")
GATE_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}")
AGE_RECIPIENT = re.compile(r"age1[02-9ac-hj-np-z]{58}")
BROKER_PASSWORD_HASH = re.compile(r"\$7\$[1-9][0-9]{0,6}\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==")
BROKER_PORT = 8883  # MQTT over TLS
MAX_BROKER_CA = 8192
OUTSIDE = "outside"  # where a door from no zone of the venue leads from
DEFAULT_WALK = timedelta(seconds=60)
DEFAULT_REENTRY = timedelta(minutes=3)


class Direction(StrEnum):
    """Which way a gate lets people through its door."""

    ENTRY = "entry"
    EXIT = "exit"


@dataclass(frozen=True)
class Door:
    """A doorway from one zone (or from outside the venue) into another."""

    id: str
    from_zone: str  # OUTSIDE for a door from outside the venue
    to_zone: str


@dataclass(frozen=True)
class GatePlace:
    """Where a gate stands: the zone it decides for, its direction and door."""

    id: str | None
    zone: str
    direction: Direction
    door: str | None = None
    device_key: str | None = None  # the box's public device key (ed25519:...), for its peers
    broker_password_hash: str | None = None  # the box's broker login ($7$..., from enrol)
    # keys of boxes this gate had before (a spare took over the door): their
    # exports still merge as this gate's; the venue believes device_key alone
    former_device_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class BrokerPlan:
    """``[broker]``: where the venue's MQTT broker is, and the CA that signed
    its certificate. An address, never a name: a gate's sandbox lets it reach
    that one address, and a DNS answer from the LAN must not choose it."""

    host: str  # an IPv4 or IPv6 address
    port: int
    ca_pem: str

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Venue:
    """The venue's zones, how they nest, its doors and the walks between them."""

    zones: tuple[str, ...]
    within: Mapping[str, str] = field(default_factory=dict)  # zone -> the zone around it
    doors: Mapping[str, Door] = field(default_factory=dict)
    walk_default: timedelta = DEFAULT_WALK
    # (the two doors, the zone the path lies in or None for any path): seconds
    walks: Mapping[tuple[frozenset[str], str | None], timedelta] = field(default_factory=dict)
    capacity: Mapping[str, int] = field(default_factory=dict)

    def enclosing(self, zone: str) -> tuple[str, ...]:
        """``zone`` and every zone around it, innermost first."""
        out = [zone]
        while out[-1] in self.within:
            out.append(self.within[out[-1]])
        return tuple(out)

    def out_of_reach(self, allowed: Iterable[str]) -> dict[str, str]:
        """The zones of ``allowed`` a holder cannot get into when only the
        doors into ``allowed`` zones open for them (leaving is always free),
        each with the zone in the way. With no doors declared, a zone is in
        reach when every zone around it is allowed too."""
        allowed = set(allowed)
        blocked: dict[str, str] = {}
        if not self.doors:
            for zone in allowed:
                around = [z for z in self.enclosing(zone)[1:] if z not in allowed]
                if around:
                    blocked[zone] = around[-1]
            return blocked
        doored = {d.to_zone for d in self.doors.values()}
        inside = {OUTSIDE}
        grew = True
        while grew:
            grew = False
            for zone in allowed - inside:
                outer = self.within.get(zone, OUTSIDE)
                if zone in doored:  # through one of its doors, from where the holder is
                    ways = [d for d in self.doors.values() if d.to_zone == zone]
                    if not any(d.from_zone in inside for d in ways):
                        continue
                elif outer not in inside:  # an open area: in reach from the zone around it
                    continue
                inside.update(self.enclosing(zone))
                grew = True
        for zone in allowed - inside:
            around = [z for z in self.enclosing(zone)[1:] if z not in inside]
            sources = sorted(d.from_zone for d in self.doors.values() if d.to_zone == zone)
            blocked[zone] = around[-1] if around else (sources[0] if sources else zone)
        return blocked

    def walk(
        self, door_a: str | None, door_b: str | None, through: str | None = None
    ) -> timedelta:
        """How long a person needs from one door to another (0 at the same
        door): the ``[[walks]]`` entry for the two doors and the zone the path
        lies in (``through``: a zone or OUTSIDE), else the one for any path
        between them, else ``walk_seconds``. When the path is not known
        (``through`` None), the quickest walk declared between the two doors."""
        if door_a is not None and door_a == door_b:
            return timedelta(0)
        if door_a is None or door_b is None:
            return self.walk_default
        pair = frozenset((door_a, door_b))
        if through is None:  # the path is not known: the quickest walk declared
            declared = [t for (p, _), t in self.walks.items() if p == pair]
            return min(declared) if declared else self.walk_default
        if (pair, through) in self.walks:
            return self.walks[(pair, through)]
        return self.walks.get((pair, None), self.walk_default)

    @property
    def longest_walk(self) -> timedelta:
        return max([self.walk_default, *self.walks.values()])


@dataclass(frozen=True)
class Tier:
    """One tier's row of the access table."""

    id: str
    label: str
    zones: Mapping[Phase, frozenset[str]]
    photo_window: frozenset[str] = frozenset()
    requires_zones: bool = False

    def zones_now(self, state: PhaseState) -> frozenset[str]:
        """The zones this tier opens at the moment described by ``state``."""
        if state.phase is None:
            return frozenset()
        now = self.zones.get(state.phase, frozenset())
        if state.photo_window:
            now = now | self.photo_window
        return now

    @property
    def ever(self) -> frozenset[str]:
        """Every zone this tier opens at some time."""
        out = set(self.photo_window)
        for zones in self.zones.values():
            out |= zones
        return frozenset(out)


@dataclass(frozen=True)
class Policy:
    """A verified event policy. Build it with :func:`open_policy`."""

    event: str
    name: str
    timezone: str
    zones: tuple[str, ...]
    tiers: Mapping[str, Tier]
    schedule: Schedule  # the first show day (the only one of a one-day event)
    revoked: frozenset[int]
    pass_keys: Mapping[str, Ed25519PublicKey]
    signed_at: datetime | None = None
    signer: str | None = None
    venue: Venue | None = None
    gates: Mapping[str, GatePlace] = field(default_factory=dict)
    reentry: timedelta = DEFAULT_REENTRY
    export_recipients: tuple[str, ...] = ()
    broker: BrokerPlan | None = None
    more_days: tuple[Schedule, ...] = ()  # the show days after the first, in order
    _tier_tags: Mapping[bytes, str] = field(default_factory=dict, repr=False, compare=False)
    _zone_tags: Mapping[bytes, str] = field(default_factory=dict, repr=False, compare=False)
    _key_tags: Mapping[bytes, Ed25519PublicKey] = field(
        default_factory=dict, repr=False, compare=False
    )

    @property
    def event_tag(self) -> bytes:
        return id_tag(self.event, EVENT_TAG_BYTES)

    @property
    def pass_keys_by_tag(self) -> Mapping[bytes, Ed25519PublicKey]:
        return self._key_tags

    def tier_for_tag(self, tag: bytes) -> Tier | None:
        name = self._tier_tags.get(tag)
        return self.tiers[name] if name else None

    def zone_for_tag(self, tag: bytes) -> str | None:
        return self._zone_tags.get(tag)

    def with_revocations(self, serials: Iterable[int]) -> Policy:
        """This policy with more revoked serials (from a signed revocation list)."""
        return replace(self, revoked=self.revoked | frozenset(serials))

    @property
    def days(self) -> tuple[Schedule, ...]:
        """Every show day, in order."""
        return (self.schedule, *self.more_days)

    @property
    def opens(self) -> datetime:
        """When the event's first day opens."""
        return self.schedule.opens

    @property
    def curfew(self) -> datetime:
        """The curfew of the event's last day."""
        return self.days[-1].curfew

    def day_at(self, at: datetime) -> Schedule:
        """The show day that is on at ``at`` (else the next, else the last)."""
        return day_at(self.days, at)

    def day_number(self, day: Schedule) -> int:
        """``day``'s number, 1 for the first."""
        return self.days.index(day) + 1

    @property
    def expires(self) -> datetime:
        return self.curfew

    @property
    def places(self) -> Venue:
        """The venue; a policy without a [venue] nesting is a flat one."""
        return self.venue if self.venue is not None else Venue(self.zones)

    def place_gate(
        self,
        gate_id: str,
        *,
        zone: str | None = None,
        direction: Direction | None = None,
        door: str | None = None,
    ) -> GatePlace:
        """Where gate ``gate_id`` stands, checked against this policy.

        With a gate roster, the gate must be on it and what its own files
        say must agree; without one, its zone (and door) must exist. Raises
        :class:`PolicyError` naming what does not fit: a door whose zone is
        misspelt must never start and deny everyone.
        """
        venue = self.places
        if self.gates:
            place = self.gates.get(gate_id)
            if place is None:
                raise PolicyError(
                    f"gate {gate_id!r} is not in the event policy's gate list "
                    f"(gates: {', '.join(sorted(self.gates))})",
                    key="id",
                )
            for name, mine, theirs in (
                ("zone", zone, place.zone),
                ("direction", direction, place.direction),
                ("door", door, place.door),
            ):
                if mine is not None and mine != theirs:
                    raise PolicyError(
                        f"the policy says gate {gate_id!r} has {name} {theirs!r}, "
                        f"this box is set to {mine!r}",
                        key=name,
                    )
            return place
        if door is not None:
            known = venue.doors.get(door)
            if known is None:
                raise PolicyError(
                    f"door {door!r} is not in the event policy "
                    f"(doors: {', '.join(sorted(venue.doors)) or 'none declared'})",
                    key="door",
                )
            if zone is not None and zone != known.to_zone:
                raise PolicyError(
                    f"door {door!r} leads into {known.to_zone!r}, not {zone!r}", key="zone"
                )
            zone = known.to_zone
        if zone is None:
            raise PolicyError(f"gate {gate_id!r}: which zone does this door lead into?", key="zone")
        if zone not in self.zones:
            raise PolicyError(
                f"zone {zone!r} is not in the event policy (zones: {', '.join(self.zones)})",
                key="zone",
            )
        return GatePlace(gate_id, zone, direction or Direction.ENTRY, door)


# -- reading the TOML ------------------------------------------------------


def local_time(value: datetime, zone: ZoneInfo) -> datetime:
    """A wall-clock time without an offset, read in ``zone``. One that does not
    exist there (clocks go forward) or happens twice (clocks go back) is
    refused with :class:`ValueError`, never shifted by an hour in silence."""
    first = value.replace(tzinfo=zone, fold=0)
    second = value.replace(tzinfo=zone, fold=1)
    if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != value:
        raise ValueError(f"{value.isoformat()} does not exist in {zone.key} (clocks go forward)")
    if first.utcoffset() != second.utcoffset():
        raise ValueError(
            f"{value.isoformat()} happens twice in {zone.key} (clocks go back); "
            f"give the offset you mean ({value.isoformat()}{_offset_text(first.utcoffset())} "
            f"or {value.isoformat()}{_offset_text(second.utcoffset())})"
        )
    return first


def _localize(value: datetime, zone: ZoneInfo | None, where: str) -> datetime:
    """A TOML time, with its offset checked against (or taken from) the event's zone."""
    if zone is None:
        if value.tzinfo is None:
            raise PolicyError(f"{where}: {value.isoformat()} needs a UTC offset, e.g. +01:00")
        return value
    if value.tzinfo is None:
        try:
            return local_time(value, zone)
        except ValueError as err:
            raise PolicyError(f"{where}: {err}") from None
    expected = value.astimezone(zone).utcoffset()
    if value.utcoffset() != expected:
        local = value.replace(tzinfo=None).isoformat()
        raise PolicyError(
            f"{where}: the offset {value.isoformat()[19:]} is not {zone.key}'s on "
            f"{value.date().isoformat()} ({_offset_text(expected)}); write {local} "
            f"or {local}{_offset_text(expected)}"
        )
    return value


def _offset_text(offset: timedelta | None) -> str:
    minutes = int((offset or timedelta(0)).total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _jsonable(value: Any, where: str, zone: ZoneInfo | None = None) -> Any:
    """TOML values as JSON values: times become ISO strings with their offset."""
    if isinstance(value, datetime):
        return _localize(value, zone, where).isoformat()
    if isinstance(value, date):
        raise PolicyError(f"{where}: a date alone is not enough; give a time, e.g. 18:00")
    if isinstance(value, dict):
        return {k: _jsonable(v, f"{where}.{k}" if where else k, zone) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v, f"{where}[{i}]", zone) for i, v in enumerate(value)]
    return value


def policy_body_from_toml(text: str) -> dict[str, Any]:
    """Parse policy TOML into the JSON body that gets signed; validates it fully."""
    try:
        data = parse_toml(text.encode("utf-8"), max_bytes=MAX_POLICY_TOML)
    except MalformedError as err:
        raise PolicyError(f"the policy is {err}") from err
    zone: ZoneInfo | None = None
    event = data.get("event")
    if isinstance(event, dict) and isinstance(event.get("timezone"), str):
        try:
            zone = time_zone(event["timezone"])
        except MalformedError as err:
            # before the times, which are read in it: name the zone, not a time
            raise PolicyError(f"event.timezone: {err}") from None
    body = _jsonable(data, "", zone)
    assert isinstance(body, dict)
    parse_policy(body, signer_key=None)  # every mistake is reported now, not at the gate
    return body


def _table(data: Mapping[str, Any], key: str, where: str = "") -> Mapping[str, Any]:
    value = data.get(key)
    path = f"{where}.{key}" if where else key
    if not isinstance(value, dict):
        raise PolicyError(f"{path}: missing table [{path}]")
    return value


def _string(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise PolicyError(f"{where}.{key}: missing or not a string")
    return value


def _ident(value: Any, where: str) -> str:
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise PolicyError(
            f"{where}: {value!r} is not an id (lower-case letters, digits, '-', '.', '_')"
        )
    return value


def _time(data: Mapping[str, Any], key: str, where: str) -> datetime:
    value = data.get(key)
    path = f"{where}.{key}"
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise PolicyError(f"{path}: needs a UTC offset")
        return value
    if not isinstance(value, str):
        raise PolicyError(f"{path}: missing; give an ISO 8601 time with offset")
    try:
        when = datetime.fromisoformat(value)
    except ValueError as err:
        raise PolicyError(f"{path}: {value!r} is not an ISO 8601 time") from err
    if when.tzinfo is None:
        raise PolicyError(f"{path}: {value!r} needs a UTC offset, e.g. +01:00")
    return when


def _check_keys(data: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise PolicyError(f"{where}.{unknown[0]}: unknown key (allowed: {', '.join(allowed)})")


def _zone_set(value: Any, zones: tuple[str, ...], where: str) -> frozenset[str]:
    if not isinstance(value, list):
        raise PolicyError(f"{where}: must be a list of zones")
    chosen: set[str] = set()
    removed: set[str] = set()
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise PolicyError(f"{where}[{i}]: must be a zone id")
        if item == "*":
            chosen |= set(zones)
            continue
        name, target = (item[1:], removed) if item.startswith("!") else (item, chosen)
        if name not in zones:
            raise PolicyError(f"{where}: unknown zone {name!r} (venue zones: {', '.join(zones)})")
        target.add(name)
    return frozenset(chosen - removed)


def _tags_unique(ids: Iterable[str], size: int, what: str) -> dict[bytes, str]:
    out: dict[bytes, str] = {}
    for ident in ids:
        tag = id_tag(ident, size)
        if tag in out:
            raise PolicyError(f"{what} {out[tag]!r} and {ident!r} share a pass tag; rename one")
        out[tag] = ident
    return out


TOP_KEYS = (
    "event",
    "venue",
    "doors",
    "walks",
    "gates",
    "schedule",
    "tiers",
    "rules",
    "revocations",
    "keys",
    "export",
    "broker",
)


def _seconds(value: Any, where: str, *, most: int) -> timedelta:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= most:
        raise PolicyError(f"{where}: a whole number of seconds, 0 to {most}")
    return timedelta(seconds=value)


def _zone_ref(value: Any, zones: tuple[str, ...], where: str, *, outside: bool = False) -> str:
    if outside and value == OUTSIDE:
        return OUTSIDE
    if not isinstance(value, str) or value not in zones:
        extra = f" or {OUTSIDE!r}" if outside else ""
        raise PolicyError(f"{where}: {value!r} is not a zone of the venue{extra}")
    return value


def _parse_venue(body: Mapping[str, Any], zones: tuple[str, ...]) -> Venue:
    """[venue] within/walk_seconds/capacity, [doors.ID] and [[walks]]."""
    venue = _table(body, "venue")
    within: dict[str, str] = {}
    raw_within = venue.get("within", {})
    if not isinstance(raw_within, dict):
        raise PolicyError("venue.within: a table of zone = the zone it sits inside")
    for inner, outer in raw_within.items():
        where = f"venue.within.{inner}"
        _zone_ref(inner, zones, where)
        within[inner] = _zone_ref(outer, zones, where)
    for zone in within:  # no zone may end up inside itself
        seen = {zone}
        outer = within.get(zone)
        while outer is not None:
            if outer in seen:
                raise PolicyError(f"venue.within.{zone}: zones sit inside each other in a circle")
            seen.add(outer)
            outer = within.get(outer)
    walk_default = DEFAULT_WALK
    if "walk_seconds" in venue:
        walk_default = _seconds(venue["walk_seconds"], "venue.walk_seconds", most=3600)
    capacity: dict[str, int] = {}
    raw_capacity = venue.get("capacity", {})
    if not isinstance(raw_capacity, dict):
        raise PolicyError("venue.capacity: a table of zone = how many people it holds")
    for zone, count in raw_capacity.items():
        where = f"venue.capacity.{zone}"
        _zone_ref(zone, zones, where)
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 100_000:
            raise PolicyError(f"{where}: a whole number of people, 1 to 100000")
        capacity[zone] = count

    doors: dict[str, Door] = {}
    raw_doors = body.get("doors", {})
    if not isinstance(raw_doors, dict):
        raise PolicyError("doors: a table of [doors.ID] with from and to")
    for door_id, spec in raw_doors.items():
        where = f"doors.{door_id}"
        _ident(door_id, where)
        if not isinstance(spec, dict):
            raise PolicyError(f"{where}: must be a table with from and to")
        _check_keys(spec, ("from", "to"), where)
        start = _zone_ref(spec.get("from"), zones, f"{where}.from", outside=True)
        end = _zone_ref(spec.get("to"), zones, f"{where}.to")
        if start == end:
            raise PolicyError(f"{where}: a door leads from one zone into another")
        doors[door_id] = Door(door_id, start, end)

    walks: dict[tuple[frozenset[str], str | None], timedelta] = {}
    raw_walks = body.get("walks", [])
    if not isinstance(raw_walks, list):
        raise PolicyError("walks: a list of [[walks]] with doors and seconds")
    for i, spec in enumerate(raw_walks):
        where = f"walks[{i}]"
        if not isinstance(spec, dict):
            raise PolicyError(f"{where}: must be a table with doors and seconds")
        _check_keys(spec, ("doors", "seconds", "through"), where)
        pair = spec.get("doors")
        if not isinstance(pair, list) or len(pair) != 2:
            raise PolicyError(f"{where}.doors: two different doors from [doors]")
        for name in pair:
            if not isinstance(name, str) or name not in doors:
                raise PolicyError(
                    f"{where}.doors: {name!r} is not a door of [doors] "
                    f"(doors: {', '.join(sorted(doors)) or 'none declared'})"
                )
        if pair[0] == pair[1]:
            raise PolicyError(f"{where}.doors: two different doors, not {pair[0]!r} twice")
        through = None
        if "through" in spec:
            through = _zone_ref(spec["through"], zones, f"{where}.through", outside=True)
            sides = {doors[pair[0]].from_zone, doors[pair[0]].to_zone} & {
                doors[pair[1]].from_zone,
                doors[pair[1]].to_zone,
            }
            if through not in sides:
                raise PolicyError(
                    f"{where}.through: a walk between {pair[0]} and {pair[1]} through "
                    f"{through!r} needs both doors to open onto it "
                    f"(they share: {', '.join(sorted(sides)) or 'no zone'})"
                )
        key = (frozenset(pair), through)
        if key in walks:
            raise PolicyError(f"{where}: the walk between {pair[0]} and {pair[1]} is given twice")
        walks[key] = _seconds(spec.get("seconds"), f"{where}.seconds", most=3600)
    return Venue(zones, within, doors, walk_default, walks, capacity)


def _parse_gates(body: Mapping[str, Any], venue: Venue) -> dict[str, GatePlace]:
    """[gates.ID]: the roster of boxes, each with a door or a zone and a direction."""
    raw = body.get("gates", {})
    if not isinstance(raw, dict):
        raise PolicyError("gates: a table of [gates.ID] with door (or zone) and direction")
    gates: dict[str, GatePlace] = {}
    for gate_id, spec in raw.items():
        where = f"gates.{gate_id}"
        if not GATE_ID_PATTERN.fullmatch(gate_id):
            raise PolicyError(f"{where}: {gate_id!r} is not a gate id")
        if not isinstance(spec, dict):
            raise PolicyError(f"{where}: must be a table with door (or zone) and direction")
        _check_keys(
            spec,
            ("door", "zone", "direction", "device_key", "broker_password_hash",
             "former_device_keys"),
            where,
        )  # fmt: skip
        try:
            direction = Direction(spec.get("direction", "entry"))
        except ValueError as err:
            raise PolicyError(f"{where}.direction: entry or exit") from err
        door = spec.get("door")
        if door is not None:
            if door not in venue.doors:
                raise PolicyError(f"{where}.door: {door!r} is not in [doors]")
            zone = venue.doors[door].to_zone
            if "zone" in spec and spec["zone"] != zone:
                raise PolicyError(f"{where}.zone: door {door!r} leads into {zone!r}")
        else:
            zone = _zone_ref(spec.get("zone"), venue.zones, f"{where}.zone")
        hashed = spec.get("broker_password_hash")
        if hashed is not None and (
            not isinstance(hashed, str) or not BROKER_PASSWORD_HASH.fullmatch(hashed)
        ):
            raise PolicyError(
                f"{where}.broker_password_hash: not a broker login (paste the line "
                "scanner venue enrol printed on the box)"
            )
        former = spec.get("former_device_keys", [])
        if not isinstance(former, list) or len(former) > 16:
            raise PolicyError(
                f"{where}.former_device_keys: a list of the keys of boxes this gate had "
                "before (ed25519:...), at most 16"
            )
        formers = tuple(
            str(_device_key(text, f"{where}.former_device_keys[{i}]"))
            for i, text in enumerate(former)
        )
        gates[gate_id] = GatePlace(
            gate_id, zone, direction, door, _device_key(spec.get("device_key"), where), hashed,
            formers,
        )  # fmt: skip
    owners: dict[str, str] = {}
    for place in gates.values():  # one key, one box: a key shared would let one speak as two
        for n, key in enumerate(
            [*([place.device_key] if place.device_key else []), *place.former_device_keys]
        ):
            other = owners.setdefault(key, str(place.id))
            if other != place.id or (n > 0 and key == place.device_key):
                field_ = "device_key" if n == 0 and place.device_key else "former_device_keys"
                raise PolicyError(
                    f"gates.{place.id}.{field_}: the same key as gates.{other}: one box, one gate"
                )
    return gates


def _device_key(value: Any, where: str) -> str | None:
    """A roster entry's device key in its one text form, or None."""
    if value is None:
        return None
    try:
        key = parse_public_key(value if isinstance(value, str) else "")
    except ValueError as err:
        raise PolicyError(f"{where}.device_key: {err} (the box's device.pub)") from err
    return public_key_text(key)


def parse_broker_address(text: str, where: str = "broker.address") -> tuple[str, int]:
    """``IP``, ``IP:PORT`` or ``[IPv6]:PORT`` (port 8883, MQTT over TLS, by default)."""
    text = text.strip()
    host, port = text, ""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise PolicyError(f"{where}: {text!r} is not [IPv6]:PORT")
        port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    try:
        address = ipaddress.ip_address(host)
    except ValueError as err:
        raise PolicyError(
            f"{where}: {host!r} is not an IP address; the broker is named by its address "
            "(a box's sandbox lets it reach that one address, and no DNS answer may choose it)"
        ) from err
    try:
        number = int(port) if port else BROKER_PORT
    except ValueError as err:
        raise PolicyError(f"{where}: the port {port!r} is not a number") from err
    if not 0 < number < 65536:
        raise PolicyError(f"{where}: the port is not 1 to 65535")
    return str(address), number


def _parse_broker(body: Mapping[str, Any]) -> BrokerPlan | None:
    if "broker" not in body:
        return None
    broker = _table(body, "broker")
    _check_keys(broker, ("address", "ca"), "broker")
    address = broker.get("address")
    if not isinstance(address, str):
        raise PolicyError("broker.address: the broker's IP address, e.g. \"192.168.1.10:8883\"")
    host, port = parse_broker_address(address)
    ca = broker.get("ca")
    if not isinstance(ca, str) or len(ca) > MAX_BROKER_CA or "BEGIN CERTIFICATE" not in ca:
        raise PolicyError(
            "broker.ca: the event's broker CA certificate (PEM), as scanner venue ca prints it; "
            "gates on a shared LAN talk to the broker over TLS only"
        )
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(ca.strip().encode("ascii"))
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except (ValueError, x509.ExtensionNotFound, UnicodeEncodeError) as err:
        raise PolicyError(f"broker.ca: not a CA certificate ({err})") from err
    if not constraints.ca:
        raise PolicyError("broker.ca: a certificate, but not a CA's (scanner venue ca makes one)")
    return BrokerPlan(host, port, ca.strip() + "\n")


def _parse_rules(body: Mapping[str, Any]) -> timedelta:
    rules = body.get("rules", {})
    if not isinstance(rules, dict):
        raise PolicyError("rules: must be a table")
    _check_keys(rules, ("reentry_minutes",), "rules")
    minutes = rules.get("reentry_minutes", int(DEFAULT_REENTRY.total_seconds() // 60))
    if not isinstance(minutes, int) or isinstance(minutes, bool) or not 0 <= minutes <= 24 * 60:
        raise PolicyError("rules.reentry_minutes: a whole number of minutes, 0 to 1440")
    return timedelta(minutes=minutes)


def _parse_export(body: Mapping[str, Any]) -> tuple[str, ...]:
    export = body.get("export", {})
    if not isinstance(export, dict):
        raise PolicyError("export: must be a table")
    _check_keys(export, ("recipients",), "export")
    recipients = export.get("recipients", [])
    if not isinstance(recipients, list):
        raise PolicyError("export.recipients: a list of age public keys (age1...)")
    for i, text in enumerate(recipients):
        if not isinstance(text, str) or not AGE_RECIPIENT.fullmatch(text):
            raise PolicyError(f"export.recipients[{i}]: {text!r} is not an age public key")
    return tuple(dict.fromkeys(recipients))


MAX_DAYS = 31
DAY_KEYS = ("opens", "doors", "show_start", "show_end", "curfew", "photo_window_minutes")


def _photo_minutes(data: Mapping[str, Any], where: str, default: int | None) -> int:
    minutes = data.get("photo_window_minutes", default)
    if not isinstance(minutes, int) or isinstance(minutes, bool) or not 0 <= minutes <= 240:
        raise PolicyError(f"{where}.photo_window_minutes: a whole number of minutes, 0 to 240")
    return minutes


def _parse_day(data: Mapping[str, Any], where: str, photo_default: int | None) -> Schedule:
    minutes = _photo_minutes(data, where, photo_default)
    times = {k: _time(data, k, where) for k in ("opens", "doors", "show_start", "show_end",
                                                "curfew")}  # fmt: skip
    try:
        return Schedule(**times, photo_window=timedelta(minutes=minutes))
    except ValueError as err:
        raise PolicyError(str(err).replace("schedule.", f"{where}.", 1)) from err


def _parse_days(sched: Mapping[str, Any]) -> tuple[Schedule, ...]:
    """``[schedule]`` as one day, or as ``[[schedule.days]]``: several show
    days, each with its own times (a day may run past midnight), in order and
    not overlapping; ``photo_window_minutes`` beside them is every day's
    default."""
    if "days" not in sched:
        _check_keys(sched, DAY_KEYS, "schedule")
        return (_parse_day(sched, "schedule", None),)
    _check_keys(sched, ("days", "photo_window_minutes"), "schedule")
    raw = sched["days"]
    if not isinstance(raw, list) or not raw or len(raw) > MAX_DAYS:
        raise PolicyError(
            f"schedule.days: a list of 1 to {MAX_DAYS} show days ([[schedule.days]] tables)"
        )
    default = _photo_minutes(sched, "schedule", 0) if "photo_window_minutes" in sched else None
    days: list[Schedule] = []
    for i, item in enumerate(raw):
        where = f"schedule.days[{i}]"
        if not isinstance(item, dict):
            raise PolicyError(f"{where}: must be a table of opens, doors, show_start ...")
        _check_keys(item, DAY_KEYS, where)
        day = _parse_day(item, where, default)
        if days and day.opens < days[-1].curfew:
            raise PolicyError(
                f"{where}.opens ({day.opens.isoformat()}) is before the curfew of the day "
                f"before ({days[-1].curfew.isoformat()}): days are in order and do not overlap"
            )
        days.append(day)
    return tuple(days)


def parse_policy(
    body: Mapping[str, Any],
    *,
    signer_key: Ed25519PublicKey | None,
    signed_at: datetime | None = None,
) -> Policy:
    """Build a :class:`Policy` from its body, checking every key.

    ``signer_key`` is the key that signed it; it signs passes too unless
    ``[keys] pass_signers`` lists others.
    """
    _check_keys(body, TOP_KEYS, "policy")
    event = _table(body, "event")
    _check_keys(event, ("id", "name", "timezone"), "event")
    event_id = _ident(event.get("id"), "event.id")
    name = _string(event, "name", "event")
    timezone = _string(event, "timezone", "event")
    try:
        time_zone(timezone)
    except MalformedError as err:
        raise PolicyError(f"event.timezone: {err}") from err

    venue_table = _table(body, "venue")
    _check_keys(venue_table, ("zones", "within", "walk_seconds", "capacity"), "venue")
    raw_zones = venue_table.get("zones")
    if not isinstance(raw_zones, list) or not raw_zones:
        raise PolicyError("venue.zones: must list the venue's zones")
    zones = tuple(_ident(z, f"venue.zones[{i}]") for i, z in enumerate(raw_zones))
    if len(set(zones)) != len(zones):
        raise PolicyError("venue.zones: a zone is listed twice")

    days = _parse_days(_table(body, "schedule"))

    raw_tiers = _table(body, "tiers")
    if not raw_tiers:
        raise PolicyError("tiers: define at least one tier")
    tiers: dict[str, Tier] = {}
    for tier_id, spec in raw_tiers.items():
        where = f"tiers.{tier_id}"
        _ident(tier_id, where)
        if not isinstance(spec, dict):
            raise PolicyError(f"{where}: must be a table")
        _check_keys(spec, ("label", *SLOTS, "requires_zones"), where)
        label = _string(spec, "label", where)
        by_phase = {
            phase: _zone_set(spec.get(phase.value, []), zones, f"{where}.{phase.value}")
            for phase in Phase
        }
        photo = _zone_set(spec.get("photo_window", []), zones, f"{where}.photo_window")
        requires = spec.get("requires_zones", False)
        if not isinstance(requires, bool):
            raise PolicyError(f"{where}.requires_zones: true or false")
        tier = Tier(tier_id, label, by_phase, photo, requires)
        if not tier.ever:
            raise PolicyError(f"{where}: opens no zone at any time; give it zones or remove it")
        tiers[tier_id] = tier

    revoked: set[int] = set()
    if "revocations" in body:
        rev = _table(body, "revocations")
        _check_keys(rev, ("serials",), "revocations")
        serials = rev.get("serials", [])
        if not isinstance(serials, list):
            raise PolicyError("revocations.serials: must be a list of pass serials")
        for i, serial in enumerate(serials):
            if not isinstance(serial, int) or isinstance(serial, bool) or serial < 0:
                raise PolicyError(f"revocations.serials[{i}]: {serial!r} is not a pass serial")
            revoked.add(serial)

    pass_keys: dict[str, Ed25519PublicKey] = {}
    if "keys" in body:
        keys = _table(body, "keys")
        _check_keys(keys, ("pass_signers",), "keys")
        signers = keys.get("pass_signers", [])
        if not isinstance(signers, list):
            raise PolicyError("keys.pass_signers: must be a list of public keys (ed25519:...)")
        for i, text in enumerate(signers):
            try:
                key = parse_public_key(text if isinstance(text, str) else "")
            except ValueError as err:
                raise PolicyError(f"keys.pass_signers[{i}]: {err}") from err
            pass_keys[key_id(key)] = key
    if not pass_keys and signer_key is not None:
        pass_keys[key_id(signer_key)] = signer_key

    key_tags: dict[bytes, Ed25519PublicKey] = {}
    for key in pass_keys.values():
        if key_tag(key) in key_tags:
            raise PolicyError("keys.pass_signers: two keys share a key tag; make a new key")
        key_tags[key_tag(key)] = key

    venue = _parse_venue(body, zones)
    return Policy(
        event=event_id,
        name=name,
        timezone=timezone,
        zones=zones,
        tiers=tiers,
        schedule=days[0],
        more_days=days[1:],
        revoked=frozenset(revoked),
        pass_keys=pass_keys,
        signed_at=signed_at,
        signer=key_id(signer_key) if signer_key is not None else None,
        _tier_tags=_tags_unique(tiers, TIER_TAG_BYTES, "tiers"),
        _zone_tags=_tags_unique(zones, ZONE_TAG_BYTES, "zones"),
        _key_tags=key_tags,
        venue=venue,
        gates=_parse_gates(body, venue),
        reentry=_parse_rules(body),
        export_recipients=_parse_export(body),
        broker=_parse_broker(body),
    )


# -- signing and opening ---------------------------------------------------


def sign_policy(toml_text: str, key: Ed25519PrivateKey, signed_at: datetime) -> bytes:
    """Validate policy TOML and sign it; returns the signed file's bytes."""
    body = policy_body_from_toml(toml_text)
    return sign_document(key, POLICY_KIND, body, signed_at.astimezone(UTC))


def policy_from_document(document: SignedDocument) -> Policy:
    return parse_policy(document.body, signer_key=document.public_key, signed_at=document.signed_at)


def open_policy(
    data: bytes,
    trusted: Mapping[str, Ed25519PublicKey] | Iterable[Ed25519PublicKey] | None,
    *,
    event: str | None = None,
) -> Policy:
    """Verify a signed policy file and build the :class:`Policy`.

    ``trusted`` are the organizer keys this gate trusts (``None``: only check
    it against the key it carries). ``event``, when given, is the event this
    gate serves: a policy for any other event is refused.
    """
    try:
        document = open_document(data, kind=POLICY_KIND, trusted=trusted)
    except SignatureError as err:
        raise PolicyError(f"policy refused: {err}") from err
    policy = policy_from_document(document)
    if event is not None and policy.event != event:
        raise PolicyError(
            f"policy refused: it is for event {policy.event!r}, this gate serves {event!r}"
        )
    return policy


def access_table(policy: Policy) -> dict[str, dict[str, str]]:
    """For each tier and zone, when entry is allowed: letters B, P, D, A.

    B before the show, P in the photo window, D during, A after; '' never.
    Explicit zones on a pass replace the zones, not the times.
    """
    table: dict[str, dict[str, str]] = {}
    for tier in policy.tiers.values():
        row = {}
        for zone in policy.zones:
            cell = ""
            if zone in tier.zones[Phase.BEFORE]:
                cell += "B"
            if zone in tier.photo_window or zone in tier.zones[Phase.DURING]:
                cell += "P"
            if zone in tier.zones[Phase.DURING]:
                cell += "D"
            if zone in tier.zones[Phase.AFTER]:
                cell += "A"
            row[zone] = cell
        table[tier.id] = row
    return table
