"""``scripts/demo --venue``: three real gates and the live view, on this machine.

Starts a mosquitto of its own on 127.0.0.1 (a free port), makes a demo event
whose show started two minutes ago with a roster of three boxes (an entry
and an exit box at the artist entrance, an entry box at the dressing rooms
inside backstage, 20 s' walk apart), each box's device key registered in the
signed roster as at set-up; films each door; runs the three real gate
daemons (``scanner run``, separate processes) on their recordings in real
time, and the live view beside them. Then it prints what the doors decided
and what the live view showed: who is inside, each gate's health, and the
copied pass that was caught live at the inner door.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from ..core.keys import generate_private_key, public_key_text
from ..core.passes import PassContent, encode_pass
from ..core.policy import open_policy, sign_policy
from ..keyfiles import write_key_pair
from ..tools.synthetic import Presentation, background, code_image, render_frame, write_video

__all__ = ["VENUE_BOXES", "find_mosquitto", "run_venue_demo"]

EVENT = "demo-venue"
FPS = 10.0
LENGTH = 40  # seconds of recording at each door
VENUE_BOXES = {  # gate: (door, direction, what the box is)
    "artist-in": ("artist-entrance", "entry", "entry box at the artist entrance"),
    "artist-out": ("artist-entrance", "exit", "exit box at the artist entrance"),
    "dressing-in": ("dressing-rooms", "entry", "entry box at the dressing rooms"),
}
PEOPLE = {  # serial: (holder, tier)
    1: ("Ann Artist", "aaa"),
    2: ("Ben Guest", "vip"),
    3: ("Dora Double", "aaa"),
    4: ("Eli Encore", "aaa"),
}
# Who holds which pass up where, seconds into the recordings; the expected answer.
TIMELINE = [
    (8, "artist-in", 4, "ok", "Eli comes in"),
    (11, "artist-in", 1, "ok", "Ann comes in"),
    (14, "artist-in", 3, "ok", "Dora comes in"),
    (17, "dressing-in", 3, "suspected_copy", "a copy of Dora's pass, 3 s later, 20 s' walk away"),
    (20, "artist-out", 4, "ok", "Eli goes out through the exit box"),
    (24, "artist-in", 4, "ok", "Eli is back: he left, so no lock-out"),
    (28, "dressing-in", 2, "zone_not_allowed", "Ben's VIP pass at the dressing rooms"),
    (33, "dressing-in", 1, "ok", "Ann walks on into the dressing rooms"),
    (36, "artist-in", 4, "already_inside", "Eli's pass handed back out over the fence"),
]


def find_mosquitto() -> Path | None:
    found = shutil.which("mosquitto")
    for candidate in (found, "/usr/sbin/mosquitto", "/usr/bin/mosquitto"):
        if candidate and Path(candidate).exists():
            return Path(candidate)
    return None


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _policy_toml(now: datetime, keys: dict[str, str]) -> str:
    def at(minutes: int) -> str:
        return (now + timedelta(minutes=minutes)).astimezone(UTC).isoformat(timespec="seconds")

    roster = "".join(
        f'\n[gates.{gate}]\ndoor = "{door}"\ndirection = "{direction}"\n'
        f'device_key = "{keys[gate]}"\n'
        for gate, (door, direction, _) in VENUE_BOXES.items()
    )
    return (
        textwrap.dedent(f"""\
        [event]
        id = "{EVENT}"
        name = "Demo Venue Night"
        timezone = "UTC"

        [venue]
        zones = ["backstage", "dressing-rooms", "stage"]
        within = {{ dressing-rooms = "backstage", stage = "backstage" }}
        walk_seconds = 60

        [doors.artist-entrance]
        from = "outside"
        to = "backstage"

        [doors.dressing-rooms]
        from = "backstage"
        to = "dressing-rooms"

        [[walks]]
        doors = ["artist-entrance", "dressing-rooms"]
        seconds = 20

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
        before = ["backstage"]
        during = ["backstage"]
        after = ["backstage"]
        """)
        + roster
    )


def _film(path: Path, gate: str, passes: dict[int, str], seed: int) -> None:
    """The door's camera for the whole demo: nobody, then each person at their second."""
    frames = int(LENGTH * FPS)
    when = {int(t * FPS): serial for t, g, serial, _, _ in TIMELINE if g == gate}
    empty = background(seed)
    rng = np.random.default_rng(seed)

    def all_frames() -> Any:
        i = 0
        while i < frames:
            serial = when.get(i)
            if serial is None:
                yield np.clip(empty + rng.normal(0, 3, empty.shape), 0, 255).astype(np.uint8)
                i += 1
                continue
            code = code_image(passes[serial])
            p = Presentation(passes[serial], frames=6)
            for step in range(6):
                yield render_frame(code, p, seed + serial, step)
            i += 6

    write_video(path, all_frames(), FPS)


@dataclass
class _Gate:
    gate: str
    folder: Path
    config: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None


def _set_up_gates(
    folder: Path, policy: bytes, organizer_pub: Path, devices: dict[str, Any], port: int
) -> list[_Gate]:
    out = []
    for gate in VENUE_BOXES:
        box = folder / gate
        (box / "trust").mkdir(parents=True, exist_ok=True)
        shutil.copy(organizer_pub, box / "trust" / "organizer.pub")
        (box / "event.policy").write_bytes(policy)
        write_key_pair(box, "device", key=devices[gate], force=True)
        config = box / "scanner.toml"
        config.write_text(
            textwrap.dedent(f"""\
            [gate]
            id = "{gate}"
            door_file = ""
            [camera]
            source = "file:{box / "door.avi"}"
            realtime = true
            hold_off_seconds = 2.0
            [gpio]
            factory = "mock"
            [paths]
            policy = "{box / "event.policy"}"
            initial_policy = ""
            trust = ["{box / "trust"}"]
            revocations = "{box / "revocations.signed"}"
            trust_update = "{box / "trust.signed"}"
            db = "{box / "scans.db"}"
            peers = "{box / "peers.db"}"
            control_socket = ""
            build_time = "{box / "build-time"}"
            device_key = "{box / "device.key"}"
            [venue]
            broker = "127.0.0.1:{port}"
            heartbeat_seconds = 1
            stale_seconds = 5
            """)
        )
        out.append(_Gate(gate, box, config, box / "gate.log"))
    return out


def _decisions(gate: _Gate) -> list[dict[str, str]]:
    """The scan lines the daemon logged (logfmt on its standard output)."""
    import shlex

    rows = []
    for line in gate.log.read_text(errors="replace").splitlines():
        if " event=scan " not in line:
            continue
        fields = dict(part.split("=", 1) for part in shlex.split(line) if "=" in part)
        rows.append(fields)
    return rows


def run_venue_demo(
    folder: Path,
    *,
    say: Callable[[str], None] = print,
    screenshot: bool = True,
) -> dict[str, Any]:
    """Run the venue demo in ``folder``; returns what the live view showed and
    each gate's decisions (for the journey test)."""
    mosquitto = find_mosquitto()
    if mosquitto is None:
        raise SystemExit(
            "the venue demo needs mosquitto: run scripts/demo --venue as root (it installs "
            "it), or apt-get install mosquitto"
        )
    try:
        import uvicorn
    except ImportError as err:
        raise SystemExit(
            "the live view needs starlette and uvicorn: run scripts/bootstrap"
        ) from err
    from .bus import PahoBus
    from .live import LiveState, live_app

    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    organizer = generate_private_key()
    keys = write_key_pair(folder / "keys", "organizer", key=organizer, force=True)
    devices = {gate: generate_private_key() for gate in VENUE_BOXES}
    roster = {g: public_key_text(k.public_key()) for g, k in devices.items()}
    signed = sign_policy(_policy_toml(now, roster), organizer, now - timedelta(minutes=5))
    (folder / "event.policy").write_bytes(signed)
    policy = open_policy(signed, [organizer.public_key()])
    passes = {
        serial: encode_pass(
            organizer, PassContent(event=EVENT, serial=serial, tier=tier, holder=holder)
        )
        for serial, (holder, tier) in PEOPLE.items()
    }
    port, web = _free_port(), _free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    broker_log = (folder / "mosquitto.log").open("ab")
    broker = subprocess.Popen(
        [str(mosquitto), "-c", str(conf)], stdout=broker_log, stderr=subprocess.STDOUT
    )
    gates = _set_up_gates(folder, signed, keys.public, devices, port)
    say(f"[venue demo] films each door ({LENGTH} s, {len(TIMELINE)} people at the doors)...")
    for n, gate in enumerate(gates):
        _film(gate.folder / "door.avi", gate.gate, passes, seed=11 + n)
    state = LiveState(policy, PahoBus("127.0.0.1", port, "live-demo"), stale_after=5).start()
    server = uvicorn.Server(
        uvicorn.Config(live_app(state), host="127.0.0.1", port=web, log_level="warning")
    )
    serving = threading.Thread(target=server.run, daemon=True)
    serving.start()
    url = f"http://127.0.0.1:{web}/"
    say(f"[venue demo] mosquitto on 127.0.0.1:{port}; live view on {url}")
    for gate in gates:
        what = VENUE_BOXES[gate.gate][2]
        say(f"[venue demo] gate {gate.gate}: {what}")
    shown: dict[str, Any] = {}
    try:
        for gate in gates:
            with gate.log.open("wb") as out:
                gate.proc = subprocess.Popen(
                    [sys.executable, "-m", "scanner.cli", "run", "--config", str(gate.config)],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
        started = time.monotonic()
        say(f"[venue demo] the three gates run on their recordings ({LENGTH} s, real time)")
        for gate in gates:
            assert gate.proc is not None
            gate.proc.wait(timeout=LENGTH + 60)
        time.sleep(1.5)  # the last messages reach the live view
        shown = state.snapshot()
        shown["decisions"] = {gate.gate: _decisions(gate) for gate in gates}
        shown["exit_codes"] = {gate.gate: gate.proc.returncode for gate in gates if gate.proc}
        shown["seconds"] = round(time.monotonic() - started, 1)
        if screenshot:
            shown["screenshot"] = _screenshot(url, folder)
    finally:
        for gate in gates:
            if gate.proc is not None and gate.proc.poll() is None:
                gate.proc.terminate()
                gate.proc.wait(timeout=10)
        server.should_exit = True
        serving.join(timeout=10)
        state.close()
        broker.terminate()
        broker.wait(timeout=10)
        broker_log.close()
    _tell(shown, say)
    return shown


def _screenshot(url: str, folder: Path) -> str | None:
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        return None
    out = folder / "live-view.png"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                chromium, "--headless", "--no-sandbox", "--disable-gpu",
                f"--user-data-dir={profile}", "--window-size=1280,1000",
                f"--screenshot={out}", url,
            ],
            capture_output=True,
            timeout=60,
            check=False,
        )  # fmt: skip
    return str(out) if out.exists() else None


def _tell(shown: dict[str, Any], say: Callable[[str], None]) -> None:
    if not shown:
        return
    say("")
    say("What each door decided (the gates' own log lines):")
    for gate, rows in shown["decisions"].items():
        for row in rows:
            reason = row.get("reason", "?")
            who = row.get("holder") or f"#{row.get('serial')}"
            say(f"  {gate:12} {row.get('decision', '?'):8} {reason:17} {who}")
    say("")
    say(f"What the live view showed ({shown['at']}, update {shown['version']}):")
    inside = ", ".join(f"{z['zone']} {z['inside']}" for z in shown["zones"] if z["inside"])
    say(f"  inside now: {inside or 'nobody'} ({shown['people']} people, each counted once)")
    for copy in shown["copies"]:
        caught = "caught live, denied" if "suspected_copy" in copy["second"] else "flagged"
        say(
            f"  SUSPECTED COPY #{copy['serial']} ({caught}): {copy['first']}, then "
            f"{copy['second']}: {copy['gap']} s apart, the walk takes {copy['walk']} s"
        )
    if not shown["copies"]:
        say("  suspected copies: none")
    for g in shown["gates"]:
        offset = "" if g["offset"] is None else f", clock {g['clock']} {g['offset']:+.1f} s"
        say(
            f"  gate {g['gate']:12} {g['state']}, heard {g['heard']} s ago, phase {g['phase']}"
            f"{offset}, {g['granted']} granted, {g['denied']} denied"
        )
    if shown.get("screenshot"):
        say(f"  (a picture of the page: {shown['screenshot']})")


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="scripts/demo --venue",
        description="Three real gates sharing their scans through mosquitto, and the live view.",
    )
    parser.add_argument("--venue", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help="keep the demo's files here")
    args = parser.parse_args(argv)
    folder = args.dir or Path(tempfile.mkdtemp(prefix="venue-demo-"))
    shown = run_venue_demo(folder)
    caught = [c for c in shown.get("copies", []) if "suspected_copy" in c["second"]]
    print(f"\n[venue demo] files in {folder}")
    return 0 if caught and all(code == 0 for code in shown["exit_codes"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
