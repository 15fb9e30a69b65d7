"""What the boot tests share: the test organizer's key and policy, the image
build (cached by a hash of its inputs), pass frames as a camera sees them,
and a "card": a flashed copy of the image, patched like a technician (and,
for the test's eyes only, a reporter unit) before it boots under QEMU.
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
from importlib.machinery import SourceFileLoader
from importlib.util import module_from_spec, spec_from_loader
from pathlib import Path
from types import ModuleType

import pytest

from .disk import Ext4Partition, FatPartition, partitions

TOP = Path(__file__).resolve().parents[2]
CACHE = TOP / "out" / "boot-test"
GUEST = Path(__file__).parent / "guest"
SCANNER = [sys.executable, "-m", "scanner.cli"]
FRAMES_DIR = "/usr/share/scanner-boottest/frames"
# Files that go into the image; a change to any of them means a new build.
IMAGE_INPUTS = ("pyproject.toml", "scanner", "config", "systemd", "scripts/build-image",
                "scripts/install-into-root", "scripts/image")

_config: list[pytest.Config] = []


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
    """A test organizer key pair and a signed policy valid today that names a
    test manager's key for exports (kept in CACHE)."""
    keys = CACHE / "keys"
    key, pub = keys / "organizer.key", keys / "organizer.pub"
    if not key.exists():
        keys.mkdir(parents=True, exist_ok=True)
        scanner("keygen", "--out", str(keys))
    if not (keys / "manager.key").exists():
        scanner("keygen", "--manager", "--out", str(keys))
    recipient = (keys / "manager.pub").read_text().strip()
    policy = CACHE / "event.policy"
    toml = CACHE / "event.toml"
    # Renewed when it gets near its end, so a cached image is reused for weeks.
    stamp = CACHE / "event.made"
    now = datetime.now(UTC)
    fresh = stamp.exists() and now - datetime.fromisoformat(stamp.read_text().strip()) \
        < timedelta(days=30) and toml.exists() and recipient in toml.read_text()
    if not (policy.exists() and fresh):
        toml.write_text(policy_text_for(now) + f'\n[export]\nrecipients = ["{recipient}"]\n')
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


def build_image() -> dict[str, Path]:
    """The image built from this checkout (cached), with the test organizer's
    material. SCANNER_BOOT_IMAGE=FILE.img.xz boots that image file instead."""
    key, pub, policy = organizer_material()
    given = os.environ.get("SCANNER_BOOT_IMAGE")
    if given:
        image = Path(given).resolve()
        progress(f"booting the given image {image} (SCANNER_BOOT_IMAGE)")
        return {"image": image, "key": key, "pub": pub, "policy": policy, "dir": image.parent,
                "given": image}
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


def pass_frames(material: dict[str, Path], tmp: Path, *, forged: bool = False) -> list[Path]:
    """PNG frames as the camera sees them: passes held up, with empty frames
    between (the last one). With ``forged``, a fourth pass signed with a
    stranger's key comes before the blank."""
    import cv2
    import numpy as np

    ledger = tmp / "issued.db"
    pngs = []
    for tier, holder in (("aaa", "Ada Lovelace"), ("working", "Grace Hopper"),
                         ("local-crew", "Alan Turing")):
        png = tmp / f"{tier}.png"
        scanner("issue", "--key", str(material["key"]), "--policy", str(material["policy"]),
                "--tier", tier, "--holder", holder, "--png", str(png),
                "--ledger", str(ledger))
        pngs.append((tier, png))
    if forged:  # the organizer's tools refuse a stranger's key; a forger has their own
        import segno

        from scanner.core.keys import private_key_from_seed
        from scanner.core.passes import PassContent, encode_pass

        text = encode_pass(private_key_from_seed(b"forger".ljust(32, b"!")),
                           PassContent(event="example-fest-2026", serial=99, tier="vip",
                                       holder="Eve Forger"))
        png = tmp / "forged.png"
        segno.make(text, error="m").save(png, kind="png", scale=8, border=4)
        pngs.append(("forged", png))
    passes = []
    for tier, png in pngs:
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
    data: Ext4Partition
    kernel: Path
    initrd: Path
    pi_cmdline: list[str]

    @property
    def qemu_cmdline(self) -> str:
        """The Pi's kernel command line, with QEMU's serial port as the console."""
        return " ".join([a for a in self.pi_cmdline if not a.startswith("console=")]
                        + ["console=ttyAMA0", "systemd.show_status=1"])


def flash_copy(image_xz: Path, tmp: Path, *, power_of_two: bool = False) -> Card:
    """Write the image to a "card" (a sparse file) 256 MiB larger than the image,
    or, for QEMU's SD card model, to the next power of two in size."""
    image = tmp / "sd.img"
    subprocess.run(f"xz -dc '{image_xz}' | dd of='{image}' bs=1M conv=sparse status=none",
                   shell=True, check=True)
    size = image.stat().st_size + 256 * 2**20
    if power_of_two:
        size = 1 << (size - 1).bit_length()
    with open(image, "r+b") as f:
        f.truncate(size)
    parts = partitions(image)
    assert [p.type for p in parts] == ["c", "83", "83"]
    boot, root = FatPartition(image, parts[0]), Ext4Partition(image, parts[1])
    names = boot.names()
    kernel = boot.copy_out(next(n for n in names if n.startswith("vmlinuz-")), tmp / "vmlinuz")
    initrd = boot.copy_out(next(n for n in names if n.startswith("initrd.img-")),
                           tmp / "initrd.img")
    return Card(image=image, boot=boot, root=root, data=Ext4Partition(image, parts[2]),
                kernel=kernel, initrd=initrd,
                pi_cmdline=boot.read("cmdline.txt").decode().split())


def check_boards() -> ModuleType:
    """scripts/image/check-boards as a module: its reading of config.txt is the
    firmware's, for the boot test as for the static proof."""
    loader = SourceFileLoader("check_boards", str(TOP / "scripts/image/check-boards"))
    spec = spec_from_loader("check_boards", loader)
    assert spec is not None
    module = module_from_spec(spec)
    sys.modules["check_boards"] = module  # dataclasses look their module up
    loader.exec_module(module)
    return module


def write_frames(part: Ext4Partition, folder: str, frames: list[Path],
                 order: tuple[int, ...], repeat: int) -> None:
    """A folder of frames played in ``order``, ``repeat`` times (symbolic links
    to one copy of each picture)."""
    for index, frame in enumerate(frames):
        part.write(f"{folder}/src-{index}.png", frame)
    sequence = [i for _ in range(repeat) for i in order]
    part.symlinks({f"{folder}/{n:04d}.png": f"src-{index}.png"
                   for n, index in enumerate(sequence)})


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
    write_frames(card.root, FRAMES_DIR, pass_frames(material, tmp), (0, 3, 1, 3, 2, 3), 150)
    config = tmp / "boot-test.toml"
    config.write_text(f'[camera]\nsource = "file:{FRAMES_DIR}"\nrealtime = true\nfps = 1.0\n')
    card.root.write("/etc/scanner/boot-test.toml", config)
    dropin = tmp / "boot-test.conf"
    dropin.write_text(
        "[Service]\nExecStart=\n"
        "ExecStart=/usr/bin/scanner run --config /etc/scanner/boot-test.toml --gpio mock\n"
        "TimeoutStartSec=900\nWatchdogSec=120\n")
    card.root.write("/etc/systemd/system/scanner.service.d/boot-test.conf", dropin)
