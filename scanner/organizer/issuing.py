"""Issuing passes on the organizer's laptop: single passes, batches from a
CSV file, QR images, a printable sheet, and the ledger of issued serials.

Every pass is checked against the signed event policy before it is signed:
the tier and zones must exist, a tier that requires zones gets them, and the
signing key must be one the policy trusts for passes (otherwise every gate
would refuse the pass as ``unknown_key``). Serials come from the ledger, a
small SQLite file beside the policy, so two batches never share a serial;
the ledger also answers "which serial did Jane get?" when a pass is lost and
must be revoked. A batch is validated whole before anything is written.
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import re
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import segno
import sqlite_utils

from ..core.keys import Ed25519PrivateKey, key_id
from ..core.passes import MAX_SERIAL, PassContent, encode_pass
from ..core.policy import Policy
from ..core.signed import format_utc
from ..errors import IssueError

__all__ = [
    "BatchRow",
    "IssuedPass",
    "Ledger",
    "issue_batch",
    "make_pass",
    "parse_time",
    "qr_code",
    "read_batch_csv",
    "write_sheet",
]

FIRST_SERIAL = 1
QR_SCALE = 8


@dataclass(frozen=True)
class IssuedPass:
    content: PassContent
    text: str
    tier_label: str


def parse_time(text: str, timezone: str, what: str) -> datetime:
    """An ISO 8601 time; without an offset it is read in the event's time zone."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError as err:
        raise IssueError(f"{what}: {text!r} is not a time like 2026-12-05T18:00") from err
    if when.tzinfo is None:
        when = when.replace(tzinfo=ZoneInfo(timezone))
    return when


def make_pass(
    key: Ed25519PrivateKey,
    policy: Policy,
    *,
    tier: str,
    serial: int,
    holder: str | None = None,
    zones: Sequence[str] | None = None,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> IssuedPass:
    """Check one pass against ``policy`` and sign it."""
    if key_id(key) not in policy.pass_keys:
        raise IssueError(
            f"key {key_id(key)} is not trusted by event {policy.event!r} to sign passes; "
            "gates would refuse every pass. Use the policy's key or list this one in "
            "[keys] pass_signers and sign the policy again."
        )
    if tier not in policy.tiers:
        raise IssueError(f"tier {tier!r} is not in the policy (tiers: {', '.join(policy.tiers)})")
    tier_def = policy.tiers[tier]
    if zones is not None:
        zones = tuple(dict.fromkeys(zones))
        unknown = [z for z in zones if z not in policy.zones]
        if unknown:
            raise IssueError(
                f"zone {unknown[0]!r} is not in the policy (zones: {', '.join(policy.zones)})"
            )
        if not zones:
            zones = None
    if tier_def.requires_zones and not zones:
        raise IssueError(f"a {tier} pass must name its zones (--zones catering,merch)")
    if holder is not None:
        holder = holder.strip() or None
    content = PassContent(
        event=policy.event,
        serial=serial,
        tier=tier,
        zones=tuple(zones) if zones else None,
        not_before=not_before,
        not_after=not_after,
        holder=holder,
    )
    return IssuedPass(content, encode_pass(key, content), tier_def.label)


def qr_code(text: str) -> segno.QRCode:
    """The pass's QR code: error correction M, never boosted (keeps it small)."""
    return segno.make(text, error="m", boost_error=False, micro=False)


# -- the ledger ------------------------------------------------------------


class Ledger:
    """Issued serials for one event, in a SQLite file (``EVENT.issued.db``)."""

    def __init__(self, path: Path | str, event: str) -> None:
        self.path = path
        self.event = event
        self.db = sqlite_utils.Database(path)
        self.db.conn.execute("PRAGMA busy_timeout = 10000")
        if "passes" not in self.db.table_names():
            self.db["passes"].create(
                {
                    "event": str,
                    "serial": int,
                    "tier": str,
                    "holder": str,
                    "zones": str,
                    "not_before": str,
                    "not_after": str,
                    "key_id": str,
                    "issued_at": str,
                    "text_sha256": str,
                },
                pk=("event", "serial"),
            )

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def used(self) -> set[int]:
        rows = self.db.execute("select serial from passes where event = ?", [self.event])
        return {r[0] for r in rows.fetchall()}

    def find(self, holder: str) -> list[dict[str, object]]:
        return list(
            self.db["passes"].rows_where(
                "event = ? and holder like ?", [self.event, f"%{holder}%"], order_by="serial"
            )
        )

    def record(self, issued: Iterable[IssuedPass], key: Ed25519PrivateKey) -> None:
        now = format_utc(datetime.now(UTC))
        rows = [
            {
                "event": p.content.event,
                "serial": p.content.serial,
                "tier": p.content.tier,
                "holder": p.content.holder,
                "zones": ",".join(p.content.zones) if p.content.zones else None,
                "not_before": format_utc(p.content.not_before) if p.content.not_before else None,
                "not_after": format_utc(p.content.not_after) if p.content.not_after else None,
                "key_id": key_id(key),
                "issued_at": now,
                "text_sha256": hashlib.sha256(p.text.encode()).hexdigest(),
            }
            for p in issued
        ]
        try:
            self.db["passes"].insert_all(rows)
        except sqlite3.IntegrityError as err:
            raise IssueError(f"a serial was issued meanwhile by someone else: {err}") from err


def allocate_serials(wanted: Sequence[int | None], used: set[int]) -> list[int]:
    """Fill in missing serials after the highest in use; refuse any clash."""
    explicit = [s for s in wanted if s is not None]
    seen: set[int] = set()
    for serial in explicit:
        if serial in used:
            raise IssueError(f"serial {serial} was already issued for this event")
        if serial in seen:
            raise IssueError(f"serial {serial} is asked for twice")
        seen.add(serial)
    taken = used | seen
    nxt = max(taken, default=FIRST_SERIAL - 1) + 1
    out = []
    for serial in wanted:
        if serial is None:
            serial = nxt
            nxt += 1
        if serial > MAX_SERIAL:
            raise IssueError(f"serial {serial} is too large (at most {MAX_SERIAL})")
        out.append(serial)
    return out


# -- batches ---------------------------------------------------------------


@dataclass(frozen=True)
class BatchRow:
    line: int
    tier: str
    holder: str | None
    zones: tuple[str, ...] | None
    serial: int | None
    not_before: datetime | None
    not_after: datetime | None


BATCH_COLUMNS = ("holder", "tier", "zones", "serial", "not_before", "not_after")


def read_batch_csv(text: str, policy: Policy) -> list[BatchRow]:
    """Parse a batch CSV (header: holder,tier[,zones,serial,not_before,not_after]).

    Zones within a cell are separated by spaces, ``;`` or ``,``. Every row is
    checked; the first problem is reported with its line number.
    """
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or "tier" not in reader.fieldnames:
        raise IssueError("the CSV needs a header line with at least a 'tier' column")
    unknown = [c for c in reader.fieldnames if c not in BATCH_COLUMNS]
    if unknown:
        raise IssueError(f"unknown CSV column {unknown[0]!r} (known: {', '.join(BATCH_COLUMNS)})")
    rows = []
    for record in reader:
        line = reader.line_num

        def cell(name: str, record: dict[str, str | None] = record) -> str:
            return (record.get(name) or "").strip()

        try:
            serial_text = cell("serial")
            serial = int(serial_text) if serial_text else None
        except ValueError as err:
            raise IssueError(f"line {line}: serial {cell('serial')!r} is not a number") from err
        zones_text = cell("zones")
        zones = tuple(z for z in re.split(r"[;,\s]+", zones_text) if z) or None
        try:
            nb = cell("not_before")
            na = cell("not_after")
            row = BatchRow(
                line=line,
                tier=cell("tier"),
                holder=cell("holder") or None,
                zones=zones,
                serial=serial,
                not_before=parse_time(nb, policy.timezone, "not_before") if nb else None,
                not_after=parse_time(na, policy.timezone, "not_after") if na else None,
            )
        except IssueError as err:
            raise IssueError(f"line {line}: {err}") from err
        if not row.tier:
            raise IssueError(f"line {line}: the tier is empty")
        rows.append(row)
    if not rows:
        raise IssueError("the CSV holds no passes")
    return rows


def pass_file_stem(issued: IssuedPass) -> str:
    name = re.sub(r"[^A-Za-z0-9]+", "-", issued.content.holder or "").strip("-").lower()
    return f"{issued.content.serial:06d}-{name[:40] or issued.content.tier}"


def issue_batch(
    key: Ed25519PrivateKey,
    policy: Policy,
    rows: Sequence[BatchRow],
    out_dir: Path,
    ledger: Ledger,
    *,
    progress: Callable[[Iterable[BatchRow]], Iterable[BatchRow]] = lambda rows: rows,
) -> list[IssuedPass]:
    """Sign every row, write ``out_dir/SERIAL-NAME.png`` and ``sheet.html``.

    All rows are checked (tiers, zones, serial clashes) before any file is
    written; the ledger records the batch once its files exist.
    """
    serials = allocate_serials([r.serial for r in rows], ledger.used())
    issued: list[IssuedPass] = []
    for row, serial in zip(rows, serials, strict=True):
        try:
            issued.append(
                make_pass(
                    key,
                    policy,
                    tier=row.tier,
                    serial=serial,
                    holder=row.holder,
                    zones=row.zones,
                    not_before=row.not_before,
                    not_after=row.not_after,
                )
            )
        except IssueError as err:
            raise IssueError(f"line {row.line}: {err}") from err
    out_dir.mkdir(parents=True, exist_ok=True)
    by_row = dict(zip((r.line for r in rows), issued, strict=True))
    for row in progress(rows):
        p = by_row[row.line]
        qr_code(p.text).save(str(out_dir / f"{pass_file_stem(p)}.png"), scale=QR_SCALE, border=4)
    write_sheet(issued, policy, out_dir / "sheet.html")
    ledger.record(issued, key)
    return issued


def write_sheet(issued: Sequence[IssuedPass], policy: Policy, path: Path) -> None:
    """One printable HTML page: a card per pass with name, tier and QR code."""
    tz = ZoneInfo(policy.timezone)

    def when(t: datetime | None) -> str:
        return t.astimezone(tz).strftime("%d %b %H:%M") if t else ""

    cards = []
    for p in issued:
        c = p.content
        window = ""
        if c.not_before or c.not_after:
            window = f"<p class=window>valid {when(c.not_before)} &ndash; {when(c.not_after)}</p>"
        zones = f"<p class=zones>{html.escape(', '.join(c.zones))}</p>" if c.zones else ""
        cards.append(
            f"<section class=card><div class=qr>{qr_code(p.text).svg_inline(scale=4)}</div>"
            f"<h2>{html.escape(c.holder or '')}</h2>"
            f"<p class=tier>{html.escape(p.tier_label)}</p>{zones}{window}"
            f"<p class=serial>{html.escape(policy.name)} &middot; No. {c.serial}</p></section>"
        )
    page = f"""<!doctype html>
<html lang=en><head><meta charset=utf-8>
<title>Passes: {html.escape(policy.name)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1cm; }}
main {{ display: grid; grid-template-columns: repeat(2, 1fr); gap: 8mm; }}
.card {{ border: 1px dashed #888; padding: 5mm; break-inside: avoid; text-align: center; }}
.card h2 {{ margin: 2mm 0 0; font-size: 14pt; }}
.tier {{ font-weight: bold; text-transform: uppercase; letter-spacing: .05em; }}
.serial, .window, .zones {{ font-size: 9pt; color: #333; margin: 1mm 0; }}
.qr svg {{ width: 45mm; height: 45mm; }}
@media print {{ body {{ margin: 0; }} h1 {{ display: none; }} }}
</style></head><body>
<h1>{html.escape(policy.name)}: {len(issued)} passes</h1>
<main>
{chr(10).join(cards)}
</main></body></html>
"""
    path.write_text(page, encoding="utf-8")
