"""``scanner demo``: the real daemon on a simulated backstage door.

Makes a demo event around the current time (keys, a signed policy whose show
started two minutes ago, a handful of passes of different tiers, a forged
one and a revoked one), films people holding them up at angles, blurred and
noisy, with gaps between them, and runs the real gate on that recording with
mock GPIO: every decision and every LED and buzzer change is printed as it
happens, and a summary follows (counts, where the log is, whether its hash
chain verifies). The guard's screen is the PNG fake: every frame it showed
is saved in the demo folder's ``screen/``, and the summary says where.
"""

from __future__ import annotations

import textwrap
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import base45

from ..core.decision import Direction
from ..core.keys import generate_private_key
from ..core.passes import PASS_PREFIX, PassContent, encode_pass
from ..core.policy import open_policy, sign_policy
from ..gate.config import CameraConfig, Config, GateConfig, Paths, ScreenConfig
from ..gate.signals import PinConfig
from ..keyfiles import write_key_pair
from ..record.chain import verify_chain
from ..record.log import ScanLog
from .synthetic import Presentation, presentation_frames, write_video

__all__ = ["DemoEvent", "DemoPass", "make_demo_event", "run_demo"]

EVENT = "demo-night"
REVOKED_SERIAL = 6


@dataclass(frozen=True)
class DemoPass:
    label: str
    text: str
    expect: str  # the reason code the door should give


@dataclass(frozen=True)
class DemoEvent:
    folder: Path
    policy: Path
    trust: Path
    passes: list[DemoPass]
    video: Path | None = None


def demo_policy_toml(now: datetime) -> str:
    """A policy for an event whose show started two minutes before ``now``."""

    def at(minutes: int) -> str:
        return (now + timedelta(minutes=minutes)).astimezone(UTC).isoformat(timespec="seconds")

    return textwrap.dedent(f"""\
        [event]
        id = "{EVENT}"
        name = "Demo Night"
        timezone = "UTC"

        [venue]
        zones = ["stage", "backstage", "green-room", "dressing-rooms", "photo-pit",
                 "catering", "loading-dock"]

        [schedule]
        opens = "{at(-180)}"
        doors = "{at(-60)}"
        show_start = "{at(-2)}"
        show_end = "{at(120)}"
        curfew = "{at(240)}"
        photo_window_minutes = 15

        [tiers.aaa]
        label = "Access All Areas"
        before = ["*"]
        during = ["*"]
        after = ["*"]

        [tiers.vip]
        label = "VIP / Guest"
        before = ["green-room", "backstage"]
        during = ["green-room", "backstage"]
        after = ["green-room", "backstage"]

        [tiers.working]
        label = "Working crew"
        before = ["*", "!dressing-rooms"]
        during = ["*", "!dressing-rooms"]
        after = ["*", "!dressing-rooms"]

        [tiers.local-crew]
        label = "Local crew"
        before = ["stage", "backstage", "loading-dock"]
        after = ["stage", "backstage", "loading-dock"]

        [tiers.photo]
        label = "Photo"
        photo_window = ["photo-pit"]

        [revocations]
        serials = [{REVOKED_SERIAL}]
        """)


def _tamper(text: str, old: str, new: str) -> str:
    """Change the holder name inside a signed pass and keep its signature:
    what a forger editing a real pass gets."""
    raw = base45.b45decode(text[len(PASS_PREFIX) :])
    assert len(old.encode()) == len(new.encode())
    forged = raw.replace(old.encode(), new.encode(), 1)
    return PASS_PREFIX + base45.b45encode(forged).decode("ascii")


def make_demo_event(folder: Path, now: datetime) -> DemoEvent:
    """Keys, the signed policy and the passes of a demo event, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    key = generate_private_key()
    pair = write_key_pair(folder / "keys", "organizer", force=True, key=key)
    policy_path = folder / "event.policy"
    policy_path.write_bytes(sign_policy(demo_policy_toml(now), key, now - timedelta(hours=1)))
    open_policy(policy_path.read_bytes(), [key.public_key()])  # it must verify

    def make(serial: int, tier: str, holder: str, **extra: Any) -> str:
        return encode_pass(key, PassContent(EVENT, serial, tier, holder=holder, **extra))

    alex = make(1, "aaa", "Alex Rivera")
    sam = make(2, "vip", "Sam Okafor")
    passes = [
        DemoPass("Alex Rivera, Access All Areas", alex, "ok"),
        DemoPass("Sam Okafor, VIP", sam, "ok"),
        DemoPass(
            "Lee Chan, local crew (not during the show)",
            make(3, "local-crew", "Lee Chan"),
            "phase_not_allowed",
        ),
        DemoPass(
            "Pat Kowalski, photo pass (photo pit only)",
            make(4, "photo", "Pat Kowalski"),
            "zone_not_allowed",
        ),
        DemoPass(
            "a forged copy of Sam's pass, name edited",
            _tamper(sam, "Sam Okafor", "Sam 0kafor"),
            "bad_signature",
        ),
        DemoPass(
            "Kim Tran, working crew, pass reported lost",
            make(REVOKED_SERIAL, "working", "Kim Tran"),
            "revoked",
        ),
        DemoPass(
            "Jo Park, day pass that ended an hour ago",
            make(7, "working", "Jo Park", not_after=now - timedelta(hours=1)),
            "expired",
        ),
        DemoPass("Alex Rivera again, without having left", alex, "already_inside"),
        DemoPass(
            "a pass signed with somebody else's key",
            encode_pass(generate_private_key(), PassContent(EVENT, 9, "aaa", holder="Eve")),
            "unknown_key",
        ),
    ]
    return DemoEvent(folder, policy_path, pair.public, passes)


# Each presentation held differently: angle, tilt, blur, light, size.
STYLES = [
    dict(roll=5, tilt=10),
    dict(roll=-20, tilt=25, blur=0.6),
    dict(roll=30, tilt=15, noise=8, light=0.7),
    dict(roll=-8, tilt=35),
    dict(roll=12, blur=0.8, module_px=3.5),
    dict(roll=-35, tilt=20, light=0.8),
    dict(roll=3, tilt=40, noise=6),
    dict(roll=18, blur=0.5),
    dict(roll=-12, tilt=10, light=0.9),
]


def film(event: DemoEvent, path: Path, *, fps: float = 10.0, seed: int = 7) -> int:
    """Render the demo recording; returns the number of frames."""
    presentations = [
        Presentation(p.text, frames=12, **STYLES[i % len(STYLES)])  # type: ignore[arg-type]
        for i, p in enumerate(event.passes)
    ]
    return write_video(path, presentation_frames(presentations, gap_frames=25, seed=seed), fps)


def demo_config(event: DemoEvent, *, realtime: bool) -> Config:
    folder = event.folder
    return Config(
        gate=GateConfig(
            id="demo-door", zone="backstage", direction=Direction.ENTRY, door_file=None
        ),
        camera=CameraConfig(source=f"file:{event.video}", realtime=realtime, hold_off_seconds=2.0),
        gpio=PinConfig(strike=23),
        gpio_factory="mock",
        paths=Paths.in_folder(folder, policy=event.policy, trust=(event.trust,)),
        screen=ScreenConfig(kind="png", folder=folder / "screen", hold_seconds=2.0),
        source="demo",
    )


class DoorPrinter:
    """What the demo prints while the gate runs: each decision, then the
    signal the door showed for it by its README name, one line each."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say
        self.decisions: list[tuple[str, str]] = []  # (reason, signal shown)
        self._waiting: str | None = None

    def __call__(self, event: str, **fields: Any) -> None:
        if event == "scan":
            self._waiting = str(fields.get("reason"))
            self.say(f"  {fields.get('message')}")
        elif event == "signal":
            name, shows = fields.get("signal"), fields.get("shows")
            if name == "idle":
                self.say(f"    the door rests: {shows}")
                return
            self.say(f"    the door shows {name}: {shows}")
            if self._waiting is not None:
                self.decisions.append((self._waiting, str(name)))
                self._waiting = None
        elif event in ("start", "ready", "stop"):
            detail = {
                "start": "the gate starts",
                "ready": "frames flow, policy loaded: ready",
                "stop": "the recording has ended",
            }[event]
            self.say(f"  [{detail}]")
        elif event in ("fault", "fault_cleared", "warning"):
            self.say(f"  [{event}: {fields.get('message') or fields.get('fault')}]")


def run_demo(folder: Path, *, realtime: bool = True, say: Callable[[str], None] = print) -> int:
    """Make the event, film it, run the gate on it, summarize. Returns the exit code."""
    from ..core.decision import Reason
    from ..gate.daemon import run_gate

    now = datetime.now(UTC)
    event = make_demo_event(folder, now)
    video = folder / "door-camera.avi"
    frames = film(event, video)
    event = replace(event, video=video)
    say(f"demo event {EVENT!r}: the show started 2 minutes ago; the door leads backstage.")
    say(
        f"{len(event.passes)} people will hold up passes ({frames} frames, "
        f"{frames / 10:.0f} s of video):"
    )
    for number, p in enumerate(event.passes, 1):
        say(f"  {number}. {p.label}  -> expect {p.expect}")
    say("running the real gate; each decision and what the door showed for it:\n")
    db = folder / "scans.db"
    db.unlink(missing_ok=True)
    for suffix in ("-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    screen = folder / "screen"
    for old in screen.glob("*.png"):
        old.unlink()
    door = DoorPrinter(say)
    code = run_gate(demo_config(event, realtime=realtime), emit=door)
    with ScanLog(db, gate="demo-door") as log:
        rows = list(log.scans())
        chain = verify_chain(rows)
    reasons = Counter(r["reason"] for r in rows)
    say("\nsummary")
    say(
        f"  scans logged: {len(rows)} ({reasons.get('ok', 0)} granted, "
        f"{len(rows) - reasons.get('ok', 0)} denied)"
    )
    for reason, count in sorted(reasons.items()):
        say(f"    {reason:<18} {count}")
    expected = [p.expect for p in event.passes]
    got = [r["reason"] for r in rows]
    signalled = all(shown == Reason(reason).signal.value for reason, shown in door.decisions)
    every_one = len(door.decisions) == len(rows)
    say(f"  as expected: {'yes' if got == expected else f'NO (expected {expected})'}")
    say(
        "  door signals: "
        + (
            "one per decision, each the right one"
            if signalled and every_one
            else f"NO ({len(door.decisions)} signals for {len(rows)} decisions)"
        )
    )
    say(f"  hash chain: {'intact' if not chain else f'{len(chain)} problems'}")
    frames = sorted(screen.glob("*.png"))
    decided = [p for p in frames if not p.name.endswith(("-idle.png", "-fault.png"))]
    say(
        f"  what the guard saw: {len(frames)} screen frames ({len(decided)} decisions, the "
        f"rest the idle screen) in {screen}"
    )
    for path in decided[:3]:
        say(f"    {path}")
    say(f"  the log: {db}")
    say(f"  look inside: sqlite-utils rows {db} scans --nl | head")
    say(
        f"  or check a pass: scanner check --policy {event.policy} --trust {event.trust} "
        f"--zone backstage 'BP1:...'  (the text in single quotes: it holds spaces and $)"
    )
    ok = got == expected and not chain and signalled and every_one
    return code if ok else max(code, 1)
