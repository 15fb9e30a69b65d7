"""Signed updates from a USB stick: policy, revocations, keys, time.

Technicians bring updates in a folder ``scanner-update/`` on the stick. Only
four names are ever opened there, each without following links and only if
it is a regular file of sane size; nothing else on the stick is read (the
folder is not even listed) and nothing on it is ever run:

====================== ========================================================
``trust.signed``       the key chain: every key rotation since the image's keys
``event.policy``       a new signed event policy (``scanner policy sign``)
``revocations.signed`` a signed revocation list (``scanner update revocations``)
``time.signed``        a signed time setting (``scanner update time``)
====================== ========================================================

Each must verify against the organizer keys the gate trusts *now* (the key
chain link by link from the image's keys), be for the event the gate serves,
and be newer than what is installed: a policy or revocation list signed
later, a key chain that reaches further and contains the link this gate last
accepted, a time setting with a higher sequence than any used here. It is
installed atomically (a unique temporary file, fsync, rename), the previous
policy or revocation list kept as ``.previous`` for one rollback (the key
chain has none: trust moves forward only), and the change is logged as an
``events`` row. Anything else is refused with its reason, logged too, and
one bad file never stops the others.

A time setting names the event, optionally the gates it is for, a sequence
number and how many hours after signing it is valid (checked when the
gate's clock can be believed; the sequence stops replays either way). It
says "it is at least the time this was signed": the gate raises its clock
floor to it, or with ``lower_floor`` lowers a floor that a wrong clock
raised too high (see :mod:`scanner.gate.clock`). Only the gate's USB service
is handed a ``set_clock`` port that moves the system clock.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from ..core.keys import Ed25519PrivateKey, Ed25519PublicKey
from ..core.policy import GATE_ID_PATTERN as GATE_ID
from ..core.policy import open_policy
from ..core.revocations import REVOCATIONS_KIND, revocation_serials
from ..core.signed import format_utc, open_document, sign_document
from ..core.trust import replay_chain
from ..errors import (
    ConfigError,
    MalformedError,
    PolicyError,
    ScannerError,
    SignatureError,
    TransferError,
)
from ..files import fsync_folder, replacing, write_atomically
from ..gate.clock import FLOOR_STATE, RESET_STATE, ClockGuard, FloorReset
from ..gate.policy_store import PolicyStore, StateStore
from ..words import plural
from .untrusted import Folder

__all__ = [
    "MAX_VALID_HOURS",
    "TIME_KIND",
    "TIME_SEQUENCES",
    "UPDATE_DIR",
    "SignedTimeSetting",
    "TimeSetting",
    "UpdateResult",
    "apply_updates",
    "install_file",
    "next_time_setting",
    "open_time_setting",
    "rollback",
    "set_system_clock",
    "sign_time_setting",
]

UPDATE_DIR = "scanner-update"
TIME_KIND = "time"
TIME_SEQUENCES = "time_settings"  # state-table key: the newest time setting used, per event
MAX_UPDATE_BYTES = 1024 * 1024
MAX_VALID_HOURS = 48
MAX_GATES = 256
NAMES = ("trust.signed", "event.policy", "revocations.signed", "time.signed")


@dataclass(frozen=True)
class UpdateResult:
    name: str
    applied: bool
    message: str
    refused: bool = False  # a problem (not merely "already installed")


# -- signing (the organizer's laptop) ---------------------------------------------


def sign_time_setting(
    key: Ed25519PrivateKey,
    *,
    event: str,
    signed_at: datetime,
    sequence: int,
    gates: Iterable[str] = (),
    valid_hours: float = 4,
    lower_floor: bool = False,
) -> bytes:
    """A time setting: "when this was signed it was ``signed_at``", for ``event``
    (and only ``gates``, if any), usable once, for ``valid_hours``."""
    body = {
        "event": event,
        "gates": sorted(set(gates)),
        "sequence": sequence,
        "valid_hours": valid_hours,
        "lower_floor": lower_floor,
    }
    return sign_document(key, TIME_KIND, body, signed_at)


@dataclass(frozen=True)
class SignedTimeSetting:
    """A signed time setting, and where its number is remembered once it is out."""

    data: bytes
    sequence: int
    signed_at: datetime
    counter: Path  # EVENT.time-sequence, beside the policy

    def record(self) -> None:
        """Remember this number as the last used: call it once the setting is written."""
        write_atomically(self.counter, f"{self.sequence}\n".encode("ascii"))


def next_time_setting(
    key: Ed25519PrivateKey,
    policy_path: Path,
    event: str,
    *,
    now: datetime,
    gates: Iterable[str] = (),
    valid_hours: float = 4,
    lower_floor: bool = False,
    sequence: int | None = None,
) -> SignedTimeSetting:
    """The event's next time setting: numbered one more than the last one made
    beside ``policy_path`` (``EVENT.time-sequence``), unless ``sequence`` says.
    Gates accept each number once and only rising, so a stick cannot replay one.
    Raises :class:`ConfigError` for a gate id that is not one, or a counter
    file that cannot be read."""
    counter = policy_path.parent / f"{event}.time-sequence"
    bad = [g for g in gates if not GATE_ID.fullmatch(g)]
    if bad:
        raise ConfigError(f"--gate: {bad[0]!r} is not a gate id")
    if sequence is None:
        last = 0
        if counter.exists():
            try:
                last = int(counter.read_text(encoding="ascii").strip())
            except (OSError, UnicodeDecodeError, ValueError) as err:
                raise ConfigError(
                    f"cannot read the last sequence from {counter}; give --sequence"
                ) from err
        sequence = last + 1
    data = sign_time_setting(
        key,
        event=event,
        signed_at=now,
        sequence=sequence,
        gates=gates,
        valid_hours=valid_hours,
        lower_floor=lower_floor,
    )
    return SignedTimeSetting(data, sequence, now, counter)


# -- reading a time setting ---------------------------------------------------------


@dataclass(frozen=True)
class TimeSetting:
    event: str
    gates: tuple[str, ...]  # empty: every gate
    sequence: int
    valid_hours: float
    lower_floor: bool
    signed_at: datetime

    @property
    def valid_until(self) -> datetime:
        return self.signed_at + timedelta(hours=self.valid_hours)


def open_time_setting(
    data: bytes, trusted: Mapping[str, Ed25519PublicKey] | Iterable[Ed25519PublicKey]
) -> TimeSetting:
    """Verify a ``time.signed`` and check its body; SignatureError says why not."""
    document = open_document(data, kind=TIME_KIND, trusted=trusted, max_bytes=MAX_UPDATE_BYTES)
    body = document.body
    expected = {"event", "gates", "sequence", "valid_hours", "lower_floor"}
    if set(body) != expected:
        raise SignatureError(f"it is not a time setting (it needs {', '.join(sorted(expected))})")
    event, gates, sequence = body["event"], body["gates"], body["sequence"]
    hours, lower = body["valid_hours"], body["lower_floor"]
    if not isinstance(event, str) or not event:
        raise SignatureError("its event is not an event id")
    if (
        not isinstance(gates, list)
        or len(gates) > MAX_GATES
        or not all(isinstance(g, str) and GATE_ID.fullmatch(g) for g in gates)
    ):
        raise SignatureError("its gates are not a list of gate ids")
    if not isinstance(sequence, int) or isinstance(sequence, bool) or sequence < 1:
        raise SignatureError("its sequence is not a whole number from 1")
    if (
        not isinstance(hours, int | float)
        or isinstance(hours, bool)
        or not 0 < hours <= MAX_VALID_HOURS
    ):
        raise SignatureError(f"its validity is not between 0 and {MAX_VALID_HOURS} hours")
    if not isinstance(lower, bool):
        raise SignatureError("its lower_floor is not true or false")
    return TimeSetting(event, tuple(gates), sequence, float(hours), lower, document.signed_at)


# -- files ----------------------------------------------------------------------------


def install_file(
    path: Path, data: bytes, *, keep_previous: bool = True, owner_of: Path | None = None
) -> None:
    """Atomically replace ``path`` with ``data`` (optionally keeping the old one
    as ``.previous``). Safe when two processes install at once: each writes its
    own temporary file (created exclusively) and the last rename wins whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ref = owner_of or path.parent
    if keep_previous:
        try:
            # a copy, not a hard link: link(2) fails while another installer renames
            old = path.read_bytes()
        except FileNotFoundError:
            old = None
        if old is not None:
            _replace_with(path.with_name(path.name + ".previous"), old, ref)
    _replace_with(path, data, ref)


def _replace_with(path: Path, data: bytes, owner_of: Path) -> None:
    with replacing(path, mode=0o644) as out:
        out.write(data)
        with contextlib.suppress(OSError):
            st = owner_of.stat()
            os.fchown(out.fileno(), st.st_uid, st.st_gid)  # the daemon's user must read it


def rollback(path: Path, *, shipped: Path | None = None) -> Path:
    """Put back the version an update replaced (one step); returns the file
    now in force. After the first update there is no ``.previous``: the
    version it replaced is the one the image shipped (``shipped``), which
    comes back into force when the update is taken away."""
    previous = path.with_name(path.name + ".previous")
    if previous.exists():
        os.replace(previous, path)
        return path
    if shipped is not None and shipped.exists() and path.exists():
        path.unlink()
        fsync_folder(path.parent)
        return shipped
    raise PolicyError(f"there is no previous version of {path.name} to go back to")


# -- applying ------------------------------------------------------------------------


@dataclass
class _Target:
    store: PolicyStore
    state: StateStore
    guard: ClockGuard
    now: datetime
    gate: str
    build: datetime | None
    set_clock: Callable[[datetime], None] | None
    allow_new_event: bool


def apply_updates(
    folder: Path,
    *,
    store: PolicyStore,
    state: StateStore,
    guard: ClockGuard,
    gate: str,
    now: datetime,
    build: datetime | None = None,
    set_clock: Callable[[datetime], None] | None = None,
    log_event: Callable[..., None] = lambda kind, **detail: None,
    allow_new_event: bool = False,
) -> list[UpdateResult]:
    """Apply every update found in ``folder`` (the stick's ``scanner-update``).

    ``store`` is the gate's policy store (its current trust decides what is
    accepted); ``state`` keeps the records that only move forward; ``guard``
    and ``now`` are the gate's clock, ``build`` its image's build time; a
    ``set_clock`` port, when given, moves the system clock forward.
    """
    target = _Target(store, state, guard, now, gate, build, set_clock, allow_new_event)
    results: list[UpdateResult] = []

    def record(result: UpdateResult) -> None:
        results.append(result)
        log_event(
            "update",
            file=result.name,
            applied=result.applied,
            refused=result.refused,
            message=result.message,
        )

    try:
        stick = Folder(folder)
    except TransferError as err:
        record(UpdateResult(str(folder), False, f"cannot open the update folder: {err}", True))
        return results
    with stick:
        for name in NAMES:
            try:
                read = stick.read_if_there(name, MAX_UPDATE_BYTES)
                if read is None:
                    continue
                result = _APPLY[name](target, name, read.data)
            except (ScannerError, OSError) as err:
                result = UpdateResult(name, False, f"refused: {err}", refused=True)
            except Exception as err:  # one bad file never stops the others, nor the stick
                result = UpdateResult(
                    name, False, f"refused: it could not be read ({type(err).__name__})", True
                )
            record(result)
            store.refresh()
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
    if policy.signed_at is None:
        raise SignatureError("it carries no signing time")
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
    serials = revocation_serials(document.body, base.event)
    try:
        _newer(document.signed_at, t.store.revocations_signed_at, "the revocation list")
    except _SkipError as skip:
        return UpdateResult(name, False, str(skip))
    if t.store.revocations_path is None:
        raise SignatureError("this gate has no place for a revocation list")
    install_file(t.store.revocations_path, data)
    return UpdateResult(
        name, True, f"installed a revocation list of {plural(len(serials), 'pass')}"
    )


def _apply_trust(t: _Target, name: str, data: bytes) -> UpdateResult:
    store = t.store
    if store.trust_update is None:
        raise SignatureError("this gate has no place for key updates")
    replay = replay_chain(data, store.anchors)
    if replay.problem is not None:
        raise SignatureError(replay.problem)
    if replay.sequence == 0:
        raise SignatureError("it holds no key update")
    record = store.read_trust_record()
    refusal = store.check_chain(replay, record)
    if refusal is not None:
        raise SignatureError(refusal)
    if (
        record is not None
        and replay.sequence == record.sequence
        and store.trust_fault is None
        and store.trust_sequence == record.sequence
    ):
        return UpdateResult(name, False, f"key update {replay.sequence} is already installed")
    install_file(store.trust_update, data, keep_previous=False)
    store.record_trust(replay)
    noun = "key" if len(replay.keys) == 1 else "keys"
    return UpdateResult(
        name,
        True,
        f"now trusting organizer {noun} {', '.join(sorted(replay.keys))} "
        f"(key update {replay.sequence})",
    )


def _time_sequences(state: StateStore) -> dict[str, int]:
    value = state.get_state(TIME_SEQUENCES)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value.values()
    ):
        raise MalformedError("the record of time settings used here is not valid")
    return value


def _apply_time(t: _Target, name: str, data: bytes) -> UpdateResult:
    setting = open_time_setting(data, t.store.trusted)
    event = t.store.base.event if t.store.base is not None else t.store.event
    if event is None:
        raise SignatureError(
            "there is no event policy installed to check its event against; "
            "bring event.policy on the same stick"
        )
    if setting.event != event:
        raise SignatureError(f"it is for event {setting.event!r}; this gate serves {event!r}")
    if setting.gates and t.gate not in setting.gates:
        raise SignatureError(
            f"it is for gate{'s' if len(setting.gates) > 1 else ''} "
            f"{', '.join(setting.gates)}; this is gate {t.gate!r}"
        )
    used = _time_sequences(t.state)
    if setting.sequence <= used.get(event, 0):
        raise SignatureError(
            f"time setting {setting.sequence} was already used here (a replay?); "
            f"the newest this gate accepted is {used[event]}"
        )
    when = setting.signed_at
    ceiling = t.guard.ceiling()
    if ceiling is not None and when > ceiling:
        raise SignatureError(
            f"it says {format_utc(when)}, after the latest time this gate can believe "
            f"({format_utc(ceiling)}): check the clock of the computer that signed it"
        )
    if t.build is not None and when < t.build:
        raise SignatureError(
            f"it says {format_utc(when)}, before this gate's image was built "
            f"({format_utc(t.build)}): check the clock of the computer that signed it"
        )
    floor = t.guard.floor  # before a believable clock reading raises it
    clock = t.guard.check(t.now)
    if clock.trusted and t.now > setting.valid_until:
        raise SignatureError(
            f"it expired at {format_utc(setting.valid_until)} "
            f"({setting.valid_hours:g} h after it was signed); this gate's clock reads "
            f"{format_utc(t.now)}. Sign a new one just before the stick goes out"
        )
    applied = True
    if when > floor:
        t.state.set_state(FLOOR_STATE, format_utc(when))
        t.guard.raise_floor(when)
        message = f"clock floor raised to {format_utc(when)}"
    elif when < floor and setting.lower_floor:
        reset = FloorReset(when, floor, setting.sequence)
        t.state.set_state(RESET_STATE, reset.to_state())
        t.state.set_state(FLOOR_STATE, format_utc(when))
        message = f"clock floor lowered from {format_utc(floor)} to {format_utc(when)}"
    elif clock.trusted:
        applied = False
        message = f"nothing to do: this gate's clock is already past {format_utc(when)}"
    else:
        raise SignatureError(
            f"it says {format_utc(when)}, not later than {format_utc(floor)}, which this "
            "gate has already seen; if that time is wrong, sign one with "
            "scanner update time --lower-floor"
        )
    used[event] = setting.sequence
    t.state.set_state(TIME_SEQUENCES, used)
    if t.set_clock is not None and t.now < when:
        t.set_clock(when)
        message += ", clock set forward"
    return UpdateResult(name, applied, message)


_APPLY: dict[str, Callable[[_Target, str, bytes], UpdateResult]] = {
    "event.policy": _apply_policy,
    "revocations.signed": _apply_revocations,
    "trust.signed": _apply_trust,
    "time.signed": _apply_time,
}


def set_system_clock(when: datetime) -> None:
    """Set the wall clock (needs CAP_SYS_TIME: the USB unit has it, the daemon not)."""
    time.clock_settime(time.CLOCK_REALTIME, when.timestamp())
