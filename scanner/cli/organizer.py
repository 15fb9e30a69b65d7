"""The organizer's commands: keys, the policy, issuing, checking, signing updates."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
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
    ask_passphrase,
    cli,
    key_option,
    ledger_option,
    open_policy_file,
    out_option,
    output_file,
    policy_option,
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
@click.option(
    "--name",
    help="File name stem.  [default: organizer, or manager with --manager]",
)
@click.option(
    "--manager",
    is_flag=True,
    help="Make the manager's age key that gate exports are encrypted to, not a signing key.",
)
@click.option("--force", is_flag=True, help="Replace an existing key of that name.")
@click.option(
    "--passphrase",
    is_flag=True,
    help="Keep the private key under a passphrase (asked twice, or read from "
    "SCANNER_KEY_PASSPHRASE): a stolen laptop or backup then signs no pass (and, "
    "with --manager, reads no export). Every command that uses the key asks for it. "
    "At least 12 characters and hard to guess (four or five unrelated words): one the "
    "zxcvbn estimator puts under 10^10 guesses, such as password1234, is refused.",
)
@reports_errors()
def keygen(out_dir: Path, name: str | None, manager: bool, force: bool, passphrase: bool) -> None:
    """Make an Ed25519 signing key pair, or with --manager the manager's age key.

    The private key signs the event policy and passes: keep it on the
    organizer's machine, never on a gate. Gates get the .pub file.

    With --passphrase, NAME.key is the PEM inside an age file encrypted
    with the passphrase (scrypt; age -d opens it too). A weak passphrase is
    refused, with the reason (exit 2). Without it, the key file is protected
    only by its mode (0600) and the disk.

    With --manager: NAME.key is the age identity that decrypts the gates'
    exports (keep it on the manager's laptop, for scanner logs verify/merge
    --identity); NAME.pub is the age1... public key for the event policy's
    [export] recipients, so a lost USB stick leaks no holder names.
    """
    secret = None
    if passphrase:
        from ..keyfiles import check_passphrase

        default = "manager" if manager else "organizer"
        secret = ask_passphrase(out_dir / f"{name or default}.key", new=True)()
        try:
            check_passphrase(secret)
        except ScannerError as err:
            raise Failure(str(err), EXIT_USAGE) from err
    kept = "under your passphrase" if secret else "unencrypted: --passphrase protects it"
    if manager:
        from ..keyfiles import write_age_identity

        paths = write_age_identity(out_dir, name or "manager", force=force, passphrase=secret)
        click.echo(f"private key: {paths.private} (the manager's, {kept}; never copy it to a gate)")
        click.echo(f"public key:  {paths.public}")
        click.echo("next: add it to the event policy, then sign the policy again:")
        click.echo(f'      [export]\n      recipients = ["{paths.key_id}"]')
        click.echo(f"      read exports with: scanner logs merge --identity {paths.private} ...")
        return
    from ..keyfiles import write_key_pair

    paths = write_key_pair(out_dir, name or "organizer", force=force, passphrase=secret)
    click.echo(f"private key: {paths.private} ({kept}; never copy it to a gate)")
    click.echo(f"public key:  {paths.public}")
    click.echo(f"key id:      {paths.key_id}")
    click.echo(
        f"next: scanner policy sign config/example-event.toml --key {paths.private} -o event.policy"
    )


# -- the policy --------------------------------------------------------------


def _signing_key(path: Path) -> Any:
    """The organizer's private key; a .pub given by mistake is named as such."""
    from ..core.keys import PUBLIC_KEY_PREFIX
    from ..keyfiles import load_private_key

    try:
        with path.open("rb") as handle:
            start = handle.read(len(PUBLIC_KEY_PREFIX))
    except OSError:
        start = b""  # load_private_key says what is wrong with the file
    if start == PUBLIC_KEY_PREFIX.encode("ascii"):
        raise Failure(
            f"{path} is a public key; signing needs the private key "
            f"(made by scanner keygen beside it: {path.with_suffix('.key')})",
            EXIT_USAGE,
        )
    try:
        return load_private_key(path, ask_passphrase(path))
    except ScannerError as err:
        raise Failure(str(err), EXIT_USAGE) from err


@cli.group()
def policy() -> None:
    """Sign and inspect event policies."""


@policy.command("sign")
@click.argument("policy_toml", type=click.Path(path_type=Path, dir_okay=False))
@key_option("Organizer private key (from scanner keygen).")
@out_option("Signed policy file to write (what gates cache).", required=True)
@reports_errors(EXIT_USAGE)
def policy_sign(policy_toml: Path, key_path: Path, out_path: Path) -> None:
    """Check POLICY_TOML and sign it into the file gates use.

    Every mistake is reported with the key that holds it. The signing time
    becomes the gates' clock floor: a gate whose clock is earlier distrusts it.
    """
    from ..core.keys import key_id
    from ..core.policy import open_policy, sign_policy

    try:
        text = _read_bytes(policy_toml, "policy").decode("utf-8")
    except UnicodeDecodeError as err:
        raise Failure(f"{policy_toml} is not UTF-8 text", EXIT_USAGE) from err
    key = _signing_key(key_path)
    data = sign_policy(text, key, _now())
    signed = open_policy(data, [key.public_key()])
    _write_atomically(out_path, data)
    click.echo(
        f"signed {signed.event!r} ({_plural(len(signed.tiers), 'tier')}, "
        f"{_plural(len(signed.zones), 'zone')}) with key {key_id(key)} -> {out_path}"
    )


def _plural(count: int, word: str) -> str:
    from ..words import plural

    return plural(count, word)


def _serials(serials: Any) -> str:
    return ", ".join(map(str, sorted(serials))) or "none"


def _revocations_option(func: Any) -> Any:
    return click.option(
        "--revocations",
        "revocations_path",
        type=click.Path(path_type=Path, dir_okay=False),
        help="A signed revocation list (scanner update revocations) to apply as gates do.",
    )(func)


def _open_revocations(path: Path, event_policy: Any, trust: tuple[Path, ...]) -> Any:
    from ..organizer.desk import open_revocations
    from .base import load_trust

    return open_revocations(_read_bytes(path, "revocation list"), event_policy, load_trust(trust))


@policy.command("show")
@click.argument("policy_file", type=click.Path(path_type=Path, dir_okay=False))
@trust_option
@_revocations_option
@reports_errors(EXIT_USAGE)
def policy_show(
    policy_file: Path, trust: tuple[Path, ...], revocations_path: Path | None
) -> None:
    """Print a signed policy: schedule, keys, what is revoked, the access table,
    and the rest of what was signed: the re-entry window, the venue (zones
    within zones, capacities, doors, walks), the roster of boxes with their
    device keys, where exports are encrypted to, and the broker.

    In the table, each cell lists when a tier may enter a zone:
    B before the show, P in the photo window, D during, A after. With
    --revocations, the passes that list revokes are shown too.
    """
    from zoneinfo import ZoneInfo

    from ..core.keys import key_id
    from ..core.policy import access_table

    p = open_policy_file(policy_file, trust)
    tz = ZoneInfo(p.timezone)
    click.echo(f"event    {p.event}: {p.name} ({p.timezone})")
    if p.signed_at:
        click.echo(f"signed   {p.signed_at.astimezone(tz):%Y-%m-%d %H:%M} by key {p.signer}")
    for number, s in enumerate(p.days, 1):
        if len(p.days) > 1:
            click.echo(f"day {number}")
        for label, when in [
            ("opens", s.opens),
            ("doors", s.doors),
            ("show", s.show_start),
            ("ends", s.show_end),
            ("curfew", s.curfew),
        ]:
            click.echo(f"{label:<8} {when.astimezone(tz):%a %Y-%m-%d %H:%M}")
        minutes = int(s.photo_window.total_seconds() // 60)
        click.echo(f"photos   first {minutes} minutes of the show")
    click.echo(f"signers  {', '.join(key_id(k) for k in p.pass_keys.values())}")
    click.echo(f"revoked  in the policy: {_serials(p.revoked)}")
    if revocations_path is not None:
        listed = _open_revocations(revocations_path, p, trust)
        click.echo(
            f"         in {revocations_path.name} (signed "
            f"{listed.signed_at.astimezone(tz):%Y-%m-%d %H:%M} by key {listed.key_id}): "
            f"{_plural(len(listed.serials), 'pass')}: {_serials(listed.serials)}"
        )
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
    _show_venue(p)


def _show_venue(p: Any) -> None:
    """The rest of what was signed: rules, the venue, the gates, exports, the broker."""
    from ..core.keys import key_id, parse_public_key
    from ..core.policy import OUTSIDE

    def kid(text: str) -> str:
        try:
            return key_id(parse_public_key(text))
        except ScannerError:
            return "?"

    click.echo("")
    click.echo(f"re-entry at one door: not within {int(p.reentry.total_seconds() // 60)} min")
    venue = p.venue
    if venue is not None:
        for zone, around in venue.within.items():
            click.echo(f"within   {zone} is inside {around}")
        for zone, cap in venue.capacity.items():
            click.echo(f"capacity {zone}: {cap} people")
        for door in venue.doors.values():
            click.echo(f"door     {door.id}: {door.from_zone} -> {door.to_zone}")
        click.echo(f"walks    {int(venue.walk_default.total_seconds())} s between two doors, "
                   "unless listed:")  # fmt: skip
        for (pair, through), seconds in venue.walks.items():
            via = "any way" if through is None else (
                "outside" if through == OUTSIDE else f"through {through}")
            click.echo(f"         {' <-> '.join(sorted(pair))} ({via}): "
                       f"{int(seconds.total_seconds())} s")  # fmt: skip
    for gate_id, place in p.gates.items():
        key = f"box key {kid(place.device_key)}" if place.device_key else "no box key"
        former = (f", before: {', '.join(kid(k) for k in place.former_device_keys)}"
                  if place.former_device_keys else "")  # fmt: skip
        login = ", broker login" if place.broker_password_hash else ""
        click.echo(f"gate     {gate_id}: {place.direction.value} into {place.zone} at "
                   f"{place.door or 'no door'}; {key}{former}{login}")  # fmt: skip
    if p.export_recipients:
        for recipient in p.export_recipients:
            click.echo(f"exports  encrypted to {recipient}")
    else:
        click.echo("exports  no manager key: gates refuse to put their logs on a stick")
    if p.broker is not None:
        click.echo(f"broker   {p.broker.address} (TLS, the event's CA)")


# -- issuing -----------------------------------------------------------------


def _ledger_path(policy_path: Path, event: str, ledger: Path | None) -> Path:
    return ledger or policy_path.parent / f"{event}.issued.db"


def _read_limited(path: Path, limit: int, what: str) -> bytes:
    """A file somebody else wrote, read whole only if it is within ``limit``."""
    if not path.exists():
        raise Failure(f"{what} {path} does not exist", EXIT_USAGE)
    if not path.is_file():
        raise Failure(f"{what} {path} is not a file", EXIT_USAGE)
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as err:
        raise Failure(f"cannot read {what} {path}: {err.strerror}", EXIT_USAGE) from err
    if len(data) > limit:
        raise Failure(f"{what} {path} is larger than {limit} bytes", EXIT_USAGE)
    return data


def _desk_errors(func: Any) -> Any:
    """Invalid input exits 2; a failure of the ledger or of Chromium exits 1."""
    from functools import wraps

    @wraps(func)
    def inner(*args: Any, **kwargs: Any) -> Any:
        from ..organizer.chromium import RenderError
        from ..organizer.ledger import LedgerError

        try:
            return func(*args, **kwargs)
        except (RenderError, LedgerError) as err:
            raise Failure(str(err), EXIT_FAILED) from err
        except ScannerError as err:
            raise Failure(str(err), EXIT_USAGE) from err

    return inner


def _colours(path: Path | None) -> Any:
    from ..organizer.cards import MAX_COLOURS_BYTES, load_colours

    if path is None:
        return load_colours()
    return load_colours(_read_limited(path, MAX_COLOURS_BYTES, "colours file"), str(path))


def _render_pdf(sheet: Path) -> Path:
    from ..organizer.chromium import print_to_pdf

    pdf = sheet.with_suffix(".pdf")
    print_to_pdf(sheet, pdf)
    return pdf


@cli.command()
@key_option("Organizer private key that signs passes.")
@policy_option("Signed event policy (from scanner policy sign).")
@click.option("--tier", help="Tier id from the policy, e.g. vip.")
@click.option("--holder", help="Name on the pass (up to 40 bytes; see docs/pass-format.md).")
@click.option("--serial", type=click.IntRange(0), help="Serial number; default: lowest free.")
@click.option("--zones", help="Explicit zones, comma separated; they replace the tier's zones.")
@click.option("--not-before", help="Valid from (ISO 8601; no offset = event time zone).")
@click.option("--not-after", help="Valid until (ISO 8601; no offset = event time zone).")
@click.option("--day", help="A day pass: valid for show day N (1 for the first) or the day "
              "opening on DATE (YYYY-MM-DD), from its opening to its curfew.")
@click.option("--png", type=click.Path(path_type=Path, dir_okay=False), callback=output_file,
              help="Write a PNG.")
@click.option("--svg", type=click.Path(path_type=Path, dir_okay=False), callback=output_file,
              help="Write an SVG.")
@click.option(
    "--another",
    is_flag=True,
    help="Issue a pass to a holder who already has a valid one, on purpose (a second "
    "card for a second day, say). Without it that is refused: two valid passes on one "
    "name let two people in.",
)
@click.option(
    "--batch",
    type=click.Path(path_type=Path, dir_okay=False),
    help="CSV of passes: holder,tier[,zones,serial,not_before,not_after,day].",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="With --batch: folder for the images, sheet.html and passes.csv.",
)
@click.option(
    "--reissue",
    is_flag=True,
    help="With --batch: revoke every row's earlier pass and issue new ones.",
)
@click.option("--pdf", is_flag=True, help="With --batch: also print sheet.pdf (headless Chromium).")
@click.option(
    "--colours",
    "colours_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="TOML of band colours by tier (the shipped tier-colours.toml is the example).",
)
@ledger_option()
@_desk_errors
def issue(
    key_path: Path,
    policy_path: Path,
    tier: str | None,
    holder: str | None,
    serial: int | None,
    zones: str | None,
    not_before: str | None,
    not_after: str | None,
    day: str | None,
    png: Path | None,
    svg: Path | None,
    another: bool,
    batch: Path | None,
    out_dir: Path | None,
    reissue: bool,
    pdf: bool,
    colours_path: Path | None,
    ledger: Path | None,
) -> None:
    """Issue passes: one (prints its QR text) or a batch from a CSV file.

    \b
    One pass:   scanner issue --key K --policy P --tier vip --holder "Jane Doe" --png jane.png
    A batch:    scanner issue --key K --policy P --batch guests.csv --out passes/ --pdf

    Tiers and zones must exist in the policy. Serials are recorded in a
    ledger so that no two passes of an event share one. A batch is the same
    passes however often it runs: rows issued before keep their serials
    (--reissue gives every row a new pass and revokes the old one). The
    folder is rewritten to hold exactly the batch: a QR image per pass,
    sheet.html (A6 cards, four to an A4 page; print at 100 %), passes.csv,
    and with --pdf sheet.pdf. Invalid input exits 2 and issues nothing.
    """
    event_policy = open_policy_file(policy_path, (), quiet=True)
    ledger_path = _ledger_path(policy_path, event_policy.event, ledger)
    if batch is not None:
        if out_dir is None:
            raise Failure("--batch needs --out DIR for the images and sheet", EXIT_USAGE)
        single = [tier, holder, serial, zones, not_before, not_after, day, png, svg]
        if any(v is not None for v in single) or another:
            raise Failure(
                "--batch takes its passes from the CSV; drop the single-pass options", EXIT_USAGE
            )
        _issue_batch(
            key_path, event_policy, ledger_path, batch, out_dir, reissue, pdf, colours_path
        )
        return
    if reissue or pdf:
        raise Failure("--reissue and --pdf go with --batch", EXIT_USAGE)
    if tier is None:
        raise Failure("give --tier for one pass, or --batch CSV --out DIR", EXIT_USAGE)
    if day is not None and (not_before or not_after):
        raise Failure("--day sets the window: drop --not-before and --not-after", EXIT_USAGE)
    _issue_one(
        key_path,
        event_policy,
        ledger_path,
        tier=tier,
        holder=holder,
        serial=serial,
        zones=[z.strip() for z in zones.split(",") if z.strip()] if zones else None,
        window=(day, not_before, not_after),
        another=another,
        images=(png, svg),
    )


def _issue_batch(
    key_path: Path,
    event_policy: Any,
    ledger_path: Path,
    batch: Path,
    out_dir: Path,
    reissue: bool,
    pdf: bool,
    colours_path: Path | None,
) -> None:
    """A batch from the CSV: every row checked before any is issued, then the folder."""
    from ..organizer.issuing import MAX_BATCH_BYTES, issue_batch, read_batch_csv, window_warnings
    from ..organizer.ledger import Ledger

    if pdf:
        from ..organizer.chromium import find_chromium

        find_chromium()  # before anything is issued
    data = _read_limited(batch, MAX_BATCH_BYTES, "batch CSV")
    colours = _colours(colours_path)
    signing_key = _signing_key(key_path)
    rows = read_batch_csv(data, event_policy, str(batch))
    for row in rows:
        for warning in window_warnings(event_policy, row.content):
            click.echo(f"warning: line {row.line}: {warning}", err=True)
    with Ledger(ledger_path, event_policy.event) as book:
        results = issue_batch(signing_key, event_policy, rows, book, reissue=reissue)
    _write_batch(results, event_policy, out_dir, colours, pdf)


def _issue_one(
    key_path: Path,
    event_policy: Any,
    ledger_path: Path,
    *,
    tier: str,
    holder: str | None,
    serial: int | None,
    zones: list[str] | None,
    window: tuple[str | None, str | None, str | None],  # --day, --not-before, --not-after
    another: bool,
    images: tuple[Path | None, Path | None],  # --png, --svg
) -> None:
    """One pass: its text on stdout, its details on stderr, images if asked."""
    from ..organizer.issuing import (
        day_window,
        issue_to_holder,
        parse_time,
        pass_content,
        qr_code,
        window_warnings,
    )
    from ..organizer.ledger import Ledger

    day, not_before, not_after = window
    tz = event_policy.timezone
    bounds = day_window(event_policy, day) if day is not None else (
        parse_time(not_before, tz, "--not-before") if not_before else None,
        parse_time(not_after, tz, "--not-after") if not_after else None,
    )  # fmt: skip
    content = pass_content(
        event_policy,
        tier=tier,
        serial=serial or 0,
        holder=holder,
        zones=zones,
        not_before=bounds[0],
        not_after=bounds[1],
    )
    for warning in window_warnings(event_policy, content):
        click.echo(f"warning: {warning}", err=True)
    signing_key = _signing_key(key_path)
    with Ledger(ledger_path, event_policy.event) as book:
        issued_pass = issue_to_holder(
            signing_key, event_policy, book, content, serial=serial, another=another
        )
    code = qr_code(issued_pass.text)
    for image in images:
        if image is not None:
            code.save(str(image), scale=8, border=4)
    click.echo(issued_pass.text)
    click.echo(
        f"serial {issued_pass.content.serial}, {issued_pass.tier_label}, "
        f"QR version {code.designator}",
        err=True,
    )


def _write_batch(results: Any, event_policy: Any, out_dir: Path, colours: Any, pdf: bool) -> None:
    from collections import Counter

    from ..organizer.desk import write_passes

    with click.progressbar(
        length=len(results), label="Writing passes", file=sys.stderr
    ) as bar:

        def progress(items: Any) -> Any:
            for item in items:
                yield item
                bar.update(1)

        sheet = write_passes(out_dir, results, event_policy, colours=colours, progress=progress)
    printed = sum(1 for r in results if r.printed)
    if pdf:
        sheet = _render_pdf(sheet)
    counts = Counter(r.status for r in results)
    order = ("new", "unchanged", "reissued", "re-signed", "revoked")
    summary = ", ".join(f"{counts[s]} {s}" for s in order if counts[s])
    click.echo(f"{_plural(len(results), 'pass')}: {summary}")
    for r in results:
        if r.status == "reissued" and r.replaced is not None:
            click.echo(f"  line {r.line}: {r.issued.content.serial} replaces {r.replaced}")
        elif r.status == "revoked":
            click.echo(
                f"  line {r.line}: pass {r.issued.content.serial} "
                f"({r.issued.content.holder or r.issued.content.tier}) is revoked: not printed; "
                f"scanner passes reissue {r.issued.content.serial} issues a new one"
            )
    if any(r.status == "reissued" for r in results):
        click.echo(
            "next: scanner update revocations --key KEY --policy POLICY "
            "(the replaced passes must reach the gates)"
        )
    click.echo(f"print {sheet} at 100 % ({_plural(printed, 'card')}, {out_dir / 'passes.csv'})")


# -- checking a pass ---------------------------------------------------------


@cli.command()
@click.argument("qr_text", required=False)
@policy_option("Signed event policy.")
@trust_option
@_revocations_option
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
@click.option(
    "--serial",
    type=int,
    help="Take the pass with this serial from the ledger instead of QR_TEXT.",
)
@ledger_option("Issued-serials ledger (for --serial, and to warn of a pass revoked there); "
    "default EVENT.issued.db beside the policy.")
def check(
    qr_text: str | None,
    policy_path: Path,
    trust: tuple[Path, ...],
    revocations_path: Path | None,
    zone: str,
    direction: str,
    at_text: str | None,
    image: Path | None,
    serial: int | None,
    ledger: Path | None,
) -> None:
    """Decide on one pass as a gate would, and print the decision as JSON.

    The pass is QR_TEXT (in single quotes: it holds spaces and $ that a shell
    would split or expand), or - to read it from standard input, or the
    photo --image FILE, or --serial N from the ledger. With --revocations,
    the signed revocation list applies as on a gate that has it installed;
    without it, a pass the ledger holds as revoked is pointed out. Exit
    codes: 0 granted, 1 denied, 2 usage error (bad option, unreadable
    policy, list or image, no QR code in the image).
    """
    from ..core.decision import Direction, Gate, decide

    try:
        if sum(x is not None for x in (qr_text, image, serial)) != 1:
            raise Failure("give QR_TEXT (or - for standard input), --image FILE or "
                          "--serial N", EXIT_USAGE)
        event_policy = open_policy_file(policy_path, trust)
        if revocations_path is not None:
            listed = _open_revocations(revocations_path, event_policy, trust)
            event_policy = event_policy.with_revocations(listed.serials)
        if zone not in event_policy.zones:
            raise Failure(
                f"zone {zone!r} is not in the policy (zones: {', '.join(event_policy.zones)})",
                EXIT_USAGE,
            )
        if image is not None:
            qr_text = _read_image_code(image)
        elif serial is not None:
            qr_text = _ledger_text(policy_path, event_policy.event, ledger, serial)
        elif qr_text == "-":
            qr_text = sys.stdin.read(MAX_QR_TEXT + 1)
            if len(qr_text) > MAX_QR_TEXT:
                raise Failure(f"standard input holds more than {MAX_QR_TEXT} characters: "
                              "that is no pass", EXIT_USAGE)  # fmt: skip
            qr_text = qr_text.rstrip("\r\n")
        assert qr_text is not None
        at = _parse_at(at_text, event_policy.timezone)
        decision = decide(
            qr_text, event_policy, Gate(zone=zone, direction=Direction(direction)), at
        )
    except ScannerError as err:
        raise Failure(str(err), EXIT_USAGE) from err
    click.echo(json.dumps(decision.as_dict(), ensure_ascii=False))
    if revocations_path is None and decision.serial is not None:
        _warn_if_revoked_in_ledger(policy_path, event_policy.event, ledger, decision.serial)
    sys.exit(EXIT_OK if decision.granted else EXIT_FAILED)


MAX_QR_TEXT = 4096  # far beyond any pass; a QR code holds at most 4296 characters


def _ledger_text(policy_path: Path, event: str, ledger: Path | None, serial: int) -> str:
    from ..organizer.ledger import Ledger

    with Ledger(_existing_ledger(policy_path, event, ledger), event) as book:
        found = book.get(serial)
    if found is None or found.text is None:
        raise Failure(f"serial {serial} was never issued for {event!r} in this ledger", EXIT_USAGE)
    return found.text


def _warn_if_revoked_in_ledger(
    policy_path: Path, event: str, ledger: Path | None, serial: int
) -> None:
    """check without --revocations decides as a gate that has no list yet: say
    so when the organizer's own ledger already holds the pass as revoked."""
    from ..organizer.ledger import Ledger

    path = _ledger_path(policy_path, event, ledger)
    if not path.is_file():
        return
    with Ledger(path, event) as book:
        found = book.get(serial)
    if found is not None and found.revoked:
        click.echo(
            f"note: the ledger holds pass #{serial} as revoked ({found.revoked_reason}); a "
            "gate refuses it once it has the signed list: scanner update revocations, then "
            "check again with --revocations revocations.signed",
            err=True,
        )


MAX_IMAGE_BYTES = 64 * 1024 * 1024


def _read_image_code(image: Path) -> str:
    import cv2
    import numpy as np

    from ..gate.decoders import open_decoder

    data = _read_limited(image, MAX_IMAGE_BYTES, "image")
    quiet = cv2.utils.logging.LOG_LEVEL_SILENT
    previous = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(quiet)  # our message, not OpenCV's warnings
    try:
        frame = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    finally:
        cv2.utils.logging.setLogLevel(previous)
    if frame is None:
        raise Failure(f"{image} is not an image OpenCV can read (PNG, JPEG...)", EXIT_USAGE)
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
@key_option("Organizer private key the gates trust.")
@policy_option("The signed event policy the passes belong to.")
@click.argument("serials", nargs=-1, type=click.IntRange(0))
@click.option(
    "--reason",
    default="revoked with scanner update revocations",
    show_default=True,
    help="Why SERIALS are revoked (kept in the ledger).",
)
@ledger_option()
@out_option(
    "Where to write the signed list (then copy it to the stick's scanner-update/).",
    default=Path("revocations.signed"),
)
@_desk_errors
def update_revocations(
    key_path: Path,
    policy_path: Path,
    serials: tuple[int, ...],
    reason: str,
    ledger: Path | None,
    out_path: Path,
) -> None:
    """Sign the ledger's full list of revoked passes for the gates.

    SERIALS, if given, are revoked in the ledger first (a serial never
    issued is refused). The list signed is always every pass the ledger
    holds as revoked, plus the policy's own [revocations], never just the
    ones named now: a list replaces the one on the gate, so a partial list
    would make earlier revoked passes valid again. Revoke by holder name
    with scanner passes revoke.
    """
    from ..organizer.desk import sign_revocations

    event_policy = open_policy_file(policy_path, (), quiet=True)
    book_path = _existing_ledger(policy_path, event_policy.event, ledger)
    data, revoked = sign_revocations(
        book_path, event_policy, _signing_key(key_path), now=_now(), revoke=serials, reason=reason
    )
    _write_atomically(out_path, data)
    click.echo(
        f"signed the revocation list of {event_policy.event!r}: "
        f"{_plural(len(revoked), 'pass')} revoked ({_serials(revoked)}) -> {out_path}"
    )
    click.echo(f"next: copy {out_path.name} into scanner-update/ on the stick for every gate")


@update.command("keys")
@key_option("An organizer key the gates trust now: for the first key update, one in "
    "their image; after that, one the last key update lists.")
@click.argument(
    "public_keys", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False)
)
@click.option(
    "--after",
    "after_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The key chain so far (trust.signed); the new key update is added to its end.",
)
@out_option("Where to write the chain [default: the --after file, else trust.signed].")
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
    from ..keyfiles import load_public_key

    out = out_path or after_path or Path("trust.signed")
    chain = _read_bytes(after_path, "key chain") if after_path is not None else None
    if chain is None and out.exists():
        raise Failure(
            f"{out} already exists; add the new key update to that chain with --after {out}, "
            "or write a new chain elsewhere with -o",
            EXIT_USAGE,
        )
    keys = [load_public_key(p) for p in public_keys]
    data, sequence = extend_chain(chain, _signing_key(key_path), keys, _now())
    _write_atomically(out, data)
    ids = ", ".join(sorted({key_id(k) for k in keys}))
    noun = "key" if len({key_id(k) for k in keys}) == 1 else "keys"
    click.echo(f"key update {sequence}: gates will trust {noun} {ids} -> {out}")
    click.echo(f"next: copy {out} to scanner-update/ on the stick; keep it for the next rotation")


@update.command("time")
@key_option("An organizer key the gates trust now.")
@policy_option("The signed event policy: the setting is for its event only.")
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
@out_option(
    "Where to write it (then copy it to the stick's scanner-update/).", default=Path("time.signed")
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
    from ..transfer.updates import next_time_setting

    event = open_policy_file(policy_path, (), quiet=True).event
    setting = next_time_setting(
        _signing_key(key_path),
        policy_path,
        event,
        now=_now(),
        gates=gates,
        valid_hours=valid_hours,
        lower_floor=lower_floor,
        sequence=sequence,
    )
    _write_atomically(out_path, setting.data)
    setting.record()
    who = ", ".join(sorted(set(gates))) if gates else "every gate"
    lowers = "; lowers a floor that is too high" if lower_floor else ""
    click.echo(
        f"time setting {setting.sequence} for {event!r} ({who}): "
        f"{format_utc(setting.signed_at)}{lowers} -> {out_path}"
    )
    until = format_utc(setting.signed_at + timedelta(hours=valid_hours))
    click.echo(f"next: copy {out_path} to scanner-update/ on the stick; it expires at {until}")


# -- the pass desk -------------------------------------------------------------


def _existing_ledger(policy_path: Path, event: str, ledger: Path | None) -> Path:
    path = _ledger_path(policy_path, event, ledger)
    if not path.is_file():
        raise Failure(
            f"no ledger of issued passes at {path}; it is made by scanner issue "
            "(give --ledger if it is elsewhere)",
            EXIT_USAGE,
        )
    return path


def _desk_options(func: Any) -> Any:
    func = ledger_option()(func)
    return policy_option("The signed event policy (its event names the ledger).")(func)


def _status(p: Any) -> str:
    if not p.revoked:
        return "valid"
    state = f"revoked: {p.revoked_reason}"
    if p.replaced_by is None or "replaced" in state:
        return state
    return f"{state}; now {p.replaced_by}"


def _window_text(p: Any, tz: Any) -> str:
    def fmt(t: Any) -> str:
        return str(t.astimezone(tz).strftime("%d %b %H:%M"))

    if p.not_before is None and p.not_after is None:
        return ""
    return f"{fmt(p.not_before) if p.not_before else ''}..{fmt(p.not_after) if p.not_after else ''}"


@cli.group()
def passes() -> None:
    """The pass desk: list, show, revoke and reissue issued passes.

    Passes are named by serial or by holder name (any case; a part of the
    name is enough when only one holder fits). Everything works over the
    ledger that scanner issue keeps beside the policy (EVENT.issued.db).
    """


@passes.command("list")
@_desk_options
@click.option("--tier", help="Only passes of this tier.")
@click.option("--name", help="Only holders whose name holds this text (any case).")
@click.option("--revoked/--valid", "revoked", default=None, help="Only revoked, or only valid.")
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(path_type=Path, dir_okay=False),
    callback=output_file,
    help="Also write the list as CSV (for the accreditation office).",
)
@_desk_errors
def passes_list(
    policy_path: Path,
    ledger: Path | None,
    tier: str | None,
    name: str | None,
    revoked: bool | None,
    csv_path: Path | None,
) -> None:
    """List issued passes: serial, holder, tier, zones, window and state."""
    from zoneinfo import ZoneInfo

    from ..organizer.ledger import Ledger

    event_policy = open_policy_file(policy_path, (), quiet=True)
    with Ledger(_existing_ledger(policy_path, event_policy.event, ledger), event_policy.event) as b:
        found = b.passes(tier=tier, name=name, revoked=revoked)
    tz = ZoneInfo(event_policy.timezone)
    rows = [
        (
            str(p.serial),
            p.holder or "-",
            p.tier,
            ",".join(p.zones) if p.zones else "-",
            _window_text(p, tz) or "-",
            _status(p),
        )
        for p in found
    ]
    header = ("serial", "holder", "tier", "zones", "window", "state")
    from ..core.names import display_width

    # columns line up in a terminal whatever the script: a CJK letter takes two
    widths = [max(display_width(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        cells = "  ".join(
            c + " " * (w - display_width(c)) for c, w in zip(row, widths, strict=False)
        )
        click.echo(f"{cells}  {row[-1]}")
    valid = sum(1 for p in found if not p.revoked)
    click.echo(
        f"{_plural(len(found), 'pass')} ({valid} valid, {len(found) - valid} revoked)", err=True
    )
    if csv_path is not None:
        _write_atomically(csv_path, _desk_csv(header, rows))
        click.echo(f"-> {csv_path}", err=True)


def _desk_csv(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> bytes:
    import csv
    import io

    from ..record.spreadsheet import defuse

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(defuse(cell) for cell in row)
    return out.getvalue().encode("utf-8")


@passes.command("show")
@click.argument("ref", metavar="SERIAL|NAME")
@_desk_options
@_desk_errors
def passes_show(ref: str, policy_path: Path, ledger: Path | None) -> None:
    """Show one pass: who holds it, what it opens, whether it is revoked, its QR text."""
    from zoneinfo import ZoneInfo

    from ..organizer.desk import find_pass
    from ..organizer.ledger import Ledger

    event_policy = open_policy_file(policy_path, (), quiet=True)
    with Ledger(_existing_ledger(policy_path, event_policy.event, ledger), event_policy.event) as b:
        p = find_pass(b, ref)
    tz = ZoneInfo(event_policy.timezone)
    tier = event_policy.tiers.get(p.tier)
    click.echo(f"serial    {p.serial}")
    click.echo(f"holder    {p.holder or '(no name on the pass)'}")
    click.echo(f"tier      {p.tier}" + (f" ({tier.label})" if tier else " (not in the policy)"))
    click.echo(f"zones     {', '.join(p.zones) if p.zones else 'the tier' + chr(39) + 's'}")
    if p.not_before or p.not_after:
        click.echo(f"window    {_window_text(p, tz)}")
    click.echo(f"issued    {p.issued_at.astimezone(tz):%Y-%m-%d %H:%M} with key {p.key_id}")
    if p.replaces is not None:
        click.echo(f"replaces  {p.replaces}")
    click.echo(f"state     {_status(p)}")
    if p.revoked_at is not None:
        click.echo(f"revoked   {p.revoked_at.astimezone(tz):%Y-%m-%d %H:%M}")
    if p.text:
        click.echo(f"text      {p.text}")


@passes.command("revoke")
@click.argument("ref", metavar="SERIAL|NAME")
@_desk_options
@click.option("--reason", required=True, help="Why, e.g. lost, stolen, left the crew.")
@_desk_errors
def passes_revoke(ref: str, policy_path: Path, ledger: Path | None, reason: str) -> None:
    """Revoke a pass in the ledger (then sign the list for the gates).

    A name that fits several holders is refused with the list of them.
    Gates learn of it only from a signed list: run scanner update
    revocations next, which signs every pass the ledger holds as revoked.
    """
    from ..organizer.desk import revoke
    from ..organizer.ledger import Ledger

    event_policy = open_policy_file(policy_path, (), quiet=True)
    with Ledger(_existing_ledger(policy_path, event_policy.event, ledger), event_policy.event) as b:
        done = revoke(b, ref, reason)
        count = len(b.revoked())
    click.echo(f"revoked {done.label(state=False)}: {reason}")
    every = "the" if count == 1 else "all"
    click.echo(
        f"next: scanner update revocations --key KEY --policy {policy_path} "
        f"(signs {every} {count} revoked {'pass' if count == 1 else 'passes'}) and take it "
        "to the gates"
    )


@passes.command("reissue")
@click.argument("ref", metavar="SERIAL|NAME")
@key_option("Organizer private key that signs passes.")
@_desk_options
@click.option("--reason", default="lost", show_default=True, help="Why the old pass is revoked.")
@click.option(
    "--out",
    "out_dir",
    default=Path("."),
    show_default=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder for the new card (card-SERIAL.html) and its QR image.",
)
@click.option("--pdf", is_flag=True, help="Also print the card to PDF (headless Chromium).")
@_desk_errors
def passes_reissue(
    ref: str,
    key_path: Path,
    policy_path: Path,
    ledger: Path | None,
    reason: str,
    out_dir: Path,
    pdf: bool,
) -> None:
    """Revoke a pass and issue its replacement in one step (the lost laminate).

    The new pass has the same holder, tier, zones and window and a new
    serial; its card is written to --out. Then sign the revocation list
    (scanner update revocations) so the old pass stops working at the gates.
    """
    from ..organizer.desk import reissue, write_passes
    from ..organizer.issuing import BatchPass
    from ..organizer.ledger import Ledger

    event_policy = open_policy_file(policy_path, (), quiet=True)
    book_path = _existing_ledger(policy_path, event_policy.event, ledger)
    if pdf:
        from ..organizer.chromium import find_chromium

        find_chromium()
    signing_key = _signing_key(key_path)
    with Ledger(book_path, event_policy.event) as b:
        old, new = reissue(signing_key, event_policy, b, ref, reason)
    serial = new.content.serial
    sheet = write_passes(
        out_dir,
        [BatchPass(0, new, "reissued", old.serial)],
        event_policy,
        sheet=f"card-{serial}.html",
        whole_batch=False,
    )
    if pdf:
        sheet = _render_pdf(sheet)
    holder = new.content.holder or "the holder"
    click.echo(f"revoked {old.label(state=False)}; issued {serial} to {holder}")
    click.echo(f"print {sheet} at 100 %")
    click.echo(
        f"next: scanner update revocations --key {key_path} --policy {policy_path} "
        f"(so pass {old.serial} stops working at the gates)"
    )
