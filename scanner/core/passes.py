"""Pass format v1: the bytes inside a pass QR code, and their text form.

A pass is a compact binary record signed with Ed25519, written as ``BP1:``
followed by Base45 (RFC 9285) so that the whole text uses the QR alphanumeric
mode and a typical pass fits QR version 6 at error correction M. The exact
layout, the reasons for it and test vectors are in ``docs/pass-format.md``.

Reading is strict and in this order: the text form, the version byte, the key
(by the 4-byte key tag), the signature over everything before it, and only
then the fields. Nothing unsigned is ever interpreted. Any deviation (unknown
version, truncated field, trailing byte, over-long input, bad UTF-8) raises
:class:`~scanner.errors.PassFormatError` carrying the decision's reason code;
the decision core turns that into a denial. This module does no I/O.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import base45

from ..errors import IssueError, PassFormatError
from .keys import Ed25519PrivateKey, Ed25519PublicKey, key_id, sign, verify
from .names import holder_problem

__all__ = [
    "PASS_DOMAIN",
    "PASS_PREFIX",
    "PassContent",
    "SignedPass",
    "encode_pass",
    "id_tag",
    "key_tag",
    "read_pass",
]

PASS_PREFIX = "BP1:"
PASS_DOMAIN = b"backstage-scanner/pass/v1\x00"
FORMAT_VERSION = 1

KEY_TAG_BYTES = 4
EVENT_TAG_BYTES = 4
TIER_TAG_BYTES = 2
ZONE_TAG_BYTES = 2
SIGNATURE_BYTES = 64
MAX_HOLDER_BYTES = 40
MAX_ZONES = 16
MAX_SERIAL = 2**32 - 1
# Everything a valid v1 pass can hold fits well below these; longer input is
# refused before any decoding work.
MAX_PAYLOAD_BYTES = (
    2
    + KEY_TAG_BYTES
    + EVENT_TAG_BYTES
    + 5
    + TIER_TAG_BYTES
    + 1
    + MAX_ZONES * ZONE_TAG_BYTES
    + 8
    + 1
    + MAX_HOLDER_BYTES
    + SIGNATURE_BYTES
)
MIN_PAYLOAD_BYTES = 2 + KEY_TAG_BYTES + EVENT_TAG_BYTES + 1 + TIER_TAG_BYTES + SIGNATURE_BYTES
MAX_TEXT_CHARS = len(PASS_PREFIX) + (MAX_PAYLOAD_BYTES * 3 + 1) // 2

FLAG_ZONES = 0x01
FLAG_NOT_BEFORE = 0x02
FLAG_NOT_AFTER = 0x04
FLAG_HOLDER = 0x08
KNOWN_FLAGS = FLAG_ZONES | FLAG_NOT_BEFORE | FLAG_NOT_AFTER | FLAG_HOLDER

_BASE45_TEXT = re.compile(r"[0-9A-Z $%*+\-./:]*")


def id_tag(ident: str, size: int) -> bytes:
    """The short tag a pass carries for an event, tier or zone id."""
    return hashlib.sha256(ident.encode("utf-8")).digest()[:size]


def key_tag(key: Ed25519PublicKey) -> bytes:
    """The 4-byte key tag: the first 4 bytes of the key id."""
    return bytes.fromhex(key_id(key))[:KEY_TAG_BYTES]


@dataclass(frozen=True)
class PassContent:
    """What the organizer puts on a pass, with ids spelled out."""

    event: str
    serial: int
    tier: str
    zones: tuple[str, ...] | None = None
    not_before: datetime | None = None
    not_after: datetime | None = None
    holder: str | None = None


@dataclass(frozen=True)
class SignedPass:
    """A pass whose signature has been verified, as a reader sees it.

    Event, tier and zones arrive as tags; the event policy maps them back to
    ids (see :meth:`scanner.core.policy.Policy.tier_for_tag`).
    """

    key_id: str
    event_tag: bytes
    serial: int
    tier_tag: bytes
    zone_tags: tuple[bytes, ...] | None
    not_before: datetime | None
    not_after: datetime | None
    holder: str | None


def _check_holder(holder: str) -> bytes:
    problem = holder_problem(holder)
    if problem is not None:
        raise IssueError(f"holder name {holder!r}: {problem} (see docs/pass-format.md)")
    raw = holder.encode("utf-8")
    if len(raw) > MAX_HOLDER_BYTES:
        raise IssueError(
            f"holder name {holder!r} is {len(raw)} bytes in UTF-8; at most "
            f"{MAX_HOLDER_BYTES} fit on a pass"
        )
    return raw


def _epoch_seconds(when: datetime, what: str) -> int:
    if when.tzinfo is None:
        raise IssueError(f"{what} needs a time zone offset")
    seconds = int(when.timestamp())
    if not 0 <= seconds <= 0xFFFFFFFF:
        raise IssueError(f"{what} {when.isoformat()} is out of range")
    return seconds


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def encode_pass(key: Ed25519PrivateKey, content: PassContent) -> str:
    """Sign ``content`` with ``key`` and return the QR text (``BP1:...``)."""
    if not 0 <= content.serial <= MAX_SERIAL:
        raise IssueError(f"serial {content.serial} is outside 0..{MAX_SERIAL}")
    flags = 0
    fields = bytearray()
    if content.zones is not None:
        if not 1 <= len(content.zones) <= MAX_ZONES:
            raise IssueError(f"a pass names 1 to {MAX_ZONES} zones, not {len(content.zones)}")
        flags |= FLAG_ZONES
        fields.append(len(content.zones))
        for zone in content.zones:
            fields += id_tag(zone, ZONE_TAG_BYTES)
    if content.not_before is not None:
        flags |= FLAG_NOT_BEFORE
        fields += struct.pack(">I", _epoch_seconds(content.not_before, "not-before"))
    if content.not_after is not None:
        flags |= FLAG_NOT_AFTER
        fields += struct.pack(">I", _epoch_seconds(content.not_after, "not-after"))
    if (
        content.not_before is not None
        and content.not_after is not None
        and content.not_after <= content.not_before
    ):
        raise IssueError("not-after must be later than not-before")
    if content.holder is not None:
        flags |= FLAG_HOLDER
        raw = _check_holder(content.holder)
        fields.append(len(raw))
        fields += raw
    payload = (
        bytes([FORMAT_VERSION, flags])
        + key_tag(key.public_key())
        + id_tag(content.event, EVENT_TAG_BYTES)
        + _varint(content.serial)
        + id_tag(content.tier, TIER_TAG_BYTES)
        + bytes(fields)
    )
    signature = sign(key, PASS_DOMAIN, payload)
    encoded: bytes = base45.b45encode(payload + signature)
    return PASS_PREFIX + encoded.decode("ascii")


class _Reader:
    """A cursor over signed bytes that refuses to read past the end."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise PassFormatError("malformed", f"the pass is truncated in its {what}")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def byte(self, what: str) -> int:
        return self.take(1, what)[0]

    def varint(self, what: str) -> int:
        value = shift = 0
        for index in range(5):
            b = self.byte(what)
            value |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                if b == 0 and index > 0:
                    raise PassFormatError(
                        "malformed", f"the pass's {what} is not minimally encoded"
                    )
                if value > MAX_SERIAL:
                    raise PassFormatError("malformed", f"the pass's {what} is out of range")
                return value
        raise PassFormatError("malformed", f"the pass's {what} is too long")

    def time(self, what: str) -> datetime:
        (seconds,) = struct.unpack(">I", self.take(4, what))
        return datetime.fromtimestamp(seconds, UTC)


def _keys_by_tag(
    keys: Mapping[bytes, Ed25519PublicKey] | Iterable[Ed25519PublicKey],
) -> Mapping[bytes, Ed25519PublicKey]:
    if isinstance(keys, Mapping):
        return keys
    return {key_tag(k): k for k in keys}


def read_pass(
    text: str, keys: Mapping[bytes, Ed25519PublicKey] | Iterable[Ed25519PublicKey]
) -> SignedPass:
    """Verify and parse a pass text against the trusted pass-signing ``keys``.

    ``keys`` maps 4-byte key tags to keys (as :attr:`Policy.pass_keys_by_tag`
    does), or is a plain iterable of keys. Raises :class:`PassFormatError`
    with reason ``malformed``, ``unknown_key`` or ``bad_signature``.
    """
    if not isinstance(text, str):
        raise PassFormatError("malformed", "a pass is text")
    if len(text) > MAX_TEXT_CHARS:
        raise PassFormatError(
            "malformed", f"the code holds {len(text)} characters; too long for a pass"
        )
    if not text.startswith(PASS_PREFIX):
        raise PassFormatError("malformed", "the code is not a backstage pass")
    body = text[len(PASS_PREFIX) :]
    # Before decoding: b45decode drops trailing line feeds by itself, and the
    # text must be exactly what the code holds (docs/pass-format.md).
    if not _BASE45_TEXT.fullmatch(body):
        raise PassFormatError("malformed", "the pass holds characters outside Base45")
    try:
        data = base45.b45decode(body)
    except ValueError as err:
        raise PassFormatError("malformed", "the pass is not valid Base45") from err
    if not MIN_PAYLOAD_BYTES <= len(data) <= MAX_PAYLOAD_BYTES:
        raise PassFormatError("malformed", f"the pass is {len(data)} bytes; not a v1 pass")
    if data[0] != FORMAT_VERSION:
        raise PassFormatError("malformed", f"pass format version {data[0]} is not supported")

    payload, signature = data[:-SIGNATURE_BYTES], data[-SIGNATURE_BYTES:]
    tag = payload[2 : 2 + KEY_TAG_BYTES]
    key = _keys_by_tag(keys).get(tag)
    if key is None:
        raise PassFormatError(
            "unknown_key",
            f"the pass is signed by key {tag.hex()}..., which this event does not trust",
        )
    if not verify(key, PASS_DOMAIN, payload, signature):
        raise PassFormatError(
            "bad_signature", "the pass's signature does not match: forged or altered"
        )

    reader = _Reader(payload)
    reader.take(1, "version")
    flags = reader.byte("flags")
    if flags & ~KNOWN_FLAGS:
        raise PassFormatError("malformed", f"the pass sets unknown flags {flags:#04x}")
    reader.take(KEY_TAG_BYTES, "key tag")
    event_tag = reader.take(EVENT_TAG_BYTES, "event")
    serial = reader.varint("serial")
    tier_tag = reader.take(TIER_TAG_BYTES, "tier")
    zone_tags: tuple[bytes, ...] | None = None
    if flags & FLAG_ZONES:
        count = reader.byte("zone count")
        if not 1 <= count <= MAX_ZONES:
            raise PassFormatError("malformed", f"the pass names {count} zones")
        zone_tags = tuple(reader.take(ZONE_TAG_BYTES, "zones") for _ in range(count))
    not_before = reader.time("not-before") if flags & FLAG_NOT_BEFORE else None
    not_after = reader.time("not-after") if flags & FLAG_NOT_AFTER else None
    if not_before is not None and not_after is not None and not_after <= not_before:
        raise PassFormatError("malformed", "the pass's validity window is empty")
    holder: str | None = None
    if flags & FLAG_HOLDER:
        length = reader.byte("holder length")
        if not 1 <= length <= MAX_HOLDER_BYTES:
            raise PassFormatError("malformed", f"the holder name is {length} bytes")
        try:
            holder = reader.take(length, "holder").decode("utf-8")
        except UnicodeDecodeError as err:
            raise PassFormatError("malformed", "the holder name is not UTF-8") from err
        problem = holder_problem(holder)
        if problem is not None:
            raise PassFormatError("malformed", f"holder name: {problem}")
    extra = len(payload) - reader.pos
    if extra:
        plural = "byte" if extra == 1 else "bytes"
        raise PassFormatError("malformed", f"the pass has {extra} trailing {plural}")
    return SignedPass(
        key_id=key_id(key),
        event_tag=event_tag,
        serial=serial,
        tier_tag=tier_tag,
        zone_tags=zone_tags,
        not_before=not_before,
        not_after=not_after,
        holder=holder,
    )
