"""The decision: may this pass go through this door, now?

:func:`decide` is a pure function of the pass text, the verified event
policy, the gate (its zone and direction), the time, and what the gate has
seen (who is inside, whether its clock can be trusted, the crew's phase
override). It returns a :class:`Decision`: granted or not, a stable reason
code that logs and reports rely on, and a sentence for people. It never
raises for a bad pass; a bad pass is a denial.

Checks run in a fixed order so that the reason names the most fundamental
problem: is it a pass at all and signed by a trusted key; is it for this
event and a known tier; revoked. Then an exit is granted: leaving is always
allowed for a genuine pass of this event that is not revoked, even when the
pass has expired or the clock cannot be trusted (the message says so), so a
door never traps anyone inside. For entries: can the clock be trusted;
inside the pass's own validity window; inside the event window; allowed in
this zone in this phase; then what only the venue as a whole knows, when the
gate shares scans with its peers (:mod:`scanner.core.venue_view`): not a
suspected copy (let in at another door more recently than anyone walks from
there), not already inside the zone (when the view knows who is inside it),
the zone not full; and in every case not already let in through this door
within the policy's re-entry window (timed anti-passback: the floor that
peers never lower, since an exit shows only that the pass was held up to
an exit box).

On an untrusted clock a gate set to ``allow_untimed`` admits only what does
not depend on the time at all: a pass without its own dates whose tier may
enter this zone in every phase of the show. Anything that depends on the
phase or the event window is refused as ``clock_untrusted``: the phase is
read off the clock, which is exactly what cannot be believed.

Each reason belongs to a :class:`SignalClass`, which is what the door shows:
the signal module maps classes to LED and buzzer patterns.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from ..errors import PassFormatError
from .passes import SignedPass, read_pass
from .policy import Direction, Policy, Tier
from .schedule import Phase, PhaseOverride, PhaseState, Schedule, phase_at
from .venue_view import DoorView

__all__ = [
    "Decision",
    "Direction",
    "Gate",
    "Reason",
    "SignalClass",
    "UntrustedClock",
    "admit_by_hand",
    "decide",
]


class UntrustedClock(StrEnum):
    """What a gate does when its clock cannot be trusted."""

    DENY = "deny"  # fail closed: nobody is admitted on a clock that may be wrong
    ALLOW_UNTIMED = "allow_untimed"  # passes without their own window follow the policy


class SignalClass(StrEnum):
    """What the door shows for a decision; one LED/buzzer pattern each."""

    GRANTED = "granted"
    NOT_HERE = "not_here"  # genuine pass, wrong zone, phase, event or tier
    TIME = "time"  # not yet valid, expired, outside the event
    ALREADY_INSIDE = "already_inside"
    FORGED = "forged"  # forged, altered, unknown key, revoked, not a pass
    SUSPECTED_COPY = "suspected_copy"  # a genuine pass just used at a door too far away
    FAULT = "fault"  # the gate cannot decide safely (clock untrusted)


class Reason(StrEnum):
    OK = "ok"
    MALFORMED = "malformed"
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_KEY = "unknown_key"
    WRONG_EVENT = "wrong_event"
    UNKNOWN_TIER = "unknown_tier"
    REVOKED = "revoked"
    CLOCK_UNTRUSTED = "clock_untrusted"
    NOT_YET_VALID = "not_yet_valid"
    EXPIRED = "expired"
    OUTSIDE_EVENT = "outside_event"
    ZONE_NOT_ALLOWED = "zone_not_allowed"
    PHASE_NOT_ALLOWED = "phase_not_allowed"
    ALREADY_INSIDE = "already_inside"
    SUSPECTED_COPY = "suspected_copy"  # seen at another door too recently to have walked here
    ZONE_FULL = "zone_full"  # the zone (or one around it) holds its capacity
    # Faults of the gate itself, decided by the scan loop rather than decide():
    NO_POLICY = "no_policy"  # no verified event policy is installed
    LOG_UNAVAILABLE = "log_unavailable"  # the scan could not be written to disk
    # A guard let the last denied person in by hand (button or ``scanner admit``):
    OVERRIDE = "override"

    @property
    def signal(self) -> SignalClass:
        return _SIGNALS[self]

    @property
    def label(self) -> str:
        """The reason in words, for a manager's report and the chief's live view."""
        return _LABELS[self]

    @classmethod
    def words(cls, code: str | None) -> str:
        """A logged reason code in words; a code this version does not know (from
        a newer gate or a peer) stays the code."""
        try:
            return cls(code or "").label
        except ValueError:
            return code or ""


_LABELS = {
    Reason.OK: "granted",
    Reason.MALFORMED: "not a pass (unreadable or malformed code)",
    Reason.BAD_SIGNATURE: "forged or altered",
    Reason.UNKNOWN_KEY: "signed by an unknown key (forged)",
    Reason.WRONG_EVENT: "pass for another event",
    Reason.UNKNOWN_TIER: "pass type not in the event policy",
    Reason.REVOKED: "revoked (lost or cancelled pass)",
    Reason.CLOCK_UNTRUSTED: "gate clock not trusted",
    Reason.NOT_YET_VALID: "pass not valid yet",
    Reason.EXPIRED: "pass expired",
    Reason.OUTSIDE_EVENT: "outside the event hours",
    Reason.ZONE_NOT_ALLOWED: "not allowed in this zone",
    Reason.PHASE_NOT_ALLOWED: "not allowed at this point of the show",
    Reason.ALREADY_INSIDE: "already inside (pass-back)",
    Reason.SUSPECTED_COPY: "suspected copy (just used at another door)",
    Reason.ZONE_FULL: "zone full (capacity)",
    Reason.NO_POLICY: "gate had no event policy",
    Reason.LOG_UNAVAILABLE: "gate could not write its log",
    Reason.OVERRIDE: "let in by hand (override)",
}

_SIGNALS = {
    Reason.OK: SignalClass.GRANTED,
    Reason.MALFORMED: SignalClass.FORGED,
    Reason.BAD_SIGNATURE: SignalClass.FORGED,
    Reason.UNKNOWN_KEY: SignalClass.FORGED,
    Reason.REVOKED: SignalClass.FORGED,
    Reason.WRONG_EVENT: SignalClass.NOT_HERE,
    Reason.UNKNOWN_TIER: SignalClass.NOT_HERE,
    Reason.ZONE_NOT_ALLOWED: SignalClass.NOT_HERE,
    Reason.PHASE_NOT_ALLOWED: SignalClass.NOT_HERE,
    Reason.NOT_YET_VALID: SignalClass.TIME,
    Reason.EXPIRED: SignalClass.TIME,
    Reason.OUTSIDE_EVENT: SignalClass.TIME,
    Reason.ALREADY_INSIDE: SignalClass.ALREADY_INSIDE,
    Reason.SUSPECTED_COPY: SignalClass.SUSPECTED_COPY,
    Reason.ZONE_FULL: SignalClass.NOT_HERE,  # genuine, not here now: like a phase denial
    Reason.CLOCK_UNTRUSTED: SignalClass.FAULT,
    Reason.NO_POLICY: SignalClass.FAULT,
    Reason.LOG_UNAVAILABLE: SignalClass.FAULT,
    Reason.OVERRIDE: SignalClass.GRANTED,
}


@dataclass(frozen=True)
class Gate:
    """The door a gate guards."""

    zone: str
    direction: Direction = Direction.ENTRY
    anti_passback: bool = True
    untrusted_clock: UntrustedClock = UntrustedClock.DENY


@dataclass(frozen=True)
class Decision:
    granted: bool
    reason: Reason
    message: str
    zone: str
    direction: Direction
    phase: str
    event: str | None = None
    serial: int | None = None
    tier: str | None = None
    holder: str | None = None
    key_id: str | None = None

    @property
    def signal(self) -> SignalClass:
        return self.reason.signal

    def as_dict(self) -> dict[str, object]:
        return {
            "granted": self.granted,
            "reason": self.reason.value,
            "tier": self.tier,
            "serial": self.serial,
            "holder": self.holder,
            "event": self.event,
            "zone": self.zone,
            "direction": self.direction.value,
            "phase": self.phase,
            "key_id": self.key_id,
            "message": self.message,
        }


def _who(tier: Tier | None, signed: SignedPass) -> str:
    name = signed.holder or f"pass {signed.serial}"
    return f"{name} ({tier.label})" if tier else name


def _fmt(when: datetime, policy: Policy, *, time_only: bool = False) -> str:
    local = when.astimezone(ZoneInfo(policy.timezone))
    return local.strftime("%H:%M" if time_only else "%a %d %b %H:%M")


def decide(
    text: str,
    policy: Policy,
    gate: Gate,
    at: datetime,
    *,
    entered: Mapping[int, datetime] | None = None,
    clock_trusted: bool = True,
    override: PhaseOverride | None = None,
    venue: DoorView | None = None,
) -> Decision:
    """Decide on one presentation of ``text`` at ``gate`` at time ``at``.

    ``entered`` maps the serials this gate has let in (for this event and
    zone) to the time of their last entry (timed anti-passback);
    ``clock_trusted`` says whether ``at`` can be believed; ``override`` is
    the crew's phase correction, if any; ``venue`` is what the gate knows of
    the venue from its peers' scans (None without peers).
    """
    day = policy.day_at(at)
    state = phase_at(day, at, override)

    def result(
        reason: Reason, message: str, signed: SignedPass | None = None, tier: Tier | None = None
    ) -> Decision:
        return Decision(
            granted=reason is Reason.OK,
            reason=reason,
            message=message,
            zone=gate.zone,
            direction=gate.direction,
            phase=state.label,
            event=policy.event if signed is not None and reason is not Reason.WRONG_EVENT else None,
            serial=signed.serial if signed else None,
            tier=tier.id if tier else None,
            holder=signed.holder if signed else None,
            key_id=signed.key_id if signed else None,
        )

    try:
        signed = read_pass(text, policy.pass_keys_by_tag)
    except PassFormatError as err:
        return result(Reason(err.reason), f"Denied: {err}.")

    if signed.event_tag != policy.event_tag:
        return result(Reason.WRONG_EVENT, "Denied: this pass is for another event.", signed)
    tier = policy.tier_for_tag(signed.tier_tag)
    if tier is None:
        return result(
            Reason.UNKNOWN_TIER, "Denied: this pass's tier is not in the event policy.", signed
        )
    who = _who(tier, signed)
    if signed.serial in policy.revoked:
        return result(Reason.REVOKED, f"Denied: {who}: this pass has been revoked.", signed, tier)

    if gate.direction is Direction.EXIT:
        note = ""
        if not clock_trusted:
            note = " (the gate's clock cannot be trusted; leaving is always allowed)"
        elif signed.not_after is not None and at >= signed.not_after:
            note = (
                f" (the pass expired at {_fmt(signed.not_after, policy)}; "
                "leaving is always allowed)"
            )
        return result(Reason.OK, f"Granted: {who} leaving {gate.zone}{note}.", signed, tier)

    timed = signed.not_before is not None or signed.not_after is not None
    if not clock_trusted:
        if gate.untrusted_clock is UntrustedClock.DENY or timed:
            return result(
                Reason.CLOCK_UNTRUSTED,
                "Denied: the gate's clock cannot be trusted; call a technician.",
                signed,
                tier,
            )
        return _untimed(result, tier, signed, policy, gate, who)
    if signed.not_before is not None and at < signed.not_before:
        return result(
            Reason.NOT_YET_VALID,
            f"Denied: {who}: valid from {_fmt(signed.not_before, policy)}.",
            signed,
            tier,
        )
    if signed.not_after is not None and at >= signed.not_after:
        return result(
            Reason.EXPIRED,
            f"Denied: {who}: expired at {_fmt(signed.not_after, policy)}.",
            signed,
            tier,
        )

    if state.phase is None:
        return result(
            Reason.OUTSIDE_EVENT,
            f"Denied: {who}: the event is closed ({_opening_hours(policy, day, at)}).",
            signed,
            tier,
        )
    denial = _zone_denial(tier, signed, policy, gate.zone, state, day)
    if denial is not None:
        return result(denial[0], f"Denied: {who}: {denial[1]}.", signed, tier)
    if venue is not None:
        stop = venue.check(signed.serial, at, anti_passback=gate.anti_passback)
        if stop is not None:
            return result(Reason(stop[0]), f"Denied: {who}: {stop[1]}.", signed, tier)
    # The timed rule holds with peers too: the venue may add refusals, never
    # remove one. An exit only proves the pass was shown to an exit box, not
    # that its holder went out (and handed it back over the fence).
    last = entered.get(signed.serial) if gate.anti_passback and entered is not None else None
    if last is not None and at - last < policy.reentry:
        return result(
            Reason.ALREADY_INSIDE,
            f"Denied: {who} came in through this door {_ago(at - last)} ago; the same pass "
            f"cannot come in again for {_ago(policy.reentry)} (passed back?).",
            signed,
            tier,
        )
    return result(Reason.OK, f"Granted: {who} entering {gate.zone}.", signed, tier)


def _ago(delta: timedelta) -> str:
    seconds = max(int(delta.total_seconds()), 0)
    return f"{seconds} s" if seconds < 120 else f"{seconds // 60} min"


def _untimed(
    result: Callable[..., Decision],
    tier: Tier,
    signed: SignedPass,
    policy: Policy,
    gate: Gate,
    who: str,
) -> Decision:
    """An untimed pass on an untrusted clock (``allow_untimed``): admitted only
    where its tier may go in every phase, since the phase cannot be known."""
    denials = [
        _zone_denial(
            tier, signed, policy, gate.zone, PhaseState(phase, False, False), policy.schedule
        )
        for phase in Phase
    ]
    if all(d is None for d in denials):
        return result(
            Reason.OK,
            f"Granted: {who} entering {gate.zone} (the gate's clock cannot be trusted; "
            "this pass may enter here at any time of the show).",
            signed,
            tier,
        )
    if all(d is not None and d[0] is Reason.ZONE_NOT_ALLOWED for d in denials):
        why = next(d[1] for d in denials if d is not None)  # every phase: not this zone
        return result(Reason.ZONE_NOT_ALLOWED, f"Denied: {who}: {why}.", signed, tier)
    return result(
        Reason.CLOCK_UNTRUSTED,
        f"Denied: {who} may enter {gate.zone} only at some times of the show, and the "
        "gate's clock cannot be trusted; call a technician.",
        signed,
        tier,
    )


def _zone_denial(
    tier: Tier, signed: SignedPass, policy: Policy, zone: str, state: PhaseState, day: Schedule
) -> tuple[Reason, str] | None:
    """Why ``tier`` on this pass may not enter ``zone`` now; None when it may."""
    if signed.zone_tags is not None:
        named = frozenset(z for t in signed.zone_tags if (z := policy.zone_for_tag(t)))
    elif tier.requires_zones:
        return Reason.ZONE_NOT_ALLOWED, f"a {tier.label} pass must name its zones"
    else:
        named = None
    open_now = tier.zones_now(state)
    where_now = named if named is not None and open_now else open_now
    if zone in where_now:
        return None
    where_ever = named if named is not None else tier.ever
    if zone in where_ever:
        return (
            Reason.PHASE_NOT_ALLOWED,
            f"not allowed in {zone} {state.phrase}; {_when_open(tier, named, policy, zone, day)}",
        )
    return Reason.ZONE_NOT_ALLOWED, f"not allowed in {zone}{_valid_in(where_ever, policy)}"


def _valid_in(zones: frozenset[str], policy: Policy) -> str:
    """Where the pass is valid, for the guard to send the holder on: a few
    zones by name, in the policy's order."""
    ordered = [z for z in policy.zones if z in zones]
    if not ordered:
        return ""
    shown = ordered[:4] + ([f"{len(ordered) - 4} more"] if len(ordered) > 4 else [])
    listed = shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]
    return f"; this pass is for {listed}"


def _opening_hours(policy: Policy, day: Schedule, at: datetime) -> str:
    """When the doors are open, as told to someone who came when they are not."""
    if len(policy.days) == 1:
        return f"open {_fmt(policy.opens, policy)} to {_fmt(policy.curfew, policy)}"
    if at < day.opens:
        return f"it opens again {_fmt(day.opens, policy)}, day {policy.day_number(day)}"
    return f"its last day ended {_fmt(policy.curfew, policy)}"


def _when_open(
    tier: Tier, named: frozenset[str] | None, policy: Policy, zone: str, day: Schedule
) -> str:
    """When this pass may enter ``zone`` on ``day``, as a guard would tell the holder."""

    def opens(zones: frozenset[str]) -> bool:
        return bool(zones) and zone in (named if named is not None else zones)

    times = []
    if opens(tier.zones.get(Phase.BEFORE, frozenset())):
        times.append(f"before the show (until {_fmt(day.show_start, policy, time_only=True)})")
    if opens(tier.zones.get(Phase.DURING, frozenset())):
        times.append("during the show")
    elif opens(tier.photo_window):
        minutes = int(day.photo_window.total_seconds() // 60)
        times.append(f"in the photo window (the first {minutes} min of the show)")
    if opens(tier.zones.get(Phase.AFTER, frozenset())):
        times.append(f"after the show (from {_fmt(day.show_end, policy, time_only=True)})")
    return "allowed " + " and ".join(times)


# -- the guard's override ------------------------------------------------------


def admit_by_hand(denied: Decision, by: str, denied_row: str) -> Decision:
    """A guard lets in the person ``denied`` (logged as row ``denied_row``)
    was about: granted, reason ``override``, the same pass fields (nothing
    more is believed than the denial believed: a forged pass stays without
    name or serial), and a message saying who let them in and what the
    denial was, so the row alone tells the whole story."""
    who = denied.holder or (f"pass {denied.serial}" if denied.serial is not None else None)
    whom = f"{who} ({denied.tier})" if who and denied.tier else who or "the person"
    return Decision(
        granted=True,
        reason=Reason.OVERRIDE,
        message=f"Granted by hand: {whom} let in by {by}; the gate had denied it "
        f"({denied.reason.value}, row {denied_row}).",
        zone=denied.zone,
        direction=denied.direction,
        phase=denied.phase,
        event=denied.event,
        serial=denied.serial,
        tier=denied.tier,
        holder=denied.holder,
        key_id=denied.key_id,
    )
