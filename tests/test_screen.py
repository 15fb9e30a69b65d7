"""The guard's screen: what each decision looks like, whose name it shows, in
which script, and a screen that dies without taking the door with it."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from PIL import Image

from scanner.core.decision import Decision, Direction, Reason, admit_by_hand, decide
from scanner.errors import ScreenError
from scanner.gate.screen import (
    DEFAULT_FONTS,
    HEADLINES,
    FontSet,
    FramebufferScreen,
    GuardScreen,
    LumaScreen,
    PngScreen,
    decision_view,
    idle_view,
    render,
)
from scanner.gate.status import GateStatus

from .test_access_table import MOMENTS
from .test_decision import BACKSTAGE

STATUS = GateStatus(
    gate="door-1",
    zone="backstage",
    direction="entry",
    door=None,
    event="example-fest-2026",
    timezone="Europe/Berlin",
    phase="before the show",
    let_in=41,
)
GREEN, RED, AMBER = (0, 122, 51), (190, 20, 20), (230, 160, 0)


def lines(image, role=None):
    return [t for r, t in image.info["lines"] if role is None or r == role]


def band(image):
    return image.getpixel((image.width - 2, 2))


def frame_for(decision, status=STATUS, size=(320, 240), fonts=None):
    return render(decision_view(decision, status, tier_label=decision.tier), size, fonts)


def test_every_reason_has_words_a_guard_would_say():
    assert set(HEADLINES) == {r.value for r in Reason}
    # each denial class says something different from a grant, in words and in mark
    for reason, (_words, tone) in HEADLINES.items():
        granted = reason in ("ok", "override")
        assert (tone == "go") == granted, reason


@pytest.mark.parametrize(
    "tier, serial, extra, reason, headline, colour",
    [
        ("aaa", 1, {}, "ok", "\u2713 GO IN", GREEN),
        ("photo", 2, {}, "zone_not_allowed", "\u2717 NOT THIS DOOR", RED),
        ("after-show", 3, {}, "phase_not_allowed", "\u2717 NOT NOW", RED),
        ("aaa", 4, {"revoked": True}, "revoked", "\u2717 REVOKED: KEEP IT", RED),
        ("aaa", 5, {"forged": True}, "unknown_key", "\u2717 FAKE PASS", RED),
        ("aaa", 6, {"expired": True}, "expired", "\u2717 EXPIRED", RED),
        ("aaa", 7, {"inside": True}, "already_inside", "\u2717 ALREADY IN", RED),
        ("aaa", 8, {"untrusted": True}, "clock_untrusted", "\u2717 CLOCK WRONG", AMBER),
    ],
)
def test_a_frame_for_every_decision_class_says_it_in_words(
    policy, make_pass, other_key, tmp_path, tier, serial, extra, reason, headline, colour
):
    at = MOMENTS["before"]
    fields = {"holder": "Alex Rivera"}
    if extra.get("expired"):
        fields["not_after"] = at - timedelta(hours=1)
    text = make_pass(tier, serial, key=other_key if extra.get("forged") else None, **fields)
    used = policy.with_revocations([serial]) if extra.get("revoked") else policy
    entered = {serial: at - timedelta(seconds=20)} if extra.get("inside") else None
    decision = decide(
        text, used, BACKSTAGE, at, entered=entered, clock_trusted=not extra.get("untrusted")
    )
    assert decision.reason.value == reason
    image = frame_for(decision)
    image.save(tmp_path / f"{reason}.png")  # a real PNG a person can open
    assert Image.open(tmp_path / f"{reason}.png").size == (320, 240)
    assert lines(image, "headline") == [headline]
    assert band(image) == colour
    if reason == "unknown_key":
        # a forged pass names nobody: the screen says so instead of a name
        assert lines(image, "name") == []
        assert "not a genuine pass" in " ".join(lines(image, "detail"))
    else:
        assert lines(image, "name") == ["Alex Rivera"]
        assert lines(image, "tier")[0].endswith(f"#{serial}")
    assert lines(image, "status") == ["before the show \u00b7 41 let in \u00b7 door-1"]


def test_a_phase_denial_tells_the_guard_when_to_come_back(policy, make_pass):
    text = make_pass("after-show", 3, holder="Sam")
    decision = decide(text, policy, BACKSTAGE, MOMENTS["before"])
    detail = " ".join(lines(frame_for(decision), "detail"))
    assert "allowed after the show" in detail


def test_an_override_frame_shows_who_was_let_in_by_hand(policy, make_pass):
    denied = decide(make_pass("photo", 9, holder="Pat Kowalski"), policy, BACKSTAGE,
                    MOMENTS["before"])
    image = frame_for(admit_by_hand(denied, "the button", "0f1e2d3c-4b5a-4e7f-9a8b-7c6d5e4f3a2b"))
    assert lines(image, "headline") == ["\u2713 LET IN BY HAND"]
    assert band(image) == GREEN
    assert lines(image, "name") == ["Pat Kowalski"]
    detail = " ".join(lines(image, "detail"))
    assert "Let in by the button" in detail and "zone_not_allowed" in detail
    assert "0f1e2d3c-4b5a-4e7f-9a8b-7c6d5e4f3a2b" not in detail  # the row id is for the log


def _decision(holder: str, reason: Reason = Reason.OK, **extra) -> Decision:
    return Decision(
        granted=reason is Reason.OK,
        reason=reason,
        message=f"Granted: {holder} (Access All Areas) entering backstage.",
        zone="backstage",
        direction=Direction.ENTRY,
        phase="during the show",
        event="example-fest-2026",
        serial=1042,
        tier="Access All Areas",
        holder=holder,
        **extra,
    )


@pytest.mark.parametrize(
    "holder",
    [
        "Maximiliana Papadopoulou-Richardson",  # 35 letters: the longest names fit whole
        "Wolfeschlegelsteinhausenbergerdorff",  # one word wider than the screen
        "Dolores O'Riordan-Ní Bhriain",
    ],
)
def test_a_long_name_is_shown_whole_never_cut(holder):
    image = frame_for(_decision(holder))
    shown = lines(image, "name")
    assert 1 <= len(shown) <= 2
    assert "".join(shown).replace(" ", "") == holder.replace(" ", "")
    assert "\u2026" not in "".join(shown)


@pytest.mark.parametrize(
    "holder",
    ["Σωκράτης Παπαδόπουλος", "Анна Каренина", "Đặng Thị Ngọc Thịnh", "李小龍", "山田 太郎",
     "김민준", "ひらがな カタカナ"],
)
def test_non_latin_names_are_drawn_in_a_font_that_has_them(holder):
    fonts = FontSet()
    assert fonts.runs(holder)[1], f"no font on this machine draws {holder!r}"
    image = frame_for(_decision(holder), fonts=fonts)
    assert "".join(lines(image, "name")).replace(" ", "") == holder.replace(" ", "")
    assert lines(image, "warning") == []
    # the name is really drawn: the frame differs from one whose name is blank
    blank = frame_for(_decision("x"), fonts=fonts)
    name_area = (0, 50, 320, 100)
    assert image.crop(name_area).tobytes() != blank.crop(name_area).tobytes()


def test_a_name_no_font_can_draw_says_so_instead_of_drawing_boxes():
    latin_only = FontSet([DEFAULT_FONTS[0]])
    image = frame_for(_decision("李小龍"), fonts=latin_only)
    assert " ".join(lines(image, "warning")) == "Some letters cannot be shown: check the card"
    assert lines(image, "name") == ["???"]


def test_without_any_font_file_the_screen_still_draws():
    image = frame_for(_decision("Alex Rivera"), fonts=FontSet([Path("/nonexistent.ttf")]))
    assert lines(image, "name") == ["Alex Rivera"]


def test_the_fault_shows_on_a_decision_and_on_the_idle_screen():
    status = replace(STATUS, faults={"camera": "the camera stopped delivering frames"})
    image = frame_for(_decision("Alex Rivera"), status)
    assert " ".join(lines(image, "fault")) == "FAULT camera: the camera stopped delivering frames"
    idle = render(idle_view(status))
    assert lines(idle, "headline") == ["! FAULT: CALL A TECH"]
    assert band(idle) == AMBER
    assert lines(idle, "fault") == lines(image, "fault")


def test_the_idle_screen_says_where_the_door_leads():
    idle = render(idle_view(replace(STATUS, door="stage-door")), (480, 320))
    assert lines(idle, "headline") == ["READY"]
    assert " ".join(lines(idle, "place")) == "entry into backstage through stage-door"


LONGEST = "Maximiliana Papadopoulou-Richardson"
SUPPORTED_SIZES = ((128, 64), (160, 128), (240, 240), (320, 240), (480, 320))


@pytest.mark.parametrize("size", SUPPORTED_SIZES)
@pytest.mark.parametrize(
    ("reason", "message", "key_words"),
    [
        (Reason.SUSPECTED_COPY,
         f"Denied: {LONGEST} (Access All Areas): this pass was let in at loading-dock "
         "(dock-in) 30 s ago, and nobody walks from there in under 60 s: suspected copy; "
         "check the holder's name and face", "Check the holder's name and face"),
        (Reason.CLOCK_UNTRUSTED,
         f"Denied: {LONGEST} (Access All Areas) may enter backstage only at some times of "
         "the show, and the gate's clock cannot be trusted; call a technician.",
         "Nobody in: call a tech"),
        (Reason.REVOKED, f"Denied: {LONGEST} (Access All Areas): this pass was revoked "
         "(lost) at 19:02.", "Keep the pass"),
    ],
)
def test_the_key_words_and_the_whole_name_fit_on_every_supported_screen(
    size, reason, message, key_words
):
    """The smallest screen with the longest name: the refusal's mark, the whole
    name and what the guard must do all show; only the long sentence may be cut."""
    decision = replace(_decision(LONGEST, reason), message=message, granted=False)
    image = frame_for(decision, replace(STATUS, gate="artist-entrance-in"), size=size)
    assert lines(image, "headline")[0].startswith("\u2717 ")  # a refusal, in any tone
    assert "\u2026" not in " ".join(lines(image, "headline") + lines(image, "name"))
    assert "".join(lines(image, "name")).replace(" ", "") == LONGEST.replace(" ", "")
    assert " ".join(lines(image, "key words")) == key_words
    assert not image.info["crowded"], image.info["lines"]


def test_frames_scale_to_the_screen_fitted():
    for size in ((128, 64), (240, 240), (480, 320), (1920, 1080)):
        image = frame_for(_decision("Alex Rivera"), size=size)
        assert image.size == size
        assert " ".join(lines(image, "name")) == "Alex Rivera"


# -- the backends ---------------------------------------------------------------------


def test_the_png_fake_keeps_every_frame_in_order(tmp_path):
    port = PngScreen(tmp_path / "screen")
    with GuardScreen(lambda: port, hold_seconds=0.05, every_frame=True) as screen:
        screen.set_idle(idle_view(STATUS))
        deadline = time.monotonic() + 5
        while not port.frames and time.monotonic() < deadline:
            time.sleep(0.01)
        for name in ("Alex Rivera", "Sam Okafor", "李小龍"):
            screen.show(decision_view(_decision(name), STATUS))
        assert screen.wait_drawn(5)
        deadline = time.monotonic() + 5
        while len(port.frames) < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
    names = [p.name for p in port.frames]
    assert names[1:4] == ["0002-ok-alex-rivera.png", "0003-ok-sam-okafor.png", "0004-ok-name.png"]
    assert names[0].endswith("-idle.png") and names[-1].endswith("-idle.png")  # back to idle
    assert all(Image.open(p).size == (320, 240) for p in port.frames)


def test_the_framebuffer_gets_the_frame_in_its_pixel_format(tmp_path):
    sysfs = tmp_path / "fb0"
    sysfs.mkdir()
    (sysfs / "virtual_size").write_text("64,32\n")
    (sysfs / "bits_per_pixel").write_text("16\n")
    (sysfs / "stride").write_text("160\n")  # 128 bytes of pixels and 32 of padding per row
    device = tmp_path / "fb-device"
    device.write_bytes(b"")
    screen = FramebufferScreen(device, sysfs)
    image = Image.new("RGB", (320, 240), (255, 0, 0))  # scaled down to 64x32
    screen.display(image, "red")
    screen.close()
    data = device.read_bytes()
    assert len(data) == 160 * 32
    assert data[:2] == (0xF800).to_bytes(2, "little")  # pure red in RGB565
    assert data[128:160] == bytes(32)


def test_a_32_bit_framebuffer_gets_blue_green_red(tmp_path):
    sysfs = tmp_path / "fb0"
    sysfs.mkdir()
    (sysfs / "virtual_size").write_text("8,4\n")
    (sysfs / "bits_per_pixel").write_text("32\n")
    device = tmp_path / "fb-device"
    device.write_bytes(b"")
    with_green = Image.new("RGB", (8, 4), (0, 200, 0))
    screen = FramebufferScreen(device, sysfs)
    screen.display(with_green, "green")
    screen.close()
    assert device.read_bytes()[:4] == bytes([0, 200, 0, 255])
    assert len(device.read_bytes()) == 8 * 4 * 4


def test_a_framebuffer_that_is_not_there_is_a_screen_error(tmp_path):
    with pytest.raises(ScreenError, match="no readable geometry"):
        FramebufferScreen(tmp_path / "fb9", tmp_path / "missing")


def test_an_spi_display_through_luma_gets_the_frame():
    from luma.core.device import dummy

    device = dummy(width=128, height=64, mode="1")  # luma's in-memory display (an OLED)
    screen = LumaScreen(device=device)
    image = render(decision_view(_decision("Alex Rivera"), STATUS), screen.size)
    screen.display(image, "ok")
    assert device.image.size == (128, 64) and device.image.mode == "1"
    assert device.image.getbbox() is not None  # something was drawn on it
    screen.close()


def test_a_luma_display_that_cannot_be_opened_is_a_screen_error():
    from scanner.gate.config import ScreenConfig

    with pytest.raises(ScreenError, match="cannot open the ssd1306 on i2c port 7"):
        LumaScreen(ScreenConfig(kind="luma", driver="ssd1306", interface="i2c", port=7))


class _DyingPort:
    size = (320, 240)

    def __init__(self, works: list[bool]) -> None:
        self.works = works
        self.shown = 0

    def display(self, image, name):
        if not self.works[0]:
            raise ScreenError("screen: the display did not take the frame: I/O error")
        self.shown += 1

    def close(self):
        pass


def test_a_dead_screen_is_a_fault_and_comes_back_when_the_screen_does():
    works = [True]
    port = _DyingPort(works)
    with GuardScreen(lambda: port, hold_seconds=0.01, retry_seconds=0.05) as screen:
        screen.show(decision_view(_decision("Alex Rivera"), STATUS))
        assert screen.wait_drawn(5) and screen.fault is None
        works[0] = False
        screen.show(decision_view(_decision("Sam Okafor"), STATUS))
        assert screen.wait_drawn(5)
        assert screen.fault == "screen: the display did not take the frame: I/O error"
        works[0] = True
        screen.set_idle(idle_view(STATUS))
        deadline = time.monotonic() + 5
        while screen.fault is not None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert screen.fault is None  # reopened and drawing again
    assert port.shown >= 2


def test_showing_a_decision_never_waits_for_a_slow_screen():
    class Slow(_DyingPort):
        def display(self, image, name):
            time.sleep(0.5)

    with GuardScreen(lambda: Slow([True]), hold_seconds=0.01) as screen:
        start = time.perf_counter()
        for _ in range(20):
            screen.show(decision_view(_decision("Alex Rivera"), STATUS))
        assert time.perf_counter() - start < 0.1  # the door's loop goes on at once


def test_a_night_of_views_keeps_only_the_last_few_names_in_memory(tmp_path):
    """The screen thread remembers the last views drawn, never the whole night's
    holders."""
    port = PngScreen(tmp_path / "frames")
    with GuardScreen(lambda: port, hold_seconds=0, every_frame=True) as screen:
        for n in range(100):
            screen.show(decision_view(_decision(f"Guest {n}"), STATUS))
        assert screen.wait_drawn(60)
        assert len(screen.shown) == 64
        assert screen.shown[-1].holder == "Guest 99"
