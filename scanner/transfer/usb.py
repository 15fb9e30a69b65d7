"""A USB stick at the gate: export the logs, apply signed updates, signal.

udev sees a stick's partition and asks systemd to start
``scanner-usb@DEVICE.service`` (a long command run from udev itself would be
killed, and would mount inside udev's own namespace). That unit runs
``scanner usb /dev/DEVICE``, which:

1. mounts the FAT or exFAT file system with ``nosuid,nodev,noexec`` under
   ``/run/scanner-usb``;
2. writes a signed export of the scan log (:mod:`scanner.transfer.export`);
3. applies the signed updates found in ``scanner-update/`` (:mod:`scanner.transfer.updates`);
4. flushes and unmounts the stick;
5. asks the running daemon, through its control socket, to show "done, safe
   to remove" or "failed" on the LEDs; the scan loop never stops meanwhile.

``scanner export --to DIR`` and ``scanner import DIR`` run steps 2 and 3 on a
folder, from a shell, with the same flags as ``scanner run``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ..core.signed import format_utc
from ..errors import ControlError, KeyFileError, ScanLogError, ScannerError, TransferError
from ..gate.config import Config
from ..gate.control import send_command
from ..gate.daemon import clock_floor, open_policy_store
from ..gate.scanlog import ScanLog, log_identity
from .export import ExportResult, export_log, load_device_key, match_owner
from .updates import UPDATE_DIR, UpdateResult, apply_updates, set_system_clock

__all__ = ["StickReport", "export_to", "handle_stick", "import_from"]

MOUNT_ROOT = Path("/run/scanner-usb")
MOUNT_OPTIONS = "nosuid,nodev,noexec,noatime"


def _log_event(log: ScanLog, kind: str, **detail: object) -> None:
    with contextlib.suppress(ScanLogError):
        log.record_event(datetime.now(UTC), kind, **detail)


def export_to(
    config: Config, target: Path, *, now: datetime | None = None, plaintext: bool = False
) -> ExportResult:
    """Write a signed export of this gate's log under ``target``, encrypted to
    the manager keys the policy names; refused (and the refusal logged) when
    it names none, unless ``plaintext`` (a shell's explicit choice).

    Without a gate id in the config or flags, the log's own is used; a log of
    another gate is refused. Writes nothing but the export and the log's
    record of it: never a device key (the daemon makes that at first start).
    """
    now = now or datetime.now(UTC)
    db = config.paths.db
    if not db.is_file():
        raise TransferError(f"there is no scan log at {db} yet")
    owner, events = log_identity(db)
    gate = config.gate.id if config.gate.origin("id") != "defaults" else owner
    if gate is None:
        raise TransferError(f"cannot tell which gate the log {db} belongs to; give --gate")
    store = open_policy_store(config)
    policy = store.policy
    event = policy.event if policy is not None else config.gate.event or (events or [None])[-1]
    recipients = policy.export_recipients if policy is not None else ()
    with ScanLog(db, gate=gate) as log:
        if log.open_error is not None:
            raise ScanLogError(log.open_error)
        try:
            if not recipients and not plaintext:
                raise TransferError(
                    "the event policy names no manager key to encrypt exports to "
                    "([export] recipients), and holder names never leave on a stick in the "
                    "clear: ask the organizer to add the manager's key (scanner keygen "
                    "--manager) and bring the signed policy on a stick, or export from a "
                    "shell with scanner export --plaintext"
                )
            result = export_log(
                db,
                target,
                gate=gate,
                event=event,
                device_key=load_device_key(config.paths.device_key),
                now=now,
                recipients=recipients,
                plaintext=plaintext,
            )
        except (TransferError, KeyFileError) as err:
            _log_event(log, "export", ok=False, target=str(target), message=str(err))
            raise
        _log_event(
            log,
            "export",
            ok=True,
            folder=str(result.folder),
            rows=result.rows,
            head=result.head_hash,
            encrypted=bool(result.encrypted_to),
        )
    return result


def update_folder(folder: Path) -> Path:
    """The stick's ``scanner-update`` folder, or ``folder`` itself if it is one."""
    inner = folder / UPDATE_DIR
    return inner if inner.is_dir() and not inner.is_symlink() else folder


def import_from(
    config: Config, folder: Path, *, allow_new_event: bool = False, set_clock: bool | None = None
) -> list[UpdateResult]:
    """Apply the signed updates in ``folder``; each result says applied or why not."""
    store = open_policy_store(config)
    if set_clock is None:
        set_clock = os.geteuid() == 0
    with ScanLog(config.paths.db, gate=config.gate.id) as log:
        floor = clock_floor(config, log, store)

        def raise_floor(when: datetime) -> None:
            log.set_state("clock_floor", format_utc(when))

        return apply_updates(
            update_folder(folder),
            store=store,
            trust_update=config.paths.trust_update,
            gate=config.gate.id,
            floor=floor,
            raise_floor=raise_floor,
            set_clock=set_system_clock if set_clock else None,
            log_event=lambda kind, **detail: _log_event(log, kind, **detail),
            allow_new_event=allow_new_event,
        )


@dataclass
class StickReport:
    ok: bool = True
    lines: list[str] = field(default_factory=list)

    def say(self, line: str, *, failed: bool = False) -> None:
        self.lines.append(line)
        if failed:
            self.ok = False


def handle_stick(config: Config, mount_point: Path) -> StickReport:
    """Export and import on a mounted stick (steps 2 and 3 above)."""
    report = StickReport()
    try:
        result = export_to(config, mount_point)
        report.say(f"exported {result.rows} scans to {result.folder}")
    except ScannerError as err:
        report.say(f"export failed: {err}", failed=True)
    if (mount_point / UPDATE_DIR).exists() or (mount_point / UPDATE_DIR).is_symlink():
        for update in import_from(config, mount_point):
            report.say(f"{update.name}: {update.message}", failed=update.refused)
    return report


def _run(*args: str) -> None:
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise TransferError(f"{' '.join(args)}: {result.stderr.strip() or result.returncode}")


def handle_device(config: Config, device: Path, *, user: str = "scanner") -> StickReport:
    """Mount ``device``, handle it, flush and unmount, then signal the result."""
    if not device.name or "/" in device.name.strip("/").removeprefix("dev/"):
        raise TransferError(f"{device} is not a device name")
    mount_point = MOUNT_ROOT / device.name
    try:
        owner = pwd.getpwnam(user)
        ids = f",uid={owner.pw_uid},gid={owner.pw_gid},umask=0022"
    except KeyError:
        ids = ""
    report = StickReport()
    mounted = False
    try:
        mount_point.mkdir(parents=True, exist_ok=True, mode=0o700)
        _run("mount", "-t", "vfat,exfat", "-o", MOUNT_OPTIONS + ids, str(device), str(mount_point))
        mounted = True
        report = handle_stick(config, mount_point)
    except (TransferError, OSError) as err:
        report.say(f"the stick could not be used: {err}", failed=True)
    finally:
        if mounted:
            try:
                _run("sync")
                _run("umount", str(mount_point))
            except TransferError as err:
                report.say(f"the stick could not be unmounted: {err}", failed=True)
        with contextlib.suppress(OSError):
            mount_point.rmdir()
    match_owner(config.paths.db.parent)
    signal_daemon(config, "usb_done" if report.ok else "usb_failed")
    return report


def signal_daemon(config: Config, pattern: str) -> bool:
    """Ask the running daemon to show ``pattern``; False if it cannot be reached."""
    if config.paths.control_socket is None:
        return False
    try:
        answer = send_command(config.paths.control_socket, {"cmd": "signal", "pattern": pattern})
    except ControlError:
        return False
    return bool(answer.get("ok"))
