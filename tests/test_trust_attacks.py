"""Attacks on what a gate trusts and on its clock, run the way an attacker
would: signed (or forged, replayed, mangled) files in a stick's
``scanner-update/`` folder, ``scanner import`` and ``scanner update`` through
the real CLI, files written straight onto the gate's data partition, and the
real daemon deciding on a recording afterwards. Each attack must fail, change
nothing on the gate, and leave its refusal in the gate's log."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result

from scanner.cli import cli
from scanner.core.keys import Ed25519PrivateKey, generate_private_key, key_id
from scanner.core.policy import sign_policy
from scanner.core.revocations import sign_revocation_list
from scanner.core.signed import sign_document
from scanner.core.trust import extend_chain
from scanner.gate.clock import FakeClock
from scanner.gate.config import load_config
from scanner.gate.daemon import open_policy_store
from scanner.gate.frames import FakeCamera
from scanner.keyfiles import load_private_key, write_key_pair
from scanner.record.log import ScanLog
from scanner.tools.synthetic import Presentation, background, presentation_frames
from scanner.transfer.updates import install_file, sign_time_setting
from scanner.transfer.usb import handle_stick

from .conftest import EXAMPLE_POLICY, SIGNED_AT
from .test_gate_daemon import Run

EVENT = "example-fest-2026"
EVENING = datetime(2026, 12, 5, 17, 30, tzinfo=UTC)  # 18:30 in Berlin: doors open, no show yet
CURFEW = datetime(2026, 12, 6, 0, 0, tzinfo=UTC)
FAR_FUTURE = datetime(2099, 1, 1, tzinfo=UTC)
SCANNER = [sys.executable, "-m", "scanner.cli"]

CONFIG = """
[gate]
id = "door-1"
zone = "backstage"
door_file = ""

[paths]
policy = "{dir}/event.policy"
initial_policy = ""
revocations = "{dir}/revocations.signed"
trust = ["{dir}/trust"]
trust_update = "{dir}/trust.signed"
db = "{dir}/scans.db"
control_socket = "{dir}/c.sock"
build_time = "{dir}/build-time"
device_key = "{dir}/device.key"

[clock]
set_system_clock = true  # as in the image: only the USB service may honour it
"""


# -- the gate, the stick, the organizer ------------------------------------------


class Gate:
    """A gate's data partition and config, driven as a technician would."""

    def __init__(self, folder: Path, anchor: Ed25519PrivateKey) -> None:
        self.folder = folder
        folder.mkdir()
        write_key_pair(folder / "trust", "organizer", key=anchor)  # the image's key, K0
        (folder / "event.policy").write_bytes(policy(anchor, SIGNED_AT))
        (folder / "build-time").write_text("2026-11-01T00:00:00Z\n")
        self.config_path = folder / "scanner.toml"
        self.config_path.write_text(CONFIG.format(dir=folder))

    def import_(self, stick: Stick) -> Result:
        return CliRunner().invoke(
            cli, ["import", "--config", str(self.config_path), str(stick.root)]
        )

    def config(self) -> Any:
        return load_config(self.config_path)

    def trusted(self) -> set[str]:
        return set(open_policy_store(self.config()).trusted)

    def snapshot(self) -> dict[str, Any]:
        """Everything an update may change: the installed files and the records."""
        files = {}
        for path in sorted(self.folder.iterdir()):
            if path.is_file() and "scans.db" not in path.name and path.name != "usb.lock":
                files[path.name] = path.read_bytes()
        with ScanLog(self.folder / "scans.db", gate="door-1") as log:
            state = dict(log.db.conn.execute("SELECT key, value FROM state").fetchall())
        return {"files": files, "state": state}

    def updates(self) -> list[dict[str, Any]]:
        """The update events in the gate's log, oldest first."""
        with ScanLog(self.folder / "scans.db", gate="door-1") as log:
            return [json.loads(e["detail"]) for e in log.events() if e["kind"] == "update"]

    def scan(self, passes: list[str], at: datetime) -> list[tuple[int | None, str]]:
        """Boot the real daemon at ``at``, hold ``passes`` up, return (serial, reason)
        per scan (no serial when the pass could not be read: no policy, unknown key)."""
        frames = list(presentation_frames([Presentation(p, frames=3) for p in passes]))
        run = Run(self.config(), frames=lambda: FakeCamera(frames), at=at).start()
        assert run.wait() == 0
        self.last_run = run
        with ScanLog(self.folder / "scans.db", gate="door-1") as log:
            rows = list(log.scans())[-len(passes) :]
        return [(r["serial"], r["reason"]) for r in rows]


class Stick:
    """A USB stick's update folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.folder = root / "scanner-update"
        self.folder.mkdir(parents=True)

    def put(self, name: str, data: bytes) -> Stick:
        self.folder.joinpath(name).write_bytes(data)
        return self

    def empty(self) -> Stick:
        shutil.rmtree(self.folder)
        self.folder.mkdir()
        return self


def policy(key: Ed25519PrivateKey, signed_at: datetime, *, event: str = EVENT) -> bytes:
    text = EXAMPLE_POLICY.read_text().replace('id = "example-fest-2026"', f'id = "{event}"')
    return sign_policy(text, key, signed_at)


def organizer(*args: Any, laptop: datetime | None = None) -> Result:
    """The organizer's ``scanner`` command, on a laptop whose clock reads ``laptop``."""
    runner = CliRunner()
    if laptop is None:
        return runner.invoke(cli, [str(a) for a in args])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("scanner.cli.organizer._now", lambda: laptop)
        return runner.invoke(cli, [str(a) for a in args])


@pytest.fixture(autouse=True)
def clock_settime_calls(monkeypatch) -> list[float]:
    """No test may move this machine's clock; what would have been set is recorded."""
    calls: list[float] = []
    monkeypatch.setattr(time, "clock_settime", lambda clock, when: calls.append(when))
    return calls


@pytest.fixture
def gate_clock(monkeypatch) -> FakeClock:
    """The gate's wall clock while ``scanner import`` runs."""
    clock = FakeClock(EVENING)
    monkeypatch.setattr("scanner.transfer.usb.SystemClock", lambda: clock)
    return clock


@pytest.fixture
def gate(tmp_path, organizer_key, gate_clock) -> Gate:
    return Gate(tmp_path / "gate", organizer_key)


@pytest.fixture
def stick(tmp_path) -> Stick:
    return Stick(tmp_path / "stick")


class Keys:
    """K0 (the key in the gates' image) and K1, K2, K3 made with scanner keygen."""

    def __init__(self, folder: Path, k0: Ed25519PrivateKey) -> None:
        self.folder = folder
        write_key_pair(folder, "k0", key=k0)
        for n in (1, 2, 3):
            assert organizer("keygen", "--out", folder, "--name", f"k{n}").exit_code == 0
        self.private = [load_private_key(folder / f"k{n}.key") for n in range(4)]

    def key(self, n: int) -> Path:
        return self.folder / f"k{n}.key"

    def pub(self, n: int) -> Path:
        return self.folder / f"k{n}.pub"

    def id(self, n: int) -> str:
        return key_id(self.private[n])


@pytest.fixture
def keys(tmp_path, organizer_key) -> Keys:
    return Keys(tmp_path / "keys", organizer_key)


def rotate(keys: Keys, chain: Path, n: int) -> bytes:
    """``scanner update keys``: key update ``n`` hands over from K(n-1) to Kn."""
    where = ["--after", chain] if n > 1 else ["-o", chain]
    result = organizer("update", "keys", "--key", keys.key(n - 1), keys.pub(n), *where)
    assert result.exit_code == 0, result.output
    assert f"key update {n}" in result.output
    return chain.read_bytes()


@pytest.fixture
def rotated(gate, stick, keys, tmp_path) -> dict[int, bytes]:
    """A gate taken from K0 through K1 and K2 to K3, one stick at a time, with
    a policy signed by K3; returns the chain as it stood after each update."""
    chain = tmp_path / "org" / "trust.signed"
    chain.parent.mkdir()
    chains = {}
    for n in (1, 2, 3):
        chains[n] = rotate(keys, chain, n)
        result = gate.import_(stick.empty().put("trust.signed", chains[n]))
        assert result.exit_code == 0, result.output
        assert f"(key update {n})" in result.output
    result = gate.import_(
        stick.empty().put("event.policy", policy(keys.private[3], SIGNED_AT + timedelta(days=1)))
    )
    assert result.exit_code == 0, result.output
    stick.empty()
    return chains


def refusals(result: Result) -> dict[str, str]:
    lines = [line.split(": ", 1) for line in result.output.splitlines() if ": " in line]
    return {name: message for name, message in lines if message.startswith("refused")}


# -- key rotation, forward only (findings 2 and 9) -----------------------------------


def test_keys_rotate_three_times_and_a_gate_that_missed_them_catches_up(
    rotated, gate, keys, tmp_path, organizer_key
):
    assert gate.trusted() == {keys.id(3)}
    assert gate.scan([make(keys.private[3], 1)], EVENING) == [(1, "ok")]
    # a gate that was in its box during all three rotations takes the whole chain at once
    late = Gate(tmp_path / "late-gate", organizer_key)
    stick = Stick(tmp_path / "late-stick").put("trust.signed", rotated[3])
    stick.put("event.policy", policy(keys.private[3], SIGNED_AT + timedelta(days=1)))
    result = late.import_(stick)
    assert result.exit_code == 0, result.output
    assert late.trusted() == {keys.id(3)}


def make(key: Ed25519PrivateKey, serial: int, tier: str = "aaa") -> str:
    from scanner.core.passes import PassContent, encode_pass

    return encode_pass(key, PassContent(event=EVENT, serial=serial, tier=tier))


def forked_chain(chains: dict[int, bytes], keys: Keys, retired: int, length: int) -> bytes:
    """What the holder of a retired key Kr can make: the genuine chain up to the
    link that trusts Kr, then links of their own, as long as they like."""
    attacker = generate_private_key()
    chain = chains[retired] if retired else None
    signer = keys.private[retired]
    for _ in range(length - retired):
        chain, _ = extend_chain(chain, signer, [attacker.public_key()], EVENING)
        signer = attacker
    assert chain is not None
    return chain


@pytest.mark.parametrize("retired", [0, 1, 2])
def test_the_holder_of_a_retired_key_can_install_nothing(rotated, gate, stick, keys, retired):
    old = keys.private[retired]
    before = gate.snapshot()
    stick.put("trust.signed", forked_chain(rotated, keys, retired, length=5))
    stick.put("event.policy", policy(old, SIGNED_AT + timedelta(days=2)))
    stick.put("revocations.signed", sign_revocation_list(old, EVENT, [1], EVENING))
    stick.put("time.signed", sign_time_setting(old, event=EVENT, signed_at=EVENING, sequence=9))
    result = gate.import_(stick)
    assert result.exit_code == 1
    refused = refusals(result)
    assert set(refused) == {"trust.signed", "event.policy", "revocations.signed", "time.signed"}
    assert "not the one this gate accepted" in refused["trust.signed"]
    for name in ("event.policy", "revocations.signed", "time.signed"):
        assert "not trusted here" in refused[name]
    assert gate.snapshot() == before
    assert [u["refused"] for u in gate.updates()[-4:]] == [True] * 4
    if retired:
        return  # the door itself is shown once, for the image's own key
    assert gate.scan([make(old, 7), make(keys.private[3], 8)], EVENING) == [
        (None, "unknown_key"),  # a pass signed with a retired key is not even read
        (8, "ok"),
    ]


@pytest.mark.parametrize("rotated_first", [False, True])
def test_a_key_update_signed_by_a_key_it_lists_itself_is_refused(
    request, gate, stick, keys, rotated_first
):
    if rotated_first:
        request.getfixturevalue("rotated")
    attacker = generate_private_key()
    chain, _ = extend_chain(None, attacker, [attacker.public_key()], EVENING)
    before = gate.snapshot()
    result = gate.import_(stick.put("trust.signed", chain))
    assert result.exit_code == 1
    assert "key update 1: the document is signed by key" in result.output
    assert "not trusted here" in result.output
    assert gate.snapshot() == before
    assert gate.updates()[-1]["refused"] is True


def test_a_chain_and_policy_written_onto_the_data_partition_admit_nobody(gate, keys):
    """Write access to /var/lib/scanner is not enough to change whom a gate trusts."""
    attacker = generate_private_key()
    chain, _ = extend_chain(None, attacker, [attacker.public_key()], EVENING)
    (gate.folder / "trust.signed").write_bytes(chain)
    (gate.folder / "event.policy").write_bytes(policy(attacker, SIGNED_AT + timedelta(days=1)))
    assert gate.scan([make(attacker, 1), make(keys.private[0], 2)], EVENING) == [
        (None, "no_policy"),
        (None, "no_policy"),
    ]
    faults = " ".join(f["message"] for f in gate.last_run.named("fault"))
    assert "key update 1" in faults


@pytest.mark.parametrize("attack", ["deleted", "rolled back", "cut in half", "forked by K0"])
def test_a_deleted_cut_or_rolled_back_chain_never_hands_the_gate_back_to_k0(
    rotated, gate, stick, keys, attack, organizer_key
):
    chain_file = gate.folder / "trust.signed"
    if attack == "deleted":
        chain_file.unlink()
    elif attack == "rolled back":
        chain_file.write_bytes(rotated[1])
    elif attack == "cut in half":
        chain_file.write_bytes(rotated[3][: len(rotated[3]) // 2])
    else:
        chain_file.write_bytes(forked_chain(rotated, keys, 0, length=4))
    # ... and the K0-signed policy put back, as the holder of K0 would
    (gate.folder / "event.policy").write_bytes(policy(organizer_key, SIGNED_AT + timedelta(days=3)))
    assert gate.scan([make(keys.private[0], 1), make(keys.private[3], 2)], EVENING) == [
        (None, "no_policy"),
        (None, "no_policy"),
    ]
    faults = " ".join(f["message"] for f in gate.last_run.named("fault"))
    assert "key update 3" in faults and "trusting no organizer key" in faults
    if attack != "deleted":
        return
    # the technician brings the current chain and policy: the gate works again
    stick.put("trust.signed", rotated[3])
    stick.put("event.policy", policy(keys.private[3], SIGNED_AT + timedelta(days=4)))
    result = gate.import_(stick)
    assert result.exit_code == 0, result.output
    assert gate.scan([make(keys.private[3], 3)], EVENING) == [(3, "ok")]


def test_a_running_gate_keeps_its_keys_when_the_chain_vanishes_and_shows_the_fault(
    rotated, gate, keys
):
    run: Run

    def tick(seconds: float) -> None:
        run.clock.advance(seconds)

    script: list[Any] = [
        *presentation_frames([Presentation(make(keys.private[3], 1), frames=3)]),
        lambda: (gate.folder / "trust.signed").unlink(),
        lambda: tick(2),
        background(1).astype(np.uint8),
        *presentation_frames([Presentation(make(keys.private[3], 2), frames=3)]),
    ]
    run = Run(gate.config(), frames=lambda: FakeCamera(script), at=EVENING).start()
    assert run.wait() == 0
    with ScanLog(gate.folder / "scans.db", gate="door-1") as log:
        assert [(r["serial"], r["reason"]) for r in log.scans()] == [(1, "ok"), (2, "ok")]
    (fault,) = [f for f in run.named("fault") if f["fault"] == "policy"]
    assert "missing" in fault["message"] and "keeping the organizer keys" in fault["message"]
    # at the next start there is no good chain: nobody gets in until one comes by stick
    assert gate.scan([make(keys.private[3], 3)], EVENING) == [(None, "no_policy")]


@pytest.mark.parametrize("older", [1, 2])
def test_replaying_an_older_key_update_is_refused(rotated, gate, stick, older):
    before = gate.snapshot()
    result = gate.import_(stick.put("trust.signed", rotated[older]))
    assert result.exit_code == 1
    assert f"ends at key update {older}" in result.output
    assert "already accepted key update 3" in result.output
    assert gate.snapshot() == before


def test_the_current_chain_again_is_already_installed_not_a_failure(rotated, gate, stick):
    result = gate.import_(stick.put("trust.signed", rotated[3]))
    assert result.exit_code == 0
    assert "key update 3 is already installed" in result.output


def test_keys_cannot_be_rolled_back(rotated, gate):
    before = gate.snapshot()
    result = CliRunner().invoke(cli, ["rollback", "keys", "--config", str(gate.config_path)])
    assert result.exit_code == 2
    assert "trust moves forward only" in result.output
    assert gate.snapshot() == before


def test_update_keys_refuses_a_signing_key_the_chain_does_not_trust(keys, tmp_path):
    chain = tmp_path / "trust.signed"
    rotate(keys, chain, 1)
    signed = chain.read_bytes()
    result = organizer("update", "keys", "--key", keys.key(0), keys.pub(2), "--after", chain)
    assert result.exit_code == 2
    assert f"key {keys.id(0)} is not trusted by the chain's last key update" in result.output
    assert chain.read_bytes() == signed


def test_update_keys_never_starts_a_new_chain_over_an_old_one(keys, tmp_path):
    chain = tmp_path / "trust.signed"
    rotate(keys, chain, 1)
    signed = chain.read_bytes()
    result = organizer("update", "keys", "--key", keys.key(1), keys.pub(2), "-o", chain)
    assert result.exit_code == 2 and "--after" in result.output
    assert chain.read_bytes() == signed


# -- revocation lists ----------------------------------------------------------------


def test_an_older_revocation_list_after_a_newer_one_is_refused(gate, stick, organizer_key):
    newer = sign_revocation_list(organizer_key, EVENT, [3, 4], EVENING)
    assert gate.import_(stick.put("revocations.signed", newer)).exit_code == 0
    before = gate.snapshot()
    older = sign_revocation_list(organizer_key, EVENT, [4], EVENING - timedelta(hours=1))
    result = gate.import_(stick.put("revocations.signed", older))
    assert result.exit_code == 1 and "older than the one installed" in result.output
    assert gate.snapshot() == before
    assert gate.scan([make(organizer_key, 3)], EVENING) == [(3, "revoked")]


def test_a_revocation_list_for_another_event_is_refused(gate, stick, organizer_key):
    before = gate.snapshot()
    other = sign_revocation_list(organizer_key, "another-show", [3], EVENING)
    result = gate.import_(stick.put("revocations.signed", other))
    assert result.exit_code == 1 and "another-show" in result.output
    assert gate.snapshot() == before
    assert gate.updates()[-1]["refused"] is True


def test_a_list_that_carries_two_signed_bodies_is_refused_whichever_one_a_reader_would_take(
    gate, stick, organizer_key
):
    """Two genuine lists spliced into one file, each member twice: a reader that
    keeps the first member and one that keeps the last would install different
    lists. Every reader here refuses a name given twice, so the file is refused."""
    before = gate.snapshot()
    one = json.loads(sign_revocation_list(organizer_key, EVENT, [3], EVENING - timedelta(hours=1)))
    two = json.loads(sign_revocation_list(organizer_key, EVENT, [4], EVENING))
    members = [*one.items(), *((k, v) for k, v in two.items() if k in ("signed", "signature"))]
    spliced = "{" + ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in members) + "}"
    result = gate.import_(stick.put("revocations.signed", spliced.encode()))
    assert result.exit_code == 1
    assert "'signed' appears twice" in refusals(result)["revocations.signed"]
    assert gate.snapshot() == before
    assert gate.scan([make(organizer_key, 3), make(organizer_key, 4)], EVENING) == [
        (3, "ok"), (4, "ok")]


# -- time settings (findings 11 and 14) ---------------------------------------------


@pytest.fixture
def org_policy(tmp_path, organizer_key) -> Path:
    path = tmp_path / "org" / "event.policy"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(policy(organizer_key, SIGNED_AT))
    return path


def update_time(keys: Keys, policy_file: Path, *extra: Any, laptop: datetime = EVENING) -> Path:
    out = policy_file.parent / "time.signed"
    result = organizer(
        "update",
        "time",
        "--key",
        keys.key(0),
        "--policy",
        policy_file,
        "-o",
        out,
        *extra,
        laptop=laptop,
    )
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize(
    "case, reason",
    [
        ("another event", "it is for event 'another-show'"),
        ("another gate", "it is for gate door-2; this is gate 'door-1'"),
        ("expired", "it expired at 2026-12-05T16:30:00Z"),
        ("replayed", "time setting 1 was already used here"),
    ],
)
def test_a_time_setting_for_another_event_or_gate_expired_or_replayed_is_refused(
    gate, stick, keys, org_policy, tmp_path, case, reason
):
    if case == "another event":
        other = tmp_path / "other" / "event.policy"
        other.parent.mkdir()
        other.write_bytes(policy(keys.private[0], SIGNED_AT, event="another-show"))
        setting = update_time(keys, other)
    elif case == "another gate":
        setting = update_time(keys, org_policy, "--gate", "door-2")
    elif case == "expired":
        setting = update_time(keys, org_policy, laptop=EVENING - timedelta(hours=5))
    else:
        setting = update_time(keys, org_policy)
        first = gate.import_(stick.put("time.signed", setting.read_bytes()))
        assert first.exit_code == 0, first.output
    before = gate.snapshot()
    result = gate.import_(stick.put("time.signed", setting.read_bytes()))
    assert result.exit_code == 1
    assert reason in refusals(result)["time.signed"]
    assert gate.snapshot() == before
    assert gate.updates()[-1] == {
        "file": "time.signed",
        "applied": False,
        "refused": True,
        "message": refusals(result)["time.signed"],
    }


def test_time_settings_count_up_and_each_is_accepted_once(gate, stick, keys, org_policy):
    for n in (1, 2):
        setting = update_time(keys, org_policy, laptop=EVENING + timedelta(minutes=n))
        result = gate.import_(stick.put("time.signed", setting.read_bytes()))
        assert result.exit_code == 0, result.output
    assert (org_policy.parent / f"{EVENT}.time-sequence").read_text().strip() == "2"
    assert gate.snapshot()["state"]["clock_floor"] == '"2026-12-05T17:32:00Z"'


def test_scanner_import_as_root_never_sets_this_machines_clock(
    gate, stick, keys, org_policy, gate_clock, clock_settime_calls, monkeypatch
):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    gate_clock.set(EVENING - timedelta(hours=3))  # behind: a gate's USB service would set it
    setting = update_time(keys, org_policy)
    result = gate.import_(stick.put("time.signed", setting.read_bytes()))
    assert result.exit_code == 0, result.output
    assert "clock floor raised" in result.output and "clock set" not in result.output
    assert clock_settime_calls == []


def test_only_the_gates_usb_service_moves_the_clock_and_only_when_configured(
    gate, stick, keys, org_policy, gate_clock, clock_settime_calls
):
    gate_clock.set(EVENING - timedelta(hours=3))
    stick.put("time.signed", update_time(keys, org_policy).read_bytes())
    report = handle_stick(gate.config(), stick.root)  # what scanner usb runs on the mounted stick
    assert "time.signed: clock floor raised to 2026-12-05T17:30:00Z, clock set forward" in (
        report.lines
    )
    assert clock_settime_calls == [EVENING.timestamp()]
    # a box whose config does not say set_system_clock = true keeps its clock
    gate.config_path.write_text(gate.config_path.read_text().replace("set_system_clock = true", ""))
    stick.put("time.signed", update_time(keys, org_policy, laptop=EVENING).read_bytes())
    handle_stick(gate.config(), stick.root)
    assert clock_settime_calls == [EVENING.timestamp()]


# -- a wrong time never locks a gate out for good (finding 7) -------------------------


def test_a_far_future_clock_reading_does_not_lock_the_gate_out(gate, organizer_key):
    assert gate.scan([make(organizer_key, 1)], FAR_FUTURE) == [(1, "clock_untrusted")]
    assert gate.scan([make(organizer_key, 2)], EVENING) == [(2, "ok")]


def test_a_quiet_door_still_remembers_the_time_it_saw_when_the_clock_is_wound_back(
    gate, organizer_key
):
    """A door where nobody scanned for hours still keeps the time it saw: the
    running gate saves its clock floor, so after a restart a clock wound back
    (a flat RTC battery, or someone replaying an earlier hour with a copied
    pass) is untrusted, though no scan row carries the later time."""
    idle = [background(2).astype(np.uint8)] * 5
    run = Run(gate.config(), frames=lambda: FakeCamera(idle), at=EVENING + timedelta(hours=3))
    assert run.start().wait() == 0
    assert gate.scan([make(organizer_key, 1)], EVENING + timedelta(hours=1)) == [
        (1, "clock_untrusted")]


def test_a_scan_row_written_on_a_wrong_clock_does_not_lock_the_gate_out(gate, organizer_key):
    with ScanLog(gate.folder / "scans.db", gate="door-1") as log:
        log.record_scan(
            {
                "ts": "2099-01-01T00:00:00Z",
                "zone": "backstage",
                "direction": "entry",
                "event": EVENT,
                "serial": 1,
                "tier": "aaa",
                "decision": "granted",
                "reason": "ok",
                "clock": "trusted",
                "phase": "before",
                "message": "ok",
            }
        )
    assert gate.scan([make(organizer_key, 2)], EVENING) == [(2, "ok")]


def test_a_policy_signed_on_a_laptop_with_a_wrong_clock_does_not_lock_the_gate_out(
    gate, stick, organizer_key
):
    result = gate.import_(stick.put("event.policy", policy(organizer_key, FAR_FUTURE)))
    assert result.exit_code == 0, result.output
    assert gate.scan([make(organizer_key, 1)], EVENING) == [(1, "ok")]


@pytest.fixture
def floor_too_high(gate, stick, organizer_key) -> Gate:
    """A policy signed on a laptop a day and a half fast: believable (before the
    curfew's margin), so it raised the floor, and the door is locked."""
    too_late = CURFEW + timedelta(hours=12)
    assert gate.import_(stick.put("event.policy", policy(organizer_key, too_late))).exit_code == 0
    stick.empty()
    assert gate.scan([make(organizer_key, 1)], EVENING) == [(1, "clock_untrusted")]
    return gate


def test_a_signed_lower_floor_time_setting_recovers_a_locked_gate(
    floor_too_high, stick, keys, org_policy, organizer_key, gate_clock
):
    gate = floor_too_high
    plain = update_time(keys, org_policy)
    refused = gate.import_(stick.put("time.signed", plain.read_bytes()))
    assert refused.exit_code == 1 and "--lower-floor" in refused.output
    gate_clock.set(EVENING + timedelta(minutes=1))
    setting = update_time(keys, org_policy, "--lower-floor", laptop=EVENING)
    result = gate.import_(stick.put("time.signed", setting.read_bytes()))
    assert result.exit_code == 0, result.output
    assert "clock floor lowered from 2026-12-06T12:00:00Z to 2026-12-05T17:30:00Z" in result.output
    assert gate.scan([make(organizer_key, 2)], EVENING + timedelta(minutes=2)) == [(2, "ok")]
    # it holds across restarts: the policy's wrong signing time counts for nothing now
    assert gate.scan([make(organizer_key, 3)], EVENING + timedelta(minutes=3)) == [(3, "ok")]


def test_a_running_gate_follows_a_lowered_floor_from_the_usb_service(
    floor_too_high, stick, keys, org_policy, organizer_key
):
    gate = floor_too_high
    setting = update_time(keys, org_policy, "--lower-floor")
    run: Run
    imported: list[Result] = []

    def usb_stick_comes_in() -> None:
        imported.append(gate.import_(stick.put("time.signed", setting.read_bytes())))
        time.sleep(2.2)  # the daemon looks for a lowered floor every 2 s
        run.clock.advance(2)

    script: list[Any] = [
        *presentation_frames([Presentation(make(organizer_key, 2), frames=3)]),
        usb_stick_comes_in,
        background(2).astype(np.uint8),
        *presentation_frames([Presentation(make(organizer_key, 3), frames=3)]),
    ]
    run = Run(gate.config(), frames=lambda: FakeCamera(script), at=EVENING).start()
    assert run.wait() == 0
    assert imported[0].exit_code == 0, imported[0].output
    with ScanLog(gate.folder / "scans.db", gate="door-1") as log:
        rows = [(r["serial"], r["reason"]) for r in log.scans()][-2:]
    assert rows == [(2, "clock_untrusted"), (3, "ok")]


def test_a_time_setting_beyond_the_events_curfew_is_refused(gate, stick, keys, org_policy):
    before = gate.snapshot()
    setting = update_time(keys, org_policy, laptop=CURFEW + timedelta(days=3))
    result = gate.import_(stick.put("time.signed", setting.read_bytes()))
    assert result.exit_code == 1
    assert "after the latest time this gate can believe" in result.output
    assert gate.snapshot() == before


# -- malformed update files (finding 6) ------------------------------------------------


def _nested() -> bytes:
    return b"[" * 100_000 + b"]" * 100_000


def _surrogate_chain() -> bytes:
    return b'{"format": "backstage-trust-chain-v1", "links": [{"signed": "\\ud800"}]}'


def _signed(kind: str, body: dict[str, Any]) -> Any:
    return lambda key: sign_document(key, kind, body, EVENING)


def _link_listing(keys: Any) -> Callable[[Ed25519PrivateKey], bytes]:
    def chain(key: Ed25519PrivateKey) -> bytes:
        body = {"sequence": 1, "previous": None, "keys": keys}
        envelope = json.loads(sign_document(key, "trust", body, EVENING))
        return json.dumps({"format": "backstage-trust-chain-v1", "links": [envelope]}).encode()

    return chain


_bad_link = _link_listing([5])


MALFORMED = {
    "deeply nested": ("revocations.signed", _nested, "nested deeper than"),
    "lone surrogate": ("trust.signed", _surrogate_chain, "invalid character"),
    "huge": ("event.policy", lambda: b" " * (1024 * 1024 + 1), "at most 1048576"),
    "a fifo": ("time.signed", "fifo", "not a regular file (a device or pipe)"),
    "a link": ("revocations.signed", "link", "a link"),
    "a folder": ("trust.signed", "folder", "not a regular file (a folder)"),
    "text serials": (
        "revocations.signed",
        _signed("revocations", {"event": EVENT, "serials": ["7"]}),
        "serials are not pass serials",
    ),
    "boolean serials": (
        "revocations.signed",
        _signed("revocations", {"event": EVENT, "serials": [True]}),
        "serials are not pass serials",
    ),
    "an event that is a list": (
        "revocations.signed",
        _signed("revocations", {"event": [EVENT], "serials": [1]}),
        "is for event ['example-fest-2026']",
    ),
    "hours as text": (
        "time.signed",
        _signed(
            "time",
            {"event": EVENT, "gates": [], "sequence": 1, "valid_hours": "4", "lower_floor": False},
        ),
        "validity is not between",
    ),
    "the old time format": (
        "time.signed",
        _signed("time", {"now": "2026-12-05T17:00:00Z", "gate": "*"}),
        "not a time setting",
    ),
    "a key that is a number": ("trust.signed", _bad_link, "does not list the keys"),
    # a signed key update naming nobody would leave a gate trusting no key at all
    "a key update of no keys": ("trust.signed", _link_listing([]), "does not list the keys"),
    "keys as one text": (
        "trust.signed", _link_listing("ed25519:" + "A" * 43 + "="), "does not list the keys"
    ),
    "the old key update format": (
        "trust.signed",
        _signed("trust", {"keys": ["ed25519:AAAA"]}),
        "not a key chain",
    ),
    "a policy body of the wrong shape": (
        "event.policy",
        _signed("policy", {"event": 5, "tiers": "all"}),
        "refused",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_update_file_is_refused_with_its_reason_and_the_others_still_apply(
    gate, stick, organizer_key, tmp_path, case
):
    name, make_bad, reason = MALFORMED[case]
    path = stick.folder / name
    if make_bad == "fifo":
        os.mkfifo(path)
    elif make_bad == "link":
        secret = tmp_path / "secret"
        secret.write_text("the gate's private things")
        path.symlink_to(secret)
    elif make_bad == "folder":
        path.mkdir()
    else:
        data = make_bad(organizer_key) if make_bad.__code__.co_argcount else make_bad()
        path.write_bytes(data)
    good = "revocations.signed" if name == "event.policy" else "event.policy"
    good_data = (
        sign_revocation_list(organizer_key, EVENT, [42], EVENING)
        if good == "revocations.signed"
        else policy(organizer_key, SIGNED_AT + timedelta(days=1))
    )
    stick.put(good, good_data)
    result = gate.import_(stick)
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert reason in refusals(result)[name]
    assert (gate.folder / good).read_bytes() == good_data  # the good file beside it applied
    logged = {u["file"]: u for u in gate.updates()}
    assert logged[name]["refused"] and reason in logged[name]["message"]
    assert logged[good]["applied"]
    if name == "trust.signed":
        assert not (gate.folder / "trust.signed").exists()


# -- two USB jobs at once (the suspected race) ---------------------------------------------


def test_two_imports_at_once_tear_no_file_and_take_turns(gate, stick, keys, organizer_key):
    chain, _ = extend_chain(
        None, organizer_key, [organizer_key.public_key(), keys.private[1].public_key()], EVENING
    )
    files = {
        "trust.signed": chain,
        "event.policy": policy(organizer_key, SIGNED_AT + timedelta(days=1)),
        "revocations.signed": sign_revocation_list(
            organizer_key, EVENT, list(range(5000)), EVENING
        ),
    }
    for name, data in files.items():
        stick.put(name, data)
    command = [*SCANNER, "import", "--config", str(gate.config_path), str(stick.root)]
    jobs = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [job.communicate(timeout=120)[0] for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0], outputs
    for name, data in files.items():
        assert (gate.folder / name).read_bytes() == data
    leftovers = [p.name for p in gate.folder.iterdir() if p.name.endswith((".new", ".tmp"))]
    assert leftovers == []
    # one lock: one job applied all three, then the other found them installed
    assert [u["applied"] for u in gate.updates()] == [True, True, True, False, False, False]


def test_a_second_usb_job_waits_for_the_lock_then_gives_up_with_a_reason(
    gate, stick, organizer_key, monkeypatch
):
    monkeypatch.setattr("scanner.transfer.usb.LOCK_WAIT_SECONDS", 0.3)
    stick.put("event.policy", policy(organizer_key, SIGNED_AT + timedelta(days=1)))
    before = gate.snapshot()
    fd = os.open(gate.folder / "usb.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # the first job (another partition of the stick)
        result = gate.import_(stick)
        assert result.exit_code == 1
        assert "another USB job" in result.output and "still working" in result.output
        assert gate.snapshot() == before
    finally:
        os.close(fd)
    assert gate.import_(stick).exit_code == 0


def test_installing_from_two_threads_never_shows_a_reader_half_a_file(tmp_path):
    target = tmp_path / "event.policy"
    payloads = [bytes([n]) * 200_000 for n in (1, 2)]
    install_file(target, payloads[0])
    torn: list[int] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            data = target.read_bytes()
            if data not in payloads:
                torn.append(len(data))

    errors: list[BaseException] = []

    def writer(data: bytes) -> None:
        try:
            for _ in range(100):
                install_file(target, data)
        except BaseException as err:  # an installer that fails loses the update
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(p,)) for p in payloads]
    watcher = threading.Thread(target=reader)
    watcher.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    watcher.join()
    assert errors == [] and torn == []
    assert target.read_bytes() in payloads
    assert target.with_name("event.policy.previous").read_bytes() in payloads
    assert sorted(p.name for p in tmp_path.iterdir()) == ["event.policy", "event.policy.previous"]


# -- a bounded fuzz of the four update files through the real import path ----------------


def _signed_parts(data: bytes) -> set[str]:
    """The signed texts a file carries (one per envelope; every link of a chain)."""
    try:
        value = json.loads(data)
    except ValueError:
        return set()
    envelopes = value.get("links", [value]) if isinstance(value, dict) else []
    return {e.get("signed") for e in envelopes if isinstance(e, dict)} - {None}


@pytest.mark.parametrize(
    "name", ["trust.signed", "event.policy", "revocations.signed", "time.signed"]
)
def test_mangled_update_files_are_refused_with_a_reason_and_never_pass_as_genuine(
    gate, tmp_path, organizer_key, name
):
    import random

    from scanner.gate.daemon import clock_guard
    from scanner.transfer.updates import apply_updates

    from .fuzz.targets import mutate

    chain, _ = extend_chain(None, organizer_key, [organizer_key.public_key()], EVENING)
    genuine = {
        "trust.signed": extend_chain(chain, organizer_key, [organizer_key.public_key()], EVENING)[
            0
        ],
        "event.policy": policy(organizer_key, SIGNED_AT + timedelta(days=1)),
        "revocations.signed": sign_revocation_list(organizer_key, EVENT, [3, 4], EVENING),
        "time.signed": sign_time_setting(
            organizer_key,
            event=EVENT,
            signed_at=EVENING + timedelta(minutes=1),
            sequence=1,
            gates=["door-1"],
        ),
    }
    allowed = _signed_parts(genuine[name])
    rng = random.Random(f"update-{name}")
    config = gate.config()
    outcomes = {"applied": 0, "refused": 0, "unchanged": 0}
    with ScanLog(config.paths.db, gate="door-1") as log:
        store = open_policy_store(config, state=log)
        for i in range(400):
            stick = Stick(tmp_path / f"fuzz-{i}")
            data = genuine[name] if i == 0 else mutate(genuine[name], rng, list(genuine.values()))
            stick.put(name, data)
            (result,) = apply_updates(
                stick.folder,
                store=store,
                state=log,
                guard=clock_guard(config, log, store),
                gate="door-1",
                now=EVENING,
            )
            assert "could not be read (" not in result.message, result.message  # no crash
            assert result.applied or i > 0, result.message  # the genuine file goes in first
            if result.applied:
                assert _signed_parts(data) <= allowed, "an altered update was applied"
            key = "applied" if result.applied else "refused" if result.refused else "unchanged"
            outcomes[key] += 1
            shutil.rmtree(stick.root)
    assert outcomes["refused"] > 300  # the mutations really were hostile
