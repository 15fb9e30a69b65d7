"""One scan, as a gate writes it: the frozen value the scan loop builds, the
log stores and the venue link shares (without the holder's name)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from ..core.signed import parse_utc
from ..core.venue_view import Sighting
from .schema import SCAN_COLUMNS

__all__ = ["ScanRow"]


@dataclass(frozen=True, slots=True)
class ScanRow:
    """A row of ``scans``. The chain's fields (``seq``, ``prev_hash``,
    ``hash``) are None until the log has written it."""

    id: str
    ts: str  # UTC, ISO 8601 with a Z (core.signed.format_utc)
    gate: str
    decision: str  # "granted" or "denied"
    reason: str  # a core.decision.Reason value
    zone: str | None = None
    direction: str | None = None  # "entry" or "exit"
    door: str | None = None
    event: str | None = None  # the pass's event (None for a code that is no pass)
    serial: int | None = None
    tier: str | None = None
    holder: str | None = None
    key_id: str | None = None
    clock: str | None = None  # "trusted" or "untrusted"
    phase: str | None = None
    message: str | None = None
    code_sha256: str | None = None
    seq: int | None = None
    prev_hash: str | None = None
    hash: str | None = None

    @property
    def granted(self) -> bool:
        return self.decision == "granted"

    @classmethod
    def from_mapping(cls, row: Mapping[str, Any]) -> ScanRow:
        """A row read back (a database row, a written chain row): its columns only."""
        values: dict[str, Any] = {name: row.get(name) for name in _NAMES}
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        """The row's columns, in the log's order."""
        return {name: getattr(self, name) for name in SCAN_COLUMNS}

    def sighting(self) -> Sighting:
        """The row as the venue sees it: no holder name, no message. Written rows only."""
        if self.seq is None:
            raise ValueError(f"scan {self.id} is not written yet: it has no sequence number")
        return Sighting(
            id=self.id,
            gate=self.gate,
            seq=self.seq,
            ts=parse_utc(self.ts),
            event=self.event,
            serial=self.serial,
            tier=self.tier,
            zone=self.zone,
            door=self.door,
            direction=self.direction,
            granted=self.granted,
            reason=self.reason,
            clock_trusted=self.clock != "untrusted",
            phase=self.phase,
        )


_NAMES = tuple(f.name for f in fields(ScanRow))
assert set(_NAMES) == set(SCAN_COLUMNS), "ScanRow and the log's columns differ"
