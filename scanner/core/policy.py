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
from typing import Any, TypeVar
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
from .reading import Rule, read, rule
from .reading import within as in_range
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
T = TypeVar("T")


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


# -- the policy's tables, as written -------------------------------------------
#
# Each simple table is declared once, as a dataclass the reader fills
# (scanner.core.reading: types, defaults, unknown keys, key paths); what ties
# one table to another (a zone that exists, a door between known zones, days
# in order) is checked after reading, by the small functions further down.

ID_WORDS = "an id (lower-case letters, digits, '-', '.', '_')"
TIME_WORDS = "an ISO 8601 time with offset"
SECONDS_WORDS = "a whole number of seconds, 0 to 3600"
CA_WORDS = (
    "the event's broker CA certificate (PEM), as scanner venue ca prints it; "
    "gates on a shared LAN talk to the broker over TLS only"
)
MAX_DAYS = 31
DAYS_WORDS = f"a list of 1 to {MAX_DAYS} show days ([[schedule.days]] tables)"
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


def _id(value: str) -> str:
    if not ID_PATTERN.fullmatch(value):
        raise ValueError(f"{value!r} is not {ID_WORDS}")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError(f"{value!r} is blank")
    return value


def _time_zone_name(value: str) -> str:
    try:
        time_zone(_not_blank(value))
    except MalformedError as err:
        raise ValueError(str(err)) from err
    return value


def _iso_time(value: str) -> datetime:
    try:
        when = datetime.fromisoformat(value)
    except ValueError as err:
        raise ValueError(f"{value!r} is not an ISO 8601 time") from err
    if when.tzinfo is None:
        raise ValueError(f"{value!r} needs a UTC offset, e.g. +01:00")
    return when


def _serial(value: int) -> int:
    if value < 0:
        raise ValueError(f"{value!r} is not a pass serial")
    return value


def _pass_signer(value: str) -> str:
    parse_public_key(value)  # its ValueError names what is wrong
    return value


def _age_recipient(value: str) -> str:
    if not AGE_RECIPIENT.fullmatch(value):
        raise ValueError(f"{value!r} is not an age public key")
    return value


def _given_through(value: str) -> str:
    if not value:  # "" is how _WalkTable says "any path"; written out, it is no zone
        raise ValueError(f"{value!r} is not a zone of the venue or {OUTSIDE!r}")
    return value


def _broker_address(value: str) -> str:
    _host_port(value)
    return value


def _broker_ca(value: str) -> str:
    if len(value) > MAX_BROKER_CA or "BEGIN CERTIFICATE" not in value:
        raise ValueError(CA_WORDS)
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(value.strip().encode("ascii"))
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except (ValueError, x509.ExtensionNotFound, UnicodeEncodeError) as err:
        raise ValueError(f"not a CA certificate ({err})") from err
    if not constraints.ca:
        raise ValueError("a certificate, but not a CA's (scanner venue ca makes one)")
    return value


def _zone_list(what: str) -> dict[str, Rule]:
    return rule(expect=what, itemwise=True, item="a zone id")


@dataclass(frozen=True)
class _EventTable:
    id: str = field(metadata=rule(_id, expect=ID_WORDS))
    name: str = field(metadata=rule(_not_blank))
    timezone: str = field(metadata=rule(_time_zone_name))


@dataclass(frozen=True)
class _VenueTable:
    zones: tuple[str, ...] = field(
        metadata=rule(
            items=_id, expect="a list of the venue's zones", itemwise=True, item=ID_WORDS
        )
    )
    within: Mapping[str, Any] = field(
        default_factory=dict, metadata=rule(expect="a table of zone = the zone it sits inside")
    )
    walk_seconds: int = field(
        default=int(DEFAULT_WALK.total_seconds()),
        metadata=rule(in_range(0, 3600, "a whole number of seconds"), expect=SECONDS_WORDS),
    )
    capacity: Mapping[str, Any] = field(
        default_factory=dict, metadata=rule(expect="a table of zone = how many people it holds")
    )


@dataclass(frozen=True)
class _DayTable:
    opens: datetime = field(metadata=rule(_iso_time, expect=TIME_WORDS))
    doors: datetime = field(metadata=rule(_iso_time, expect=TIME_WORDS))
    show_start: datetime = field(metadata=rule(_iso_time, expect=TIME_WORDS))
    show_end: datetime = field(metadata=rule(_iso_time, expect=TIME_WORDS))
    curfew: datetime = field(metadata=rule(_iso_time, expect=TIME_WORDS))
    photo_window_minutes: int = field(
        metadata=rule(
            in_range(0, 240, "a whole number of minutes"),
            expect="a whole number of minutes, 0 to 240",
        )
    )


@dataclass(frozen=True)
class _DaysTable:
    """``[schedule]`` of several days; its photo_window_minutes is every day's default."""

    days: tuple[Mapping[str, Any], ...] = field(
        metadata=rule(
            expect=DAYS_WORDS,
            itemwise=True,
            item="a table of opens, doors, show_start, show_end and curfew",
        )
    )
    photo_window_minutes: int = field(
        default=0,  # unused: a day without its own must have one here
        metadata=rule(
            in_range(0, 240, "a whole number of minutes"),
            expect="a whole number of minutes, 0 to 240",
        ),
    )


@dataclass(frozen=True)
class _TierTable:
    label: str = field(metadata=rule(_not_blank))
    before: tuple[str, ...] = field(default=(), metadata=_zone_list("a list of zones"))
    during: tuple[str, ...] = field(default=(), metadata=_zone_list("a list of zones"))
    after: tuple[str, ...] = field(default=(), metadata=_zone_list("a list of zones"))
    photo_window: tuple[str, ...] = field(default=(), metadata=_zone_list("a list of zones"))
    requires_zones: bool = field(default=False, metadata=rule(expect="true or false"))


@dataclass(frozen=True)
class _DoorTable:
    from_: str = field(metadata=rule(expect=f"a zone of the venue or {OUTSIDE!r}"))
    to: str = field(metadata=rule(expect="a zone of the venue"))


@dataclass(frozen=True)
class _WalkTable:
    doors: tuple[str, ...] = field(
        metadata=rule(
            expect="two different doors from [doors]", itemwise=True, item="a door of [doors]"
        )
    )
    seconds: int = field(
        metadata=rule(in_range(0, 3600, "a whole number of seconds"), expect=SECONDS_WORDS)
    )
    through: str = field(  # "": any path between the two doors
        default="", metadata=rule(_given_through, expect=f"a zone of the venue or {OUTSIDE!r}")
    )


@dataclass(frozen=True)
class _RevocationsTable:
    serials: tuple[int, ...] = field(
        default=(),
        metadata=rule(
            items=_serial, expect="a list of pass serials", itemwise=True, item="a pass serial"
        ),
    )


@dataclass(frozen=True)
class _KeysTable:
    pass_signers: tuple[str, ...] = field(
        default=(),
        metadata=rule(
            items=_pass_signer,
            expect="a list of public keys (ed25519:...)",
            itemwise=True,
            item="a public key (ed25519:...)",
        ),
    )


@dataclass(frozen=True)
class _RulesTable:
    reentry_minutes: int = field(
        default=int(DEFAULT_REENTRY.total_seconds() // 60),
        metadata=rule(
            in_range(0, 24 * 60, "a whole number of minutes"),
            expect="a whole number of minutes, 0 to 1440",
        ),
    )


@dataclass(frozen=True)
class _ExportTable:
    recipients: tuple[str, ...] = field(
        default=(),
        metadata=rule(
            items=_age_recipient,
            expect="a list of age public keys (age1...)",
            itemwise=True,
            item="an age public key (age1...)",
        ),
    )


@dataclass(frozen=True)
class _BrokerTable:
    address: str = field(
        metadata=rule(_broker_address, expect='the broker\'s IP address, e.g. "192.168.1.10:8883"')
    )
    ca: str = field(metadata=rule(_broker_ca, expect=CA_WORDS))


def _read(kind: type[T], data: Any, path: str, table: str = "a table") -> T:
    """``data`` read as the table ``kind``; its problems as one PolicyError."""
    try:
        return read(kind, data, path, table=table)
    except MalformedError as err:
        raise PolicyError(str(err)) from err


def _table(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise PolicyError(f"{key}: missing table [{key}]")
    return value


def _ident(value: Any, where: str) -> str:
    """A table's own id, the X of ``[tiers.X]``."""
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise PolicyError(f"{where}: {value!r} is not {ID_WORDS}")
    return value


def _check_keys(data: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise PolicyError(f"{where}.{unknown[0]}: unknown key (allowed: {', '.join(allowed)})")


# -- what ties the tables together -----------------------------------------------


def _venue_zones(table: _VenueTable) -> tuple[str, ...]:
    if not table.zones:
        raise PolicyError("venue.zones: must list the venue's zones")
    if len(set(table.zones)) != len(table.zones):
        raise PolicyError("venue.zones: a zone is listed twice")
    return table.zones


def _zone_set(items: Iterable[str], zones: tuple[str, ...], where: str) -> frozenset[str]:
    """A tier's zones: ``"*"`` every zone, ``"!zone"`` one taken away."""
    chosen: set[str] = set()
    removed: set[str] = set()
    for item in items:
        if item == "*":
            chosen |= set(zones)
            continue
        name, target = (item[1:], removed) if item.startswith("!") else (item, chosen)
        if name not in zones:
            raise PolicyError(f"{where}: unknown zone {name!r} (venue zones: {', '.join(zones)})")
        target.add(name)
    return frozenset(chosen - removed)


def _zone_ref(value: Any, zones: tuple[str, ...], where: str, *, outside: bool = False) -> str:
    if outside and value == OUTSIDE:
        return OUTSIDE
    if not isinstance(value, str) or value not in zones:
        extra = f" or {OUTSIDE!r}" if outside else ""
        raise PolicyError(f"{where}: {value!r} is not a zone of the venue{extra}")
    return value


def _tags_unique(ids: Iterable[str], size: int, what: str) -> dict[bytes, str]:
    out: dict[bytes, str] = {}
    for ident in ids:
        tag = id_tag(ident, size)
        if tag in out:
            raise PolicyError(f"{what} {out[tag]!r} and {ident!r} share a pass tag; rename one")
        out[tag] = ident
    return out


def _day(table: _DayTable, where: str) -> Schedule:
    """One show day, its times in the order a day runs."""
    try:
        return Schedule(
            opens=table.opens,
            doors=table.doors,
            show_start=table.show_start,
            show_end=table.show_end,
            curfew=table.curfew,
            photo_window=timedelta(minutes=table.photo_window_minutes),
        )
    except ValueError as err:
        raise PolicyError(str(err).replace("schedule.", f"{where}.", 1)) from err


def _after(day: Schedule, before: Schedule, where: str) -> Schedule:
    """Show days are in order and do not overlap."""
    if day.opens < before.curfew:
        raise PolicyError(
            f"{where}.opens ({day.opens.isoformat()}) is before the curfew of the day "
            f"before ({before.curfew.isoformat()}): days are in order and do not overlap"
        )
    return day


def _parse_days(sched: Mapping[str, Any]) -> tuple[Schedule, ...]:
    """``[schedule]`` as one day, or as ``[[schedule.days]]``: several show
    days, each with its own times (a day may run past midnight), in order and
    not overlapping; ``photo_window_minutes`` beside them is every day's
    default."""
    if "days" not in sched:
        return (_day(_read(_DayTable, sched, "schedule"), "schedule"),)
    table = _read(_DaysTable, sched, "schedule")
    if not table.days or len(table.days) > MAX_DAYS:
        raise PolicyError(f"schedule.days: {DAYS_WORDS}")
    default = {"photo_window_minutes": table.photo_window_minutes} if (
        "photo_window_minutes" in sched
    ) else {}  # fmt: skip
    days: list[Schedule] = []
    for i, item in enumerate(table.days):
        where = f"schedule.days[{i}]"
        day = _day(_read(_DayTable, {**default, **item}, where), where)
        days.append(_after(day, days[-1], where) if days else day)
    return tuple(days)


def _parse_tiers(raw: Mapping[str, Any], zones: tuple[str, ...]) -> dict[str, Tier]:
    """Each ``[tiers.X]``: its zones in each phase, all of them venue zones."""
    if not raw:
        raise PolicyError("tiers: define at least one tier")
    tiers: dict[str, Tier] = {}
    for tier_id, spec in raw.items():
        where = f"tiers.{tier_id}"
        _ident(tier_id, where)
        table = _read(_TierTable, spec, where)
        by_phase = {
            phase: _zone_set(getattr(table, phase.value), zones, f"{where}.{phase.value}")
            for phase in Phase
        }
        photo = _zone_set(table.photo_window, zones, f"{where}.photo_window")
        tier = Tier(tier_id, table.label, by_phase, photo, table.requires_zones)
        if not tier.ever:
            raise PolicyError(f"{where}: opens no zone at any time; give it zones or remove it")
        tiers[tier_id] = tier
    return tiers


def _pass_keys(table: _KeysTable, signer_key: Ed25519PublicKey | None) -> dict[str, Any]:
    """Who signs passes: ``[keys] pass_signers``, else the policy's own signer."""
    keys = [parse_public_key(text) for text in table.pass_signers]
    if not keys and signer_key is not None:
        keys = [signer_key]
    return {key_id(key): key for key in keys}


def _key_tags(pass_keys: Mapping[str, Ed25519PublicKey]) -> dict[bytes, Ed25519PublicKey]:
    key_tags: dict[bytes, Ed25519PublicKey] = {}
    for key in pass_keys.values():
        if key_tag(key) in key_tags:
            raise PolicyError("keys.pass_signers: two keys share a key tag; make a new key")
        key_tags[key_tag(key)] = key
    return key_tags


def _nesting(raw: Mapping[str, Any], zones: tuple[str, ...]) -> dict[str, str]:
    """``[venue] within``: zone = the zone around it, never in a circle."""
    within: dict[str, str] = {}
    for inner, outer in raw.items():
        where = f"venue.within.{inner}"
        _zone_ref(inner, zones, where)
        within[inner] = _zone_ref(outer, zones, where)
    for zone in within:  # no zone may end up inside itself
        seen = {zone}
        around = within.get(zone)
        while around is not None:
            if around in seen:
                raise PolicyError(f"venue.within.{zone}: zones sit inside each other in a circle")
            seen.add(around)
            around = within.get(around)
    return within


def _capacity(raw: Mapping[str, Any], zones: tuple[str, ...]) -> dict[str, int]:
    """``[venue] capacity``: zone = how many people it holds."""
    capacity: dict[str, int] = {}
    for zone, count in raw.items():
        where = f"venue.capacity.{zone}"
        _zone_ref(zone, zones, where)
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 100_000:
            raise PolicyError(f"{where}: a whole number of people, 1 to 100000")
        capacity[zone] = count
    return capacity


def _parse_doors(raw: Any, zones: tuple[str, ...]) -> dict[str, Door]:
    """Each ``[doors.X]``: from a zone (or outside) into another zone."""
    if not isinstance(raw, dict):
        raise PolicyError("doors: a table of [doors.ID] with from and to")
    doors: dict[str, Door] = {}
    for door_id, spec in raw.items():
        where = f"doors.{door_id}"
        _ident(door_id, where)
        table = _read(_DoorTable, spec, where, "a table with from and to")
        start = _zone_ref(table.from_, zones, f"{where}.from", outside=True)
        end = _zone_ref(table.to, zones, f"{where}.to")
        if start == end:
            raise PolicyError(f"{where}: a door leads from one zone into another")
        doors[door_id] = Door(door_id, start, end)
    return doors


def _walk_doors(table: _WalkTable, doors: Mapping[str, Door], where: str) -> tuple[str, str]:
    """A walk's two doors: two different doors of ``[doors]``."""
    if len(table.doors) != 2:
        raise PolicyError(f"{where}.doors: two different doors from [doors]")
    for name in table.doors:
        if name not in doors:
            raise PolicyError(
                f"{where}.doors: {name!r} is not a door of [doors] "
                f"(doors: {', '.join(sorted(doors)) or 'none declared'})"
            )
    a, b = table.doors
    if a == b:
        raise PolicyError(f"{where}.doors: two different doors, not {a!r} twice")
    return a, b


def _walk_through(table: _WalkTable, pair: tuple[str, str], doors: Mapping[str, Door],
                  zones: tuple[str, ...], where: str) -> str | None:  # fmt: skip
    """The zone a walk's path lies in, one that both its doors open onto; None for any."""
    if not table.through:
        return None
    through = _zone_ref(table.through, zones, f"{where}.through", outside=True)
    a, b = (doors[name] for name in pair)
    sides = {a.from_zone, a.to_zone} & {b.from_zone, b.to_zone}
    if through not in sides:
        raise PolicyError(
            f"{where}.through: a walk between {pair[0]} and {pair[1]} through "
            f"{through!r} needs both doors to open onto it "
            f"(they share: {', '.join(sorted(sides)) or 'no zone'})"
        )
    return through


def _parse_walks(raw: Any, doors: Mapping[str, Door], zones: tuple[str, ...]
                 ) -> dict[tuple[frozenset[str], str | None], timedelta]:  # fmt: skip
    """Each ``[[walks]]``: how long between two doors (through one zone, or any path)."""
    if not isinstance(raw, list):
        raise PolicyError("walks: a list of [[walks]] with doors and seconds")
    walks: dict[tuple[frozenset[str], str | None], timedelta] = {}
    for i, spec in enumerate(raw):
        where = f"walks[{i}]"
        table = _read(_WalkTable, spec, where, "a table with doors and seconds")
        pair = _walk_doors(table, doors, where)
        key = (frozenset(pair), _walk_through(table, pair, doors, zones, where))
        if key in walks:
            raise PolicyError(f"{where}: the walk between {pair[0]} and {pair[1]} is given twice")
        walks[key] = timedelta(seconds=table.seconds)
    return walks


def _parse_venue(body: Mapping[str, Any], table: _VenueTable, zones: tuple[str, ...]) -> Venue:
    """[venue] within/walk_seconds/capacity, [doors.ID] and [[walks]]."""
    within = _nesting(table.within, zones)
    capacity = _capacity(table.capacity, zones)
    doors = _parse_doors(body.get("doors", {}), zones)
    walks = _parse_walks(body.get("walks", []), doors, zones)
    return Venue(zones, within, doors, timedelta(seconds=table.walk_seconds), walks, capacity)


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
    try:
        return _host_port(text)
    except ValueError as err:
        raise PolicyError(f"{where}: {err}") from err


def _host_port(text: str) -> tuple[str, int]:
    text = text.strip()
    host, port = text, ""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"{text!r} is not [IPv6]:PORT")
        port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    try:
        address = ipaddress.ip_address(host)
    except ValueError as err:
        raise ValueError(
            f"{host!r} is not an IP address; the broker is named by its address "
            "(a box's sandbox lets it reach that one address, and no DNS answer may choose it)"
        ) from err
    try:
        number = int(port) if port else BROKER_PORT
    except ValueError as err:
        raise ValueError(f"the port {port!r} is not a number") from err
    if not 0 < number < 65536:
        raise ValueError("the port is not 1 to 65535")
    return str(address), number


def _reentry(table: _RulesTable) -> timedelta:
    return timedelta(minutes=table.reentry_minutes)


def _recipients(table: _ExportTable) -> tuple[str, ...]:
    return tuple(dict.fromkeys(table.recipients))  # each once, in the order written


def _parse_broker(body: Mapping[str, Any]) -> BrokerPlan | None:
    if "broker" not in body:
        return None
    table = _read(_BrokerTable, body["broker"], "broker")
    host, port = _host_port(table.address)
    return BrokerPlan(host, port, table.ca.strip() + "\n")


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
    event = _read(_EventTable, _table(body, "event"), "event")
    venue_table = _read(_VenueTable, _table(body, "venue"), "venue")
    zones = _venue_zones(venue_table)
    days = _parse_days(_table(body, "schedule"))
    tiers = _parse_tiers(_table(body, "tiers"), zones)
    revoked = _read(_RevocationsTable, body.get("revocations", {}), "revocations").serials
    pass_keys = _pass_keys(_read(_KeysTable, body.get("keys", {}), "keys"), signer_key)
    key_tags = _key_tags(pass_keys)
    venue = _parse_venue(body, venue_table, zones)
    return Policy(
        event=event.id,
        name=event.name,
        timezone=event.timezone,
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
        reentry=_reentry(_read(_RulesTable, body.get("rules", {}), "rules")),
        export_recipients=_recipients(_read(_ExportTable, body.get("export", {}), "export")),
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
