"""Key files: the organizer's and the gates' Ed25519 keys, and the manager's
age identity.

Private keys are PEM (PKCS#8) files of mode 0600; public keys are one line,
``ed25519:<base64> KEYID NAME``. The manager's key (``scanner keygen
--manager``) is an age identity in age's own file format (mode 0600) with its
public key (``age1...``) beside it: gates encrypt their exports to it, so a
lost stick leaks no holder names. File modes are treated as hostile: a
private key that anyone but its owner may read is refused, as ssh does, and
an existing key is never overwritten unless asked (losing an event's signing
key voids every pass printed with it; losing the manager's key, every export
encrypted to it).

An organizer's signing key may be kept under a passphrase (``scanner keygen
--passphrase``): ``NAME.key`` is then the same PEM inside an age file
encrypted with that passphrase (``age -d`` opens it too), so a stolen laptop
or backup does not hand over the event. The passphrase goes through scrypt
with r = 8 and a work factor that pyrage (rage) sizes, when it writes the
file, to about one second on that machine and records in the file's header
(``-> scrypt SALT LOGN``). Each guess at a copied key then costs that much
time and 2^LOGN KiB of memory (scrypt with r = 8 takes 1 KiB per unit of
N), so a faster machine writes a file that costs more to guess at. A passphrase is
refused if it is shorter than 12 characters or easy to guess (the zxcvbn
estimator puts it under 10^10 guesses: ``password1234``, ``aaaaaaaaaaaa``);
four or five unrelated words pass. Signing commands ask for the passphrase
in a terminal, or read it from ``SCANNER_KEY_PASSPHRASE``; no program the
scanner starts is given that variable (:func:`child_environment`).
The manager's age key may be kept the same way (``scanner keygen --manager
--passphrase``; ``age -d`` opens it, ``age -i`` reads the identity inside).
A gate's device key stays unencrypted: a box signs its exports unattended.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from .core.keys import (
    PUBLIC_KEY_PREFIX,
    Ed25519PrivateKey,
    Ed25519PublicKey,
    generate_private_key,
    key_id,
    parse_public_key,
    public_key_text,
)
from .errors import KeyFileError
from .files import match_owner, write_atomically

__all__ = [
    "MIN_GUESSES",
    "MIN_PASSPHRASE",
    "PASSPHRASE_ENV",
    "KeyPairPaths",
    "check_passphrase",
    "child_environment",
    "is_passphrase_protected",
    "load_age_identities",
    "load_or_create_device_key",
    "load_private_key",
    "load_public_key",
    "read_secret_file",
    "write_age_identity",
    "write_key_pair",
    "write_secret_file",
]

MAX_KEY_FILE = 64 * 1024
PASSPHRASE_ENV = "SCANNER_KEY_PASSPHRASE"  # where scripts give a key's passphrase
MIN_PASSPHRASE = 12  # characters: scrypt slows guessing, it cannot save a short word
# The guesses zxcvbn estimates a cracker needs: 10^10 (its score 4), not its score 3
# (10^8). A copied key is guessed offline and unthrottled; one guess is one scrypt run,
# about a core-second at 256 MiB, so a hundred 16-core machines try 10^8 guesses in
# under a day and 10^10 in about ten weeks. Score 3 also lets ``iloveyou2024!!``
# through, which cracking rules try early.
MIN_GUESSES = 10**10
_ESTIMATE_LENGTH = 72  # zxcvbn refuses longer input: its matching grows faster than the length
_AGE_ARMOR = b"-----BEGIN AGE ENCRYPTED FILE-----"


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
    passphrase: str | None = None,
) -> KeyPairPaths:
    """Write ``NAME.key`` (PEM, mode 0600) and ``NAME.pub`` into ``out_dir``;
    with ``passphrase``, the PEM is kept in an age file encrypted with it.

    Refuses to replace an existing key unless ``force``: losing an event's
    signing key would void every pass printed with it.
    """
    check_passphrase(passphrase)
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
    if passphrase is not None:
        import pyrage

        pem = pyrage.passphrase.encrypt(pem, passphrase, armored=True)
    _write_private(private_path, pem)
    public_path.write_text(
        f"{public_key_text(key.public_key())} {key_id(key)} {name}\n", encoding="ascii"
    )
    return KeyPairPaths(private_path, public_path, key_id(key))


def check_passphrase(passphrase: str | None) -> None:
    """Refuse a passphrase too weak to protect a key (None: no passphrase, nothing
    to check): shorter than :data:`MIN_PASSPHRASE` characters, or one the zxcvbn
    estimator says falls in fewer than :data:`MIN_GUESSES` guesses. The error says
    why in plain words, with zxcvbn's warning and a suggestion."""
    if passphrase is None:
        return
    if len(passphrase) < MIN_PASSPHRASE:
        raise KeyFileError(
            f"the passphrase has {len(passphrase)} characters; use at least {MIN_PASSPHRASE} "
            "(a few unrelated words)"
        )
    # Imported here: this module is on the gate's path, the estimator and its word
    # lists only on the laptop that makes a key. A passphrase longer than zxcvbn
    # reads is at least as hard to guess as its beginning.
    from zxcvbn import zxcvbn

    estimate = zxcvbn(passphrase[:_ESTIMATE_LENGTH])
    if estimate["guesses"] < MIN_GUESSES:
        feedback = estimate["feedback"]
        warning = feedback["warning"] or (
            "a cracking program would find it within about "
            f"10^{max(0, int(estimate['guesses_log10']))} guesses."
        )
        suggestion = (feedback["suggestions"] or ["Use four or five unrelated words."])[0]
        raise KeyFileError(f"the passphrase is too easy to guess: {warning} {suggestion}")


def child_environment() -> dict[str, str]:
    """This process's environment without :data:`PASSPHRASE_ENV`: give it to every
    program the scanner starts (Chromium, mount, systemctl), so a key's passphrase
    never reaches one."""
    return {name: value for name, value in os.environ.items() if name != PASSPHRASE_ENV}


def _write_private(path: Path, data: bytes) -> None:
    # Created 0600 from the start (no window where it is world-readable), then
    # renamed over any old key so a crash never leaves half a key.
    write_atomically(path, data, mode=0o600)


def _read_private(path: Path) -> bytes:
    """A private key file's bytes, refused if group or others may read it."""
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
    return data


def write_secret_file(
    path: Path, data: bytes, *, force: bool = False, passphrase: str | None = None
) -> None:
    """Write a private file (another kind of key) as the key files are: mode
    0600 from the start, whole or not at all, under ``passphrase`` if given,
    never over an existing one unless ``force``."""
    check_passphrase(passphrase)
    if path.exists() and not force:
        raise KeyFileError(f"{path} already exists. Use --force to replace it.")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if passphrase is not None:
        import pyrage

        data = pyrage.passphrase.encrypt(data, passphrase, armored=True)
    _write_private(path, data)


def read_secret_file(path: Path, passphrase: Callable[[], str] | None = None) -> bytes:
    """Read a file written by :func:`write_secret_file`: refused if others may
    read it; one kept under a passphrase asks ``passphrase()`` for it."""
    data = _read_private(path)
    if len(data) > MAX_KEY_FILE:
        raise KeyFileError(f"{path} is too large for a key file")
    if data.startswith(_AGE_ARMOR):
        data = _decrypt(path, data, passphrase)
    return data


def is_passphrase_protected(path: Path) -> bool:
    """Whether the key file at ``path`` is kept under a passphrase."""
    try:
        with path.open("rb") as handle:
            return handle.read(len(_AGE_ARMOR)) == _AGE_ARMOR
    except OSError:
        return False


def load_private_key(
    path: Path, passphrase: Callable[[], str] | None = None
) -> Ed25519PrivateKey:
    """Read a private key written by :func:`write_key_pair`.

    Refuses a key file that group or others may read, as ssh does. A key
    kept under a passphrase asks ``passphrase()`` for it (only then), and is
    refused without one or with a wrong one.
    """
    data = _read_private(path)
    if data.startswith(_AGE_ARMOR):
        data = _decrypt(path, data, passphrase)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        raise KeyFileError(f"{path} is not an unencrypted PEM private key") from err
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} is not an Ed25519 key")
    return key


def _decrypt(path: Path, data: bytes, passphrase: Callable[[], str] | None) -> bytes:
    import pyrage

    if len(data) > MAX_KEY_FILE:
        raise KeyFileError(f"{path} is too large for a key file")
    if passphrase is None:
        raise KeyFileError(
            f"{path} is kept under a passphrase: run the command in a terminal to be asked "
            f"for it, or give it in {PASSPHRASE_ENV}"
        )
    try:
        return bytes(pyrage.passphrase.decrypt(data, passphrase()))
    except (pyrage.DecryptError, ValueError) as err:
        raise KeyFileError(f"wrong passphrase for {path} (or the file is damaged)") from err


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


# -- the manager's age identity ------------------------------------------------


def write_age_identity(
    out_dir: Path,
    name: str = "manager",
    *,
    force: bool = False,
    now: datetime | None = None,
    passphrase: str | None = None,
) -> KeyPairPaths:
    """Write ``NAME.key`` (an age identity, mode 0600) and ``NAME.pub`` (its
    ``age1...`` public key, for the policy's ``[export] recipients``); with
    ``passphrase``, the identity file is kept in an age file encrypted with it.

    ``key_id`` of the result is the public key itself."""
    import pyrage

    check_passphrase(passphrase)
    identity = pyrage.x25519.Identity.generate()
    public = str(identity.to_public())
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    private_path = out_dir / f"{name}.key"
    public_path = out_dir / f"{name}.pub"
    if not force:
        for path in (private_path, public_path):
            if path.exists():
                raise KeyFileError(
                    f"{path} already exists; exports may already be encrypted to it. "
                    "Use --force to replace it."
                )
    created = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    text = f"# created: {created}\n# public key: {public}\n{identity}\n".encode("ascii")
    if passphrase is not None:
        text = pyrage.passphrase.encrypt(text, passphrase, armored=True)
    _write_private(private_path, text)
    public_path.write_text(public + "\n", encoding="ascii")
    return KeyPairPaths(private_path, public_path, public)


def load_age_identities(
    path: Path, passphrase: Callable[[], str] | None = None
) -> tuple[str, ...]:
    """The age identities (``AGE-SECRET-KEY-1...`` lines) in a key file made by
    :func:`write_age_identity` or by age-keygen; refused if others may read it.
    A file kept under a passphrase asks ``passphrase()`` for it, as
    :func:`load_private_key` does."""
    import pyrage

    data = _read_private(path)
    if len(data) > MAX_KEY_FILE:
        raise KeyFileError(f"{path} is too large for a key file")
    if data.startswith(_AGE_ARMOR):
        data = _decrypt(path, data, passphrase)
    try:
        lines = data.decode("ascii").splitlines()
    except UnicodeDecodeError as err:
        raise KeyFileError(f"{path} is not an age identity file") from err
    found = tuple(line.strip() for line in lines if line.startswith("AGE-SECRET-KEY-1"))
    if not found:
        raise KeyFileError(
            f"{path} holds no age identity (AGE-SECRET-KEY-1...); make one with "
            "scanner keygen --manager"
        )
    for number, text in enumerate(found, 1):
        try:
            pyrage.x25519.Identity.from_str(text)
        except (pyrage.IdentityError, ValueError) as err:
            raise KeyFileError(f"{path}: identity {number} is not a valid age key") from err
    return found


def load_or_create_device_key(path: Path) -> Ed25519PrivateKey:
    """The gate's own signing key; made (mode 0600) the first time it is needed.
    Only the daemon (at its first start), the selftest and ``venue enrol`` make it."""
    if path.exists():
        return load_private_key(path)
    key = generate_private_key()
    pair = write_key_pair(path.parent, path.stem, key=key)
    if path.suffix != ".key":  # write_key_pair names it STEM.key
        pair.private.rename(path)
    match_owner(path.parent)
    return key
