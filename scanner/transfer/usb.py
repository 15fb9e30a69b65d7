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

A stick with several partitions starts one unit per partition, so USB work
takes one lock per gate (``usb.lock`` in the gate's state folder, held with
``flock``): a second job waits for the first to finish, or gives up with a
reason after :data:`LOCK_WAIT_SECONDS`. Only :func:`handle_device`, run by
the gate's USB service, may move the system clock for a signed time setting,
and only when the gate's ``[clock] set_system_clock`` says so: ``scanner
import`` on a laptop never touches the laptop's clock, root or not.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ..errors import ControlError, KeyFileError, ScanLogError, ScannerError, TransferError
from ..files import match_owner
from ..gate.clock import SystemClock, read_build_time
from ..gate.config import Config
from ..gate.control import send_command
from ..gate.daemon import clock_guard, open_policy_store
from ..keyfiles import child_environment
from ..record.log import ScanLog, log_identity
from .export import ExportResult, export_log, load_device_key
from .updates import UPDATE_DIR, UpdateResult, apply_updates, set_system_clock

__all__ = [
    "LOCK_WAIT_SECONDS",
    "StickReport",
    "export_to",
    "gate_lock",
    "handle_stick",
    "import_from",
]

MOUNT_ROOT = Path("/run/scanner-usb")
MOUNT_OPTIONS = "nosuid,nodev,noexec,noatime"
LOCK_NAME = "usb.lock"
LOCK_WAIT_SECONDS = 600.0


@contextlib.contextmanager
def gate_lock(config: Config, *, wait: float | None = None) -> Iterator[None]:
    """Hold this gate's USB lock (one export or import at a time)."""
    wait = LOCK_WAIT_SECONDS if wait is None else wait
    folder = config.paths.db.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(
            folder / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
    except OSError as err:
        raise TransferError(f"cannot take the gate's USB lock in {folder}: {err}") from err
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TransferError(
                        "another USB job (a second partition of the stick?) is still working "
                        f"on this gate after {wait:g} s; try again when it has finished"
                    ) from None
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the lock


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
    with gate_lock(config):
        return _export(config, target, now=now, plaintext=plaintext)


def _export(
    config: Config, target: Path, *, now: datetime | None = None, plaintext: bool = False
) -> ExportResult:
    now = now or datetime.now(UTC)
    db = config.paths.db
    if not db.is_file():
        raise TransferError(f"there is no scan log at {db} yet")
    owner, events = log_identity(db)
    gate = _gate_id(config, owner)
    if gate is None:
        raise TransferError(f"cannot tell which gate the log {db} belongs to; give --gate")
    with ScanLog(db, gate=gate) as log:
        if log.open_error is not None:
            raise ScanLogError(log.open_error)
        policy = open_policy_store(config, state=log).policy
        event = policy.event if policy is not None else config.gate.event or (events or [None])[-1]
        recipients = policy.export_recipients if policy is not None else ()
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
    config: Config, folder: Path, *, allow_new_event: bool = False
) -> list[UpdateResult]:
    """Apply the signed updates in ``folder``; each result says applied or why not.

    Never moves this machine's clock (see :func:`handle_device`).
    """
    with gate_lock(config):
        return _import(config, folder, allow_new_event=allow_new_event, set_clock=False)


def _gate_id(config: Config, owner: str | None) -> str | None:
    """The gate id a shell command works as: given (config, gate.toml, --gate),
    else the one the scan log remembers."""
    return config.gate.id if config.gate.origin("id") != "defaults" else owner


def _import(
    config: Config, folder: Path, *, allow_new_event: bool, set_clock: bool
) -> list[UpdateResult]:
    owner = log_identity(config.paths.db)[0] if config.paths.db.is_file() else None
    gate = _gate_id(config, owner) or config.gate.id
    with ScanLog(config.paths.db, gate=gate) as log:
        store = open_policy_store(config, state=log)
        return apply_updates(
            update_folder(folder),
            store=store,
            state=log,
            guard=clock_guard(config, log, store),
            gate=gate,
            now=SystemClock().now(),
            build=read_build_time(config.paths.build_time),
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
    """Export and import on a mounted stick (steps 2 and 3 above), holding the
    gate's USB lock throughout; a signed time setting moves the system clock
    only if the gate's ``[clock] set_system_clock`` says so."""
    report = StickReport()
    try:
        with gate_lock(config):
            try:
                result = _export(config, mount_point)
                report.say(f"exported {result.rows} scans to {result.folder}")
            except ScannerError as err:
                report.say(f"export failed: {err}", failed=True)
            if (mount_point / UPDATE_DIR).exists() or (mount_point / UPDATE_DIR).is_symlink():
                for update in _import(
                    config,
                    mount_point,
                    allow_new_event=False,
                    set_clock=config.clock.set_system_clock,
                ):
                    report.say(f"{update.name}: {update.message}", failed=update.refused)
    except TransferError as err:
        report.say(str(err), failed=True)
    return report


def _run(*args: str) -> None:
    result = subprocess.run(
        args, capture_output=True, text=True, check=False, env=child_environment()
    )
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
