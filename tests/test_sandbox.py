"""The box's network and the daemon's sandbox, as the boot sets them up
(``scanner sandbox``, scanner-sandbox.service): a static address from
gate.toml or DHCP, and the daemon reaching the verified policy's broker and
nothing else, or no network at all.

As a technician: a typo in gate.toml names the key and leaves DHCP. As an
attacker: only a verified policy opens the sandbox, a plan handed to root
cannot smuggle a line into a unit file, and root never reads gate.toml or
the policy itself.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from scanner.cli import cli
from scanner.core.policy import sign_policy
from scanner.errors import ConfigError
from scanner.gate.config import read_door_file
from scanner.gate.sandbox import (
    DROPIN_NAME,
    NETWORK_NAME,
    SandboxPlan,
    apply_plan,
    make_plan,
    network_file,
    plan_from_json,
    plan_privately,
    venue_dropin,
)

from .conftest import EXAMPLE_POLICY, SIGNED_AT
from .test_config_fault import box
from .test_units import host_unit_dir
from .venue_support import SecureBroker


def door(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gate.toml"
    path.write_text('id = "stage-door"\nzone = "backstage"\n' + text)
    return path


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('address = "192.168.1.21"\n', r"address: '192.168.1.21' needs its prefix length"),
        ('address = "192.168.1.300/24"\n', r"address: '192.168.1.300/24' is not an address"),
        ('address = "192.168.1.0/24"\n', r"is the network itself"),
        ('gateway = "192.168.1.1"\n', r"gateway: a gateway needs a static address"),
        ('address = "192.168.1.21/24"\ngateway = "10.0.0.1"\n',
         r"gateway: 10.0.0.1 is not on 192.168.1.0/24"),
        ('dns = ["1.1.1.1"]\n', r"dns: unknown key"),
    ],
)  # fmt: skip
def test_a_network_mistake_in_gate_toml_names_the_key(tmp_path, text, says):
    with pytest.raises(ConfigError, match=says):
        read_door_file(door(tmp_path, text))


def test_a_static_address_becomes_networkds_file_and_none_means_dhcp(tmp_path):
    settings = read_door_file(door(tmp_path, 'address = "192.168.1.21/24"\n'
                                              'gateway = "192.168.1.1"\n'))  # fmt: skip
    plan = SandboxPlan(settings["address"], settings["gateway"])
    text = network_file(plan)
    assert text is not None
    assert "Address=192.168.1.21/24" in text and "Gateway=192.168.1.1" in text
    assert "Type=ether" in text
    assert network_file(SandboxPlan()) is None  # the image's own file: DHCP


def test_only_the_brokers_address_is_let_through(tmp_path):
    text = venue_dropin(SandboxPlan(broker=("192.168.1.10", 8883)))
    assert text is not None
    assert "IPAddressAllow=localhost 192.168.1.10/32" in text
    assert "RestrictAddressFamilies=AF_UNIX AF_INET\n" in text
    assert "PrivateNetwork=no" in text
    assert "IPAddressDeny" not in text  # the unit's own deny-all stays
    six = venue_dropin(SandboxPlan(broker=("fd00::10", 8883)))
    assert six is not None and "IPAddressAllow=localhost fd00::10/128" in six
    assert "AF_UNIX AF_INET AF_INET6\n" in six
    assert venue_dropin(SandboxPlan()) is None


@pytest.mark.parametrize(
    "crafted",
    [
        '{"address": "10.0.0.2/24\\nExecStart=/bin/sh", "gateway": null, "broker": null, '
        '"notes": []}',
        '{"address": null, "gateway": null, "broker": ["10.0.0.1\\nPrivateNetwork=no", 1], '
        '"notes": []}',
        '{"address": null, "gateway": null, "broker": ["10.0.0.1", 0], "notes": []}',
        '{"address": null, "gateway": "10.0.0.1", "broker": null, "notes": []}',
        '{"address": "10.0.0.2/24", "gateway": "10.9.9.9", "broker": null, "notes": []}',
        '{"address": null, "gateway": null, "broker": null, "notes": [], "extra": 1}',
        '[1, 2, 3]',
        '{' * 5000,
    ],
)
def test_a_plan_handed_to_root_cannot_smuggle_anything_into_a_unit(crafted):
    with pytest.raises(ConfigError):
        plan_from_json(crafted)


def test_apply_writes_removes_and_reloads_only_when_the_sandbox_changes(tmp_path):
    reloads = []
    dirs = {"network_dir": tmp_path / "network", "dropin_dir": tmp_path / "dropin"}
    venue = SandboxPlan("192.168.1.21/24", None, ("192.168.1.10", 8883))
    assert apply_plan(venue, reload=lambda: reloads.append(1), **dirs) == {
        "network": True, "sandbox": True}  # fmt: skip
    assert (tmp_path / "network" / NETWORK_NAME).exists()
    assert (tmp_path / "dropin" / DROPIN_NAME).exists()
    assert apply_plan(venue, reload=lambda: reloads.append(1), **dirs) == {
        "network": False, "sandbox": False}  # fmt: skip
    assert len(reloads) == 1
    apply_plan(SandboxPlan(), reload=lambda: reloads.append(1), **dirs)
    assert not (tmp_path / "network" / NETWORK_NAME).exists()
    assert not (tmp_path / "dropin" / DROPIN_NAME).exists()  # back to no network at all
    assert len(reloads) == 2


def test_only_a_verified_policy_opens_the_sandbox(gate_dir, organizer_key, other_key):
    secure = SecureBroker.make(gate_dir / "ca", port=8883)
    text = EXAMPLE_POLICY.read_text() + secure.table("10.0.2.100:8883")
    config = box(gate_dir, 'id = "stage-door"\nzone = "backstage"\n')
    (gate_dir / "event.policy").write_bytes(sign_policy(text, organizer_key, SIGNED_AT))
    assert make_plan(config).broker == ("10.0.2.100", 8883)
    # the same policy signed by a key the gate does not trust: nothing opens
    (gate_dir / "event.policy").write_bytes(sign_policy(text, other_key, SIGNED_AT))
    plan = make_plan(config)
    assert plan.broker is None
    assert any("no verified policy" in note for note in plan.notes)
    # a policy without a broker: no network at all
    (gate_dir / "event.policy").write_bytes(
        sign_policy(EXAMPLE_POLICY.read_text(), organizer_key, SIGNED_AT)
    )
    assert make_plan(config).broker is None


def test_a_bad_gate_toml_leaves_dhcp_and_says_why(gate_dir):
    config = box(gate_dir, 'id = "stage-door"\nzone = "backstage"\naddress = "10.0.0.5"\n')
    plan = make_plan(config)
    assert plan.address is None
    assert any("network: DHCP" in n and "needs its prefix length" in n for n in plan.notes)


@pytest.mark.skipif(os.geteuid() != 0, reason="the privilege drop needs root")
def test_root_never_reads_gate_toml_or_the_policy_itself(tmp_path):
    """As root, the plan is made in a child that runs as the data directory's
    owner; root only reads the plan back."""
    state = tmp_path / "state"
    state.mkdir()
    os.chown(state, 65534, 65534)

    def who(_config):
        return SandboxPlan(notes=(f"uid {os.geteuid()} gid {os.getegid()}",))

    plan = plan_privately(None, state, make=who)
    assert plan.notes == ("uid 65534 gid 65534",)
    root_owned = tmp_path / "root-state"
    root_owned.mkdir()
    refused = plan_privately(None, root_owned, make=who)
    assert refused.broker is None and "not made as root" in refused.notes[0]


def test_scanner_sandbox_says_what_it_would_do(gate_dir, organizer_key, monkeypatch):
    # not root here: the plan is made in this process (the drop is tested above)
    monkeypatch.setattr("scanner.gate.sandbox.os.geteuid", lambda: 1000)
    secure = SecureBroker.make(gate_dir / "ca", port=8883)
    (gate_dir / "event.policy").write_bytes(sign_policy(
        EXAMPLE_POLICY.read_text() + secure.table("10.0.2.100:8883"), organizer_key, SIGNED_AT))
    config = box(gate_dir, 'id = "stage-door"\nzone = "backstage"\n'
                           'address = "10.0.2.15/24"\ngateway = "10.0.2.2"\n')  # fmt: skip
    result = CliRunner().invoke(cli, ["sandbox", "--config", str(config), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "network: static 10.0.2.15/24 via 10.0.2.2" in result.output
    assert "may reach the broker 10.0.2.100 port 8883 only" in result.output
    assert "IPAddressAllow=localhost 10.0.2.100/32" in result.output


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_with_the_venue_on_the_daemons_exposure_stays_at_most_1_5(tmp_path):
    """The drop-in as the boot writes it, under the shipped unit: systemd's
    own measure of the daemon's exposure."""
    top = Path(__file__).resolve().parents[1]
    root = tmp_path / "root"
    shutil.copytree(host_unit_dir(), root / "usr/lib/systemd/system", symlinks=True)
    shutil.copy(top / "systemd/scanner.service", root / "usr/lib/systemd/system/")
    for program in ("usr/bin/scanner",):
        (root / program).parent.mkdir(parents=True, exist_ok=True)
        (root / program).write_text("#!/bin/sh\n")
        (root / program).chmod(0o755)

    def exposure() -> tuple[float, str]:
        out = subprocess.run(
            ["systemd-analyze", "security", "--offline=yes", f"--root={root}", "--no-pager",
             "/usr/lib/systemd/system/scanner.service"],
            capture_output=True, text=True, check=False).stdout  # fmt: skip
        found = re.search(r"Overall exposure level for scanner\.service: ([0-9.]+)", out)
        assert found, out
        return float(found.group(1)), out

    alone, _ = exposure()
    dropins = root / "run/systemd/system/scanner.service.d"
    dropins.mkdir(parents=True)
    dropin = venue_dropin(SandboxPlan(broker=("192.168.1.10", 8883)))
    assert dropin is not None
    (dropins / DROPIN_NAME).write_text(dropin)
    venue, report = exposure()
    print(f"\nsystemd-analyze security scanner.service: {alone} alone, {venue} with the venue on")
    assert alone == 0.6
    assert venue <= 1.5
    assert "allow list with non-localhost entries" in report
