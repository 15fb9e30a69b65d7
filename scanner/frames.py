"""Frames in: where the scan loop's pictures come from (placeholder)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .errors import CameraError


def read_image(path: Path) -> np.ndarray:
    """One image file as a grey frame."""
    frame = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if frame is None:
        raise CameraError(f"cannot read image {path}")
    return frame
