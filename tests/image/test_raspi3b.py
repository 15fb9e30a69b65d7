"""The same SD image boots on QEMU's Raspberry Pi 3B: the Pi's own hardware model.

The -M virt test shares nothing with a Pi but the CPU. Here the card boots
as a Pi 3B's firmware would boot it: config.txt and cmdline.txt are read
from the card's FAT partition and the files they name (kernel=, initramfs,
the board's device tree by the firmware's upstream name) are what QEMU
loads, so a wrong name in config.txt fails this test; the card image is the
SD card (padded to a power of two, which QEMU's SD model needs). It proves
on the Pi's hardware model that

* the initramfs finds the root through the Pi's SD host (sdhost-bcm2835);
* scanner.service, hardened as shipped, drives the LEDs, the buzzer and the
  door strike through lgpio on the BCM2835 GPIO chip: the pins are read back
  inside the guest (/sys/kernel/debug/gpio) while passes are decided;
* it reaches READY (the time from power-on is printed), grants passes from a
  recording (the frames and the config live on the data partition; a
  drop-in points the camera at them), and after a power cut while rows are
  written (QEMU killed, then started again on the same card: this model does
  not come back from system_reset) the log is intact.

What the firmware does and QEMU does not, the test does to the device tree
copy: it adds /system/linux,revision (a 3B's revision code), which the Pi's
firmware writes into every tree it loads and gpiozero reads to know the
board. Emulation artifacts, said where they are handled: QEMU 7.2's BCM2835
power-management block resets the board the moment the watchdog is armed,
so this boot alone blacklists bcm2835_wdt (the watchdog stays tested under
-M virt); and the model has no real-time clock, so the host's time is set
early by a test unit, as a DS3231 would (scanner-rtc.service).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from .card import (
    GUEST,
    Card,
    add_reporter,
    check_boards,
    flash_copy,
    pass_frames,
    progress,
    write_frames,
)
from .conftest import NEEDS_IMAGE_TOOLS
from .qemu import RaspberryPi3B

pytestmark = NEEDS_IMAGE_TOOLS

# A Raspberry Pi 3 Model B, revision 1.2, made by Sony UK: what the firmware
# of such a board writes as /system/linux,revision.
PI3B_REVISION = 0xA02082
DATA = "/boottest"  # on the data partition, mounted at /var/lib/scanner


def firmware_fixups(dtb: Path) -> None:
    """What the Pi's firmware adds to the device tree it passes to the kernel."""
    subprocess.run(["fdtput", "-c", str(dtb), "/system"], check=True)
    subprocess.run(["fdtput", "-t", "x", str(dtb), "/system", "linux,revision",
                    f"{PI3B_REVISION:x}"], check=True)
    subprocess.run(["fdtput", "-t", "x", str(dtb), "/system", "linux,serial", "0", "3b0071"],
                   check=True)


def boot_as_the_firmware_would(card: Card, tmp: Path) -> tuple[Path, Path, Path, list[str]]:
    """The kernel, initramfs, device tree and command line a Pi 3B's firmware
    takes from this card, by config.txt."""
    boards = check_boards()
    pi3b = next(b for b in boards.BOARDS if b.name == "Pi 3 B")
    files = boards.boot_files(card.boot.read("config.txt").decode(), pi3b)
    names = card.boot.names()
    missing = [name for name in files.files if name not in names]
    assert not missing, f"config.txt names files the card does not have: {missing}"
    kernel = card.boot.copy_out(files.kernel, tmp / "pi-kernel")
    initrd = card.boot.copy_out(files.initramfs, tmp / "pi-initramfs")
    dtb = card.boot.copy_out(files.dtb, tmp / files.dtb)
    firmware_fixups(dtb)
    return kernel, initrd, dtb, card.boot.read(files.cmdline).decode().split()


def set_door_on_data_partition(card: Card, material: dict[str, Path], tmp: Path) -> None:
    """gate.toml as a technician writes it; the recording, its config and a strike
    pin on the data partition (test-only), and a drop-in pointing the
    service at them. GPIO stays the real one."""
    card.boot.write("gate.toml", b'id = "pi3b-door"\nzone = "backstage"\n'
                    b'direction = "entry"\ntimezone = "Europe/Berlin"\n', tmp)
    frames = pass_frames(material, tmp, forged=True)  # aaa, working, crew, forged, blank
    write_frames(card.data, f"{DATA}/frames", frames, (0, 4, 3, 4, 1, 4, 2, 4), 100)
    config = tmp / "pi-scanner.toml"
    config.write_text(f'[camera]\nsource = "file:/var/lib/scanner{DATA}/frames"\n'
                      'realtime = true\nfps = 1.0\n[gpio]\nstrike = 23\n')
    card.data.write(f"{DATA}/scanner.toml", config)
    dropin = tmp / "pi-boot-test.conf"
    dropin.write_text(
        "[Service]\nExecStart=\n"
        f"ExecStart=/usr/bin/scanner run --config /var/lib/scanner{DATA}/scanner.toml\n"
        # Emulated, a Pi 3B is many times slower than the real one.
        "TimeoutStartSec=1800\nWatchdogSec=300\n")
    card.root.write("/etc/systemd/system/scanner.service.d/boot-test.conf", dropin)
    card.root.write("/etc/systemd/system/scanner-boottest-clock.service",
                    GUEST / "scanner-boottest-clock.service")
    card.root.symlinks({
        "/etc/systemd/system/sysinit.target.wants/scanner-boottest-clock.service":
            "/etc/systemd/system/scanner-boottest-clock.service"})


def test_the_image_boots_grants_and_survives_a_power_cut_on_a_raspberry_pi_3b(built_image,
                                                                              tmp_path):
    started = time.monotonic()
    card = flash_copy(built_image["image"], tmp_path, power_of_two=True)
    kernel, initrd, dtb, cmdline = boot_as_the_firmware_would(card, tmp_path)
    set_door_on_data_partition(card, built_image, tmp_path)
    add_reporter(card)
    args = [*cmdline, "modprobe.blacklist=bcm2835_wdt", "boottest=pi",
            f"boottest.now={time.time():.0f}"]
    guest = RaspberryPi3B(tmp_path, disk=card.image, kernel=kernel, initrd=initrd, dtb=dtb,
                          cmdline=" ".join(args))
    progress(f"booting the card on QEMU's raspi3b (serial log: {guest.serial}); "
             f"command line: {' '.join(args)}")
    guest.start()
    try:
        boot = guest.wait_for("boot", timeout=1800)
        progress(f"raspi3b up after {guest.elapsed():.0f} s: {boot['root']}")
        root = boot["root"]
        assert root["model"].startswith("Raspberry Pi 3 Model B"), root
        assert root["source"].startswith("/dev/mmcblk0p"), root
        assert root["driver"] == "sdhost-bcm2835", root  # the Pi's own SD host
        assert "bcm2835" in root["mmc_modules"], root  # loaded by the initramfs
        assert any("Run /init" in line for line in root["kernel_said"]), root
        assert boot["mounts"]["/"].split()[1].split(",")[0] == "ro", boot["mounts"]
        assert guest.wait_for("data-partition", timeout=300)["size_mib"] > 300

        ready = guest.wait_for("ready", timeout=3600)
        to_ready = guest.elapsed()
        progress(f"scanner.service READY {to_ready:.0f} s after power-on "
                 f"({ready['after_kernel_s']} s after the kernel started)")
        (tmp_path / "raspi3b-ready-seconds").write_text(f"{to_ready:.0f}\n")

        gpio = guest.wait_for("gpio", timeout=1800)
        changes = gpio["changes"]
        progress(f"pins seen on: {gpio['seen_on']}; hardened unit: {gpio['sandbox']}")
        progress("pin changes: " + ", ".join(
            f"{c['pin']} {'on' if c['on'] else 'off'}{' (as found)' if c['initial'] else ''}"
            for c in changes[:30]))
        # Driven by the daemon itself through lgpio (the consumer of each line).
        assert {c["consumer"] for c in changes} == {"lg"}, changes
        assert {c["dir"] for c in changes} == {"out"}, changes
        assert set(gpio["seen_on"]) == {"green", "red", "buzzer", "strike"}, gpio
        sandbox = gpio["sandbox"]
        assert sandbox["user"] == "scanner" and sandbox["device_policy"] == "closed", sandbox
        assert "gpio" in sandbox["groups"], sandbox
        assert sandbox["gpiochip0"] == {"group": "gpio", "mode": "0o660"}, sandbox
        assert "char-gpiochip rw" in sandbox["device_allow"], sandbox
        # The strike opens with a grant, never on its own: each time it switches
        # on, green has switched on with it (the same instant, give or take a poll).
        switched = [c for c in changes if not c["initial"]]
        strikes = [c for c in switched if c["pin"] == "strike" and c["on"]]
        assert strikes, changes
        for strike in strikes:
            assert any(c["pin"] == "green" and c["on"] and abs(c["t"] - strike["t"]) < 1.0
                       for c in switched), changes
        assert gpio["rows"]["decisions"].get("granted", 0) >= 1, gpio["rows"]

        failed = guest.wait_for("failed-units", timeout=600)
        assert failed["units"] == [], f"failed units: {failed['units']}"
        before = guest.wait_for("ready-for-reset", timeout=600)
        progress(f"scan log before the power cut: {before}")
        time.sleep(3)  # the daemon keeps writing rows: cut the power in the middle
        guest.power_cut()
        progress("power cut (QEMU killed); powering on again")
        guest.start()
        second = guest.wait_for("boot", timeout=1800)
        assert second["boot"] == 2
        guest.wait_for("ready", timeout=3600)
        after = guest.wait_for("after-reset", timeout=600)
        progress(f"after the power cut: {after}")
        assert after["integrity"] == "ok"
        assert after["rows"] >= before["rows"]
    finally:
        guest.stop()
        minutes = (time.monotonic() - started) / 60
        progress(f"raspi3b boot test took {minutes:.1f} min")
