"""``scripts/demo --venue``: three real gates and the live view, on this machine.

Sets up the venue as an organizer and technicians would: the event's broker
CA (``scanner venue ca``), a demo event whose show started two minutes ago
with a roster of three boxes (an entry and an exit box at the artist
entrance, an entry box at the dressing rooms inside backstage, 20 s' walk
apart; backstage holds 4 people), each box's device key and broker login on
the signed roster as ``scanner venue enrol`` prints them, and mosquitto from
``scanner venue broker-config``'s files: TLS on 127.0.0.1 (a free port), a
login per box, the ACL. Films each door; runs the three real gate daemons
(``scanner run``, separate processes) on their recordings in real time, and
the live view beside them with its read-only login. Then it prints what the
doors decided and what the live view showed: who is inside, each gate's
health, and the copied pass that was caught live at the inner door; the
live view stays up until Ctrl-C.
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
from ..keyfiles import write_key_pair, write_secret_file
from ..venue.broker import enrolment_hash, make_ca, read_login, tls_context, write_broker_config
from .synthetic import Presentation, background, code_image, render_frame, write_video

__all__ = ["VENUE_BOXES", "find_mosquitto", "run_venue_demo"]

EVENT = "demo-venue"
FPS = 10.0
LENGTH = 82  # seconds of recording at each door
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
    5: ("Fay Friend", "vip"),
}
# Who holds which pass up where, seconds into the recordings; the expected answer.
TIMELINE = [
    (8, "artist-in", 4, "ok", "Eli comes in"),
    (11, "artist-in", 1, "ok", "Ann comes in"),
    (14, "artist-in", 3, "ok", "Dora comes in"),
    (17, "dressing-in", 3, "suspected_copy", "a copy of Dora's pass, 3 s later, 20 s' walk away"),
    (20, "artist-out", 4, "ok", "Eli goes out through the exit box"),
    (24, "artist-in", 4, "already_inside", "Eli's pass back 16 s after he came in: the door's "
     "1-minute floor holds, whatever the exit box saw (shown to it and passed back?)"),
    (27, "artist-in", 2, "ok", "Ben comes in"),
    (35, "dressing-in", 1, "ok", "Ann walks on into the dressing rooms"),
    (52, "dressing-in", 2, "zone_not_allowed", "Ben's VIP pass at the dressing rooms"),
    (72, "artist-in", 4, "ok", "Eli is back after the minute: he left, so he is let in"),
    (76, "artist-in", 4, "already_inside", "Eli's pass handed back out over the fence"),
    (79, "artist-in", 5, "zone_full", "Fay: backstage holds its 4"),
]  # fmt: skip
CAPACITY = 4  # people backstage
REENTRY_MINUTES = 1


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


def _policy_toml(
    now: datetime, devices: dict[str, Any], broker: tuple[int, bytes]
) -> str:
    def at(minutes: int) -> str:
        return (now + timedelta(minutes=minutes)).astimezone(UTC).isoformat(timespec="seconds")

    roster = "".join(  # each box's entry as scanner venue enrol prints it
        f'\n[gates.{gate}]\ndoor = "{door}"\ndirection = "{direction}"\n'
        f'device_key = "{public_key_text(devices[gate].public_key())}"\n'
        f'broker_password_hash = "{enrolment_hash(devices[gate], gate)}"\n'
        for gate, (door, direction, _) in VENUE_BOXES.items()
    )
    port, ca = broker
    broker_table = f'\n[broker]\naddress = "127.0.0.1:{port}"\nca = """\n{ca.decode()}"""\n'

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
        capacity = {{ backstage = {CAPACITY} }}

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

        [rules]
        reentry_minutes = {REENTRY_MINUTES}
        """)
        + roster
        + broker_table
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
    folder: Path, policy: bytes, organizer_pub: Path, devices: dict[str, Any]
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
    keep_serving: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the venue demo in ``folder``; returns what the live view showed and
    each gate's decisions (for the journey test). ``keep_serving(url)`` is
    called once the doors are done, with the live view still up (the demo
    waits there for Ctrl-C)."""
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
    from ..venue.bus import PahoBus
    from ..venue.live import LiveState, live_app

    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    organizer = generate_private_key()
    keys = write_key_pair(folder / "keys", "organizer", key=organizer, force=True)
    ca_key, ca_cert = make_ca("demo", now)
    write_secret_file(folder / "keys" / "broker-ca.key", ca_key, force=True)
    devices = {gate: generate_private_key() for gate in VENUE_BOXES}
    port, web = _free_port(), _free_port()
    signed = sign_policy(
        _policy_toml(now, devices, (port, ca_cert)), organizer, now - timedelta(minutes=5)
    )
    (folder / "event.policy").write_bytes(signed)
    policy = open_policy(signed, [organizer.public_key()])
    files = write_broker_config(
        policy, ca_key, folder / "broker", listen=("127.0.0.1", port), stay_as_me=True
    )
    passes = {
        serial: encode_pass(
            organizer, PassContent(event=EVENT, serial=serial, tier=tier, holder=holder)
        )
        for serial, (holder, tier) in PEOPLE.items()
    }
    broker_log = (folder / "mosquitto.log").open("ab")
    broker = subprocess.Popen(
        [str(mosquitto), "-c", str(files.config)], stdout=broker_log, stderr=subprocess.STDOUT
    )
    gates = _set_up_gates(folder, signed, keys.public, devices)
    say(f"[venue demo] films each door ({LENGTH} s, {len(TIMELINE)} people at the doors)...")
    for n, gate in enumerate(gates):
        _film(gate.folder / "door.avi", gate.gate, passes, seed=11 + n)
    assert policy.broker is not None
    bus = PahoBus(
        "127.0.0.1",
        port,
        "live-demo",
        tls=tls_context(policy.broker.ca_pem),
        login=read_login(files.live_login),
    )
    state = LiveState(policy, bus, stale_after=5).start()
    server = uvicorn.Server(
        uvicorn.Config(live_app(state), host="127.0.0.1", port=web, log_level="warning")
    )
    serving = threading.Thread(target=server.run, daemon=True)
    serving.start()
    url = f"http://127.0.0.1:{web}/"
    say(f"[venue demo] live view: {url}  (open it now; it stays up until Ctrl-C)")
    say(
        f"[venue demo] mosquitto on 127.0.0.1:{port}: TLS with the event's CA, a login per "
        f"box, the ACL ({files.folder})"
    )
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
            gate.proc.wait(timeout=LENGTH + 90)
        time.sleep(1.5)  # the last messages reach the live view
        shown = state.snapshot()
        shown["decisions"] = {gate.gate: _decisions(gate) for gate in gates}
        shown["exit_codes"] = {gate.gate: gate.proc.returncode for gate in gates if gate.proc}
        shown["seconds"] = round(time.monotonic() - started, 1)
        if screenshot:
            shown["screenshot"] = _screenshot(url, folder)
        _tell(shown, say)
        if keep_serving is not None:
            keep_serving(url)
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
        caught = "caught live, denied" if copy.get("caught") else "flagged"
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


def _wait_for_ctrl_c(url: str) -> None:
    print(f"\n[venue demo] the doors are done; the live view is still up at {url}")
    print("[venue demo] press Ctrl-C to stop it", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print()


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="scripts/demo --venue",
        description="Three real gates sharing their scans through mosquitto (TLS, a login "
        "per box, an ACL), and the live view, which stays up until Ctrl-C.",
    )
    parser.add_argument("--venue", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help="keep the demo's files here (else removed)")
    parser.add_argument(
        "--no-wait", action="store_true", help="stop the live view when the doors are done"
    )
    args = parser.parse_args(argv)
    folder = args.dir or Path(tempfile.mkdtemp(prefix="venue-demo-"))
    try:
        shown = run_venue_demo(folder, keep_serving=None if args.no_wait else _wait_for_ctrl_c)
    finally:
        if args.dir is None:
            shutil.rmtree(folder, ignore_errors=True)
    if args.dir is not None:
        print(f"\n[venue demo] files in {folder}")
    return 0 if evening_went_as_planned(shown) else 1


def evening_went_as_planned(shown: dict[str, Any]) -> bool:
    """The demo's verdict (its exit code): the copy was caught live and every
    door stopped cleanly."""
    caught = [c for c in shown.get("copies", []) if c.get("caught")]
    return bool(caught) and all(code == 0 for code in shown["exit_codes"].values())


if __name__ == "__main__":
    sys.exit(main())
