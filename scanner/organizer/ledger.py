"""The serial ledger: every pass issued for an event, in ``EVENT.issued.db``.

The ledger is the organizer's memory and the pass desk's source of truth:

* no two passes of an event share a serial; new serials fill the lowest free
  gaps, so one pass issued at the top of the range never blocks the rest;
* a batch row is the same pass every time it is issued again: each pass
  records its *row key* (holder, tier, zones, window) and a *slot* (the n-th
  pass with that key), so a CSV run twice, or ten anonymous crew rows, map to
  the same passes and serials;
* revoking marks a pass with a time and a reason; a reissued pass names the
  pass it replaces and inherits its slot, so "Jane's pass" stays one line of
  passes however often she loses it;
* the signed revocation list is always the ledger's full revoked set, never a
  change list, so revoking pass 4 can never make lost pass 3 valid again.

The pass text itself is kept, so an unchanged pass is printed again exactly
(Ed25519 signatures are deterministic, but the signing key may have changed).
Schema changes are migrations (``sqlite_utils.Migrations``); a ledger from an
earlier version gains the new columns, its row keys and slots computed from
what it holds.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import sqlite_utils
from anyascii import anyascii

from ..core.passes import MAX_SERIAL, PassContent
from ..core.signed import format_utc, parse_utc
from ..errors import IssueError

__all__ = [
    "FIRST_SERIAL",
    "Ledger",
    "LedgerError",
    "LedgerPass",
    "NewPass",
    "free_serials",
    "row_key",
    "search_form",
]

FIRST_SERIAL = 1

migrations = sqlite_utils.Migrations("scanner.ledger")


def search_form(text: str) -> str:
    """A name as a desk searches it: in Latin letters (anyascii transliterates
    Greek, Cyrillic, kana, Hangul and CJK as their readers would type them),
    without accents, case or extra spaces. "zoe" finds Zoë Ångström, "olga"
    finds Ολγα Παππά."""
    return " ".join(anyascii(text).casefold().split())


class LedgerError(IssueError):
    """The ledger file cannot be opened or written (not a mistake in the input)."""


@migrations()
def m001_passes(db: sqlite_utils.Database) -> None:
    # The first ledgers had this table and no migrations table: keep theirs.
    table = db["passes"]
    assert isinstance(table, sqlite_utils.db.Table)
    table.create(
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
        if_not_exists=True,
    )


@migrations()
def m002_pass_desk(db: sqlite_utils.Database) -> None:
    table = db["passes"]
    assert isinstance(table, sqlite_utils.db.Table)
    for column, kind in (
        ("text", str),
        ("row_key", str),
        ("slot", int),
        ("revoked_at", str),
        ("revoked_reason", str),
        ("replaces", int),
        ("replaced_by", int),
    ):
        table.add_column(column, kind)
    slots: dict[tuple[str, str], int] = {}
    rows = db.execute(
        "SELECT event, serial, holder, tier, zones, not_before, not_after "
        "FROM passes ORDER BY event, serial"
    ).fetchall()
    for event, serial, holder, tier, zones, nb, na in rows:
        key = _key(holder, tier, tuple(zones.split(",")) if zones else (), nb, na)
        slot = slots.get((event, key), 0)
        slots[(event, key)] = slot + 1
        db.execute(
            "UPDATE passes SET row_key = ?, slot = ? WHERE event = ? AND serial = ?",
            [key, slot, event, serial],
        )
    table.create_index(["event", "row_key", "slot"], if_not_exists=True)
    table.create_index(["event", "holder"], if_not_exists=True)


def _key(
    holder: str | None, tier: str, zones: Sequence[str], nb: str | None, na: str | None
) -> str:
    return json.dumps([holder or "", tier, list(zones), nb or "", na or ""], ensure_ascii=False)


def row_key(content: PassContent) -> str:
    """What makes two batch rows the same pass: holder, tier, zones and window."""
    return _key(
        content.holder,
        content.tier,
        content.zones or (),
        format_utc(content.not_before) if content.not_before else None,
        format_utc(content.not_after) if content.not_after else None,
    )


def free_serials(count: int, used: set[int], start: int = FIRST_SERIAL) -> list[int]:
    """The ``count`` lowest serials from ``start`` that are not in ``used``."""
    out: list[int] = []
    serial = start
    while len(out) < count:
        if serial > MAX_SERIAL:
            raise IssueError(f"no free serials are left (at most {MAX_SERIAL})")
        if serial not in used:
            out.append(serial)
        serial += 1
    return out


@dataclass(frozen=True)
class LedgerPass:
    """One issued pass as the ledger holds it."""

    event: str
    serial: int
    tier: str
    holder: str | None
    zones: tuple[str, ...] | None
    not_before: datetime | None
    not_after: datetime | None
    key_id: str
    issued_at: datetime
    text: str | None
    row_key: str
    slot: int
    revoked_at: datetime | None = None
    revoked_reason: str | None = None
    replaces: int | None = None
    replaced_by: int | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def content(self) -> PassContent:
        return PassContent(
            event=self.event,
            serial=self.serial,
            tier=self.tier,
            zones=self.zones,
            not_before=self.not_before,
            not_after=self.not_after,
            holder=self.holder,
        )

    def label(self, *, state: bool = True) -> str:
        """``1042 Jane Doe (vip)``: how the desk names a pass in messages."""
        note = ", revoked" if self.revoked and state else ""
        return f"{self.serial} {self.holder or '(no name)'} ({self.tier}{note})"


@dataclass(frozen=True)
class NewPass:
    """A pass to record: its content and text, where it sits, what it replaces."""

    content: PassContent
    text: str
    key_id: str
    slot: int
    replaces: int | None = None


def _time(text: str | None) -> datetime | None:
    return parse_utc(text) if text else None


class Ledger:
    """Issued serials for one event, in a SQLite file (``EVENT.issued.db``)."""

    def __init__(self, path: Path | str, event: str) -> None:
        self.path = path
        self.event = event
        try:
            self.db = sqlite_utils.Database(path)
            self.db.conn.execute("PRAGMA busy_timeout = 10000")
            migrations.apply(self.db)
        except sqlite3.DatabaseError as err:
            raise LedgerError(f"the ledger {path} cannot be used: {err}") from err

    def close(self) -> None:
        """Close the file; safe to call twice."""
        self.db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading -------------------------------------------------------------

    def _select(self, where: str = "", args: Sequence[object] = ()) -> list[LedgerPass]:
        sql = (
            "SELECT event, serial, tier, holder, zones, not_before, not_after, key_id, "
            "issued_at, text, row_key, slot, revoked_at, revoked_reason, replaces, replaced_by "
            "FROM passes WHERE event = ?"
            + (f" AND ({where})" if where else "")
            + " ORDER BY serial"
        )
        out = []
        for row in self.db.execute(sql, [self.event, *args]).fetchall():
            (event, serial, tier, holder, zones, nb, na, kid, issued, text, key, slot, rev_at,
             reason, replaces, replaced_by) = row
            out.append(
                LedgerPass(
                    event=event,
                    serial=serial,
                    tier=tier,
                    holder=holder,
                    zones=tuple(zones.split(",")) if zones else None,
                    not_before=_time(nb),
                    not_after=_time(na),
                    key_id=kid,
                    issued_at=parse_utc(issued),
                    text=text,
                    row_key=key or "",
                    slot=slot or 0,
                    revoked_at=_time(rev_at),
                    revoked_reason=reason,
                    replaces=replaces,
                    replaced_by=replaced_by,
                )
            )
        return out

    def used(self) -> set[int]:
        """Every serial issued for the event, revoked or not."""
        rows = self.db.execute("SELECT serial FROM passes WHERE event = ?", [self.event])
        return {r[0] for r in rows.fetchall()}

    def get(self, serial: int) -> LedgerPass | None:
        found = self._select("serial = ?", [serial])
        return found[0] if found else None

    def passes(
        self, *, tier: str | None = None, name: str | None = None, revoked: bool | None = None
    ) -> list[LedgerPass]:
        """Passes in serial order; ``name`` matches part of the holder, any case."""
        out = self._select()
        if tier is not None:
            out = [p for p in out if p.tier == tier]
        if name is not None:
            wanted = search_form(name)
            out = [p for p in out if p.holder and wanted in search_form(p.holder)]
        if revoked is not None:
            out = [p for p in out if p.revoked == revoked]
        return out

    def by_name(self, name: str, *, revoked: bool | None = None) -> list[LedgerPass]:
        """Passes whose holder is ``name`` (as :func:`search_form` reads names);
        failing that, holds it."""
        candidates = self.passes(name=name, revoked=revoked)
        return self._named(candidates, name) or candidates

    def valid_held_by(self, name: str) -> list[LedgerPass]:
        """The valid passes of a holder of this name (as :func:`search_form`
        reads names: "Zoe Angstrom" holds Zoë Ångström's pass)."""
        return self._named(self.passes(name=name, revoked=False), name)

    @staticmethod
    def _named(passes: list[LedgerPass], name: str) -> list[LedgerPass]:
        wanted = search_form(name)
        return [p for p in passes if p.holder and search_form(p.holder) == wanted]

    def revoked(self) -> set[int]:
        """The full revoked set: what a signed revocation list must hold."""
        rows = self.db.execute(
            "SELECT serial FROM passes WHERE event = ? AND revoked_at IS NOT NULL", [self.event]
        )
        return {r[0] for r in rows.fetchall()}

    def slots(self, key: str) -> dict[int, LedgerPass]:
        """For one row key: each slot's current pass (the unrevoked one, else the newest)."""
        out: dict[int, LedgerPass] = {}
        for p in self._select("row_key = ?", [key]):
            held = out.get(p.slot)
            if held is None or held.revoked:
                out[p.slot] = p
        return out

    # -- writing -------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Everything inside is written together or not at all."""
        try:
            with self.db.conn:
                yield
        except sqlite3.IntegrityError as err:
            raise LedgerError(f"a serial was issued meanwhile by someone else: {err}") from err
        except sqlite3.DatabaseError as err:
            raise LedgerError(f"the ledger {self.path} cannot be written: {err}") from err

    def record(self, passes: Iterable[NewPass], now: datetime | None = None) -> None:
        """Add issued passes (call inside :meth:`transaction` with related revokes)."""
        stamp = format_utc(now or datetime.now(UTC))
        for p in passes:
            c = p.content
            self.db.execute(
                "INSERT INTO passes (event, serial, tier, holder, zones, not_before, not_after, "
                "key_id, issued_at, text_sha256, text, row_key, slot, replaces) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    c.event,
                    c.serial,
                    c.tier,
                    c.holder,
                    ",".join(c.zones) if c.zones else None,
                    format_utc(c.not_before) if c.not_before else None,
                    format_utc(c.not_after) if c.not_after else None,
                    p.key_id,
                    stamp,
                    hashlib.sha256(p.text.encode()).hexdigest(),
                    p.text,
                    row_key(c),
                    p.slot,
                    p.replaces,
                ],
            )
            if p.replaces is not None:
                self.db.execute(
                    "UPDATE passes SET replaced_by = ? WHERE event = ? AND serial = ?",
                    [c.serial, self.event, p.replaces],
                )

    def resign(self, serial: int, text: str, signer: str) -> None:
        """Keep a pass's new text after signing it again with another key."""
        self.db.execute(
            "UPDATE passes SET text = ?, text_sha256 = ?, key_id = ? "
            "WHERE event = ? AND serial = ?",
            [text, hashlib.sha256(text.encode()).hexdigest(), signer, self.event, serial],
        )

    def revoke(self, serial: int, reason: str, now: datetime | None = None) -> LedgerPass:
        """Mark pass ``serial`` revoked; a serial never issued is refused."""
        found = self.get(serial)
        if found is None:
            raise IssueError(
                f"serial {serial} was never issued for {self.event!r}; "
                "scanner passes list shows the serials that were"
            )
        if found.revoked:
            return found
        self.db.execute(
            "UPDATE passes SET revoked_at = ?, revoked_reason = ? WHERE event = ? AND serial = ?",
            [format_utc(now or datetime.now(UTC)), reason, self.event, serial],
        )
        revoked = self.get(serial)
        assert revoked is not None
        return revoked
