"""Keys and the signed envelope: the properties every signature in the
project relies on."""

from __future__ import annotations

import base64
import json
import os

import nacl.bindings
import pytest
from click.testing import CliRunner

from scanner.cli import cli
from scanner.core.keys import (
    SMALL_ORDER_Y,
    Ed25519PublicKey,
    key_id,
    parse_public_key,
    private_key_from_seed,
    public_key_text,
)
from scanner.core.policy import open_policy, sign_policy
from scanner.core.signed import open_document, sign_document
from scanner.core.trust import extend_chain, replay_chain
from scanner.errors import KeyFileError, PolicyError, SignatureError
from scanner.keyfiles import load_private_key, load_public_key, write_key_pair

from .conftest import EXAMPLE_POLICY, SIGNED_AT

KEY = private_key_from_seed(bytes(range(32)))


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_a_private_key_that_others_may_read_is_refused(tmp_path, mode):
    paths = write_key_pair(tmp_path, "organizer", key=KEY)
    os.chmod(paths.private, mode)
    with pytest.raises(KeyFileError, match="readable by others"):
        load_private_key(paths.private)
    os.chmod(paths.private, 0o600)
    assert load_private_key(paths.private)


def test_a_signature_made_for_one_kind_never_verifies_as_another():
    # the same body signed as revocations must not open as a trust update
    data = sign_document(KEY, "revocations", {"keys": [], "serials": []}, SIGNED_AT)
    envelope = json.loads(data)
    envelope["kind"] = "trust"
    inner = json.loads(envelope["signed"])
    inner["kind"] = "trust"
    envelope["signed"] = json.dumps(inner, sort_keys=True, separators=(",", ":"))
    with pytest.raises(SignatureError, match="does not match"):
        open_document(json.dumps(envelope).encode(), kind="trust", trusted=[KEY.public_key()])
    with pytest.raises(SignatureError, match="not a 'trust'"):
        open_document(data, kind="trust", trusted=[KEY.public_key()])


def test_a_document_signed_by_a_stranger_claiming_a_trusted_key_id_is_refused():
    stranger = private_key_from_seed(bytes(range(1, 33)))
    data = sign_document(stranger, "revocations", {"event": "a", "serials": []}, SIGNED_AT)
    envelope = json.loads(data)
    envelope["key_id"] = key_id(KEY)  # claims to be the organizer
    with pytest.raises(SignatureError, match="does not match"):
        open_document(json.dumps(envelope).encode(), kind="revocations",
                      trusted=[KEY.public_key()])


# -- passphrases -------------------------------------------------------------


def test_a_long_passphrase_is_judged_by_what_it_says_not_by_its_length():
    """The estimator reads 72 characters; a longer passphrase is at least as
    hard to guess as its start, and 100 repeated letters are still a repeat."""
    from scanner.keyfiles import check_passphrase

    check_passphrase(None)  # no passphrase: nothing to judge
    check_passphrase("correct horse battery staple ocean " * 4)
    with pytest.raises(KeyFileError, match='Repeats like "aaa"'):
        check_passphrase("a" * 100)


def test_no_program_the_scanner_starts_sees_the_keys_passphrase(tmp_path, monkeypatch):
    """mount, sync and umount for a stick, systemctl for the sandbox: each is
    given the environment without SCANNER_KEY_PASSPHRASE, and the rest of it."""
    from scanner.gate.sandbox import daemon_reload
    from scanner.keyfiles import PASSPHRASE_ENV, child_environment
    from scanner.transfer.usb import _run

    monkeypatch.setenv(PASSPHRASE_ENV, "correct horse battery staple ocean")
    monkeypatch.setenv("SCANNER_KEPT", "kept")
    assert PASSPHRASE_ENV not in child_environment()
    # each program fails if it sees the passphrase or misses the rest
    check = f'test -z "${{{PASSPHRASE_ENV}+set}}" && test "$SCANNER_KEPT" = kept'
    _run("sh", "-c", check)  # raises TransferError if sh exits non-zero
    systemctl = tmp_path / "systemctl"
    systemctl.write_text(f"#!/bin/sh\n{check}\n")
    systemctl.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    daemon_reload()  # raises CalledProcessError if the stand-in exits non-zero


# -- what a public key may be ---------------------------------------------------

P = 2**255 - 19
ORDER_8 = bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05")
IDENTITY = (1).to_bytes(32, "little")
SMALL_ORDER_KEY = "ed25519:" + base64.b64encode(IDENTITY).decode()


def _text(raw: bytes) -> str:
    return "ed25519:" + base64.b64encode(raw).decode()


def _y(value: int, *, sign: int = 0) -> bytes:
    return (value | sign << 255).to_bytes(32, "little")


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (IDENTITY, "small order"),  # the identity point: every S with R = [S]B verifies
        (bytes(32), "small order"),  # y = 0, order 4
        (ORDER_8, "small order"),
        (_y(P - 1), "small order"),  # order 2
        (_y(1, sign=1), "small order"),  # x = 0 with the sign bit set: not canonical either
        (_y(P - 1, sign=1), "small order"),
        (_y(P + 1), "small order"),  # 1 written at or above p
        (_y(P + 3), "not canonical"),  # 3 written at or above p
        (_y(2), "not a point of the Ed25519 group"),  # off the curve
        (
            nacl.bindings.crypto_core_ed25519_add(KEY.public_key().public_bytes_raw(), ORDER_8),
            "not a point of the Ed25519 group",  # a genuine key plus a point of order 8
        ),
    ],
    ids=["identity", "order-4", "order-8", "order-2", "x0-sign", "order-2-sign",
         "p-plus-1", "p-plus-3", "off-curve", "mixed-order"],
)  # fmt: skip
def test_a_key_that_is_not_a_point_of_the_prime_order_group_is_refused(raw, why):
    with pytest.raises(KeyFileError, match=why):
        parse_public_key(_text(raw))


def test_a_genuine_key_reads_back_from_its_one_text_form():
    text = public_key_text(KEY.public_key())
    assert parse_public_key(text).public_bytes_raw() == KEY.public_key().public_bytes_raw()
    stray = text[:-2] + chr(ord(text[-2]) + 1) + "="  # the same 32 bytes, other spare bits
    assert base64.b64decode(stray[8:]) == base64.b64decode(text[8:])
    with pytest.raises(KeyFileError, match="one base64 form"):
        parse_public_key(stray)
    with pytest.raises(KeyFileError, match="starts with"):
        parse_public_key(text.upper())


def test_the_small_order_encodings_named_for_messages_are_of_small_order():
    for y in SMALL_ORDER_Y:
        for sign in (0, 1):
            point = _y(y, sign=sign)
            for _ in range(3):  # [8]P: the identity point for every point of small order
                point = nacl.bindings.crypto_core_ed25519_add(point, point)
            assert point == IDENTITY, hex(y)


def test_policy_sign_refuses_a_small_order_pass_signer(tmp_path):
    """With the identity point as a pass signer, a reader that follows RFC 8032
    alone would take R = B, S = 1 as a signature on any pass."""
    paths = write_key_pair(tmp_path, "organizer", key=KEY)
    toml = tmp_path / "event.toml"
    signers = f'\n[keys]\npass_signers = ["{SMALL_ORDER_KEY}"]\n'
    toml.write_text(EXAMPLE_POLICY.read_text() + signers)
    result = CliRunner().invoke(
        cli, ["policy", "sign", str(toml), "--key", str(paths.private), "-o",
              str(tmp_path / "event.policy")],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "keys.pass_signers[0]" in result.output and "small order" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "event.policy").exists()


def test_every_reader_of_keys_refuses_a_small_order_key(tmp_path):
    """A .pub file, a roster, the key chain and a document's own key: each
    reader of keys goes through parse_public_key and refuses it."""
    pub = tmp_path / "stranger.pub"
    pub.write_text(SMALL_ORDER_KEY + " 0000000000000000 stranger\n")
    with pytest.raises(KeyFileError, match="small order"):
        load_public_key(pub)

    roster = (
        EXAMPLE_POLICY.read_text()
        + '\n[gates.artist-in]\ndoor = "artist-entrance"\ndirection = "entry"\n'
        f'device_key = "{SMALL_ORDER_KEY}"\n'
    )
    with pytest.raises(PolicyError, match=r"gates\.artist-in\.device_key: .*small order"):
        open_policy(sign_policy(roster, KEY, SIGNED_AT), [KEY.public_key()])

    chain, _ = extend_chain(
        None, KEY, [Ed25519PublicKey.from_public_bytes(IDENTITY)], SIGNED_AT
    )
    replay = replay_chain(chain, {key_id(KEY): KEY.public_key()})
    assert replay.problem is not None and "small order" in replay.problem
    assert not replay.links  # the key chain stops before the link that names it

    envelope = json.loads(sign_document(KEY, "revocations", {"event": "a"}, SIGNED_AT))
    envelope["public_key"] = SMALL_ORDER_KEY
    with pytest.raises(SignatureError, match="small order"):
        open_document(json.dumps(envelope).encode(), kind="revocations", trusted=None)


def test_a_seed_of_the_wrong_length_is_refused_saying_how_long_it_must_be():
    with pytest.raises(KeyFileError, match="an Ed25519 seed is 32 bytes, not 31"):
        private_key_from_seed(bytes(31))


def _one_link_chain(body):
    envelope = json.loads(sign_document(KEY, "trust", body, SIGNED_AT))
    return json.dumps({"format": "backstage-trust-chain-v1", "links": [envelope]}).encode()


def test_a_key_update_lists_at_most_sixteen_keys_and_counts_from_one():
    keys = [public_key_text(private_key_from_seed(bytes([n] * 32)).public_key()) for n in range(17)]
    anchors = {key_id(KEY): KEY.public_key()}
    sixteen = replay_chain(_one_link_chain({"sequence": 1, "previous": None, "keys": keys[:16]}),
                           anchors)  # fmt: skip
    assert sixteen.problem is None and len(sixteen.keys) == 16
    seventeen = replay_chain(_one_link_chain({"sequence": 1, "previous": None, "keys": keys}),
                             anchors)  # fmt: skip
    assert seventeen.problem == "key update 1: it lists 17 keys; at most 16"
    # a number that is true, not 1: JSON's booleans are never sequence numbers
    truthy = replay_chain(_one_link_chain({"sequence": True, "previous": None, "keys": keys[:1]}),
                          anchors)  # fmt: skip
    assert truthy.problem == "key update 1: it says it is key update True, but stands at 1"
    assert not truthy.links
    nobody = replay_chain(_one_link_chain({"sequence": 1, "previous": None, "keys": []}), anchors)
    assert nobody.problem == "key update 1: it does not list the keys to trust"
    # a link that says it is another update, or carries more than an update does
    second = replay_chain(_one_link_chain({"sequence": 2, "previous": None, "keys": keys[:1]}),
                          anchors)  # fmt: skip
    assert second.problem == "key update 1: it says it is key update 2, but stands at 1"
    more = {"sequence": 1, "previous": None, "keys": keys[:1], "expires": "never"}
    assert replay_chain(_one_link_chain(more), anchors).problem == (
        "key update 1: its body is not a key update (sequence, previous, keys)"
    )
