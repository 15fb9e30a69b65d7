"""The boot tests read the guest's findings from its serial log while QEMU is
still writing it: a finding caught half-written must still arrive whole."""

from __future__ import annotations

import json
from pathlib import Path

from .qemu import Guest


def _guest(tmp_path: Path) -> Guest:
    return Guest(tmp_path, disk=tmp_path / "sd.img", kernel=tmp_path / "vmlinuz",
                 initrd=tmp_path / "initrd", cmdline="")


def test_a_long_finding_read_while_its_last_part_is_half_written_still_arrives(tmp_path):
    guest = _guest(tmp_path)
    finding = json.dumps({"event": "selftest-unset", "lines": ["ok storage " * 20]})
    half = len(finding) // 2
    first, second = finding[:half], finding[half:]
    guest.serial.write_text(f"[ 88.0] BOOTTEST~2~1~2~{first}\n[ 88.1] BOOTTEST~2~2~2~{second[:9]}")
    guest._read_events()
    assert guest.events == []
    with guest.serial.open("a") as serial:
        serial.write(f"{second[9:]}\n")
    guest._read_events()
    assert guest.events == [json.loads(finding)]


def test_a_short_finding_half_written_is_read_once_it_is_whole(tmp_path):
    guest = _guest(tmp_path)
    guest.serial.write_text('[ 1.0] BOOTTEST {"event": "ready", "uptime": 1')
    guest._read_events()
    with guest.serial.open("a") as serial:
        serial.write('2.5}\r\n')
    guest._read_events()
    assert guest.events == [{"event": "ready", "uptime": 12.5}]
