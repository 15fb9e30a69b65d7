"""Shared fixtures: an organizer key from a fixed seed, the example policy
signed with it, and a helper that issues passes for that policy."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from scanner.core.keys import Ed25519PrivateKey, private_key_from_seed
from scanner.core.passes import PassContent, encode_pass
from scanner.core.policy import Policy, open_policy, sign_policy
from scanner.keyfiles import write_key_pair

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_POLICY = ROOT / "config" / "example-event.toml"
SIGNED_AT = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


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
