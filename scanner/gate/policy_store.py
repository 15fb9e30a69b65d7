"""What the gate trusts, on disk: organizer keys, the signed policy, and the
signed revocation list; loaded, verified and watched for changes.

Only signed data changes a gate's trust, and trust moves forward only. The
image holds the organizer keys the gate starts with (its anchors, in
``/etc/scanner/trust``); every key rotation since then is a link of the key
chain on the data partition (``trust.signed``, see :mod:`scanner.core.trust`),
replayed from the anchors on every load. How far the chain has come (the
sequence and digest of its newest link) is recorded apart from it, in the
scan log's ``state`` table, and only ever raised. A chain that ends below the
record or differs from it (deleted, truncated, rolled back, a fork signed
with a retired key) is a fault, never a way back to an older key: a running
gate keeps the keys it trusted until then and shows the fault; a gate that
starts with no good chain trusts no key at all (no policy, every scan
``no_policy``, the fault blink) until the current chain arrives by stick.

The policy and the revocation list are verified against the keys in force
on every load, and a policy for another event than the gate serves is
refused. A file that changes on disk is verified again; if the new one does
not verify, the gate keeps the last policy it verified and reports a fault,
so a corrupt file never grants and never silently stops the door. Files are
read without following links and with a size limit.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from .. import files
from ..core.keys import Ed25519PublicKey, key_id
from ..core.policy import Policy, open_policy
from ..core.revocations import REVOCATIONS_KIND, revocation_serials
from ..core.signed import open_document
from ..core.trust import MAX_CHAIN_BYTES, TRUST_KIND, ChainReplay, replay_chain
from ..errors import (
    KeyFileError,
    MalformedError,
    ScannerError,
)
from ..keyfiles import load_public_key

__all__ = [
    "MAX_FILE_BYTES",
    "TRUST_KIND",
    "TRUST_RECORD",
    "LogState",
    "PolicyStore",
    "StateStore",
    "TrustRecord",
    "load_trust_dirs",
    "read_regular_file",
]

TRUST_RECORD = "trust_chain"  # the state-table key of how far the key chain has come
MAX_TRUST_KEYS = 16
MAX_FILE_BYTES = 1024 * 1024


def load_trust_dirs(dirs: tuple[Path, ...]) -> tuple[dict[str, Ed25519PublicKey], list[str]]:
    """Every ``*.pub`` in ``dirs`` (regular files only), and the problems found."""
    keys: dict[str, Ed25519PublicKey] = {}
    problems: list[str] = []
    for folder in dirs:
        if folder.is_file():
            candidates = [folder]
        elif folder.is_dir():
            candidates = sorted(folder.glob("*.pub"))
        else:
            continue
        for path in candidates:
            if path.is_symlink() or not path.is_file():
                problems.append(f"{path}: not a regular file, ignored")
                continue
            try:
                key = load_public_key(path)
            except KeyFileError as err:
                problems.append(str(err))
                continue
            keys[key_id(key)] = key
            if len(keys) > MAX_TRUST_KEYS:
                problems.append(f"more than {MAX_TRUST_KEYS} trusted keys; the rest ignored")
                return keys, problems
    return keys, problems


def read_regular_file(path: Path, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of the gate's file ``path`` if it is a regular file (not a
    link) of at most ``max_bytes`` (:func:`scanner.files.read_regular_file`).

    Raises :class:`MalformedError` with the reason, or ``OSError``.
    """
    return files.read_regular_file(path, max_bytes)


class StateStore(Protocol):
    """Where the gate keeps small facts across restarts (the scan log's ``state``)."""

    def get_state(self, key: str) -> Any: ...

    def set_state(self, key: str, value: Any) -> None: ...


class LogState:
    """The ``state`` table of the scan log at ``db``, opened for each call
    (for stores that are not handed an open log)."""

    def __init__(self, db: Path, gate: str) -> None:
        self.db = db
        self.gate = gate

    def get_state(self, key: str) -> Any:
        from ..record.log import ScanLog

        if not self.db.exists():  # no log yet: nothing recorded (and none made by looking)
            return None
        with ScanLog(self.db, gate=self.gate) as log:
            return log.get_state(key)

    def set_state(self, key: str, value: Any) -> None:
        from ..record.log import ScanLog

        with ScanLog(self.db, gate=self.gate) as log:
            log.set_state(key, value)


@dataclass(frozen=True)
class TrustRecord:
    """How far this gate's key chain has come: the newest link it accepted."""

    sequence: int
    head: str

    @classmethod
    def from_state(cls, value: Any) -> TrustRecord | None:
        if value is None:
            return None
        if (
            not isinstance(value, dict)
            or not isinstance(value.get("sequence"), int)
            or isinstance(value.get("sequence"), bool)
            or value["sequence"] < 1
            or not isinstance(value.get("head"), str)
        ):
            raise MalformedError(f"the record of accepted key updates is not valid: {value!r}")
        return cls(value["sequence"], value["head"])


@dataclass(frozen=True)
class _Stamp:
    ino: int
    size: int
    mtime_ns: int


def _stamp(path: Path | None) -> _Stamp | None:
    if path is None:
        return None
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return None
    return _Stamp(st.st_ino, st.st_size, st.st_mtime_ns)


class PolicyStore:
    """The gate's verified policy, kept current with the files on disk."""

    def __init__(
        self,
        *,
        policy: Path,
        trust: tuple[Path, ...],
        revocations: Path | None = None,
        initial_policy: Path | None = None,
        event: str | None = None,
        trust_update: Path | None = None,
        state: StateStore | None = None,
        check: Callable[[Policy], None] | None = None,
    ) -> None:
        if trust_update is not None and state is None:
            raise ValueError("a key chain needs a state store to record how far it has come")
        self.policy_path = policy
        self.check = check  # raises PolicyError for a policy unfit for this gate
        self.trust_update = trust_update
        self.state = state
        self.initial_policy = initial_policy
        self.revocations_path = revocations
        self.trust_dirs = trust
        self.event = event
        self.anchors: dict[str, Ed25519PublicKey] = {}
        self.trusted: Mapping[str, Ed25519PublicKey] = {}
        self.trust_sequence = 0  # key updates applied to the anchors (0: the anchors)
        self.trust_fault: str | None = None
        self._trust_good = False  # self.trusted came from a chain that checked out
        self.base: Policy | None = None  # the signed policy as verified
        self.revoked: frozenset[int] = frozenset()
        self.revocations_signed_at: datetime | None = None
        self.fault: str | None = None
        self._stamps: tuple[_Stamp | None, ...] | None = None
        self._trust_stamps: tuple[_Stamp | None, ...] | None = None
        self.refresh()

    @property
    def policy(self) -> Policy | None:
        """The policy in force: the verified policy plus the revocation list."""
        if self.base is None:
            return None
        return self.base.with_revocations(self.revoked) if self.revoked else self.base

    def _source(self) -> Path | None:
        if self.policy_path.exists():
            return self.policy_path
        if self.initial_policy is not None and self.initial_policy.exists():
            return self.initial_policy
        return None

    def _trust_files(self) -> tuple[_Stamp | None, ...]:
        out: list[_Stamp | None] = []
        for folder in self.trust_dirs:
            out.append(_stamp(folder))
            if folder.is_dir():
                out.extend(_stamp(p) for p in sorted(folder.glob("*.pub")))
        return tuple(out)

    def refresh(self) -> bool:
        """Reload whatever changed on disk; True when the policy in force changed."""
        trust_stamps = self._trust_files()
        source = self._source()
        stamps = (_stamp(source), _stamp(self.revocations_path), _stamp(self.trust_update))
        if stamps == self._stamps and trust_stamps == self._trust_stamps:
            return False
        self._stamps, self._trust_stamps = stamps, trust_stamps
        before = self.policy
        self.anchors, problems = load_trust_dirs(self.trust_dirs)
        faults: list[str] = []
        self.trust_fault = self._load_trust()
        if self.trust_fault is not None:
            faults.append(self.trust_fault)
        if not self.trusted:
            if self.trust_fault is None:
                faults.append(
                    "no trusted organizer key (put the organizer's .pub in "
                    f"{self.trust_dirs[0] if self.trust_dirs else '--trust'})"
                )
            faults.extend(problems)
        elif source is None:
            faults.append(f"no event policy at {self.policy_path}; bring one by USB update")
        else:
            try:
                candidate = open_policy(read_regular_file(source), self.trusted, event=self.event)
                if self.check is not None:
                    self.check(candidate)
                self.base = candidate
            except (ScannerError, OSError) as err:
                faults.append(f"{source}: {err}")
        if self.base is not None and self.revocations_path is not None:
            try:
                if os.path.lexists(self.revocations_path):
                    self._load_revocations(self.revocations_path, self.base)
            except (ScannerError, OSError) as err:
                faults.append(f"{self.revocations_path}: {err}")
        self.fault = "; ".join(faults) or None
        return self.policy != before

    # -- the key chain ---------------------------------------------------------

    def read_trust_record(self) -> TrustRecord | None:
        """How far this gate's key chain has come (None: never rotated)."""
        if self.state is None:
            return None
        return TrustRecord.from_state(self.state.get_state(TRUST_RECORD))

    def record_trust(self, replay: ChainReplay) -> None:
        """Raise the record to the chain ``replay`` (never lowers it)."""
        if self.state is None or replay.head is None:
            return
        record = self.read_trust_record()
        if record is None or replay.sequence > record.sequence:
            self.state.set_state(TRUST_RECORD, {"sequence": replay.sequence, "head": replay.head})

    def check_chain(self, replay: ChainReplay, record: TrustRecord | None) -> str | None:
        """Why ``replay`` may not replace this gate's trust, or None if it may."""
        if record is None:
            return None
        if replay.sequence < record.sequence:
            why = f" ({replay.problem})" if replay.problem else ""
            return (
                f"it ends at key update {replay.sequence}{why}, but this gate has already "
                f"accepted key update {record.sequence}: an old, cut or altered key chain"
            )
        if replay.digest_at(record.sequence) != record.head:
            return (
                f"its key update {record.sequence} is not the one this gate accepted: "
                "a different chain (signed with a retired key?)"
            )
        return None

    def _load_trust(self) -> str | None:
        """Put the keys in force in ``self.trusted``; the fault, if any."""
        if self.trust_update is None:
            self._use(dict(self.anchors), 0)
            return None
        path = self.trust_update
        try:
            record = self.read_trust_record()
        except (ScannerError, OSError) as err:
            return self._keep_last(f"cannot read how far this gate's keys have rotated: {err}")
        try:
            data = read_regular_file(path, MAX_CHAIN_BYTES) if os.path.lexists(path) else None
            replay = None if data is None else replay_chain(data, self.anchors)
        except (ScannerError, OSError) as err:
            if record is None:  # never rotated: the anchors are this gate's keys
                self._use(dict(self.anchors), 0)
                return f"{path}: {err}; trusting the image's organizer keys"
            return self._keep_last(
                f"{path}: {err}, but this gate has accepted key update {record.sequence}"
            )
        if replay is None:
            if record is None:
                self._use(dict(self.anchors), 0)
                return None
            return self._keep_last(
                f"{path} is missing, but this gate has accepted key update {record.sequence}"
            )
        refusal = self.check_chain(replay, record)
        if refusal is not None:
            return self._keep_last(f"{path}: {refusal}")
        self._use(replay.keys, replay.sequence)
        if replay.problem:
            return f"{path}: {replay.problem}; trusting the keys of key update {replay.sequence}"
        return None

    def _use(self, keys: Mapping[str, Ed25519PublicKey], sequence: int) -> None:
        self.trusted = keys
        self.trust_sequence = sequence
        self._trust_good = True

    def _keep_last(self, message: str) -> str:
        """A bad chain never hands trust back to an older key: keep what was
        trusted until now, or, at start, trust nothing."""
        hint = "; bring the current trust.signed by USB"
        if self._trust_good:
            return f"{message}; keeping the organizer keys trusted until now{hint}"
        self.trusted = {}
        self.trust_sequence = 0
        return f"{message}; trusting no organizer key until then{hint}"

    # -- revocations -------------------------------------------------------------

    def _load_revocations(self, path: Path, base: Policy) -> None:
        document = open_document(
            read_regular_file(path), kind=REVOCATIONS_KIND, trusted=self.trusted
        )
        self.revoked = revocation_serials(document.body, base.event)
        self.revocations_signed_at = document.signed_at
