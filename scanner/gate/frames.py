"""Frames in: where the scan loop's pictures come from.

One small interface, :class:`FrameSource`, with a backend per kind of camera:

* ``v4l2:/dev/video0``: a USB (UVC) camera through OpenCV's V4L2 backend,
  MJPG at 640x480 with the smallest buffer, or the raw format and nearest
  size the camera has when it offers no MJPG (logged as ``event=camera``).
  A grabber thread keeps only the newest frame, so the loop never decodes a
  stale, queued picture;
* ``picamera2``: the Raspberry Pi camera module through Picamera2 (only on
  Raspberry Pi OS, where libcamera lives); its low-resolution YUV420 stream's
  Y plane is already a grey picture;
* ``file:PATH``: a video file or a folder of images, for tests, demos and
  benchmarks; frames carry their media time so hold-off works as if live;
* :class:`FakeCamera`: scripted frames and failures, shipped for tests the
  way gpiozero ships its ``MockFactory``.

Every frame is a 2-D ``uint8`` grey array. ``read()`` returns ``None`` only
when a file source has ended; a live camera that fails raises
:class:`~scanner.errors.CameraError`, and the scan loop reopens it.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..errors import CameraError, CameraTimeoutError, ConfigError
from .decoders import as_grey

__all__ = [
    "FakeCamera",
    "FileSource",
    "Frame",
    "FrameSource",
    "Picamera2Camera",
    "V4L2Camera",
    "fourcc_name",
    "open_camera",
    "parse_camera_spec",
    "read_image",
]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".pgm", ".tif", ".tiff"}
FRAME_SIZE = (640, 480)


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # 2-D uint8 grey
    t: float  # seconds: capture time (monotonic) for cameras, media time for files
    index: int


def read_image(path: Path) -> np.ndarray:
    """One image file as a grey frame."""
    frame = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if frame is None:
        raise CameraError(f"cannot read image {path}")
    return frame


class FrameSource(ABC):
    """A camera or a recording. ``live`` sources are reopened after a failure."""

    name: str = "frames"
    live: bool = True

    @abstractmethod
    def read(self, timeout: float = 2.0) -> Frame | None:
        """The next (for cameras: the newest) frame, or None at the end of a file."""

    def close(self) -> None:  # noqa: B027 - most sources hold nothing
        """Release the device; safe to call twice."""

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- files -------------------------------------------------------------------


class FileSource(FrameSource):
    """A video file or a folder of images, read in order.

    Frames are stamped with media time (``index / fps`` for image folders), so
    a recording behaves like the door it was filmed at. With ``realtime`` the
    source also waits between frames, for demos a person watches.
    """

    live = False

    def __init__(self, path: Path, *, fps: float = 10.0, realtime: bool = False) -> None:
        self.path = Path(path)
        self.name = f"file:{self.path}"
        self.fps = fps
        self.realtime = realtime
        self._index = 0
        self._started: float | None = None
        self._capture: Any = None
        self._images: list[Path] | None = None
        if self.path.is_dir():
            self._images = sorted(
                p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
            )
        elif self.path.is_file():
            self._capture = cv2.VideoCapture(str(self.path))
            if not self._capture.isOpened():
                raise CameraError(f"cannot open video {self.path}")
            self.fps = self._capture.get(cv2.CAP_PROP_FPS) or fps
        else:
            raise CameraError(f"no video file or image folder at {self.path}")

    def read(self, timeout: float = 2.0) -> Frame | None:
        if self._images is not None:
            if self._index >= len(self._images):
                return None
            image = read_image(self._images[self._index])
        else:
            if self._capture is None:
                return None
            ok, raw = self._capture.read()
            if not ok:
                return None
            image = as_grey(raw)
        t = self._index / self.fps
        if self.realtime:
            if self._started is None:
                self._started = time.monotonic()
            delay = self._started + t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        frame = Frame(image, t, self._index)
        self._index += 1
        return frame

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None
        self._images = []


# -- live cameras ------------------------------------------------------------


class _NewestFrame:
    """Holds the newest frame from a grabber thread; older ones are dropped."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._error: str | None = None
        self._taken = -1

    def put(self, image: np.ndarray) -> None:
        with self._cond:
            index = self._frame.index + 1 if self._frame else 0
            self._frame = Frame(image, time.monotonic(), index)
            self._cond.notify_all()

    def fail(self, message: str) -> None:
        with self._cond:
            self._error = message
            self._cond.notify_all()

    def take(self, timeout: float, name: str) -> Frame:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if self._error is not None:
                    raise CameraError(f"{name}: {self._error}")
                if self._frame is not None and self._frame.index > self._taken:
                    self._taken = self._frame.index
                    return self._frame
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CameraTimeoutError(f"{name}: no frame for {timeout:.1f} s (hung?)")
                self._cond.wait(left)


class _GrabbingCamera(FrameSource):
    """A camera read by a background thread that keeps only the newest frame."""

    def __init__(self) -> None:
        self._newest = _NewestFrame()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"grab {self.name}", daemon=True)
        self._thread.start()

    @abstractmethod
    def _grab(self) -> np.ndarray | None:
        """One frame from the device, None when it failed."""

    def _release(self) -> None:
        """Free the device (called on the grabber thread's way out)."""

    def _run(self) -> None:
        failures = 0
        try:
            while not self._stop.is_set():
                try:
                    image = self._grab()
                except Exception as err:  # a driver error must reach the loop, not kill it
                    self._newest.fail(f"camera error: {err}")
                    return
                if image is None:
                    failures += 1
                    if failures >= 5:
                        self._newest.fail("the camera stopped delivering frames (unplugged?)")
                        return
                    time.sleep(0.05)
                    continue
                failures = 0
                self._newest.put(as_grey(image))
        finally:
            self._release()

    def read(self, timeout: float = 2.0) -> Frame | None:
        return self._newest.take(timeout, self.name)

    def close(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2.0)


def fourcc_name(code: float) -> str:
    """OpenCV's CAP_PROP_FOURCC value as the four letters V4L2 uses (``YUYV``)."""
    value = int(code)
    if value <= 0:
        return "unknown"
    text = "".join(chr((value >> (8 * i)) & 0xFF) for i in range(4))
    return text if text.isprintable() else f"0x{value:08x}"


class V4L2Camera(_GrabbingCamera):
    """A USB (UVC) camera through OpenCV's V4L2 backend.

    It asks for MJPG at 640x480, which a UVC camera delivers at full frame
    rate over USB 2. A camera that offers only raw formats (YUYV, grey, RGB:
    cheap cameras, capture cards, the kernel's vivid test driver) keeps the
    format it has and OpenCV converts each frame; a camera without 640x480
    gives its nearest size. Either way the gate runs: what was agreed is in
    :attr:`format`, :attr:`size` and :meth:`describe`, which the daemon logs
    each time the camera is opened (``event=camera``).
    """

    ASKED = "MJPG"

    def __init__(
        self,
        device: str = "/dev/video0",
        *,
        size: tuple[int, int] = FRAME_SIZE,
        capture_factory: Callable[..., Any] | None = None,
    ) -> None:
        super().__init__()
        self.name = f"v4l2:{device}"
        target: int | str = int(device) if device.isdigit() else device
        cap = (capture_factory or cv2.VideoCapture)(target, cv2.CAP_V4L2)
        if not cap.isOpened():
            cap.release()
            raise CameraError(f"cannot open camera {device} (plugged in? in group video?)")
        # Refused by a camera without MJPG: OpenCV then keeps the format it chose.
        cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*self.ASKED))
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, size[0])
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, size[1])
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self.asked_size = size
        self.format = fourcc_name(cap.get(cv2.CAP_PROP_FOURCC))
        width, height = cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)
        self.size = (int(width), int(height))
        self._cap = cap
        self._start()

    @property
    def fell_back(self) -> bool:
        """True when the camera did not give MJPG at the size asked."""
        return self.format != self.ASKED or self.size != self.asked_size

    def describe(self) -> dict[str, Any]:
        """What was agreed with the camera, for the log."""
        note = "as asked"
        if self.format != self.ASKED:
            note = f"the camera offers no {self.ASKED}; its {self.format} frames are converted"
        if self.size != self.asked_size:
            asked = f"{self.asked_size[0]}x{self.asked_size[1]}"
            note = ("" if note == "as asked" else note + "; ") + f"no {asked}, nearest size"
        return {
            "format": self.format,
            "size": f"{self.size[0]}x{self.size[1]}",
            "asked": f"{self.ASKED} {self.asked_size[0]}x{self.asked_size[1]}",
            "note": note,
        }

    def _grab(self) -> np.ndarray | None:
        ok, image = self._cap.read()
        return image if ok else None

    def _release(self) -> None:
        self._cap.release()


class Picamera2Camera(_GrabbingCamera):
    """The Raspberry Pi camera module through Picamera2 (Raspberry Pi OS only)."""

    def __init__(self, *, size: tuple[int, int] = FRAME_SIZE) -> None:
        super().__init__()
        self.name = "picamera2"
        try:
            from picamera2 import Picamera2  # type: ignore[import-not-found]
        except ImportError as err:
            raise CameraError(
                "picamera2 is not installed; on Raspberry Pi OS: apt install python3-picamera2 "
                "and create the venv with --system-site-packages"
            ) from err
        try:
            cam = Picamera2()
            config = cam.create_video_configuration(
                lores={"size": size, "format": "YUV420"}, buffer_count=2
            )
            cam.configure(config)
            cam.start()
        except Exception as err:  # libcamera reports problems as various exceptions
            raise CameraError(f"cannot start the Pi camera: {err}") from err
        self._cam = cam
        self._height = size[1]
        self._width = size[0]
        self._start()

    def _grab(self) -> np.ndarray | None:
        yuv = self._cam.capture_array("lores")
        grey: np.ndarray = yuv[: self._height, : self._width]
        return grey

    def _release(self) -> None:
        try:
            self._cam.stop()
        finally:
            self._cam.close()


# -- the fake ----------------------------------------------------------------


class FakeCamera(FrameSource):
    """Scripted frames for tests: images, :class:`CameraError`s to raise,
    callables to run at that point of the recording (fault injection), and an
    end. ``t`` advances by ``1/fps`` per frame, like a file source."""

    name = "fake"

    def __init__(
        self,
        script: Iterable[np.ndarray | Exception | Callable[[], object]],
        *,
        fps: float = 10.0,
        live: bool = False,
    ) -> None:
        self._script: Iterator[np.ndarray | Exception | Callable[[], object]] = iter(script)
        self.fps = fps
        self.live = live
        self.closed = 0
        self._index = 0

    def read(self, timeout: float = 2.0) -> Frame | None:
        item = next(self._script, None)
        while callable(item):
            item()
            item = next(self._script, None)
        if item is None:
            return None
        if isinstance(item, Exception):
            raise item
        frame = Frame(as_grey(item), self._index / self.fps, self._index)
        self._index += 1
        return frame

    def close(self) -> None:
        self.closed += 1


# -- choosing ----------------------------------------------------------------


def parse_camera_spec(spec: str) -> tuple[str, str]:
    """Split ``v4l2:/dev/video0``, ``picamera2`` or ``file:PATH``; ConfigError if odd."""
    kind, _, arg = spec.partition(":")
    if kind == "picamera2" and not arg:
        return kind, ""
    if kind == "v4l2":
        return kind, arg or "/dev/video0"
    if kind == "file" and arg:
        return kind, arg
    raise ConfigError(
        f"camera: {spec!r} is not a camera; use v4l2:/dev/video0, picamera2 or file:PATH"
    )


def open_camera(
    spec: str,
    *,
    realtime: bool = False,
    fps: float = 10.0,
    report: Callable[..., None] | None = None,
) -> FrameSource:
    """Open the frame source named by ``spec`` (see :func:`parse_camera_spec`).

    ``report`` is told what a live camera agreed to (``report(camera=...,
    format=..., size=..., asked=..., note=...)``) each time one is opened.
    """
    kind, arg = parse_camera_spec(spec)
    source: FrameSource
    if kind == "v4l2":
        camera = V4L2Camera(arg)
        if report is not None:
            report(camera=camera.name, **camera.describe())
        return camera
    if kind == "picamera2":
        source = Picamera2Camera()
        if report is not None:
            report(camera=source.name, format="YUV420", size="640x480", note="as asked")
        return source
    return FileSource(Path(arg), fps=fps, realtime=realtime)
