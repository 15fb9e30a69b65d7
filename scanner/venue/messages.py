"""What gates tell each other over the venue's broker: build, sign, check.

Three kinds of message, on topics under ``backstage/EVENT/``:

``scan/GATE``
    one scan a gate logged, signed with its device key (kind ``venue-scan``):
    gate, the gate's own sequence number and the scan's id, time, door,
    zone, direction, the event it serves and the pass's (none for a code
    that is not one of its passes), serial, tier, decision, reason, clock
    and phase.
    Never a holder's name, the pass text or the guard's message.
``hb/GATE``
    a heartbeat, signed too (``venue-heartbeat``), retained by the broker:
    how far the gate's log goes (``head``), its phase, faults, clock, counts
    and when it last had a frame; a counter that only grows within one run
    (``boot``, ``n``) so a heartbeat replayed later proves nothing (the
    clock is not used for that: a gate whose clock was wrong and is fixed
    must not silence itself).
``sync/GATE`` and ``replay/GATE``
    a catch-up request, signed by the box that asks (``venue-sync``: send me
    again your own scans from these sequence numbers on, on
    ``replay/REQUESTER``), and those scans again, byte for byte as signed.
    The live view, which has no device key, asks unsigned on
    ``sync/live`` only, a topic the broker's ACL gives its login alone
    (:mod:`.broker`); what it asks can only add replays, never cancel one.

Everything from the wire is hostile until checked here: the size first,
then the envelope, the signature against the signed roster (a key that is
not a roster box's is an unknown gate; a roster box speaking for another is
refused), the event, the topic, then every field of the body by type and
range, with no key missing and none extra. A box speaks only for its own
place: a scan must name the door, zone and direction the roster gives its
signer (``wrong_place``), and its time must not lie ahead of the
receiver's clock by more than the allowed skew (``future``) nor before
the event opens (``before_event``). Each refusal is a
:class:`~scanner.errors.DroppedMessageError` with a stable reason and, once
the signature is checked, the box that signed it. No I/O.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any, TypeVar

from ..core.keys import Ed25519PrivateKey, Ed25519PublicKey, key_id, parse_public_key
from ..core.policy import GATE_ID_PATTERN, ID_PATTERN, GatePlace, Policy
from ..core.reading import matching, one_of, printable, read, rule, shown, within
from ..core.signed import format_utc, open_document, parse_utc, sign_document
from ..core.untrusted import parse_json
from ..core.venue_view import Sighting
from ..errors import DroppedMessageError, MalformedError, SignatureError, UnknownKeyError

__all__ = [
    "HEARTBEAT_KIND",
    "LIVE_REQUESTER",
    "MAX_MESSAGE",
    "SCAN_KIND",
    "SYNC_KIND",
    "Heartbeat",
    "RosterKeys",
    "SyncRequest",
    "heartbeat_message",
    "new_boot",
    "observer_sync_message",
    "open_heartbeat",
    "open_scan",
    "open_sync",
    "peek",
    "peek_body",
    "roster_keys",
    "same_scan",
    "scan_body",
    "scan_message",
    "sync_message",
    "topic",
    "topic_gate",
]

SCAN_KIND = "venue-scan"
HEARTBEAT_KIND = "venue-heartbeat"
SYNC_KIND = "venue-sync"
LIVE_REQUESTER = "live"  # the live view's name on the broker (its login, its replay topic)
ROOT = "backstage"
# A gate's last heartbeat as its service stops says so in its status, so the
# venue tells a box switched off at the end of the night from one gone silent.
STOPPED_STATUS = "stopped: the gate's service was stopped"
MAX_MESSAGE = 4096  # a scan message is about 800 bytes, a heartbeat about 1200
MAX_SYNC = 16 * 1024
MAX_SEQ = 2**53
T = TypeVar("T")
REASON = re.compile(r"[a-z][a-z_]{0,31}")
SCAN_ID = re.compile(r"[0-9a-f][0-9a-f-]{0,63}")
BOOT = re.compile(r"[0-9a-f]{16}")
FAULT = re.compile(r"[a-z][a-z_]{0,31}")


def _utc_time(value: str) -> datetime:
    if len(value) > 40:
        raise ValueError(f"{shown(value)} is not a time")
    return parse_utc(value)


def _age(value: float) -> float:
    if not 0 <= value < 10**9:
        raise ValueError(f"{value} is not an age in seconds (0 to 10**9)")
    return value


def _want(value: Mapping[str, Any]) -> dict[str, int]:
    def is_seq(seq: Any) -> bool:
        return isinstance(seq, int) and not isinstance(seq, bool) and 1 <= seq <= MAX_SEQ

    if len(value) > 1024 or not all(
        GATE_ID_PATTERN.fullmatch(g) and is_seq(s) for g, s in value.items()
    ):
        raise ValueError(
            f"not a catch-up request (at most 1024 gate ids, each with a sequence number "
            f"1 to {MAX_SEQ})"
        )
    return dict(value)


GATE = rule(matching(GATE_ID_PATTERN, "a gate id"))
SEQ = rule(within(1, MAX_SEQ, "a sequence number"))
COUNT = rule(within(0, MAX_SEQ, "a count"))
NAME = rule(matching(ID_PATTERN, "an id"))
CLOCK = rule(one_of(("trusted", "untrusted")))
PHASE = rule(printable(40))
TIME = rule(_utc_time)


@dataclass(frozen=True)
class _ScanBody:
    """A scan as a gate writes it (``venue-scan``): every key, none extra."""

    gate: str = field(metadata=GATE)
    seq: int = field(metadata=SEQ)
    id: str = field(metadata=rule(matching(SCAN_ID, "a scan id")))
    ts: datetime = field(metadata=TIME)
    event: str  # the event the gate serves: checked with the signature
    pass_event: str | None  # the pass's own: this event's or none (checked in open_scan)
    door: str | None = field(metadata=NAME)
    zone: str | None = field(metadata=NAME)
    direction: str | None = field(metadata=rule(one_of(("entry", "exit"))))
    serial: int | None = field(metadata=rule(within(0, 2**32 - 1, "a serial")))
    tier: str | None = field(metadata=NAME)
    decision: str = field(metadata=rule(one_of(("granted", "denied"))))
    reason: str = field(metadata=rule(matching(REASON, "a reason code")))
    clock: str = field(metadata=CLOCK)
    phase: str | None = field(metadata=PHASE)


@dataclass(frozen=True)
class _Peers:
    """A heartbeat's word on its peers: how many are in sync, of how many."""

    in_sync: int = field(default=0, metadata=rule(within(0, 100_000, "a number of gates")))
    of: int = field(default=0, metadata=rule(within(0, 100_000, "a number of gates")))
    behind: tuple[str, ...] = field(
        default=(), metadata=rule(items=matching(GATE_ID_PATTERN, "a gate id"), most=16)
    )


@dataclass(frozen=True)
class _HeartbeatBody:
    """A heartbeat as a gate writes it (``venue-heartbeat``)."""

    gate: str = field(metadata=GATE)
    event: str
    boot: str = field(metadata=rule(matching(BOOT, "a boot id (16 hex digits)")))
    n: int = field(metadata=COUNT)
    ts: datetime = field(metadata=TIME)
    head: int = field(metadata=COUNT)
    acked: int = field(metadata=COUNT)
    clock: str = field(metadata=CLOCK)
    phase: str | None = field(metadata=PHASE)
    faults: tuple[str, ...] = field(
        metadata=rule(items=matching(FAULT, "a fault name"), most=16)
    )
    frames: int = field(metadata=COUNT)
    last_frame_age: float | None = field(metadata=rule(_age))
    granted: int = field(metadata=COUNT)
    denied: int = field(metadata=COUNT)
    peers: _Peers
    status: str | None = field(metadata=rule(printable(300)))


@dataclass(frozen=True)
class _SyncBody:
    """A box's signed catch-up request (``venue-sync``)."""

    gate: str = field(metadata=GATE)
    event: str
    ts: datetime = field(metadata=TIME)
    want: Mapping[str, int] = field(metadata=rule(_want))


@dataclass(frozen=True)
class _LiveSync:
    """The live view's unsigned catch-up request, on its own topic."""

    to: str
    want: Mapping[str, int] = field(metadata=rule(_want))


SCAN_FIELDS = tuple(f.name for f in fields(_ScanBody))
HEARTBEAT_FIELDS = tuple(f.name for f in fields(_HeartbeatBody))


def topic(event: str, kind: str, gate: str) -> str:
    """``backstage/EVENT/KIND/GATE``: scan, hb, sync or replay."""
    return f"{ROOT}/{event}/{kind}/{gate}"


def topic_gate(name: str, event: str, kind: str) -> str:
    """The gate a topic names, when it is ``backstage/EVENT/KIND/GATE``."""
    parts = name.split("/")
    if (
        len(parts) != 4
        or parts[:3] != [ROOT, event, kind]
        or not GATE_ID_PATTERN.fullmatch(parts[3])
    ):
        raise DroppedMessageError("wrong_topic", f"not a {kind} topic of event {event}")
    return parts[3]


# -- the roster -----------------------------------------------------------------


@dataclass(frozen=True)
class RosterKeys:
    """The boxes whose messages a gate believes: key id -> (gate, key), and
    where the roster puts each gate."""

    keys: Mapping[str, tuple[str, Ed25519PublicKey]]
    places: Mapping[str, GatePlace] = field(default_factory=dict)

    @property
    def trusted(self) -> dict[str, Ed25519PublicKey]:
        return {kid: key for kid, (_, key) in self.keys.items()}

    @property
    def gates(self) -> set[str]:
        return {gate for gate, _ in self.keys.values()}

    def vouches_for(self, gate: str, signer: str | None) -> bool:
        """Whether ``signer`` (a key id) is the roster's key of ``gate``."""
        return signer is not None and self.keys.get(signer, ("", None))[0] == gate


def roster_keys(policy: Policy) -> RosterKeys:
    """The device keys the signed policy's roster lists, by key id."""
    keys = {}
    for gate, place in policy.gates.items():
        if place.device_key is not None:
            key = parse_public_key(place.device_key)
            keys[key_id(key)] = (gate, key)
    return RosterKeys(keys, dict(policy.gates))


@dataclass(frozen=True)
class Bounds:
    """When a scan may have been made, as the receiver sees it: no later than
    ``now`` plus ``ahead`` (the clock skew a peer may have), and not before
    the event ``opens``."""

    now: datetime
    ahead: timedelta
    opens: datetime | None = None


# -- building -------------------------------------------------------------------


def scan_body(row: Mapping[str, Any], event: str) -> dict[str, Any]:
    """The holder-free part of a scan log row: what goes on the wire.
    ``event`` is the event the gate serves; ``pass_event`` the row's own
    (None for a code that is not a pass of this event)."""
    body = {name: row.get(name) for name in SCAN_FIELDS}
    body["event"], body["pass_event"] = event, row.get("event")
    return body


def scan_message(key: Ed25519PrivateKey, row: Mapping[str, Any], event: str) -> bytes:
    """A scan log row as a signed message. Deterministic: the same row signs
    to the same bytes, so a re-sent scan is recognisably the same one."""
    body = scan_body(row, event)
    return sign_document(key, SCAN_KIND, body, parse_utc(str(body["ts"])))


def new_boot() -> str:
    return secrets.token_hex(8)


def heartbeat_message(key: Ed25519PrivateKey, body: Mapping[str, Any], at: datetime) -> bytes:
    fields = dict(body)
    fields["ts"] = format_utc(at)
    return sign_document(key, HEARTBEAT_KIND, {k: fields.get(k) for k in HEARTBEAT_FIELDS}, at)


def sync_message(
    key: Ed25519PrivateKey, requester: str, event: str, want: Mapping[str, int], at: datetime
) -> bytes:
    """A box's signed request: send me your scans again from these on."""
    body = {
        "gate": requester,
        "event": event,
        "ts": format_utc(at),
        "want": {g: int(s) for g, s in sorted(want.items())},
    }
    return sign_document(key, SYNC_KIND, body, at)


def observer_sync_message(requester: str, want: Mapping[str, int]) -> bytes:
    """The live view's request, unsigned (it has no device key): taken only
    on its own topic, which the broker lets its login alone write."""
    return (
        '{"to":"'
        + requester
        + '","want":{'
        + ",".join(f'"{g}":{int(s)}' for g, s in sorted(want.items()))
        + "}}"
    ).encode("ascii")


# -- checking ---------------------------------------------------------------------


def _drop(reason: str, detail: str, source: str | None = None) -> DroppedMessageError:
    return DroppedMessageError(reason, detail, source=source)


def peek_body(data: bytes) -> Mapping[str, Any]:
    """A message's body *without* checking its signature: enough to recognise
    a scan already held, byte for byte. Never trust it for anything else."""
    if len(data) > MAX_MESSAGE:
        raise _drop("oversized", f"{len(data)} bytes; at most {MAX_MESSAGE}")
    try:
        envelope = parse_json(data, max_bytes=MAX_MESSAGE, max_depth=4)
        inner = parse_json(str(envelope["signed"]).encode("utf-8"), max_bytes=MAX_MESSAGE)
        body = inner["body"]
        if not isinstance(body, dict):
            raise TypeError("no body")
        return body
    except (MalformedError, KeyError, TypeError, AttributeError) as err:
        raise _drop("malformed", f"not a signed message ({err})") from err


def peek(data: bytes) -> tuple[str, Any, Any]:
    """(kind, gate, seq or n) of a message, unchecked (see :func:`peek_body`)."""
    body = peek_body(data)
    return "", body.get("gate"), body.get("seq", body.get("n"))


def same_scan(body: Mapping[str, Any], held: Sighting) -> bool:
    """Whether an (unchecked) scan body says exactly what a held scan says."""
    return {
        "id": body.get("id"),
        "ts": body.get("ts"),
        "pass_event": body.get("pass_event"),
        "serial": body.get("serial"),
        "tier": body.get("tier"),
        "zone": body.get("zone"),
        "door": body.get("door"),
        "direction": body.get("direction"),
        "decision": body.get("decision"),
        "reason": body.get("reason"),
        "clock": body.get("clock"),
        "phase": body.get("phase"),
    } == {
        "id": held.id,
        "ts": format_utc(held.ts),
        "pass_event": held.event,
        "serial": held.serial,
        "tier": held.tier,
        "zone": held.zone,
        "door": held.door,
        "direction": held.direction,
        "decision": "granted" if held.granted else "denied",
        "reason": held.reason,
        "clock": "trusted" if held.clock_trusted else "untrusted",
        "phase": held.phase,
    }


def _open(
    data: bytes, kind: str, roster: RosterKeys, event: str, gate: str, *, most: int = MAX_MESSAGE
) -> tuple[Mapping[str, Any], str]:
    """The checked body of a signed message, and the key id that signed it."""
    if len(data) > most:
        raise _drop("oversized", f"{len(data)} bytes; at most {most}")
    try:
        document = open_document(data, kind=kind, trusted=roster.trusted, max_bytes=most)
    except UnknownKeyError as err:
        raise _drop("unknown_gate", f"signed by a box not in the policy's roster ({err})") from err
    except SignatureError as err:
        raise _drop("forged", str(err)) from err
    owner = roster.keys[document.key_id][0]
    body = document.body
    if body.get("gate") != owner:
        raise _drop(
            "wrong_gate",
            f"gate {owner}'s key signed a message naming {str(body.get('gate'))[:40]}",
            owner,
        )
    if gate != owner:
        raise _drop("wrong_topic", f"gate {owner}'s message on the topic of {gate}", owner)
    if body.get("event") != event:
        raise _drop(
            "wrong_event", f"for event {str(body.get('event'))[:64]}, not {event}", owner
        )
    return body, document.key_id


def _body(kind: type[T], body: Mapping[str, Any], what: str, source: str | None) -> T:
    """``body`` read as ``kind``: every key, none extra, each as a gate writes it."""
    try:
        return read(kind, body)
    except MalformedError as err:
        raise _drop("malformed", f"{what}: {err}", source) from err


def open_scan(
    data: bytes,
    topic_name: str,
    roster: RosterKeys,
    event: str,
    bounds: Bounds | None = None,
) -> Sighting:
    """A scan message checked all through, as a :class:`Sighting`: signed by a
    roster box, for its own place, and (with ``bounds``) made at a believable
    time."""
    gate = topic_gate(topic_name, event, "scan") if "/scan/" in topic_name else None
    if gate is None:
        gate = topic_gate(topic_name, event, "replay")  # a replay names the requester
        body, signer = _open(data, SCAN_KIND, roster, event, _peek_gate(data))
    else:
        body, signer = _open(data, SCAN_KIND, roster, event, gate)
    owner = str(body["gate"])
    scan = _body(_ScanBody, body, "scan", owner)
    if scan.pass_event not in (None, event):
        raise _drop(
            "malformed", f"scan: pass_event: {shown(scan.pass_event)} is not {event} or null", owner
        )
    if scan.decision == "granted" and (scan.zone is None or scan.direction is None):
        raise _drop("malformed", "scan: a grant names its zone and direction", owner)
    place = roster.places.get(owner)
    said = (scan.zone, scan.direction, scan.door)
    if place is None or said != (place.zone, place.direction.value, place.door):
        where = "nowhere" if place is None else (
            f"door {place.door or '-'} into {place.zone}, {place.direction.value}"
        )
        raise _drop(
            "wrong_place",
            f"gate {owner} spoke for door {scan.door or '-'} into {scan.zone}, "
            f"{scan.direction}; the roster puts it at {where}",
            owner,
        )
    if bounds is not None:
        if scan.ts > bounds.now + bounds.ahead:
            raise _drop(
                "future",
                f"gate {owner} row {scan.seq} is dated {format_utc(scan.ts)}, after now "
                f"({format_utc(bounds.now)}) and the clock skew allowed",
                owner,
            )
        if bounds.opens is not None and scan.ts < bounds.opens:
            raise _drop(
                "before_event",
                f"gate {owner} row {scan.seq} is dated {format_utc(scan.ts)}, before the event "
                f"opens ({format_utc(bounds.opens)})",
                owner,
            )
    return Sighting(
        id=scan.id,
        gate=scan.gate,
        seq=scan.seq,
        ts=scan.ts,
        event=scan.pass_event,
        serial=scan.serial,
        tier=scan.tier,
        zone=scan.zone,
        door=scan.door,
        direction=scan.direction,
        granted=scan.decision == "granted",
        reason=scan.reason,
        clock_trusted=scan.clock == "trusted",
        phase=scan.phase,
        signer=signer,
    )


def _peek_gate(data: bytes) -> str:
    gate = peek(data)[1]
    if not isinstance(gate, str):
        raise _drop("malformed", "names no gate")
    return gate


@dataclass(frozen=True)
class Heartbeat:
    """A checked heartbeat: the gate's own word on its state."""

    gate: str
    boot: str
    n: int
    ts: datetime
    head: int
    acked: int
    clock_trusted: bool
    body: Mapping[str, Any]


def open_heartbeat(data: bytes, topic_name: str, roster: RosterKeys, event: str) -> Heartbeat:
    gate = topic_gate(topic_name, event, "hb")
    body, _ = _open(data, HEARTBEAT_KIND, roster, event, gate)
    beat = _body(_HeartbeatBody, body, "heartbeat", gate)
    return Heartbeat(
        gate=gate,
        boot=beat.boot,
        n=beat.n,
        ts=beat.ts,
        head=beat.head,
        acked=beat.acked,
        clock_trusted=beat.clock == "trusted",
        body=body,
    )


@dataclass(frozen=True)
class SyncRequest:
    """Send me again your scans from these sequence numbers on."""

    requester: str
    want: Mapping[str, int]


def open_sync(
    data: bytes,
    topic_name: str,
    roster: RosterKeys,
    event: str,
    *,
    now: datetime,
    window: timedelta,
) -> SyncRequest:
    """A catch-up request: a roster box's, signed and made within ``window``
    of ``now`` (an old one replayed asks for nothing), or the live view's on
    its own topic."""
    requester = topic_gate(topic_name, event, "sync")
    if len(data) > MAX_SYNC:
        raise _drop("oversized", f"{len(data)} bytes; at most {MAX_SYNC}")
    if requester == LIVE_REQUESTER and requester not in roster.places:
        try:
            body = parse_json(data, max_bytes=MAX_SYNC, max_depth=3)
        except MalformedError as err:
            raise _drop("malformed", f"sync: {err}") from err
        live = _body(_LiveSync, body, "sync", None)
        if live.to != requester:
            raise _drop("malformed", f"sync: to: {shown(live.to)} is not {requester}")
        return SyncRequest(requester, dict(live.want))
    signed, _ = _open(data, SYNC_KIND, roster, event, requester, most=MAX_SYNC)
    sync = _body(_SyncBody, signed, "sync", requester)
    if abs(sync.ts - now) > window:
        raise _drop(
            "stale",
            f"a request of {requester} made at {format_utc(sync.ts)}, not now "
            f"({format_utc(now)})",
            requester,
        )
    return SyncRequest(requester, dict(sync.want))


def observer_id() -> str:
    """A name for a gate-less listener on an open broker (a bench, a test);
    the live view on a secured broker is :data:`LIVE_REQUESTER`."""
    return f"live-{uuid.uuid4().hex[:12]}"
