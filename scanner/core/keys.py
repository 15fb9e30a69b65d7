"""Ed25519 keys: making them, key ids, their text form, and domain-separated
signatures.

Every signature in this project is made over ``domain + message`` where the
domain names what is being signed (a pass, a policy, an export manifest...),
so a signature made for one purpose can never verify as another. Everything
here takes keys and bytes and does no I/O; key files are
:mod:`scanner.keyfiles`.

Keys are made, read and used for signing with ``cryptography``; signatures
are checked with libsodium (PyNaCl, from the same maintainers), which checks
one in about two thirds of OpenSSL's time (a pass is checked on every scan,
between the frame and the door's signal) and is the stricter of the two: it
also refuses a signature whose R or key is a point of small order.

A public key is read only in its one text form, and only when it is a point
of the curve's prime-order group in its canonical encoding (libsodium's
``crypto_core_ed25519_is_valid_point``). A key of small order would let
anyone make signatures that a plain RFC 8032 verifier accepts, so such a key
is refused where it is read (a policy, a roster, a ``.pub`` file, the key
chain), never first at a signature check. The rules are in
``docs/pass-format.md``.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib

import nacl.bindings
import nacl.exceptions
import nacl.signing
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from ..errors import KeyFileError

__all__ = [
    "PUBLIC_KEY_PREFIX",
    "Ed25519PrivateKey",
    "Ed25519PublicKey",
    "generate_private_key",
    "key_id",
    "parse_public_key",
    "private_key_from_seed",
    "public_key_text",
    "raw_public_key",
    "sign",
    "verify",
]

PUBLIC_KEY_PREFIX = "ed25519:"
KEY_ID_BYTES = 8

FIELD_PRIME = 2**255 - 19  # p: a y coordinate at or above it is not canonical
# The y coordinates of the eight points of small order, and p and p + 1 (0 and
# 1 written at or above p), as libsodium lists them. Only used to say why a
# key is refused: the decision itself is libsodium's.
SMALL_ORDER_Y = frozenset(
    {
        0,
        1,
        FIELD_PRIME - 1,
        FIELD_PRIME,
        FIELD_PRIME + 1,
        0x05FC536D880238B13933C6D305ACDFD5F098EFF289F4C345B027B2C28F95E826,
        0x7A03AC9277FDC74EC6CC392CFA53202A0F67100D760B3CBA4FD84D3D706A17C7,
    }
)


def generate_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_key_from_seed(seed: bytes) -> Ed25519PrivateKey:
    """A key from a fixed 32-byte seed: for test vectors, never for real events."""
    if len(seed) != 32:
        raise KeyFileError(f"an Ed25519 seed is 32 bytes, not {len(seed)}")
    return Ed25519PrivateKey.from_private_bytes(seed)


def raw_public_key(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """The key's id: the first 8 bytes of SHA-256 of the raw public key, in hex."""
    if isinstance(key, Ed25519PrivateKey):
        key = key.public_key()
    return hashlib.sha256(raw_public_key(key)).digest()[:KEY_ID_BYTES].hex()


def public_key_text(key: Ed25519PublicKey) -> str:
    """The one-line text form used in key files and policies: ``ed25519:<base64>``."""
    return PUBLIC_KEY_PREFIX + base64.b64encode(raw_public_key(key)).decode("ascii")


def parse_public_key(text: str) -> Ed25519PublicKey:
    """Read the text form written by :func:`public_key_text`.

    Refuses any other spelling of a key, and any key that is not a point of
    the prime-order group in its canonical encoding (small order, y at or
    above p, off the curve, or with a small-order part).
    """
    text = text.strip()
    if not text.startswith(PUBLIC_KEY_PREFIX):
        raise KeyFileError(f"a public key starts with {PUBLIC_KEY_PREFIX!r}: {text[:40]!r}")
    encoded = text[len(PUBLIC_KEY_PREFIX) :]
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as err:  # ValueError: not ASCII at all
        raise KeyFileError(f"a public key is not valid base64: {text[:40]!r}") from err
    if len(raw) != 32:
        raise KeyFileError(f"an Ed25519 public key is 32 bytes, this one is {len(raw)}")
    if base64.b64encode(raw).decode("ascii") != encoded:
        # base64 lets the last character carry stray bits: two texts, one key.
        raise KeyFileError(f"a public key is not in its one base64 form: {text[:40]!r}")
    problem = _point_problem(raw)
    if problem is not None:
        raise KeyFileError(f"refused public key {text[:60]!r}: {problem}")
    return Ed25519PublicKey.from_public_bytes(raw)


def _point_problem(raw: bytes) -> str | None:
    """Why the 32 bytes are not a usable Ed25519 public key, or None."""
    if nacl.bindings.crypto_core_ed25519_is_valid_point(raw):
        return None
    y = int.from_bytes(raw, "little") & (2**255 - 1)  # bit 255 is the sign of x
    if y in SMALL_ORDER_Y:
        return "it is a point of small order: with it, anyone can make a signature that verifies"
    if y >= FIELD_PRIME:
        return "its encoding is not canonical (y is not below 2^255 - 19)"
    return "it is not a point of the Ed25519 group (off the curve, or with a small-order part)"


def sign(key: Ed25519PrivateKey, domain: bytes, message: bytes) -> bytes:
    """Sign ``message`` for one purpose only, named by ``domain``."""
    return key.sign(domain + message)


def verify(key: Ed25519PublicKey, domain: bytes, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` was made by ``key`` over ``message`` for ``domain``."""
    try:
        _verify_key(key.public_bytes_raw()).verify(domain + message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, TypeError):
        return False  # altered, forged, or not 64 bytes
    return True


@functools.lru_cache(maxsize=64)
def _verify_key(raw: bytes) -> nacl.signing.VerifyKey:
    return nacl.signing.VerifyKey(raw)
