"""The real arm64 SD image boots under QEMU and the gate daemon works in it.

scripts/build-image builds the image exactly as a technician would (with a
test organizer key and a signed policy, through --trust and --policy). The
test then flashes a copy, sets the door in the copy's gate.toml like a
technician, and adds what only the test needs, on the copy alone: a folder
of pass images as the camera, mock GPIO, and a helper unit that reports
from inside the guest. Debian's arm64 kernel and initrd from the boot
partition boot under qemu-system-aarch64 -M virt (the Pi's firmware is not
emulated).

The image is rebuilt when anything that goes into it changes; the key of
that cache is a hash of the repository's files and the test's key and
policy (out/boot-test/). SCANNER_IMAGE_REBUILD=1 forces a build.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from .disk import Ext4Partition, FatPartition, make_usb_stick, partitions
from .qemu import Guest

TOP = Path(__file__).resolve().parents[2]
CACHE = TOP / "out" / "boot-test"
GUEST = Path(__file__).parent / "guest"
SCANNER = [sys.executable, "-m", "scanner.cli"]
FRAMES_DIR = "/usr/share/scanner-boottest/frames"
# Files that go into the image; a change to any of them means a new build.
IMAGE_INPUTS = ("pyproject.toml", "scanner", "config", "systemd", "scripts/build-image",
                "scripts/install-into-root", "scripts/image")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="the image build needs root (chroot)"),
    pytest.mark.skipif(shutil.which("mmdebstrap") is None
                       or shutil.which("qemu-system-aarch64") is None,
                       reason="scripts/bootstrap test installs mmdebstrap and QEMU"),
]


_config: list[pytest.Config] = []


@pytest.fixture(scope="session", autouse=True)
def _progress_on_the_terminal(pytestconfig: pytest.Config):
    _config.append(pytestconfig)
    yield
    _config.clear()


def progress(message: str) -> None:
    """Long steps say what they do on the terminal, past pytest's output capture."""
    line = f"[boot-test] {message}\n"
    capman = _config[0].pluginmanager.getplugin("capturemanager") if _config else None
    if capman is None:
        sys.stderr.write(line)
        return
    with capman.global_and_fixture_disabled():
        sys.stderr.write(line)
        sys.stderr.flush()


def scanner(*args: str) -> str:
    proc = subprocess.run([*SCANNER, *args], cwd=TOP, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, f"scanner {' '.join(args)}: {proc.stderr}"
    return proc.stdout


def policy_text_for(now: datetime) -> str:
    """The example event, moved so that the gate is in the 'before' phase for weeks."""
    text = (TOP / "config" / "example-event.toml").read_text()
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    times = {
        "opens": day - timedelta(days=2),
        "doors": day + timedelta(days=60),
        "show_start": day + timedelta(days=60, hours=2),
        "show_end": day + timedelta(days=60, hours=5),
        "curfew": day + timedelta(days=60, hours=7),
    }
    lines, section = [], ""
    for line in text.splitlines():
        if line.startswith("["):
            section = line.split("#", 1)[0].strip()
        key = line.split("=", 1)[0].strip()
        if section == "[schedule]" and key in times and "=" in line:
            # Without an offset: the event's own time zone, whatever the season.
            line = f"{key} = {times[key].strftime('%Y-%m-%dT%H:%M:%S')}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def organizer_material() -> tuple[Path, Path, Path]:
    """A test organizer key pair and a signed policy valid today (kept in CACHE)."""
    keys = CACHE / "keys"
    key, pub = keys / "organizer.key", keys / "organizer.pub"
    if not key.exists():
        keys.mkdir(parents=True, exist_ok=True)
        scanner("keygen", "--out", str(keys))
    policy = CACHE / "event.policy"
    toml = CACHE / "event.toml"
    # Renewed when it gets near its end, so a cached image is reused for weeks.
    stamp = CACHE / "event.made"
    now = datetime.now(UTC)
    fresh = stamp.exists() and now - datetime.fromisoformat(stamp.read_text().strip()) \
        < timedelta(days=30)
    if not (policy.exists() and fresh):
        toml.write_text(policy_text_for(now))
        scanner("policy", "sign", str(toml), "--key", str(key), "-o", str(policy))
        stamp.write_text(now.isoformat())
    return key, pub, policy


def inputs_hash(*extra: Path) -> str:
    digest = hashlib.sha256()
    paths: list[Path] = []
    for name in IMAGE_INPUTS:
        p = TOP / name
        paths += sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
    for p in [*paths, *extra]:
        if "__pycache__" in p.parts or not p.exists():
            continue
        digest.update(str(p.relative_to(TOP) if p.is_relative_to(TOP) else p.name).encode())
        digest.update(p.read_bytes())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="session")
def built_image() -> dict[str, Path]:
    key, pub, policy = organizer_material()
    build = CACHE / "images" / inputs_hash(pub, policy)
    images = sorted(build.glob("backstage-scanner-*-arm64.img.xz"))
    if images and not os.environ.get("SCANNER_IMAGE_REBUILD"):
        progress(f"reusing {images[-1]} (inputs unchanged)")
    else:
        shutil.rmtree(build, ignore_errors=True)
        build.mkdir(parents=True)
        progress(f"building the image into {build} (log: {build}/build.log)")
        started = time.monotonic()
        with open(build / "build.log", "w") as log:
            proc = subprocess.Popen(
                [str(TOP / "scripts/build-image"), "--out", str(build),
                 "--policy", str(policy), "--trust", str(pub)],
                cwd=TOP, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                if line.startswith("[build-image"):
                    progress(line.rstrip())
            assert proc.wait() == 0, f"build-image failed; see {build}/build.log"
        minutes = (time.monotonic() - started) / 60
        (build / "build-time.txt").write_text(f"{minutes:.1f} min\n")
        for old in build.parent.iterdir():  # images of earlier inputs
            if old != build:
                shutil.rmtree(old, ignore_errors=True)
        progress(f"image built in {minutes:.1f} min")
        images = sorted(build.glob("backstage-scanner-*-arm64.img.xz"))
    assert len(images) == 1, images
    return {"image": images[0], "key": key, "pub": pub, "policy": policy, "dir": build}


def pass_frames(material: dict[str, Path], tmp: Path) -> list[Path]:
    """PNG frames as the camera sees them: passes held up, with empty frames between."""
    import cv2
    import numpy as np

    ledger = tmp / "issued.db"
    passes = []
    for tier, holder in (("aaa", "Ada Lovelace"), ("working", "Grace Hopper"),
                         ("local-crew", "Alan Turing")):
        png = tmp / f"{tier}.png"
        scanner("issue", "--key", str(material["key"]), "--policy", str(material["policy"]),
                "--tier", tier, "--holder", holder, "--png", str(png),
                "--ledger", str(ledger))
        image = cv2.imread(str(png), cv2.IMREAD_GRAYSCALE)
        assert image is not None, png
        # On a 640x480 grey frame, as a camera would deliver it.
        frame = np.full((480, 640), 235, np.uint8)
        scale = min(400 / image.shape[0], 400 / image.shape[1])
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        y, x = (480 - image.shape[0]) // 2, (640 - image.shape[1]) // 2
        frame[y:y + image.shape[0], x:x + image.shape[1]] = image
        out = tmp / f"frame-{tier}.png"
        cv2.imwrite(str(out), frame)
        passes.append(out)
    blank = tmp / "frame-blank.png"
    cv2.imwrite(str(blank), np.full((480, 640), 235, np.uint8))
    return [*passes, blank]


@dataclass
class Card:
    """A flashed copy of the image, with what booting it under QEMU needs."""

    image: Path
    boot: FatPartition
    root: Ext4Partition
    kernel: Path
    initrd: Path
    pi_cmdline: list[str]

    @property
    def qemu_cmdline(self) -> str:
        """The Pi's kernel command line, with QEMU's serial port as the console."""
        return " ".join([a for a in self.pi_cmdline if not a.startswith("console=")]
                        + ["console=ttyAMA0", "systemd.show_status=1"])


def flash_copy(image_xz: Path, tmp: Path) -> Card:
    """Write the image to a "card" (a sparse file) 256 MiB larger than the image."""
    image = tmp / "sd.img"
    subprocess.run(f"xz -dc '{image_xz}' | dd of='{image}' bs=1M conv=sparse status=none",
                   shell=True, check=True)
    with open(image, "r+b") as f:
        f.truncate(image.stat().st_size + 256 * 2**20)
    parts = partitions(image)
    assert [p.type for p in parts] == ["c", "83", "83"]
    boot, root = FatPartition(image, parts[0]), Ext4Partition(image, parts[1])
    names = boot.names()
    kernel = boot.copy_out(next(n for n in names if n.startswith("vmlinuz-")), tmp / "vmlinuz")
    initrd = boot.copy_out(next(n for n in names if n.startswith("initrd.img-")),
                           tmp / "initrd.img")
    return Card(image=image, boot=boot, root=root, kernel=kernel, initrd=initrd,
                pi_cmdline=boot.read("cmdline.txt").decode().split())


def add_reporter(card: Card) -> None:
    """Test-only: the helper unit that reports from inside the guest."""
    card.root.write("/usr/local/sbin/scanner-boottest", GUEST / "scanner-boottest", mode=0o755)
    card.root.write("/etc/systemd/system/scanner-boottest.service",
                    GUEST / "scanner-boottest.service")
    card.root.symlinks({
        "/etc/systemd/system/multi-user.target.wants/scanner-boottest.service":
            "/etc/systemd/system/scanner-boottest.service"})


def set_door_and_camera(card: Card, material: dict[str, Path], tmp: Path) -> None:
    """The technician's gate.toml, and (test-only) frames instead of a camera."""
    assert "gate.toml" in card.boot.names()
    card.boot.write("gate.toml", b'id = "qemu-door-1"\nzone = "backstage"\n'
                    b'direction = "entry"\ntimezone = "Europe/Berlin"\n', tmp)
    # A folder of frames played at one a second, looping through the passes
    # with empty frames between for a quarter of an hour; mock GPIO; the
    # time-outs of a host that emulates arm64 some ten times slower than a Pi.
    frames = pass_frames(material, tmp)
    for index, frame in enumerate(frames):
        card.root.write(f"{FRAMES_DIR}/src-{index}.png", frame)
    sequence = [i for _ in range(150) for i in (0, 3, 1, 3, 2, 3)]
    card.root.symlinks({f"{FRAMES_DIR}/{n:04d}.png": f"src-{index}.png"
                        for n, index in enumerate(sequence)})
    config = tmp / "boot-test.toml"
    config.write_text(f'[camera]\nsource = "file:{FRAMES_DIR}"\nrealtime = true\nfps = 1.0\n')
    card.root.write("/etc/scanner/boot-test.toml", config)
    dropin = tmp / "boot-test.conf"
    dropin.write_text(
        "[Service]\nExecStart=\n"
        "ExecStart=/usr/bin/scanner run --config /etc/scanner/boot-test.toml --gpio mock\n"
        "TimeoutStartSec=900\nWatchdogSec=120\n")
    card.root.write("/etc/systemd/system/scanner.service.d/boot-test.conf", dropin)


def check_usb_export(stick: FatPartition, tmp: Path) -> list[str]:
    """The stick holds a signed export that ``scanner logs verify`` accepts."""
    names = stick.names("/scanner-logs", recursive=True)
    assert any(n.endswith("/manifest.json") for n in names), names
    assert any(n.endswith("/scans.db") for n in names), names
    out = tmp / "from-stick"
    out.mkdir()
    logs = stick.copy_tree_out("/scanner-logs", out)
    exports = sorted({p.parent for p in logs.rglob("manifest.json")})
    verdict = scanner("logs", "verify", *map(str, exports))
    return [line for line in verdict.splitlines() if line]


def test_image_boots_scans_survives_kill_and_power_cut(built_image, tmp_path):
    started = time.monotonic()
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
        exports = check_usb_export(stick, tmp_path)
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
