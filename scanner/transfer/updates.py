"""Signed updates from a USB stick: policy, revocations, keys, time.

Technicians bring updates in a folder ``scanner-update/`` on the stick. Only
four names are ever opened there, each without following links and only if
it is a regular file of sane size; nothing else on the stick is read and
nothing on it is ever run:

==================== =========================================================
``event.policy``     a new signed event policy (``scanner policy sign``)
``revocations.signed`` a signed revocation list (``scanner revocations sign``)
``trust.signed``     a key update: the organizer keys to trust from now on
``time.signed``      a signed time setting: moves the clock forward, never back
==================== =========================================================

Each must verify against the organizer keys the gate trusts *now*, be for the
event the gate serves, and be newer than what is installed. It is installed
atomically (write, fsync, rename), the previous version kept as ``.previous``
for one rollback, and the change is logged as an ``events`` row. Anything
else is refused with its reason, logged too.
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..core.keys import Ed25519PrivateKey, Ed25519PublicKey, key_id, parse_public_key
from ..core.policy import open_policy
from ..core.signed import SignedDocument, format_utc, open_document, parse_utc, sign_document
from ..errors import PolicyError, SignatureError
from ..gate.policy_store import REVOCATIONS_KIND, TRUST_KIND, PolicyStore

__all__ = [
    "TIME_KIND",
    "UPDATE_DIR",
    "UpdateResult",
    "apply_updates",
    "rollback",
    "sign_revocations",
    "sign_time_setting",
    "sign_trust_update",
]

UPDATE_DIR = "scanner-update"
TIME_KIND = "time"
MAX_UPDATE_BYTES = 1024 * 1024
NAMES = ("trust.signed", "event.policy", "revocations.signed", "time.signed")


@dataclass(frozen=True)
class UpdateResult:
    name: str
    applied: bool
    message: str
    refused: bool = False  # a problem (not merely "already installed")


def sign_revocations(
    key: Ed25519PrivateKey, event: str, serials: list[int], now: datetime
) -> bytes:
    return sign_document(
        key, REVOCATIONS_KIND, {"event": event, "serials": sorted(set(serials))}, now
    )


def sign_trust_update(key: Ed25519PrivateKey, keys: list[Ed25519PublicKey], now: datetime) -> bytes:
    from ..core.keys import public_key_text

    return sign_document(key, TRUST_KIND, {"keys": [public_key_text(k) for k in keys]}, now)


def sign_time_setting(
    key: Ed25519PrivateKey, when: datetime, now: datetime, gate: str | None = None
) -> bytes:
    return sign_document(key, TIME_KIND, {"now": format_utc(when), "gate": gate or "*"}, now)


def _read_update(folder_fd: int, name: str) -> bytes:
    """Open ``name`` inside the update folder: no links, regular files only."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=folder_fd)
    except OSError as err:
        raise SignatureError(f"cannot open it safely ({err.strerror}: a link?)") from err
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SignatureError("it is not a regular file")
        if st.st_size > MAX_UPDATE_BYTES:
            raise SignatureError(f"it is {st.st_size} bytes; at most {MAX_UPDATE_BYTES}")
        data = os.read(fd, MAX_UPDATE_BYTES + 1)
        if len(data) > MAX_UPDATE_BYTES:
            raise SignatureError("it is too large")
        return data
    finally:
        os.close(fd)


def install_file(path: Path, data: bytes, owner_of: Path | None = None) -> None:
    """Atomically replace ``path`` with ``data``, keeping the old one as ``.previous``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    ref = owner_of or path.parent
    with contextlib.suppress(OSError):
        st = ref.stat()
        os.chown(tmp, st.st_uid, st.st_gid)  # the daemon's user must read it
    if path.exists():
        previous = path.with_name(path.name + ".previous")
        previous.unlink(missing_ok=True)
        os.link(path, previous)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def rollback(path: Path) -> None:
    """Put back the version an update replaced (one step)."""
    previous = path.with_name(path.name + ".previous")
    if not previous.exists():
        raise PolicyError(f"there is no previous version of {path.name} to go back to")
    os.replace(previous, path)


@dataclass
class _Target:
    store: PolicyStore
    trust_update: Path
    set_clock: Callable[[datetime], None] | None
    raise_floor: Callable[[datetime], None]
    floor: datetime
    gate: str
    allow_new_event: bool


def apply_updates(
    folder: Path,
    *,
    store: PolicyStore,
    trust_update: Path,
    gate: str,
    floor: datetime,
    raise_floor: Callable[[datetime], None],
    set_clock: Callable[[datetime], None] | None = None,
    log_event: Callable[..., None] = lambda kind, **detail: None,
    allow_new_event: bool = False,
) -> list[UpdateResult]:
    """Apply every update found in ``folder`` (the stick's ``scanner-update``).

    ``store`` is the gate's policy store (its current trust decides what is
    accepted); ``raise_floor``/``set_clock`` apply a time setting.
    """
    target = _Target(store, trust_update, set_clock, raise_floor, floor, gate, allow_new_event)
    results: list[UpdateResult] = []
    try:
        folder_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as err:
        return [
            UpdateResult(
                str(folder), False, f"cannot open the update folder: {err.strerror}", refused=True
            )
        ]
    try:
        present = set(os.listdir(folder_fd))
        for name in NAMES:
            if name not in present:
                continue
            try:
                data = _read_update(folder_fd, name)
                result = _APPLY[name](target, name, data)
            except (SignatureError, PolicyError) as err:
                result = UpdateResult(name, False, f"refused: {err}", refused=True)
            except OSError as err:
                result = UpdateResult(name, False, f"could not install it: {err}", refused=True)
            results.append(result)
            store.refresh()
            log_event(
                "update",
                file=name,
                applied=result.applied,
                refused=result.refused,
                message=result.message,
            )
    finally:
        os.close(folder_fd)
    return results


def _newer(doc_time: datetime, installed: datetime | None, what: str) -> None:
    """Refuse an update older than the installed one; skip the same one quietly."""
    if installed is None or doc_time > installed:
        return
    if doc_time == installed:
        raise _SkipError(f"{what} signed {format_utc(doc_time)} is already installed")
    raise SignatureError(
        f"{what} signed {format_utc(doc_time)} is older than the one "
        f"installed ({format_utc(installed)})"
    )


class _SkipError(SignatureError):
    pass


def _apply_policy(t: _Target, name: str, data: bytes) -> UpdateResult:
    installed = t.store.base
    try:
        policy = open_policy(
            data,
            t.store.trusted,
            event=None if t.allow_new_event or installed is None else installed.event,
        )
    except PolicyError as err:
        raise SignatureError(str(err).removeprefix("policy refused: ")) from err
    if t.store.event is not None and policy.event != t.store.event:
        raise SignatureError(
            f"it is for event {policy.event!r}; this gate serves {t.store.event!r}"
        )
    assert policy.signed_at is not None
    try:
        if installed is not None and installed.event == policy.event:
            _newer(policy.signed_at, installed.signed_at, "the policy")
    except _SkipError as skip:
        return UpdateResult(name, False, str(skip))
    install_file(t.store.policy_path, data)
    return UpdateResult(
        name,
        True,
        f"installed the policy for {policy.event!r} signed {format_utc(policy.signed_at)}",
    )


def _apply_revocations(t: _Target, name: str, data: bytes) -> UpdateResult:
    document = open_document(data, kind=REVOCATIONS_KIND, trusted=t.store.trusted)
    base = t.store.base
    if base is None:
        raise SignatureError("there is no policy installed to revoke passes of")
    if document.body.get("event") != base.event:
        raise SignatureError(f"it is for event {document.body.get('event')!r}, not {base.event!r}")
    serials = document.body.get("serials")
    if not isinstance(serials, list):
        raise SignatureError("it lists no serials")
    try:
        _newer(document.signed_at, t.store.revocations_signed_at, "the revocation list")
    except _SkipError as skip:
        return UpdateResult(name, False, str(skip))
    if t.store.revocations_path is None:
        raise SignatureError("this gate has no place for a revocation list")
    install_file(t.store.revocations_path, data)
    return UpdateResult(name, True, f"installed a revocation list of {len(serials)} passes")


def _apply_trust(t: _Target, name: str, data: bytes) -> UpdateResult:
    document = open_document(data, kind=TRUST_KIND, trusted=t.store.trusted)
    keys = _trust_keys(document)
    try:
        _newer(document.signed_at, t.store.trust_signed_at, "the key update")
    except _SkipError as skip:
        return UpdateResult(name, False, str(skip))
    install_file(t.trust_update, data)
    return UpdateResult(name, True, f"now trusting organizer keys {', '.join(sorted(keys))}")


def _trust_keys(document: SignedDocument) -> Mapping[str, Ed25519PublicKey]:
    texts = document.body.get("keys")
    if not isinstance(texts, list) or not texts:
        raise SignatureError("a key update must list at least one key")
    keys: dict[str, Ed25519PublicKey] = {}
    for text in texts:
        key = parse_public_key(str(text))
        keys[key_id(key)] = key
    return keys


def _apply_time(t: _Target, name: str, data: bytes) -> UpdateResult:
    document = open_document(data, kind=TIME_KIND, trusted=t.store.trusted)
    body: Mapping[str, Any] = document.body
    if body.get("gate") not in ("*", t.gate):
        raise SignatureError(f"it is for gate {body.get('gate')!r}")
    try:
        when = parse_utc(str(body.get("now")))
    except ValueError as err:
        raise SignatureError(f"its time is not valid: {err}") from err
    if when <= t.floor:
        raise SignatureError(
            f"it would set the clock to {format_utc(when)}, not later than "
            f"{format_utc(t.floor)}, which this gate has already seen"
        )
    t.raise_floor(when)
    moved = ""
    if t.set_clock is not None and when > datetime.now(UTC):
        t.set_clock(when)
        moved = ", clock set forward"
    return UpdateResult(name, True, f"time floor raised to {format_utc(when)}{moved}")


_APPLY: dict[str, Callable[[_Target, str, bytes], UpdateResult]] = {
    "event.policy": _apply_policy,
    "revocations.signed": _apply_revocations,
    "trust.signed": _apply_trust,
    "time.signed": _apply_time,
}


def set_system_clock(when: datetime) -> None:
    """Set the wall clock (needs CAP_SYS_TIME: the USB unit has it, the daemon not)."""
    time.clock_settime(time.CLOCK_REALTIME, when.timestamp())
