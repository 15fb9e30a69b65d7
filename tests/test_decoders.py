"""The gate's QR decoders, read off real photographs and the hard-frame corpus.

What a guard would notice: the gate reads every pass that either library would
read on its own, sees nothing where there is nothing, never freezes on a frame,
and says what to install when a library is missing. No timing ratios here
(``scripts/decode-corpus`` measures those); the one timing test proves a bound
with a margin of seconds.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from scanner.errors import ConfigError, DecoderError
from scanner.gate.decoders import (
    _WHOLE_READ_EVERY,
    AutoDecoder,
    BoundedDecoder,
    FakeDecoder,
    ZbarDecoder,
    available_decoders,
    open_decoder,
)
from scanner.tools.synthetic import code_image

HARD = Path(__file__).resolve().parent / "data" / "hard-frames"
PHOTOS = Path(os.environ.get("SCANNER_QR_PHOTOS", Path(__file__).parent / "data" / "qr-photos"))
IMAGES = {".png", ".jpg", ".jpeg", ".webp"}
# zxing-cpp sees a symbol in this frame, but neither it nor zbar reads it: a
# frame that takes auto all the way to its last step.
HINTED_UNREADABLE = "faded-0.2"


def corpus(folder: Path) -> list[tuple[Path, str | None]]:
    """(image, exact expected text or None for no code) for every image in ``folder``."""
    items = []
    for image in sorted(folder.rglob("*")):
        if image.suffix.lower() in IMAGES:
            txt = image.with_suffix(".txt")
            items.append((image, txt.read_bytes().decode("utf-8") if txt.exists() else None))
    return items


def grey(image: Path) -> np.ndarray:
    frame = cv2.imread(str(image), cv2.IMREAD_GRAYSCALE)
    assert frame is not None, image
    return frame


def hard(name: str) -> np.ndarray:
    return grey(HARD / f"{name}.jpg")


PHOTO_ITEMS = corpus(PHOTOS) if PHOTOS.is_dir() else []
HARD_ITEMS = corpus(HARD)
HARD_CODES = [(p, t) for p, t in HARD_ITEMS if t is not None]
HARD_EMPTY = [p for p, t in HARD_ITEMS if t is None]


@pytest.fixture(scope="module")
def decoders():
    opened = {name: open_decoder(name) for name in ("zxing", "zbar", "auto")}
    yield opened
    for decoder in opened.values():
        decoder.close()


def _ids(items):
    return [str(p.relative_to(p.parents[1])) for p, _ in items]


# -- reading what the libraries read ----------------------------------------------


@pytest.mark.skipif(not PHOTO_ITEMS, reason=f"real photo corpus not found at {PHOTOS}")
@pytest.mark.parametrize(("image", "text"), PHOTO_ITEMS, ids=_ids(PHOTO_ITEMS))
def test_auto_reads_every_photo_that_either_library_reads(decoders, image, text):
    frame = grey(image)
    read_by = [n for n in ("zxing", "zbar") if text in decoders[n].decode(frame)]
    if not read_by:
        pytest.skip("neither library reads this photo alone")
    assert text in decoders["auto"].decode(frame), f"read by {read_by} but not by auto"


@pytest.mark.skipif(not PHOTO_ITEMS, reason=f"real photo corpus not found at {PHOTOS}")
def test_auto_reads_more_photos_than_zbar_and_never_misreads(decoders):
    counts = {name: 0 for name in decoders}
    for image, text in PHOTO_ITEMS:
        frame = grey(image)
        for name, decoder in decoders.items():
            texts = decoder.decode(frame)
            assert all(t == text for t in texts), f"{name} misread {image}"
            counts[name] += text in texts
    assert counts["auto"] >= max(counts["zxing"], counts["zbar"])


@pytest.mark.parametrize(("image", "text"), HARD_CODES, ids=[p.stem for p, _ in HARD_CODES])
def test_auto_reads_every_hard_frame_that_either_library_reads(decoders, image, text):
    frame = grey(image)
    read_by = [n for n in ("zxing", "zbar") if text in decoders[n].decode(frame)]
    texts = decoders["auto"].decode(frame)
    assert all(t == text for t in texts), "auto misread the pass"
    if read_by:
        assert text in texts, f"read by {read_by} but not by auto"


def test_the_hard_frames_hold_passes_only_zbar_reads(decoders):
    # The corpus is only a fair test of auto if it holds frames zxing-cpp misses.
    only_zbar = [
        p.stem
        for p, t in HARD_CODES
        if t in decoders["zbar"].decode(grey(p)) and t not in decoders["zxing"].decode(grey(p))
    ]
    assert only_zbar


@pytest.mark.parametrize("name", ["small-1.7px", "glare-1.4", "phone-glare"])
def test_auto_reads_passes_that_neither_library_reads_alone(decoders, name):
    text = (HARD / f"{name}.txt").read_text()
    frame = hard(name)
    assert text not in decoders["zxing"].decode(frame) + decoders["zbar"].decode(frame)
    assert decoders["auto"].decode(frame) == [text]


def test_a_bent_pass_only_zbar_reads_is_read_through_the_zbar_step():
    text = (HARD / "bent-38.txt").read_text()
    with AutoDecoder() as auto:
        assert auto.decode(hard("bent-38")) == [text]
        assert auto.counts["fallback"] == 1


# -- nothing where there is nothing -------------------------------------------------


def _blank_frames() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "black": np.zeros((480, 640), np.uint8),
        "white": np.full((480, 640), 255, np.uint8),
        "noise": rng.integers(0, 256, (480, 640), dtype=np.uint8),
        "grey-noise": np.clip(rng.normal(128, 20, (480, 640)), 0, 255).astype(np.uint8),
        "one-pixel": np.zeros((1, 1), np.uint8),
        "one-line": np.full((1, 640), 200, np.uint8),
    }


@pytest.mark.parametrize("name", ["zxing", "zbar", "auto"])
@pytest.mark.parametrize("blank", list(_blank_frames()))
def test_a_frame_without_a_code_reads_as_nothing(decoders, name, blank):
    assert decoders[name].decode(_blank_frames()[blank]) == []


@pytest.mark.parametrize("image", HARD_EMPTY, ids=[p.stem for p in HARD_EMPTY])
def test_the_empty_door_reads_as_nothing(decoders, image):
    for decoder in decoders.values():
        assert decoder.decode(grey(image)) == []


def test_an_empty_frame_costs_auto_no_fallback_call():
    fallback = FakeDecoder([["never"]])
    with AutoDecoder(fallback=fallback) as auto:
        for image in HARD_EMPTY:
            if image.stem != "empty-decoy-logo":  # a logo that looks like finder patterns
                assert auto.decode(grey(image)) == []
        assert auto.decode(_blank_frames()["noise"]) == []
    assert fallback.frames == []


# -- frames in other shapes -----------------------------------------------------------


@pytest.mark.parametrize("name", ["zxing", "zbar", "auto"])
@pytest.mark.parametrize("channels", [3, 4])
def test_a_colour_frame_reads_like_its_grey_twin(decoders, name, channels):
    text = (HARD / "clean-near.txt").read_text()
    colour = cv2.imread(str(HARD / "clean-near.jpg"), cv2.IMREAD_COLOR)
    if channels == 4:
        colour = cv2.cvtColor(colour, cv2.COLOR_BGR2BGRA)
    assert decoders[name].decode(colour) == [text]


def test_a_cropped_view_of_a_frame_is_read(decoders):
    text = (HARD / "clean-near.txt").read_text()
    frame = hard("clean-near")
    view = frame[:, 80:560]  # not contiguous in memory
    assert decoders["auto"].decode(view) == [text]


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((480, 640), np.float32),
        np.zeros(640, np.uint8),
        np.zeros((0, 640), np.uint8),
        np.zeros((480, 640, 2), np.uint8),
        [[0, 0], [0, 0]],
    ],
    ids=["float", "one-dimensional", "empty", "two-channels", "a-list"],
)
def test_something_that_is_not_a_frame_is_a_decoder_error(decoders, bad):
    for decoder in decoders.values():
        with pytest.raises(DecoderError):
            decoder.decode(bad)


# -- missing libraries ------------------------------------------------------------------


def _without(monkeypatch, *modules):
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)  # import now raises ImportError


def test_missing_zxing_says_what_to_install(monkeypatch):
    _without(monkeypatch, "zxingcpp")
    with pytest.raises(DecoderError, match=r"pip install zxing-cpp"):
        open_decoder("zxing")


def test_missing_zbar_says_what_to_install(monkeypatch):
    _without(monkeypatch, "pyzbar", "pyzbar.pyzbar")
    with pytest.raises(DecoderError, match=r"pip install pyzbar.*libzbar0"):
        open_decoder("zbar")


def test_auto_without_zbar_still_reads_with_zxing(monkeypatch):
    _without(monkeypatch, "pyzbar", "pyzbar.pyzbar")
    assert available_decoders() == ["auto", "zxing"]
    with open_decoder("auto") as auto:
        assert isinstance(auto, AutoDecoder) and auto.fallback is None
        assert auto.decode(hard("clean-far")) == [(HARD / "clean-far.txt").read_text()]


def test_auto_without_zxing_is_zbar_bounded_by_the_budget(monkeypatch):
    _without(monkeypatch, "zxingcpp")
    assert available_decoders() == ["auto", "zbar"]
    with open_decoder("auto", frame_budget_ms=5000) as auto:
        assert isinstance(auto, BoundedDecoder) and auto.name == "zbar"
        assert auto.decode(hard("clean-near")) == [(HARD / "clean-near.txt").read_text()]


def test_no_library_at_all_names_both(monkeypatch):
    _without(monkeypatch, "zxingcpp", "pyzbar", "pyzbar.pyzbar")
    assert available_decoders() == []
    with pytest.raises(DecoderError, match=r"zxing-cpp.*libzbar0"):
        open_decoder("auto")


def test_every_decoder_is_available_here():
    assert available_decoders() == ["auto", "zxing", "zbar"]


def test_an_unknown_decoder_or_a_bad_budget_is_a_config_error():
    with pytest.raises(ConfigError, match="quirc"):
        open_decoder("quirc")
    for budget in (0, -5, float("nan")):
        with pytest.raises(ConfigError, match="frame_budget_ms"):
            open_decoder("auto", frame_budget_ms=budget)


# -- a frame never freezes the door ---------------------------------------------------


def _timed(call):
    start = time.monotonic()
    result = call()
    return result, time.monotonic() - start


def test_the_budget_bounds_a_decoder_that_takes_five_seconds():
    slow = FakeDecoder([["late"]], delay_s=5.0)
    bounded = BoundedDecoder(slow, frame_budget_ms=100)
    frame = hard("clean-near")
    result, took = _timed(lambda: bounded.decode(frame))
    assert result == [] and took < 2.0
    # While the slow call still runs, frames are not queued behind it: at most
    # one call is outstanding, and the door keeps moving.
    result, took = _timed(lambda: bounded.decode(frame))
    assert result == [] and took < 1.0
    assert len(slow.frames) == 1
    assert (bounded.late, bounded.skipped) == (1, 1)
    _, took = _timed(bounded.close)
    assert took < 1.0
    bounded.close()
    with pytest.raises(DecoderError, match="closed"):
        bounded.decode(frame)


def test_auto_bounds_its_zbar_step_and_skips_it_while_busy():
    slow = FakeDecoder(delay_s=5.0)
    auto = AutoDecoder(fallback=slow, frame_budget_ms=100)
    frame = hard(HINTED_UNREADABLE)
    result, took = _timed(lambda: auto.decode(frame))
    assert result == [] and took < 2.0
    result, took = _timed(lambda: auto.decode(frame))
    assert result == [] and took < 1.0
    assert auto.counts["fallback-late"] == 1 and auto.counts["fallback-busy"] == 1
    assert len(slow.frames) == 1 and slow.frames[0].ndim == 2
    # Frames zxing-cpp reads at once never wait for the busy fallback.
    text = (HARD / "clean-near.txt").read_text()
    result, took = _timed(lambda: auto.decode(hard("clean-near")))
    assert result == [text] and took < 1.0
    auto.close()
    assert slow.closed


def _workers(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"scanner-{name}-worker"]


def _wait_until(condition, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


def test_an_abandoned_call_frees_the_worker_when_it_ends_and_close_leaves_no_thread():
    slow = FakeDecoder([["first"], ["second"]], delay_s=0.3, name="slow-fake")
    bounded = BoundedDecoder(slow, frame_budget_ms=50)
    frame = hard("clean-near")
    assert bounded.decode(frame) == []  # abandoned after 50 ms; it runs on
    assert len(_workers("slow-fake")) == 1
    slow.delay_s = 0.0
    assert _wait_until(lambda: bounded.decode(frame) == ["second"])  # working again
    bounded.close()
    assert _wait_until(lambda: not _workers("slow-fake"))


def test_closing_while_a_slow_call_runs_leaves_no_thread_once_it_ends():
    slow = FakeDecoder(delay_s=0.5, name="closing-fake")
    bounded = BoundedDecoder(slow, frame_budget_ms=20)
    bounded.decode(hard("clean-near"))
    _, took = _timed(bounded.close)
    assert took < 0.4  # close() does not wait for the slow call
    assert _wait_until(lambda: not _workers("closing-fake"))


def test_a_fast_decoder_within_its_budget_answers():
    with BoundedDecoder(FakeDecoder([["BP1:ONE"]]), frame_budget_ms=2000) as bounded:
        assert bounded.decode(hard("clean-near")) == ["BP1:ONE"]


def test_the_worker_has_its_own_copy_of_the_frame():
    fake = FakeDecoder([["x"]])
    frame = hard("clean-near")
    with BoundedDecoder(fake, frame_budget_ms=2000) as bounded:
        bounded.decode(frame)
    frame[:] = 0  # the camera reuses its buffer
    assert fake.frames[0].any()


def test_a_fallback_that_fails_is_a_decoder_error():
    for budget in (None, 2000):
        failing = FakeDecoder([RuntimeError("zbar crashed")])
        with AutoDecoder(fallback=failing, frame_budget_ms=budget) as auto:
            with pytest.raises(DecoderError, match="zbar crashed"):
                auto.decode(hard(HINTED_UNREADABLE))


def test_the_fallback_answer_is_what_auto_returns():
    with AutoDecoder(fallback=FakeDecoder([["BP1:FROM-FALLBACK"]])) as auto:
        assert auto.decode(hard(HINTED_UNREADABLE)) == ["BP1:FROM-FALLBACK"]


def test_the_real_zbar_step_within_a_budget_still_reads_the_bent_pass():
    text = (HARD / "bent-38.txt").read_text()
    with AutoDecoder(fallback=ZbarDecoder(), frame_budget_ms=5000) as auto:
        assert auto.decode(hard("bent-38")) == [text]


# -- closing ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["zxing", "zbar", "auto"])
@pytest.mark.parametrize("budget", [None, 150])
def test_close_is_safe_twice_and_a_decoder_is_a_context_manager(name, budget):
    with open_decoder(name, frame_budget_ms=budget) as decoder:
        assert decoder.decode(hard("clean-near"))
    decoder.close()
    decoder.close()


def test_closing_auto_closes_its_fallback():
    fallback = FakeDecoder()
    auto = AutoDecoder(fallback=fallback, frame_budget_ms=100)
    auto.close()
    auto.close()
    assert fallback.closed
    with pytest.raises(DecoderError, match="closed"):
        auto.decode(hard("clean-near"))


# -- faint and small: codes zxing-cpp does not even locate --------------------------


def _fainter_and_smaller(frame: np.ndarray) -> dict[str, np.ndarray]:
    """The photo as scripts/make-photo-variants derives it: farther away, faint, dim."""
    out = {
        f"scale{s}": cv2.resize(frame, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        for s in (0.3, 0.4, 0.5, 0.6)
    }
    level = frame.astype(np.float32)
    for c in (0.1, 0.15, 0.2, 0.3):
        mean = float(level.mean())
        out[f"contrast{c}"] = np.clip(mean + (level - mean) * c, 0, 255).round().astype(np.uint8)
        out[f"dim{c}"] = np.clip(level * c, 0, 255).round().astype(np.uint8)
    return out


@pytest.mark.skipif(not PHOTO_ITEMS, reason=f"real photo corpus not found at {PHOTOS}")
def test_auto_reads_every_faint_or_small_photo_that_either_library_reads(decoders):
    only_zbar = missed = 0
    for image, text in PHOTO_ITEMS:
        for name, frame in _fainter_and_smaller(grey(image)).items():
            by_zxing = text in decoders["zxing"].decode(frame)
            by_zbar = text in decoders["zbar"].decode(frame)
            only_zbar += by_zbar and not by_zxing
            texts = decoders["auto"].decode(frame)
            assert all(t == text for t in texts), f"auto misread {image} {name}"
            if (by_zxing or by_zbar) and text not in texts:
                missed += 1
    assert only_zbar > 10  # the derived photos hold what the hidden ones held
    assert missed == 0


def test_a_faint_photo_zxing_does_not_locate_is_read_by_the_second_look(decoders):
    text = (PHOTOS / "qrcode-5" / "05.txt").read_text()
    faint = _fainter_and_smaller(grey(PHOTOS / "qrcode-5" / "05.webp"))["contrast0.15"]
    assert decoders["zxing"].decode(faint) == []
    assert decoders["zbar"].decode(faint) == [text]
    fallback = FakeDecoder()
    with AutoDecoder(fallback=fallback) as auto:
        assert auto.decode(faint) == [text]
        assert auto.counts["second looks"] == 1
    assert fallback.frames == []  # read by zxing-cpp after the stretch: no zbar needed


def test_an_ordinary_empty_door_frame_gets_no_second_look():
    from scanner.tools.synthetic import background

    with AutoDecoder(fallback=FakeDecoder()) as auto:
        for seed in range(8):
            rng = np.random.default_rng(seed)
            frame = np.clip(background(seed) + rng.normal(0, 4, (480, 640)), 0, 255)
            assert auto.decode(frame.astype(np.uint8)) == []
        assert auto.counts["second looks"] == 0
        # a bare wall in dim light is faint: it gets the look, and still no zbar call
        assert auto.decode(hard("empty-bare-wall")) == []
        assert auto.counts["second looks"] == 1
    assert auto.fallback is not None and auto.fallback.frames == []  # type: ignore[attr-defined]


# -- a new code is answered at once, every code in view soon after -----------------


def _frame_with(*codes: tuple[str, int, int]) -> np.ndarray:
    """A light 640x480 frame holding each (text, x, y) as a printed code."""
    frame = np.full((480, 640), 200, np.uint8)
    for text, x, y in codes:
        image = code_image(text, module_px=3)
        frame[y:y + image.shape[0], x:x + image.shape[1]] = image
    return frame


class _CountingZxing:
    """zxing-cpp, counting the whole reads (every code) the decoder asks of it."""

    def __init__(self, zx):
        self._zx, self.whole_reads = zx, 0

    def __getattr__(self, name):
        return getattr(self._zx, name)

    def read_barcodes(self, *args, **kwargs):
        self.whole_reads += 1
        return self._zx.read_barcodes(*args, **kwargs)


def test_a_new_code_is_answered_from_the_first_code_read_alone():
    with AutoDecoder(fallback=None, stream=True) as auto:
        counting = auto._zx = _CountingZxing(auto._zx)
        for i in range(3):  # three guests, one after the other, no gap between them
            assert auto.decode(_frame_with((f"guest {i}", 200, 100))) == [f"guest {i}"]
        assert counting.whole_reads == 0


def test_two_guests_in_view_are_both_read_within_a_few_frames():
    both = _frame_with(("first guest", 40, 40), ("second guest", 360, 260))
    with AutoDecoder(fallback=None, stream=True) as auto:
        answers = [auto.decode(both) for _ in range(_WHOLE_READ_EVERY + 1)]
    assert all(answers), "a frame holding codes read as nothing"
    assert set().union(*answers) == {"first guest", "second guest"}


def test_a_pass_held_up_beside_a_poster_is_read_within_a_few_frames():
    poster = ("TOUR MERCH", 20, 20)  # a small symbol: zxing-cpp meets it first
    with AutoDecoder(fallback=None, stream=True) as auto:
        for _ in range(10):  # the poster on the wall behind the door, all night
            assert auto.decode(_frame_with(poster)) == [poster[0]]
        # the guest's pass, a larger symbol (a pass holds far more text)
        with_pass = _frame_with(poster, ("the guest's pass, signed: " + "x" * 60, 300, 200))
        answers = [auto.decode(with_pass) for _ in range(_WHOLE_READ_EVERY)]
    assert answers[0] == [poster[0]], "the case this test is for: the poster read first"
    assert any(t.startswith("the guest's pass") for a in answers for t in a)


def test_a_code_held_in_view_is_returned_on_every_frame():
    held = _frame_with(("held up", 200, 100))
    with AutoDecoder(fallback=None, stream=True) as auto:
        assert [auto.decode(held) for _ in range(3 * _WHOLE_READ_EVERY)] == [
            ["held up"]] * (3 * _WHOLE_READ_EVERY)


def test_a_screen_flashing_a_new_decoy_every_frame_cannot_hide_a_pass():
    """An attacker's screen by the door shows a new small code on every frame, so
    zxing-cpp meets a code never seen before first, frame after frame: the pass
    beside it is still read within a few frames."""
    the_pass = "the guest's pass, signed: " + "x" * 60
    with AutoDecoder(fallback=None, stream=True) as auto:
        answers = [
            auto.decode(_frame_with((f"D{i}", 20, 20), (the_pass, 300, 200)))
            for i in range(_WHOLE_READ_EVERY)
        ]
    assert answers[0] == ["D0"], "the case this test is for: the decoy read first"
    assert any(the_pass in a for a in answers)


def test_an_image_on_its_own_gives_every_code_in_it_at_once(decoders):
    """A photo to check or a printed sheet is not a camera's stream: no first-code
    answers there, or a sheet of four passes would read as one."""
    both = _frame_with(("first guest", 40, 40), ("second guest", 360, 260))
    assert sorted(decoders["auto"].decode(both)) == ["first guest", "second guest"]
    with open_decoder("auto", stream=True) as door:
        assert len(door.decode(both)) == 1  # the door's camera: the first code, at once


def _finder_poster(pass_text: str | None = None) -> np.ndarray:
    """A poster of QR finder patterns on the wall (the squares zxing-cpp takes
    for the corners of codes), and a pass held up beside it."""
    frame = np.full((480, 640), 230, np.uint8)
    finder = np.zeros((28, 28), np.uint8)
    finder[4:24, 4:24] = 255
    finder[8:20, 8:20] = 0
    for y in range(6, 452, 40):
        for x in range(6, 330, 40):
            frame[y:y + 28, x:x + 28] = finder
    if pass_text is not None:
        image = code_image(pass_text, module_px=3)
        frame[120:120 + image.shape[0], 370:370 + image.shape[1]] = image
    return frame


def test_a_poster_of_finder_patterns_costs_no_region_steps_and_hides_no_pass():
    """A poster of finder patterns makes zxing-cpp locate dozens of 'symbols' it
    cannot read. They are a pattern, not a code that failed: no upscaled or
    Otsu region, no zbar; on the door's stream only every 4th frame of it gets
    a whole read. A pass held up in front of the poster is read within 4
    frames."""
    the_pass = "the guest's pass, signed: " + "x" * 60
    fallback = FakeDecoder([["never asked"]])
    with AutoDecoder(fallback=fallback, stream=True, frame_budget_ms=150) as auto:
        for _ in range(12):
            assert auto.decode(_finder_poster()) == []
        assert auto.counts["pattern"] == 12
        assert not {"upscaled", "otsu", "fallback", "second looks"} & set(auto.counts)
        assert fallback.frames == []
        answers = [auto.decode(_finder_poster(the_pass)) for _ in range(_WHOLE_READ_EVERY)]
    assert any(the_pass in a for a in answers)


def test_a_step_that_would_overrun_the_frame_budget_is_skipped_before_it_runs():
    """With a budget too small for an upscaled region, the decoder prices that
    step at the rate its first read ran and skips it (a cheaper step may still
    run), instead of finding out after the frame overran."""
    frame = _frame_with(("damaged", 100, 100))
    frame[130:150, 100:180] = 200  # a bar across the code: located, not readable
    with AutoDecoder(fallback=None, frame_budget_ms=0.001) as auto:
        assert auto.decode(frame) == []
    assert auto.counts["over-budget"] >= 1
    assert "upscaled" not in auto.counts and "otsu" not in auto.counts
