"""Helpers for tests of exports and merges: gates with real logs, keys and
policies in folders, the CLI as a manager types it, and what an attacker
holding a device key does to an export (change it, then sign it again)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from scanner.cli import cli
from scanner.core.keys import Ed25519PrivateKey, public_key_text
from scanner.core.policy import sign_policy
from scanner.core.signed import sign_document
from scanner.gate.config import load_config
from scanner.keyfiles import (
    load_age_identities,
    load_or_create_device_key,
    write_age_identity,
    write_key_pair,
)
from scanner.record.log import ScanLog
from scanner.transfer.export import decrypt

from .conftest import EXAMPLE_POLICY, SIGNED_AT

NOW = datetime(2026, 12, 5, 23, 30, tzinfo=UTC)
EVENT = "example-fest-2026"


@dataclass(frozen=True)
class Manager:
    identity: Path  # the age identity file (0600)
    recipient: str  # its age1... public key


def make_manager(folder: Path) -> Manager:
    paths = write_age_identity(folder, "manager")
    return Manager(paths.private, paths.key_id)


def policy_with_recipients(organizer_key: Ed25519PrivateKey, recipients: list[str]) -> bytes:
    text = EXAMPLE_POLICY.read_text()
    if recipients:
        text += f"\n[export]\nrecipients = {json.dumps(recipients)}\n"
    return sign_policy(text, organizer_key, SIGNED_AT)


@dataclass(frozen=True)
class Gate:
    """A gate's state folder and the scanner.toml that names every file in it."""

    id: str
    folder: Path
    config_file: Path

    @property
    def db(self) -> Path:
        return self.folder / "scans.db"

    @property
    def device_key(self) -> Ed25519PrivateKey:
        return load_or_create_device_key(self.folder / "device.key")

    def config(self) -> Any:
        return load_config(self.config_file, require_zone=False)


def make_gate(
    root: Path,
    gate: str,
    organizer_key: Ed25519PrivateKey,
    *,
    recipients: list[str],
    rows: int = 0,
    gate_id_in_config: bool = True,
) -> Gate:
    """A gate as the daemon leaves it: policy, trust, device key, a log."""
    folder = root / gate
    folder.mkdir(parents=True)
    (folder / "event.policy").write_bytes(policy_with_recipients(organizer_key, recipients))
    write_key_pair(folder / "trust", "organizer", key=organizer_key)
    load_or_create_device_key(folder / "device.key")
    config = folder / "scanner.toml"
    gate_line = f'id = "{gate}"\n' if gate_id_in_config else ""
    config.write_text(
        f'[gate]\n{gate_line}door_file = ""\n'
        "[paths]\n"
        f'policy = "{folder / "event.policy"}"\ninitial_policy = ""\n'
        f'trust = ["{folder / "trust"}"]\n'
        f'revocations = "{folder / "revocations.signed"}"\n'
        f'trust_update = "{folder / "trust.signed"}"\n'
        f'db = "{folder / "scans.db"}"\ncontrol_socket = ""\n'
        f'build_time = "{folder / "build-time"}"\n'
        f'device_key = "{folder / "device.key"}"\n'
    )
    made = Gate(gate, folder, config)
    if rows:
        fill(made.db, gate, rows)
    return made


def scan(i: int, **fields: Any) -> dict[str, Any]:
    row = {
        "ts": f"2026-12-05T19:{i // 60 % 60:02d}:{i % 60:02d}Z",
        "zone": "backstage",
        "direction": "entry",
        "event": EVENT,
        "serial": i,
        "tier": "vip",
        "holder": f"Guest {i}",
        "decision": "granted",
        "reason": "ok",
        "clock": "trusted",
        "phase": "before",
        "message": "ok",
    }
    row.update(fields)
    return row


def fill(db: Path, gate: str, n: int, start: int = 0, /, **fields: Any) -> list[dict[str, Any]]:
    with ScanLog(db, gate=gate) as log:
        written = [log.record_scan(scan(i, **fields)) for i in range(start, start + n)]
        log.record_event(NOW, "start", version="test")
    return written


def run(*args: str | Path) -> Result:
    """The scanner command, as a user types it."""
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def export(gate: Gate, stick: Path, *extra: str) -> Path:
    """``scanner export`` from a shell on the gate; the new export folder."""
    before = set(stick.glob("scanner-logs/*/*"))
    result = run("export", "--config", gate.config_file, "--to", stick, *extra)
    assert result.exit_code == 0, result.output
    (folder,) = set(stick.glob("scanner-logs/*/*")) - before
    return folder


def resign(folder: Path, device_key: Ed25519PrivateKey, **changes: Any) -> None:
    """What a forger holding the device key does after changing files: fix
    every hash in the manifest (and ``changes``) and sign it again."""
    envelope = json.loads((folder / "manifest.json").read_text())
    body = json.loads(envelope["signed"])["body"]
    body.update(changes)
    body["device_key"] = public_key_text(device_key.public_key())
    for name, entry in body["files"].items():
        data = (folder / name).read_bytes()
        entry["sha256"] = hashlib.sha256(data).hexdigest()
        entry["bytes"] = len(data)
    (folder / "manifest.json").write_bytes(sign_document(device_key, "export-manifest", body, NOW))


def manifest_body(folder: Path) -> dict[str, Any]:
    """The signed body of an export's manifest, as anybody holding the stick reads it."""
    envelope = json.loads((folder / "manifest.json").read_text())
    body: dict[str, Any] = json.loads(envelope["signed"])["body"]
    return body


def summary_of(folder: Path, identity: Path) -> dict[str, Any]:
    """The sealed summary of an encrypted export, as the manager's key opens it."""
    data = (folder / "summary.json.age").read_bytes()
    summary: dict[str, Any] = json.loads(decrypt(data, load_age_identities(identity), "summary"))
    return summary


def seal(folder: Path, recipient: str, content: bytes) -> None:
    """Put ``content`` in the export's summary.json.age, encrypted to ``recipient``
    (a public key: anybody can seal a summary, only the device key signs it)."""
    import pyrage

    sealed = pyrage.encrypt(content, [pyrage.x25519.Recipient.from_str(recipient)])
    (folder / "summary.json.age").write_bytes(bytes(sealed))


def as_before_the_summary_was_sealed(
    folder: Path, device_key: Ed25519PrivateKey, identity: Path
) -> None:
    """Rewrite an encrypted export as a box on the version before this one wrote
    it: the summary's fields in the clear manifest, each encrypted file's clear
    size and SHA-256 in the file list, no summary.json.age; signed by the box."""
    summary = summary_of(folder, identity)
    (folder / "summary.json.age").unlink()
    body = manifest_body(folder)
    del body["sealed"], body["files"]["summary.json.age"]
    for name, clear in summary.pop("files").items():
        body["files"][name].update(clear)
    body.update(summary)
    (folder / "manifest.json").write_bytes(sign_document(device_key, "export-manifest", body, NOW))


def execute(db: Path, sql: str) -> None:
    conn = sqlite3.connect(db)
    conn.executescript(sql)
    conn.commit()
    conn.close()


def dump(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Everything a merge wrote that matters (not the time it ran)."""
    if not db.exists():
        return {}
    conn = sqlite3.connect(db)
    try:
        tables = {
            "scans": "SELECT * FROM scans ORDER BY id",
            "events": "SELECT * FROM events ORDER BY id",
            "gates": "SELECT * FROM gates ORDER BY gate",
            "exports": "SELECT manifest_sha256, gate, event, events, exported_at, rows, "
            "events_rows, first_ts, last_ts, head_hash, known_gate, encrypted "
            "FROM exports ORDER BY manifest_sha256",
            "conflicts": "SELECT in_table, id, merged_gate, merged_seq, export_gate, "
            "export_seq, export_sha256 FROM conflicts ORDER BY 1, 2, 7",
        }
        return {name: conn.execute(sql).fetchall() for name, sql in tables.items()}
    finally:
        conn.close()


def count(db: Path, table: str = "scans") -> int:
    if not db.exists():
        return 0
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()
