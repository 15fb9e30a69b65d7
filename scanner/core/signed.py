"""Signed documents: the envelope for everything a gate may be told to trust.

Event policies, revocation lists, key updates, time settings and export
manifests all travel in one envelope: a small JSON object whose ``signed``
member is a string holding the exact canonical JSON bytes that were signed.
Readers verify those bytes and only then parse them, so there is no
re-serialisation ambiguity. The signature covers a domain that names the
document kind (``backstage-scanner/doc/v1/policy``...), so a policy signature
can never pass for a manifest's or a pass's.

An envelope looks like::

    {"format": "backstage-signed-v1", "kind": "policy",
     "key_id": "1f0c...", "public_key": "ed25519:...",
     "signed": "{\\"body\\":{...},\\"key_id\\":\\"1f0c...\\",\\"kind\\":\\"policy\\",
                \\"signed_at\\":\\"2026-11-20T12:00:00Z\\"}",
     "signature": "<base64>"}

This module does no I/O: it turns bytes into verified documents and back.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..errors import KeyFileError, MalformedError, SignatureError, UnknownKeyError
from .keys import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
    key_id,
    parse_public_key,
    public_key_text,
    sign,
    verify,
)
from .untrusted import parse_json

__all__ = [
    "ENVELOPE_FORMAT",
    "SignedDocument",
    "format_utc",
    "open_document",
    "parse_utc",
    "sign_document",
]

ENVELOPE_FORMAT = "backstage-signed-v1"
MAX_DOCUMENT_BYTES = 4 * 1024 * 1024


def _domain(kind: str) -> bytes:
    return f"backstage-scanner/doc/v1/{kind}\x00".encode("ascii")


def format_utc(when: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``, to the second when possible."""
    when = when.astimezone(UTC)
    text = when.isoformat(timespec="microseconds" if when.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def parse_utc(text: str) -> datetime:
    """Read an ISO 8601 time that must carry an offset; returned in UTC."""
    try:
        when = datetime.fromisoformat(text)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{text!r} is not an ISO 8601 time") from err
    if when.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone offset")
    return when.astimezone(UTC)


def canonical_json(value: Any) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


@dataclass(frozen=True)
class SignedDocument:
    """A verified document: its kind, body, signing time and signer."""

    kind: str
    body: Mapping[str, Any]
    signed_at: datetime
    key_id: str
    public_key: Ed25519PublicKey
    raw: bytes  # the envelope exactly as read, for storing unchanged


def sign_document(
    key: Ed25519PrivateKey, kind: str, body: Mapping[str, Any], signed_at: datetime
) -> bytes:
    """Wrap ``body`` (JSON-able) in a signed envelope; returns the file's bytes."""
    kid = key_id(key)
    signed = canonical_json(
        {"kind": kind, "signed_at": format_utc(signed_at), "key_id": kid, "body": body}
    )
    envelope = {
        "format": ENVELOPE_FORMAT,
        "kind": kind,
        "key_id": kid,
        "public_key": public_key_text(key.public_key()),
        "signed": signed.decode("utf-8"),
        "signature": base64.b64encode(sign(key, _domain(kind), signed)).decode("ascii"),
    }
    return (json.dumps(envelope, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


def _trusted_map(
    trusted: Mapping[str, Ed25519PublicKey] | Iterable[Ed25519PublicKey] | None,
) -> Mapping[str, Ed25519PublicKey] | None:
    if trusted is None or isinstance(trusted, Mapping):
        return trusted
    return {key_id(k): k for k in trusted}


def open_document(
    data: bytes,
    *,
    kind: str,
    trusted: Mapping[str, Ed25519PublicKey] | Iterable[Ed25519PublicKey] | None,
    max_bytes: int = MAX_DOCUMENT_BYTES,
) -> SignedDocument:
    """Verify an envelope of ``kind`` against ``trusted`` keys and return it.

    ``trusted=None`` checks the document against the key it carries: that
    proves it is intact, not who made it; only tools on the organizer's side
    use it. Raises :class:`SignatureError` (or :class:`UnknownKeyError`).
    """
    try:
        envelope = parse_json(data, max_bytes=max_bytes)
    except MalformedError as err:
        raise SignatureError(f"the file is not a signed document: {err}") from err
    if not isinstance(envelope, dict) or envelope.get("format") != ENVELOPE_FORMAT:
        raise SignatureError(f"the file is not a signed document ({ENVELOPE_FORMAT})")
    if envelope.get("kind") != kind:
        raise SignatureError(f"the file is a {envelope.get('kind')!r} document, not a {kind!r}")
    signed_text = envelope.get("signed")
    signature_text = envelope.get("signature")
    if not isinstance(signed_text, str) or not isinstance(signature_text, str):
        raise SignatureError("the document is unsigned")
    try:
        signature = base64.b64decode(signature_text, validate=True)
    except (binascii.Error, ValueError) as err:  # ValueError: not ASCII at all
        raise SignatureError("the document's signature is not base64") from err

    claimed_id = envelope.get("key_id")
    trusted_map = _trusted_map(trusted)
    if trusted_map is None:
        public = envelope.get("public_key")
        if not isinstance(public, str):
            raise SignatureError("the document carries no public key")
        try:
            key = parse_public_key(public)
        except KeyFileError as err:
            raise SignatureError(f"the document's public key is not valid: {err}") from err
    else:
        found = trusted_map.get(claimed_id) if isinstance(claimed_id, str) else None
        if found is None:
            raise UnknownKeyError(
                f"the document is signed by key {claimed_id}, which is not trusted here"
            )
        key = found
    signed = signed_text.encode("utf-8")
    if not verify(key, _domain(kind), signed, signature):
        raise SignatureError("the document's signature does not match: it was altered or forged")

    try:
        inner = parse_json(signed, max_bytes=max_bytes)
    except MalformedError as err:
        raise SignatureError(f"the signed part of the document is not well formed: {err}") from err
    if (
        not isinstance(inner, dict)
        or inner.get("kind") != kind
        or inner.get("key_id") != key_id(key)
        or not isinstance(inner.get("body"), dict)
        or not isinstance(inner.get("signed_at"), str)
    ):
        raise SignatureError("the signed part of the document is not well formed")
    try:
        signed_at = parse_utc(inner["signed_at"])
    except ValueError as err:
        raise SignatureError(f"the document's signing time is invalid: {err}") from err
    return SignedDocument(
        kind=kind,
        body=inner["body"],
        signed_at=signed_at,
        key_id=key_id(key),
        public_key=key,
        raw=data,
    )
