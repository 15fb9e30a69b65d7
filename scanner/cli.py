"""The ``scanner`` command: a thin shell over the library.

Each command parses its options, calls one library function and prints the
result. A :class:`~scanner.errors.ScannerError` becomes a one-line
``Error: ...`` and a non-zero exit, never a traceback.

Exit codes (every command): 0 success, 1 failure or denial, 2 usage error
(bad option, unreadable or invalid input file), 3 the gate is not fit to run
(``scanner run`` and ``scanner selftest`` faults).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from . import __version__
from .errors import ScannerError

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_FAULT = 0, 1, 2, 3


class Failure(click.ClickException):
    """A one-line error with a chosen exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def reports_errors(exit_code: int = EXIT_FAILED) -> Callable[[F], F]:
    """Turn a ScannerError raised by a command into ``Error: ...`` and ``exit_code``."""

    def wrap(func: F) -> F:
        @wraps(func)
        def inner(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except ScannerError as err:
                raise Failure(str(err), exit_code) from err

        return inner  # type: ignore[return-value]

    return wrap


def _existing(path: Path, what: str) -> Path:
    if not path.exists():
        raise Failure(f"{what} {path} does not exist", EXIT_USAGE)
    return path


def _read_bytes(path: Path, what: str) -> bytes:
    try:
        return _existing(path, what).read_bytes()
    except OSError as err:
        raise Failure(f"cannot read {what} {path}: {err.strerror}", EXIT_USAGE) from err


def _write_atomically(out: Path, data: bytes) -> None:
    """Write a file under a temporary name and rename it: never half a file."""
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(out)


def _now() -> datetime:
    return datetime.now(UTC)


def _parse_at(text: str | None, timezone: str) -> datetime:
    from .organizer.issuing import parse_time

    return _now() if text is None else parse_time(text, timezone, "--at")


def load_trust(paths: tuple[Path, ...]) -> list[Any] | None:
    """Public keys given with --trust, or None to trust the key a file carries."""
    from .keyfiles import load_public_key

    if not paths:
        return None
    return [load_public_key(p) for p in paths]


def open_policy_file(path: Path, trust: tuple[Path, ...], *, quiet: bool = False) -> Any:
    from .core.policy import open_policy

    data = _read_bytes(path, "policy")
    keys = load_trust(trust)
    if keys is None and not quiet:
        click.echo(
            f"note: {path} checked against the key it carries; give --trust KEY.pub "
            "to check who signed it.",
            err=True,
        )
    return open_policy(data, keys)


trust_option = click.option(
    "--trust",
    type=click.Path(path_type=Path, dir_okay=False),
    multiple=True,
    help="Organizer public key (.pub) the policy must be signed by; repeatable.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="scanner")
def cli() -> None:
    """Backstage gate scanner: signed passes checked offline at the door.

    Organizers make keys, sign the event policy and issue passes; gates run
    the scan loop; managers merge and report the logs. Every command has
    --help. Exit codes: 0 ok, 1 failed or denied, 2 usage error, 3 gate fault.
    """


# -- keys ------------------------------------------------------------------


@cli.command()
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder for NAME.key (private, mode 0600) and NAME.pub.",
)
@click.option("--name", default="organizer", show_default=True, help="File name stem.")
@click.option("--force", is_flag=True, help="Replace an existing key of that name.")
@reports_errors()
def keygen(out_dir: Path, name: str, force: bool) -> None:
    """Make an Ed25519 signing key pair.

    The private key signs the event policy and passes: keep it on the
    organizer's machine, never on a gate. Gates get the .pub file.
    """
    from .keyfiles import write_key_pair

    paths = write_key_pair(out_dir, name, force=force)
    click.echo(f"private key: {paths.private} (keep it secret; never copy it to a gate)")
    click.echo(f"public key:  {paths.public}")
    click.echo(f"key id:      {paths.key_id}")
    click.echo(
        f"next: scanner policy sign config/example-event.toml --key {paths.private} -o event.policy"
    )


# -- the policy --------------------------------------------------------------


@cli.group()
def policy() -> None:
    """Sign and inspect event policies."""


@policy.command("sign")
@click.argument("policy_toml", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--key",
    "key_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Organizer private key (from scanner keygen).",
)
@click.option(
    "-o",
    "--out",
    "out_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Signed policy file to write (what gates cache).",
)
@reports_errors(EXIT_USAGE)
def policy_sign(policy_toml: Path, key_path: Path, out_path: Path) -> None:
    """Check POLICY_TOML and sign it into the file gates use.

    Every mistake is reported with the key that holds it. The signing time
    becomes the gates' clock floor: a gate whose clock is earlier distrusts it.
    """
    from .core.keys import key_id
    from .core.policy import open_policy, sign_policy
    from .keyfiles import load_private_key

    try:
        text = _read_bytes(policy_toml, "policy").decode("utf-8")
    except UnicodeDecodeError as err:
        raise Failure(f"{policy_toml} is not UTF-8 text", EXIT_USAGE) from err
    key = load_private_key(key_path)
    data = sign_policy(text, key, _now())
    signed = open_policy(data, [key.public_key()])
    _write_atomically(out_path, data)
    click.echo(
        f"signed {signed.event!r} ({len(signed.tiers)} tiers, {len(signed.zones)} zones) "
        f"with key {key_id(key)} -> {out_path}"
    )


@policy.command("show")
@click.argument("policy_file", type=click.Path(path_type=Path, dir_okay=False))
@trust_option
@reports_errors(EXIT_USAGE)
def policy_show(policy_file: Path, trust: tuple[Path, ...]) -> None:
    """Print a signed policy: schedule, keys and the access table.

    In the table, each cell lists when a tier may enter a zone:
    B before the show, P in the photo window, D during, A after.
    """
    from zoneinfo import ZoneInfo

    from .core.keys import key_id
    from .core.policy import access_table

    p = open_policy_file(policy_file, trust)
    tz = ZoneInfo(p.timezone)
    click.echo(f"event    {p.event}: {p.name} ({p.timezone})")
    if p.signed_at:
        click.echo(f"signed   {p.signed_at.astimezone(tz):%Y-%m-%d %H:%M} by key {p.signer}")
    s = p.schedule
    for label, when in [
        ("opens", s.opens),
        ("doors", s.doors),
        ("show", s.show_start),
        ("ends", s.show_end),
        ("curfew", s.curfew),
    ]:
        click.echo(f"{label:<8} {when.astimezone(tz):%a %Y-%m-%d %H:%M}")
    click.echo(f"photos   first {int(s.photo_window.total_seconds() // 60)} minutes of the show")
    click.echo(f"signers  {', '.join(key_id(k) for k in p.pass_keys.values())}")
    click.echo(f"revoked  {', '.join(map(str, sorted(p.revoked))) or 'none'}")
    table = access_table(p)
    width = max(len(t) for t in table) + 2
    click.echo("")
    click.echo(" " * width + " ".join(f"{i:>4}" for i in range(1, len(p.zones) + 1)))
    for tier_id, row in table.items():
        cells = " ".join(f"{row[z] or '-':>4}" for z in p.zones)
        flag = "  (zones on pass)" if p.tiers[tier_id].requires_zones else ""
        click.echo(f"{tier_id:<{width}}{cells}{flag}")
    click.echo("")
    for i, zone in enumerate(p.zones, 1):
        click.echo(f"{i:>4} {zone}")
    click.echo("B before  P photo window  D during  A after  - never")


# -- issuing -----------------------------------------------------------------


@cli.command()
@click.option(
    "--key",
    "key_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Organizer private key that signs passes.",
)
@click.option(
    "--policy",
    "policy_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Signed event policy (from scanner policy sign).",
)
@click.option("--tier", help="Tier id from the policy, e.g. vip.")
@click.option("--holder", help="Name printed in the pass (up to 40 bytes).")
@click.option("--serial", type=click.IntRange(0), help="Serial number; default: next free.")
@click.option("--zones", help="Explicit zones, comma separated; they replace the tier's zones.")
@click.option("--not-before", help="Valid from (ISO 8601; no offset = event time zone).")
@click.option("--not-after", help="Valid until (ISO 8601; no offset = event time zone).")
@click.option("--png", type=click.Path(path_type=Path, dir_okay=False), help="Write a PNG.")
@click.option("--svg", type=click.Path(path_type=Path, dir_okay=False), help="Write an SVG.")
@click.option(
    "--batch",
    type=click.Path(path_type=Path, dir_okay=False),
    help="CSV of passes: holder,tier[,zones,serial,not_before,not_after].",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="With --batch: folder for the images and sheet.html.",
)
@click.option(
    "--ledger",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Issued-serials ledger; default EVENT.issued.db beside the policy.",
)
@reports_errors()
def issue(
    key_path: Path,
    policy_path: Path,
    tier: str | None,
    holder: str | None,
    serial: int | None,
    zones: str | None,
    not_before: str | None,
    not_after: str | None,
    png: Path | None,
    svg: Path | None,
    batch: Path | None,
    out_dir: Path | None,
    ledger: Path | None,
) -> None:
    """Issue passes: one (prints its QR text) or a batch from a CSV file.

    \b
    One pass:   scanner issue --key K --policy P --tier vip --holder "Jane Doe" --png jane.png
    A batch:    scanner issue --key K --policy P --batch guests.csv --out passes/

    Tiers and zones must exist in the policy. Serials are recorded in a
    ledger so that no two passes of an event share one.
    """
    from .keyfiles import load_private_key
    from .organizer.issuing import (
        Ledger,
        issue_batch,
        make_pass,
        parse_time,
        qr_code,
        read_batch_csv,
    )

    signing_key = load_private_key(key_path)
    event_policy = open_policy_file(policy_path, (), quiet=True)
    ledger_path = ledger or policy_path.parent / f"{event_policy.event}.issued.db"
    if batch is not None:
        if out_dir is None:
            raise Failure("--batch needs --out DIR for the images and sheet", EXIT_USAGE)
        single = [tier, holder, serial, zones, not_before, not_after, png, svg]
        if any(v is not None for v in single):
            raise Failure(
                "--batch takes its passes from the CSV; drop the single-pass options", EXIT_USAGE
            )
        try:
            rows = read_batch_csv(batch.read_text(encoding="utf-8-sig"), event_policy)
        except (OSError, UnicodeDecodeError) as err:
            raise Failure(f"cannot read {batch}: {err}", EXIT_USAGE) from err
        with Ledger(ledger_path, event_policy.event) as book:
            with click.progressbar(
                length=len(rows), label="Issuing passes", file=sys.stderr
            ) as bar:

                def progress(items: Any) -> Any:
                    for item in items:
                        yield item
                        bar.update(1)

                issued = issue_batch(
                    signing_key, event_policy, rows, out_dir, book, progress=progress
                )
        click.echo(
            f"issued {len(issued)} passes (serials {issued[0].content.serial}.."
            f"{issued[-1].content.serial}) into {out_dir}; print {out_dir / 'sheet.html'}"
        )
        return
    if tier is None:
        raise Failure("give --tier for one pass, or --batch CSV --out DIR", EXIT_USAGE)
    zone_list = [z.strip() for z in zones.split(",") if z.strip()] if zones else None
    with Ledger(ledger_path, event_policy.event) as book:
        from .organizer.issuing import allocate_serials

        (chosen,) = allocate_serials([serial], book.used())
        issued_pass = make_pass(
            signing_key,
            event_policy,
            tier=tier,
            serial=chosen,
            holder=holder,
            zones=zone_list,
            not_before=parse_time(not_before, event_policy.timezone, "--not-before")
            if not_before
            else None,
            not_after=parse_time(not_after, event_policy.timezone, "--not-after")
            if not_after
            else None,
        )
        code = qr_code(issued_pass.text)
        if png:
            code.save(str(png), scale=8, border=4)
        if svg:
            code.save(str(svg), scale=8, border=4)
        book.record([issued_pass], signing_key)
    click.echo(issued_pass.text)
    click.echo(f"serial {chosen}, {issued_pass.tier_label}, QR version {code.designator}", err=True)


# -- checking a pass ---------------------------------------------------------


@cli.command()
@click.argument("qr_text", required=False)
@click.option(
    "--policy",
    "policy_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Signed event policy.",
)
@trust_option
@click.option("--zone", required=True, help="The zone the door leads into.")
@click.option(
    "--direction", type=click.Choice(["entry", "exit"]), default="entry", show_default=True
)
@click.option("--at", "at_text", help="Decide as of this time (ISO 8601); default now.")
@click.option(
    "--image",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Read the pass from a photo instead of QR_TEXT.",
)
def check(
    qr_text: str | None,
    policy_path: Path,
    trust: tuple[Path, ...],
    zone: str,
    direction: str,
    at_text: str | None,
    image: Path | None,
) -> None:
    """Decide on one pass as a gate would, and print the decision as JSON.

    Exit codes: 0 granted, 1 denied, 2 usage error (bad option, unreadable
    policy or image, no QR code in the image).
    """
    from .core.decision import Direction, Gate, decide

    try:
        if (qr_text is None) == (image is None):
            raise Failure("give either QR_TEXT or --image FILE", EXIT_USAGE)
        event_policy = open_policy_file(policy_path, trust)
        if zone not in event_policy.zones:
            raise Failure(
                f"zone {zone!r} is not in the policy (zones: {', '.join(event_policy.zones)})",
                EXIT_USAGE,
            )
        if image is not None:
            qr_text = _read_image_code(image)
        assert qr_text is not None
        at = _parse_at(at_text, event_policy.timezone)
        decision = decide(
            qr_text, event_policy, Gate(zone=zone, direction=Direction(direction)), at
        )
    except ScannerError as err:
        raise Failure(str(err), EXIT_USAGE) from err
    click.echo(json.dumps(decision.as_dict(), ensure_ascii=False))
    sys.exit(EXIT_OK if decision.granted else EXIT_FAILED)


def _read_image_code(image: Path) -> str:
    from .gate.decoders import open_decoder
    from .gate.frames import read_image

    frame = read_image(image)
    with open_decoder("auto") as decoder:
        codes = decoder.decode(frame)
    if not codes:
        raise Failure(f"no QR code found in {image}", EXIT_USAGE)
    if len(codes) > 1:
        raise Failure(f"{image} holds {len(codes)} QR codes; show one pass at a time", EXIT_USAGE)
    return str(codes[0])


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
    from .gate.config import load_config

    try:
        return load_config(config_path, require_zone=require_zone, **flags)
    except ScannerError as err:
        raise Failure(f"configuration: {err}", EXIT_USAGE) from err


@cli.command()
@gate_options
@click.option("--camera", help="v4l2:/dev/video0, picamera2 or file:PATH (video or image folder).")
@click.option("--gpio", help="Pin factory: auto (the Pi's), mock (prints pin changes), lgpio.")
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
    standard output; --gpio mock also prints every pin change.

    Exit codes: 0 stopped or recording ended, 2 configuration error,
    3 the gate cannot run (no GPIO, no decoder) or rows were left unsaved.
    """
    from .gate.config import load_config
    from .gate.daemon import hold_config_fault, run_gate

    try:
        config = load_config(
            config_path,
            gate=gate,
            zone=zone,
            direction=direction,
            policy=policy,
            trust=list(trust) or None,
            db=db,
            camera=camera,
            gpio=gpio,
            decoder=decoder,
            control_socket=control_socket,
        )
    except ScannerError as err:
        click.echo(f"Error: configuration: {err}", err=True)
        if os.environ.get("NOTIFY_SOCKET"):  # under systemd: stay up and show the fault
            sys.exit(hold_config_fault(str(err)))
        sys.exit(EXIT_USAGE)
    try:
        code = run_gate(config)
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
def export_command(
    config_path: Path | None,
    gate: str | None,
    zone: str | None,
    direction: str | None,
    policy: Path | None,
    trust: tuple[Path, ...],
    db: Path | None,
    target: Path,
) -> None:
    """Export the scan log: a snapshot, a CSV and a signed manifest.

    Writes TARGET/scanner-logs/EVENT_GATE/TIME/ with scans.db (a consistent
    snapshot, safe while the daemon runs), scans.csv, device.pub and
    manifest.json signed with this gate's device key. Never overwrites an
    earlier export. Takes the same flags as scanner run.
    """
    from .transfer.usb import export_to

    config = _load_gate_config(
        config_path,
        gate=gate,
        zone=zone,
        direction=direction,
        require_zone=False,
        policy=policy,
        trust=list(trust) or None,
        db=db,
    )
    try:
        result = export_to(config, target)
    except ScannerError as err:
        raise Failure(str(err)) from err
    click.echo(
        f"exported {result.rows} scans ({result.first_ts or '-'} .. "
        f"{result.last_ts or '-'}) to {result.folder}"
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
    policy: Path | None,
    trust: tuple[Path, ...],
    db: Path | None,
    folder: Path,
    new_event: bool,
) -> None:
    """Apply signed updates from FOLDER (or its scanner-update/ folder).

    Reads only event.policy, revocations.signed, trust.signed and time.signed,
    each verified against the organizer keys the gate trusts now; anything
    unsigned, altered, for another event, older than what is installed,
    oversized or not a regular file is refused and logged. Exits 1 if
    anything was refused.
    """
    from .transfer.usb import import_from

    config = _load_gate_config(
        config_path,
        gate=gate,
        zone=zone,
        direction=direction,
        require_zone=False,
        policy=policy,
        trust=list(trust) or None,
        db=db,
    )
    results = import_from(config, folder, allow_new_event=new_event)
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
    from .transfer.usb import handle_device

    config = _load_gate_config(config_path, require_zone=False)
    try:
        report = handle_device(config, device)
    except ScannerError as err:
        raise Failure(str(err)) from err
    for line in report.lines:
        click.echo(line)
    sys.exit(EXIT_OK if report.ok else EXIT_FAILED)


@cli.command()
@gate_options
@click.option("--camera", help="v4l2:/dev/video0, picamera2 or file:PATH.")
@click.option("--gpio", help="Pin factory: auto, mock, lgpio.")
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
    the service first (systemctl stop scanner). Exits 0 when all is well,
    3 on any fault.
    """
    from .errors import ControlError
    from .gate.control import send_command
    from .gate.selftest import run_selftest

    config = _load_gate_config(
        config_path,
        gate=gate,
        zone=zone,
        direction=direction,
        policy=policy,
        trust=list(trust) or None,
        db=db,
        camera=camera,
        gpio=gpio,
    )
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
    report = run_selftest(config, camera_seconds=seconds, say=click.echo)
    sys.exit(EXIT_OK if report.ok else EXIT_FAULT)


@cli.command("rollback")
@click.argument("what", type=click.Choice(["policy", "revocations", "keys"]))
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False))
def rollback_command(what: str, config_path: Path | None) -> None:
    """Put back the version the last USB update replaced (one step).

    The running gate picks the change up within a second.
    """
    from .transfer.updates import rollback

    config = _load_gate_config(config_path, require_zone=False)
    path = {
        "policy": config.paths.policy,
        "revocations": config.paths.revocations,
        "keys": config.paths.trust_update,
    }[what]
    try:
        rollback(path)
    except ScannerError as err:
        raise Failure(str(err)) from err
    click.echo(f"{what}: back to the previous version ({path})")


@cli.group()
def update() -> None:
    """Sign updates for gates (copy them to a stick's scanner-update/ folder)."""


@update.command("revocations")
@click.option("--key", "key_path", required=True, type=click.Path(path_type=Path))
@click.option(
    "--policy",
    "policy_path",
    required=True,
    type=click.Path(path_type=Path),
    help="The signed event policy the passes belong to.",
)
@click.argument("serials", nargs=-1, type=click.IntRange(0), required=True)
@click.option(
    "-o",
    "--out",
    "out_path",
    default=Path("revocations.signed"),
    show_default=True,
    type=click.Path(path_type=Path, dir_okay=False),
)
@reports_errors()
def update_revocations(
    key_path: Path, policy_path: Path, serials: tuple[int, ...], out_path: Path
) -> None:
    """Sign the list of revoked pass serials (the whole list, not a change).

    Gates refuse these passes from the moment the update is applied. Find a
    lost pass's serial in the issuing ledger (EVENT.issued.db).
    """
    from .keyfiles import load_private_key
    from .transfer.updates import sign_revocations

    event_policy = open_policy_file(policy_path, (), quiet=True)
    _write_atomically(
        out_path,
        sign_revocations(load_private_key(key_path), event_policy.event, list(serials), _now()),
    )
    click.echo(f"{len(set(serials))} serials revoked for {event_policy.event!r} -> {out_path}")


@update.command("keys")
@click.option(
    "--key",
    "key_path",
    required=True,
    type=click.Path(path_type=Path),
    help="An organizer key the gates trust now.",
)
@click.argument(
    "public_keys", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False)
)
@click.option(
    "-o",
    "--out",
    "out_path",
    default=Path("trust.signed"),
    show_default=True,
    type=click.Path(path_type=Path, dir_okay=False),
)
@reports_errors()
def update_keys(key_path: Path, public_keys: tuple[Path, ...], out_path: Path) -> None:
    """Sign the set of organizer keys gates should trust from now on.

    The set replaces the keys in the image; list the current key too if it
    should stay trusted. Signed with a key the gates trust now.
    """
    from .keyfiles import load_private_key, load_public_key
    from .transfer.updates import sign_trust_update

    keys = [load_public_key(p) for p in public_keys]
    _write_atomically(out_path, sign_trust_update(load_private_key(key_path), keys, _now()))
    click.echo(f"{len(keys)} trusted keys -> {out_path}")


@update.command("time")
@click.option("--key", "key_path", required=True, type=click.Path(path_type=Path))
@click.option("--at", "at_text", help="The time to set (ISO 8601 with offset); default now.")
@click.option("--gate", help="Only for this gate; default every gate.")
@click.option(
    "-o",
    "--out",
    "out_path",
    default=Path("time.signed"),
    show_default=True,
    type=click.Path(path_type=Path, dir_okay=False),
)
@reports_errors()
def update_time(key_path: Path, at_text: str | None, gate: str | None, out_path: Path) -> None:
    """Sign a time setting for gates whose clock is behind.

    A gate applies it only to move its clock forward, never below a time it
    has already seen. Make it just before the stick goes to the gate.
    """
    from .core.signed import parse_utc
    from .keyfiles import load_private_key
    from .transfer.updates import sign_time_setting

    now = _now()
    try:
        when = parse_utc(at_text) if at_text else now
    except ValueError as err:
        raise Failure(f"--at: {err}", EXIT_USAGE) from err
    _write_atomically(out_path, sign_time_setting(load_private_key(key_path), when, now, gate))
    click.echo(f"time setting {when.isoformat()} -> {out_path}")


# -- the manager's laptop -----------------------------------------------------


@cli.group()
def logs() -> None:
    """Check, merge and report gate exports on the manager's laptop."""


known_gates_option = click.option(
    "--known-gates",
    type=click.Path(path_type=Path, exists=True),
    help="Folder (or file) of gate device.pub files: exports must be signed by these.",
)


@logs.command("verify")
@click.argument("exports", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True))
@known_gates_option
@reports_errors(EXIT_USAGE)
def logs_verify(exports: tuple[Path, ...], known_gates: Path | None) -> None:
    """Say whether each export is intact and signed by a known gate.

    Checks the manifest's signature, each file's SHA-256, the hash chain from
    its first row, and that the log ends where the manifest says. Exits 1 if
    any export is broken or signed by an unknown gate.
    """
    from .manager.merge import find_exports, load_known_gates
    from .transfer.export import verify_export

    known = load_known_gates(known_gates) if known_gates else None
    folders = find_exports(exports)
    if not folders:
        raise Failure("no exports found (folders holding manifest.json)", EXIT_USAGE)
    bad = 0
    for folder in folders:
        check = verify_export(folder, known)
        click.echo(f"{folder}: {check.describe()}")
        bad += (not check.intact) or check.known_gate is False
    sys.exit(EXIT_FAILED if bad else EXIT_OK)


@logs.command("merge")
@click.argument("exports", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True))
@click.option(
    "-o",
    "--out",
    "out_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Merged SQLite file.",
)
@known_gates_option
@reports_errors(EXIT_USAGE)
def logs_merge(exports: tuple[Path, ...], out_path: Path, known_gates: Path | None) -> None:
    """Merge gate exports into one SQLite file; broken ones are reported, not merged.

    EXPORTS are export folders or folders holding them (a stick's
    scanner-logs). Running it again, or with overlapping exports, changes
    nothing. The result opens as-is in Datasette and sqlite-utils. Exits 1
    if any export was broken.
    """
    from .manager.merge import find_exports, load_known_gates, merge_exports

    known = load_known_gates(known_gates) if known_gates else None
    folders = find_exports(exports)
    if not folders:
        raise Failure("no exports found (folders holding manifest.json)", EXIT_USAGE)
    with click.progressbar(
        length=len(folders), label="Checking and merging", file=sys.stderr
    ) as bar:
        report = merge_exports(
            folders, out_path, known_gates=known, progress=lambda check: bar.update(1)
        )
    for check in report.broken:
        click.echo(f"NOT MERGED {check.folder}: {check.describe()}")
    click.echo(
        f"merged {len(report.merged)} exports ({report.new_rows} new scans) into "
        f"{out_path}; {len(report.broken)} broken"
    )
    sys.exit(EXIT_OK if report.ok else EXIT_FAILED)


@logs.command("report")
@click.argument("merged", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option(
    "-o",
    "--out",
    "out_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The HTML report to write.",
)
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write every scan as CSV, with a suspected_copy column.",
)
@click.option(
    "--walk-minutes",
    default=2.0,
    show_default=True,
    type=click.FloatRange(0),
    help="A pass seen at two gates closer in time than this is a suspected copy (0: off).",
)
@click.option("--tz", help="Show times in this time zone (e.g. Europe/Berlin); default UTC.")
@reports_errors(EXIT_USAGE)
def logs_report(
    merged: Path, out_path: Path | None, csv_path: Path | None, walk_minutes: float, tz: str | None
) -> None:
    """Turn a merged log into one self-contained HTML page (and a CSV).

    Entries per hour per zone and per gate, denials by reason, who is inside
    now per zone, passes seen at two gates closer in time than a person can
    walk (suspected copies), revoked and forged attempts, and a table of scans
    that can be filtered. Opens offline in any browser.
    """
    from .manager.report import write_csv, write_report

    if out_path is None and csv_path is None:
        raise Failure("give -o report.html, --csv scans.csv, or both", EXIT_USAGE)
    if out_path is not None:
        write_report(merged, out_path, walk_seconds=walk_minutes * 60, tz=tz)
        click.echo(f"report: {out_path}")
    if csv_path is not None:
        rows = write_csv(merged, csv_path, walk_seconds=walk_minutes * 60)
        click.echo(f"csv: {rows} scans -> {csv_path}")


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
    from .gate.control import send_command

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
    click.echo(answer.get("status", ""))
    if phase is None and answer.get("faults"):
        for name, message in answer["faults"].items():
            click.echo(f"fault {name}: {message}")


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

    from .gate.decoders import open_decoder
    from .gate.frames import read_image

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


@cli.command()
@click.option("--frames", default=60, show_default=True, help="Frames per measurement.")
@click.option("--rounds", default=5, show_default=True, help="Rounds; the median is reported.")
@click.option(
    "--db-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where the benchmark's scan logs go (the disk whose fsync counts).",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write the results as JSON.",
)
def bench(frames: int, rounds: int, db_dir: Path | None, json_path: Path | None) -> None:
    """Measure decode, loop and frame-to-signal costs against the bare libraries.

    Prints a table of milliseconds per 640x480 frame and ratios to a bare
    zxing-cpp and a bare pyzbar decode of the same frames, measured in the
    same run. Not a pass/fail test: shared machines are noisy.
    """
    from .tools.bench import run_bench, write_json

    result = run_bench(
        frames=frames,
        rounds=rounds,
        db_dir=db_dir,
        progress=lambda s: click.echo(f"measuring: {s}", err=True),
    )
    click.echo(result.table())
    if json_path:
        write_json(result, json_path)


@cli.command()
@click.option(
    "--dir",
    "folder",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("demo-run"),
    show_default=True,
    help="Folder for the demo event, its recording and the scan log.",
)
@click.option("--fast", is_flag=True, help="Process the recording as fast as possible.")
def demo(folder: Path, fast: bool) -> None:
    """Run the real gate on a simulated backstage door.

    Makes a demo event (keys, a signed policy whose show started two minutes
    ago, passes of several tiers, a forged and a revoked one), films people
    holding them up, runs the daemon on the film with mock GPIO, and prints
    every decision, every LED and buzzer change, and a summary.
    Exits 0 when every presentation got the expected decision.
    """
    from .tools.demo import run_demo

    try:
        code = run_demo(folder, realtime=not fast, say=click.echo)
    except ScannerError as err:
        raise Failure(str(err), EXIT_FAULT) from err
    sys.exit(code)


def main() -> None:
    cli(prog_name="scanner")


if __name__ == "__main__":
    main()
