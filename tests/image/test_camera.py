"""A card nobody set up, then a camera that is a real kernel driver (-M virt).

One boot, two stories a technician lives through:

1. The card as flashed, gate.toml untouched (every line commented out). The
   boot must reach its targets (it used to stay "activating" forever), and
   the box must say what is wrong everywhere one looks: systemctl status
   (STATUS names the file), the journal, the fault blink on the red pin (mock
   pins that print), never green, ``scanner phase``, and ``scanner selftest``.
2. The technician fills gate.toml in, and the camera is the kernel's vivid
   driver, which loops what is written to its HDMI video output into its
   HDMI video capture: scanner.service reads /dev/video0 through ``v4l2:``
   exactly as from a USB camera. vivid has no MJPG, so the gate must fall
   back to a raw format and say which (``event=camera``); passes written to
   the output become rows (the grabber thread and the newest-frame policy
   against a real driver streaming 60 frames a second); then the camera is
   unplugged (``rmmod vivid``): the camera fault shows; and plugged back in
   (``modprobe vivid``): the fault clears and passes are granted again.
"""

from __future__ import annotations

import time
from pathlib import Path

from .card import Card, add_reporter, flash_copy, pass_frames, progress
from .conftest import NEEDS_IMAGE_TOOLS
from .qemu import Guest

pytestmark = NEEDS_IMAGE_TOOLS

FEED = "/usr/share/scanner-boottest/camera"  # raw grey frames for vivid's output
STILLS = "/usr/share/scanner-boottest/camera-frames"  # for scanner selftest


def camera_from_vivid(card: Card, material: dict[str, Path], tmp: Path) -> None:
    """Test-only: pass pictures for the guest to write to vivid, the camera
    pointed at vivid's capture device, and pins that print their changes."""
    import cv2

    names = ("aaa", "working", "local-crew", "blank")
    for name, png in zip(names, pass_frames(material, tmp), strict=True):
        grey = cv2.imread(str(png), cv2.IMREAD_GRAYSCALE)
        assert grey.shape == (480, 640)
        raw = tmp / f"{name}.grey"
        raw.write_bytes(grey.tobytes())
        card.root.write(f"{FEED}/{name}.grey", raw)
        if name in ("aaa", "blank"):
            card.root.write(f"{STILLS}/{len(names)}-{name}.png", png)
    config = tmp / "camera.toml"
    config.write_text('[camera]\nsource = "v4l2:/dev/video0"\n')
    card.root.write("/etc/scanner/boot-test.toml", config)
    dropin = tmp / "camera.conf"
    dropin.write_text(
        "[Service]\nExecStart=\n"
        "ExecStart=/usr/bin/scanner run --config /etc/scanner/boot-test.toml --gpio mock-pins\n"
        "TimeoutStartSec=900\nWatchdogSec=120\n")
    card.root.write("/etc/systemd/system/scanner.service.d/boot-test.conf", dropin)


def test_an_unset_door_shows_its_fault_then_a_vivid_camera_feeds_the_gate(built_image,
                                                                          tmp_path):
    started = time.monotonic()
    card = flash_copy(built_image["image"], tmp_path)
    assert b'\nid = ' not in card.boot.read("gate.toml")  # as shipped: nothing set
    camera_from_vivid(card, built_image, tmp_path)
    add_reporter(card)
    guest = Guest(tmp_path, disk=card.image, kernel=card.kernel, initrd=card.initrd,
                  cmdline=card.qemu_cmdline + " boottest=camera")
    progress(f"booting a card with gate.toml as shipped (serial log: {guest.serial})")
    guest.start()
    try:
        unset = guest.wait_for("unset-door", timeout=1200)
        progress(f"unset door after {guest.elapsed():.0f} s: system {unset['system']}, "
                 f"scanner {unset['scanner']['ActiveState']}: {unset['scanner']['StatusText']}")
        # The boot reached its targets; the unit is up, not restarting, and says why.
        assert unset["multi_user"] == "ActiveState=active", unset
        assert unset["system"] in ("running", "degraded"), unset
        assert unset["scanner"]["ActiveState"] == "active", unset
        assert unset["scanner"]["NRestarts"] == "0", unset
        status = unset["scanner"]["StatusText"]
        assert status.startswith("CONFIGURATION FAULT: /boot/firmware/gate.toml is not filled in")
        assert unset["fault_lines"] and "event=fault fault=config" in unset["fault_lines"][0]
        assert unset["red_blinks"] >= 2 and unset["green_on"] == 0, unset
        assert unset["phase_exit"] == 1 and "CONFIGURATION FAULT" in unset["phase_said"]
        selftest = guest.wait_for("selftest-unset", timeout=900)
        progress("scanner selftest on the unset card:\n" + "\n".join(selftest["lines"]))
        assert selftest["returncode"] == 3
        door = [line for line in selftest["lines"] if line.split()[:2] == ["FAULT", "door"]]
        assert door and "gate.toml is not filled in" in door[0], selftest["lines"]
        assert any(line.split()[:2] == ["ok", "camera"] for line in selftest["lines"])

        camera = guest.wait_for("camera", timeout=1200)
        progress(f"vivid as the camera: {camera['fourcc']} {camera['size']}; the gate said: "
                 f"{camera['journal']}")
        said = camera["journal"]
        assert "event=camera camera=v4l2:/dev/video0" in said
        assert "asked=\"MJPG 640x480\"" in said and "offers no MJPG" in said
        assert f"format={camera['fourcc']}" in said and camera["fourcc"] != "MJPG"
        rows = guest.wait_for("camera-rows", timeout=1200)
        progress(f"passes through vivid: {rows}")
        for row in (rows["first"], rows["second"]):
            assert row["decision"] == "granted", row
        # Newest frame, not a queue: after 20 s of blank frames streamed at 60 a
        # second, the next pass is still decided within seconds of being shown.
        assert rows["second"]["seconds_after_shown"] < 60, rows

        gone = guest.wait_for("camera-gone", timeout=900)
        progress(f"rmmod vivid: {gone['journal']}; status: {gone['scanner']['StatusText']}")
        assert not gone["device_exists"]
        assert "fault=camera" in gone["journal"] and "cannot open camera" in gone["journal"]
        assert "faults: camera" in gone["scanner"]["StatusText"]
        assert gone["scanner"]["ActiveState"] == "active"
        back = guest.wait_for("camera-back", timeout=1200)
        progress(f"modprobe vivid: {back['journal']}; {back['row']}")
        assert back["row"]["decision"] == "granted"
        assert back["scanner"]["ActiveState"] == "active"
        assert int(back["scanner"]["NRestarts"]) == 0  # the loop carried on, no restart
    finally:
        guest.stop()
        progress(f"camera boot test took {(time.monotonic() - started) / 60:.1f} min")
