"""Keys and the signed envelope: the properties every signature in the
project relies on."""

from __future__ import annotations

import json
import os

import pytest

from scanner.core.keys import private_key_from_seed
from scanner.core.signed import open_document, sign_document
from scanner.errors import KeyFileError, SignatureError
from scanner.keyfiles import load_private_key, write_key_pair

from .conftest import SIGNED_AT

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
    from scanner.core.keys import key_id

    stranger = private_key_from_seed(bytes(range(1, 33)))
    data = sign_document(stranger, "revocations", {"event": "a", "serials": []}, SIGNED_AT)
    envelope = json.loads(data)
    envelope["key_id"] = key_id(KEY)  # claims to be the organizer
    with pytest.raises(SignatureError, match="does not match"):
        open_document(json.dumps(envelope).encode(), kind="revocations",
                      trusted=[KEY.public_key()])
