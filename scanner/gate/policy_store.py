"""What the gate trusts, on disk: organizer keys, the signed policy, and the
signed revocation list; loaded, verified and watched for changes.

Only signed data changes a gate's trust. Organizer public keys come from the
image (``/etc/scanner/trust``) or from a signed key update on the data
partition; the policy and the revocation list are verified against them on
every load, and a policy for another event than the gate serves is refused.
A file that changes on disk is verified again; if the new one does not
verify, the gate keeps the last policy it verified and reports a fault (the
door shows the fault blink), so a corrupt file never grants and never
silently stops the door.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ..core.keys import Ed25519PublicKey, key_id, parse_public_key
from ..core.policy import Policy, open_policy
from ..core.signed import open_document
from ..errors import KeyFileError, PolicyError, SignatureError
from ..keyfiles import load_public_key

__all__ = ["REVOCATIONS_KIND", "TRUST_KIND", "PolicyStore", "load_trust_dirs"]

REVOCATIONS_KIND = "revocations"
TRUST_KIND = "trust"
MAX_TRUST_KEYS = 16


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


@dataclass(frozen=True)
class _Stamp:
    ino: int
    size: int
    mtime_ns: int


def _stamp(path: Path | None) -> _Stamp | None:
    if path is None:
        return None
    try:
        st = os.stat(path)
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
        check: Callable[[Policy], None] | None = None,
    ) -> None:
        self.policy_path = policy
        self.check = check  # raises PolicyError for a policy unfit for this gate
        self.trust_update = trust_update
        self.trust_signed_at: datetime | None = None
        self.initial_policy = initial_policy
        self.revocations_path = revocations
        self.trust_dirs = trust
        self.event = event
        self.trusted: dict[str, Ed25519PublicKey] = {}
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
        self.trusted, problems = load_trust_dirs(self.trust_dirs)
        faults: list[str] = []
        if self.trust_update is not None and self.trust_update.exists():
            try:
                self._load_trust_update(self.trust_update)
            except (SignatureError, KeyFileError, OSError) as err:
                faults.append(f"{self.trust_update}: {err}")
        if not self.trusted:
            faults.append(
                "no trusted organizer key (put the organizer's .pub in "
                f"{self.trust_dirs[0] if self.trust_dirs else '--trust'})"
            )
            faults.extend(problems)
        elif source is None:
            faults.append(f"no event policy at {self.policy_path}; bring one by USB update")
        else:
            try:
                candidate = open_policy(source.read_bytes(), self.trusted, event=self.event)
                if self.check is not None:
                    self.check(candidate)
                self.base = candidate
            except (PolicyError, OSError) as err:
                faults.append(f"{source}: {err}")
        if (
            self.base is not None
            and self.revocations_path is not None
            and self.revocations_path.exists()
        ):
            try:
                self._load_revocations(self.revocations_path, self.base)
            except (SignatureError, PolicyError, OSError) as err:
                faults.append(f"{self.revocations_path}: {err}")
        self.fault = "; ".join(faults) or None
        return self.policy != before

    def _load_trust_update(self, path: Path) -> None:
        """A key update replaces the image's organizer keys. It was verified
        against the keys trusted when it was installed; here it must be signed
        by one of those image keys or by a key it lists itself."""
        data = path.read_bytes()
        document = open_document(data, kind=TRUST_KIND, trusted=None)
        texts = document.body.get("keys")
        if not isinstance(texts, list) or not texts:
            raise SignatureError("the key update lists no keys")
        keys = {key_id(k): k for k in (parse_public_key(str(t)) for t in texts)}
        if document.key_id not in keys and document.key_id not in self.trusted:
            raise SignatureError("the key update is not signed by a trusted key")
        self.trusted = keys
        self.trust_signed_at = document.signed_at

    def _load_revocations(self, path: Path, base: Policy) -> None:
        document = open_document(path.read_bytes(), kind=REVOCATIONS_KIND, trusted=self.trusted)
        body = document.body
        if body.get("event") != base.event:
            raise PolicyError(f"the revocation list is for event {body.get('event')!r}")
        serials = body.get("serials")
        if not isinstance(serials, list) or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in serials
        ):
            raise PolicyError("the revocation list's serials are not pass serials")
        self.revoked = frozenset(serials)
        self.revocations_signed_at = document.signed_at
