"""A venue on the appliance: two boxes of the built image under QEMU, sharing
their scans through a mosquitto on the host, secured as a venue runs it.

The image is the one scripts/build-image makes (the same build as the other
boot tests). Each card is set up as a technician leaves it: gate.toml with
the box's id, the device key the box made at enrolment, and a signed policy
on the data partition (as a USB update leaves it) whose roster holds both
boxes (key and broker login) and whose ``[broker]`` names 10.0.2.100:8883
and the event's CA. The daemon's unit is the shipped one plus what
scanner-sandbox.service generates at boot; the test adds only a camera
(vivid, as in test_camera.py), mock pins and the emulator's longer
time-outs. mosquitto runs on the host's 127.0.0.1 from
``scanner venue broker-config``'s files; the guests reach it only through
QEMU's user networking with ``restrict=on`` and one forward.

The venue: the stage door (outside into backstage) with an entry box, the
loading bay with an exit box, a minute round the building between them
(``through = "outside"``), the default re-entry floor of three minutes. Asserted on the
guests' own logs, their status, and the live view's ``/state``:

- the image listens on nothing; the daemon's sandbox lets it reach the
  broker's address only, and systemd rates it at most 1.5;
- a pass let out at the loading bay and in at the stage door 30 s later is
  denied as a suspected copy;
- someone who came in and left by the loading bay, back at the stage door
  after the walk (so no copy) but before the floor, is refused as already
  inside, and let in after the floor;
- with the broker stopped both boxes decide on, their status says so, and
  once it is back both hold every scan, and the live view sees both in sync.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

from .card import CACHE, TOP, Card, add_reporter, flash_copy, progress
from .conftest import NEEDS_IMAGE_TOOLS
from .qemu import Guest, venue_network

pytestmark = NEEDS_IMAGE_TOOLS

BOXES = {"stage-in": ("stage-door", "entry"), "bay-out": ("loading-bay", "exit")}
# The loading bay's box has a static address (QEMU's user network: 10.0.2.0/24,
# its router at .2); the stage door's takes one by DHCP.
STATIC = {"bay-out": ("10.0.2.16/24", "10.0.2.2")}
# What may listen on a box, as docs/image.md says: nothing but, while the port is
# on DHCP, systemd-networkd's DHCP client, bound to the wired port (port 68: it
# takes only the answers to its own requests).
DHCP_CLIENT = re.compile(
    r'udp +UNCONN .* [0-9.]+%eth0:68 +0\.0\.0\.0:\* +users:\(\("systemd-network"')
PEOPLE = {"Pia Passer": 11, "Quinn Crew": 12, "Rae Later": 13}
FEED = "/usr/share/scanner-boottest/camera"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def venue_policy(now: datetime, roster: str, broker: str) -> str:
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)

    def at(days: float) -> str:
        return (day + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%S")

    return f"""
[event]
id = "example-fest-2026"
name = "Venue boot test"
timezone = "UTC"

[venue]
zones = ["backstage"]

[doors.stage-door]
from = "outside"
to = "backstage"

[doors.loading-bay]
from = "outside"
to = "backstage"

[[walks]]
doors = ["stage-door", "loading-bay"]
through = "outside"
seconds = 60

[schedule]
opens = {at(-2)}
doors = {at(60)}
show_start = {at(60.1)}
show_end = {at(60.2)}
curfew = {at(60.3)}
photo_window_minutes = 15

[tiers.aaa]
label = "Access All Areas"
before = ["*"]
during = ["*"]
after = ["*"]

{roster}
{broker}
"""


def material(tmp: Path) -> dict:
    """The organizer's and the technicians' side: keys, the signed venue
    policy, pass pictures, and the broker's files."""
    import cv2
    import numpy as np

    from scanner.core.keys import generate_private_key, public_key_text
    from scanner.core.passes import PassContent, encode_pass
    from scanner.core.policy import open_policy, sign_policy
    from scanner.keyfiles import load_private_key, write_key_pair, write_secret_file
    from scanner.tools.synthetic import code_image
    from scanner.venue.broker import enrolment_hash, make_ca, write_broker_config

    from .card import organizer_material

    key_path, pub, _ = organizer_material()
    organizer = load_private_key(key_path)
    now = datetime.now(UTC)
    ca_key, ca_cert = make_ca("venue-boot", now)
    write_secret_file(tmp / "broker-ca.key", ca_key, force=True)
    devices = {}
    roster = ""
    for gate, (door, direction) in BOXES.items():
        device = generate_private_key()
        devices[gate] = write_key_pair(tmp / "devices" / gate, "device", key=device)
        roster += (f'\n[gates.{gate}]\ndoor = "{door}"\ndirection = "{direction}"\n'
                   f'device_key = "{public_key_text(device.public_key())}"\n'
                   f'broker_password_hash = "{enrolment_hash(device, gate)}"\n')  # fmt: skip
    broker = f'[broker]\naddress = "10.0.2.100:8883"\nca = """\n{ca_cert.decode()}"""\n'
    signed = sign_policy(venue_policy(now, roster, broker), organizer, now - timedelta(hours=1))
    (tmp / "venue.policy").write_bytes(signed)
    port = free_port()
    files = write_broker_config(open_policy(signed, None), ca_key, tmp / "broker",
                                listen=("127.0.0.1", port), stay_as_me=True)  # fmt: skip
    frames = {}
    for holder, serial in PEOPLE.items():
        text = encode_pass(organizer, PassContent("example-fest-2026", serial, "aaa",
                                                  holder=holder))  # fmt: skip
        frames[holder.split()[0].lower()] = code_image(text)
    frames["blank"] = np.full((120, 160), 235, np.uint8)
    raw = {}
    for name, image in frames.items():
        frame = np.full((480, 640), 235, np.uint8)
        scale = min(400 / image.shape[0], 400 / image.shape[1])
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        y, x = (480 - image.shape[0]) // 2, (640 - image.shape[1]) // 2
        frame[y:y + image.shape[0], x:x + image.shape[1]] = image
        raw[name] = tmp / f"{name}.grey"
        raw[name].write_bytes(frame.tobytes())
    return {"policy": tmp / "venue.policy", "pub": pub, "devices": devices, "port": port,
            "broker": files, "frames": raw}  # fmt: skip


def scanner_ids(card: Card) -> tuple[int, int]:
    passwd = card.root.read("/etc/passwd").decode()
    fields = next(line.split(":") for line in passwd.splitlines() if line.startswith("scanner:"))
    return int(fields[2]), int(fields[3])


def set_up_box(image: Path, gate: str, made: dict, folder: Path) -> tuple[Card, Guest]:
    folder.mkdir()
    card = flash_copy(image, folder)
    door = f'id = "{gate}"\ntimezone = "Europe/Berlin"\n'
    if gate in STATIC:  # this box's LAN has no DHCP: its address comes from gate.toml
        door += f'address = "{STATIC[gate][0]}"\ngateway = "{STATIC[gate][1]}"\n'
    card.boot.write("gate.toml", door.encode(), folder)
    owner = scanner_ids(card)
    device = made["devices"][gate]
    card.data.write("/device.key", device.private, mode=0o600, owner=owner)
    card.data.write("/device.pub", device.public, owner=owner)
    card.data.write("/event.policy", made["policy"], owner=owner)
    for name, raw in made["frames"].items():
        card.root.write(f"{FEED}/{name}.grey", raw)
    config = folder / "camera.toml"
    config.write_text('[camera]\nsource = "v4l2:/dev/video0"\n')
    card.root.write("/etc/scanner/boot-test.toml", config)
    dropin = folder / "camera.conf"  # a camera, mock pins, the emulator's time-outs: no network
    dropin.write_text(
        "[Service]\nExecStart=\n"
        "ExecStart=/usr/bin/scanner run --config /etc/scanner/boot-test.toml --gpio mock-pins\n"
        "TimeoutStartSec=900\nWatchdogSec=120\n")
    card.root.write("/etc/systemd/system/scanner.service.d/boot-test.conf", dropin)
    add_reporter(card)
    guest = Guest(folder, disk=card.image, kernel=card.kernel, initrd=card.initrd,
                  cmdline=card.qemu_cmdline + " boottest=venue", memory_mib=1024,
                  extra=venue_network(folder, made["port"]))  # fmt: skip
    return card, guest


class Broker:
    def __init__(self, conf: Path, log: Path) -> None:
        self.conf, self.log = conf, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(["mosquitto", "-c", str(self.conf)], stdout=out,
                                         stderr=subprocess.STDOUT)  # fmt: skip

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None


def live_state(url: str) -> dict:
    with urllib.request.urlopen(url + "state", timeout=10) as answer:
        return json.loads(answer.read())


def poll(what: str, check, timeout: float, every: float = 5.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"no {what} within {timeout:.0f} s"
        time.sleep(every)


def status_line(guest: Guest) -> str:
    guest.send("status")
    said = guest.wait_for("status", timeout=300)
    return " | ".join(said["phase"])


def test_two_boxes_share_a_venue_through_the_hosts_broker(built_image, tmp_path):
    started = time.monotonic()
    made = material(tmp_path)
    broker = Broker(made["broker"].config, tmp_path / "mosquitto.log")
    broker.start()
    web = free_port()
    live = subprocess.Popen(
        [sys.executable, "-m", "scanner.cli", "live", "--policy", str(made["policy"]),
         "--trust", str(made["pub"]), "--login", str(made["broker"].live_login),
         "--broker", f"127.0.0.1:{made['port']}", "--port", str(web)],
        cwd=TOP, stdout=(tmp_path / "live.log").open("wb"), stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{web}/"
    guests: dict[str, Guest] = {}
    try:
        for gate in BOXES:
            _, guest = set_up_box(built_image["image"], gate, made, tmp_path / gate)
            guests[gate] = guest
        progress("booting two boxes of the venue under QEMU")
        for guest in guests.values():
            guest.start()
        entry, exit_box = guests["stage-in"], guests["bay-out"]
        for gate, guest in guests.items():
            ready = guest.wait_for("ready", timeout=1800)
            progress(f"{gate} ready after {guest.elapsed():.0f} s: {ready['sandbox_said']}")
            assert ready["sandbox"]["Result"] == "success", ready
        poll("both boxes in sync", lambda: all(
            "1 of 1 peers in sync" in status_line(g) for g in guests.values()),
            float(os.environ.get("SCANNER_VENUE_SYNC_WAIT", "600")))
        progress(f"in sync at {time.monotonic() - started:.0f} s")

        # The appliance as shipped: nothing listens; the daemon reaches the broker only.
        for gate, guest in guests.items():
            guest.send("inspect")
            seen = guest.wait_for("inspect", timeout=300)
            progress(f"{gate}: {seen['exposure']}, listening: {seen['listening']}, "
                     f"{seen['addresses']}")  # fmt: skip
            if gate in STATIC:
                assert seen["listening"] == [], seen["listening"]
                assert any(STATIC[gate][0] in line for line in seen["addresses"]), seen
            else:
                assert len(seen["listening"]) == 1, seen["listening"]
                assert DHCP_CLIENT.match(seen["listening"][0]), seen["listening"]
            score = float(seen["exposure"][0].split(":")[1].split()[0])
            assert score <= 1.5, seen
            props = dict(line.split("=", 1) for line in seen["unit"])
            assert set(props["IPAddressAllow"].split()) == {
                "127.0.0.0/8", "::1/128", "10.0.2.100/32"}, props  # fmt: skip
            assert props["IPAddressDeny"] == "any" or set(props["IPAddressDeny"].split()) == {
                "0.0.0.0/0", "::/0"}, props  # fmt: skip
            assert props["PrivateNetwork"] == "no" and "AF_INET" in props[
                "RestrictAddressFamilies"], props
            assert seen["failed"] == [], seen["failed"]

        # Pia's pass let out at the loading bay, in at the stage door 30 s later.
        exit_box.send("show Pia_Passer pia")
        out = exit_box.wait_for("shown", timeout=600)
        assert (out["decision"], out["reason"]) == ("granted", "ok"), out
        poll("the exit at the stage door", lambda: any(
            p[0] == out["id"] for p in rows_of(entry)["peers"]), 300)
        entry.send("show Pia_Passer pia")
        copy = entry.wait_for("shown", timeout=600)
        progress(f"copy: {copy['message']}")
        gap = datetime.fromisoformat(copy["ts"].replace("Z", "+00:00")) - datetime.fromisoformat(
            out["ts"].replace("Z", "+00:00"))
        assert gap < timedelta(seconds=60), gap
        assert (copy["decision"], copy["reason"]) == ("denied", "suspected_copy"), copy

        # Quinn comes in, leaves by the loading bay, and is back: the floor holds.
        entry.send("show Quinn_Crew quinn")
        came = entry.wait_for("shown", timeout=600)
        assert came["decision"] == "granted", came
        exit_box.send("show Quinn_Crew quinn")
        left = exit_box.wait_for("shown", timeout=600)
        assert left["decision"] == "granted", left
        # back after the minute's walk (and the boxes' clock margin): no copy now
        left_at = datetime.fromisoformat(left["ts"].replace("Z", "+00:00"))
        time.sleep(max(0.0, (left_at + timedelta(seconds=80) - datetime.now(UTC)).total_seconds()))
        entry.send("show Quinn_Crew quinn")
        early = entry.wait_for("shown", timeout=600)
        came_at = datetime.fromisoformat(came["ts"].replace("Z", "+00:00"))
        early_at = datetime.fromisoformat(early["ts"].replace("Z", "+00:00"))
        assert early_at - came_at < timedelta(minutes=3), "too slow to show the floor"
        assert (early["decision"], early["reason"]) == ("denied", "already_inside"), early
        assert "cannot come in again for 3 min" in early["message"]
        wait = came_at + timedelta(minutes=3, seconds=5) - datetime.now(UTC)
        time.sleep(max(0.0, wait.total_seconds()))
        entry.send("show Quinn_Crew quinn")
        back = entry.wait_for("shown", timeout=600)
        assert back["decision"] == "granted", back

        # The broker goes away: both decide on, and say so; it comes back: all converge.
        broker.stop()
        for guest in guests.values():
            poll("the status to say the broker is gone",
                 lambda g=guest: "venue: no broker since" in status_line(g), 300)
        entry.send("show Rae_Later rae")
        assert entry.wait_for("shown", timeout=600)["decision"] == "granted"
        exit_box.send("show Rae_Later rae")
        assert exit_box.wait_for("shown", timeout=600)["decision"] == "granted"
        broker.start()

        def converged() -> bool:
            own = {g: [r[0] for r in rows_of(guest)["rows"]] for g, guest in guests.items()}
            peers = {g: [p[0] for p in rows_of(guest)["peers"]] for g, guest in guests.items()}
            return sorted(peers["stage-in"]) == sorted(own["bay-out"]) and sorted(
                peers["bay-out"]) == sorted(own["stage-in"])

        poll("both boxes to hold every scan", converged, 600)
        state = poll("the live view to see both in sync", lambda: (
            s := live_state(url)) and all(g["state"] == "in sync" for g in s["gates"])
            and len(s["gates"]) == 2 and s, 300)  # fmt: skip
        progress(f"converged; live view: {[(g['gate'], g['state']) for g in state['gates']]}")
        assert state["copies_total"] >= 1
        for guest in guests.values():
            guest.send("done")
    except AssertionError:
        for gate, guest in guests.items():  # what each box's journal says of its venue link
            try:
                guest.send("journal")
                lines = guest.wait_for("journal-lines", timeout=120)["lines"]
                progress(f"{gate}'s journal:\n" + "\n".join(lines))
                guest.send("probe")
                progress(f"{gate}'s probe: {guest.wait_for('probe', timeout=120)}")
            except AssertionError as err:
                progress(f"{gate}: no journal ({err})")
        raise
    finally:
        for guest in guests.values():
            guest.stop()
        live.terminate()
        broker.stop()
        minutes = (time.monotonic() - started) / 60
        progress(f"venue boot test took {minutes:.1f} min")
        (CACHE / "venue-boot-test-time.txt").write_text(f"{minutes:.1f} min\n")


def rows_of(guest: Guest) -> dict:
    guest.send("rows")
    return guest.wait_for("rows", timeout=300)
