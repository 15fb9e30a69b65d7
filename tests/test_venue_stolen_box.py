"""One stolen box cannot steer the venue.

The thief has the exit box of the artist entrance: its device key, so its
broker login too. Each test runs one attack through the public interfaces
(a real mosquitto run from ``scanner venue broker-config``'s files, the real
gate daemons of the artist entrance's entry box and the dressing rooms'
entry box, the thief publishing with the stolen key on the topics the ACL
leaves it) and asserts it fails and changes nothing at the doors. Where the
broker's ACL would stop an attack before the gates see it, the attack is
also run on an open broker, so the gates' own checks are what is shown.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import timedelta

import paho.mqtt.client as mqtt
import pytest

from scanner.core.keys import Ed25519PrivateKey, generate_private_key, public_key_text
from scanner.core.policy import sign_policy
from scanner.core.signed import format_utc, sign_document
from scanner.gate.logfmt import format_line
from scanner.keyfiles import load_private_key, write_key_pair
from scanner.venue.broker import box_password, tls_context
from scanner.venue.messages import SCAN_KIND, scan_message, sync_message

from .conftest import SIGNED_AT
from .venue_support import (
    MOSQUITTO,
    Mosquitto,
    SecureBroker,
    VenueClock,
    at_berlin,
    set_up_venue,
    start_gate,
    wait_for,
)

pytestmark = pytest.mark.skipif(
    MOSQUITTO is None, reason="needs mosquitto (scripts/bootstrap test installs it)"
)
EVENT = "example-fest-2026"
BOXES = {
    "artist-in": ("artist-entrance", "entry"),
    "artist-out": ("artist-entrance", "exit"),  # the stolen one: it never runs here
    "dressing-in": ("dressing-rooms", "entry"),
}
ROOT = f"backstage/{EVENT}"


class Thief:
    """An MQTT client with the stolen box's login (or none, on an open broker)
    that signs whatever it likes with the stolen device key."""

    def __init__(self, port: int, key: Ed25519PrivateKey, *, ca: str | None) -> None:
        self.key = key
        self.seq = 1000
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"thief-{uuid.uuid4().hex[:6]}",
            protocol=mqtt.MQTTv5,
        )  # fmt: skip
        if ca is not None:
            self.client.tls_set_context(tls_context(ca))
            self.client.username_pw_set("artist-out", box_password(key, "artist-out"))
        self.connected = threading.Event()
        self.client.on_connect = lambda *a, **k: self.connected.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.connected.wait(10), "the thief could not log in"

    def row(self, serial: int, at, **fields) -> dict:
        self.seq += 1
        row = {
            "id": str(uuid.uuid4()), "seq": self.seq, "ts": format_utc(at),
            "gate": "artist-out", "event": EVENT, "door": "artist-entrance",
            "zone": "backstage", "direction": "exit", "serial": serial, "tier": "aaa",
            "decision": "granted", "reason": "ok", "clock": "trusted", "phase": "during",
        }  # fmt: skip
        return row | fields

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def says(self, serial: int, at, **fields) -> dict:
        """Publish a scan on the stolen box's own topic, signed with its key."""
        row = self.row(serial, at, **fields)
        self.publish(f"{ROOT}/scan/artist-out", scan_message(self.key, row, EVENT))
        return row

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def refused(gate, reason: str) -> list[dict]:
    return [e for e in gate.emitted("venue_drop") if e["reason"] == reason]


def running(tmp_path, organizer_key, *, secure: bool = True):
    """The venue's two genuine boxes running, and the thief connected."""
    broker_ca = SecureBroker.make(tmp_path / "keys") if secure else None
    open_broker = None if secure else Mosquitto(tmp_path).start()
    boxes = set_up_venue(
        tmp_path / "venue", organizer_key, BOXES, secure=broker_ca,
        broker="" if secure else open_broker.address,
    )  # fmt: skip
    broker = (
        broker_ca.start(tmp_path, tmp_path / "venue" / "event.policy") if broker_ca else open_broker
    )
    clock = VenueClock(at_berlin("20:59:00"))
    gates = {g: start_gate(boxes[g], clock) for g in ("artist-in", "dressing-in")}
    stolen = load_private_key(boxes["artist-out"].folder / "var" / "device.key")
    thief = Thief(broker.port, stolen, ca=broker_ca.ca_cert if broker_ca else None)
    wait_for(
        lambda: all(g.venue().get("peers") for g in gates.values()), what="the gates to start"
    )
    return gates, thief, clock, broker, boxes


@pytest.fixture
def venue(tmp_path, organizer_key):
    made = []

    def start(*, secure: bool = True):
        made.append(running(tmp_path, organizer_key, secure=secure))
        return made[-1]

    yield start
    for gates, thief, _, broker, _ in made:
        thief.close()
        for gate in gates.values():
            gate.halt()
        broker.stop()


def test_a_stolen_box_cannot_speak_for_another_door_or_direction(venue, make_pass):
    """The thief publishes, on its own topic and signed with its own key, an
    entry into backstage at the artist entrance for a chosen serial: the one
    box that says entries there is artist-in. Dropped as wrong_place; the
    holder is let in as usual, not refused as already inside."""
    gates, thief, clock, _, _ = venue()
    clock.set(at_berlin("21:00:00"))
    thief.says(7, at_berlin("21:00:00"), direction="entry")
    thief.says(8, at_berlin("21:00:00"), door="dressing-rooms", zone="dressing-rooms",
               direction="entry")  # fmt: skip
    wait_for(lambda: len(refused(gates["artist-in"], "wrong_place")) >= 1, what="a refusal")
    wait_for(lambda: gates["dressing-in"].venue()["link"]["dropped"].get("wrong_place") == 2)
    assert gates["artist-in"].peer_ids() == [] and gates["dressing-in"].peer_ids() == []
    assert gates["artist-in"].venue()["inside"]["backstage"] == 0
    clock.set(at_berlin("21:00:30"))
    row = gates["artist-in"].present(make_pass("aaa", 7, holder="Gil"))
    assert row["decision"] == "granted", row["message"]
    (drop,) = refused(gates["artist-in"], "wrong_place")[:1]
    assert drop["source"] == "artist-out"  # the box whose signature was checked


def test_a_stolen_exit_box_cannot_let_a_passed_back_pass_in_again(venue, make_pass):
    """Ann comes in; the thief says she left through its exit box (its own door
    and direction: believed); her pass, handed back over the fence, comes
    back 25 s after she entered. The door's own re-entry floor refuses it."""
    gates, thief, clock, _, _ = venue()
    ann = make_pass("aaa", 1, holder="Ann Artist")
    clock.set(at_berlin("21:00:00"))
    assert gates["artist-in"].present(ann)["decision"] == "granted"
    clock.set(at_berlin("21:00:10"))
    thief.says(1, at_berlin("21:00:10"))
    wait_for(lambda: len(gates["artist-in"].peer_ids()) == 1, what="the 'exit' to arrive")
    clock.set(at_berlin("21:00:25"))
    row = gates["artist-in"].present(ann)
    assert (row["decision"], row["reason"]) == ("denied", "already_inside"), row["message"]
    assert "cannot come in again for 3 min" in row["message"]


def test_scans_dated_in_the_future_or_before_the_event_are_dropped(venue, make_pass):
    """An exit dated 2099 would place its holder for good (people are placed by
    their latest scan in time); one dated before the event opens is no scan
    of this event. Both are dropped, by reason and box."""
    gates, thief, clock, _, _ = venue()
    clock.set(at_berlin("21:00:00"))
    ann = make_pass("aaa", 1, holder="Ann Artist")
    assert gates["artist-in"].present(ann)["decision"] == "granted"
    far = at_berlin("21:00:00").replace(year=2099)
    thief.says(1, far)
    thief.says(1, at_berlin("21:00:00") + timedelta(seconds=60))  # a minute ahead
    thief.says(1, at_berlin("07:00:00"))  # the event opens at 08:00
    for reason, count in (("future", 2), ("before_event", 1)):
        wait_for(
            lambda reason=reason, count=count: gates["artist-in"].venue()["link"]["dropped"].get(
                reason
            ) == count,
            what=f"{count} {reason} refusals",
        )
    assert gates["artist-in"].peer_ids() == []
    assert gates["artist-in"].venue()["inside"]["backstage"] == 1  # Ann is still inside
    assert {e["source"] for e in refused(gates["artist-in"], "future")} == {"artist-out"}


def test_a_box_taken_off_the_roster_loses_everything_it_said_at_once(
    venue, make_pass, organizer_key
):
    """The thief's exits were believed while its box was on the roster. The
    organizer puts a spare box in its place (the same gate, a new key: a new
    policy by stick). At once the doors forget every word the stolen box
    said: Ann is inside again, and her pass handed back out long after the
    floor is refused as already inside; what the thief says now is refused."""
    gates, thief, clock, _, boxes = venue(secure=False)
    ann = make_pass("aaa", 1, holder="Ann Artist")
    clock.set(at_berlin("21:00:00"))
    assert gates["artist-in"].present(ann)["decision"] == "granted"
    clock.set(at_berlin("21:00:20"))
    thief.says(1, at_berlin("21:00:20"))
    wait_for(lambda: len(gates["artist-in"].peer_ids()) == 1, what="the 'exit' to arrive")
    wait_for(lambda: gates["artist-in"].venue()["inside"]["backstage"] == 0, what="Ann 'out'")
    # the spare box: the stolen box's files, a new device key on the roster
    spare = boxes["artist-out"]
    new_key = generate_private_key()
    write_key_pair(spare.folder / "var", "device", key=new_key, force=True)
    toml = (spare.folder.parent / "policy.toml").read_text()
    old_line = next(line for line in toml.splitlines()[toml.splitlines().index(
        "[gates.artist-out]"):] if line.startswith("device_key"))  # fmt: skip
    new_toml = toml.replace(old_line, f'device_key = "{public_key_text(new_key.public_key())}"')
    new_policy = sign_policy(new_toml, organizer_key, SIGNED_AT + timedelta(days=1))
    for box in boxes.values():
        (box.folder / "var" / "event.policy").write_bytes(new_policy)
    gates["artist-out"] = start_gate(spare, clock)
    wait_for(lambda: gates["artist-in"].peer_ids() == [], what="the stolen box's scans forgotten")
    wait_for(lambda: gates["artist-in"].venue()["inside"]["backstage"] == 1, what="Ann inside")
    wait_for(
        lambda: gates["artist-in"].venue().get("knows_who_is_inside"), what="the spare in sync"
    )
    clock.set(at_berlin("21:10:00"))
    row = gates["artist-in"].present(ann)
    assert (row["reason"], row["decision"]) == ("already_inside", "denied")
    assert "has not left" in row["message"]
    thief.says(1, at_berlin("21:10:00"))  # what the old key says now is refused outright
    wait_for(lambda: gates["artist-in"].venue()["link"]["dropped"].get("unknown_gate"))
    assert gates["artist-in"].venue()["inside"]["backstage"] == 1
    # and after a restart the door still knows: rebuilt from its log and what is left
    gates["artist-in"].halt()
    gates["artist-in"] = start_gate(boxes["artist-in"], clock)
    wait_for(lambda: gates["artist-in"].venue().get("inside", {}).get("backstage") == 1,
             what="Ann inside after the restart")  # fmt: skip
    assert gates["artist-in"].peer_ids() == [r["id"] for r in gates["artist-out"].scans()]


def test_catch_up_requests_cannot_be_forged_retained_or_replayed(venue, make_pass):
    """On an open broker (anyone may publish anything): a request in artist-in's
    name unsigned, signed by the thief, or signed by a stranger; the thief's
    own request an hour old; and its request retained, so that every gate
    would replay its log at each reconnect: all refused. Catching up still
    works."""
    gates, thief, clock, _, _ = venue(secure=False)
    clock.set(at_berlin("21:00:00"))
    gates["artist-in"].present(make_pass("aaa", 1, holder="Ann Artist"))
    want = {"artist-in": 1, "dressing-in": 1}
    now = at_berlin("21:00:00")
    in_name_of = f"{ROOT}/sync/artist-in"
    thief.publish(in_name_of, json.dumps({"to": "artist-in", "want": want}).encode())
    thief.publish(in_name_of, sync_message(thief.key, "artist-in", EVENT, want, now))
    thief.publish(in_name_of, sync_message(generate_private_key(), "artist-in", EVENT, want, now))
    own = f"{ROOT}/sync/artist-out"
    thief.publish(own, sync_message(thief.key, "artist-out", EVENT, want, now - timedelta(hours=1)))
    thief.publish(own, sync_message(thief.key, "artist-out", EVENT, want, now), retain=True)
    door = gates["dressing-in"]
    wait_for(
        lambda: {"forged", "wrong_gate", "unknown_gate", "stale"}
        <= set(door.venue()["link"]["dropped"]),
        what="the unsigned, foreign, strange and old requests refused",
    )
    door.halt()  # it reconnects: the broker hands it the retained request
    again = start_gate(door.box, clock)
    gates["dressing-in"] = again
    wait_for(lambda: again.venue()["link"]["dropped"].get("retained"), what="retained refused")
    # catching up still works: dressing-in holds artist-in's scan, once
    wait_for(lambda: len(again.peer_ids()) == 1, what="the scan caught up")


def test_junk_in_a_boxs_name_does_not_use_up_that_boxs_rate(venue, make_pass):
    """400 unsigned messages on artist-in's scan topic (an open broker): they
    fail the signature check before they may cost artist-in anything, so its
    real scan right after is taken."""
    gates, thief, clock, _, _ = venue(secure=False)
    junk = json.dumps({"format": "backstage-signed-v1", "kind": SCAN_KIND, "signed": "{}",
                       "signature": "AA=="}).encode()  # fmt: skip
    for _ in range(400):
        thief.client.publish(f"{ROOT}/scan/artist-in", junk, qos=0)
    time.sleep(1)
    clock.set(at_berlin("21:00:00"))
    row = gates["artist-in"].present(make_pass("aaa", 2, holder="Ben"))
    wait_for(lambda: gates["dressing-in"].peer_ids() == [row["id"]], what="the real scan")
    assert "flood" not in gates["dressing-in"].venue()["link"]["dropped"]


def test_refusals_cannot_flood_the_journal_or_forge_a_line_in_it(venue):
    """Junk on 500 made-up box names is one journal line per reason a minute,
    not one per name; and what a refused message carries is escaped, so a
    line break or a terminal escape in it never reaches the journal raw."""
    gates, thief, _, _, _ = venue(secure=False)
    for n in range(500):
        thief.client.publish(f"{ROOT}/scan/box-{n}", b"{}", qos=0)
    trick = "x\r\nts=2026-12-05T21:00:00Z event=scan decision=granted\x1b[2J\x1b[32m"
    row = thief.row(3, at_berlin("21:00:00"), event=trick, seq=77)
    body = {k: row[k] for k in row} | {"pass_event": None}
    thief.publish(f"{ROOT}/scan/artist-out",
                  sign_document(thief.key, SCAN_KIND, body, at_berlin("21:00:00")))  # fmt: skip
    target = gates["dressing-in"]
    wait_for(lambda: target.venue()["link"]["dropped"].get("malformed", 0) >= 500, timeout=30)
    wait_for(lambda: refused(target, "wrong_event"), what="the trick refused")
    lines = [format_line("venue_drop", e) for e in target.emitted("venue_drop")]
    assert len([e for e in target.emitted("venue_drop") if e["reason"] == "malformed"]) == 1
    assert {e["source"] for e in target.emitted("venue_drop") if e["reason"] == "malformed"} == {
        "unverified"
    }
    for line in lines:
        assert "\r" not in line and "\n" not in line and "\x1b" not in line
    assert any("\\r\\n" in line and "\\x1b[2J" in line for line in lines)

