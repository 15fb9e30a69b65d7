"""The organizer's commands: keys, the policy, issuing, checking, signing updates."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from ..errors import ScannerError
from .base import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Failure,
    _now,
    _parse_at,
    _read_bytes,
    _write_atomically,
    cli,
    open_policy_file,
    reports_errors,
    trust_option,
)

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
    from ..keyfiles import write_key_pair

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
    from ..core.keys import key_id
    from ..core.policy import open_policy, sign_policy
    from ..keyfiles import load_private_key

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

    from ..core.keys import key_id
    from ..core.policy import access_table

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
    from ..keyfiles import load_private_key
    from ..organizer.issuing import (
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
        from ..organizer.issuing import allocate_serials

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
    from ..core.decision import Direction, Gate, decide

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
    from ..gate.decoders import open_decoder
    from ..gate.frames import read_image

    frame = read_image(image)
    with open_decoder("auto") as decoder:
        codes = decoder.decode(frame)
    if not codes:
        raise Failure(f"no QR code found in {image}", EXIT_USAGE)
    if len(codes) > 1:
        raise Failure(f"{image} holds {len(codes)} QR codes; show one pass at a time", EXIT_USAGE)
    return str(codes[0])


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
    from ..keyfiles import load_private_key
    from ..transfer.updates import sign_revocations

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
    help="An organizer key the gates trust now: for the first key update, one in "
    "their image; after that, one the last key update lists.",
)
@click.argument(
    "public_keys", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False)
)
@click.option(
    "--after",
    "after_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The key chain so far (trust.signed); the new key update is added to its end.",
)
@click.option(
    "-o",
    "--out",
    "out_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Where to write the chain [default: the --after file, else trust.signed].",
)
@reports_errors(EXIT_USAGE)
def update_keys(
    key_path: Path, public_keys: tuple[Path, ...], after_path: Path | None, out_path: Path | None
) -> None:
    """Rotate the organizer keys: the PUBLIC_KEYS gates trust from now on.

    Gates keep a chain of key updates, each signed by a key the one before
    it trusts (the first by a key in their image), and accept only a chain
    that reaches further than the one they hold: trust moves forward only,
    and a retired key can never take control back. The set replaces the
    keys trusted so far; list the current key too if it should stay.

    \b
    scanner update keys --key keys/organizer.key keys/k1.pub            # the first
    scanner update keys --key keys/k1.key keys/k2.pub --after trust.signed  # each later one

    Copy the whole chain (trust.signed) to every stick's scanner-update/
    folder: a gate that missed a rotation catches up from it. Keep it; the
    next rotation is made --after it.
    """
    from ..core.keys import key_id
    from ..core.trust import extend_chain
    from ..keyfiles import load_private_key, load_public_key

    out = out_path or after_path or Path("trust.signed")
    chain = _read_bytes(after_path, "key chain") if after_path is not None else None
    if chain is None and out.exists():
        raise Failure(
            f"{out} already exists; add the new key update to that chain with --after {out}, "
            "or write a new chain elsewhere with -o",
            EXIT_USAGE,
        )
    keys = [load_public_key(p) for p in public_keys]
    data, sequence = extend_chain(chain, load_private_key(key_path), keys, _now())
    _write_atomically(out, data)
    ids = ", ".join(sorted({key_id(k) for k in keys}))
    noun = "key" if len({key_id(k) for k in keys}) == 1 else "keys"
    click.echo(f"key update {sequence}: gates will trust {noun} {ids} -> {out}")
    click.echo(f"next: copy {out} to scanner-update/ on the stick; keep it for the next rotation")


@update.command("time")
@click.option(
    "--key",
    "key_path",
    required=True,
    type=click.Path(path_type=Path),
    help="An organizer key the gates trust now.",
)
@click.option(
    "--policy",
    "policy_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The signed event policy: the setting is for its event only.",
)
@click.option(
    "--gate",
    "gates",
    multiple=True,
    help="Only for this gate id; repeatable [default: every gate of the event].",
)
@click.option(
    "--valid-hours",
    type=click.FloatRange(0, 48, min_open=True),
    default=4,
    show_default=True,
    help="How long after signing a gate whose clock it can believe accepts it.",
)
@click.option(
    "--lower-floor",
    is_flag=True,
    help="Also lower a gate's clock floor that a wrong clock raised beyond this time.",
)
@click.option(
    "--sequence",
    type=click.IntRange(1),
    help="Its number; gates accept each number once and only rising "
    "[default: one more than the last, kept in EVENT.time-sequence beside the policy].",
)
@click.option(
    "-o",
    "--out",
    "out_path",
    default=Path("time.signed"),
    show_default=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Where to write it (then copy it to the stick's scanner-update/).",
)
@reports_errors(EXIT_USAGE)
def update_time(
    key_path: Path,
    policy_path: Path,
    gates: tuple[str, ...],
    valid_hours: float,
    lower_floor: bool,
    sequence: int | None,
    out_path: Path,
) -> None:
    """Sign a time setting: "it is now at least this time" for the event's gates.

    A gate raises its clock floor to it (and its USB service sets a clock
    that is behind); with --lower-floor it also lowers a floor that a wrong
    clock pushed too far ahead, which otherwise keeps the clock untrusted.
    It names the event, optionally the gates, a sequence number (a gate
    refuses a number it has used, so a stick cannot replay it) and expires
    --valid-hours after signing. Sign it on a computer whose clock is right,
    just before the stick goes to the gates.
    """
    from datetime import timedelta

    from ..core.signed import format_utc
    from ..gate.config import GATE_ID
    from ..keyfiles import load_private_key
    from ..transfer.updates import sign_time_setting

    event_policy = open_policy_file(policy_path, (), quiet=True)
    event = event_policy.event
    counter = policy_path.parent / f"{event}.time-sequence"
    if sequence is None:
        last = 0
        if counter.exists():
            try:
                last = int(counter.read_text(encoding="ascii").strip())
            except (OSError, UnicodeDecodeError, ValueError) as err:
                raise Failure(
                    f"cannot read the last sequence from {counter}; give --sequence", EXIT_USAGE
                ) from err
        sequence = last + 1
    bad = [g for g in gates if not GATE_ID.fullmatch(g)]
    if bad:
        raise Failure(f"--gate: {bad[0]!r} is not a gate id", EXIT_USAGE)
    key = load_private_key(key_path)
    now = _now()
    data = sign_time_setting(
        key,
        event=event,
        signed_at=now,
        sequence=sequence,
        gates=gates,
        valid_hours=valid_hours,
        lower_floor=lower_floor,
    )
    _write_atomically(out_path, data)
    _write_atomically(counter, f"{sequence}\n".encode("ascii"))
    who = ", ".join(sorted(set(gates))) if gates else "every gate"
    lowers = "; lowers a floor that is too high" if lower_floor else ""
    click.echo(
        f"time setting {sequence} for {event!r} ({who}): {format_utc(now)}{lowers} -> {out_path}"
    )
    until = format_utc(now + timedelta(hours=valid_hours))
    click.echo(f"next: copy {out_path} to scanner-update/ on the stick; it expires at {until}")
