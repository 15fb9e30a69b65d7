"""The guard's screen: the decision in words, whose pass it is, and the door's state.

An optional edge, like the LEDs: the LEDs and buzzer stay the primary
signal, and the screen only adds what they cannot say: the holder's name and
tier in large type (a guard checks a face against them), the reason as a
guard would say it, the zone, how many this door has let in, the phase, and
the fault when there is one. A decision stays up for ``hold_seconds``, then
the idle screen (gate, zone, phase, faults) comes back.

Three parts, each replaceable:

- :class:`ScreenView` and :func:`decision_view` / :func:`idle_view`: what to
  show, as plain data built from a decision and the gate's status.
  :data:`HEADLINES` (one per reason code) is the wording, as data.
- :func:`render`: a view drawn with Pillow at any size. Names are drawn
  character by character in the first font that has the glyph (the image
  ships DejaVu for Latin, Greek and Cyrillic and WenQuanYi Zen Hei for
  Chinese, Japanese kana and Korean Hangul); a name with a character no
  font can draw says so on the screen ("some letters cannot be shown:
  check the card") instead of drawing boxes.
- The port (:class:`ScreenPort`): ``display(image, name)`` and ``close()``.
  :class:`LumaScreen` drives SPI and I2C displays through ``luma.lcd`` and
  ``luma.oled``, :class:`FramebufferScreen` the HDMI console
  (``/dev/fb0``), and :class:`PngScreen` is the fake: it writes every frame
  as a PNG (tests and ``scanner demo``).

:class:`GuardScreen` runs the drawing on its own thread, so the scan loop
never waits for a slow SPI bus or a dead display. A screen that fails is
reported through :attr:`GuardScreen.fault` (the loop shows it as the
``screen`` fault: the fault blink and a line in the status) and reopened
every few seconds; it never stops the door.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import threading
import time
import unicodedata
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from PIL import Image, ImageDraw, ImageFont

from ..core.decision import Decision, Reason
from ..errors import ScreenError
from .status import GateStatus

__all__ = [
    "DEFAULT_FONTS",
    "HEADLINES",
    "KEY_WORDS",
    "FontSet",
    "FramebufferScreen",
    "GuardScreen",
    "LumaScreen",
    "PngScreen",
    "ScreenPort",
    "ScreenView",
    "decision_view",
    "idle_view",
    "open_screen",
    "render",
]

# What the guard reads first, as a guard would say it to the holder, and the
# tone of the screen: go (green, a tick), stop (red, a cross), hold (a pass to
# keep: red, a cross), fault (amber, an exclamation mark). The mark tells them
# apart without colour, as the beeps do.
HEADLINES: Mapping[str, tuple[str, str]] = {
    Reason.OK.value: ("GO IN", "go"),
    Reason.OVERRIDE.value: ("LET IN BY HAND", "go"),
    Reason.MALFORMED.value: ("NOT A PASS", "stop"),
    Reason.BAD_SIGNATURE.value: ("FAKE PASS", "hold"),
    Reason.UNKNOWN_KEY.value: ("FAKE PASS", "hold"),
    Reason.REVOKED.value: ("REVOKED: KEEP IT", "hold"),
    Reason.WRONG_EVENT.value: ("WRONG EVENT", "stop"),
    Reason.UNKNOWN_TIER.value: ("NOT VALID HERE", "stop"),
    Reason.ZONE_NOT_ALLOWED.value: ("NOT THIS DOOR", "stop"),
    Reason.PHASE_NOT_ALLOWED.value: ("NOT NOW", "stop"),
    Reason.NOT_YET_VALID.value: ("NOT YET VALID", "stop"),
    Reason.EXPIRED.value: ("EXPIRED", "stop"),
    Reason.OUTSIDE_EVENT.value: ("DOORS CLOSED", "stop"),
    Reason.ALREADY_INSIDE.value: ("ALREADY IN", "stop"),
    Reason.SUSPECTED_COPY.value: ("COPY? AT ANOTHER DOOR", "hold"),
    Reason.ZONE_FULL.value: ("FULL: WAIT", "stop"),
    Reason.CLOCK_UNTRUSTED.value: ("CLOCK WRONG", "refused-fault"),
    Reason.NO_POLICY.value: ("NO POLICY", "refused-fault"),
    Reason.LOG_UNAVAILABLE.value: ("CANNOT LOG", "refused-fault"),
}
EXIT_HEADLINE = "GO OUT"

# The words a guard must read whatever the screen's size: drawn whole, in
# white, before the reason's sentence (which may be cut on a small screen).
KEY_WORDS: Mapping[str, str] = {
    Reason.SUSPECTED_COPY.value: "Check the holder's name and face",
    Reason.REVOKED.value: "Keep the pass",
    Reason.CLOCK_UNTRUSTED.value: "Nobody in: call a tech",
    Reason.NO_POLICY.value: "Nobody in: call a tech",
    Reason.LOG_UNAVAILABLE.value: "Nobody in: call a tech",
}

# A refusal because the gate is at fault is amber, as a fault is, and carries
# the refusal's cross: the guard sees at once that nobody goes in.
_MARKS = {"go": "\u2713", "stop": "\u2717", "hold": "\u2717", "fault": "!",
          "refused-fault": "\u2717", "idle": ""}
_BANDS = {  # band colour, text colour
    "go": ((0, 122, 51), (255, 255, 255)),
    "stop": ((190, 20, 20), (255, 255, 255)),
    "hold": ((190, 20, 20), (255, 255, 255)),
    "fault": ((230, 160, 0), (0, 0, 0)),
    "refused-fault": ((230, 160, 0), (0, 0, 0)),
    "idle": ((40, 40, 40), (255, 255, 255)),
}
_INK = (255, 255, 255)
_MUTED = (170, 170, 170)
_FAULT_INK = (255, 190, 40)

# Fonts the appliance image installs (fonts-dejavu-core, fonts-wqy-zenhei),
# and the ones other Debian systems often have; tried in this order, per glyph.
DEFAULT_FONTS: tuple[Path, ...] = (
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"),
    Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"),  # Chinese, kana, Hangul
    Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc"),
    Path("/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf"),
    Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),
)


# -- what to show ----------------------------------------------------------------


@dataclass(frozen=True)
class ScreenView:
    """One screenful, as plain data."""

    headline: str
    tone: str  # go, stop, hold, fault, idle
    holder: str | None = None
    tier: str | None = None  # the tier's label ("Access All Areas")
    serial: int | None = None
    detail: str = ""  # the reason in a sentence
    key_words: str = ""  # what the guard must read on any screen (KEY_WORDS)
    place: str = ""  # "entry into backstage"
    phase: str = ""
    let_in: int | None = None
    fault: str | None = None  # the first active fault, as "name: message"
    gate: str = ""
    name: str = "idle"  # a short label for PNG file names and logs

    @property
    def mark(self) -> str:
        return _MARKS[self.tone]


def _first_fault(faults: Mapping[str, str]) -> str | None:
    if not faults:
        return None
    name = sorted(faults)[0]
    more = f" (+{len(faults) - 1} more)" if len(faults) > 1 else ""
    return f"{name}: {faults[name]}{more}"


def _sentence(decision: Decision) -> str:
    """The decision's message without its verdict and without the name (shown big)."""
    text = re.sub(r"^(Granted by hand|Granted|Denied): ", "", decision.message)
    if decision.holder:
        text = re.sub(rf"^{re.escape(decision.holder)}( \([^)]*\))?:? ?", "", text)
    text = re.sub(r", row [0-9a-f-]+\)", ")", text)  # the row id is for the log, not the guard
    if decision.reason is Reason.OK:  # "entering backstage." is on the screen already
        text = re.sub(r"^(entering|leaving) \S+ ?\(?", "", text).rstrip(".)")
    return text[:1].upper() + text[1:] if text else text


def decision_view(
    decision: Decision,
    status: GateStatus,
    *,
    tier_label: str | None = None,
) -> ScreenView:
    """What the screen shows for ``decision``; ``status`` is the gate's
    (:meth:`ScanLoop.status`): phase, count let in, faults."""
    headline, tone = HEADLINES.get(decision.reason.value, (decision.reason.value.upper(), "stop"))
    if decision.reason is Reason.OK and decision.direction.value == "exit":
        headline = EXIT_HEADLINE
    holder = decision.holder
    detail = _sentence(decision)
    if holder is None and decision.signal.value == "forged":
        detail = "No name: this is not a genuine pass. " + detail
    return ScreenView(
        headline=headline,
        tone=tone,
        holder=holder,
        tier=tier_label or decision.tier,
        serial=decision.serial,
        detail=detail,
        key_words=KEY_WORDS.get(decision.reason.value, ""),
        place=f"{decision.direction.value} into {decision.zone}",
        phase=status.phase,
        let_in=status.let_in,
        fault=_first_fault(status.faults),
        gate=status.gate,
        name=decision.reason.value,
    )


def idle_view(status: GateStatus) -> ScreenView:
    """The screen between decisions: ready (or the fault), the door and the phase."""
    faults = status.faults
    door = f" through {status.door}" if status.door else ""
    return ScreenView(
        headline="FAULT: CALL A TECH" if faults else "READY",
        tone="fault" if faults else "idle",
        detail="Hold a pass up to the camera." if not faults else "",
        place=f"{status.direction} into {status.zone}{door}",
        phase=status.phase,
        let_in=status.let_in,
        fault=_first_fault(faults),
        gate=status.gate,
        name="fault" if faults else "idle",
    )


# -- drawing ------------------------------------------------------------------------


class FontSet:
    """Fonts tried in order for each character; sizes made on demand.

    A character is drawn in the first font that has a glyph for it (a glyph
    that is not the font's "missing" box). Pillow's own font is the last
    resort, so drawing never fails for want of a font file.
    """

    _PROBE = "\U0010fffd"  # a code point no font draws: its mask is the "missing" box

    def __init__(self, paths: Iterable[Path] = DEFAULT_FONTS) -> None:
        self.paths = [p for p in paths if p.is_file()]
        self._fonts: dict[tuple[int, int], Any] = {}
        self._has: dict[tuple[int, str], bool] = {}
        self._missing: dict[int, bytes] = {}

    def font(self, index: int, size: int) -> Any:
        key = (index, size)
        found = self._fonts.get(key)
        if found is None:
            if index < len(self.paths):
                try:
                    found = ImageFont.truetype(str(self.paths[index]), size)
                except OSError:
                    found = ImageFont.load_default(size)
            else:
                found = ImageFont.load_default(size)
            self._fonts[key] = found
        return found

    def _mask(self, index: int, ch: str) -> bytes:
        mask = self.font(index, 24).getmask(ch)
        return bytes(mask.size) + bytes(mask)

    def has(self, index: int, ch: str) -> bool:
        key = (index, ch)
        known = self._has.get(key)
        if known is None:
            if index not in self._missing:
                self._missing[index] = self._mask(index, self._PROBE)
            known = ch.isspace() or self._mask(index, ch) != self._missing[index]
            self._has[key] = known
        return known

    def runs(self, text: str) -> tuple[list[tuple[int, str]], bool]:
        """``text`` split into (font index, run); and whether every
        character found a font (a missing one is drawn as ``?``)."""
        out: list[tuple[int, str]] = []
        complete = True
        last = len(self.paths)  # Pillow's own font
        for ch in text:
            index = next((i for i in range(len(self.paths)) if self.has(i, ch)), None)
            if index is None:
                if self.has(last, ch):
                    index = last
                else:
                    index, ch, complete = 0 if self.paths else last, "?", False
            if out and out[-1][0] == index:
                out[-1] = (index, out[-1][1] + ch)
            else:
                out.append((index, ch))
        return out, complete

    def width(self, text: str, size: int) -> float:
        runs, _ = self.runs(text)
        return sum(self.font(i, size).getlength(run) for i, run in runs)

    def draw(
        self, draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, size: int, fill: Any
    ) -> bool:
        """Draw ``text`` at ``xy`` (top left); returns whether every letter could be drawn."""
        x, y = xy
        runs, complete = self.runs(text)
        for index, run in runs:
            font = self.font(index, size)
            draw.text((x, y), run, font=font, fill=fill)
            x += font.getlength(run)
        return complete


def _wrap(fonts: FontSet, text: str, size: int, width: float, lines: int) -> list[str] | None:
    """``text`` in at most ``lines`` lines of ``width`` at ``size``; None if it does not fit.
    Words break at spaces; a word wider than a line (a CJK name) breaks anywhere."""
    out: list[str] = []
    line = ""
    for word in text.split(" "):
        candidate = f"{line} {word}" if line else word
        if fonts.width(candidate, size) <= width:
            line = candidate
            continue
        if line:
            out.append(line)
            line = ""
        while fonts.width(word, size) > width:
            cut = len(word)
            while cut > 1 and fonts.width(word[:cut], size) > width:
                cut -= 1
            out.append(word[:cut])
            word = word[cut:]
        line = word
    if line:
        out.append(line)
    return out if len(out) <= lines else None


def _fit(
    fonts: FontSet, text: str, width: float, sizes: Sequence[int], lines: int
) -> tuple[list[str], int]:
    """The largest size of ``sizes`` at which ``text`` fits in ``lines`` lines
    (the smallest, cut with an ellipsis, if none does)."""
    for size in sizes:
        wrapped = _wrap(fonts, text, size, width, lines)
        if wrapped is not None:
            return wrapped, size
    size = sizes[-1]
    wrapped = _wrap(fonts, text, size, width, 10_000) or [text]
    kept = wrapped[:lines]
    while kept[-1] and fonts.width(kept[-1] + "\u2026", size) > width:
        kept[-1] = kept[-1][:-1]
    kept[-1] += "\u2026"
    return kept, size


def render(
    view: ScreenView, size: tuple[int, int] = (320, 240), fonts: FontSet | None = None
) -> Any:
    """``view`` drawn on an RGB image of ``size``: the headline in a coloured
    band with its mark, the holder's name and tier large, then the detail,
    and a status line (phase, count, gate) with the fault under it.
    ``image.info["lines"]`` lists each line drawn as (role, text);
    ``image.info["crowded"]`` says the name, tier and key words ran into the
    status line (a screen too small for them)."""
    fonts = fonts or FontSet()
    w, h = size
    unit = h / 240  # sizes below are for a 320x240 screen, scaled
    pad = max(2, round(6 * unit))
    image = Image.new("RGB", size, (0, 0, 0))
    draw = ImageDraw.Draw(image)
    drawn: list[tuple[str, str]] = []  # (role, text) of every line, for tests and logs
    image.info["lines"] = drawn

    def px(n: float) -> int:
        return max(6, round(n * unit))

    band_h = round(44 * unit)
    band, ink = _BANDS[view.tone]
    draw.rectangle((0, 0, w, band_h), fill=band)
    headline = f"{view.mark} {view.headline}" if view.mark else view.headline
    lines, hsize = _fit(fonts, headline, w - 2 * pad, [px(s) for s in (30, 26, 22, 18, 14)], 1)
    fonts.draw(draw, (pad, (band_h - hsize * 1.15) / 2), lines[0], hsize, ink)
    drawn.append(("headline", lines[0]))
    y = band_h + pad

    small = px(13)
    width = w - 2 * pad
    # What must show whole, from the bottom up: the status and fault lines,
    # the key words, the tier; the name takes the largest size that leaves
    # room for them, and the reason's sentence gets what is left.
    foot_lines = 2 if view.fault and fonts.width(f"FAULT {view.fault}", small) > width else 1
    bottom = h - pad - small * 1.2 * ((foot_lines if view.fault else 0) + 1)
    key_lines, ksize = (
        _fit(fonts, view.key_words, width, [px(s) for s in (18, 16, 14, 12)], 2)
        if view.key_words else ([], small)
    )
    tier = view.tier or ""
    if view.serial is not None:
        tier = f"{tier}  #{view.serial}" if tier else f"pass #{view.serial}"
    tier_lines, tsize = _fit(fonts, tier, width, [px(s) for s in (26, 22, 18, 14)], 1) \
        if tier else ([], 0)
    below_name = len(key_lines) * ksize * 1.2 + (tsize * 1.25 if tier_lines else 0)

    complete = True
    if view.holder:
        sizes = [px(s) for s in (40, 34, 28, 24, 20, 16, 14, 12, 10)]
        room = bottom - y - below_name
        fitting = [
            (wrapped, size) for size in sizes
            if (wrapped := _wrap(fonts, view.holder, size, width, 2)) is not None
            and len(wrapped) * size * 1.15 <= room
        ]  # fmt: skip
        lines, nsize = fitting[0] if fitting else _fit(fonts, view.holder, width, sizes, 3)
        for line in lines:
            complete = fonts.draw(draw, (pad, y), line, nsize, _INK) and complete
            drawn.append(("name", "".join(run for _, run in fonts.runs(line)[0])))
            y += nsize * 1.15
    if tier_lines:
        fonts.draw(draw, (pad, y), tier_lines[0], tsize, _INK)
        drawn.append(("tier", tier_lines[0]))
        y += tsize * 1.25
    for line in key_lines:
        fonts.draw(draw, (pad, y), line, ksize, _INK)
        drawn.append(("key words", line))
        y += ksize * 1.2
    image.info["crowded"] = y > bottom + 0.5  # what must show did not fit above the status
    between = view.name in ("idle", "fault")
    if between and view.place:  # the idle screen: where this door leads
        lines, psize = _fit(fonts, view.place, w - 2 * pad, [px(s) for s in (28, 22, 18)], 2)
        for line in lines:
            fonts.draw(draw, (pad, y), line, psize, _INK)
            drawn.append(("place", line))
            y += psize * 1.2
    if not complete:
        lines, _ = _fit(
            fonts, "Some letters cannot be shown: check the card", w - 2 * pad, [px(12)], 2
        )
        for line in lines:
            fonts.draw(draw, (pad, y), line, px(12), _FAULT_INK)
            drawn.append(("warning", line))
            y += px(12) * 1.3

    foot = [view.fault] if view.fault else []
    parts = [view.phase, None if view.let_in is None else f"{view.let_in} let in", view.gate]
    status = " \u00b7 ".join(x for x in parts if x)
    if fonts.width(status, small) > w - 2 * pad:  # the gate's name is the first to go
        status = " \u00b7 ".join(x for x in parts[:2] if x)
    shown_place = "" if between else view.place
    detail = " \u2014 ".join(x for x in (shown_place, view.detail) if x)
    room = max(1, int((bottom - y) // (small * 1.2)))
    if detail and room:
        lines, _ = _fit(fonts, detail, w - 2 * pad, [small], min(room, 4))
        for line in lines:
            fonts.draw(draw, (pad, y), line, small, _MUTED)
            drawn.append(("detail", line))
            y += small * 1.2
    y = bottom
    if status:
        lines, _ = _fit(fonts, status, w - 2 * pad, [small], 1)
        fonts.draw(draw, (pad, y), lines[0], small, _INK)
        drawn.append(("status", lines[0]))
        y += small * 1.2
    for line in foot:
        lines, _ = _fit(fonts, f"FAULT {line}", w - 2 * pad, [small], 2)
        for text in lines:
            fonts.draw(draw, (pad, y), text, small, _FAULT_INK)
            drawn.append(("fault", text))
            y += small * 1.2
    return image


# -- the port and its backends ------------------------------------------------------------


class ScreenPort(Protocol):
    """A display: shows one image at a time."""

    size: tuple[int, int]

    def display(self, image: Any, name: str) -> None: ...
    def close(self) -> None: ...


class PngScreen:
    """The fake screen: every frame becomes ``NNNN-name.png`` in ``folder``."""

    def __init__(self, folder: Path, size: tuple[int, int] = (320, 240)) -> None:
        self.folder = Path(folder)
        self.size = size
        self.frames: list[Path] = []
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ScreenError(f"screen: cannot make {self.folder}: {err.strerror}") from err

    def display(self, image: Any, name: str) -> None:
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "frame"
        path = self.folder / f"{len(self.frames) + 1:04d}-{slug}.png"
        try:
            image.save(path)
        except OSError as err:
            raise ScreenError(f"screen: cannot write {path}: {err.strerror}") from err
        self.frames.append(path)

    def close(self) -> None:
        pass


class FramebufferScreen:
    """The HDMI console through the Linux framebuffer (``/dev/fb0``).

    The geometry comes from sysfs (``virtual_size``, ``bits_per_pixel``,
    ``stride``); 16-bit (RGB565) and 32-bit (XRGB8888) framebuffers are
    supported. Stop the console's cursor blinking over it with
    ``consoleblank=0 vt.global_cursor_default=0`` on the kernel command line.
    """

    def __init__(self, device: Path = Path("/dev/fb0"), sysfs: Path | None = None) -> None:
        self.device = Path(device)
        sysfs = sysfs or Path("/sys/class/graphics") / self.device.name
        try:
            width, height = (
                int(x) for x in (sysfs / "virtual_size").read_text().strip().split(",")
            )
            self.bpp = int((sysfs / "bits_per_pixel").read_text())
            stride_file = sysfs / "stride"
            self.stride = (
                int(stride_file.read_text()) if stride_file.exists() else width * self.bpp // 8
            )
        except (OSError, ValueError) as err:
            raise ScreenError(f"screen: {self.device} has no readable geometry ({err})") from err
        if self.bpp not in (16, 32):
            raise ScreenError(f"screen: {self.device} has {self.bpp} bits per pixel (16 or 32)")
        self.size = (width, height)
        try:
            self._fd: int | None = os.open(self.device, os.O_WRONLY | os.O_CLOEXEC)
        except OSError as err:
            raise ScreenError(f"screen: cannot open {self.device}: {err.strerror}") from err

    def pixels(self, image: Any) -> bytes:
        """``image`` as the framebuffer's bytes, row by row with its stride."""
        import numpy as np

        rgb = np.asarray(image.convert("RGB").resize(self.size), dtype=np.uint16)
        r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
        if self.bpp == 16:
            row = ((r >> 3) << 11 | (g >> 2) << 5 | (b >> 3)).astype("<u2").view(np.uint8)
        else:
            bgrx = np.stack([b, g, r, np.full_like(r, 255)], axis=-1).astype(np.uint8)
            row = bgrx.reshape(self.size[1], -1)
        row = row.reshape(self.size[1], -1)
        pad = self.stride - row.shape[1]
        if pad > 0:
            row = np.pad(row, ((0, 0), (0, pad)))
        return bytes(row.tobytes())

    def display(self, image: Any, name: str) -> None:
        if self._fd is None:
            raise ScreenError(f"screen: {self.device} is closed")
        data = self.pixels(image)
        try:
            written = os.pwrite(self._fd, data, 0)
        except OSError as err:
            raise ScreenError(f"screen: cannot write {self.device}: {err.strerror}") from err
        if written != len(data):
            raise ScreenError(f"screen: {self.device} took {written} of {len(data)} bytes")

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


class LumaScreen:
    """An SPI or I2C display through ``luma.lcd`` / ``luma.oled`` (the
    ``screen`` extra). ``device`` is a ready luma device (tests use luma's
    ``dummy``); without it one is made from ``config`` (a ScreenConfig)."""

    def __init__(self, config: Any = None, *, device: Any = None) -> None:
        if device is None:
            device = self._open(config)
        self.device = device
        self.size = tuple(device.size)

    @staticmethod
    def _open(config: Any) -> Any:
        from .config import LUMA_DRIVERS

        package = LUMA_DRIVERS[config.driver]
        try:
            serial = importlib.import_module("luma.core.interface.serial")
            devices = importlib.import_module(f"luma.{package}.device")
        except ImportError as err:
            raise ScreenError(
                f"screen: luma.{package} is not installed (pip install "
                f"'backstage-scanner[screen]'): {err}"
            ) from err
        try:
            if config.interface == "i2c":
                bus = serial.i2c(port=config.port, address=config.address)
            else:
                bus = serial.spi(
                    port=config.port,
                    device=config.spi_device,
                    gpio_DC=config.gpio_dc,
                    gpio_RST=config.gpio_rst,
                )
            return getattr(devices, config.driver)(
                bus, width=config.width, height=config.height, rotate=config.rotate
            )
        except Exception as err:  # luma raises its own, OSError, ImportError for spidev...
            raise ScreenError(
                f"screen: cannot open the {config.driver} on {config.interface} "
                f"port {config.port}: {err}"
            ) from err

    def display(self, image: Any, name: str) -> None:
        frame = image.resize(self.size).convert(self.device.mode)
        try:
            self.device.display(frame)
        except Exception as err:  # a bus error, a display unplugged
            raise ScreenError(f"screen: the display did not take the frame: {err}") from err

    def close(self) -> None:
        device, self.device = getattr(self, "device", None), None
        if device is not None:
            with contextlib.suppress(Exception):
                device.cleanup()


def open_screen(config: Any) -> Callable[[], ScreenPort] | None:
    """How to open the screen ``config`` (a ScreenConfig) describes; None for none."""
    if config.kind == "none":
        return None
    if config.kind == "png":
        return lambda: PngScreen(config.folder, (config.width, config.height))
    if config.kind == "framebuffer":
        return lambda: FramebufferScreen(config.framebuffer)
    return lambda: LumaScreen(config)


# -- the screen's own thread -------------------------------------------------------------


@dataclass
class _Wanted:
    views: deque[tuple[ScreenView, float]] = field(default_factory=deque)
    idle: ScreenView | None = None


class GuardScreen:
    """Draws views on a port from a background thread; never blocks, never raises.

    :meth:`show` puts a decision up for ``hold_seconds`` (a newer one
    replaces it at once; with ``every_frame`` none is skipped, for the PNG
    fake), :meth:`set_idle` sets what shows between decisions. A port that
    fails is closed, :attr:`fault` says why, and it is reopened every
    ``retry_seconds``; :attr:`fault` is None again once a frame is shown.
    """

    def __init__(
        self,
        open_port: Callable[[], ScreenPort],
        *,
        fonts: FontSet | None = None,
        hold_seconds: float = 5.0,
        retry_seconds: float = 5.0,
        every_frame: bool = False,
    ) -> None:
        self.open_port = open_port
        self.fonts = fonts or FontSet()
        self.hold_seconds = hold_seconds
        self.retry_seconds = retry_seconds
        self.every_frame = every_frame
        self.fault: str | None = None
        # the last views drawn, holder names included: bounded, so neither memory
        # nor the names of a whole night's guests pile up on the box
        self.shown: deque[ScreenView] = deque(maxlen=64)
        self._port: ScreenPort | None = None
        self._wanted = _Wanted()
        self._cond = threading.Condition()
        self._closed = False
        self._next_open = 0.0
        self._thread = threading.Thread(target=self._run, name="guard screen", daemon=True)
        self._thread.start()

    @property
    def port(self) -> ScreenPort | None:
        return self._port

    def show(self, view: ScreenView) -> None:
        """Put ``view`` up now, for ``hold_seconds``."""
        with self._cond:
            if not self.every_frame:
                self._wanted.views.clear()
            self._wanted.views.append((view, time.monotonic()))
            self._cond.notify_all()

    def set_idle(self, view: ScreenView) -> None:
        """What the screen shows when no decision is up (drawn when it changes)."""
        with self._cond:
            if view != self._wanted.idle:
                self._wanted.idle = view
                self._cond.notify_all()

    def wait_drawn(self, timeout: float = 5.0) -> bool:
        """Wait until every decision given has been drawn (tests, a clean exit)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._wanted.views and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def _run(self) -> None:
        drawn_idle: ScreenView | None = None
        until = 0.0  # a decision is up until then
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                views = self._wanted.views
                while views and not self.every_frame and now - views[0][1] > self.hold_seconds:
                    views.popleft()  # waited for a dead screen too long: stale now
                idle = self._wanted.idle
                view: ScreenView | None = None
                if views:
                    view = views[0][0]
                elif now >= until and idle is not None and idle != drawn_idle:
                    view = idle
                if view is None:
                    self._cond.wait(until - now if until > now else None)
                    continue
                if self._port is None and now < self._next_open:
                    self._cond.wait(self._next_open - now)  # a dead screen: try again later
                    continue
                self._cond.release()
                try:
                    ok = self._draw(view)
                finally:
                    self._cond.acquire()
                if view is idle and not views:
                    drawn_idle = idle if ok else None
                else:
                    if views and views[0][0] is view:
                        views.popleft()
                    if ok:
                        until = time.monotonic() + self.hold_seconds
                        drawn_idle = None  # the idle screen comes back after the hold
                self._cond.notify_all()

    def _draw(self, view: ScreenView) -> bool:
        if self._port is None:
            try:
                self._port = self.open_port()
            except ScreenError as err:
                return self._failed(str(err))
            except Exception as err:  # a screen must never stop the door
                return self._failed(f"screen: {err!r}")
        try:
            image = render(view, self._port.size, self.fonts)
            name = view.name if view.holder is None else f"{view.name}-{_ascii(view.holder)}"
            self._port.display(image, name)
        except ScreenError as err:
            return self._failed(str(err))
        except Exception as err:
            return self._failed(f"screen: {err!r}")
        self.shown.append(view)
        self.fault = None
        return True

    def _failed(self, message: str) -> bool:
        self.fault = message
        port, self._port = self._port, None
        if port is not None:
            with contextlib.suppress(Exception):
                port.close()
        self._next_open = time.monotonic() + self.retry_seconds
        return False

    def close(self) -> None:
        """Stop drawing and close the port; safe to call twice."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)
        port, self._port = self._port, None
        if port is not None:
            with contextlib.suppress(Exception):
                port.close()

    def __enter__(self) -> GuardScreen:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ascii(text: str) -> str:
    """A name as ASCII for a file name (the name itself is drawn, not this)."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return plain or "name"
