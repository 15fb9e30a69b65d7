"""The pass desk: finding, revoking and reissuing passes, and the files a
batch leaves behind.

The desk works over the serial ledger (``ledger.py``). A pass is named by its
serial or by its holder's name; a name that fits several passes is an error
that lists them, never a guess. Revoking writes the ledger; the signed
revocation list is made from the ledger's full revoked set
(:func:`revocation_list`), and a serial the ledger never issued is refused.
Reissuing (the lost laminate) revokes the old pass and issues a new one for
the same holder, tier, zones and window in one ledger transaction.

Output folders hold exactly the current batch: the QR images
(``SERIAL-name.png``), ``sheet.html`` (cards, see ``cards.py``), the optional
``sheet.pdf`` and ``passes.csv`` (every cell defused against spreadsheet
formulas). Images of passes no longer in the batch and a PDF of an older
sheet are removed, so nothing stale can be printed by mistake. Each file is
written under a temporary name and renamed.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from anyascii import anyascii

from ..core.keys import Ed25519PrivateKey, Ed25519PublicKey
from ..core.policy import Policy
from ..core.revocations import REVOCATIONS_KIND, sign_revocation_list
from ..core.signed import format_utc, open_document
from ..errors import IssueError, PolicyError, SignatureError
from ..files import write_atomically
from ..record.spreadsheet import defuse
from .cards import Colours, render_sheet
from .issuing import BatchPass, IssuedPass, issue_one, qr_code
from .ledger import Ledger, LedgerPass

__all__ = [
    "LISTING_COLUMNS",
    "Revocations",
    "find_pass",
    "open_revocations",
    "pass_file_stem",
    "reissue",
    "revoke",
    "sign_revocations",
    "write_passes",
]

QR_SCALE = 8
QR_BORDER = 4
LISTING_COLUMNS = (
    "serial", "holder", "tier", "zones", "not_before", "not_after", "status", "image",
)
_PASS_IMAGE = re.compile(r"\d{6,10}-[a-z0-9-]{1,40}\.png")


def pass_file_stem(content: Any) -> str:
    """``001042-jane-doe``: the serial, then the name in Latin letters
    (``000002-olga-pappa`` for Ολγα Παππά; the tier when there is no name)."""
    name = re.sub(r"[^A-Za-z0-9]+", "-", anyascii(content.holder or "")).strip("-").lower()
    return f"{content.serial:06d}-{name[:40] or content.tier}"


# -- finding passes ------------------------------------------------------------


def find_pass(ledger: Ledger, ref: str, *, live: bool = False) -> LedgerPass:
    """The one pass ``ref`` names: a serial, or a holder's name (whole, any
    case; failing that, part of it). ``live`` leaves out revoked passes.
    Several matches, or none, raise :class:`IssueError` saying what to give."""
    ref = ref.strip()
    if ref.isascii() and ref.isdigit():
        found = ledger.get(int(ref))
        if found is None:
            raise IssueError(
                f"serial {ref} was never issued for {ledger.event!r}; "
                "scanner passes list shows the serials that were"
            )
        return found
    if not ref:
        raise IssueError("give a serial or a holder's name")
    matches = ledger.by_name(ref, revoked=False if live else None)
    if not matches:
        state = "valid " if live else ""
        raise IssueError(f"no {state}pass is held by anyone called {ref!r}")
    if len(matches) > 1:
        listed = "; ".join(p.label() for p in matches[:10])
        more = f" and {len(matches) - 10} more" if len(matches) > 10 else ""
        raise IssueError(
            f"{len(matches)} passes match {ref!r}: {listed}{more}. Give the serial."
        )
    return matches[0]


def revoke(ledger: Ledger, ref: str, reason: str) -> LedgerPass:
    """Revoke the pass ``ref`` names (refusing a serial never issued)."""
    if not reason.strip():
        raise IssueError("say why the pass is revoked (--reason lost)")
    target = find_pass(ledger, ref, live=not (ref.strip().isascii() and ref.strip().isdigit()))
    if target.revoked:
        raise IssueError(
            f"pass {target.label()} was already revoked on "
            f"{format_utc(target.revoked_at) if target.revoked_at else '?'} "
            f"({target.revoked_reason})"
        )
    with ledger.transaction():
        return ledger.revoke(target.serial, reason.strip())


def reissue(
    key: Ed25519PrivateKey, policy: Policy, ledger: Ledger, ref: str, reason: str
) -> tuple[LedgerPass, IssuedPass]:
    """Revoke the pass ``ref`` names and issue its replacement (same holder,
    tier, zones, window; a new serial) in one step. Returns (old, new)."""
    digits = ref.strip().isascii() and ref.strip().isdigit()
    try:
        old = find_pass(ledger, ref, live=not digits)
    except IssueError:
        if digits:
            raise
        # revoked first, reissued now: the holder's revoked pass nobody replaced
        lost = [p for p in ledger.by_name(ref, revoked=True) if p.replaced_by is None]
        if len(lost) != 1:
            raise
        old = lost[0]
    if old.replaced_by is not None:
        raise IssueError(
            f"pass {old.label()} was already replaced by {old.replaced_by}; "
            f"reissue {old.replaced_by} instead"
        )
    if old.tier not in policy.tiers:
        raise IssueError(f"pass {old.label()}: tier {old.tier!r} is no longer in the policy")
    new = issue_one(key, policy, ledger, old.content, replaces=old, reason=reason)
    return old, new


# -- the revocation list -------------------------------------------------------


@dataclass(frozen=True)
class Revocations:
    """A verified signed revocation list."""

    event: str
    serials: frozenset[int]
    signed_at: datetime
    key_id: str


def sign_revocations(
    ledger: Path,
    policy: Policy,
    key: Ed25519PrivateKey,
    *,
    now: datetime,
    revoke: Iterable[int] = (),
    reason: str = "revoked",
) -> tuple[bytes, frozenset[int]]:
    """Revoke the serials in ``revoke`` in the ledger (all or none: a serial
    never issued refuses the lot), then sign the event's whole list: every
    pass the ledger holds as revoked and the policy's own ``[revocations]``.
    Never only the ones named now: a list replaces the one on the gate, so a
    partial list would let earlier revoked passes in again. Returns the signed
    list and the serials on it."""
    named = sorted(set(revoke))
    with Ledger(ledger, policy.event) as book:
        unknown = [s for s in named if book.get(s) is None]
        if unknown:
            raise IssueError(
                f"never issued for {policy.event!r}: {', '.join(map(str, unknown))}; nothing "
                "was revoked (scanner passes list shows the serials that were)"
            )
        with book.transaction():
            for serial in named:
                book.revoke(serial, reason)
        revoked = frozenset(book.revoked() | set(policy.revoked))
    return sign_revocation_list(key, policy.event, revoked, now), revoked


def open_revocations(
    data: bytes, policy: Policy, trusted: Iterable[Ed25519PublicKey] | None
) -> Revocations:
    """Verify a signed revocation list for ``policy``'s event.

    Without ``trusted`` keys it must be signed by the key that signed the
    policy, as a gate that trusts that key would require.
    """
    try:
        document = open_document(data, kind=REVOCATIONS_KIND, trusted=trusted)
    except SignatureError as err:
        raise PolicyError(f"revocation list refused: {err}") from err
    if trusted is None and document.key_id != policy.signer:
        raise PolicyError(
            f"revocation list refused: signed by key {document.key_id}, the policy by "
            f"{policy.signer}; give --trust KEY.pub"
        )
    body = document.body
    if body.get("event") != policy.event:
        raise PolicyError(
            f"revocation list refused: it is for event {body.get('event')!r}, "
            f"not {policy.event!r}"
        )
    serials = body.get("serials")
    if not isinstance(serials, list) or not all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in serials
    ):
        raise PolicyError("revocation list refused: its serials are not pass serials")
    return Revocations(policy.event, frozenset(serials), document.signed_at, document.key_id)


# -- files -------------------------------------------------------------------


def _write(path: Path, data: bytes) -> None:
    write_atomically(path, data)


def _local(when: datetime | None, zone: ZoneInfo) -> str:
    """A window's bound as the organizer writes it: the event's wall-clock time
    with its offset (``2026-12-05T23:00+01:00``), which a batch reads back as is."""
    return "" if when is None else when.astimezone(zone).isoformat(timespec="minutes")


def _listing(rows: Sequence[BatchPass], zone: ZoneInfo) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(LISTING_COLUMNS)
    for row in rows:
        c = row.issued.content
        writer.writerow(
            defuse(value)
            for value in (
                c.serial,
                c.holder or "",
                c.tier,
                " ".join(c.zones or ()),
                _local(c.not_before, zone),
                _local(c.not_after, zone),
                row.status,
                f"{pass_file_stem(c)}.png" if row.printed else "",
            )
        )
    return out.getvalue().encode("utf-8")


def write_passes(
    out_dir: Path,
    rows: Sequence[BatchPass],
    policy: Policy,
    *,
    colours: Colours | None = None,
    sheet: str = "sheet.html",
    whole_batch: bool = True,
    progress: Callable[[Iterable[BatchPass]], Iterable[BatchPass]] = lambda rows: rows,
) -> Path:
    """Write the printable files for ``rows`` into ``out_dir`` and remove stale
    ones; returns the sheet's path. Revoked rows are listed, never printed.
    ``whole_batch=False`` (one reissued card) adds files and removes nothing."""
    out_dir.mkdir(parents=True, exist_ok=True)
    printed = [r for r in rows if r.printed]
    keep = {f"{pass_file_stem(r.issued.content)}.png" for r in printed}
    for row in progress(rows):
        if row.printed:
            png = io.BytesIO()
            qr_code(row.issued.text).save(png, kind="png", scale=QR_SCALE, border=QR_BORDER)
            _write(out_dir / f"{pass_file_stem(row.issued.content)}.png", png.getvalue())
    for old in out_dir.iterdir() if whole_batch else ():
        if _PASS_IMAGE.fullmatch(old.name) and old.name not in keep and old.is_file():
            old.unlink()
    sheet_path = out_dir / sheet
    page = render_sheet([r.issued for r in printed], policy, colours, key_page=whole_batch)
    _write(sheet_path, page.encode("utf-8"))
    (out_dir / f"{Path(sheet).stem}.pdf").unlink(missing_ok=True)  # an older sheet's
    if whole_batch:
        _write(out_dir / "passes.csv", _listing(rows, ZoneInfo(policy.timezone)))
    return sheet_path
