"""Every reader of untrusted bytes, as a fuzz target.

A target takes bytes and either accepts them (returning what it made of
them) or refuses them with one of the project's own errors. Anything else
it raises is a bug: an uncaught exception where a gate or a manager's
laptop would show a traceback, stop a USB import half-way, or skip the rest
of a stick. ``accepted`` checks what an acceptance means: a signed document
that was altered must never be accepted; only changes outside the signed
bytes (the envelope's whitespace, say) may pass, and then the result is the
genuine document's.

The same targets serve two runners: ``tests/test_fuzz.py`` replays the
corpus in ``tests/fuzz/corpus/TARGET/`` plus a bounded number of
deterministic mutations on every test run, and ``scripts/fuzz`` runs the
coverage-guided fuzzer atheris for as long as you like and adds what it
finds to the corpus.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from scanner.core.keys import private_key_from_seed
from scanner.core.passes import PassContent, encode_pass, read_pass
from scanner.core.policy import open_policy, sign_policy
from scanner.core.signed import open_document, sign_document
from scanner.errors import ScannerError

TOP = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).resolve().parent / "corpus"
KEY = private_key_from_seed(bytes(range(32)))
STRANGER = private_key_from_seed(bytes(range(1, 33)))
SIGNED_AT = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
POLICY_TOML = (TOP / "config" / "example-event.toml").read_text()


@dataclass
class Target:
    name: str
    run: Callable[[bytes], Any]  # raises ScannerError to refuse
    seeds: Callable[[], list[bytes]]
    accepted: Callable[[bytes, Any], None] = lambda data, result: None
    refusals: tuple[type[BaseException], ...] = (ScannerError,)
    _seed_cache: list[bytes] = field(default_factory=list, repr=False)

    def seed_inputs(self) -> list[bytes]:
        if not self._seed_cache:
            self._seed_cache.extend(self.seeds())
        return self._seed_cache

    def corpus(self) -> list[bytes]:
        folder = CORPUS / self.name
        files = sorted(folder.iterdir()) if folder.is_dir() else []
        return [f.read_bytes() for f in files if f.is_file()]

    def attempt(self, data: bytes) -> str:
        """'accepted' or 'refused'; any other exception propagates (a bug)."""
        try:
            result = self.run(data)
        except self.refusals:
            return "refused"
        self.accepted(data, result)
        return "accepted"


# -- signed documents ----------------------------------------------------------


def _signed_part(data: bytes) -> str | None:
    try:
        envelope = json.loads(data)
        return envelope.get("signed") if isinstance(envelope, dict) else None
    except ValueError:
        return None


def _genuine_signed_parts(target: Target) -> set[str | None]:
    return {_signed_part(seed) for seed in target.seed_inputs()}


def _documents() -> list[bytes]:
    return [
        sign_document(KEY, "revocations", {"event": "example-fest-2026", "serials": [3, 4]},
                      SIGNED_AT),
        sign_document(KEY, "revocations", {"event": "x", "serials": []}, SIGNED_AT),
    ]


def _open_revocations(data: bytes) -> Any:
    return open_document(data, kind="revocations", trusted=[KEY.public_key()])


def _no_altered_document(target: Target) -> Callable[[bytes, Any], None]:
    def check(data: bytes, result: Any) -> None:
        # the signed bytes must be one of the genuine documents' exactly
        assert _signed_part(data) in _genuine_signed_parts(target), "altered document accepted"

    return check


def _policy_seeds() -> list[bytes]:
    return [sign_policy(POLICY_TOML, KEY, SIGNED_AT)]


def _open_policy(data: bytes) -> Any:
    return open_policy(data, [KEY.public_key()])


# -- passes -----------------------------------------------------------------------


def _pass_seeds() -> list[bytes]:
    show = datetime(2026, 12, 5, 19, 0, tzinfo=UTC)
    contents = [
        PassContent("example-fest-2026", 1, "aaa"),
        PassContent("example-fest-2026", 20000, "vip", holder="Jane Doe"),
        PassContent("example-fest-2026", 2**32 - 1, "staff", zones=("catering", "merch"),
                    not_before=show, not_after=show + timedelta(hours=8), holder="Zoë Ünal"),
    ]
    return [encode_pass(KEY, c).encode("ascii") for c in contents]


def _read_pass(data: bytes) -> Any:
    return read_pass(data.decode("utf-8", "surrogateescape"), [KEY.public_key()])


def _pass_accepted(target: Target) -> Callable[[bytes, Any], None]:
    def check(data: bytes, result: Any) -> None:
        assert data in target.seed_inputs(), "an altered pass was accepted"

    return check


# -- the door file and the gate's config ---------------------------------------------


def _door_file(data: bytes) -> Any:
    import tempfile

    from scanner.gate.config import read_door_file

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "gate.toml"
        path.write_bytes(data)
        return read_door_file(path)


def _config(data: bytes) -> Any:
    from scanner.core.untrusted import parse_toml
    from scanner.errors import MalformedError
    from scanner.gate.config import parse_config

    try:
        parsed = parse_toml(data, max_bytes=64 * 1024)
    except MalformedError as err:
        from scanner.errors import ConfigError

        raise ConfigError(str(err)) from err
    return parse_config(parsed, "fuzz.toml")


_POLICY_CACHE: list[Any] = []


def _batch_csv(data: bytes) -> Any:
    from scanner.organizer.issuing import read_batch_csv

    if not _POLICY_CACHE:
        _POLICY_CACHE.append(open_policy(_policy_seeds()[0], [KEY.public_key()]))
    return read_batch_csv(data, _POLICY_CACHE[0])


TARGETS: dict[str, Target] = {}


def register(target: Target) -> Target:
    TARGETS[target.name] = target
    return target


register(Target("revocations", _open_revocations, _documents))
TARGETS["revocations"].accepted = _no_altered_document(TARGETS["revocations"])
register(Target("policy", _open_policy, _policy_seeds))
TARGETS["policy"].accepted = _no_altered_document(TARGETS["policy"])
register(Target("pass", _read_pass, _pass_seeds))
TARGETS["pass"].accepted = _pass_accepted(TARGETS["pass"])
register(Target("gate-toml", _door_file, lambda: [
    b'id = "stage-left"\nzone = "backstage"\ndirection = "entry"\ntimezone = "Europe/Berlin"\n',
    b'id = "d1"\ndoor = "artist-entrance"\n',
]))
register(Target("batch-csv", _batch_csv, lambda: [
    b"holder,tier,zones,serial,not_before,not_after\n"
    b"Jane Doe,vip,,,,\n"
    b"Sam Okafor,staff,catering;merch,12,2026-12-05T18:00:00,2026-12-06T01:00:00\n"
    b"\"Lee, Chan\",local-crew,,,,2026-12-05T19:00:00+01:00\n",
    "holder,tier\nZo\u00eb \u00dcnal,aaa\n\u5f20\u4f1f,working\n".encode(),
]))
register(Target("scanner-toml", _config, lambda: [(TOP / "config" / "scanner.toml").read_bytes()]))


# -- a deterministic mutator for the bounded run in the test suite -----------------------

INTERESTING = [
    b"[" * 5000, b"{" * 5000, b'"\\ud800"', b"\xff\xfe", b"\x00", b"NaN", b"1e999",
    b'"' * 3, b"\\u0000", b"-0", b"4294967296", b"true", b"null", b"{}", b"[]",
    "\U0001F600".encode(), b"\r\n", b"=cmd|' /C calc'!A0",
]


def mutate(data: bytes, rng: random.Random, others: Iterable[bytes] = ()) -> bytes:
    """One random change: flip, insert, delete, duplicate, splice or an
    interesting token; several at once sometimes."""
    out = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 3, 8))):
        choice = rng.randrange(7)
        pos = rng.randrange(len(out) + 1)
        if choice == 0 and out:
            i = rng.randrange(len(out))
            out[i] ^= 1 << rng.randrange(8)
        elif choice == 1:
            out[pos:pos] = bytes([rng.randrange(256)])
        elif choice == 2 and out:
            del out[pos : pos + rng.randrange(1, 16)]
        elif choice == 3 and out:
            start = rng.randrange(len(out))
            out[pos:pos] = out[start : start + rng.randrange(1, 64)]
        elif choice == 4:
            out[pos:pos] = rng.choice(INTERESTING)
        elif choice == 5:
            pool = list(others)
            if pool:
                other = rng.choice(pool)
                cut = rng.randrange(len(other) + 1)
                out = out[:pos] + bytearray(other[cut:])
        else:
            i = rng.randrange(len(out) + 1)
            out[i:i] = str(rng.choice((0, -1, 2**31, 2**64, 10**400))).encode()
    return bytes(out)


# -- what comes in by USB: key chains and time settings ----------------------------------


def _chain_seeds() -> list[bytes]:
    from scanner.core.trust import extend_chain

    one, _ = extend_chain(None, KEY, [STRANGER.public_key()], SIGNED_AT)
    two, _ = extend_chain(one, STRANGER, [KEY.public_key()], SIGNED_AT + timedelta(hours=1))
    return [one, two]


def _replay(data: bytes) -> Any:
    from scanner.core.keys import key_id
    from scanner.core.trust import replay_chain

    return replay_chain(data, {key_id(KEY): KEY.public_key()})


def _chain_accepted(data: bytes, result: Any) -> None:
    # whatever a mangled chain does, the gate ends up trusting only keys that
    # genuine links named, and never more links than the genuine chain holds
    from scanner.core.keys import key_id

    genuine = {key_id(KEY), key_id(STRANGER)}
    assert set(result.keys) <= genuine, "a key no genuine link named is trusted"
    applied = [link.digest for link in result.links]
    seeds = [_replay(seed) for seed in TARGETS["trust-chain"].seed_inputs()]
    assert any(applied == [link.digest for link in s.links][: len(applied)] for s in seeds), (
        "a link that is not one of the genuine chain's was applied"
    )


def _time_seeds() -> list[bytes]:
    from scanner.transfer.updates import sign_time_setting

    return [
        sign_time_setting(KEY, event="example-fest-2026", signed_at=SIGNED_AT, sequence=3,
                          gates=["door-1"], valid_hours=4, lower_floor=True),
    ]


def _open_time(data: bytes) -> Any:
    from scanner.transfer.updates import open_time_setting

    return open_time_setting(data, [KEY.public_key()])


# -- what comes back on a stick: an export folder ------------------------------------------

_EXPORT: dict[str, Any] = {}
_SEALED: dict[str, Any] = {}
EXPORTED_AT = SIGNED_AT + timedelta(days=15)


def _small_log() -> Path:
    """A gate's log of five scans and one gate event, in a folder of its own."""
    import tempfile

    from scanner.record.log import ScanLog

    root = Path(tempfile.mkdtemp(prefix="fuzz-export-"))
    with ScanLog(root / "scans.db", gate="door-1") as log:
        for i in range(1, 6):
            log.record_scan({"ts": f"2026-12-05T19:00:0{i}Z", "zone": "backstage",
                             "direction": "entry", "event": "example-fest-2026",
                             "serial": i, "tier": "vip", "holder": f"Guest {i}",
                             "decision": "granted", "reason": "ok", "clock": "trusted"})
        log.record_event(SIGNED_AT, "start", version="fuzz")
    return root / "scans.db"


def _genuine_export() -> dict[str, Any]:
    """One real plaintext export of a small log, made once per run."""
    if not _EXPORT:
        from scanner.transfer.export import export_log

        db = _small_log()
        result = export_log(db, db.parent / "stick", gate="door-1",
                            event="example-fest-2026", device_key=KEY,
                            now=EXPORTED_AT, plaintext=True)
        _EXPORT["folder"] = result.folder
        _EXPORT["files"] = {p.name: p.read_bytes() for p in result.folder.iterdir()}
    return _EXPORT


def _sealed_export() -> dict[str, Any]:
    """One real encrypted export of a small log, the manager key it is sealed
    to, and its summary in the clear; made once per run."""
    if not _SEALED:
        import pyrage

        from scanner.transfer.export import decrypt, export_log

        identity = pyrage.x25519.Identity.generate()
        db = _small_log()
        result = export_log(db, db.parent / "stick", gate="door-1",
                            event="example-fest-2026", device_key=KEY, now=EXPORTED_AT,
                            recipients=[str(identity.to_public())])
        files = {p.name: p.read_bytes() for p in result.folder.iterdir()}
        _SEALED["identity"] = str(identity)
        _SEALED["recipient"] = identity.to_public()
        _SEALED["files"] = files
        _SEALED["body"] = json.loads(json.loads(files["manifest.json"])["signed"])["body"]
        _SEALED["summary"] = decrypt(files["summary.json.age"], [str(identity)], "summary")
    return _SEALED


def _verify_with(name: str, data: bytes) -> Any:
    import tempfile

    from scanner.errors import TransferError
    from scanner.transfer.export import verify_export

    genuine = _genuine_export()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "export"
        folder.mkdir()
        for file, content in genuine["files"].items():
            (folder / file).write_bytes(data if file == name else content)
        check = verify_export(folder)
    if check.problems:
        raise TransferError("; ".join(check.problems))
    return check


def _verify_summary(data: bytes) -> Any:
    """``data`` as the clear text of an export's summary, sealed to the manager
    and signed with the gate's own key, as the thief of a box could: only the
    summary's own checks and the rows stand between it and a merge."""
    import hashlib
    import tempfile

    import pyrage

    from scanner.errors import TransferError
    from scanner.transfer.export import verify_export

    sealed = _sealed_export()
    summary = bytes(pyrage.encrypt(data, [sealed["recipient"]]))
    body = json.loads(json.dumps(sealed["body"]))
    body["files"]["summary.json.age"] = {
        "sha256": hashlib.sha256(summary).hexdigest(), "bytes": len(summary)
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "export"
        folder.mkdir()
        for file, content in sealed["files"].items():
            (folder / file).write_bytes(content)
        (folder / "summary.json.age").write_bytes(summary)
        (folder / "manifest.json").write_bytes(
            sign_document(KEY, "export-manifest", body, EXPORTED_AT)
        )
        check = verify_export(folder, identities=[sealed["identity"]])  # as logs verify
    if check.problems:
        raise TransferError("; ".join(check.problems))
    return check


def _same_summary_as_genuine(data: bytes, result: Any) -> None:
    assert json.loads(data) == json.loads(_sealed_export()["summary"]), (
        "a summary that says other than the gate's was accepted"
    )
    assert result.complete


def _rows_check(data: bytes) -> Any:
    """scans.db bytes straight into the row checks, as if their hash had matched:
    SQLite and the checks meet hostile bytes with no hash in the way."""
    import tempfile

    from scanner.errors import TransferError
    from scanner.transfer.export import check_rows, verify_export

    genuine = _genuine_export()
    check = verify_export(genuine["folder"])
    check.problems.clear()
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "scans.db"
        copy.write_bytes(data)  # as the checks meet it: a private copy of the stick's bytes
        check_rows(copy, check)
    if check.problems:
        raise TransferError("; ".join(check.problems))
    return check


def _same_bytes_as_genuine(name: str) -> Callable[[bytes, Any], None]:
    def check(data: bytes, result: Any) -> None:
        if name == "manifest.json":
            assert _signed_part(data) == _signed_part(_genuine_export()["files"][name]), (
                "an altered manifest was accepted"
            )
        else:
            assert data == _genuine_export()["files"][name], f"an altered {name} was accepted"

    return check


def _export_rows_accepted(data: bytes, result: Any) -> None:
    # accepted rows must be the genuine ones: same chain head, same count
    genuine = _genuine_export()["files"]["scans.db"]
    assert result.rows == 5, "rows were accepted that the manifest does not count"
    if data != genuine:
        import sqlite3

        conn = sqlite3.connect(":memory:")
        conn.deserialize(data)
        hashes = [r[0] for r in conn.execute("SELECT hash FROM scans ORDER BY seq")]
        ref = sqlite3.connect(":memory:")
        ref.deserialize(genuine)
        assert hashes == [r[0] for r in ref.execute("SELECT hash FROM scans ORDER BY seq")]


register(Target("trust-chain", _replay, _chain_seeds, accepted=_chain_accepted))
register(Target("time-setting", _open_time, _time_seeds))
TARGETS["time-setting"].accepted = _no_altered_document(TARGETS["time-setting"])
register(Target("export-manifest", lambda d: _verify_with("manifest.json", d),
                lambda: [_genuine_export()["files"]["manifest.json"]],
                accepted=_same_bytes_as_genuine("manifest.json")))
register(Target("export-summary", _verify_summary, lambda: [_sealed_export()["summary"]],
                accepted=_same_summary_as_genuine))
register(Target("export-db", _rows_check, lambda: [_genuine_export()["files"]["scans.db"]],
                accepted=_export_rows_accepted))


# -- the venue link: what arrives from the broker -------------------------------------


def _venue_roster() -> Any:
    from scanner.core.keys import key_id
    from scanner.core.policy import Direction, GatePlace
    from scanner.venue.messages import RosterKeys

    place = GatePlace("artist-in", "backstage", Direction.ENTRY, "artist-entrance")
    return RosterKeys({key_id(KEY): ("artist-in", KEY.public_key())}, {"artist-in": place})


VENUE_EVENT = "example-fest-2026"


def _venue_scan_seeds() -> list[bytes]:
    from scanner.venue.messages import scan_message

    row = {
        "id": "0b6c1f9e-1d2a-4c1b-9e57-3d5f0a1b2c3d", "seq": 7, "ts": "2026-12-05T20:00:00Z",
        "gate": "artist-in", "event": VENUE_EVENT, "door": "artist-entrance",
        "zone": "backstage", "direction": "entry", "serial": 42, "tier": "aaa",
        "decision": "granted", "reason": "ok", "clock": "trusted", "phase": "during",
    }  # fmt: skip
    denied = row | {
        "seq": 8, "id": "1b6c1f9e-1d2a-4c1b-9e57-3d5f0a1b2c3d", "event": None,
        "serial": None, "tier": None, "decision": "denied", "reason": "malformed",
    }  # fmt: skip
    return [scan_message(KEY, row, VENUE_EVENT), scan_message(KEY, denied, VENUE_EVENT)]


def _venue_heartbeat_seeds() -> list[bytes]:
    from scanner.venue.messages import heartbeat_message

    body = {
        "gate": "artist-in", "event": VENUE_EVENT, "boot": "0123456789abcdef", "n": 3,
        "head": 7, "acked": 7, "clock": "trusted", "phase": "during", "faults": ["camera"],
        "frames": 100, "last_frame_age": 0.1, "granted": 5, "denied": 2,
        "peers": {"in_sync": 2, "of": 3, "behind": ["artist-out"]}, "status": "venue: ok",
    }  # fmt: skip
    return [heartbeat_message(KEY, body, SIGNED_AT)]


def _venue_scan(data: bytes) -> Any:
    from scanner.venue.messages import open_scan

    return open_scan(data, f"backstage/{VENUE_EVENT}/scan/artist-in", _venue_roster(), VENUE_EVENT)


def _venue_heartbeat(data: bytes) -> Any:
    from scanner.venue.messages import open_heartbeat

    return open_heartbeat(
        data, f"backstage/{VENUE_EVENT}/hb/artist-in", _venue_roster(), VENUE_EVENT
    )


def _venue_sync(data: bytes) -> Any:
    from datetime import timedelta

    from scanner.venue.messages import open_sync

    topic = "artist-in" if b"venue-sync" in data[:200] else "live"
    return open_sync(
        data, f"backstage/{VENUE_EVENT}/sync/{topic}", _venue_roster(), VENUE_EVENT,
        now=SIGNED_AT, window=timedelta(seconds=60),
    )  # fmt: skip


def _venue_sync_seeds() -> list[bytes]:
    from scanner.venue.messages import sync_message

    return [
        sync_message(
            KEY, "artist-in", VENUE_EVENT, {"artist-out": 1, "dressing-in": 42}, SIGNED_AT
        ),
        b'{"to":"live","want":{"artist-in":1,"dressing-in":42}}',
    ]


register(Target("venue-scan", _venue_scan, _venue_scan_seeds))
TARGETS["venue-scan"].accepted = _no_altered_document(TARGETS["venue-scan"])
register(Target("venue-heartbeat", _venue_heartbeat, _venue_heartbeat_seeds))
TARGETS["venue-heartbeat"].accepted = _no_altered_document(TARGETS["venue-heartbeat"])
register(Target("venue-sync", _venue_sync, _venue_sync_seeds))
