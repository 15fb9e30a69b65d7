"""The key chain: organizer key rotation that moves forward only.

A gate's image holds the organizer keys it starts with (its *anchors*). Every
key rotation since then is one *link*: a signed document of kind ``trust``
whose body names the keys to trust from then on, its place in the chain
(``sequence``, 1 for the first) and the digest of the link before it
(``previous``). A link counts only if it is signed by a key trusted at that
moment: the anchors for link 1, the keys of link *n* for link *n* + 1. A link
signed by a key it lists itself proves nothing and is not applied.

The chain travels as one file (``trust.signed``) holding every link in order,
so a gate that missed a rotation catches up from any later stick::

    {"format": "backstage-trust-chain-v1",
     "links": [<signed envelope 1>, <signed envelope 2>, ...]}

Replaying stops at the first link that does not verify; what came before
stands. Forward-only is the caller's half: a gate remembers how far it has
come (the sequence and digest of its newest link, kept apart from this file)
and refuses a chain that ends below that, or that differs at that link (a
fork made with a retired key). No I/O here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..errors import KeyFileError, MalformedError, SignatureError
from .keys import Ed25519PrivateKey, Ed25519PublicKey, key_id, parse_public_key, public_key_text
from .signed import open_document, sign_document
from .untrusted import parse_json

__all__ = [
    "CHAIN_FORMAT",
    "MAX_CHAIN_BYTES",
    "MAX_LINKS",
    "MAX_LINK_KEYS",
    "TRUST_KIND",
    "ChainReplay",
    "TrustLink",
    "extend_chain",
    "replay_chain",
]

TRUST_KIND = "trust"
CHAIN_FORMAT = "backstage-trust-chain-v1"
MAX_LINKS = 256  # about 400 KiB of chain; rebuild the image with current keys long before
MAX_LINK_KEYS = 16
MAX_CHAIN_BYTES = 1024 * 1024


@dataclass(frozen=True)
class TrustLink:
    """One verified key rotation."""

    sequence: int
    keys: Mapping[str, Ed25519PublicKey]
    signer: str  # key id
    signed_at: datetime
    digest: str  # SHA-256 of the signed bytes, hex: what the next link and the gate refer to


@dataclass(frozen=True)
class ChainReplay:
    """What a chain establishes, replayed from the anchors."""

    keys: Mapping[str, Ed25519PublicKey]  # trusted after the last link that verified
    links: tuple[TrustLink, ...]  # the links that verified, in order
    problem: str | None = None  # why the replay stopped before the end, if it did

    @property
    def sequence(self) -> int:
        """How many rotations verified (0: the anchors are still in force)."""
        return len(self.links)

    @property
    def head(self) -> str | None:
        return self.links[-1].digest if self.links else None

    def digest_at(self, sequence: int) -> str | None:
        """The digest of link ``sequence``, or None if the chain does not reach it."""
        if 1 <= sequence <= len(self.links):
            return self.links[sequence - 1].digest
        return None


def _digest(signed_text: str) -> str:
    return hashlib.sha256(signed_text.encode("utf-8")).hexdigest()


def _links(data: bytes) -> list[dict[str, Any]]:
    """The chain file's links as envelope objects, checked for shape only."""
    try:
        chain = parse_json(data, max_bytes=MAX_CHAIN_BYTES)
    except MalformedError as err:
        raise SignatureError(f"the file is not a key chain: {err}") from err
    if not isinstance(chain, dict) or chain.get("format") != CHAIN_FORMAT:
        raise SignatureError(f"the file is not a key chain ({CHAIN_FORMAT})")
    if set(chain) != {"format", "links"}:
        raise SignatureError("the key chain has unexpected members")
    links = chain["links"]
    if not isinstance(links, list) or not all(isinstance(x, dict) for x in links):
        raise SignatureError("the key chain's links are not signed documents")
    if len(links) > MAX_LINKS:
        raise SignatureError(f"the key chain has {len(links)} links; at most {MAX_LINKS}")
    return links


def _link_keys(body: Mapping[str, Any]) -> dict[str, Ed25519PublicKey]:
    texts = body.get("keys")
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise SignatureError("it does not list the keys to trust")
    if len(texts) > MAX_LINK_KEYS:
        raise SignatureError(f"it lists {len(texts)} keys; at most {MAX_LINK_KEYS}")
    keys: dict[str, Ed25519PublicKey] = {}
    for text in texts:
        try:
            key = parse_public_key(text)
        except KeyFileError as err:
            raise SignatureError(f"it lists a key that is not valid: {err}") from err
        keys[key_id(key)] = key
    return keys


def _open_link(
    envelope: Mapping[str, Any],
    trusted: Mapping[str, Ed25519PublicKey] | None,
    sequence: int,
    previous: str | None,
) -> TrustLink:
    data = json.dumps(envelope, ensure_ascii=False).encode("utf-8")
    document = open_document(data, kind=TRUST_KIND, trusted=trusted, max_bytes=MAX_CHAIN_BYTES)
    body = document.body
    if set(body) != {"sequence", "previous", "keys"}:
        raise SignatureError("its body is not a key update (sequence, previous, keys)")
    seq = body["sequence"]
    if not isinstance(seq, int) or isinstance(seq, bool) or seq != sequence:
        raise SignatureError(f"it says it is key update {seq!r}, but stands at {sequence}")
    if body["previous"] != previous:
        raise SignatureError("it does not follow the key update before it")
    return TrustLink(
        sequence=sequence,
        keys=_link_keys(body),
        signer=document.key_id,
        signed_at=document.signed_at,
        digest=_digest(str(envelope["signed"])),
    )


def replay_chain(data: bytes, anchors: Mapping[str, Ed25519PublicKey]) -> ChainReplay:
    """Apply the chain in ``data`` to ``anchors``, link by link, and say where it got.

    Raises :class:`SignatureError` only if ``data`` is not a key chain at
    all; a link that does not verify against the keys trusted at its point
    stops the replay and is named in ``problem``.
    """
    envelopes = _links(data)
    keys: Mapping[str, Ed25519PublicKey] = dict(anchors)
    done: list[TrustLink] = []
    for index, envelope in enumerate(envelopes):
        sequence = index + 1
        try:
            link = _open_link(envelope, keys, sequence, done[-1].digest if done else None)
        except SignatureError as err:
            return ChainReplay(keys, tuple(done), f"key update {sequence}: {err}")
        done.append(link)
        keys = link.keys
    return ChainReplay(keys, tuple(done), None)


def _chain_file(envelopes: Iterable[Mapping[str, Any]]) -> bytes:
    chain = {"format": CHAIN_FORMAT, "links": list(envelopes)}
    return (json.dumps(chain, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


def extend_chain(
    chain: bytes | None,
    key: Ed25519PrivateKey,
    keys: Iterable[Ed25519PublicKey],
    signed_at: datetime,
) -> tuple[bytes, int]:
    """The organizer's side: append a link trusting ``keys``, signed with ``key``.

    ``chain`` is the chain so far (None to start one: the first link must be
    signed by a key in the gates' images). The chain is checked link by link
    first, its first link against the key it carries; ``key`` must be one the
    chain's last link trusts, or gates would refuse the new link. Returns the
    new chain file and the new link's sequence.
    """
    wanted = list(keys)
    if not wanted:
        raise SignatureError("a key update must list at least one key")
    if len(wanted) > MAX_LINK_KEYS:
        raise SignatureError(f"a key update lists at most {MAX_LINK_KEYS} keys")
    envelopes = _links(chain) if chain is not None else []
    previous: str | None = None
    trusted: Mapping[str, Ed25519PublicKey] | None = None  # link 1: its own key (anchors unknown)
    for index, envelope in enumerate(envelopes):
        link = _open_link(envelope, trusted, index + 1, previous)
        previous, trusted = link.digest, link.keys
    signer = key_id(key)
    if trusted is not None and signer not in trusted:
        raise SignatureError(
            f"key {signer} is not trusted by the chain's last key update "
            f"({len(envelopes)}), which trusts {', '.join(sorted(trusted))}; "
            "sign with one of those"
        )
    sequence = len(envelopes) + 1
    body = {
        "sequence": sequence,
        "previous": previous,
        "keys": [public_key_text(k) for k in wanted],
    }
    envelope = json.loads(sign_document(key, TRUST_KIND, body, signed_at))
    return _chain_file([*envelopes, envelope]), sequence
