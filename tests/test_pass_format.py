"""Pass format v1: the documented test vectors, sizes and character set, and
a strict parser that denies anything altered, truncated or made up."""

from __future__ import annotations

import json
import re
import unicodedata
from datetime import UTC, datetime, timedelta

import base45
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.core.decision import Gate, Reason, decide
from scanner.core.keys import key_id, private_key_from_seed, public_key_text, sign
from scanner.core.names import HOLDER_RANGES, holder_problem, normalize_holder
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
from scanner.organizer.issuing import make_pass as issue_pass
from scanner.organizer.issuing import qr_code

from .conftest import ROOT

DOC = (ROOT / "docs" / "pass-format.md").read_text()
VECTORS = [json.loads(block) for block in re.findall(r"```json\n(.*?)\n```", DOC, re.S)]
REJECTED = [json.loads(b) for b in re.findall(r"```json-reject\n(.*?)\n```", DOC, re.S)]
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
    with pytest.raises(IssueError, match="not allowed in a name"):
        encode_pass(organizer_key, PassContent("e", 1, "aaa", holder="bad\nname"))


def test_issuing_refuses_an_empty_window(organizer_key):
    at = datetime(2026, 12, 5, tzinfo=UTC)
    with pytest.raises(IssueError, match="later"):
        encode_pass(organizer_key, PassContent("e", 1, "aaa", not_before=at, not_after=at))


ED25519_ORDER = 2**252 + 27742317777372353535851937790883648493  # L


def test_a_copied_pass_with_its_signature_made_malleable_is_a_forgery(policy, make_pass):
    """S and S + L satisfy the same equation; a reader that took both would let a
    guest mint a second, different-looking code (a new hold-off, a new row) from
    one pass. The gate's check refuses S >= L."""
    text = make_pass("aaa", 77, holder="Al")
    raw = base45.b45decode(text[len(PASS_PREFIX) :])
    s = int.from_bytes(raw[-32:], "little")
    twin = raw[:-32] + (s + ED25519_ORDER).to_bytes(32, "little")
    forged = PASS_PREFIX + base45.b45encode(twin).decode()
    assert decide(text, policy, GATE, SHOW).granted
    decision = decide(forged, policy, GATE, SHOW)
    assert not decision.granted and decision.reason is Reason.BAD_SIGNATURE


def test_a_signature_built_on_a_point_of_small_order_is_a_forgery(policy, organizer_key, make_pass):
    """R = the identity point with S = 0: the classic attempt on a lax verifier."""
    raw = base45.b45decode(make_pass("aaa", 78)[len(PASS_PREFIX) :])
    identity = (1).to_bytes(32, "little")
    for r in (identity, bytes(32)):
        forged = PASS_PREFIX + base45.b45encode(raw[:-64] + r + bytes(32)).decode()
        decision = decide(forged, policy, GATE, SHOW)
        assert not decision.granted and decision.reason is Reason.BAD_SIGNATURE


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



# -- what the document states, measured again --------------------------------

SIZE_ROW = re.compile(
    r"^\| (\d+) \| (\d+) \| (\d+) \| (yes|no) \| (\d+) \| (\d+) "
    r"\| (\d+-M) \((\d+) x \d+ modules\) \|$",
    re.M,
)


def test_every_size_the_document_states_is_measured_again():
    rows = SIZE_ROW.findall(DOC)
    assert len(rows) >= 8
    key = private_key_from_seed(SEED)
    for serial, name, zones, window, size, chars, version, side in rows:
        text = encode_pass(
            key,
            PassContent(
                event="any-event",
                serial=int(serial),
                tier="any-tier",
                zones=tuple(f"z{i}" for i in range(int(zones))) or None,
                not_before=SHOW if window == "yes" else None,
                not_after=SHOW + timedelta(hours=1) if window == "yes" else None,
                holder="x" * int(name) or None,
            ),
        )
        code = qr_code(text)
        assert len(base45.b45decode(text[len(PASS_PREFIX):])) == int(size), serial
        assert len(text) == int(chars), serial
        assert (code.designator, code.symbol_size(border=0)[0]) == (version, int(side)), serial
    assert f"{MIN_PAYLOAD_BYTES} and {MAX_PAYLOAD_BYTES} bytes" in DOC
    assert f"{MAX_TEXT_CHARS} characters the longest text" in DOC


def test_the_documented_name_characters_are_exactly_the_ones_enforced():
    documented = [
        (int(a, 16), int(b, 16))
        for a, b in re.findall(r"^\| U\+([0-9A-F]{4}) \| U\+([0-9A-F]{4}) \|", DOC, re.M)
    ]
    assert tuple(documented) == HOLDER_RANGES


def test_the_quick_name_check_takes_exactly_the_characters_of_the_table():
    """Readers check a name with one regex match; every code point there is
    must get the table's own answer, or a name could slip past a reader."""
    from scanner.core.names import _HOLDER_TEXT, is_holder_char

    disagree = [
        cp
        for cp in range(0x110000)
        if (_HOLDER_TEXT.fullmatch(chr(cp)) is not None) != is_holder_char(chr(cp))
    ]
    assert disagree == []


def test_every_allowed_name_character_is_a_letter_but_the_listed_punctuation():
    punctuation = set(" &'()+,-./0123456789") | {"\u30fb"}
    for start, end in HOLDER_RANGES:
        for point in range(start, end + 1):
            ch = chr(point)
            if ch in punctuation:
                continue
            assert unicodedata.category(ch).startswith("L"), f"U+{point:04X}"
            assert unicodedata.normalize("NFC", ch) == ch, f"U+{point:04X}"
            assert holder_problem(ch) is None


@pytest.mark.parametrize(
    "name",
    ["O'Brien", "Anne-Marie Dupont", "José Müller", "Łukasz Żółć", "Nguyễn Văn An",
     "Дмитрий Шостакович", "Ολυμπία", "李小龙", "キャロル・ワン", "김민수", "Guest +1",
     "Dr. J. Smith (FOH)", "AC/DC & Co"],
)
def test_names_people_have_are_allowed(name, organizer_key):
    text = encode_pass(organizer_key, PassContent("e", 1, "aaa", holder=name))
    assert read_pass(text, [organizer_key.public_key()]).holder == name


@pytest.mark.parametrize(
    "name",
    ["bad\nname", "tab\there", "Jane\u200bDoe", "Jane\u202eeoD", "Jose\u0301", "Jane 😀",
     "<b>Jane</b>", "=cmd", "Jane@home", "\uff2a\uff41\uff4e\uff45", " Jane", "Jane ",
     "Jane  Doe", "", "Jane\u00a0Doe", "\ud800"],
)
def test_names_that_could_hide_or_fool_are_refused_at_issue(name, organizer_key):
    with pytest.raises(IssueError, match="name"):
        encode_pass(organizer_key, PassContent("e", 1, "aaa", holder=name))


def test_the_issuer_brings_typed_names_into_the_one_form(organizer_key, policy):
    assert normalize_holder("  Zoe\u0308   O\u2019Brien\n") == "Zoë O'Brien"
    issued = issue_pass(
        organizer_key, policy, tier="vip", serial=1, holder=" Zoe\u0308\tO\u2019Brien"
    )
    assert issued.content.holder == "Zoë O'Brien"


@pytest.mark.parametrize("vector", REJECTED, ids=lambda v: v["what"])
def test_a_reader_refuses_each_documented_rejected_pass(vector):
    key = private_key_from_seed(SEED)
    raw = base45.b45decode(vector["text"][len(PASS_PREFIX):])
    assert raw[:-64].hex() == vector["payload_hex"]
    with pytest.raises(PassFormatError) as err:
        read_pass(vector["text"], [key.public_key()])
    assert err.value.reason == vector["reason"]


def test_the_documented_rejections_cover_the_varint_and_name_rules():
    whats = " ".join(v["what"] for v in REJECTED)
    for rule in ("two bytes", "2^32", "holding", "space", "not-after", "after the last field"):
        assert rule in whats


def test_not_before_is_inclusive_and_not_after_exclusive(policy, make_pass):
    start, end = SHOW - timedelta(hours=1), SHOW + timedelta(hours=1)
    text = make_pass("aaa", 5, not_before=start, not_after=end)
    second = timedelta(seconds=1)
    assert decide(text, policy, GATE, start).granted
    assert decide(text, policy, GATE, start - second).reason is Reason.NOT_YET_VALID
    assert decide(text, policy, GATE, end - second).granted
    assert decide(text, policy, GATE, end).reason is Reason.EXPIRED


def test_zones_are_a_set_to_a_reader_and_canonical_from_the_issuer(
    organizer_key, policy, make_pass
):
    issued = make_pass("staff", 6, zones=("merch", "catering", "merch"))
    canonical = make_pass("staff", 6, zones=("catering", "merch"))
    at = SHOW - timedelta(hours=1)
    for zone in policy.zones:
        a = decide(issued, policy, Gate(zone=zone), at)
        b = decide(canonical, policy, Gate(zone=zone), at)
        assert (a.granted, a.reason) == (b.granted, b.reason), zone
    ordered = issue_pass(
        organizer_key, policy, tier="staff", serial=6, zones=["merch", "catering", "merch"]
    )
    assert ordered.content.zones == ("catering", "merch")  # the policy's order, once each
    # a tag no zone of the policy has opens nothing and is no error
    unknown = make_pass("staff", 7, zones=("catering", "no-such-zone"))
    assert decide(unknown, policy, Gate(zone="catering"), at).granted
    assert decide(unknown, policy, Gate(zone="merch"), at).reason is Reason.ZONE_NOT_ALLOWED


def test_serials_at_the_varint_boundaries_read_back(organizer_key):
    for serial in (0, 127, 128, 16383, 16384, 2097151, 2097152, 268435455, 268435456, 2**32 - 1):
        text = encode_pass(organizer_key, PassContent("e", serial, "aaa"))
        assert read_pass(text, [organizer_key.public_key()]).serial == serial
