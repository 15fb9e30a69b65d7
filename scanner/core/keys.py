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
also refuses a signature whose R is a point of small order.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib

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
    """Read the text form written by :func:`public_key_text`."""
    text = text.strip()
    if not text.startswith(PUBLIC_KEY_PREFIX):
        raise KeyFileError(f"a public key starts with {PUBLIC_KEY_PREFIX!r}: {text[:40]!r}")
    try:
        raw = base64.b64decode(text[len(PUBLIC_KEY_PREFIX) :], validate=True)
    except (binascii.Error, ValueError) as err:  # ValueError: not ASCII at all
        raise KeyFileError(f"a public key is not valid base64: {text[:40]!r}") from err
    if len(raw) != 32:
        raise KeyFileError(f"an Ed25519 public key is 32 bytes, this one is {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


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
