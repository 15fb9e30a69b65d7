"""How long things take at the door: the defaults every part of the gate shares.

Stated once here, so the configuration's defaults, the scan loop's, the
override desk's and the decoder's cannot drift apart.
"""

from __future__ import annotations

__all__ = ["FRAME_BUDGET_MS", "HOLD_OFF_SECONDS", "OVERRIDE_SECONDS"]

# The same code shown again within this is the same presentation (one row, one signal).
HOLD_OFF_SECONDS = 3.0
# The guard's override (button or scanner admit) follows a denial within this.
OVERRIDE_SECONDS = 30.0
# What one frame's decoding may cost before the decoder stops looking harder.
FRAME_BUDGET_MS = 150.0
