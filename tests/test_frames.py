"""Frame sources: a live camera never hands out a stale frame, a lost camera
is an error the loop can act on, and recordings keep their own time."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from scanner.errors import CameraError, ConfigError
from scanner.gate.frames import (
    FakeCamera,
    FileSource,
    V4L2Camera,
    fourcc_name,
    open_camera,
    parse_camera_spec,
)


class FakeCapture:
    """Stands in for cv2.VideoCapture: frames numbered 0, 1, 2... as fast as asked."""

    def __init__(self, target, backend, *, unplug_after=None):
        self.count = 0
        self.opened = True
        self.props = {}
        self.unplug_after = unplug_after
        self.lock = threading.Lock()

    def isOpened(self):  # noqa: N802 - OpenCV's name
        return self.opened

    def set(self, prop, value):
        self.props[prop] = value
        return True

    def get(self, prop):
        return float(self.props.get(prop, 0))

    def read(self):
        time.sleep(0.002)
        with self.lock:
            if self.unplug_after is not None and self.count >= self.unplug_after:
                return False, None
            self.count += 1
            return True, np.full((48, 64), self.count % 256, dtype=np.uint8)

    def release(self):
        self.opened = False


def test_a_live_camera_hands_out_the_newest_frame_never_a_queued_one():
    captures = []

    def factory(target, backend):
        captures.append(FakeCapture(target, backend))
        return captures[-1]

    with V4L2Camera("/dev/video0", capture_factory=factory) as camera:
        first = camera.read()
        time.sleep(0.1)  # the loop was busy deciding; the camera went on
        second = camera.read()
        assert second.index > first.index + 5  # frames in between were dropped, not queued
        assert second.index >= captures[0].count - 3
        third = camera.read()
        assert third.index > second.index  # never the same frame twice
    assert captures[0].opened is False  # released on close
    props = captures[0].props
    import cv2

    assert props[cv2.CAP_PROP_BUFFERSIZE] == 1
    assert props[cv2.CAP_PROP_FRAME_WIDTH] == 640


class RawOnlyCapture(FakeCapture):
    """A camera (or the kernel's vivid driver) that offers YUYV at 1280x720 and no
    MJPG: OpenCV refuses the format asked for and converts its frames to BGR."""

    def __init__(self, target, backend):
        super().__init__(target, backend)
        import cv2

        self.props = {cv2.CAP_PROP_FOURCC: cv2.VideoWriter.fourcc(*"YUYV"),
                      cv2.CAP_PROP_FRAME_WIDTH: 1280, cv2.CAP_PROP_FRAME_HEIGHT: 720}

    def set(self, prop, value):
        import cv2

        if prop in (cv2.CAP_PROP_FOURCC, cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT):
            return False  # what OpenCV answers when the driver will not take it
        return super().set(prop, value)

    def read(self):
        ok, grey = super().read()
        return ok, None if grey is None else np.dstack([grey, grey, grey])


def test_a_camera_without_mjpg_keeps_its_raw_format_and_says_which_it_got():
    with V4L2Camera("/dev/video0", capture_factory=RawOnlyCapture) as camera:
        frame = camera.read()
        assert frame.image.ndim == 2 and frame.image.dtype == np.uint8  # grey, as always
        assert camera.fell_back
        said = camera.describe()
    assert said["format"] == "YUYV" and said["size"] == "1280x720"
    assert said["asked"] == "MJPG 640x480"
    assert "offers no MJPG" in said["note"] and "nearest size" in said["note"]


def test_a_camera_that_gives_what_was_asked_says_so():
    with V4L2Camera("/dev/video0", capture_factory=FakeCapture) as camera:
        assert not camera.fell_back
        assert camera.describe() == {"format": "MJPG", "size": "640x480",
                                     "asked": "MJPG 640x480", "note": "as asked"}


def test_opening_a_live_camera_reports_what_it_agreed_to(monkeypatch):
    import cv2

    monkeypatch.setattr(cv2, "VideoCapture", RawOnlyCapture)
    told = []
    camera = open_camera("v4l2:/dev/video7", report=lambda **fields: told.append(fields))
    camera.close()
    assert told == [{"camera": "v4l2:/dev/video7", **camera.describe()}]
    assert told[0]["format"] == "YUYV"


def test_fourcc_codes_read_as_v4l2_names():
    import cv2

    assert fourcc_name(cv2.VideoWriter.fourcc(*"GREY")) == "GREY"
    assert fourcc_name(0) == "unknown"
    assert fourcc_name(-1.0) == "unknown"


def test_an_unplugged_camera_raises_a_camera_error():
    camera = V4L2Camera("/dev/video0",
                        capture_factory=lambda t, b: FakeCapture(t, b, unplug_after=3))
    with pytest.raises(CameraError, match="unplugged"):
        for _ in range(20):
            camera.read(timeout=1.0)
    camera.close()
    camera.close()


def test_a_camera_that_cannot_open_says_what_to_check():
    def closed(target, backend):
        capture = FakeCapture(target, backend)
        capture.opened = False
        return capture

    with pytest.raises(CameraError, match="group video"):
        V4L2Camera("/dev/video9", capture_factory=closed)


def test_an_image_folder_plays_in_order_with_media_time(tmp_path):
    import cv2

    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), np.full((10, 10), i * 50, np.uint8))
    (tmp_path / "notes.txt").write_text("not a frame")
    source = FileSource(tmp_path, fps=5)
    frames = [source.read() for _ in range(4)]
    assert [f.index for f in frames[:3]] == [0, 1, 2] and frames[3] is None
    assert [f.t for f in frames[:3]] == [0.0, 0.2, 0.4]
    assert [int(f.image[0, 0]) for f in frames[:3]] == [0, 50, 100]


def test_camera_specs_are_checked():
    assert parse_camera_spec("v4l2:/dev/video2") == ("v4l2", "/dev/video2")
    assert parse_camera_spec("picamera2") == ("picamera2", "")
    with pytest.raises(ConfigError, match="not a camera"):
        parse_camera_spec("usb")
    with pytest.raises(CameraError, match="no video file or image folder"):
        open_camera("file:/nonexistent/video.avi")


def test_the_fake_camera_runs_its_script():
    calls = []
    camera = FakeCamera([np.zeros((4, 4), np.uint8), lambda: calls.append(1),
                         CameraError("gone"), np.ones((4, 4), np.uint8)])
    assert camera.read().index == 0
    with pytest.raises(CameraError):
        camera.read()
    assert calls == [1]
    assert camera.read().index == 1
    assert camera.read() is None
