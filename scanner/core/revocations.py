"""The signed revocation list: a document of kind ``revocations`` whose body
is ``{"event": EVENT, "serials": [...]}`` (see ``docs/pass-format.md``). The
organizer's desk writes it, a gate takes it from a stick; both read it with
:func:`revocation_serials`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from ..errors import PolicyError
from .keys import Ed25519PrivateKey
from .passes import MAX_SERIAL
from .signed import sign_document

__all__ = ["MAX_REVOKED", "REVOCATIONS_KIND", "revocation_serials", "sign_revocation_list"]

REVOCATIONS_KIND = "revocations"
MAX_REVOKED = 100_000  # serials in one list: a gate holds them all in memory


def revocation_serials(body: Mapping[str, Any], event: str) -> frozenset[int]:
    """The serials of a verified revocation list's body, if it is for ``event``."""
    if body.get("event") != event:
        raise PolicyError(f"the revocation list is for event {body.get('event')!r}, not {event!r}")
    serials = body.get("serials")
    if not isinstance(serials, list) or not all(
        isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= MAX_SERIAL for s in serials
    ):
        raise PolicyError("the revocation list's serials are not pass serials")
    if len(serials) > MAX_REVOKED:
        raise PolicyError(
            f"the revocation list holds {len(serials)} serials; at most {MAX_REVOKED}"
        )
    return frozenset(serials)


def sign_revocation_list(
    key: Ed25519PrivateKey, event: str, serials: Iterable[int], now: datetime
) -> bytes:
    """The signed list of every pass of ``event`` revoked: it replaces the list
    a gate holds, so it must name them all, not only the latest."""
    body = {"event": event, "serials": sorted(set(serials))}
    return sign_document(key, REVOCATIONS_KIND, body, now)
