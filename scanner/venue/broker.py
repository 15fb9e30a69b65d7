"""The venue's broker, run the way MQTT is run on a shared LAN: TLS with the
event's own CA, a login per box, and an ACL that lets each box publish only
on its own topics.

- **The CA.** The organizer makes the event's broker CA once (``scanner
  venue ca``): a P-256 key (mode 0600, under a passphrase if asked) and a
  self-signed CA certificate. The certificate goes into the signed policy
  (``[broker] ca``), so a gate learns it from the one document it already
  trusts; a broker whose certificate that CA did not sign for the policy's
  address is refused before a byte of MQTT is sent.
- **A login per box.** A box's password is its Ed25519 signature over a
  fixed text naming its gate (:func:`box_password`): only the box can make
  it, and it opens nothing for any other box. ``scanner venue enrol`` prints
  its PBKDF2-SHA512 hash (mosquitto's own ``$7$`` format) into the box's
  roster entry; the hash of a 512-bit secret gives nothing away in a policy
  anyone may read.
- **The broker's files.** ``scanner venue broker-config`` writes what
  mosquitto needs from the signed roster alone (:func:`write_broker_config`):
  a TLS listener with a certificate for the policy's address, the password
  file, the ACL (each box writes only its own ``scan``, ``hb`` and ``sync``
  topics and replays to any box; the live view reads and asks, never
  writes a scan), and the live view's read-only login. A box taken off the
  roster has no line in the next password file.

Everything here is computation and file writing on the organizer's laptop;
a gate uses only :func:`tls_context`, :func:`box_password` and
:class:`BrokerLogin`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
import re
import secrets
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..core.keys import Ed25519PrivateKey
from ..core.policy import BrokerPlan, Policy
from ..errors import KeyFileError, VenueError
from ..files import write_atomically

__all__ = [
    "LIVE_LOGIN",
    "BrokerLogin",
    "box_login",
    "box_password",
    "enrolment_hash",
    "make_ca",
    "password_hash",
    "password_matches",
    "read_login",
    "tls_context",
    "write_broker_config",
]

LIVE_LOGIN = "live"  # the live view's user name on the broker, and its requester id
PASSWORD_TEXT = b"backstage-scanner broker password v1\x00"
HASH_ITERATIONS = 101  # mosquitto_passwd's own count; the password is 512 random bits
CA_DAYS = 730
BROKER_CERT_DAYS = 398
MAX_LOGIN_FILE = 4096


@dataclass(frozen=True)
class BrokerLogin:
    """A user name and password for the broker."""

    username: str
    password: str

    def __repr__(self) -> str:  # a password never reaches a log line
        return f"BrokerLogin(username={self.username!r}, password=...)"


def box_password(device_key: Ed25519PrivateKey, gate: str) -> str:
    """The box's broker password: its signature over a text naming its gate
    (Ed25519 signs deterministically, so the box makes the same one each time)."""
    signature = device_key.sign(PASSWORD_TEXT + gate.encode("utf-8"))
    return base64.urlsafe_b64encode(signature).decode("ascii").rstrip("=")


def box_login(device_key: Ed25519PrivateKey, gate: str) -> BrokerLogin:
    return BrokerLogin(gate, box_password(device_key, gate))


def password_hash(password: str, *, salt: bytes | None = None) -> str:
    """mosquitto's ``$7$`` hash (PBKDF2-SHA512) of ``password``."""
    salt = salt if salt is not None else secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, HASH_ITERATIONS)
    return (
        f"$7${HASH_ITERATIONS}${base64.b64encode(salt).decode()}$"
        f"{base64.b64encode(digest).decode()}"
    )


def password_matches(hashed: str, password: str) -> bool:
    """Whether ``password`` is the one behind a ``$7$`` hash (as mosquitto checks)."""
    try:
        _, seven, rounds, salt, digest = hashed.split("$")
        if seven != "7":
            return False
        mine = hashlib.pbkdf2_hmac(
            "sha512", password.encode("utf-8"), base64.b64decode(salt), int(rounds)
        )
        return hmac.compare_digest(mine, base64.b64decode(digest))
    except (ValueError, TypeError):
        return False


def enrolment_hash(device_key: Ed25519PrivateKey, gate: str) -> str:
    """The roster's ``broker_password_hash`` for this box: its salt is derived
    from its public key, so enrolling twice prints the same line."""
    public = device_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    salt = hashlib.sha256(b"broker-salt\x00" + public + gate.encode()).digest()[:12]
    return password_hash(box_password(device_key, gate), salt=salt)


# -- TLS ------------------------------------------------------------------------


def tls_context(ca_pem: str) -> ssl.SSLContext:
    """TLS for a gate or the live view: the broker must show a certificate
    the event's CA signed for the address connected to; TLS 1.2 at least."""
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=ca_pem)
    except (ssl.SSLError, ValueError) as err:
        raise VenueError(f"the policy's broker CA cannot be used: {err}") from err
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def make_ca(name: str, now: datetime) -> tuple[bytes, bytes]:
    """A new broker CA for the event ``name``: (key PEM, certificate PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} broker CA"[:64])])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    return (
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        cert.public_bytes(serialization.Encoding.PEM),
    )


def load_ca(key_pem: bytes, cert_pem: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """The CA key (from its file) and certificate (from the signed policy),
    checked to belong together."""
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
        cert = x509.load_pem_x509_certificate(cert_pem.encode("ascii"))
    except (ValueError, TypeError) as err:
        raise KeyFileError(f"not a broker CA key: {err}") from err
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise KeyFileError("not a broker CA key (scanner venue ca makes one)")
    if key.public_key().public_numbers() != cert.public_key().public_numbers():  # type: ignore[union-attr]
        raise KeyFileError(
            "this CA key is not the one whose certificate the policy's [broker] ca holds"
        )
    return key, cert


def broker_certificate(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    broker: BrokerPlan,
    now: datetime,
    key: ec.EllipticCurvePrivateKey | None = None,
    also: tuple[str, ...] = (),
) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    """The broker's certificate for the policy's address (and ``also``: the
    laptop's loopback, so its own live view can connect by 127.0.0.1),
    signed by the CA."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    names = list(dict.fromkeys(ipaddress.ip_address(a) for a in (broker.host, *also)))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, broker.host)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(min(now + timedelta(days=BROKER_CERT_DAYS), ca_cert.not_valid_after_utc))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(a) for a in names]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert.public_bytes(serialization.Encoding.PEM)


# -- the broker's files -------------------------------------------------------------


def acl_text(event: str, gates: list[str]) -> str:
    """mosquitto's ACL: each box writes only its own topics; the live view
    only reads and asks for replays; nobody else exists."""
    root = f"backstage/{event}"
    lines = [
        f"# Made by scanner venue broker-config for event {event}: {len(gates)} boxes.",
        "# Each box (user = its gate id) writes its own scan, hb and sync topics and",
        "# replays its scans to whoever asked; everyone on the roster reads the event.",
    ]
    for gate in gates:
        lines += [
            "",
            f"user {gate}",
            f"topic write {root}/scan/{gate}",
            f"topic write {root}/hb/{gate}",
            f"topic write {root}/sync/{gate}",
            f"topic write {root}/replay/+",
            f"topic read {root}/scan/+",
            f"topic read {root}/hb/+",
            f"topic read {root}/sync/+",
            f"topic read {root}/replay/{gate}",
        ]
    lines += [
        "",
        f"user {LIVE_LOGIN}",
        f"topic read {root}/scan/+",
        f"topic read {root}/hb/+",
        f"topic read {root}/replay/{LIVE_LOGIN}",
        f"topic write {root}/sync/{LIVE_LOGIN}",
        "",
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class BrokerFiles:
    """What :func:`write_broker_config` wrote, and what it left out."""

    folder: Path
    config: Path
    boxes: list[str]
    without_login: list[str]
    live_login: Path
    listen: tuple[str, int]


def write_broker_config(
    policy: Policy,
    ca_key_pem: bytes,
    out: Path,
    *,
    listen: tuple[str | None, int | None] = (None, None),
    now: datetime | None = None,
    stay_as_me: bool = False,
) -> BrokerFiles:
    """mosquitto's configuration for ``policy``'s venue, in ``out`` (see the
    module doc). ``listen`` replaces the address and port mosquitto binds
    (default: every address, the policy's port). Keeps the broker's key and
    the live view's password of an earlier run in ``out``. ``stay_as_me``:
    mosquitto keeps running as whoever starts it, even root (a demo or a test
    in a private folder), instead of dropping to the user ``mosquitto``."""
    broker = policy.broker
    if broker is None:
        raise VenueError(
            "the policy has no [broker] table: add address and ca (scanner venue ca) and sign it"
        )
    now = now or datetime.now(UTC)
    ca_key, ca_cert = load_ca(ca_key_pem, broker.ca_pem)
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    out = out.resolve()
    key_path = out / "broker.key"
    old_key = None
    if key_path.exists():
        try:
            loaded = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            old_key = loaded if isinstance(loaded, ec.EllipticCurvePrivateKey) else None
        except (ValueError, TypeError, OSError):
            old_key = None
    host, port = listen
    loopback = ("127.0.0.1", "::1", *((host,) if host and host not in ("0.0.0.0", "::") else ()))
    key, cert_pem = broker_certificate(ca_key, ca_cert, broker, now, old_key, loopback)
    _write(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        secret=True,
    )
    _write(out / "broker.pem", cert_pem)
    _write(out / "ca.pem", broker.ca_pem.encode("ascii"))
    live_path = out / "live.login"
    live = read_login(live_path) if live_path.exists() else None
    if live is None or live.username != LIVE_LOGIN:
        live = BrokerLogin(LIVE_LOGIN, secrets.token_urlsafe(32))
        _write(
            live_path,
            f'username = "{live.username}"\npassword = "{live.password}"\n'.encode(),
            secret=True,
        )
    boxes = sorted(g for g, p in policy.gates.items() if p.broker_password_hash)
    without = sorted(g for g, p in policy.gates.items() if not p.broker_password_hash)
    passwords = [f"{g}:{policy.gates[g].broker_password_hash}" for g in boxes]
    passwords.append(f"{LIVE_LOGIN}:{password_hash(live.password)}")
    _write(out / "passwords", ("\n".join(passwords) + "\n").encode(), secret=True)
    _write(out / "acl", acl_text(policy.event, boxes).encode(), secret=True)
    port = port or broker.port
    bind = f"listener {port}" + (f" {host}" if host else "")
    me = os.name == "posix" and os.geteuid() == 0 and stay_as_me
    user = "user root\n" if me else ""
    conf = f"""# mosquitto for {policy.name} ({policy.event}), made by scanner venue broker-config
# from the signed policy's roster: {len(boxes)} boxes with a login. Start it with
#     mosquitto -c {out / 'mosquitto.conf'}
# Run broker-config again after every new policy: a box taken off the roster
# loses its login then.
per_listener_settings false
{user}{bind}
cafile {out / 'ca.pem'}
certfile {out / 'broker.pem'}
keyfile {out / 'broker.key'}
tls_version tlsv1.2
require_certificate false
allow_anonymous false
password_file {out / 'passwords'}
acl_file {out / 'acl'}
persistence false
max_packet_size 65536
max_keepalive 60
"""
    config = out / "mosquitto.conf"
    _write(config, conf.encode())
    if not me:
        _give_to_broker_user(out, keep=(live_path,))
    return BrokerFiles(out, config, boxes, without, live_path, (host or "*", port))


def _give_to_broker_user(out: Path, *, keep: tuple[Path, ...]) -> None:
    """mosquitto started as root drops to the user ``mosquitto`` before it
    reads its password file: when root writes the files, they become that
    user's (all but ``keep``, the live view's login). Run as anyone else,
    mosquitto runs as that user and the files stay theirs."""
    if os.name != "posix" or os.geteuid() != 0:
        return
    import pwd

    try:
        user = pwd.getpwnam("mosquitto")
    except KeyError:
        return
    os.chown(out, user.pw_uid, user.pw_gid)
    for path in out.iterdir():
        if path not in keep and path.is_file() and not path.is_symlink():
            os.chown(path, user.pw_uid, user.pw_gid)


def _write(path: Path, data: bytes, *, secret: bool = False) -> None:
    write_atomically(path, data, mode=0o600 if secret else 0o644)


_LOGIN_LINE = re.compile(r'(username|password) = "([A-Za-z0-9._-]{1,128})"')


def read_login(path: Path) -> BrokerLogin:
    """A login file written by broker-config (``live.login``): user name and
    password, mode 0600, nothing else."""
    try:
        st = path.stat()
        data = path.read_bytes()[: MAX_LOGIN_FILE + 1]
    except OSError as err:
        raise VenueError(f"cannot read the broker login {path}: {err.strerror}") from err
    if os.name == "posix" and st.st_mode & 0o077:
        raise VenueError(f"{path} may be read by others; run: chmod 600 {path}")
    if len(data) > MAX_LOGIN_FILE:
        raise VenueError(f"{path} is not a broker login file")
    found: dict[str, str] = {}
    for line in data.decode("utf-8", "replace").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LOGIN_LINE.fullmatch(line.strip())
        if match is None:
            raise VenueError(f"{path}: {line[:40]!r} is not username = or password =")
        found[match[1]] = match[2]
    if set(found) != {"username", "password"}:
        raise VenueError(f"{path}: needs username and password (scanner venue broker-config)")
    return BrokerLogin(found["username"], found["password"])


def logins_of(policy: Policy) -> Mapping[str, str]:
    """Each roster box's password hash (boxes without one have no login)."""
    return {g: p.broker_password_hash for g, p in policy.gates.items() if p.broker_password_hash}
