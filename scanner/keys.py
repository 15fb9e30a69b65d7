"""Ed25519 keys: making them, writing and reading key files, key ids, and
domain-separated signatures.

Every signature in this project is made over ``domain + message`` where the
domain names what is being signed (a pass, a policy, an export manifest...),
so a signature made for one purpose can never verify as another. The pure
functions here take keys and bytes; only the ``write_*``/``load_*`` functions
touch files, and they treat file modes as hostile: a private key readable by
anyone but its owner is refused, and an existing key is never overwritten
unless asked.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from .errors import KeyFileError

__all__ = [
    "PUBLIC_KEY_PREFIX",
    "Ed25519PrivateKey",
    "Ed25519PublicKey",
    "KeyPairPaths",
    "generate_private_key",
    "key_id",
    "load_private_key",
    "load_public_key",
    "parse_public_key",
    "private_key_from_seed",
    "public_key_text",
    "raw_public_key",
    "sign",
    "verify",
    "write_key_pair",
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
    except binascii.Error as err:
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
        key.verify(signature, domain + message)
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True)
class KeyPairPaths:
    private: Path
    public: Path
    key_id: str


def write_key_pair(
    out_dir: Path,
    name: str = "organizer",
    *,
    force: bool = False,
    key: Ed25519PrivateKey | None = None,
) -> KeyPairPaths:
    """Write ``NAME.key`` (PEM, mode 0600) and ``NAME.pub`` into ``out_dir``.

    Refuses to replace an existing key unless ``force``: losing an event's
    signing key would void every pass printed with it.
    """
    key = key or generate_private_key()
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    private_path = out_dir / f"{name}.key"
    public_path = out_dir / f"{name}.pub"
    if not force:
        for path in (private_path, public_path):
            if path.exists():
                raise KeyFileError(
                    f"{path} already exists; it may sign passes that are already printed. "
                    "Use --force to replace it."
                )
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_private(private_path, pem)
    public_path.write_text(
        f"{public_key_text(key.public_key())} {key_id(key)} {name}\n", encoding="ascii"
    )
    return KeyPairPaths(private_path, public_path, key_id(key))


def _write_private(path: Path, data: bytes) -> None:
    # Created 0600 from the start (no window where it is world-readable), then
    # renamed over any old key so a crash never leaves half a key.
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Read a private key written by :func:`write_key_pair`.

    Refuses a key file that group or others may read, as ssh does.
    """
    try:
        st = path.stat()
        data = path.read_bytes()
    except OSError as err:
        raise KeyFileError(f"cannot read private key {path}: {err.strerror}") from err
    if os.name == "posix" and st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"private key {path} is readable by others (mode {stat.S_IMODE(st.st_mode):o}); "
            f"run: chmod 600 {path}"
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        raise KeyFileError(f"{path} is not an unencrypted PEM private key") from err
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} is not an Ed25519 key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Read a ``.pub`` file: ``ed25519:<base64>`` optionally followed by id and name."""
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as err:
        raise KeyFileError(f"cannot read public key {path}: {err}") from err
    words = text.split()
    if not words:
        raise KeyFileError(f"{path} is empty; expected a line starting with {PUBLIC_KEY_PREFIX}")
    return parse_public_key(words[0])
