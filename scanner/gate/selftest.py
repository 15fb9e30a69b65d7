"""``scanner selftest``: what a technician runs after flashing a door.

Walks every LED and buzzer pattern (so a person can watch and listen),
checks the camera delivers frames (and in which format) and decodes a code
held up to it, and reports the policy's event and expiry, where this box
stands (its gate.toml checked against the policy: a card nobody filled in is
a fault that says so), the clock's state, the scan log and the free space on
the data partition, and this box's device key (for the manager's list of
known gates). Every check runs even when an earlier one failed, so one run
shows everything that is wrong. Any fault makes the exit code 3.

It needs the camera and the pins, so the service must be stopped first:
``systemctl stop scanner; scanner selftest; systemctl start scanner``.

Run as root (as a technician does with sudo), it first becomes the user that
owns the data directory, the service's own user, with that user's groups
(:func:`become_owner_of`): a root selftest would otherwise leave a scan log,
its -wal and -shm files or a device key that only root can open, and the
service would start with a storage fault. It also tries the camera and the
pins with exactly the rights the service has.
"""

from __future__ import annotations

import os
import pwd
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.decision import Gate, decide
from ..core.keys import key_id
from ..core.policy import GatePlace
from ..core.signed import format_utc
from ..errors import ConfigError, ScannerError
from ..keyfiles import load_or_create_device_key
from ..record.log import ScanLog
from .clock import ClockGuard, SystemClock
from .config import Config
from .frames import V4L2Camera, open_camera
from .signals import PATTERNS, DoorSignals, open_pin_factory

__all__ = ["Check", "become_owner_of", "run_selftest"]

MIN_FREE_BYTES = 64 * 1024 * 1024


def become_owner_of(folder: Path) -> str | None:
    """Run as root, become the (non-root) owner of ``folder`` with that user's
    groups, for good. Returns the user's name, or None when nothing changed:
    not root, no such folder, or a folder root owns. Raises
    :class:`ConfigError` when the switch is refused."""
    if os.geteuid() != 0:
        return None
    try:
        st = folder.stat()
    except OSError:
        return None
    if st.st_uid == 0:
        return None
    try:
        account: pwd.struct_passwd | None = pwd.getpwuid(st.st_uid)
    except KeyError:  # a uid with no name: no groups but the folder's
        account = None
    name = account.pw_name if account else str(st.st_uid)
    try:
        if account:
            os.initgroups(account.pw_name, account.pw_gid)
            os.setgid(account.pw_gid)
        else:
            os.setgroups([])
            os.setgid(st.st_gid)
        os.setuid(st.st_uid)
    except OSError as err:
        raise ConfigError(
            f"cannot run as {name}, the owner of {folder}: {err.strerror}; "
            f"run selftest as {name} (sudo -u {name} scanner selftest)"
        ) from err
    return name


WALK = [
    "ready",
    "granted",
    "not_here",
    "time",
    "already_inside",
    "forged",
    "fault",
    "usb_done",
    "usb_failed",
]


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class SelftestReport:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def add(self, name: str, ok: bool, detail: str) -> Check:
        check = Check(name, ok, detail)
        self.checks.append(check)
        return check


CLOCK_NEXT_STEP = (
    "The door refuses every entry until the clock is right: set the real time "
    "(as root: date -s 'YYYY-MM-DD HH:MM', or plug in the network with a time server); if "
    "the clock is right and this gate still refuses it, bring a signed time setting "
    "(scanner update time --lower-floor) on a stick"
)


def run_selftest(
    config: Config,
    *,
    camera_seconds: float = 10.0,
    walk_pause: float = 0.3,
    walk: bool = True,
    say: Callable[[str], None] = print,
    factory: Any = None,
    clock: Any = None,
    door_fault: str | None = None,
) -> SelftestReport:
    """Run every check; ``say`` gets one line per step as it happens.

    ``door_fault`` is what was wrong with the door file (gate.toml) when the
    configuration was read without it: the door check reports it and every
    other check still runs."""
    from .daemon import clock_guard, config_fault_hint, open_policy_store, place_gate
    from .decoders import open_decoder

    report = SelftestReport()
    clock = clock or SystemClock()

    def record(name: str, ok: bool, detail: str) -> None:
        report.add(name, ok, detail)
        say(f"{'ok   ' if ok else 'FAULT'} {name:<10} {detail}")

    # the door's outputs
    try:
        with DoorSignals(factory or open_pin_factory(config.gpio_factory), config.gpio) as door:
            for name in WALK if walk else []:
                say(f"      signals    now showing: {name}")
                door.show(name)
                door.wait_idle(timeout=sum(s[0] for s in PATTERNS[name]) + 2)
                time.sleep(walk_pause)
        record(
            "signals",
            True,
            f"walked {len(WALK) if walk else 0} patterns on green "
            f"{config.gpio.green}, "
            f"red {config.gpio.red}, buzzer {config.gpio.buzzer}",
        )
    except ScannerError as err:
        record("signals", False, str(err))

    # what the gate trusts
    store = open_policy_store(config)
    policy = store.policy
    now = clock.now()
    if policy is None:
        record("policy", False, store.fault or "no policy")
    elif now >= policy.expires:
        record("policy", False, f"{policy.event}: expired at {format_utc(policy.expires)}")
    else:
        record(
            "policy",
            store.fault is None,
            f"{policy.event} ({policy.name}), signed {format_utc(policy.signed_at or now)}, "
            f"valid until {format_utc(policy.expires)}"
            + (f"; {store.fault}" if store.fault else ""),
        )

    # where this box stands: its door file (gate.toml) checked against the policy
    place: GatePlace | None = None
    if door_fault is not None:
        record("door", False, f"{door_fault}; fix it, then run selftest again")
    else:
        try:
            place = place_gate(config, policy)
        except ConfigError as err:
            record("door", False, config_fault_hint(str(err), config))
        else:
            record(
                "door",
                True,
                f"gate {config.gate.id}: {place.direction.value} into {place.zone}"
                + (f" through door {place.door}" if place.door else "")
                + f" (set in {config.gate.origin('zone')})",
            )

    # the log and the data partition
    try:
        with ScanLog(config.paths.db, gate=config.gate.id) as log:
            log.set_state("selftest", format_utc(now))
            check = log.db.conn.execute("PRAGMA quick_check").fetchone()[0]
            rows = log.head[0]
            clock_state = clock_guard(config, log, store).check(now)  # tolerance, ceiling
        free = shutil.disk_usage(config.paths.db.parent).free
        record(
            "storage",
            check == "ok" and free >= MIN_FREE_BYTES,
            f"{config.paths.db}: {rows} scans, check {check}, {free // (1024 * 1024)} MiB free",
        )
    except (ScannerError, OSError) as err:
        record("storage", False, str(err))
        floor = store.policy.signed_at if store.policy and store.policy.signed_at else now
        clock_state = ClockGuard(floor).check(now)

    # the clock
    state = clock_state
    record(
        "clock",
        state.trusted,
        f"{format_utc(now)}" + ("" if state.trusted else f": {state.reason}. {CLOCK_NEXT_STEP}"),
    )

    # this box's identity
    try:
        device = load_or_create_device_key(config.paths.device_key)
        record(
            "identity",
            True,
            f"gate {config.gate.id}, zone {config.gate.zone or 'not set'}, "
            f"{config.gate.direction.value}; device key {key_id(device)}",
        )
    except (ScannerError, OSError) as err:
        record("identity", False, f"device key {config.paths.device_key}: {err}")

    # the camera
    try:
        with (
            open_camera(config.camera.source) as camera,
            open_decoder(config.camera.decoder) as decoder,
        ):
            say(
                f"      camera     hold a pass or any QR code up to the camera "
                f"({camera_seconds:.0f} s)"
            )
            frames, codes, start = 0, [], time.monotonic()
            while time.monotonic() - start < camera_seconds and not codes:
                frame = camera.read(timeout=3.0)
                if frame is None:
                    break
                frames += 1
                codes = decoder.decode(frame.image)
            fps = frames / max(time.monotonic() - start, 1e-6)
            agreed = camera.describe() if isinstance(camera, V4L2Camera) else None
        if not frames:
            record("camera", False, f"{config.camera.source}: no frames")
        elif not codes:
            record(
                "camera",
                False,
                f"{config.camera.source}: {frames} frames ({fps:.0f}/s) but no QR code decoded",
            )
        else:
            detail = f"{config.camera.source}: {frames} frames ({fps:.0f}/s), read a code"
            if agreed is not None:
                detail = (
                    f"{config.camera.source} ({agreed['format']} {agreed['size']}, "
                    f"{agreed['note']}): {frames} frames ({fps:.0f}/s), read a code"
                )
            if policy is not None and place is not None:
                gate = Gate(zone=place.zone, direction=place.direction)
                decision = decide(codes[0], policy, gate, now, clock_trusted=state.trusted)
                detail += f": the door would say {decision.message}"
            record("camera", True, detail)
    except ScannerError as err:
        record("camera", False, str(err))
    say(
        "selftest: all good"
        if report.ok
        else f"selftest: {sum(not c.ok for c in report.checks)} fault(s); see above"
    )
    return report
