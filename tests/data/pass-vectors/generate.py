#!/usr/bin/env python3
"""Write the test vectors of docs/pass-format.md as data: accept.json and
reject.json, beside this file.

    .venv/bin/python tests/data/pass-vectors/generate.py            # write both files
    .venv/bin/python tests/data/pass-vectors/generate.py --markdown # print the document's blocks

Everything comes from the document's test key and fixed inputs, so every run
writes the same bytes; tests/test_pass_format.py makes the vectors again and
compares. Genuine signatures come from the issuer's own code (Ed25519 is
deterministic). The signatures no honest issuer makes (an R of small order, S
+ L, an R with a small-order part, a key of small order) are built here from
the formulas of RFC 8032, with libsodium doing the point arithmetic.
"""

from __future__ import annotations

import hashlib
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent.parent))

import base45  # noqa: E402
import nacl.bindings  # noqa: E402

from scanner.core.keys import (  # noqa: E402
    Ed25519PublicKey,
    private_key_from_seed,
    public_key_text,
    sign,
)
from scanner.core.passes import PASS_DOMAIN, PASS_PREFIX, PassContent, encode_pass  # noqa: E402

SEED = bytes(range(32))  # the document's test key; never for a real event
L = 2**252 + 27742317777372353535851937790883648493  # the order of the base point
BASE_POINT = bytes.fromhex("58" + "66" * 31)
IDENTITY = (1).to_bytes(32, "little")  # the neutral point: order 1
ORDER_8 = bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05")
STRANGER_SEED = bytes(range(32, 64))

ACCEPT: list[dict[str, Any]] = [
    {"name": "minimal", "event": "example-fest-2026", "serial": 1, "tier": "aaa"},
    {
        "name": "typical",
        "event": "example-fest-2026",
        "serial": 1042,
        "tier": "vip",
        "holder": "Jane Doe-Smithsonian",
    },
    {
        "name": "everything",
        "event": "example-fest-2026",
        "serial": 70000,
        "tier": "staff",
        "zones": ["catering", "merch"],
        "not_before": "2026-12-05T07:00:00Z",
        "not_after": "2026-12-06T00:00:00Z",
        "holder": "Zoë Ångström",
    },
]

# Payloads that are validly signed and wrong in a field (step 5 of the reading rules).
SIGNED_MALFORMED = [
    ("serial-not-minimal", "a serial of 1 written in two bytes (81 00)",
     "010056475aa7158c162a81009834"),
    ("serial-too-large", "a serial of 2^32 (80 80 80 80 10)",
     "010056475aa7158c162a80808080109834"),
    ("holder-character", "a holder name holding '<'",
     "010856475aa7158c162a01983403413c42"),
    ("holder-trailing-space", "a holder name ending in a space",
     "010856475aa7158c162a01983404416e6e20"),
    ("window-empty", "not-after equal to not-before",
     "010656475aa7158c162a0198346b13a8606b13a860"),
    ("trailing-byte", "one byte after the last field",
     "010056475aa7158c162a01983400"),
]  # fmt: skip


def _content(vector: dict[str, Any]) -> PassContent:
    def when(field: str) -> datetime | None:
        return datetime.fromisoformat(vector[field]) if field in vector else None

    return PassContent(
        event=vector["event"],
        serial=vector["serial"],
        tier=vector["tier"],
        zones=tuple(vector["zones"]) if "zones" in vector else None,
        not_before=when("not_before"),
        not_after=when("not_after"),
        holder=vector.get("holder"),
    )


def _text(data: bytes) -> str:
    return PASS_PREFIX + base45.b45encode(data).decode("ascii")


def _scalar(data: bytes) -> int:
    return int.from_bytes(data, "little") % L


def _secret() -> tuple[int, bytes, bytes]:
    """The test key's secret scalar a, the prefix of its nonces, and A."""
    digest = hashlib.sha512(SEED).digest()
    a = int.from_bytes(digest[:32], "little")
    a &= (1 << 254) - 8  # RFC 8032 5.1.5: clear the low 3 bits and bit 255
    a |= 1 << 254
    public = private_key_from_seed(SEED).public_key().public_bytes_raw()
    return a, digest[32:], public


def _challenge(r: bytes, public: bytes, payload: bytes) -> int:
    return _scalar(hashlib.sha512(r + public + PASS_DOMAIN + payload).digest())


def accept_vectors() -> list[dict[str, Any]]:
    key = private_key_from_seed(SEED)
    public = public_key_text(key.public_key())
    out = []
    for vector in ACCEPT:
        text = encode_pass(key, _content(vector))
        raw = base45.b45decode(text[len(PASS_PREFIX) :])
        fields = {k: v for k, v in vector.items() if k != "name"}
        out.append(
            {
                "name": vector["name"],
                "public_key": public,
                **fields,
                "payload_hex": raw[:-64].hex(),
                "signature_hex": raw[-64:].hex(),
                "text": text,
            }
        )
    return out


def reject_vectors() -> list[dict[str, Any]]:
    key = private_key_from_seed(SEED)
    public = public_key_text(key.public_key())
    a, nonce_prefix, a_point = _secret()
    minimal = accept_vectors()[0]
    payload = bytes.fromhex(minimal["payload_hex"])
    signature = bytes.fromhex(minimal["signature_hex"])
    out: list[dict[str, Any]] = []

    def add(name: str, what: str, text: str, reason: str, **extra: Any) -> None:
        out.append({"name": name, "what": what, "public_key": extra.pop("public_key", public),
                    "text": text, "reason": reason, **extra})  # fmt: skip

    # The text form: exactly the characters of the code, nothing trimmed or folded.
    add("trailing-newline", "vector 1 with a line feed after it", minimal["text"] + "\n",
        "malformed")  # fmt: skip
    add("trailing-space", "vector 1 with a space after it", minimal["text"] + " ", "malformed")
    add("leading-space", "vector 1 with a space before it", " " + minimal["text"], "malformed")
    add("lower-case-prefix", "vector 1 with its prefix in lower case",
        "bp1:" + minimal["text"][len(PASS_PREFIX) :], "malformed")  # fmt: skip

    # The key: found by its tag only.
    stranger = public_key_text(private_key_from_seed(STRANGER_SEED).public_key())
    add("untrusted-key", "vector 1, read by a reader that trusts another key only",
        minimal["text"], "unknown_key", public_key=stranger)  # fmt: skip

    # The signature: what libsodium refuses beyond a plain RFC 8032 check.
    r = IDENTITY  # [S]B - [k]A can be of small order only when it is the identity
    s = _challenge(r, a_point, payload) * a % L
    add("small-order-r", "vector 1 signed by the test key with R the identity point "
        "(a nonce of 0): S = k * a mod L", _text(payload + r + s.to_bytes(32, "little")),
        "bad_signature", payload_hex=payload.hex(),
        signature_hex=(r + s.to_bytes(32, "little")).hex(), openssl_accepts=True)  # fmt: skip

    s = _scalar(signature[32:]) + L
    twin = signature[:32] + s.to_bytes(32, "little")
    add("non-canonical-s", "vector 1 with S replaced by S + L", _text(payload + twin),
        "bad_signature", payload_hex=payload.hex(), signature_hex=twin.hex(),
        openssl_accepts=False)  # fmt: skip

    nonce = _scalar(hashlib.sha512(nonce_prefix + PASS_DOMAIN + payload).digest())
    r_point = nacl.bindings.crypto_scalarmult_ed25519_base_noclamp(nonce.to_bytes(32, "little"))
    r = nacl.bindings.crypto_core_ed25519_add(r_point, ORDER_8)
    s = (nonce + _challenge(r, a_point, payload) * a) % L
    mixed = r + s.to_bytes(32, "little")
    add("mixed-order-r", "vector 1 signed by the test key with R = rB + T, T of order 8: "
        "only a cofactored check ([8][S]B = [8]R + [8][k]A) accepts it",
        _text(payload + mixed), "bad_signature", payload_hex=payload.hex(),
        signature_hex=mixed.hex(), openssl_accepts=False)  # fmt: skip

    # Under the identity as the key, [S]B - [k]A is [S]B for any message: a
    # signature needs no secret at all.
    tagged = payload[:2] + hashlib.sha256(IDENTITY).digest()[:4] + payload[6:]
    forged = BASE_POINT + (1).to_bytes(32, "little")
    add("small-order-key", "vector 1's fields under the identity point as the key, "
        "signed without any secret: R = B, S = 1", _text(tagged + forged), "bad_signature",
        public_key=public_key_text(Ed25519PublicKey.from_public_bytes(IDENTITY)),
        payload_hex=tagged.hex(), signature_hex=forged.hex(), openssl_accepts=True,
        key_refused=True)  # fmt: skip

    # Validly signed, wrong in a field.
    for name, what, payload_hex in SIGNED_MALFORMED:
        body = bytes.fromhex(payload_hex)
        add(name, what, _text(body + sign(key, PASS_DOMAIN, body)), "malformed",
            payload_hex=payload_hex)  # fmt: skip
    return out


def dumps(vectors: list[dict[str, Any]]) -> str:
    return json.dumps(vectors, indent=2, ensure_ascii=False) + "\n"


def markdown() -> str:
    blocks = [f"```json-reject\n{json.dumps(v, indent=2, ensure_ascii=False)}\n```"
              for v in reject_vectors()]  # fmt: skip
    return "\n\n".join(blocks) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] == ["--markdown"]:
        print(markdown(), end="")
    else:
        (HERE / "accept.json").write_text(dumps(accept_vectors()), encoding="utf-8")
        (HERE / "reject.json").write_text(dumps(reject_vectors()), encoding="utf-8")
