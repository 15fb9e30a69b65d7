"""An arm64 guest under qemu-system-aarch64 (TCG), watched over its serial log.

The guest's test helper writes ``BOOTTEST {json}`` lines to /dev/kmsg; the
kernel prints them on the serial console, which QEMU writes to a file that
:meth:`Guest.wait_for` reads. The QEMU monitor (a UNIX socket) gives the hard
reset: ``system_reset`` is the power switch, no shutdown, no sync.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

MARKER = re.compile(r"BOOTTEST (\{.*\})|BOOTTEST~(\d+)~(\d+)~(\d+)~(.*)")


class GuestError(AssertionError):
    """The guest did not say what the test waited for."""


class Guest:
    def __init__(self, workdir: Path, *, disk: Path, kernel: Path, initrd: Path,
                 cmdline: str, memory_mib: int = 1536, cpus: int = 2,
                 extra: list[str] | None = None) -> None:
        self.serial = workdir / "serial.log"
        self.monitor = workdir / "monitor.sock"
        self.command = [
            "qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a72",
            "-smp", str(cpus), "-m", str(memory_mib),
            "-nodefaults", "-no-user-config", "-display", "none",
            "-serial", f"file:{self.serial}",
            "-monitor", f"unix:{self.monitor},server,nowait",
            "-kernel", str(kernel), "-initrd", str(initrd), "-append", cmdline,
            "-drive", f"if=none,file={disk},format=raw,id=sd,cache=writeback",
            "-device", "virtio-blk-pci,drive=sd",
            "-device", "virtio-rng-pci",
            "-device", "qemu-xhci,id=usb",
            # A hardware watchdog for systemd's RuntimeWatchdogSec.
            "-device", "i6300esb",
            *(extra or []),
        ]
        self.proc: subprocess.Popen[bytes] | None = None
        self.events: list[dict[str, Any]] = []
        self._seen = 0  # markers parsed from the serial log
        self._parts: dict[str, dict[int, str]] = {}  # long findings, by number
        self._cursor = 0  # events already handed out by wait_for
        self.started = 0.0

    def start(self) -> None:
        """Power on (again): a fresh serial log, nothing heard yet."""
        self.serial.write_bytes(b"")
        self.events, self._seen, self._parts, self._cursor = [], 0, {}, 0
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def _read_events(self) -> None:
        text = self.serial.read_text(errors="replace")
        # Only whole lines: QEMU may be half-way through writing the last one,
        # and a part read short would be counted as seen and never read again.
        text = text[:text.rfind("\n") + 1]
        found = MARKER.findall(text)
        for whole, number, index, count, part in found[self._seen:]:
            raw: str | None = whole
            if not whole:  # one part of a long finding: wait for the last one
                parts = self._parts.setdefault(number, {})
                parts[int(index)] = part.rstrip("\r")
                raw = ("".join(parts[i] for i in range(1, int(count) + 1))
                       if len(parts) == int(count) else None)
            if raw is None:
                continue
            try:
                self.events.append(json.loads(raw))
            except json.JSONDecodeError:
                self.events.append({"event": "garbled", "raw": raw})
        self._seen = len(found)

    def wait_for(self, event: str, timeout: float) -> dict[str, Any]:
        """The next ``event`` from the guest; fails on a guest timeout or QEMU exit."""
        deadline = time.monotonic() + timeout
        while True:
            self._read_events()
            for index in range(self._cursor, len(self.events)):
                item = self.events[index]
                if item.get("event") == event:
                    self._cursor = index + 1
                    return item
                if item.get("event") == "timeout":
                    raise GuestError(f"guest gave up waiting for {item.get('waiting_for')}: "
                                     f"{item}\n{self.tail()}")
            if self.proc is not None and self.proc.poll() is not None:
                output = self.proc.stdout.read().decode(errors="replace") if self.proc.stdout \
                    else ""
                raise GuestError(f"QEMU exited ({self.proc.returncode}) before {event!r}: "
                                 f"{output}\n{self.tail()}")
            if time.monotonic() > deadline:
                raise GuestError(f"no {event!r} from the guest within {timeout:.0f} s\n"
                                 f"{self.tail()}")
            time.sleep(1)

    def tail(self, lines: int = 80) -> str:
        text = self.serial.read_text(errors="replace") if self.serial.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def send(self, line: str) -> None:
        """One line to the guest's helper on its virtio serial port (the
        ``boottest.cmd`` channel, when the guest was given one)."""
        path = self.serial.parent / "commands.sock"
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                    sock.connect(str(path))
                    sock.sendall(line.encode() + b"\n")
                    time.sleep(0.5)  # QEMU hands it on before the socket closes
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)

    def monitor_command(self, command: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(str(self.monitor))
            time.sleep(0.2)
            sock.recv(4096)  # the banner and prompt
            sock.sendall(command.encode() + b"\n")
            time.sleep(0.5)
            return sock.recv(4096).decode(errors="replace")

    def plug_usb_stick(self, image: Path) -> None:
        """Hot-plug ``image`` as a USB mass-storage stick."""
        self.monitor_command(f"drive_add 0 if=none,id=stick,file={image},format=raw")
        self.monitor_command("device_add usb-storage,bus=usb.0,drive=stick,id=stickdev")

    def unplug_usb_stick(self) -> None:
        self.monitor_command("device_del stickdev")

    def hard_reset(self) -> None:
        self.monitor_command("system_reset")

    def power_cut(self) -> None:
        """Pull the plug: QEMU is killed, whatever the guest had not written is
        lost (the disk file keeps what reached it). start() powers on again."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.monitor_command("quit")
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


def venue_network(workdir: Path, broker_port: int) -> list[str]:
    """QEMU arguments for a guest on a venue LAN that is no LAN at all: user
    networking with ``restrict=on`` (no host interface, no bridge, nothing
    routed anywhere), the guest's DHCP from QEMU, and one forward: the
    broker's address, 10.0.2.100 port 8883, to the host's mosquitto on
    127.0.0.1 (a socat per connection, so a stopped broker is a refused
    connection and a restarted one is reached again). Plus the virtio serial
    port the host sends the helper its commands on."""
    forward = f"cmd:socat - TCP:127.0.0.1:{broker_port}"
    return [
        "-netdev", f"user,id=lan,restrict=on,guestfwd=tcp:10.0.2.100:8883-{forward}",
        "-device", "virtio-net-pci,netdev=lan,romfile=",
        "-device", "virtio-serial-pci",
        "-chardev", f"socket,id=commands,path={workdir / 'commands.sock'},server=on,wait=off",
        "-device", "virtserialport,chardev=commands,name=boottest.cmd",
    ]


class RaspberryPi3B(Guest):
    """QEMU's model of the Raspberry Pi 3B (BCM2837: its SD host, GPIO, UARTs),
    booted the way the Pi's firmware boots it: the kernel, initramfs and
    device tree named by config.txt, the command line from cmdline.txt, the
    card as the SD card. Its memory (1 GiB) and four cores are fixed.

    The console is the serial line on GPIO 14/15, the Pi's mini UART (ttyS1,
    as cmdline.txt says): QEMU's second serial port. The first (the PL011)
    belongs to the Bluetooth chip on a real 3B. QEMU 7.2's raspi3b does not
    come back from system_reset (the kernel keeps running, silent): a power
    cut here is :meth:`power_cut` and :meth:`start` again.
    """

    def __init__(self, workdir: Path, *, disk: Path, kernel: Path, initrd: Path, dtb: Path,
                 cmdline: str) -> None:
        self.serial = workdir / "serial.log"
        self.monitor = workdir / "monitor.sock"
        self.command = [
            "qemu-system-aarch64", "-M", "raspi3b",
            "-nodefaults", "-no-user-config", "-display", "none",
            "-serial", "null", "-serial", f"file:{self.serial}",
            "-monitor", f"unix:{self.monitor},server,nowait",
            "-kernel", str(kernel), "-initrd", str(initrd), "-dtb", str(dtb),
            "-append", cmdline,
            "-drive", f"if=sd,file={disk},format=raw,cache=writeback",
        ]
        self.proc = None
        self.events = []
        self._seen = 0
        self._parts = {}
        self._cursor = 0
        self.started = 0.0
