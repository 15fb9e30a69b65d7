"""Issuing passes on the organizer's laptop: one pass, or a batch from a CSV.

Every pass is checked against the signed event policy before it is signed:
the tier and zones must exist, a tier that requires zones gets them, the
holder name is brought into the one form a pass carries (``names``), and the
signing key must be one the policy trusts for passes (otherwise every gate
would refuse the pass as ``unknown_key``). Zones are written once each, in
the policy's order, so the same pass is always the same bytes.

A batch CSV is somebody else's file: it is read with limits (size, rows,
cell length), every row is checked, and every mistake is reported at once
with its line number before anything is signed or written. A batch is
idempotent: each row is looked up in the ledger (``ledger``) by what it says,
so a row issued before is the same pass with the same serial (``unchanged``),
a new row gets a new pass (``new``), and ``reissue=True`` revokes the old
pass and issues a new one (``reissued``). A row whose pass was revoked and
not reissued is not printed again (``revoked``): revoking must not be undone
by running last week's CSV. The ledger is written in one transaction before
any file, so a crash while writing files is repaired by running the batch
again.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import segno

from ..core.keys import Ed25519PrivateKey, key_id
from ..core.names import holder_problem, normalize_holder
from ..core.passes import MAX_HOLDER_BYTES, MAX_SERIAL, MAX_ZONES, PassContent, encode_pass
from ..core.policy import Policy, Tier, local_time
from ..core.schedule import Phase, phases_reached
from ..errors import IssueError
from ..words import plural
from .ledger import Ledger, LedgerPass, NewPass, free_serials, row_key

__all__ = [
    "BATCH_COLUMNS",
    "BatchError",
    "BatchPass",
    "BatchRow",
    "IssuedPass",
    "day_window",
    "issue_batch",
    "issue_one",
    "issue_to_holder",
    "make_pass",
    "parse_time",
    "pass_content",
    "qr_code",
    "read_batch_csv",
    "window_warnings",
]

MAX_BATCH_BYTES = 1024 * 1024
MAX_BATCH_ROWS = 5000
MAX_CELL_CHARS = 200
MAX_LISTED_MISTAKES = 50
BATCH_COLUMNS = ("holder", "tier", "zones", "serial", "not_before", "not_after", "day")


@dataclass(frozen=True)
class IssuedPass:
    """A signed pass: what it says, its QR text, and its tier's label."""

    content: PassContent
    text: str
    tier_label: str


class BatchError(IssueError):
    """A batch CSV has mistakes; ``problems`` lists each with its line."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        shown = list(problems[:MAX_LISTED_MISTAKES])
        more = len(problems) - len(shown)
        if more:
            shown.append(f"... and {more} more")
        count = f"{len(problems)} mistake" + ("" if len(problems) == 1 else "s")
        lines = "\n".join(f"  {p}" for p in shown)
        super().__init__(f"{source} has {count}; nothing was issued:\n{lines}")
        self.problems = list(problems)


def parse_time(text: str, timezone: str, what: str) -> datetime:
    """An ISO 8601 time; without an offset it is read in the event's time zone."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError as err:
        raise IssueError(f"{what}: {text!r} is not a time like 2026-12-05T18:00") from err
    if when.tzinfo is None:
        try:
            when = local_time(when, ZoneInfo(timezone))
        except ValueError as err:
            raise IssueError(f"{what}: {err}") from None
    return when


def pass_content(
    policy: Policy,
    *,
    tier: str,
    serial: int,
    holder: str | None = None,
    zones: Sequence[str] | None = None,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> PassContent:
    """Check one pass against ``policy`` and return what it will carry.

    Raises :class:`IssueError` for anything a gate would refuse or that
    does not fit a pass; signs nothing.
    """
    if tier not in policy.tiers:
        raise IssueError(f"tier {tier!r} is not in the policy (tiers: {', '.join(policy.tiers)})")
    tier_def = policy.tiers[tier]
    chosen: tuple[str, ...] | None = None
    if zones is not None:
        unknown = [z for z in dict.fromkeys(zones) if z not in policy.zones]
        if unknown:
            raise IssueError(
                f"zone {unknown[0]!r} is not in the policy (zones: {', '.join(policy.zones)})"
            )
        chosen = tuple(z for z in policy.zones if z in set(zones)) or None
        if chosen is not None and len(chosen) > MAX_ZONES:
            raise IssueError(f"a pass names at most {MAX_ZONES} zones, not {len(chosen)}")
    if tier_def.requires_zones and not chosen:
        raise IssueError(f"a {tier} pass must name its zones (--zones catering,merch)")
    name: str | None = None
    if holder is not None:
        name = normalize_holder(holder) or None
    if name is not None:
        problem = holder_problem(name)
        if problem is not None:
            raise IssueError(f"holder {name!r}: {problem}")
        size = len(name.encode("utf-8"))
        if size > MAX_HOLDER_BYTES:
            raise IssueError(
                f"holder {name!r} is {size} bytes in UTF-8; at most {MAX_HOLDER_BYTES} fit"
            )
    if not 0 <= serial <= MAX_SERIAL:
        raise IssueError(f"serial {serial} is outside 0..{MAX_SERIAL}")
    for what, when in (("not-before", not_before), ("not-after", not_after)):
        if when is not None and not 0 <= when.timestamp() <= 0xFFFFFFFF:
            raise IssueError(f"{what} {when.isoformat()} is out of range")
    if not_before is not None and not_after is not None and not_after <= not_before:
        raise IssueError("not-after must be later than not-before")
    _check_window_meets_event(policy, tier_def, not_before, not_after)
    return PassContent(
        event=policy.event,
        serial=serial,
        tier=tier,
        zones=chosen,
        not_before=not_before.astimezone(UTC) if not_before else None,
        not_after=not_after.astimezone(UTC) if not_after else None,
        holder=name,
    )


def day_window(policy: Policy, day: str) -> tuple[datetime, datetime]:
    """A day pass's window: show day ``day`` (its number, 1 for the first, or
    the date it opens on in the event's time zone), from its opening to its
    curfew."""
    zone = ZoneInfo(policy.timezone)
    listed = ", ".join(
        f"{n} ({d.opens.astimezone(zone):%a %Y-%m-%d})" for n, d in enumerate(policy.days, 1)
    )
    text = day.strip()
    if text.isascii() and text.isdigit():
        number = int(text)
        if not 1 <= number <= len(policy.days):
            raise IssueError(
                f"day {text}: the event has {plural(len(policy.days), 'show day')}: {listed}"
            )
        chosen = policy.days[number - 1]
    else:
        on = [d for d in policy.days if d.opens.astimezone(zone).date().isoformat() == text]
        if not on:
            raise IssueError(f"day {text!r}: no show day opens on that date; the days: {listed}")
        chosen = on[0]
    return chosen.opens, chosen.curfew


def _event_times(policy: Policy) -> tuple[Any, str]:
    zone = ZoneInfo(policy.timezone)

    def local(when: datetime) -> str:
        return when.astimezone(zone).strftime("%a %d %b %H:%M")

    days = f" over {len(policy.days)} show days" if len(policy.days) > 1 else ""
    return local, f"the event runs from {local(policy.opens)} to {local(policy.curfew)}{days}"


def _check_window_meets_event(
    policy: Policy, tier: Tier, not_before: datetime | None, not_after: datetime | None
) -> None:
    """A window that ends before the event opens, starts after its curfew, or
    reaches only phases in which the tier opens no door makes a pass that no
    door will ever take: refused, with the event's times in the event's zone."""
    local, event = _event_times(policy)
    if not_after is not None and not_after <= policy.opens:
        raise IssueError(
            f"not-after {local(not_after)} is before the event opens: {event}; "
            "this pass would never open a door"
        )
    if not_before is not None and not_before >= policy.curfew:
        raise IssueError(
            f"not-before {local(not_before)} is after the event's curfew: {event}; "
            "this pass would never open a door"
        )
    if not_before is None and not_after is None:
        return
    met = [
        day for day in policy.days
        if (not_before is None or not_before < day.curfew)
        and (not_after is None or not_after > day.opens)
    ]  # fmt: skip
    if not met:
        before = max((d for d in policy.days if d.curfew <= (not_before or policy.opens)),
                     key=lambda d: d.curfew)  # fmt: skip
        after = policy.days[policy.days.index(before) + 1]
        raise IssueError(
            f"the window lies between two show days (day {policy.day_number(before)} ends "
            f"{local(before.curfew)}, day {policy.day_number(after)} opens "
            f"{local(after.opens)}); this pass would never open a door"
        )
    schedule = met[0]
    reached, photo = phases_reached(met, not_before, not_after)
    if not any(tier.zones.get(p) for p in reached) and not (photo and tier.photo_window):
        opens = [p.value for p in Phase if tier.zones.get(p)]
        if tier.photo_window:
            opens.append("in the photo window")
        raise IssueError(
            f"tier {tier.id!r} opens doors only {' and '.join(opens) or 'never'} (the show: "
            f"{local(schedule.show_start)} to {local(schedule.show_end)}), and this window "
            "reaches none of that; this pass would never open a door"
        )


def window_warnings(policy: Policy, content: PassContent) -> list[str]:
    """What an organizer should know about a pass that does open doors, but
    not every door it seems to: the part of its window before the event opens
    or after its curfew is dead time on the card, and a zone it names that
    lies inside a zone it does not name has no way in (no door of the outer
    zone opens to it)."""
    local, event = _event_times(policy)
    out = []
    if content.zones:
        blocked = policy.places.out_of_reach(content.zones)
        by_outer: dict[str, list[str]] = {}
        for zone in sorted(blocked, key=policy.zones.index):
            by_outer.setdefault(blocked[zone], []).append(zone)
        for outer, inner in by_outer.items():
            out.append(
                f"{' and '.join(inner)} {'lies' if len(inner) == 1 else 'lie'} inside {outer}, "
                f"which this pass does not open: the holder cannot get in; add {outer} to "
                "its zones, or name a zone with a door of its own"
            )
    if content.not_before is not None and content.not_before < policy.opens:
        out.append(
            f"valid from {local(content.not_before)}, but {event}: "
            "no door opens to it before the event opens"
        )
    if content.not_after is not None and content.not_after > policy.curfew:
        out.append(
            f"valid until {local(content.not_after)}, but {event}: "
            "no door opens to it after the curfew"
        )
    return out


def _check_key(key: Ed25519PrivateKey, policy: Policy) -> None:
    if key_id(key) not in policy.pass_keys:
        raise IssueError(
            f"key {key_id(key)} is not trusted by event {policy.event!r} to sign passes; "
            "gates would refuse every pass. Use the policy's key or list this one in "
            "[keys] pass_signers and sign the policy again."
        )


def _sign(key: Ed25519PrivateKey, policy: Policy, content: PassContent) -> IssuedPass:
    return IssuedPass(content, encode_pass(key, content), policy.tiers[content.tier].label)


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
    """Check one pass against ``policy`` and sign it (no ledger)."""
    _check_key(key, policy)
    content = pass_content(
        policy,
        tier=tier,
        serial=serial,
        holder=holder,
        zones=zones,
        not_before=not_before,
        not_after=not_after,
    )
    return _sign(key, policy, content)


def qr_code(text: str) -> segno.QRCode:
    """The pass's QR code: error correction M, never boosted (keeps it small)."""
    return segno.make(text, error="m", boost_error=False, micro=False)


def _free_slot(ledger: Ledger, key: str) -> int:
    held = set(ledger.slots(key))
    slot = 0
    while slot in held:
        slot += 1
    return slot


def issue_to_holder(
    key: Ed25519PrivateKey,
    policy: Policy,
    ledger: Ledger,
    content: PassContent,
    *,
    serial: int | None = None,
    another: bool = False,
) -> IssuedPass:
    """Issue one pass, as the desk does for a person: refused when the holder
    already has a valid pass (two valid passes on one name let two people
    in), unless ``another`` says a second one is meant."""
    if content.holder is not None and not another:
        held = ledger.valid_held_by(content.holder)
        if held:
            raise IssueError(
                f"{held[0].holder} already holds valid pass #{held[0].serial} "
                f"({held[0].tier}); a second would let two people in on one name. "
                f"A lost card: scanner passes reissue {held[0].serial} (the old one is "
                "revoked). A second pass on purpose: add --another."
            )
    return issue_one(key, policy, ledger, content, serial=serial)


def issue_one(
    key: Ed25519PrivateKey,
    policy: Policy,
    ledger: Ledger,
    content: PassContent,
    *,
    serial: int | None = None,
    replaces: LedgerPass | None = None,
    reason: str = "reissued",
) -> IssuedPass:
    """Sign and record one pass (``content``'s serial is replaced by a free
    one unless ``serial`` is given). With ``replaces``, that pass is revoked
    and the new one takes its place, in one transaction."""
    _check_key(key, policy)
    used = ledger.used()
    if serial is not None:
        if serial in used:
            taken = ledger.get(serial)
            raise IssueError(
                f"serial {serial} was already issued for this event"
                + (f" ({taken.label()})" if taken else "")
            )
        chosen = serial
    else:
        (chosen,) = free_serials(1, used)
    content = PassContent(
        event=content.event,
        serial=chosen,
        tier=content.tier,
        zones=content.zones,
        not_before=content.not_before,
        not_after=content.not_after,
        holder=content.holder,
    )
    issued = _sign(key, policy, content)
    slot = replaces.slot if replaces is not None else _free_slot(ledger, row_key(content))
    with ledger.transaction():
        if replaces is not None:
            ledger.revoke(replaces.serial, f"{reason}; replaced by {chosen}")
        ledger.record(
            [
                NewPass(
                    content,
                    issued.text,
                    key_id(key),
                    slot,
                    replaces.serial if replaces is not None else None,
                )
            ]
        )
    return issued


# -- batches ---------------------------------------------------------------


@dataclass(frozen=True)
class BatchRow:
    """One checked row of a batch CSV."""

    line: int
    content: PassContent  # serial 0 when the row leaves it to the ledger
    serial: int | None


@dataclass(frozen=True)
class BatchPass:
    """What a batch did with one row: its pass and its status."""

    line: int
    issued: IssuedPass
    status: str  # new, unchanged, reissued, re-signed, revoked (not printed)
    replaced: int | None = None

    @property
    def printed(self) -> bool:
        return self.status != "revoked"


def _split_zones(text: str) -> list[str]:
    for sep in (";", ","):
        text = text.replace(sep, " ")
    return text.split()


def read_batch_csv(data: bytes, policy: Policy, source: str = "the CSV") -> list[BatchRow]:
    """Read and check a batch CSV (header: holder,tier[,zones,serial,not_before,not_after]).

    Zones within a cell are separated by spaces, ``;`` or ``,``; times
    without an offset are in the event's time zone. The file is read with
    limits and every row is checked: all mistakes are raised together in one
    :class:`BatchError`, each with its line number.
    """
    if len(data) > MAX_BATCH_BYTES:
        raise IssueError(
            f"{source} is {len(data)} bytes; a batch is at most {MAX_BATCH_BYTES} bytes "
            f"({MAX_BATCH_ROWS} rows): split it"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise IssueError(
            f"{source} is not UTF-8 text (byte {err.start}); save it as CSV UTF-8"
        ) from err
    reader = csv.reader(
        io.StringIO(text, newline=""), delimiter=_delimiter(text, source), strict=True
    )
    problems: list[str] = []
    rows: list[BatchRow] = []
    seen_serials: dict[int, int] = {}
    try:
        header = next(reader, None)
        columns = [h.strip().lower() for h in header or []]
        unknown = [c for c in columns if c not in BATCH_COLUMNS]
        if unknown:
            raise IssueError(
                f"{source}: unknown column {unknown[0]!r} (known: {', '.join(BATCH_COLUMNS)})"
            )
        twice = sorted({c for c in columns if columns.count(c) > 1})
        if twice:
            raise IssueError(f"{source}: the column {twice[0]!r} appears twice")
        for record in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in record):
                continue  # a blank line
            if len(rows) + len(problems) >= MAX_BATCH_ROWS:
                raise IssueError(f"{source} holds more than {MAX_BATCH_ROWS} rows: split it")
            row = _read_row(record, columns, line, policy, seen_serials)
            if isinstance(row, str):
                problems.append(row)
            else:
                rows.append(row)
    except csv.Error as err:
        problems.append(f"line {reader.line_num}: not valid CSV ({err})")
    if problems:
        raise BatchError(source, problems)
    if not rows:
        raise IssueError(f"{source} holds no passes")
    return rows


def _delimiter(text: str, source: str) -> str:
    """The batch's delimiter, told by its header line: a comma, or the semicolon
    (a spreadsheet saving CSV in a German or French locale) or a tab. Headers
    are read in any case (``Holder,Tier``)."""
    first = text.split("\n", 1)[0].strip("\r")
    for delimiter in (",", ";", "\t"):
        if "tier" in (cell.strip().strip('"').lower() for cell in first.split(delimiter)):
            return delimiter
    shown = first[:60] + ("..." if len(first) > 60 else "")
    raise IssueError(
        f"{source} needs a header line with at least a 'tier' column (holder,tier,...; "
        f"separated by commas or semicolons); its first line reads {shown!r}"
    )


def _read_row(
    record: list[str],
    columns: list[str],
    line: int,
    policy: Policy,
    seen_serials: dict[int, int],
) -> BatchRow | str:
    """One row as a :class:`BatchRow`, or the line's mistake as text."""
    if len(record) > len(columns):
        return f"line {line}: {len(record)} cells, the header names {len(columns)}"
    cells = dict(zip(columns, (c.strip() for c in record), strict=False))
    long = [name for name, value in cells.items() if len(value) > MAX_CELL_CHARS]
    if long:
        return f"line {line}: the {long[0]} cell is longer than {MAX_CELL_CHARS} characters"
    try:
        serial_text = cells.get("serial", "")
        serial: int | None = None
        if serial_text:
            if not serial_text.isascii() or not serial_text.isdigit():
                raise IssueError(f"serial {serial_text!r} is not a number")
            serial = int(serial_text)
            if serial in seen_serials:
                raise IssueError(f"serial {serial} is also on line {seen_serials[serial]}")
            seen_serials[serial] = line
        tier = cells.get("tier", "")
        if not tier:
            raise IssueError("the tier is empty")
        zones_text = cells.get("zones", "")
        nb, na = cells.get("not_before", ""), cells.get("not_after", "")
        day = cells.get("day", "")
        if day and (nb or na):
            raise IssueError("give a day or a window (not_before, not_after), not both")
        day_nb, day_na = day_window(policy, day) if day else (None, None)
        content = pass_content(
            policy,
            tier=tier,
            serial=serial if serial is not None else 0,
            holder=cells.get("holder") or None,
            zones=_split_zones(zones_text) if zones_text else None,
            not_before=parse_time(nb, policy.timezone, "not_before") if nb else day_nb,
            not_after=parse_time(na, policy.timezone, "not_after") if na else day_na,
        )
    except IssueError as err:
        return f"line {line}: {err}"
    return BatchRow(line, content, serial)


def issue_batch(
    key: Ed25519PrivateKey,
    policy: Policy,
    rows: Sequence[BatchRow],
    ledger: Ledger,
    *,
    reissue: bool = False,
) -> list[BatchPass]:
    """Issue a checked batch against the ledger; returns one result per row.

    Rows already issued are the same passes (see the module docstring).
    Signs and records in one ledger transaction; writes no files.
    """
    _check_key(key, policy)
    kid = key_id(key)
    used = ledger.used()
    keys = [row_key(r.content) for r in rows]
    current: dict[str, dict[int, LedgerPass]] = {k: ledger.slots(k) for k in set(keys)}
    claimed: set[tuple[str, int]] = set()
    problems: list[str] = []

    # 1. rows naming a serial that exists keep it, and its slot
    plan: dict[int, tuple[str, int, LedgerPass | None]] = {}  # index -> (status, slot, old)
    for i, (row, k) in enumerate(zip(rows, keys, strict=True)):
        if row.serial is None or row.serial not in used:
            continue
        old = ledger.get(row.serial)
        assert old is not None
        if old.row_key != k:
            problems.append(f"line {row.line}: serial {row.serial} was issued to {old.label()}")
        elif old.revoked or reissue:
            problems.append(
                f"line {row.line}: serial {row.serial} cannot be issued again; a reissued pass "
                "gets a new serial: empty the serial cell"
            )
        else:
            plan[i] = ("unchanged", old.slot, old)
            claimed.add((k, old.slot))
    if problems:
        raise BatchError("the batch", problems)

    # 2. rows without a serial take the lowest slots of their key in CSV order
    cursor: dict[str, int] = {}
    for i, (row, k) in enumerate(zip(rows, keys, strict=True)):
        if row.serial is not None:
            continue
        slot = cursor.get(k, 0)
        while (k, slot) in claimed:
            slot += 1
        cursor[k] = slot + 1
        claimed.add((k, slot))
        old = current[k].get(slot)
        if old is None:
            plan[i] = ("new", slot, None)
        elif reissue:
            plan[i] = ("reissued", slot, old)
        elif old.revoked:
            plan[i] = ("revoked", slot, old)
        else:
            plan[i] = ("unchanged", slot, old)

    # 3. new rows naming a free serial get a slot nobody holds
    for i, k in enumerate(keys):
        if i in plan:
            continue
        slot = 0
        while (k, slot) in claimed or slot in current[k]:
            slot += 1
        claimed.add((k, slot))
        plan[i] = ("new", slot, None)

    explicit = {r.serial for r in rows if r.serial is not None}
    fresh = iter(
        free_serials(
            sum(1 for i, r in enumerate(rows) if plan[i][0] in ("new", "reissued") and r.serial
                is None),
            used | explicit,
        )
    )
    results: list[BatchPass] = []
    records: list[NewPass] = []
    revokes: list[tuple[int, str]] = []
    for i, row in enumerate(rows):
        status, slot, old = plan[i]
        if status in ("unchanged", "revoked"):
            assert old is not None
            if status == "unchanged" and (old.text is None or old.key_id not in policy.pass_keys):
                status = "re-signed"  # signed by a key this policy no longer trusts
                results.append(BatchPass(row.line, _sign(key, policy, old.content), status))
                continue
            text = old.text or _sign(key, policy, old.content).text
            results.append(
                BatchPass(row.line, IssuedPass(old.content, text, policy.tiers[old.tier].label),
                          status)
            )
            continue
        serial = row.serial if row.serial is not None else next(fresh)
        content = PassContent(
            event=row.content.event,
            serial=serial,
            tier=row.content.tier,
            zones=row.content.zones,
            not_before=row.content.not_before,
            not_after=row.content.not_after,
            holder=row.content.holder,
        )
        issued = _sign(key, policy, content)
        replaced = old.serial if status == "reissued" and old is not None else None
        if replaced is not None and old is not None and not old.revoked:
            revokes.append((replaced, f"reissued from the batch; replaced by {serial}"))
        records.append(NewPass(content, issued.text, kid, slot, replaced))
        results.append(BatchPass(row.line, issued, status, replaced))

    with ledger.transaction():
        for serial, reason in revokes:
            ledger.revoke(serial, reason)
        for result in results:
            if result.status == "re-signed":
                ledger.resign(result.issued.content.serial, result.issued.text, kid)
        ledger.record(records)
    return results
