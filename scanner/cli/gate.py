"""The gate's commands: the daemon, its phase and status, USB, selftest, decoding."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import click

from ..errors import ConfigError, ScannerError
from ..words import plural
from .base import (
    EXIT_FAILED,
    EXIT_FAULT,
    EXIT_OK,
    EXIT_USAGE,
    F,
    Failure,
    can_ask,
    cli,
)

# -- the gate ------------------------------------------------------------------


def gate_options(func: F) -> F:
    """The flags shared by scanner run, export and import (they override the config)."""
    options = [
        click.option(
            "--config",
            "config_path",
            type=click.Path(path_type=Path, dir_okay=False),
            help="Config file [default: /etc/scanner/scanner.toml if present].",
        ),
        click.option("--gate", help="Gate id (overrides config and gate.toml)."),
        click.option("--zone", help="Zone the door leads into."),
        click.option("--direction", type=click.Choice(["entry", "exit"])),
        click.option("--door", help="Door id from the event policy's [doors] (optional)."),
        click.option(
            "--policy",
            type=click.Path(path_type=Path, dir_okay=False),
            help="Signed event policy file.",
        ),
        click.option(
            "--trust",
            type=click.Path(path_type=Path),
            multiple=True,
            help="Organizer public key file or folder of .pub files; repeatable.",
        ),
        click.option(
            "--db", type=click.Path(path_type=Path, dir_okay=False), help="Scan log (SQLite)."
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _load_gate_config(config_path: Path | None, *, require_zone: bool = True, **flags: Any) -> Any:
    from ..gate.config import load_config

    try:
        return load_config(config_path, require_zone=require_zone, **flags)
    except ScannerError as err:
        raise Failure(f"configuration: {err}", EXIT_USAGE) from err


@cli.command()
@gate_options
@click.option("--camera", help="v4l2:/dev/video0, picamera2 or file:PATH (video or image folder).")
@click.option("--gpio", help="Pin factory: auto (the Pi's), mock (no pins: each signal is "
              "logged by name), mock-pins (also prints every pin change), lgpio.")
@click.option("--decoder", type=click.Choice(["auto", "zxing", "zbar"]))
@click.option(
    "--control-socket",
    type=click.Path(path_type=Path),
    help="Where scanner phase reaches this daemon [default: /run/scanner/control.sock].",
)
def run(
    config_path: Path | None,
    gate: str | None,
    zone: str | None,
    direction: str | None,
    door: str | None,
    policy: Path | None,
    trust: tuple[Path, ...],
    db: Path | None,
    camera: str | None,
    gpio: str | None,
    decoder: str | None,
    control_socket: Path | None,
) -> None:
    """Run the gate: camera to decision to LEDs, buzzer and the scan log.

    Reads /etc/scanner/scanner.toml (or --config) and the door file
    gate.toml; the flags override both, and with --policy, --trust, --zone,
    --db, --camera and --gpio no config file is needed. With a file: camera
    it exits 0 when the frames run out. Logs one logfmt line per event on
    standard output (each signal by name); --gpio mock-pins also prints
    every pin change, to check wiring patterns.

    Exit codes: 0 stopped or recording ended, 2 configuration error,
    3 the gate cannot run (no GPIO, no decoder) or rows were left unsaved.
    """
    from ..gate.config import Config, load_config
    from ..gate.daemon import hold_config_fault, run_gate

    config: Config | None = None
    try:
        config = load_config(
            config_path,
            require_zone=False,
            gate=gate,
            zone=zone,
            direction=direction,
            door=door,
            policy=policy,
            trust=list(trust) or None,
            db=db,
            camera=camera,
            gpio=gpio,
            decoder=decoder,
            control_socket=control_socket,
        )
        code = run_gate(config)
    except ConfigError as err:
        click.echo(f"Error: configuration: {err}", err=True)
        if os.environ.get("NOTIFY_SOCKET"):  # under systemd: stay up and show the fault
            sys.exit(hold_config_fault(str(err), config=config))
        sys.exit(EXIT_USAGE)
    except ScannerError as err:
        raise Failure(str(err), EXIT_FAULT) from err
    sys.exit(code)


@cli.command("export")
@gate_options
@click.option(
    "--to",
    "target",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder to write into (a stick's mount point).",
)
@click.option(
    "--plaintext",
    is_flag=True,
    help="Write the log UNENCRYPTED, holder names in the clear (when the policy names no "
    "manager key, or to hand the files to a tool that cannot decrypt).",
)
def export_command(
    config_path: Path | None,
    gate: str | None,
    zone: str | None,
    direction: str | None,
    door: str | None,
    policy: Path | None,
    trust: tuple[Path, ...],
    db: Path | None,
    target: Path,
    plaintext: bool,
) -> None:
    """Export the scan log: a snapshot, a CSV and a signed manifest.

    Writes TARGET/scanner-logs/EVENT_GATE/TIME/ with scans.db.age and
    scans.csv.age (a consistent snapshot, safe while the daemon runs,
    encrypted to the manager keys the event policy names in [export]
    recipients), summary.json.age (its counts, time range and chain heads,
    encrypted too), device.pub and manifest.json signed with this gate's
    device key. When the policy names no manager key the export is
    refused, unless --plaintext. Without --gate the log's own gate id is
    used; a log of another gate is refused. Never overwrites an earlier
    export, and never makes a device key (the gate makes it at its first
    start). Takes the same flags as scanner run.
    """
    from ..transfer.usb import export_to

    config = _load_gate_config(
        config_path,
        gate=gate,
        zone=zone,
        direction=direction,
        door=door,
        require_zone=False,
        policy=policy,
        trust=list(trust) or None,
        db=db,
    )
    try:
        result = export_to(config, target, plaintext=plaintext)
    except ScannerError as err:
        raise Failure(str(err)) from err
    n = result.rows
    click.echo(
        f"exported {n} scan{'' if n == 1 else 's'} ({result.first_ts or '-'} .. "
        f"{result.last_ts or '-'}) to {result.folder}"
    )
    if result.encrypted_to:
        keys = len(result.encrypted_to)
        click.echo(f"encrypted to {keys} manager key{'' if keys == 1 else 's'}")
    else:
        click.echo(
            "WARNING: this export holds holder names IN THE CLEAR (--plaintext): keep it "
            "safe, and delete it once the manager has merged it",
            err=True,
        )


@cli.command("import")
@gate_options
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option(
    "--new-event", is_flag=True, help="Accept a policy for another event than the one installed."
)
def import_command(
    config_path: Path | None,
    gate: str | None,
    zone: str | None,
    direction: str | None,
    door: str | None,
    policy: Path | None,
    trust: tuple[Path, ...],
    db: Path | None,
    folder: Path,
    new_event: bool,
) -> None:
    """Apply signed updates from FOLDER (or its scanner-update/ folder).

    Reads only trust.signed, event.policy, revocations.signed and
    time.signed, each verified against the organizer keys the gate trusts
    now; anything unsigned, altered, for another event or gate, older than
    what is installed, replayed, expired, oversized or not a regular file is
    refused with its reason and logged, and the other files are still
    applied. A time setting moves the gate's clock floor only: this command
    never sets this machine's clock (the gate's USB service does, when its
    config says so). Exits 1 if anything was refused.
    """
    from ..transfer.usb import import_from

    config = _load_gate_config(
        config_path,
        gate=gate,
        zone=zone,
        direction=direction,
        door=door,
        require_zone=False,
        policy=policy,
        trust=list(trust) or None,
        db=db,
    )
    try:
        results = import_from(config, folder, allow_new_event=new_event)
    except ScannerError as err:
        raise Failure(str(err)) from err
    if not results:
        click.echo(f"no updates found in {folder}")
    for result in results:
        click.echo(f"{result.name}: {result.message}")
    sys.exit(EXIT_FAILED if any(r.refused for r in results) else EXIT_OK)


@cli.command()
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("device", type=click.Path(path_type=Path))
def usb(config_path: Path | None, device: Path) -> None:
    """Handle a USB stick: mount, export, apply updates, unmount, signal.

    Run by scanner-usb@.service when udev sees a stick (not by hand). The
    running gate shows "done, safe to remove" or "failed" on its LEDs.
    """
    from ..transfer.usb import handle_device

    config = _load_gate_config(config_path, require_zone=False)
    try:
        report = handle_device(config, device)
    except ScannerError as err:
        raise Failure(str(err)) from err
    for line in report.lines:
        click.echo(line)
    sys.exit(EXIT_OK if report.ok else EXIT_FAILED)


@cli.command()
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--network-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default="/run/systemd/network",
    show_default=True,
    help="Where systemd-networkd's runtime files go.",
)
@click.option(
    "--dropin-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default="/run/systemd/system/scanner.service.d",
    show_default=True,
    help="Where the daemon's runtime drop-ins go.",
)
@click.option(
    "--reload/--no-reload",
    default=True,
    show_default=True,
    help="Run systemctl daemon-reload when the daemon's drop-in changed.",
)
@click.option("--dry-run", is_flag=True, help="Print what would be written; write nothing.")
def sandbox(
    config_path: Path | None, network_dir: Path, dropin_dir: Path, reload: bool, dry_run: bool
) -> None:
    """Set up the box's wired network and open the daemon's sandbox to the broker.

    Run at boot by scanner-sandbox.service, before systemd-networkd and the
    daemon. From gate.toml: a static address and gateway (address =
    "192.168.1.21/24", gateway = "192.168.1.1"), else DHCP. From the
    verified policy's [broker]: the one address and port the daemon may
    reach; without a broker the daemon keeps no network at all. Run as root,
    gate.toml and the policy are read by the data directory's owner (the
    service's user), never by root. A mistake leaves that part shut and
    says why; the boot goes on.

    \b
    Exit codes: 0 done (what it did is printed); 1 could not write the files.
    """
    from ..gate.config import DEFAULT_CONFIG, load_config
    from ..gate.sandbox import apply_plan, daemon_reload, network_file, plan_privately, venue_dropin

    try:
        state = load_config(config_path, require_zone=False).paths.db.parent
    except ScannerError:
        state = Path("/var/lib/scanner")
    plan = plan_privately(config_path or (DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None),
                          state)  # fmt: skip
    for note in plan.notes:
        click.echo(f"note: {note}", err=True)
    network = f"static {plan.address}" + (f" via {plan.gateway}" if plan.gateway else "")
    click.echo(f"network: {network if plan.address else 'DHCP on the wired port'}")
    if plan.broker:
        click.echo(f"daemon: may reach the broker {plan.broker[0]} port {plan.broker[1]} only")
    else:
        click.echo("daemon: no network (no broker in the verified policy)")
    if dry_run:
        for name, text in (("network", network_file(plan)), ("drop-in", venue_dropin(plan))):
            if text:
                click.echo(f"--- {name}\n{text}", nl=False)
        return
    try:
        changed = apply_plan(
            plan,
            network_dir=network_dir,
            dropin_dir=dropin_dir,
            reload=daemon_reload if reload else None,
        )
    except (OSError, subprocess.SubprocessError) as err:
        raise Failure(f"cannot set up the sandbox: {err}") from err
    if changed["sandbox"]:
        click.echo("the daemon's drop-in changed" + (" (daemon-reload done)" if reload else ""))


@cli.command()
@gate_options
@click.option("--camera", help="v4l2:/dev/video0, picamera2 or file:PATH.")
@click.option("--gpio", help="Pin factory: auto, mock, mock-pins, lgpio.")
@click.option(
    "--seconds",
    default=10.0,
    show_default=True,
    help="How long to wait for a QR code in front of the camera.",
)
def selftest(
    config_path: Path | None,
    gate: str | None,
    zone: str | None,
    direction: str | None,
    door: str | None,
    policy: Path | None,
    trust: tuple[Path, ...],
    db: Path | None,
    camera: str | None,
    gpio: str | None,
    seconds: float,
) -> None:
    """Check a gate after flashing: signals, camera, policy, clock, storage.

    Walks every LED and buzzer pattern (watch and listen), waits for a QR
    code in front of the camera, and reports the policy's event and expiry,
    the clock, the log and the free space, and this box's device key. Stop
    the service first (systemctl stop scanner). Run as root, it runs as the
    owner of the data directory (the service's user), so what it writes
    stays the service's. Exits 0 when all is well, 3 on any fault.
    """
    from ..errors import ControlError
    from ..gate.config import load_config
    from ..gate.control import send_command
    from ..gate.selftest import become_owner_of, run_selftest

    flags = {
        "gate": gate, "zone": zone, "direction": direction, "door": door, "policy": policy,
        "trust": list(trust) or None, "db": db, "camera": camera, "gpio": gpio,
    }
    door_fault = None
    try:  # an unset or broken door file is one of the faults selftest reports
        config = load_config(config_path, require_zone=False, **flags)
    except ScannerError as err:
        try:  # the door file alone is wrong: report it, and run every other check
            config = load_config(config_path, require_zone=False, door_file=False, **flags)
        except ScannerError:
            raise Failure(f"configuration: {err}", EXIT_USAGE) from err
        door_fault = str(err)
    data = config.paths.db.parent
    try:
        user = become_owner_of(data)
    except ScannerError as err:
        raise Failure(str(err), EXIT_USAGE) from err
    if user is not None:
        click.echo(f"selftest runs as {user}, the owner of {data}, as the service does")
    if config.paths.control_socket is not None and config.paths.control_socket.exists():
        try:
            send_command(config.paths.control_socket, {"cmd": "status"}, timeout=2)
        except ControlError:
            pass
        else:
            raise Failure(
                "the scanner service is running and holds the camera and pins; "
                "run: systemctl stop scanner, then selftest, then systemctl start "
                "scanner",
                EXIT_USAGE,
            )
    report = run_selftest(config, camera_seconds=seconds, say=click.echo, door_fault=door_fault)
    sys.exit(EXIT_OK if report.ok else EXIT_FAULT)


@cli.command("rollback")
@click.argument("what", type=click.Choice(["policy", "revocations", "keys"]))
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False))
def rollback_command(what: str, config_path: Path | None) -> None:
    """Put back the policy or revocation list the last USB update replaced (one step).

    The running gate picks the change up within a second. Keys cannot be
    rolled back: trust moves forward only, so a retired key never regains
    control; to trust an earlier key again, sign a new key update that
    lists it (scanner update keys --after trust.signed).
    """
    from ..transfer.updates import rollback

    if what == "keys":
        raise Failure(
            "keys cannot be rolled back: trust moves forward only. To trust an earlier "
            "key again, sign a key update that lists it: scanner update keys --key "
            "CURRENT.key EARLIER.pub --after trust.signed",
            EXIT_USAGE,
        )
    config = _load_gate_config(config_path, require_zone=False)
    path = {"policy": config.paths.policy, "revocations": config.paths.revocations}[what]
    shipped = config.paths.initial_policy if what == "policy" else None
    try:
        now = rollback(path, shipped=shipped)
    except ScannerError as err:
        raise Failure(str(err)) from err
    if now == path:
        click.echo(f"{what}: back to the previous version ({path})")
    else:
        click.echo(f"{what}: back to the version the image shipped ({now})")


@cli.command()
@click.argument("phase", required=False, type=click.Choice(["before", "during", "after", "auto"]))
@click.option(
    "--socket",
    "socket_path",
    type=click.Path(path_type=Path),
    default=Path("/run/scanner/control.sock"),
    show_default=True,
    help="The running daemon's control socket.",
)
def phase(phase: str | None, socket_path: Path) -> None:
    """Correct the show's phase on site, or show the gate's status.

    \b
    scanner phase during   the show has started now (the photo window starts now)
    scanner phase after    the show has ended now
    scanner phase before   the show has not started yet (running late)
    scanner phase auto     follow the policy's schedule again
    scanner phase          print the running gate's status

    The correction is kept across restarts until set back to auto. It never
    opens the doors before load-in or after curfew.
    """
    from ..gate.control import send_command

    request = (
        {"cmd": "status"}
        if phase is None
        else {"cmd": "phase", "phase": phase, "source": "scanner phase"}
    )
    try:
        answer = send_command(socket_path, request)
    except ScannerError as err:
        raise Failure(str(err)) from err
    if not answer.get("ok"):
        raise Failure(str(answer.get("error", "the gate refused")))
    for line in describe_status(answer, changed=phase):
        click.echo(line)


@cli.command()
@click.option(
    "--socket",
    "socket_path",
    type=click.Path(path_type=Path),
    default=Path("/run/scanner/control.sock"),
    show_default=True,
    help="The running daemon's control socket.",
)
@click.option("--row", "row_id", help="Admit only the denial of this row (shown first).")
@click.option("--yes", is_flag=True, help="Do not ask: admit the person shown.")
def admit(socket_path: Path, row_id: str | None, yes: bool) -> None:
    """Let the last denied person in by hand (the guard's override).

    Shows whom the running gate would let in (the person it denied last: name,
    tier, why and when, and that denial's row), asks at a terminal, then
    does what the override button on the box does: the gate admits that
    person if the denial was less than [gpio] override_seconds ago (30 s by
    default) and nobody has let them in yet. A code that carries no pass
    (a phone's "HELLO") never takes that person's place. The strike opens,
    the door shows the grant, and the log gets a granted row with reason
    override, the denied row and who: your shell user (as the kernel reports
    it, through the control socket). Run it on the box as root or a member
    of group scanner. Without a terminal give --row (as shown) or --yes.

    \b
    Exit codes: 0 let in; 1 nobody was (no denial to override, already let
    in, or a newer denial than --row); 2 no terminal to ask.
    """
    from ..gate.control import send_command

    try:
        shown = send_command(socket_path, {"cmd": "denied"})
    except ScannerError as err:
        raise Failure(str(err)) from err
    if not shown.get("ok"):
        raise Failure(f"nobody to let in: {shown.get('error')}")
    who = shown.get("holder") or (
        f"pass {shown['serial']}" if shown.get("serial") is not None else "a pass without a name"
    )
    click.echo(
        f"last denied: {who} ({shown.get('tier') or 'no tier'}), {shown.get('reason')}, "
        f"{shown.get('seconds_ago')} s ago (row {shown.get('row')})"
    )
    if row_id is None:
        if not yes:
            if not can_ask():
                raise Failure(
                    f"no terminal to ask: give --row {shown.get('row')} to let {who} in, "
                    "or --yes",
                    EXIT_USAGE,
                )
            if not click.confirm(f"let {who} in?", default=False):
                raise Failure("nobody let in")
        row_id = str(shown.get("row"))
    request: dict[str, Any] = {"cmd": "admit", "row": row_id}
    if os.environ.get("SUDO_USER"):
        request["sudo_user"] = os.environ["SUDO_USER"]
    try:
        answer = send_command(socket_path, request)
    except ScannerError as err:
        raise Failure(str(err)) from err
    if not answer.get("ok"):
        raise Failure(str(answer.get("error", "the gate refused")))
    if answer.get("again"):
        click.echo(f"{answer.get('message')}: one override, not two")
        return
    who = answer.get("holder") or (
        f"pass {answer['serial']}" if answer.get("serial") is not None else "the person"
    )
    click.echo(
        f"let in: {who}, denied as {answer.get('denied_reason')}; "
        f"logged as an override by {answer.get('by')} (row {answer.get('row')})"
    )


PHASE_WORDS = {
    "during": "the show is on",
    "after": "the show is over",
    "before": "the show has not started yet",
}


def describe_status(answer: dict[str, Any], *, changed: str | None = None) -> list[str]:
    """The running gate's status as a guard or technician reads it; with
    ``changed``, first a confirmation of the phase just set."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(str(answer.get("timezone") or "UTC"))

    def local(ts: str) -> str:
        return datetime.fromisoformat(ts.replace("Z", "+00:00")).astimezone(zone).strftime("%H:%M")

    gate = answer.get("gate", "?")
    lines = []
    override = answer.get("override")
    if changed == "auto":
        lines.append(f"gate {gate}: following the policy's schedule again")
    elif changed is not None and override:
        lines.append(
            f"gate {gate}: {PHASE_WORDS[override['phase']]} since {local(override['since'])} "
            "(kept across restarts; back to the schedule with: scanner phase auto)"
        )
    door = f" through door {answer['door']}" if answer.get("door") else ""
    lines.append(f"gate {gate}: {answer.get('direction')} into {answer.get('zone')}{door}")
    set_on_site = ""
    if override:
        set_on_site = f", set on site at {local(override['since'])}"
    lines.append(f"phase: {answer.get('phase')}{set_on_site}")
    let_in = answer.get("let_in")
    counted = "" if let_in is None else f"; {plural(let_in, 'pass')} let in this event"
    lines.append(f"scans: {answer.get('granted')} granted, {answer.get('denied')} denied{counted}")
    lines.append(f"last: {answer.get('last')}")
    sensors = answer.get("sensors") or {}
    if sensors:
        lines.append("; ".join(f"{name}: {state}" for name, state in sensors.items()))
    venue = answer.get("venue") or {}
    if venue.get("summary"):
        lines.append(str(venue["summary"]))
    faults = answer.get("faults") or {}
    if not faults:
        lines.append("faults: none")
    for name, message in faults.items():
        lines.append(f"fault {name}: {message}")
    return lines


@cli.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--decoder", type=click.Choice(["auto", "zxing", "zbar"]), default="auto", show_default=True
)
def decode(images: tuple[Path, ...], decoder: str) -> None:
    """Print what the gate's decoder reads in each image, one JSON line each.

    Each line has file, codes (the decoded texts) and ms (decode time). For
    technicians checking what the camera sees: save a frame, run this.
    Exits 1 when any image holds no readable code, 2 when one cannot be read.
    """
    import time

    from ..gate.decoders import open_decoder
    from ..gate.frames import read_image

    missing = False
    try:
        with open_decoder(decoder) as reader:
            for path in images:
                frame = read_image(path)
                start = time.perf_counter()
                codes = reader.decode(frame)
                ms = (time.perf_counter() - start) * 1000
                missing = missing or not codes
                click.echo(
                    json.dumps(
                        {"file": str(path), "codes": codes, "ms": round(ms, 2)}, ensure_ascii=False
                    )
                )
    except ScannerError as err:
        raise Failure(str(err), EXIT_USAGE) from err
    sys.exit(EXIT_FAILED if missing else EXIT_OK)
