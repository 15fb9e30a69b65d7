"""Shared fixtures: an organizer key from a fixed seed, the example policy
signed with it, and a helper that issues passes for that policy."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from scanner.core.keys import Ed25519PrivateKey, private_key_from_seed
from scanner.core.passes import PassContent, encode_pass
from scanner.core.policy import Policy, open_policy, sign_policy
from scanner.keyfiles import write_key_pair

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_POLICY = ROOT / "config" / "example-event.toml"
SIGNED_AT = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")
_SCHEDULE_LINE = re.compile(
    r"^(?P<key>opens|doors|show_start|show_end|curfew) = (?P<when>\d{4}-\S+)", re.MULTILINE
)


def example_event(show_start: datetime) -> str:
    """The example policy's text with its evening moved so that the show
    starts at ``show_start``; every other time of the schedule keeps its
    distance on the wall clock in Berlin (load-in at 08:00, curfew at 01:00
    when the show starts at 20:00). Tests that run a gate on the real clock
    build their event around now with this, so none of them depends on the
    date the example was written for."""
    text = EXAMPLE_POLICY.read_text()
    times = {m["key"]: datetime.fromisoformat(m["when"]) for m in _SCHEDULE_LINE.finditer(text)}
    shift = show_start.astimezone(BERLIN).replace(tzinfo=None) - times[
        "show_start"
    ].astimezone(BERLIN).replace(tzinfo=None)

    def moved(match: re.Match[str]) -> str:
        local = times[match["key"]].astimezone(BERLIN).replace(tzinfo=None) + shift
        # through UTC and back: a wall time in a DST gap becomes a real instant
        when = local.replace(tzinfo=BERLIN).astimezone(UTC).astimezone(BERLIN)
        return f"{match['key']} = {when.isoformat(timespec='seconds')}"

    return _SCHEDULE_LINE.sub(moved, text)


def example_policy_now(key: Ed25519PrivateKey, show_started: timedelta) -> bytes:
    """The example policy, signed a minute ago, for a show that started
    ``show_started`` before now (negative: it starts later)."""
    now = datetime.now(UTC)
    return sign_policy(example_event(now - show_started), key, now - timedelta(minutes=1))


@pytest.fixture(scope="session")
def organizer_key() -> Ed25519PrivateKey:
    return private_key_from_seed(bytes(range(32)))


@pytest.fixture(scope="session")
def other_key() -> Ed25519PrivateKey:
    return private_key_from_seed(bytes(range(1, 33)))


@pytest.fixture(scope="session")
def signed_policy_bytes(organizer_key: Ed25519PrivateKey) -> bytes:
    return sign_policy(EXAMPLE_POLICY.read_text(), organizer_key, SIGNED_AT)


@pytest.fixture(scope="session")
def policy(signed_policy_bytes: bytes, organizer_key: Ed25519PrivateKey) -> Policy:
    return open_policy(signed_policy_bytes, [organizer_key.public_key()])


@pytest.fixture(scope="session")
def make_pass(organizer_key: Ed25519PrivateKey) -> Callable[..., str]:
    """make_pass(tier, serial=1, key=..., event=..., **fields) -> QR text."""

    def make(
        tier: str,
        serial: int = 1,
        *,
        key: Ed25519PrivateKey | None = None,
        event: str = "example-fest-2026",
        **fields: Any,
    ) -> str:
        return encode_pass(
            key or organizer_key, PassContent(event=event, serial=serial, tier=tier, **fields)
        )

    return make


@pytest.fixture
def gate_dir(tmp_path: Path, organizer_key: Ed25519PrivateKey, signed_policy_bytes: bytes) -> Path:
    """A gate's state folder: the signed example policy and the organizer's key."""
    (tmp_path / "event.policy").write_bytes(signed_policy_bytes)
    write_key_pair(tmp_path / "trust", "organizer", key=organizer_key)
    return tmp_path
