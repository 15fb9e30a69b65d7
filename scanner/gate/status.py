"""The gate's status as the crew reads it: one value, built by the scan loop
once per ask, read by every consumer (``scanner phase`` over the control
socket, systemd's status line, the guard's screen, the venue heartbeat)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..core.schedule import PhaseOverride
from ..core.signed import format_utc
from ..words import plural

__all__ = ["GateStatus"]


@dataclass(frozen=True)
class GateStatus:
    gate: str
    zone: str
    direction: str  # "entry" or "exit"
    door: str | None
    event: str | None  # None: no policy yet
    timezone: str
    phase: str  # in words: "during (photo window) (day 2 of 3)", "unknown (no policy)"
    override: PhaseOverride | None = None
    granted: int = 0
    denied: int = 0
    let_in: int | None = None  # passes let in through this entry (None at an exit)
    last: str = "none yet"  # the last decision, in a few words
    faults: Mapping[str, str] = field(default_factory=dict)  # name: message
    sensors: Mapping[str, str] = field(default_factory=dict)  # door and case, open or closed
    venue: Mapping[str, Any] | None = None  # the venue link's own status, when it is on

    def as_dict(self) -> dict[str, Any]:
        """The status as the control socket sends it (JSON)."""
        out: dict[str, Any] = {
            "gate": self.gate,
            "zone": self.zone,
            "direction": self.direction,
            "door": self.door,
            "event": self.event,
            "timezone": self.timezone,
            "phase": self.phase,
            "override": None
            if self.override is None
            else {"phase": self.override.phase.value, "since": format_utc(self.override.since)},
            "granted": self.granted,
            "denied": self.denied,
            "let_in": self.let_in,
            "last": self.last,
            "faults": dict(self.faults),
            "sensors": dict(self.sensors),
        }
        if self.venue is not None:
            out["venue"] = dict(self.venue)
        return out

    def line(self) -> str:
        """The status as one line (systemd's STATUS, ``systemctl status``)."""
        door = f" at {self.door}" if self.door else ""
        let_in = "" if self.let_in is None else f", {plural(self.let_in, 'pass')} let in"
        faults = ", ".join(sorted(self.faults)) or "none"
        sensors = "".join(f" | {k} {v}" for k, v in self.sensors.items())
        venue = f" | {self.venue['summary']}" if self.venue is not None else ""
        return (
            f"{self.gate}: {self.zone} {self.direction}{door} | phase {self.phase} | "
            f"{self.granted} granted, {self.denied} denied{let_in} | last: {self.last} | "
            f"faults: {faults}{sensors}{venue}"
        )
