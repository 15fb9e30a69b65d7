"""The real arm64 SD image boots under QEMU and the gate daemon works in it.

scripts/build-image builds the image exactly as a technician would (with a
test organizer key and a signed policy, through --trust and --policy). The
test then flashes a copy, sets the door in the copy's gate.toml like a
technician, and adds what only the test needs, on the copy alone: a folder
of pass images as the camera, mock GPIO, and a helper unit that reports
from inside the guest. Debian's arm64 kernel and initrd from the boot
partition boot under qemu-system-aarch64 -M virt (the Pi's firmware is not
emulated; test_raspi3b.py boots the same image on QEMU's Raspberry Pi 3B).

The image is rebuilt when anything that goes into it changes; the key of
that cache is a hash of the repository's files and the test's key and
policy (out/boot-test/). SCANNER_IMAGE_REBUILD=1 forces a build.
"""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from .card import (
    add_reporter,
    flash_copy,
    progress,
    scanner,
    set_door_and_camera,
)
from .conftest import NEEDS_IMAGE_TOOLS
from .disk import FatPartition, make_usb_stick
from .qemu import Guest

pytestmark = NEEDS_IMAGE_TOOLS


def check_usb_export(stick: FatPartition, tmp: Path, identity: Path) -> list[str]:
    """The stick holds a signed export, encrypted to the manager's key (no
    holder name in the clear), that ``scanner logs verify`` accepts."""
    names = stick.names("/scanner-logs", recursive=True)
    assert any(n.endswith("/manifest.json") for n in names), names
    assert any(n.endswith("/scans.db.age") for n in names), names
    assert not any(n.endswith(("/scans.db", "/scans.csv")) for n in names), names
    out = tmp / "from-stick"
    out.mkdir()
    logs = stick.copy_tree_out("/scanner-logs", out)
    exports = sorted({p.parent for p in logs.rglob("manifest.json")})
    verdict = scanner("logs", "verify", "--identity", str(identity), *map(str, exports))
    return [line for line in verdict.splitlines() if line]


def test_image_boots_scans_survives_kill_and_power_cut(built_image, tmp_path):
    started = time.monotonic()
    if "given" not in built_image:
        subprocess.run(["sha256sum", "--check", "--quiet", *built_image["dir"].glob("*.sha256")],
                       cwd=built_image["dir"], check=True)
    card = flash_copy(built_image["image"], tmp_path)
    assert "ro" in card.pi_cmdline and "rootwait" in card.pi_cmdline
    assert any(a.startswith("root=PARTUUID=") for a in card.pi_cmdline)
    set_door_and_camera(card, built_image, tmp_path)
    add_reporter(card)

    guest = Guest(tmp_path, disk=card.image, kernel=card.kernel, initrd=card.initrd,
                  cmdline=card.qemu_cmdline)
    progress(f"booting the copy under QEMU (serial log: {guest.serial})")
    guest.start()
    try:
        boot = guest.wait_for("boot", timeout=600)
        progress(f"guest up, helper running after {guest.elapsed():.0f} s")
        assert boot["boot"] == 1
        mounts = boot["mounts"]
        assert mounts["/"].split()[1].split(",")[0] == "ro", mounts
        boot_opts = mounts["/boot/firmware"].split()[1].split(",")
        assert {"ro", "noexec", "nosuid", "nodev"} <= set(boot_opts), mounts
        assert mounts["/var/lib/scanner"].split()[1].split(",")[0] == "rw", mounts
        watchdog = guest.wait_for("watchdog", timeout=60)
        progress(f"hardware watchdog: {watchdog}")
        assert watchdog["RuntimeWatchdogUSec"] == "15s", watchdog
        # Pinged at least once: systemd has opened a hardware watchdog device.
        assert watchdog.get("WatchdogLastPingTimestampMonotonic", "0") != "0", watchdog
        grown = guest.wait_for("data-partition", timeout=60)
        assert grown["size_mib"] > 300, "the data partition did not grow into the card"

        ready = guest.wait_for("ready", timeout=900)
        progress(f"scanner.service ready after {guest.elapsed():.0f} s: {ready['scanner']}")
        rows = guest.wait_for("rows", timeout=600)
        progress(f"scan log: {rows}")
        assert rows["integrity"] == "ok"
        assert rows["decisions"].get("granted", 0) >= 1, rows

        guest.wait_for("killed", timeout=60)
        restarted = guest.wait_for("restarted", timeout=900)
        progress(f"restarted by systemd after SIGKILL at {guest.elapsed():.0f} s: "
                 f"{restarted['scanner']}")
        assert int(restarted["scanner"]["NRestarts"]) >= 1
        after_restart = guest.wait_for("rows-after-restart", timeout=600)

        # A manager's USB stick: udev starts scanner-usb@, which exports the log.
        guest.wait_for("ready-for-usb", timeout=60)
        stick = make_usb_stick(tmp_path / "stick.img")
        guest.plug_usb_stick(stick.image)
        usb = guest.wait_for("usb-done", timeout=600)
        journal = "\n".join(e["line"] for e in guest.events if e["event"] == "usb-journal")
        assert usb["ok"], f"scanner-usb@ failed:\n{journal}"
        guest.unplug_usb_stick()
        progress(f"USB export done at {guest.elapsed():.0f} s")
        selftest = guest.wait_for("selftest", timeout=900)
        output = "\n".join(e["line"] for e in guest.events if e["event"] == "selftest-output")
        progress(f"scanner selftest in the guest exited {selftest['returncode']}:\n{output}")
        assert selftest["returncode"] == 0, output
        failed = guest.wait_for("failed-units", timeout=60)
        assert failed["units"] == [], f"failed units in the guest: {failed['units']}"
        before_reset = guest.wait_for("ready-for-reset", timeout=120)
        assert before_reset["rows"] >= after_restart["rows"]

        time.sleep(2)  # the guest has let go of the stick
        exports = check_usb_export(stick, tmp_path, built_image["key"].with_name("manager.key"))
        progress(f"export on the stick verifies: {exports}")

        time.sleep(3)  # the daemon keeps writing rows: cut the power in the middle
        guest.hard_reset()
        progress(f"hard reset at {guest.elapsed():.0f} s")
        second = guest.wait_for("boot", timeout=600)
        assert second["boot"] == 2
        guest.wait_for("ready", timeout=900)
        after = guest.wait_for("after-reset", timeout=300)
        progress(f"after the reset: {after}")
        assert after["integrity"] == "ok"
        assert after["rows"] >= before_reset["rows"]
    finally:
        guest.stop()
        minutes = (time.monotonic() - started) / 60
        progress(f"boot test took {minutes:.1f} min")
        if "given" not in built_image:
            (built_image["dir"] / "boot-test-time.txt").write_text(f"{minutes:.1f} min\n")


def test_clock_starts_no_earlier_than_the_image_was_built(built_image, tmp_path):
    """A Pi without a clock battery boots in 1970 (here: 2001); systemd moves the
    clock to the image's build time (/usr/lib/clock-epoch) before anything runs."""
    card = flash_copy(built_image["image"], tmp_path)
    add_reporter(card)
    guest = Guest(tmp_path, disk=card.image, kernel=card.kernel, initrd=card.initrd,
                  cmdline=card.qemu_cmdline + " boottest=clock",
                  extra=["-rtc", "base=2001-01-01T00:00:00"])
    guest.start()
    try:
        clock = guest.wait_for("clock", timeout=600)
    finally:
        guest.stop()
    progress(f"clock at boot from a 2001 RTC: {clock}")
    floor = datetime.fromisoformat(clock["build_time"].replace("Z", "+00:00"))
    now = datetime.fromtimestamp(clock["now"], UTC)
    assert abs(clock["clock_epoch"] - floor.timestamp()) < 1
    assert floor <= now < floor + timedelta(hours=1)
