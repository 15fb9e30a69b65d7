"""The signed event policy: a gate refuses anything it cannot trust, and an
organizer's mistakes are reported with the key that holds them."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest

from scanner.core.policy import open_policy, sign_policy
from scanner.errors import PolicyError

from .conftest import EXAMPLE_POLICY, SIGNED_AT

TOML = EXAMPLE_POLICY.read_text()


def test_a_signed_policy_opens_with_the_organizer_key(signed_policy_bytes, organizer_key):
    policy = open_policy(
        signed_policy_bytes, [organizer_key.public_key()], event="example-fest-2026"
    )
    assert policy.event == "example-fest-2026"
    assert policy.signed_at == SIGNED_AT
    # by default the key that signs the policy is the one that signs passes
    assert list(policy.pass_keys) == [policy.signer]


def test_an_unsigned_policy_is_refused(organizer_key):
    with pytest.raises(PolicyError, match="not a signed document"):
        open_policy(TOML.encode(), [organizer_key.public_key()])


def test_a_policy_with_its_signature_removed_is_refused(signed_policy_bytes, organizer_key):
    envelope = json.loads(signed_policy_bytes)
    del envelope["signature"]
    with pytest.raises(PolicyError, match="unsigned"):
        open_policy(json.dumps(envelope).encode(), [organizer_key.public_key()])


def test_a_tampered_policy_is_refused(signed_policy_bytes, organizer_key):
    envelope = json.loads(signed_policy_bytes)
    envelope["signed"] = envelope["signed"].replace('"dressing-rooms"]', '"dressing-rooms","x"]', 1)
    envelope["signed"] = envelope["signed"].replace("!dressing-rooms", "dressing-rooms")
    with pytest.raises(PolicyError, match="altered or forged"):
        open_policy(json.dumps(envelope).encode(), [organizer_key.public_key()])


def test_a_policy_signed_by_an_unknown_key_is_refused(other_key, organizer_key):
    data = sign_policy(TOML, other_key, SIGNED_AT)
    with pytest.raises(PolicyError, match="not trusted"):
        open_policy(data, [organizer_key.public_key()])


def test_a_policy_for_another_event_is_refused(signed_policy_bytes, organizer_key):
    with pytest.raises(PolicyError, match="serves 'other-show'"):
        open_policy(signed_policy_bytes, [organizer_key.public_key()], event="other-show")


def test_a_swapped_public_key_does_not_make_a_forgery_trusted(other_key, organizer_key):
    # A forger signs with their own key but claims the organizer's key id.
    forged = json.loads(sign_policy(TOML, other_key, SIGNED_AT))
    from scanner.core.keys import key_id

    forged["key_id"] = key_id(organizer_key)
    with pytest.raises(PolicyError):
        open_policy(json.dumps(forged).encode(), [organizer_key.public_key()])


def test_pass_signers_listed_in_the_policy_replace_the_default(organizer_key, other_key):
    from scanner.core.keys import key_id, public_key_text

    text = TOML + (
        f'\n[keys]\npass_signers = ["{public_key_text(other_key.public_key())}", '
        f'"{public_key_text(organizer_key.public_key())}"]\n'
    )
    policy = open_policy(sign_policy(text, organizer_key, SIGNED_AT), [organizer_key.public_key()])
    assert set(policy.pass_keys) == {key_id(other_key), key_id(organizer_key)}


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            '"!dressing-rooms"',
            '"!dresing-rooms"',
            "tiers.working.before: unknown zone 'dresing-rooms'",
        ),
        ("photo_window_minutes = 15", "photo_window_minutes = -1", "schedule.photo_window_minutes"),
        (
            "show_end = 2026-12-05T23:00:00+01:00",
            "show_end = 2026-12-05T19:00:00+01:00",
            "schedule.show_end",
        ),
        (
            "curfew = 2026-12-06T01:00:00+01:00",
            "curfew = 2026-12-06T01:00:00+02:00",
            "schedule.curfew: the offset +02:00 is not Europe/Berlin's",
        ),
        ('timezone = "Europe/Berlin"', 'timezone = "Europe/Atlantis"', "event.timezone"),
        (
            '[tiers.vip]\nlabel = "VIP / Guest"',
            '[tiers.vip]\nlabel = "VIP / Guest"\ndurng = []',
            "tiers.vip.durng: unknown key",
        ),
        ('id = "example-fest-2026"', 'id = "Example Fest"', "event.id"),
        ("serials = []", 'serials = ["twelve"]', "revocations.serials[0]"),
        (
            '[tiers.meet-greet]\nlabel = "Meet & greet"\nbefore = ["meet-greet-room"]',
            '[tiers.meet-greet]\nlabel = "Meet & greet"',
            "tiers.meet-greet: opens no zone",
        ),
    ],
)
def test_a_mistake_in_the_policy_names_its_key(organizer_key, old, new, message):
    assert old in TOML
    with pytest.raises(PolicyError) as err:
        sign_policy(TOML.replace(old, new, 1), organizer_key, SIGNED_AT)
    assert message in str(err.value)


def test_broken_toml_is_reported_as_such(organizer_key):
    with pytest.raises(PolicyError, match="not valid TOML"):
        sign_policy("[event\nid=", organizer_key, SIGNED_AT)


def test_times_without_an_offset_are_read_in_the_events_time_zone(organizer_key):
    local = TOML.replace(
        "show_start = 2026-12-05T20:00:00+01:00", "show_start = 2026-12-05T20:00:00"
    )
    policy = open_policy(sign_policy(local, organizer_key, SIGNED_AT), [organizer_key.public_key()])
    assert policy.schedule.show_start == datetime(2026, 12, 5, 19, 0, tzinfo=UTC)


def test_a_local_time_that_happens_twice_or_never_is_refused(organizer_key):
    summer = TOML.replace("opens = 2026-12-05T08:00:00+01:00", "opens = WHEN")
    for when, message in (
        ("2026-10-25T02:30:00", "happens twice"),
        ("2026-03-29T02:30:00", "does not exist"),
    ):
        with pytest.raises(PolicyError, match=message):
            sign_policy(summer.replace("WHEN", when), organizer_key, SIGNED_AT)


def test_a_misspelt_time_zone_is_named_not_blamed_on_the_times(organizer_key):
    """Local times are read in the event's zone: a typo in the zone is the
    mistake to report, before any time that could not be read in it."""
    local = TOML.replace(
        "show_start = 2026-12-05T20:00:00+01:00", "show_start = 2026-12-05T20:00:00"
    )
    typo = re.sub(r'timezone = "[^"]+"', 'timezone = "Europe/Londn"', local)
    with pytest.raises(PolicyError) as refused:
        sign_policy(typo, organizer_key, SIGNED_AT)
    assert str(refused.value) == "event.timezone: unknown time zone 'Europe/Londn'"
