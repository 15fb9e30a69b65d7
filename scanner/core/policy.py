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
(``tiers.working.before: unknown zone 'dresing-rooms'``). No I/O here.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..errors import PolicyError, SignatureError
from .keys import Ed25519PrivateKey, Ed25519PublicKey, key_id, parse_public_key
from .passes import EVENT_TAG_BYTES, TIER_TAG_BYTES, ZONE_TAG_BYTES, id_tag, key_tag
from .schedule import Phase, PhaseState, Schedule
from .signed import SignedDocument, open_document, sign_document

__all__ = [
    "POLICY_KIND",
    "Policy",
    "Tier",
    "open_policy",
    "parse_policy",
    "policy_body_from_toml",
    "sign_policy",
]

POLICY_KIND = "policy"
ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
SLOTS = ("before", "during", "after", "photo_window")


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
    schedule: Schedule
    revoked: frozenset[int]
    pass_keys: Mapping[str, Ed25519PublicKey]
    signed_at: datetime | None = None
    signer: str | None = None
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
    def expires(self) -> datetime:
        return self.schedule.curfew


# -- reading the TOML ------------------------------------------------------


def _jsonable(value: Any, where: str) -> Any:
    """TOML values as JSON values: times become ISO strings that keep their offset."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise PolicyError(f"{where}: {value.isoformat()} needs a UTC offset, e.g. +01:00")
        return value.isoformat()
    if isinstance(value, date):
        raise PolicyError(f"{where}: a date alone is not enough; give a time with an offset")
    if isinstance(value, dict):
        return {k: _jsonable(v, f"{where}.{k}" if where else k) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def policy_body_from_toml(text: str) -> dict[str, Any]:
    """Parse policy TOML into the JSON body that gets signed; validates it fully."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise PolicyError(f"the policy is not valid TOML: {err}") from err
    body = _jsonable(data, "")
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
    _check_keys(body, ("event", "venue", "schedule", "tiers", "revocations", "keys"), "policy")
    event = _table(body, "event")
    _check_keys(event, ("id", "name", "timezone"), "event")
    event_id = _ident(event.get("id"), "event.id")
    name = _string(event, "name", "event")
    timezone = _string(event, "timezone", "event")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise PolicyError(f"event.timezone: unknown time zone {timezone!r}") from err

    venue = _table(body, "venue")
    _check_keys(venue, ("zones",), "venue")
    raw_zones = venue.get("zones")
    if not isinstance(raw_zones, list) or not raw_zones:
        raise PolicyError("venue.zones: must list the venue's zones")
    zones = tuple(_ident(z, f"venue.zones[{i}]") for i, z in enumerate(raw_zones))
    if len(set(zones)) != len(zones):
        raise PolicyError("venue.zones: a zone is listed twice")

    sched = _table(body, "schedule")
    _check_keys(
        sched,
        ("opens", "doors", "show_start", "show_end", "curfew", "photo_window_minutes"),
        "schedule",
    )
    minutes = sched.get("photo_window_minutes")
    if not isinstance(minutes, int) or isinstance(minutes, bool) or not 0 <= minutes <= 240:
        raise PolicyError("schedule.photo_window_minutes: a whole number of minutes, 0 to 240")
    try:
        schedule = Schedule(
            opens=_time(sched, "opens", "schedule"),
            doors=_time(sched, "doors", "schedule"),
            show_start=_time(sched, "show_start", "schedule"),
            show_end=_time(sched, "show_end", "schedule"),
            curfew=_time(sched, "curfew", "schedule"),
            photo_window=timedelta(minutes=minutes),
        )
    except ValueError as err:
        raise PolicyError(str(err)) from err

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

    return Policy(
        event=event_id,
        name=name,
        timezone=timezone,
        zones=zones,
        tiers=tiers,
        schedule=schedule,
        revoked=frozenset(revoked),
        pass_keys=pass_keys,
        signed_at=signed_at,
        signer=key_id(signer_key) if signer_key is not None else None,
        _tier_tags=_tags_unique(tiers, TIER_TAG_BYTES, "tiers"),
        _zone_tags=_tags_unique(zones, ZONE_TAG_BYTES, "zones"),
        _key_tags=key_tags,
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
