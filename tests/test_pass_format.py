"""Pass format v1: the documented test vectors, the QR size promise, and a
strict parser that denies anything altered, truncated or made up."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import base45
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.core.decision import Gate, Reason, decide
from scanner.core.keys import key_id, private_key_from_seed, public_key_text, sign
from scanner.core.passes import (
    MAX_PAYLOAD_BYTES,
    MAX_TEXT_CHARS,
    MIN_PAYLOAD_BYTES,
    PASS_DOMAIN,
    PASS_PREFIX,
    PassContent,
    encode_pass,
    read_pass,
)
from scanner.errors import IssueError, PassFormatError
from scanner.organizer.issuing import qr_code

from .conftest import ROOT

DOC = (ROOT / "docs" / "pass-format.md").read_text()
VECTORS = [json.loads(block) for block in re.findall(r"```json\n(.*?)\n```", DOC, re.S)]
SEED = bytes.fromhex(re.search(r"Key seed \(32 bytes, hex\): `([0-9a-f]{64})`", DOC).group(1))
SHOW = datetime.fromisoformat("2026-12-05T18:00:00+01:00")


def _content(vector: dict) -> PassContent:
    return PassContent(
        event=vector["event"],
        serial=vector["serial"],
        tier=vector["tier"],
        zones=tuple(vector["zones"]) if "zones" in vector else None,
        not_before=datetime.fromisoformat(vector["not_before"]) if "not_before" in vector else None,
        not_after=datetime.fromisoformat(vector["not_after"]) if "not_after" in vector else None,
        holder=vector.get("holder"),
    )


def test_the_document_has_test_vectors():
    assert len(VECTORS) >= 3


def test_the_documented_key_matches_the_seed():
    key = private_key_from_seed(SEED)
    assert public_key_text(key.public_key()) in DOC
    assert key_id(key) in DOC


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: f"serial-{v['serial']}")
def test_an_issuer_following_the_document_produces_the_vector_exactly(vector):
    key = private_key_from_seed(SEED)
    assert encode_pass(key, _content(vector)) == vector["text"]
    raw = base45.b45decode(vector["text"][len(PASS_PREFIX) :])
    assert raw.hex() == vector["payload_hex"] + vector["signature_hex"]


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: f"serial-{v['serial']}")
def test_a_reader_gets_the_documented_fields_back(vector, policy):
    signed = read_pass(vector["text"], [private_key_from_seed(SEED).public_key()])
    content = _content(vector)
    assert signed.serial == content.serial
    assert signed.holder == content.holder
    assert signed.not_before == content.not_before
    assert signed.not_after == content.not_after
    assert policy.tier_for_tag(signed.tier_tag).id == content.tier
    zones = signed.zone_tags and tuple(policy.zone_for_tag(t) for t in signed.zone_tags)
    assert zones == content.zones


def test_the_documented_size_limits_match_the_reader():
    assert f"longer than {MAX_TEXT_CHARS} characters" in DOC
    assert f"outside {MIN_PAYLOAD_BYTES}..{MAX_PAYLOAD_BYTES} bytes" in DOC


def test_a_typical_pass_fits_qr_version_6_at_error_correction_m(make_pass):
    text = make_pass("vip", 2_097_151, holder="Jane Doe-Smithsonian")  # 20 characters
    code = qr_code(text)
    assert code.version <= 6
    assert code.error == "M"
    assert code.mode == "alphanumeric"


def test_the_readme_states_the_real_qr_version(make_pass):
    version = qr_code(make_pass("vip", 1042, holder="Jane Doe-Smithsonian")).designator
    assert f"version {version}" in (ROOT / "README.md").read_text()


def test_a_pass_signature_does_not_verify_as_anything_else(organizer_key, make_pass):
    # The same payload signed without the pass domain (as any other document
    # kind would be) must not pass as a pass.
    text = make_pass("aaa")
    raw = base45.b45decode(text[len(PASS_PREFIX) :])
    payload = raw[:-64]
    foreign = sign(organizer_key, b"backstage-scanner/doc/v1/policy\x00", payload)
    forged = PASS_PREFIX + base45.b45encode(payload + foreign).decode()
    with pytest.raises(PassFormatError) as err:
        read_pass(forged, [organizer_key.public_key()])
    assert err.value.reason == "bad_signature"
    assert PASS_DOMAIN.startswith(b"backstage-scanner/pass/")


def _resign(organizer_key, payload: bytes) -> str:
    return (
        PASS_PREFIX + base45.b45encode(payload + sign(organizer_key, PASS_DOMAIN, payload)).decode()
    )


def test_a_validly_signed_pass_with_a_trailing_byte_is_malformed(organizer_key, make_pass):
    raw = base45.b45decode(make_pass("aaa", holder="Al")[len(PASS_PREFIX) :])
    text = _resign(organizer_key, raw[:-64] + b"\x00")
    with pytest.raises(PassFormatError, match="trailing") as err:
        read_pass(text, [organizer_key.public_key()])
    assert err.value.reason == "malformed"


def test_a_validly_signed_pass_with_a_truncated_field_is_malformed(organizer_key, make_pass):
    raw = base45.b45decode(make_pass("aaa", holder="Alice Cooper")[len(PASS_PREFIX) :])
    text = _resign(organizer_key, raw[:-64][:-3])
    with pytest.raises(PassFormatError, match="truncated") as err:
        read_pass(text, [organizer_key.public_key()])
    assert err.value.reason == "malformed"


def test_an_unknown_version_is_malformed(organizer_key, make_pass):
    raw = bytearray(base45.b45decode(make_pass("aaa")[len(PASS_PREFIX) :]))
    raw[0] = 2
    text = _resign(organizer_key, bytes(raw[:-64]))
    with pytest.raises(PassFormatError, match="version 2") as err:
        read_pass(text, [organizer_key.public_key()])
    assert err.value.reason == "malformed"


def test_unknown_flags_are_malformed(organizer_key, make_pass):
    raw = bytearray(base45.b45decode(make_pass("aaa")[len(PASS_PREFIX) :]))
    raw[1] |= 0x80
    with pytest.raises(PassFormatError, match="flags"):
        read_pass(_resign(organizer_key, bytes(raw[:-64])), [organizer_key.public_key()])


def test_over_long_input_is_refused_before_decoding(organizer_key):
    with pytest.raises(PassFormatError, match="too long"):
        read_pass(PASS_PREFIX + "0" * 10_000, [organizer_key.public_key()])


def test_lower_case_text_is_not_base45(organizer_key, make_pass):
    with pytest.raises(PassFormatError, match="Base45"):
        read_pass(
            make_pass("aaa").lower().replace("bp1:", PASS_PREFIX), [organizer_key.public_key()]
        )


def test_a_pass_signed_by_another_key_is_unknown(other_key, organizer_key, make_pass):
    with pytest.raises(PassFormatError) as err:
        read_pass(make_pass("aaa", key=other_key), [organizer_key.public_key()])
    assert err.value.reason == "unknown_key"


def test_issuing_refuses_names_that_do_not_fit(organizer_key):
    with pytest.raises(IssueError, match="40"):
        encode_pass(organizer_key, PassContent("e", 1, "aaa", holder="x" * 41))
    with pytest.raises(IssueError, match="printable"):
        encode_pass(organizer_key, PassContent("e", 1, "aaa", holder="bad\nname"))


def test_issuing_refuses_an_empty_window(organizer_key):
    at = datetime(2026, 12, 5, tzinfo=UTC)
    with pytest.raises(IssueError, match="later"):
        encode_pass(organizer_key, PassContent("e", 1, "aaa", not_before=at, not_after=at))


# -- property tests: anything altered or made up is a denial, never a crash --

FORGERY_REASONS = {Reason.MALFORMED, Reason.BAD_SIGNATURE, Reason.UNKNOWN_KEY}
GATE = Gate(zone="backstage")


@pytest.fixture(scope="module")
def valid_text(make_pass):
    return make_pass(
        "aaa",
        4242,
        holder="Jane Doe-Smithsonian",
        not_before=SHOW - timedelta(hours=9),
        not_after=SHOW + timedelta(hours=9),
    )


def test_the_valid_text_used_below_is_granted(policy, valid_text):
    assert decide(valid_text, policy, GATE, SHOW).granted


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_single_bit_flip_of_a_valid_pass_is_denied(policy, valid_text, data):
    raw = bytearray(valid_text.encode("ascii"))
    index = data.draw(st.integers(0, len(raw) - 1), label="byte")
    bit = data.draw(st.integers(0, 7), label="bit")
    raw[index] ^= 1 << bit
    text = raw.decode("latin-1")
    decision = decide(text, policy, GATE, SHOW)
    assert not decision.granted
    assert decision.reason in FORGERY_REASONS


@settings(max_examples=300, deadline=None)
@given(cut=st.integers(0, 500))
def test_any_truncation_of_a_valid_pass_is_denied(policy, valid_text, cut):
    cut = cut % len(valid_text)
    decision = decide(valid_text[:cut], policy, GATE, SHOW)
    assert not decision.granted
    assert decision.reason in FORGERY_REASONS


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=400))
def test_random_strings_are_denied_as_malformed(policy, text):
    decision = decide(text, policy, GATE, SHOW)
    assert not decision.granted
    assert decision.reason is Reason.MALFORMED


@settings(max_examples=300, deadline=None)
@given(blob=st.binary(max_size=300))
def test_random_bytes_behind_the_prefix_are_denied_as_forgeries(policy, blob):
    # Random bytes are malformed, or fail the signature; a random key tag can
    # only ever be unknown_key (the forged family: same signal at the door).
    decision = decide(PASS_PREFIX + base45.b45encode(blob).decode(), policy, GATE, SHOW)
    assert not decision.granted
    assert decision.reason in FORGERY_REASONS


@settings(max_examples=200, deadline=None)
@given(blob=st.binary(min_size=MIN_PAYLOAD_BYTES, max_size=MAX_PAYLOAD_BYTES))
def test_random_bytes_under_a_trusted_key_tag_fail_the_signature(policy, organizer_key, blob):
    raw = bytearray(blob)
    raw[0] = 1
    raw[2:6] = bytes.fromhex(key_id(organizer_key))[:4]
    decision = decide(PASS_PREFIX + base45.b45encode(bytes(raw)).decode(), policy, GATE, SHOW)
    assert decision.reason is Reason.BAD_SIGNATURE
