"""Synthetic camera footage of people holding up passes, for the demo, the
benchmark and the end-to-end tests.

A *presentation* is one person holding one pass in front of the camera for a
moment: the code drifts a little, tilted and turned, maybe blurred and noisy,
on a cluttered background; between presentations the camera sees nobody.
Everything is deterministic from a seed, so a test knows exactly how many
presentations a recording holds.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..organizer.issuing import qr_code

__all__ = [
    "Presentation",
    "background",
    "code_image",
    "presentation_frames",
    "render_frame",
    "write_video",
]

WIDTH, HEIGHT = 640, 480


def code_image(text: str, module_px: int = 4, border: int = 4) -> np.ndarray:
    """The pass's QR code as a grey image, ``module_px`` pixels per module."""
    matrix = np.array(qr_code(text).matrix, dtype=np.uint8)
    matrix = np.pad(matrix, border)
    image = np.where(matrix == 1, 0, 255).astype(np.uint8)
    return cv2.resize(image, None, fx=module_px, fy=module_px, interpolation=cv2.INTER_NEAREST)


def background(seed: int) -> np.ndarray:
    """A dim, cluttered backstage corridor: gradient, shapes, sensor noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    frame = (60 + 50 * x / WIDTH + 30 * y / HEIGHT).astype(np.float32)
    for _ in range(6):
        x0, y0 = int(rng.integers(0, WIDTH)), int(rng.integers(0, HEIGHT))
        w, h = int(rng.integers(30, 200)), int(rng.integers(30, 200))
        cv2.rectangle(frame, (x0, y0), (x0 + w, y0 + h), float(rng.integers(20, 200)), -1)
    return frame


@dataclass(frozen=True)
class Presentation:
    """One person holding one pass up for ``frames`` frames."""

    text: str
    frames: int = 12
    module_px: float = 4.0
    roll: float = 0.0  # degrees in the image plane
    tilt: float = 0.0  # degrees out of plane (perspective)
    blur: float = 0.0  # Gaussian sigma, pixels
    noise: float = 4.0  # sensor noise, grey levels
    light: float = 1.0  # exposure: below 1 is darker


def render_frame(code: np.ndarray, p: Presentation, seed: int, step: int) -> np.ndarray:
    """One frame of a presentation: the card warped into the scene."""
    rng = np.random.default_rng(seed * 1000 + step)
    frame = background(seed)
    h, w = code.shape
    scale = p.module_px / 4.0
    cx = WIDTH / 2 + 40 * np.sin(step / 5 + seed) + rng.normal(0, 2)
    cy = HEIGHT / 2 + 30 * np.cos(step / 7 + seed) + rng.normal(0, 2)
    half_w, half_h = w * scale / 2, h * scale / 2
    corners = np.array(
        [[-half_w, -half_h], [half_w, -half_h], [half_w, half_h], [-half_w, half_h]],
        dtype=np.float32,
    )
    angle = np.radians(p.roll + 2 * np.sin(step / 3))
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    corners = corners @ rot.T
    squeeze = np.cos(np.radians(p.tilt))
    corners[:, 0] *= np.where(corners[:, 1] < 0, squeeze, 1.0)  # far edge narrower
    corners += [cx, cy]
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(src, corners.astype(np.float32))
    card = cv2.warpPerspective(
        code.astype(np.float32), matrix, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR, borderValue=-1
    )
    frame = np.where(card >= 0, card, frame)
    frame = frame * p.light
    if p.blur > 0:
        frame = cv2.GaussianBlur(frame, (0, 0), p.blur)
    frame = frame + rng.normal(0, p.noise, frame.shape)
    return np.clip(frame, 0, 255).astype(np.uint8)


def presentation_frames(
    presentations: Sequence[Presentation], *, gap_frames: int = 8, seed: int = 1
) -> Iterator[np.ndarray]:
    """Empty corridor, then each presentation, with ``gap_frames`` of nobody between."""
    for number, p in enumerate(presentations):
        empty = background(seed + number)
        rng = np.random.default_rng(seed + number)
        for _ in range(gap_frames):
            yield np.clip(empty + rng.normal(0, p.noise, empty.shape), 0, 255).astype(np.uint8)
        code = code_image(p.text)
        for step in range(p.frames):
            yield render_frame(code, p, seed + number, step)
    tail = background(seed + len(presentations))
    for _ in range(gap_frames):
        yield tail.astype(np.uint8)


def write_video(path: Path, frames: Iterator[np.ndarray], fps: float = 10.0) -> int:
    """Write grey frames as an MJPG AVI (what a USB camera sends); returns the count."""
    writer = cv2.VideoWriter(
        str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (WIDTH, HEIGHT), isColor=False
    )
    if not writer.isOpened():
        raise OSError(f"cannot write video {path}")
    count = 0
    try:
        for frame in frames:
            writer.write(frame)
            count += 1
    finally:
        writer.release()
    return count
