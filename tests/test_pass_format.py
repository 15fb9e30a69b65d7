"""Pass format v1: the documented test vectors, sizes and character set, and
a strict parser that denies anything altered, truncated or made up."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import inspect
import json
import re
import unicodedata
from datetime import UTC, datetime, timedelta

import base45
import nacl.bindings
import pytest
from cryptography.exceptions import InvalidSignature
from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.core import passes
from scanner.core.decision import Direction, Gate, Reason, decide
from scanner.core.keys import (
    PUBLIC_KEY_PREFIX,
    SMALL_ORDER_Y,
    Ed25519PublicKey,
    key_id,
    parse_public_key,
    private_key_from_seed,
    public_key_text,
    sign,
    verify,
)
from scanner.core.names import HOLDER_RANGES, holder_problem, normalize_holder
from scanner.core.passes import (
    MAX_PAYLOAD_BYTES,
    MAX_TEXT_CHARS,
    MIN_PAYLOAD_BYTES,
    PASS_DOMAIN,
    PASS_PREFIX,
    PassContent,
    encode_pass,
    id_tag,
    read_pass,
)
from scanner.core.revocations import revocation_serials
from scanner.core.signed import open_document, sign_document
from scanner.errors import IssueError, KeyFileError, PassFormatError, PolicyError
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


def test_the_organizers_page_states_the_real_qr_version(make_pass):
    version = qr_code(make_pass("vip", 1042, holder="Jane Doe-Smithsonian")).designator
    assert f"version {version}" in (ROOT / "docs" / "organizer.md").read_text()


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


def test_a_window_after_2038_reads_back_as_written(organizer_key, make_pass):
    # times are unsigned 32-bit seconds (docs/pass-format.md): valid to 2106
    late = datetime(2040, 1, 1, tzinfo=UTC)
    signed = read_pass(make_pass("aaa", not_after=late), [organizer_key.public_key()])
    assert signed.not_after == late


def test_a_window_spans_exactly_the_unsigned_32_bit_seconds(organizer_key, make_pass):
    first, last = datetime(1970, 1, 1, tzinfo=UTC), datetime.fromtimestamp(0xFFFFFFFF, UTC)
    signed = read_pass(make_pass("aaa", not_before=first, not_after=last),
                       [organizer_key.public_key()])  # fmt: skip
    assert (signed.not_before, signed.not_after) == (first, last)
    with pytest.raises(IssueError, match=r"not-after 2106-02-07T06:28:16\+00:00 is out of range"):
        make_pass("aaa", not_after=last + timedelta(seconds=1))
    with pytest.raises(IssueError, match=r"^not-before needs a time zone offset$"):
        make_pass("aaa", not_before=datetime(2026, 12, 5, 18, 0))


def test_a_truncated_window_says_which_bound(organizer_key, make_pass):
    raw = base45.b45decode(
        make_pass("aaa", not_after=datetime(2026, 12, 6, tzinfo=UTC))[len(PASS_PREFIX) :]
    )
    text = _resign(organizer_key, raw[:-64][:-2])  # the last field is the window's end
    with pytest.raises(PassFormatError, match="truncated in its not-after"):
        read_pass(text, [organizer_key.public_key()])


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


@pytest.mark.parametrize("vector", REJECTED, ids=lambda v: v["name"])
def test_the_gate_refuses_each_rejected_vector_for_its_documented_reason(vector):
    raw_key = base64.b64decode(vector["public_key"][len(PUBLIC_KEY_PREFIX) :])
    if vector.get("key_refused"):
        # No policy, key file or roster takes this key; a reader handed it anyway
        # still refuses the pass, at the signature.
        with pytest.raises(KeyFileError, match="small order"):
            parse_public_key(vector["public_key"])
        key = Ed25519PublicKey.from_public_bytes(raw_key)
    else:
        key = parse_public_key(vector["public_key"])
    with pytest.raises(PassFormatError) as err:
        read_pass(vector["text"], [key])
    assert err.value.reason == vector["reason"]
    if "payload_hex" in vector:
        raw = base45.b45decode(vector["text"][len(PASS_PREFIX) :])
        assert raw[:-64].hex() == vector["payload_hex"]
        assert raw[-64:].hex() == vector.get("signature_hex", raw[-64:].hex())


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


# -- the vectors as data, and a reader built from the document alone ---------

VECTOR_DIR = ROOT / "tests" / "data" / "pass-vectors"
ACCEPTED = json.loads((VECTOR_DIR / "accept.json").read_text(encoding="utf-8"))
FLAT = " ".join(DOC.split())  # the document's prose without its line breaks


def _section(title: str) -> str:
    start = DOC.index(title)
    end = DOC.find("\n#", start + len(title))
    return DOC[start : end if end != -1 else None]


def _generator():
    spec = importlib.util.spec_from_file_location("pass_vectors", VECTOR_DIR / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_vector_files_hold_the_documents_vectors():
    assert json.loads((VECTOR_DIR / "reject.json").read_text(encoding="utf-8")) == REJECTED
    fields = [{k: v for k, v in a.items() if k not in ("name", "public_key")} for a in ACCEPTED]
    assert fields == VECTORS
    test_key = public_key_text(private_key_from_seed(SEED).public_key())
    assert {a["public_key"] for a in ACCEPTED} == {test_key}


def test_the_vector_files_are_made_again_byte_for_byte():
    generator = _generator()
    assert generator.SEED == SEED
    for name, vectors in (("accept", generator.accept_vectors()),
                          ("reject", generator.reject_vectors())):  # fmt: skip
        assert generator.dumps(vectors) == (VECTOR_DIR / f"{name}.json").read_text("utf-8")


# Only what the document states: its numbers, its list of small-order points,
# its domain, and RFC 8032 as OpenSSL implements it for the equation.
BASE45_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
DOC_MAX_CHARS = int(re.search(r"longer than (\d+) characters", FLAT).group(1))
DOC_MIN_BYTES, DOC_MAX_BYTES = map(
    int, re.search(r"outside (\d+)\.\.(\d+) bytes", FLAT).groups()
)
DOC_L = 2**252 + int(re.search(r"L = 2\^252 \+ (\d+)", FLAT).group(1))
DOC_P = 2**255 - 19
DOC_DOMAIN = re.search(r'`"(backstage-scanner/pass/v1)" \|\| 0x00', FLAT).group(1).encode() + b"\0"
DOC_SMALL_ORDER = {bytes.fromhex(h) for h in re.findall(r"^\* `([0-9a-f]{64})`", DOC, re.M)}


def _rfc9285(text: str) -> bytes | None:
    values = [BASE45_ALPHABET.index(c) for c in text]
    if len(values) % 3 == 1:
        return None
    out = bytearray()
    for i in range(0, len(values), 3):
        group = values[i : i + 3]
        n = sum(v * 45**j for j, v in enumerate(group))
        if n > (0xFFFF if len(group) == 3 else 0xFF):
            return None
        out += n.to_bytes(len(group) - 1, "big")
    return bytes(out)


def _cleared(point: bytes) -> bytes:
    return point[:31] + bytes([point[31] & 0x7F])


def _document_key_problem(raw: bytes) -> str | None:
    if _cleared(raw) in DOC_SMALL_ORDER:
        return "small order"
    if int.from_bytes(_cleared(raw), "little") >= DOC_P:
        return "not canonical"
    return None


def _document_reader(text: str, key: bytes) -> str | None:
    """Reading steps 1 to 4 as the document writes them: the reason, or None
    when the signature holds and the fields come next."""
    if len(text) > DOC_MAX_CHARS or not text.startswith("BP1:"):
        return "malformed"
    body = text[len("BP1:") :]
    if any(c not in BASE45_ALPHABET for c in body):
        return "malformed"
    data = _rfc9285(body)
    if data is None or not DOC_MIN_BYTES <= len(data) <= DOC_MAX_BYTES or data[0] != 1:
        return "malformed"
    if data[2:6] != hashlib.sha256(key).digest()[:4]:
        return "unknown_key"
    payload, r, s = data[:-64], data[-64:-32], data[-32:]
    if int.from_bytes(s, "little") >= DOC_L or _cleared(r) in DOC_SMALL_ORDER:
        return "bad_signature"
    if _document_key_problem(key) is not None:
        return "bad_signature"
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(r + s, DOC_DOMAIN + payload)
    except InvalidSignature:
        return "bad_signature"
    return None


FIELD_VECTORS = set(re.findall(r'"name": "([a-z0-9-]+)"', _section("### The fields")))


@pytest.mark.parametrize("vector", REJECTED, ids=lambda v: v["name"])
def test_a_reader_built_from_the_document_refuses_each_rejected_vector(vector):
    key = base64.b64decode(vector["public_key"][len(PUBLIC_KEY_PREFIX) :])
    if vector.get("key_refused"):
        assert _document_key_problem(key) == "small order"
    expected = None if vector["name"] in FIELD_VECTORS else vector["reason"]
    assert _document_reader(vector["text"], key) == expected
    if expected is None:  # validly signed: the gate refuses it for a field
        assert vector["reason"] == "malformed"


@pytest.mark.parametrize("vector", ACCEPTED, ids=lambda v: v["name"])
def test_each_accepted_vector_reads_back_through_the_gate_and_the_document(vector):
    key = parse_public_key(vector["public_key"])
    assert read_pass(vector["text"], [key]).serial == vector["serial"]
    assert _document_reader(vector["text"], key.public_bytes_raw()) is None


SIGNATURE_VECTORS = [v for v in REJECTED if "openssl_accepts" in v]


@pytest.mark.parametrize("vector", SIGNATURE_VECTORS, ids=lambda v: v["name"])
def test_openssl_says_what_the_vector_says_and_the_gate_refuses(vector):
    raw = base45.b45decode(vector["text"][len(PASS_PREFIX) :])
    key = Ed25519PublicKey.from_public_bytes(
        base64.b64decode(vector["public_key"][len(PUBLIC_KEY_PREFIX) :])
    )
    try:
        key.verify(raw[-64:], PASS_DOMAIN + raw[:-64])  # OpenSSL, RFC 8032 alone
        accepted = True
    except InvalidSignature:
        accepted = False
    assert accepted is vector["openssl_accepts"]
    assert not verify(key, PASS_DOMAIN, raw[:-64], raw[-64:])  # the gate's libsodium


def test_a_plain_rfc_8032_verifier_takes_two_passes_that_the_gate_refuses():
    """Why the document's extra rules exist: without them a reader agrees
    with OpenSSL, not with the gate."""
    taken = {v["name"] for v in SIGNATURE_VECTORS if v["openssl_accepts"]}
    assert taken == {"small-order-r", "small-order-key"}


def test_a_cofactored_verifier_would_take_the_mixed_order_vector():
    vector = next(v for v in REJECTED if v["name"] == "mixed-order-r")
    raw = base45.b45decode(vector["text"][len(PASS_PREFIX) :])
    payload, r, s = raw[:-64], raw[-64:-32], raw[-32:]
    a = base64.b64decode(vector["public_key"][len(PUBLIC_KEY_PREFIX) :])
    k = int.from_bytes(hashlib.sha512(r + a + PASS_DOMAIN + payload).digest(), "little") % DOC_L
    sb = nacl.bindings.crypto_scalarmult_ed25519_base_noclamp(s)
    ka = nacl.bindings.crypto_scalarmult_ed25519_noclamp(k.to_bytes(32, "little"), a)

    def times_8(point: bytes) -> bytes:
        for _ in range(3):
            point = nacl.bindings.crypto_core_ed25519_add(point, point)
        return point

    assert times_8(sb) == times_8(nacl.bindings.crypto_core_ed25519_add(r, ka))
    assert nacl.bindings.crypto_core_ed25519_sub(sb, ka) != r  # without the cofactor: no


def test_the_documented_small_order_encodings_are_the_ones_the_gate_refuses():
    assert {y.to_bytes(32, "little") for y in SMALL_ORDER_Y} == DOC_SMALL_ORDER
    for raw in DOC_SMALL_ORDER:
        for top in (0, 0x80):
            point = raw[:31] + bytes([raw[31] | top])
            with pytest.raises(KeyFileError):
                parse_public_key(PUBLIC_KEY_PREFIX + base64.b64encode(point).decode())


# -- the text form: exactly the characters of the code ------------------------


@pytest.mark.parametrize(
    "change",
    [lambda t: t + "\n", lambda t: t + "\r\n", lambda t: "\n" + t, lambda t: t + " ",
     lambda t: " " + t, lambda t: t + "\t", lambda t: "bp1:" + t[4:], lambda t: "Bp1:" + t[4:]],
    ids=["line-feed-after", "crlf-after", "line-feed-before", "space-after", "space-before",
         "tab-after", "lower-case-prefix", "mixed-case-prefix"],
)  # fmt: skip
def test_nothing_around_a_pass_text_is_tolerated(change, organizer_key, make_pass):
    for holder in ("Al", "Ali"):  # both parities of the Base45 text
        text = make_pass("aaa", 14, holder=holder)
        assert read_pass(text, [organizer_key.public_key()]).serial == 14
        with pytest.raises(PassFormatError) as err:
            read_pass(change(text), [organizer_key.public_key()])
        assert err.value.reason == "malformed"


def test_the_base45_library_drops_a_trailing_line_feed_so_the_reader_checks_first(make_pass):
    for holder in ("Al", "Ali"):
        body = make_pass("aaa", 14, holder=holder)[len(PASS_PREFIX) :]
        assert base45.b45decode(body + "\n") == base45.b45decode(body)
        with pytest.raises(ValueError):  # a trailing space never decodes
            base45.b45decode(body + " ")


# -- the rest of the contract, checked against the code -----------------------


def test_the_document_lists_every_reason_code_and_no_other():
    section = _section("## The decision: reason codes and their order")
    codes = set(re.findall(r"^\| (?:\d+ \| )?`([a-z_]+)` \|", section, re.M))
    assert codes == {reason.value for reason in Reason}


def test_the_reading_steps_give_exactly_the_reasons_the_parser_raises():
    section = _section("## The decision: reason codes and their order")
    steps = re.findall(r"^\| ([1-5]) \| `([a-z_]+)` \|", section, re.M)
    assert [int(step) for step, _ in steps] == [1, 2, 3, 4, 5]
    raised = set(re.findall(r'PassFormatError\(\s*"([a-z_]+)"', inspect.getsource(passes)))
    assert {code for _, code in steps} == raised


def test_an_exit_still_refuses_an_unknown_tier_and_another_event(policy, make_pass):
    way_out = Gate(zone="backstage", direction=Direction.EXIT)
    assert decide(make_pass("aaa", 9), policy, way_out, SHOW).granted
    expired = make_pass("aaa", 10, not_after=SHOW - timedelta(hours=1))
    assert decide(expired, policy, way_out, SHOW).granted
    stranger = decide(make_pass("no-such-tier", 11), policy, way_out, SHOW)
    assert stranger.reason is Reason.UNKNOWN_TIER
    elsewhere = decide(make_pass("aaa", 12, event="other-fest"), policy, way_out, SHOW)
    assert elsewhere.reason is Reason.WRONG_EVENT


def test_ids_are_hashed_as_written_so_case_makes_another_tier(policy, make_pass):
    assert id_tag("VIP", 2) != id_tag("vip", 2)
    assert decide(make_pass("VIP", 13), policy, GATE, SHOW).reason is Reason.UNKNOWN_TIER


def _measure(serial: int, holder: str, **window: datetime) -> tuple[int, str]:
    text = encode_pass(
        private_key_from_seed(SEED),
        PassContent("example-fest-2026", serial, "vip", holder=holder, **window),
    )
    return len(base45.b45decode(text[len(PASS_PREFIX) :])), qr_code(text).designator


def test_one_bound_of_the_window_takes_four_bytes():
    name = "Jane Doe-Smithsonian"
    none = _measure(1042, name)
    after = _measure(1042, name, not_after=SHOW)
    before = _measure(1042, name, not_before=SHOW)
    both = _measure(1042, name, not_before=SHOW, not_after=SHOW + timedelta(hours=1))
    assert after[0] == before[0] == none[0] + 4 and both[0] == none[0] + 8
    assert f"only a not-after makes **{after[0]} bytes, {after[1]}**" in FLAT
    assert f"both bounds {both[0]} bytes, {both[1]}" in FLAT


def test_a_twenty_character_greek_name_is_39_bytes_and_needs_version_8():
    greek = re.search(r"A 20-character Greek name such as `([^`]+)`", FLAT).group(1)
    assert len(greek) == 20 and len(greek.encode()) == 39
    size, version = _measure(1042, greek)
    assert version == "8-M"
    assert f"is **39 bytes and makes the pass {version}** (serial 1042: {size} bytes)" in FLAT
    for cyrillic in ("Александра Петровски", "АлександраПетровская"):  # 39 and 40 bytes
        assert len(cyrillic) == 20 and _measure(1042, cyrillic)[1] == version
    organizer = " ".join((ROOT / "docs" / "organizer.md").read_text().split())
    assert f"Greek or Cyrillic name is 39-40 bytes and needs {version}" in organizer


def test_the_documented_revocation_list_opens_with_the_test_key():
    block = re.search(r"```json-signed\n(.*?)\n```", DOC, re.S).group(1)
    key = private_key_from_seed(SEED)
    document = open_document(block.encode(), kind="revocations", trusted=[key.public_key()])
    assert revocation_serials(document.body, "example-fest-2026") == {17, 42}
    at = datetime(2026, 12, 5, 16, tzinfo=UTC)
    body = {"event": "example-fest-2026", "serials": [17, 42]}
    assert sign_document(key, "revocations", body, at).decode() == block + "\n"


def test_the_policy_refuses_two_pass_signers_that_share_a_key_tag(organizer_key, monkeypatch):
    from scanner.core import policy as policy_module
    from scanner.core.policy import open_policy, sign_policy

    from .conftest import EXAMPLE_POLICY, SIGNED_AT

    other = private_key_from_seed(bytes(range(1, 33)))
    signers = [public_key_text(k.public_key()) for k in (organizer_key, other)]
    text = EXAMPLE_POLICY.read_text() + f"\n[keys]\npass_signers = {json.dumps(signers)}\n"
    monkeypatch.setattr(policy_module, "key_tag", lambda key: b"same")  # a 1 in 2^32 chance
    with pytest.raises(PolicyError, match="share a key tag"):
        open_policy(sign_policy(text, organizer_key, SIGNED_AT), [organizer_key.public_key()])
    assert "two keys share a key tag" in FLAT
