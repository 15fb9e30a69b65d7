"""What a box's boot sets up before the daemon starts: its wired network,
and the daemon's sandbox opened exactly as far as the venue needs.

``scanner.service`` ships with no network at all (``PrivateNetwork=yes``,
``IPAddressDeny=any``, only ``AF_UNIX`` sockets). Two files under ``/run``
change that, and only these two, both written at boot by ``scanner
sandbox`` (``scanner-sandbox.service``, ordered before systemd-networkd and
the daemon):

- ``/run/systemd/network/80-scanner-wired.network``: the static address and
  gateway from ``gate.toml`` (the door's own settings, on the FAT
  partition). Without them nothing is written, and the image's own file of
  that name in ``/usr/lib/systemd/network`` gives DHCP on the wired port.
- ``/run/systemd/system/scanner.service.d/50-venue.conf``: when the
  *verified* policy names the venue's broker (``[broker]``, or scanner.toml's
  ``[venue] broker``), the daemon gets its own network namespace back, IPv4
  or IPv6 sockets as that address needs, and ``IPAddressAllow=`` for that
  one address (and the loopback, where the MQTT client keeps the pair of
  sockets it wakes its own thread with); ``IPAddressDeny=any`` stays, so
  nothing but the broker can reach it either. Without a broker nothing is written and the unit stays
  as locked as it ships.

Why a oneshot unit and not a generator: a generator runs before any file
system but the root is mounted, and must not verify signatures or start
Python; the broker comes from the signed policy on the data partition. Why
not ``ExecStartPre=+`` in the daemon's unit: its sandbox is built before
that runs, so the drop-in would only count from the next start. The
oneshot writes the drop-in, then ``systemctl daemon-reload`` before the
daemon's start job runs (systemd keeps its queued jobs across a reload).

Only signed data opens the sandbox, and root never parses it: the command
forks, and the child, as the owner of the data directory (the service's
user, as ``scanner selftest`` does), reads gate.toml and verifies the
policy; root takes back a small plan (an address, a prefix, a port) and
checks it again before writing a byte. A mistake in gate.toml leaves the
network on DHCP and the daemon shows the configuration fault naming the
key; a policy that does not verify leaves the sandbox locked.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ScannerError
from ..files import write_atomically

__all__ = [
    "DROPIN_NAME",
    "NETWORK_NAME",
    "SandboxPlan",
    "apply_plan",
    "make_plan",
    "network_file",
    "plan_from_json",
    "plan_privately",
    "venue_dropin",
]

NETWORK_NAME = "80-scanner-wired.network"
DROPIN_NAME = "50-venue.conf"
NETWORK_DIR = Path("/run/systemd/network")
DROPIN_DIR = Path("/run/systemd/system/scanner.service.d")
MAX_PLAN = 4096


@dataclass(frozen=True)
class SandboxPlan:
    """What the boot sets up: a static address (None: DHCP), and the broker
    the daemon may reach (None: no network at all). ``notes`` say why."""

    address: str | None = None  # "192.168.1.21/24"
    gateway: str | None = None
    broker: tuple[str, int] | None = None  # an IP address and a port
    notes: tuple[str, ...] = ()

    def to_json(self) -> str:
        return json.dumps(
            {
                "address": self.address,
                "gateway": self.gateway,
                "broker": list(self.broker) if self.broker else None,
                "notes": list(self.notes),
            }
        )


def plan_from_json(text: str) -> SandboxPlan:
    """A plan made by the unprivileged child, checked again field by field."""
    if len(text) > MAX_PLAN:
        raise ConfigError("the sandbox plan is too large")
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or set(data) != {"address", "gateway", "broker", "notes"}:
            raise ValueError("not a plan")
        address = data["address"]
        gateway = data["gateway"]
        if address is not None:
            address = str(ipaddress.ip_interface(address))
        if gateway is not None:
            if address is None:
                raise ValueError("a gateway without an address")
            gateway = str(ipaddress.ip_address(gateway))
            if ipaddress.ip_address(gateway) not in ipaddress.ip_interface(address).network:
                raise ValueError("a gateway off the network")
        broker = data["broker"]
        if broker is not None:
            host, port = broker
            host = str(ipaddress.ip_address(host))
            if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
                raise ValueError("not a port")
            broker = (host, port)
        notes = tuple(str(n)[:300] for n in data["notes"][:8])
    except (ValueError, TypeError, KeyError) as err:
        raise ConfigError(f"the sandbox plan is not one: {err}") from err
    return SandboxPlan(address, gateway, broker, notes)


def network_file(plan: SandboxPlan) -> str | None:
    """systemd-networkd's file for a static address, or None (DHCP)."""
    if plan.address is None:
        return None
    lines = [
        "# Written at boot by scanner sandbox from gate.toml (address, gateway).",
        "[Match]",
        "Type=ether",
        "Kind=!*",
        "",
        "[Network]",
        f"Address={plan.address}",
    ]
    if plan.gateway is not None:
        lines.append(f"Gateway={plan.gateway}")
    lines += ["LinkLocalAddressing=no", "IPv6AcceptRA=no", "LLMNR=no", "MulticastDNS=no", ""]
    return "\n".join(lines)


def venue_dropin(plan: SandboxPlan) -> str | None:
    """The daemon's drop-in that lets it reach the broker and nothing else."""
    if plan.broker is None:
        return None
    host, port = plan.broker
    address = ipaddress.ip_address(host)
    # AF_INET always: the MQTT client's wake-up pair is IPv4 on the loopback
    family = "AF_INET AF_INET6" if address.version == 6 else "AF_INET"
    prefix = 128 if address.version == 6 else 32
    return "\n".join(
        [
            f"# Written at boot by scanner sandbox: the verified policy's broker {host} "
            f"port {port}.",
            "# The daemon may reach that address and no other (the unit denies any).",
            "[Service]",
            "PrivateNetwork=no",
            "RestrictAddressFamilies=",
            f"RestrictAddressFamilies=AF_UNIX {family}",
            # the loopback too: the MQTT client wakes its own thread through a
            # pair of TCP sockets on 127.0.0.1 (paho-mqtt); nothing listens there
            f"IPAddressAllow=localhost {address}/{prefix}",
            "",
        ]
    )


def make_plan(config_path: Path | None) -> SandboxPlan:
    """What gate.toml and the verified policy ask for (run as the service's
    user: see :func:`plan_privately`). Never raises for a mistake in them: a
    note says what, and that part stays shut (DHCP, no network)."""
    from .config import load_config, read_door_file

    notes: list[str] = []
    address = gateway = None
    broker = None
    try:  # the door file is read on its own below: a typo there shuts the network part only
        config = load_config(config_path, require_zone=False, door_file=False)
    except ScannerError as err:
        return SandboxPlan(notes=(f"configuration: {err}",))
    door_file = config.gate.door_file
    if door_file is not None and door_file.exists():
        try:
            door = read_door_file(door_file)
            address, gateway = door.get("address"), door.get("gateway")
        except ScannerError as err:
            notes.append(f"network: DHCP, since {err}")
    try:
        from ..venue.door import broker_endpoint
        from .daemon import open_policy_store

        store = open_policy_store(config)
        endpoint = broker_endpoint(config, store.policy)
        if endpoint is not None:
            broker = (endpoint[0], endpoint[1])
        elif store.policy is None:
            notes.append(f"venue: no network, no verified policy ({store.fault})")
    except ScannerError as err:
        notes.append(f"venue: no network, {err}")
    return SandboxPlan(address, gateway, broker, tuple(notes))


def plan_privately(
    config_path: Path | None,
    state_dir: Path,
    make: Callable[[Path | None], SandboxPlan] = make_plan,
) -> SandboxPlan:
    """:func:`make_plan` in a child process that runs as the owner of
    ``state_dir`` (the service's user), so root never parses gate.toml or the
    policy and never touches the scan log; the plan comes back as JSON and is
    checked again. Not root: made here, as whoever runs it."""
    if os.geteuid() != 0:
        return make(config_path)
    from .selftest import become_owner_of

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop root, plan, say it, leave
        code = 0
        try:
            os.close(read)
            become_owner_of(state_dir)
            if os.geteuid() == 0:
                raise ConfigError(f"{state_dir} belongs to root: the plan is not made as root")
            data = make(config_path).to_json().encode()
        except BaseException as err:  # the child must never come back up the stack
            data = SandboxPlan(notes=(f"no plan: {err}",)).to_json().encode()
            code = 1
        finally:
            try:
                os.write(write, data[:MAX_PLAN])
            finally:
                os._exit(code)
    os.close(write)
    chunks = []
    while True:
        chunk = os.read(read, MAX_PLAN + 1)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read)
    os.waitpid(pid, 0)
    return plan_from_json(b"".join(chunks)[: MAX_PLAN + 1].decode("utf-8", "replace"))


def _put(path: Path, text: str | None) -> bool:
    """Write ``text`` at ``path`` (None: remove it); True when it changed."""
    old = path.read_text() if path.exists() else None
    if old == text:
        return False
    if text is None:
        path.unlink()
        return True
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    write_atomically(path, text, mode=0o644)
    return True


def apply_plan(
    plan: SandboxPlan,
    *,
    network_dir: Path = NETWORK_DIR,
    dropin_dir: Path = DROPIN_DIR,
    reload: Callable[[], Any] | None = None,
) -> dict[str, bool]:
    """Write (or remove) the network file and the daemon's drop-in; when the
    drop-in changed, ``reload()`` (``systemctl daemon-reload``) so the
    daemon's next start takes it."""
    changed = {
        "network": _put(network_dir / NETWORK_NAME, network_file(plan)),
        "sandbox": _put(dropin_dir / DROPIN_NAME, venue_dropin(plan)),
    }
    if changed["sandbox"] and reload is not None:
        reload()
    return changed


def daemon_reload() -> None:
    from ..keyfiles import child_environment  # only when run: keeps the boot unit light

    subprocess.run(
        ["systemctl", "daemon-reload"], check=True, timeout=120, env=child_environment()
    )
