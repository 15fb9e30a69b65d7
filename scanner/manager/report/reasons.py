"""What the report calls what went wrong at a door.

Denials are the core's: each reason's words are :attr:`Reason.label` and its
kind is the door's own signal class (:attr:`Reason.signal`), except that the
report keeps revoked passes apart from forgeries (the door signals both
alike: keep the pass). Door alarms are the gate events a guard should hear
about. Colours are Okabe-Ito, safe for colour-blind readers.
"""

from __future__ import annotations

from ...core.decision import Reason, SignalClass

REASON_LABELS: dict[str, str] = {r.value: r.label for r in Reason}
FORGED_REASONS = tuple(
    r.value for r in Reason if r.signal is SignalClass.FORGED and r is not Reason.REVOKED
)
REVOKED_REASONS = (Reason.REVOKED.value,)

DENIAL_CLASSES: dict[str, tuple[str, str]] = {  # class: (label, colour), in the page's order
    SignalClass.FORGED.value: ("forged or not a pass", "#D55E00"),
    Reason.REVOKED.value: ("revoked", "#CC79A7"),
    SignalClass.NOT_HERE.value: ("genuine pass, not allowed here", "#0072B2"),
    SignalClass.TIME.value: ("wrong time for this pass", "#E69F00"),
    SignalClass.ALREADY_INSIDE.value: ("already inside", "#56B4E9"),
    SignalClass.SUSPECTED_COPY.value: ("suspected copy (too far, too soon)", "#009E73"),
    SignalClass.FAULT.value: ("fault at the gate", "#666666"),
    "other": ("other", "#999999"),
}

DOOR_ALARMS: dict[str, str] = {  # gate event kind: what the report calls it
    "door_forced": "door forced",
    "door_held_open": "door held open",
    "tamper": "case opened (tamper)",
}


def class_of_reason(code: str) -> str:
    """What kind of denial a logged reason code is (a key of :data:`DENIAL_CLASSES`)."""
    if code == Reason.REVOKED.value:
        return Reason.REVOKED.value
    try:
        return Reason(code).signal.value
    except ValueError:
        return "other"


def reason_words(code: str | None) -> str:
    """A logged reason code in words (``unknown`` when none was logged)."""
    return Reason.words(code) or "unknown"
