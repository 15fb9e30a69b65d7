"""A box whose gate.toml nobody filled in: what a technician sees.

The card ships with every line of gate.toml commented out. Under systemd the
daemon must neither exit (a dark door, restarts, a reboot loop) nor keep the
boot "activating" forever: it reports READY with a status that names the
file, feeds the watchdog, blinks the fault, answers ``scanner phase`` with the
fault, and ``scanner selftest`` names it too. These tests run the real
``scanner`` command as systemd would start it: a notify socket, a watchdog
interval, SIGTERM to stop.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from scanner.cli import cli

from .conftest import ROOT
from .test_selftest import recording

SCANNER = [sys.executable, "-m", "scanner.cli"]


def box(gate_dir: Path, door: str | None = None) -> Path:
    """A gate's scanner.toml as on the image, every path inside ``gate_dir``, and
    the door file as shipped (or with ``door`` as its text)."""
    door_file = gate_dir / "gate.toml"
    door_file.write_text(door if door is not None else (ROOT / "config/gate.toml").read_text())
    config = gate_dir / "scanner.toml"
    config.write_text(
        f'[gate]\nid = "gate"\ndoor_file = "{door_file}"\n'
        '[camera]\nsource = "file:/nonexistent"\n'
        '[gpio]\nfactory = "mock"\n'
        "[paths]\n"
        f'policy = "{gate_dir}/event.policy"\ninitial_policy = ""\n'
        f'trust = ["{gate_dir}/trust"]\ntrust_update = "{gate_dir}/trust.signed"\n'
        f'revocations = "{gate_dir}/revocations.signed"\ndb = "{gate_dir}/scans.db"\n'
        f'control_socket = "{gate_dir}/control.sock"\nbuild_time = "{gate_dir}/build-time"\n'
        f'device_key = "{gate_dir}/device.key"\n'
    )
    return config


class Systemd:
    """The service manager's side of sd_notify: a datagram socket that keeps
    every message the daemon sends."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "notify.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.settimeout(0.2)
        self.messages: list[str] = []

    def collect(self, until: float, want: str | None = None) -> None:
        while time.monotonic() < until:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue
            if want is not None and any(want in m for m in self.messages):
                return

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def service(gate_dir: Path):
    """``scanner run`` started the way scanner.service starts it."""
    systemd = Systemd(gate_dir)
    config = box(gate_dir)
    env = {**os.environ, "NOTIFY_SOCKET": str(systemd.path), "WATCHDOG_USEC": "2000000",
           "PYTHONUNBUFFERED": "1"}
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen([*SCANNER, "run", "--config", str(config)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield proc, systemd, gate_dir
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        systemd.close()


def test_an_unfilled_gate_toml_under_systemd_is_up_names_the_file_and_never_admits(service):
    proc, systemd, gate_dir = service
    systemd.collect(time.monotonic() + 60, want="READY=1")
    ready = [m for m in systemd.messages if "READY=1" in m]
    assert ready, f"no READY from the daemon: {systemd.messages}"
    # The boot goes on; the status a technician sees says what to do.
    status = ready[0].split("STATUS=", 1)[1]
    assert status.startswith("CONFIGURATION FAULT:"), status
    assert f"{gate_dir / 'gate.toml'} is not filled in" in status
    assert "set id, zone, direction and timezone" in status
    # Alive and doing its job (holding the fault), so the watchdog is fed.
    systemd.collect(time.monotonic() + 3)
    assert sum(m == "WATCHDOG=1" for m in systemd.messages) >= 2

    # The crew asking the gate gets the fault, not a phase table.
    asked = CliRunner().invoke(cli, ["phase", "--socket", str(gate_dir / "control.sock")])
    assert asked.exit_code == 1
    assert "this gate is not scanning: CONFIGURATION FAULT" in asked.output
    # A phase change is refused too: nothing about this door is known.
    moved = CliRunner().invoke(cli, ["phase", "during", "--socket",
                                     str(gate_dir / "control.sock")])
    assert moved.exit_code == 1 and "CONFIGURATION FAULT" in moved.output

    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "Error: configuration:" in err and "Traceback" not in err
    assert "event=fault fault=config" in out
    assert 'signal=idle shows="red blink every 2 s, silent"' in out
    assert "signal=granted" not in out and "signal=ready" not in out
    assert not (gate_dir / "scans.db").exists() or "granted" not in (
        gate_dir / "scans.db").read_bytes().decode(errors="ignore")


def test_selftest_names_the_unset_door_and_still_checks_the_rest(gate_dir, make_pass):
    config = box(gate_dir)
    result = CliRunner().invoke(cli, [
        "selftest", "--config", str(config), "--gpio", "mock", "--seconds", "5",
        "--camera", recording(gate_dir, make_pass("aaa", 5, holder="Tech"))])
    assert result.exit_code == 3, result.output
    lines = result.output.splitlines()
    door = [line for line in lines if line.split()[:2] == ["FAULT", "door"]]
    assert door and "gate.toml is not filled in" in door[0], result.output
    # The other checks ran: the technician gets the whole picture at once.
    for name in ("signals", "storage", "identity", "camera"):
        assert any(line.split()[1:2] == [name] for line in lines if line.strip()), name
    assert "selftest: 1 fault(s)" in result.output or "fault(s)" in result.output


def test_selftest_on_a_filled_in_door_reports_where_it_stands(gate_dir, make_pass):
    config = box(gate_dir, 'id = "door-9"\nzone = "backstage"\ndirection = "entry"\n'
                           'door = "artist-entrance"\n')
    result = CliRunner().invoke(cli, [
        "selftest", "--config", str(config), "--gpio", "mock", "--seconds", "5",
        "--camera", recording(gate_dir, make_pass("aaa", 6, holder="Tech"))])
    door = [line for line in result.output.splitlines() if line.split()[1:2] == ["door"]]
    assert door and door[0].startswith("ok"), result.output
    assert "door-9" in door[0] and "artist-entrance" in door[0] and "backstage" in door[0]
