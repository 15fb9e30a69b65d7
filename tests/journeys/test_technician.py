"""The technician's journey on a fresh card, in the order the work is done:
flash, ``sudo scanner selftest`` while gate.toml is still the shipped
template, fill gate.toml in, start the service. What selftest leaves behind
(a scan log under the placeholder gate id, files created as root) must never
keep the service from its own log. The real image walks the same story under
QEMU in ``tests/image/test_camera.py``."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from scanner.cli import cli
from scanner.record.log import ScanLog

from ..conftest import ROOT, example_policy_now
from ..test_config_fault import SCANNER, Systemd, box
from ..test_selftest import recording


def test_a_selftest_on_the_unset_card_does_not_keep_the_filled_in_door_from_its_log(
    gate_dir, make_pass, organizer_key
):
    """The technician's order of work: flash, selftest (gate.toml not filled in
    yet, so the gate is still the placeholder "gate"), fill gate.toml in,
    start the service. The service must get its log, not a storage fault
    saying the log belongs to "gate". The service runs on the real clock, so
    the show is on now."""
    (gate_dir / "event.policy").write_bytes(example_policy_now(organizer_key, timedelta(hours=1)))
    camera = recording(gate_dir, make_pass("aaa", 7, holder="Tech"))
    unset = CliRunner().invoke(cli, [
        "selftest", "--config", str(box(gate_dir)), "--gpio", "mock", "--seconds", "5",
        "--camera", camera])
    assert unset.exit_code == 3 and "FAULT door" in unset.output
    assert (gate_dir / "scans.db").exists()  # selftest opened (and checked) the log

    config = box(gate_dir, 'id = "stage-door"\nzone = "backstage"\ndirection = "entry"\n'
                           'timezone = "Europe/Berlin"\n')
    systemd = Systemd(gate_dir)
    env = {**os.environ, "NOTIFY_SOCKET": str(systemd.path), "PYTHONUNBUFFERED": "1"}
    try:
        proc = subprocess.run([*SCANNER, "run", "--config", str(config), "--camera", camera],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        systemd.collect(time.monotonic() + 1)
    finally:
        systemd.close()
    assert proc.returncode == 0, proc.stderr
    assert "event=fault" not in proc.stdout, proc.stdout
    ready = [m for m in systemd.messages if "READY=1" in m]
    assert ready and ready[0].endswith("faults: none"), systemd.messages
    with ScanLog(gate_dir / "scans.db", gate="stage-door") as log:
        rows = list(log.scans())
    assert rows and {r["gate"] for r in rows} == {"stage-door"}
    # Now it holds rows: it is stage-door's for good.
    other = CliRunner().invoke(cli, [
        "export", "--config", str(config), "--gate", "gate", "--to", str(gate_dir / "stick")])
    assert "this log belongs to gate stage-door, not gate" in other.output


def test_a_typo_in_gate_toml_is_the_door_fault_and_selftest_still_runs_every_check(
    gate_dir, make_pass, organizer_key
):
    """The README says selftest runs every check: a misspelt key in gate.toml
    is the door's fault, and the signals, policy, storage, clock, identity and
    camera are still checked (the camera reads the technician's pass)."""
    (gate_dir / "event.policy").write_bytes(example_policy_now(organizer_key, timedelta(hours=1)))
    camera = recording(gate_dir, make_pass("aaa", 7, holder="Tech"))
    config = box(gate_dir, 'id = "stage-door"\nzone = "backstage"\ndirection = "entry"\n'
                           'timezone = "Europe/Berlin"\ndirecton = "exit"\n')
    result = CliRunner().invoke(cli, [
        "selftest", "--config", str(config), "--gpio", "mock", "--seconds", "5",
        "--camera", camera])
    assert result.exit_code == 3, result.output
    faults = [line for line in result.output.splitlines() if line.startswith("FAULT")]
    assert len(faults) == 1 and faults[0].startswith("FAULT door"), result.output
    assert "direction" in faults[0] and "unknown key" in faults[0]
    for check in ("signals", "policy", "storage", "clock", "identity", "camera"):
        assert any(line.startswith(f"ok    {check}") for line in result.output.splitlines()), (
            check, result.output)
    assert "Traceback" not in result.output


NOBODY = 65534


@pytest.mark.skipif(os.geteuid() != 0, reason="a technician's sudo: needs root")
def test_selftest_run_as_root_leaves_the_log_and_key_to_the_service_user(gate_dir, make_pass):
    """A technician types ``sudo scanner selftest`` on a fresh card, before the
    service ever opened its log. Everything selftest creates in the data
    directory must stay openable by the service's user, or the service starts
    with faults (it once did: policy and storage, READY never sent)."""
    door = 'id = "gate"\nzone = "backstage"\ndirection = "entry"\ntimezone = "Europe/Berlin"\n'
    camera = recording(gate_dir, make_pass("aaa", 5, holder="Tech"))
    # As root, in a root-owned folder: nothing changes hands (and every module
    # selftest needs is imported before the child below gives up root).
    as_root = CliRunner().invoke(cli, [
        "selftest", "--config", str(box(gate_dir, door)), "--gpio", "mock", "--seconds", "5",
        "--camera", camera])
    assert "selftest runs as" not in as_root.output
    assert (gate_dir / "scans.db").stat().st_uid == 0

    data = Path(tempfile.mkdtemp(prefix="selftest-data-", dir="/tmp"))
    try:
        data.chmod(0o755)
        (data / "trust").mkdir(mode=0o755)
        shutil.copy(gate_dir / "trust" / "organizer.pub", data / "trust")
        shutil.copy(gate_dir / "event.policy", data)
        shutil.copy(camera.removeprefix("file:"), data)
        config = box(data, door)
        for path in data.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        os.chown(data, NOBODY, NOBODY)  # the service's user owns its data directory
        read, write = os.pipe()
        child = os.fork()
        if child == 0:  # sudo's process: root until selftest lets go
            code = 70
            try:
                os.close(read)
                result = CliRunner().invoke(cli, [
                    "selftest", "--config", str(config), "--gpio", "mock", "--seconds", "5",
                    "--camera", f"file:{data / Path(camera).name}"])
                os.write(write, result.output.encode())
                code = result.exit_code
            finally:
                os._exit(code)
        os.close(write)
        with os.fdopen(read) as pipe:
            output = pipe.read()
        _, status = os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(status) == as_root.exit_code, output
        assert f"selftest runs as nobody, the owner of {data}" in output
        assert "Traceback" not in output
        # Same checks, same verdicts as the root run.
        def verdicts(said: str) -> list[list[str]]:
            lines = said.splitlines()
            return [line.split()[:2] for line in lines if line[:5] in ("ok   ", "FAULT")]

        assert verdicts(output) == verdicts(as_root.output)
        made = [p for p in data.iterdir() if p.name.startswith(("scans.db", "device.key"))]
        assert {p.name for p in made} >= {"scans.db", "device.key"}
        assert [p.name for p in made if p.stat().st_uid != NOBODY] == []
    finally:
        shutil.rmtree(data)
