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
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..core.keys import Ed25519PrivateKey, Ed25519PublicKey, key_id, parse_public_key
from ..core.policy import GATE_ID_PATTERN, ID_PATTERN, GatePlace, Policy
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
REASON = re.compile(r"[a-z][a-z_]{0,31}")
SCAN_ID = re.compile(r"[0-9a-f][0-9a-f-]{0,63}")
BOOT = re.compile(r"[0-9a-f]{16}")
FAULT = re.compile(r"[a-z][a-z_]{0,31}")
SCAN_FIELDS = (
    "gate",
    "seq",
    "id",
    "ts",
    "event",
    "pass_event",
    "door",
    "zone",
    "direction",
    "serial",
    "tier",
    "decision",
    "reason",
    "clock",
    "phase",
)
HEARTBEAT_FIELDS = (
    "gate",
    "event",
    "boot",
    "n",
    "ts",
    "head",
    "acked",
    "clock",
    "phase",
    "faults",
    "frames",
    "last_frame_age",
    "granted",
    "denied",
    "peers",
    "status",
)


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


def _exact(
    body: Mapping[str, Any], fields: tuple[str, ...], what: str, source: str | None = None
) -> None:
    if set(body) != set(fields):
        extra = sorted(set(body) - set(fields))
        missing = sorted(set(fields) - set(body))
        raise _drop("malformed", f"{what}: fields {extra or missing} are not a {what}'s", source)


def _int(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _ident(value: Any, pattern: re.Pattern[str] = ID_PATTERN, *, none: bool = True) -> bool:
    return (none and value is None) or (isinstance(value, str) and bool(pattern.fullmatch(value)))


def _text(value: Any, most: int, *, none: bool = True) -> bool:
    return (none and value is None) or (
        isinstance(value, str) and len(value) <= most and value.isprintable()
    )


def _time(value: Any, what: str, source: str | None = None) -> datetime:
    try:
        if not isinstance(value, str) or len(value) > 40:
            raise ValueError("not a time")
        return parse_utc(value)
    except ValueError as err:
        raise _drop("malformed", f"{what}: ts is not a time", source) from err


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
    _exact(body, SCAN_FIELDS, "scan", owner)
    bad = [
        name
        for name, ok in (
            ("seq", _int(body["seq"], 1, MAX_SEQ)),
            ("pass_event", body["pass_event"] in (None, event)),
            ("id", _ident(body["id"], SCAN_ID, none=False)),
            ("door", _ident(body["door"])),
            ("zone", _ident(body["zone"])),
            ("direction", body["direction"] in (None, "entry", "exit")),
            ("serial", body["serial"] is None or _int(body["serial"], 0, 2**32 - 1)),
            ("tier", _ident(body["tier"])),
            ("decision", body["decision"] in ("granted", "denied")),
            ("reason", _ident(body["reason"], REASON, none=False)),
            ("clock", body["clock"] in ("trusted", "untrusted")),
            ("phase", _text(body["phase"], 40)),
        )
        if not ok
    ]
    if bad:
        raise _drop("malformed", f"scan: {', '.join(bad)} not as a gate writes it", owner)
    if body["decision"] == "granted" and (body["zone"] is None or body["direction"] is None):
        raise _drop("malformed", "scan: a grant names its zone and direction", owner)
    place = roster.places.get(owner)
    said = (body["zone"], body["direction"], body["door"])
    if place is None or said != (place.zone, place.direction.value, place.door):
        where = "nowhere" if place is None else (
            f"door {place.door or '-'} into {place.zone}, {place.direction.value}"
        )
        raise _drop(
            "wrong_place",
            f"gate {owner} spoke for door {body['door'] or '-'} into {body['zone']}, "
            f"{body['direction']}; the roster puts it at {where}",
            owner,
        )
    ts = _time(body["ts"], "scan", owner)
    if bounds is not None:
        if ts > bounds.now + bounds.ahead:
            raise _drop(
                "future",
                f"gate {owner} row {body['seq']} is dated {format_utc(ts)}, after now "
                f"({format_utc(bounds.now)}) and the clock skew allowed",
                owner,
            )
        if bounds.opens is not None and ts < bounds.opens:
            raise _drop(
                "before_event",
                f"gate {owner} row {body['seq']} is dated {format_utc(ts)}, before the event "
                f"opens ({format_utc(bounds.opens)})",
                owner,
            )
    return Sighting(
        id=body["id"],
        gate=body["gate"],
        seq=body["seq"],
        ts=ts,
        event=body["pass_event"],
        serial=body["serial"],
        tier=body["tier"],
        zone=body["zone"],
        door=body["door"],
        direction=body["direction"],
        granted=body["decision"] == "granted",
        reason=body["reason"],
        clock_trusted=body["clock"] == "trusted",
        phase=body["phase"],
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
    _exact(body, HEARTBEAT_FIELDS, "heartbeat", gate)
    faults, peers = body["faults"], body["peers"]
    bad = [
        name
        for name, ok in (
            ("boot", _ident(body["boot"], BOOT, none=False)),
            ("n", _int(body["n"], 0, MAX_SEQ)),
            ("head", _int(body["head"], 0, MAX_SEQ)),
            ("acked", _int(body["acked"], 0, MAX_SEQ)),
            ("clock", body["clock"] in ("trusted", "untrusted")),
            ("phase", _text(body["phase"], 40)),
            (
                "faults",
                isinstance(faults, list)
                and len(faults) <= 16
                and all(_ident(f, FAULT, none=False) for f in faults),
            ),
            ("frames", _int(body["frames"], 0, MAX_SEQ)),
            (
                "last_frame_age",
                body["last_frame_age"] is None
                or (
                    isinstance(body["last_frame_age"], int | float)
                    and not isinstance(body["last_frame_age"], bool)
                    and 0 <= body["last_frame_age"] < 10**9
                ),
            ),
            ("granted", _int(body["granted"], 0, MAX_SEQ)),
            ("denied", _int(body["denied"], 0, MAX_SEQ)),
            (
                "peers",
                isinstance(peers, dict)
                and set(peers) <= {"in_sync", "of", "behind"}
                and _int(peers.get("in_sync", 0), 0, 100_000)
                and _int(peers.get("of", 0), 0, 100_000)
                and isinstance(peers.get("behind", []), list)
                and len(peers.get("behind", [])) <= 16
                and all(_ident(g, GATE_ID_PATTERN, none=False) for g in peers.get("behind", [])),
            ),
            ("status", _text(body["status"], 300)),
        )
        if not ok
    ]
    if bad:
        raise _drop("malformed", f"heartbeat: {', '.join(bad)} not as a gate writes it", gate)
    return Heartbeat(
        gate=gate,
        boot=body["boot"],
        n=body["n"],
        ts=_time(body["ts"], "heartbeat", gate),
        head=body["head"],
        acked=body["acked"],
        clock_trusted=body["clock"] == "trusted",
        body=body,
    )


@dataclass(frozen=True)
class SyncRequest:
    """Send me again your scans from these sequence numbers on."""

    requester: str
    want: Mapping[str, int]


def _want(value: Any, source: str | None) -> dict[str, int]:
    if (
        not isinstance(value, dict)
        or len(value) > 1024
        or not all(
            isinstance(g, str) and GATE_ID_PATTERN.fullmatch(g) and _int(s, 1, MAX_SEQ)
            for g, s in value.items()
        )
    ):
        raise _drop("malformed", "sync: not a catch-up request", source)
    return dict(value)


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
        if not isinstance(body, dict) or set(body) != {"to", "want"} or body["to"] != requester:
            raise _drop("malformed", "sync: not a catch-up request")
        return SyncRequest(requester, _want(body["want"], None))
    body, _ = _open(data, SYNC_KIND, roster, event, requester, most=MAX_SYNC)
    _exact(body, ("gate", "event", "ts", "want"), "sync", requester)
    made = _time(body["ts"], "sync", requester)
    if abs(made - now) > window:
        raise _drop(
            "stale",
            f"a request of {requester} made at {format_utc(made)}, not now ({format_utc(now)})",
            requester,
        )
    return SyncRequest(requester, _want(body["want"], requester))


def observer_id() -> str:
    """A name for a gate-less listener on an open broker (a bench, a test);
    the live view on a secured broker is :data:`LIVE_REQUESTER`."""
    return f"live-{uuid.uuid4().hex[:12]}"
