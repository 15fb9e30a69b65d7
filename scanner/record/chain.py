"""The hash chain over a log's rows: each row stores the hash of the row
before it (``prev_hash``) and its own ``hash`` over all its fields, so a
deleted, edited or reordered row is found by :func:`verify_chain`; an
export's manifest carries the head, so rows cut off the end are found too."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["GENESIS", "ChainProblem", "ChainWriter", "chain_hash", "verify_chain"]

GENESIS = "0" * 64

_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def chain_hash(row: Mapping[str, Any]) -> str:
    """The hash a row must carry: SHA-256 of the canonical JSON of every field
    but ``hash`` itself (keys sorted, no spaces, UTF-8)."""
    fields = dict(row)
    fields.pop("hash", None)
    return hashlib.sha256(_CANONICAL.encode(fields).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ChainProblem:
    seq: int | None
    row_id: str | None
    problem: str

    def __str__(self) -> str:
        where = f"row {self.seq}" if self.seq is not None else "end of log"
        return f"{where}: {self.problem}"


def verify_chain(rows: Iterable[Mapping[str, Any]]) -> list[ChainProblem]:
    """Check a table's rows, in ``seq`` order, from the first row written.

    Reports an edited row (its hash does not match its fields), a missing or
    reordered row (a gap in ``seq`` or a broken ``prev_hash`` link).
    """
    problems: list[ChainProblem] = []
    prev = GENESIS
    expected_seq = 1
    for row in rows:
        seq, rid = row.get("seq"), row.get("id")
        if seq != expected_seq:
            problems.append(
                ChainProblem(
                    seq, rid, f"expected row {expected_seq} here: rows missing or out of order"
                )
            )
        if row.get("prev_hash") != prev:
            problems.append(ChainProblem(seq, rid, "does not follow the row before it"))
        if chain_hash(row) != row.get("hash"):
            problems.append(ChainProblem(seq, rid, "was altered after it was written"))
        prev = str(row.get("hash"))
        expected_seq = (seq if isinstance(seq, int) else expected_seq) + 1
    return problems


class ChainWriter:
    """Appends chained rows to one table.

    The head (last ``seq`` and ``hash``) is read inside the write transaction
    (``BEGIN IMMEDIATE``), so another process appending to the same file (an
    export or update run from a shell) never forks the chain.
    """

    def __init__(self, table: str, columns: Mapping[str, type]) -> None:
        self.table = table
        self.columns = list(columns)
        self.sql = (
            f"INSERT INTO {table} ({', '.join(self.columns)}) "
            f"VALUES ({', '.join('?' for _ in self.columns)})"
        )
        self.head_sql = f"SELECT seq, hash FROM {table} ORDER BY seq DESC LIMIT 1"

    def head(self, conn: sqlite3.Connection) -> tuple[int, str]:
        row = conn.execute(self.head_sql).fetchone()
        return (row[0], row[1]) if row else (0, GENESIS)

    def append(self, conn: sqlite3.Connection, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Build the next row on the current head and insert it (in a transaction)."""
        seq, prev = self.head(conn)
        row = {c: fields.get(c) for c in self.columns}
        row["id"] = row["id"] or str(uuid.uuid4())
        row["seq"] = seq + 1
        row["prev_hash"] = prev
        row["hash"] = chain_hash(row)
        conn.execute(self.sql, [row[c] for c in self.columns])
        return row
