"""QR decoders: from a camera frame to the texts of the QR codes in it.

Every decoder has one small interface, :class:`Decoder`: ``decode(frame)``
takes a 2-D uint8 grey frame (a 3-channel BGR or 4-channel BGRA frame is
converted) and returns the decoded texts, ``[]`` when there is no code; it
raises :class:`~scanner.errors.DecoderError` only for a frame that is not an
image or a library that failed, never for a frame without a code. ``close()``
is safe to call twice and a decoder is a context manager. A decoder is used by
one thread at a time. The libraries are imported when a decoder is opened, so
a missing one is a ``DecoderError`` that says what to install.

``zxing`` (zxing-cpp) and ``zbar`` (pyzbar) are the bare libraries, QR codes
only. ``auto`` is the gate's path, built from what measurements on real photos
and on ``tests/data/hard-frames`` showed (``scripts/decode-corpus`` repeats
them): zxing-cpp reads more than zbar, and faster, and at a door most
frames hold no code, so ``auto`` costs one bare zxing-cpp call on such a frame.
zxing-cpp is asked to report the symbols it located but could not read
(``return_errors``); only such a hint, a QR symbol or a lone finder pattern,
buys more work, confined to the region round it:

1. zxing-cpp on the region upscaled 2x: codes of 2-3 pixel modules, blurred
   or far away, are where zxing-cpp's local binarizer fails and zbar did
   better; doubling them makes zxing-cpp read most of those and more;
2. zxing-cpp on the region binarized with Otsu's threshold (faded print,
   glare);
3. zbar on the region alone (bent cards, smeared small codes: zbar fits its
   sampling grid more loosely). zbar's binarizer window grows with the image
   size, so a plain crop changes what zbar reads; the region is kept at the
   frame's size class, with everything else blanked to the region's mean.

On a camera's stream of frames (``stream=True``: the door), zxing-cpp is first
asked for one symbol only (``read_barcode``): it stops at the first it
locates, where a whole read (``read_barcodes``) goes on through the rest of
the frame and its downscaled copies for more. When that symbol is a code it
read, it is the answer: a guest's pass, shown after frames with no code,
reaches the door's signal sooner than a whole read would bring it
(``scanner bench`` times both). Of the frames in a row that show a code,
every 4th gets a whole read, so a second code beside the first (a second
guest, a poster behind the door that zxing-cpp meets first, a screen flashing
a new decoy code every frame) is returned within 4 frames; a located symbol
it could not read gets a whole read at once (there may be a readable code
elsewhere), then the steps below. A frame with nothing located costs what a
whole read costs: the two do the same work until they find something. An
image on its own (a photo to check, a printed sheet) always gets a whole
read: every code in it.

A frame where zxing-cpp located nothing at all gets a glance (a histogram of
every 64th pixel, a small fraction of a decode) and, only when the glance
says so, a second look: the codes zbar reads there and zxing-cpp does not
even locate are faint ones (zxing-cpp's binarizer takes a block spanning fewer than 24
grey levels for flat) and tiny ones in small images. So a *faint* frame (its
1st..99th percentile grey levels span 12 to 63: more than sensor noise, less
than print in normal light) is stretched to the full range (after a 3x3 blur
on a door-sized frame, so noise does not turn into texture) and a *small*
frame (a quarter of a 640x480 frame or less) is read at twice its size, by
zxing-cpp again, with hints leading to the region steps above; a small frame
that still shows nothing goes to zbar whole (cheap at that size). A frame
with a normal span (the door's common case: every empty bench frame, 7 of the
8 empty hard frames) costs one zxing-cpp call and the glance.

``scripts/decode-corpus`` measures it: how many codes auto, zxing-cpp and
zbar each read, and auto's time against zxing-cpp's. On the real photos auto
reads what zxing-cpp reads at zxing-cpp's cost; on the hard frames it reads
more than either, the extra time spent on the few frames with a hint; on
their empty frames the extra goes to a decoy logo (hints, then zbar) and a
dim bare wall (a second look, no zbar). On photos it was not tuned on (the
qrcode-5 photos made smaller and fainter by ``scripts/make-photo-variants``)
it reads every code either library reads, and more than the two together;
on the hard frames made fainter, too, more than the two together.

Time is bounded by ``frame_budget_ms``: zbar may take seconds on some
images. With a budget, zbar runs in one worker thread and the caller waits at
most the rest of the frame's budget; a call that overruns is abandoned but
runs to its end (a C call cannot be interrupted), and while it runs the zbar
step is skipped (at most one outstanding call), so a pathological frame costs
the door one budget and never a freeze. The zxing-cpp steps run on the
caller's thread (a thread hop on every frame would cost the empty frames
their allowance for nothing), so each is priced before it runs: at the
rate (time per pixel) this frame's first read ran, a step that would take
the frame past its budget is skipped, and a cheaper one may still run. A
frame where zxing-cpp locates more than a few symbols or finder patterns it
cannot read (a poster of finder patterns, a patterned shirt) is a pattern,
not a code that failed: it gets no region steps and no zbar, but its halves
are read one by one (zxing-cpp, lost among a pattern's dozens of would-be
corners, reads a pass beside it in a half), and on the door's stream only
every 4th such frame in a row gets that whole read, the others stop at the
first-code read: a pass held up beside the poster is read within 4 frames,
and the poster costs about what an empty frame costs. The
worker is a daemon thread: ``close()`` stops it after its current call and
never blocks on a slow one.

:class:`FakeDecoder` ships here for tests: scripted answers, a delay, an error.
"""

from __future__ import annotations

import collections
import importlib
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from types import ModuleType
from typing import Any

import cv2
import numpy as np

from ..errors import ConfigError, DecoderError
from .timing import FRAME_BUDGET_MS

__all__ = [
    "DEFAULT_FRAME_BUDGET_MS",
    "AutoDecoder",
    "BoundedDecoder",
    "Decoder",
    "FakeDecoder",
    "ZbarDecoder",
    "ZxingDecoder",
    "as_grey",
    "available_decoders",
    "open_decoder",
]

#: A budget that keeps a door responsive on a Raspberry Pi; the config may change it.
DEFAULT_FRAME_BUDGET_MS = FRAME_BUDGET_MS

_INSTALL = {
    "zxing": "install zxing-cpp (pip install zxing-cpp)",
    "zbar": "install pyzbar (pip install pyzbar) and the zbar library (apt-get install libzbar0)",
}

# Region round a hint, as a fraction of the hint's size on each side: a located
# symbol needs only its quiet zone; a lone finder pattern may be any corner of a
# symbol six times its size. zbar gets a little more room than zxing-cpp.
_SYMBOL_MARGIN, _FINDER_MARGIN = 0.2, 2.0
_ZBAR_SYMBOL_MARGIN = 0.5
_MIN_REGION = 16  # pixels; a smaller region cannot hold a readable code

# The second look (see the module doc). zxing-cpp's binarizer takes a block whose
# grey levels span less than 24 for flat, so a code printed or lit that faintly is
# not even located; stretching the frame's 1st..99th percentile span to 0..255
# makes it one zxing-cpp reads. Below a span of 12 there is only sensor noise.
_FAINT_SPAN = (12, 64)
_SAMPLE_STEP = 8  # the span is read from every 8th pixel of every 8th row
# A frame this small (a quarter of a 640x480 door frame) is cheap to read at twice its
# size: its 2x copy costs at most one door frame's decode.
_SMALL_FRAME_PIXELS = 640 * 480 // 4
# Of the frames in a row that show a code, every 4th gets a whole read (every code
# in the frame: 133 ms at 30 fps); the others stop at the first code read.
_WHOLE_READ_EVERY = 4
# A frame full of things that look like parts of codes (a poster of finder
# patterns, a screen of junk) must not cost the door more than its budget: each
# step beyond the first read is priced before it runs, at the rate this frame's
# first read ran (ms per pixel, x _STEP_COST_MARGIN), and skipped when it would
# overrun; more located-but-unreadable symbols or finder patterns than this
# are a pattern and not a code that failed: no region steps, no zbar, and on a
# camera's stream only every 4th such frame in a row gets a whole read.
_STEP_COST_MARGIN = 1.5
_MAX_HINTS = 6


def _import(name: str, module: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as err:  # pyzbar raises ImportError when libzbar0 is missing
        raise DecoderError(
            f"the {name} decoder is not available: {_INSTALL[name]} ({err})") from err


def as_grey(frame: Any) -> np.ndarray:
    """The frame as a contiguous 2-D uint8 array: grey as is, BGR or BGRA converted."""
    if not isinstance(frame, np.ndarray):
        raise DecoderError(f"a frame must be a numpy array, not {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise DecoderError(f"a frame must hold uint8 pixels, not {frame.dtype}")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim == 3 and frame.shape[2] in (3, 4):
        code = cv2.COLOR_BGR2GRAY if frame.shape[2] == 3 else cv2.COLOR_BGRA2GRAY
        frame = cv2.cvtColor(frame, code)
    if frame.ndim != 2:
        raise DecoderError(f"a frame must be grey, BGR or BGRA, not of shape {frame.shape}")
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise DecoderError("a frame must not be empty")
    return np.ascontiguousarray(frame)


def _unique(texts: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(texts))


class Decoder(ABC):
    """Reads QR codes in frames. Subclasses implement :meth:`decode`."""

    name: str = "decoder"

    @abstractmethod
    def decode(self, frame: np.ndarray) -> list[str]:
        """The texts of the QR codes in ``frame``, ``[]`` when there is none."""

    def close(self) -> None:  # noqa: B027 - most decoders hold nothing
        """Release what the decoder holds; safe to call twice. A closed decoder
        that held a thread refuses further frames with DecoderError."""

    def __enter__(self) -> Decoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class ZxingDecoder(Decoder):
    """zxing-cpp, QR codes only, with its default options: the bare library."""

    name = "zxing"

    def __init__(self) -> None:
        self._zx = _import("zxing", "zxingcpp")
        self._formats = self._zx.BarcodeFormat.QRCode

    def decode(self, frame: np.ndarray) -> list[str]:
        grey = as_grey(frame)
        try:
            found = self._zx.read_barcodes(grey, formats=self._formats)
        except Exception as err:
            raise DecoderError(f"zxing-cpp failed on a frame: {err}") from err
        return _unique(b.text for b in found)


class ZbarDecoder(Decoder):
    """zbar through pyzbar, QR codes only: the bare library."""

    name = "zbar"

    def __init__(self) -> None:
        self._pyzbar = _import("zbar", "pyzbar.pyzbar")
        self._symbols = [self._pyzbar.ZBarSymbol.QRCODE]

    def decode(self, frame: np.ndarray) -> list[str]:
        grey = as_grey(frame)
        try:
            found = self._pyzbar.decode(grey, symbols=self._symbols)
        except Exception as err:
            raise DecoderError(f"zbar failed on a frame: {err}") from err
        # zbar has already turned the QR payload into UTF-8.
        return _unique(s.data.decode("utf-8", errors="replace") for s in found)


class _Job:
    __slots__ = ("arg", "done", "error", "fn", "result")

    def __init__(self, fn: Callable[[np.ndarray], list[str]], arg: np.ndarray) -> None:
        self.fn, self.arg = fn, arg
        self.done = threading.Event()
        self.result: list[str] = []
        self.error: BaseException | None = None


class _Outcome:
    """Why a bounded call gave no answer."""

    BUSY = "busy"  # the previous call is still running: skipped
    LATE = "late"  # the call overran the budget: abandoned


class _Worker:
    """One daemon thread running one call at a time; the caller waits at most a deadline.

    At most one call is outstanding: while an abandoned call still runs, new
    calls are refused at once rather than queued behind it.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._busy = False
        self._closed = False

    @property
    def busy(self) -> bool:
        return self._busy

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def call(self, fn: Callable[[np.ndarray], list[str]], arg: np.ndarray,
             timeout_s: float) -> list[str] | str:
        """``fn(arg)``'s result, or ``_Outcome.BUSY`` / ``_Outcome.LATE``."""
        with self._lock:
            if self._closed:
                raise DecoderError(f"the {self._name} decoder is closed")
            if self._busy:
                return _Outcome.BUSY
            self._busy = True
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"scanner-{self._name}-worker", daemon=True)
                self._thread.start()
        job = _Job(fn, arg)
        self._jobs.put(job)
        if not job.done.wait(max(0.0, timeout_s)):
            return _Outcome.LATE
        if job.error is not None:
            if isinstance(job.error, DecoderError):
                raise job.error
            raise DecoderError(f"the {self._name} decoder failed: {job.error}") from job.error
        return job.result

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                job.result = job.fn(job.arg)
            except BaseException as err:  # handed to the caller, who may be gone
                job.error = err
            finally:
                job.arg = None  # type: ignore[assignment]  # drop the frame at once
                with self._lock:
                    self._busy = False
                job.done.set()

    def close(self, grace_s: float = 0.0) -> None:
        """Stop the thread after its current call; wait for it at most ``grace_s``."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._jobs.put(None)
            thread.join(grace_s)


class BoundedDecoder(Decoder):
    """Any decoder, run in a worker thread so that one frame costs at most a budget.

    A frame whose decode overruns gives ``[]``; so does every frame while that
    decode is still running. ``late`` and ``skipped`` count those frames.
    """

    def __init__(self, inner: Decoder, frame_budget_ms: float) -> None:
        self.inner = inner
        self.name = inner.name
        self.frame_budget_ms = _budget(frame_budget_ms)
        self._worker = _Worker(inner.name)
        self.late = 0
        self.skipped = 0

    def decode(self, frame: np.ndarray) -> list[str]:
        # A copy: the camera may reuse its buffer while an abandoned call reads it.
        grey = np.array(as_grey(frame), copy=True)
        result = self._worker.call(self.inner.decode, grey, self.frame_budget_ms / 1000)
        if isinstance(result, str):
            if result == _Outcome.LATE:
                self.late += 1
            else:
                self.skipped += 1
            return []
        return result

    def close(self) -> None:
        self._worker.close()
        self.inner.close()


class AutoDecoder(Decoder):
    """The gate's path: bare zxing-cpp, and more work only where it saw a symbol.

    ``fallback`` is the decoder for the last step (default: zbar when pyzbar is
    installed, else none). With ``stream``, frames are a camera's, one after
    another, and a frame that shows a code may be answered with the first code
    read (see the module doc); without it, every code in each image is read.
    ``counts`` tallies which step read each frame, how many frames got a
    second look, and why the fallback gave nothing (``fallback-busy``,
    ``fallback-late``, ``over-budget``): the daemon may report them.
    """

    name = "auto"

    def __init__(self, *, frame_budget_ms: float | None = None,
                 fallback: Decoder | str | None = "zbar", stream: bool = False) -> None:
        self._zx = _import("zxing", "zxingcpp")
        self.stream = stream
        self._formats = self._zx.BarcodeFormat.QRCode
        self._symbol = self._zx.BarcodeFormat.QRCode  # a whole symbol, not a lone finder
        if fallback == "zbar":
            try:
                fallback = ZbarDecoder()
            except DecoderError:
                fallback = None  # zxing-cpp alone still reads more than zbar alone
        assert fallback is None or isinstance(fallback, Decoder)
        self.fallback: Decoder | None = fallback
        self.frame_budget_ms = None if frame_budget_ms is None else _budget(frame_budget_ms)
        self._worker = _Worker(f"{self.name}-fallback") if frame_budget_ms is not None else None
        self._closed = False
        self._first_only = 0  # frames in a row answered from a first-code read alone
        self._rate = 0.0  # ms per pixel of this frame's first read: the price of more steps
        self._patterns = 0  # frames in a row that were a pattern (see _MAX_HINTS)
        self.counts: collections.Counter[str] = collections.Counter()

    def decode(self, frame: np.ndarray) -> list[str]:
        if self._closed:
            raise DecoderError("the auto decoder is closed")
        start = time.perf_counter()
        grey = as_grey(frame)
        if self.stream and self._first_only < _WHOLE_READ_EVERY - 1:
            found = self._read(grey, first_only=True, return_errors=True)
            if found and found[0].valid:
                self._first_only += 1
                self._patterns = 0
                self.counts["zxing"] += 1
                return [found[0].text]
            if found and self._patterns % _WHOLE_READ_EVERY:
                # the frame before was a pattern (a poster): the whole read comes
                # every 4th such frame, so a pass beside it is still read in time
                self._patterns += 1
                self.counts["pattern"] += 1
                return []
            if found:  # a symbol it could not read: a readable code may be elsewhere
                found = self._read(grey, return_errors=True)
            # (nothing located: a whole read would have found nothing either)
        else:  # an image on its own, or the 4th frame in a row with a code: every code
            found = self._read(grey, return_errors=True)
        self._first_only = 0
        # what this frame's reads cost per pixel: the price of every further step
        self._rate = (time.perf_counter() - start) * 1000 / max(grey.size, 1)
        texts = _unique(b.text for b in found if b.valid)
        if texts:
            self.counts["zxing"] += 1
            return texts
        hints = [b for b in found if not b.valid]
        if len(hints) > _MAX_HINTS:  # a poster of finder patterns, not a code that failed
            self._patterns += 1
            self.counts["pattern"] += 1
            return self._beside_pattern(grey, start)
        self._patterns = 0
        if hints:
            texts = self._around_hints(grey, hints, start)
            if texts:
                return texts
        look = _second_look(grey)
        if look is None:
            return []  # the door's common case: one zxing-cpp call and a glance
        image, step = look
        if not self._affords(start, image.size):
            self.counts["over-budget"] += 1
            return []
        self.counts["second looks"] += 1
        found = self._read(image, return_errors=True)
        texts = _unique(b.text for b in found if b.valid)
        if texts:
            self.counts[step] += 1
            return texts
        hints = [b for b in found if not b.valid]
        if hints:
            return self._around_hints(image, hints, start)
        if grey.size <= _SMALL_FRAME_PIXELS:
            # zbar reads some small, faint codes that zxing-cpp does not locate at
            # all; on a frame this small it costs a fraction of a door frame's zbar.
            return self._fallback(grey, start)
        return []

    def _beside_pattern(self, grey: np.ndarray, start: float) -> list[str]:
        """A code beside a pattern: zxing-cpp, lost among the pattern's dozens of
        would-be corners, reads a pass beside it when the frame is cut in two.
        Halves (left, right, top, bottom), each priced against the budget,
        until one holds a code."""
        height, width = grey.shape[:2]
        for y0, y1, x0, x1 in ((0, height, 0, width // 2), (0, height, width // 2, width),
                               (0, height // 2, 0, width), (height // 2, height, 0, width)):
            half = np.ascontiguousarray(grey[y0:y1, x0:x1])
            if not self._affords(start, half.size):
                self.counts["over-budget"] += 1
                return []
            texts = _unique(b.text for b in self._read(half) if b.valid)
            if texts:
                self.counts["beside a pattern"] += 1
                return texts
        return []

    def _around_hints(self, grey: np.ndarray, hints: list[Any], start: float) -> list[str]:
        """More work in the region round what zxing-cpp located but could not read."""
        box = self._region(hints, grey.shape, _SYMBOL_MARGIN)
        if box is None:
            return []
        x0, y0, x1, y1 = box
        region = grey[y0:y1, x0:x1]
        for step, prepare, scale in (("upscaled", _upscale, 4), ("otsu", _otsu, 1)):
            if not self._affords(start, region.size * scale):
                self.counts["over-budget"] += 1
                continue  # a cheaper step may still fit
            texts = _unique(b.text for b in self._read(prepare(region), try_downscale=False)
                            if b.valid)
            if texts:
                self.counts[step] += 1
                return texts
        if self.fallback is None:
            return []
        zbox = self._region(hints, grey.shape, _ZBAR_SYMBOL_MARGIN)
        assert zbox is not None  # a larger margin round the same hints
        return self._fallback(_isolate_for_zbar(grey, zbox), start)

    def _fallback(self, image: np.ndarray, start: float) -> list[str]:
        """The last step: zbar (bounded by the budget when there is one)."""
        if self.fallback is None:
            return []
        if self._worker is None:
            try:
                texts = self.fallback.decode(image)
            except DecoderError:
                raise
            except Exception as err:
                raise DecoderError(f"the {self.fallback.name} decoder failed: {err}") from err
        else:
            assert self.frame_budget_ms is not None
            left = self.frame_budget_ms / 1000 - (time.perf_counter() - start)
            if left <= 0:
                self.counts["over-budget"] += 1
                return []
            result = self._worker.call(self.fallback.decode, image, left)
            if isinstance(result, str):
                self.counts[f"fallback-{result}"] += 1
                return []
            texts = result
        if texts:
            self.counts["fallback"] += 1
        return _unique(texts)

    def _read(self, image: np.ndarray, *, first_only: bool = False,
              **options: Any) -> list[Any]:
        """zxing-cpp's symbols in ``image``: every one, or the first it meets."""
        try:
            if first_only:
                first = self._zx.read_barcode(image, formats=self._formats, **options)
                return [] if first is None else [first]
            return list(self._zx.read_barcodes(image, formats=self._formats, **options))
        except Exception as err:
            raise DecoderError(f"zxing-cpp failed on a frame: {err}") from err

    def _spent(self, start: float) -> bool:
        return (self.frame_budget_ms is not None
                and (time.perf_counter() - start) * 1000 >= self.frame_budget_ms)

    def _affords(self, start: float, pixels: int) -> bool:
        """Whether a zxing-cpp read of ``pixels`` fits in what is left of the
        budget, priced at this frame's own rate: a step is skipped before it
        overruns, not found to have overrun after."""
        if self.frame_budget_ms is None:
            return True
        spent = (time.perf_counter() - start) * 1000
        cost = self._rate * pixels * _STEP_COST_MARGIN
        return spent + cost < self.frame_budget_ms

    def _region(self, hints: list[Any], shape: tuple[int, ...],
                symbol_margin: float) -> tuple[int, int, int, int] | None:
        """The box round what zxing-cpp located: its symbols if any, else its finder patterns."""
        symbols = [h for h in hints if h.format == self._symbol]
        x0 = y0 = float("inf")
        x1 = y1 = float("-inf")
        for hint in symbols or hints:
            p = hint.position
            xs = [p.top_left.x, p.top_right.x, p.bottom_right.x, p.bottom_left.x]
            ys = [p.top_left.y, p.top_right.y, p.bottom_right.y, p.bottom_left.y]
            size = max(max(xs) - min(xs), max(ys) - min(ys))
            margin = size * (symbol_margin if symbols else _FINDER_MARGIN)
            x0, y0 = min(x0, min(xs) - margin), min(y0, min(ys) - margin)
            x1, y1 = max(x1, max(xs) + margin), max(y1, max(ys) + margin)
        height, width = shape[:2]
        box = (max(0, int(x0)), max(0, int(y0)), min(width, int(x1) + 1), min(height, int(y1) + 1))
        if box[2] - box[0] < _MIN_REGION or box[3] - box[1] < _MIN_REGION:
            return None
        return box

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._worker is not None:
            self._worker.close()
        if self.fallback is not None:
            self.fallback.close()


def _levels(grey: np.ndarray) -> tuple[int, int]:
    """The 1st and 99th percentiles of the frame's grey levels, from a sample."""
    sample = np.ascontiguousarray(grey[::_SAMPLE_STEP, ::_SAMPLE_STEP])
    counts = np.cumsum(np.bincount(sample.ravel(), minlength=256))
    total = int(counts[-1])
    return (int(np.searchsorted(counts, total * 0.01)),
            int(np.searchsorted(counts, total * 0.99)))


def _second_look(grey: np.ndarray) -> tuple[np.ndarray, str] | None:
    """The frame prepared for a second zxing-cpp pass and the step's name, or None
    when nothing in it suggests a code zxing-cpp did not locate (see the module doc).

    A faint frame (a narrow span of grey levels, but more than noise) is
    stretched to the full range; a small frame is read at twice its size.
    """
    small = grey.size <= _SMALL_FRAME_PIXELS
    low, high = _levels(grey)
    span = high - low
    faint = _FAINT_SPAN[0] <= span < _FAINT_SPAN[1]
    if faint:
        if small:
            image = cv2.convertScaleAbs(grey, alpha=255.0 / span, beta=-low * 255.0 / span)
            return _upscale(image), "stretched+upscaled"
        # A door-sized frame's modules are several pixels wide: a light blur first
        # keeps the stretch from turning sensor noise into texture that costs
        # zxing-cpp twice its time on a faint, empty frame (a bare wall).
        image = cv2.GaussianBlur(grey, (3, 3), 0)
        return cv2.convertScaleAbs(image, alpha=255.0 / span, beta=-low * 255.0 / span), "stretched"
    if small:
        return _upscale(grey), "upscaled-frame"
    return None


def _upscale(region: np.ndarray) -> np.ndarray:
    return cv2.resize(region, None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR)


def _otsu(region: np.ndarray) -> np.ndarray:
    return cv2.threshold(region, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)[1]


def _zbar_min_side(side: int) -> int:
    """The smallest side for which zbar picks the same binarizer window as for ``side``.

    zbar's QR binarizer averages over a window of 2**k pixels, the smallest
    power of two from 16 to 256 reaching an eighth of the side.
    """
    k = 4
    while k < 8 and (1 << k) < (side + 7) >> 3:
        k += 1
    return 1 if k == 4 else (1 << (k + 2)) + 1


def _span(lo: int, hi: int, size: int, total: int) -> tuple[int, int]:
    """[start, end) holding [lo, hi), at least ``size`` long, inside [0, total), start even."""
    size = min(max(size, hi - lo), total)
    start = min(max(0, (lo + hi - size) // 2), total - size)
    start -= start % 2  # zbar scans alternate lines in alternate directions
    return start, min(total, max(start + size, hi))


def _isolate_for_zbar(grey: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The region alone, as zbar would see it in the whole frame, in a new array."""
    height, width = grey.shape
    x0, y0, x1, y1 = box
    cx0, cx1 = _span(x0, x1, _zbar_min_side(width), width)
    cy0, cy1 = _span(y0, y1, _zbar_min_side(height), height)
    region = grey[y0:y1, x0:x1]
    out = np.full((cy1 - cy0, cx1 - cx0), int(region.mean()), np.uint8)
    out[y0 - cy0:y1 - cy0, x0 - cx0:x1 - cx0] = region
    return out


class FakeDecoder(Decoder):
    """A decoder for tests: answers from a script, optionally slowly or with an error.

    ``answers`` is consumed one entry per frame (then ``[]``); an entry that is
    an exception is raised instead. ``delay_s`` makes every call sleep first.
    ``frames`` keeps every frame it was given; ``closed`` says whether
    ``close()`` was called.
    """

    def __init__(self, answers: Iterable[list[str] | BaseException] = (), *,
                 delay_s: float = 0.0, name: str = "fake") -> None:
        self.name = name
        self._answers: Iterator[list[str] | BaseException] = iter(list(answers))
        self.delay_s = delay_s
        self.frames: list[np.ndarray] = []
        self.closed = False

    def decode(self, frame: np.ndarray) -> list[str]:
        self.frames.append(frame)
        if self.delay_s:
            time.sleep(self.delay_s)
        answer = next(self._answers, [])
        if isinstance(answer, BaseException):
            raise answer
        return list(answer)

    def close(self) -> None:
        self.closed = True


def _budget(frame_budget_ms: float) -> float:
    if not isinstance(frame_budget_ms, int | float) or not frame_budget_ms > 0:
        raise ConfigError(
            f"frame_budget_ms must be a positive number of milliseconds, not {frame_budget_ms!r}")
    return float(frame_budget_ms)


def available_decoders() -> list[str]:
    """The decoder names that can be opened here, the gate's choice (``auto``) first."""
    names = []
    for name in ("zxing", "zbar"):
        try:
            _import(name, "zxingcpp" if name == "zxing" else "pyzbar.pyzbar")
        except DecoderError:
            continue
        names.append(name)
    return (["auto"] if names else []) + names


def open_decoder(name: str = "auto", *, frame_budget_ms: float | None = None,
                 stream: bool = False) -> Decoder:
    """Open the decoder called ``name``: ``auto``, ``zxing`` or ``zbar``.

    ``auto`` is zxing-cpp with the fallbacks described in this module, or zbar
    alone when zxing-cpp is missing. ``stream`` (the door's camera) lets
    ``auto`` answer a frame from its first code, as the module doc says. With
    ``frame_budget_ms``, zbar's work is bounded as described above (zxing-cpp's
    is short by nature). Raises :class:`DecoderError` naming what to install
    when the library is missing, :class:`ConfigError` for an unknown name or a
    budget that is not positive.
    """
    if frame_budget_ms is not None:
        _budget(frame_budget_ms)
    if name == "auto":
        try:
            return AutoDecoder(frame_budget_ms=frame_budget_ms, stream=stream)
        except DecoderError as err:
            try:
                zbar: Decoder = ZbarDecoder()
            except DecoderError:
                raise DecoderError(
                    f"no QR decoder is available: {_INSTALL['zxing']}, or {_INSTALL['zbar']}"
                ) from err
            return zbar if frame_budget_ms is None else BoundedDecoder(zbar, frame_budget_ms)
    if name == "zxing":
        return ZxingDecoder()
    if name == "zbar":
        zbar = ZbarDecoder()
        return zbar if frame_budget_ms is None else BoundedDecoder(zbar, frame_budget_ms)
    raise ConfigError(f"decoder: {name!r} is not a decoder (auto, zxing, zbar)")
