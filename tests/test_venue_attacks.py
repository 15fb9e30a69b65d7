"""Attacks on the venue link, run the way an attacker on the production LAN
would: an ordinary MQTT client on the venue's broker (a real mosquitto on
127.0.0.1), publishing forged, altered, foreign, replayed, oversized and
malformed messages, and a flood, at two real gate daemons.

Each attack must fail, be logged (rate-limited) and change nothing: not the
gates' logs, not their peer stores, not who they think is inside, and not a
single decision at the door.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from scanner.core.keys import generate_private_key
from scanner.core.signed import sign_document
from scanner.keyfiles import load_private_key
from scanner.venue.messages import SCAN_KIND

from .venue_support import (
    MOSQUITTO,
    Mosquitto,
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
BOXES = {"artist-in": ("artist-entrance", "entry"), "artist-out": ("artist-entrance", "exit")}


class Attacker:
    """An MQTT client on the venue's LAN: it sees everything and can publish anything."""

    def __init__(self, port: int) -> None:
        self.seen: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="attacker")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("backstage/#", qos=1)
        self.client.loop_start()

    def _on_message(self, client, userdata, message):
        with self._lock:
            self.seen.append((message.topic, bytes(message.payload)))

    def captured(self, kind: str) -> list[tuple[str, bytes]]:
        with self._lock:
            return [(t, p) for t, p in self.seen if f"/{kind}/" in t]

    def send(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def body_like(genuine, **changes):
    """The body of a captured message (or a body), with some fields changed."""
    body = (
        genuine if isinstance(genuine, dict) else json.loads(json.loads(genuine)["signed"])["body"]
    )
    return body | changes


def peer_rows(gate):
    conn = sqlite3.connect(gate.box.peers.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        return conn.execute("SELECT * FROM peer_scans ORDER BY id").fetchall()
    finally:
        conn.close()


def drop_rows(gate):
    conn = sqlite3.connect(gate.box.peers.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        return conn.execute("SELECT reason, source, count FROM drops").fetchall()
    finally:
        conn.close()


@pytest.fixture
def show(tmp_path, organizer_key, make_pass):
    broker = Mosquitto(tmp_path).start()
    boxes = set_up_venue(tmp_path / "venue", organizer_key, BOXES, broker=broker.address)
    clock = VenueClock(at_berlin("20:59:00"))
    attacker = Attacker(broker.port)
    gates = {g: start_gate(b, clock) for g, b in boxes.items()}
    wait_for(
        lambda: all(g.venue().get("knows_who_is_inside") for g in gates.values()),
        what="peers in sync",
    )
    clock.set(at_berlin("21:00:00"))
    gates["artist-in"].present(make_pass("aaa", 1, holder="Ann Artist"))
    wait_for(lambda: gates["artist-out"].peer_ids(), what="the genuine scan")
    wait_for(lambda: attacker.captured("scan") and len(attacker.captured("hb")) > 4)
    try:
        yield {"gates": gates, "attacker": attacker, "clock": clock, "boxes": boxes}
    finally:
        attacker.close()
        for gate in gates.values():
            gate.halt()
        broker.stop()


def test_forged_altered_foreign_and_replayed_messages_are_refused_and_change_nothing(
    show, make_pass
):
    gates, attacker = show["gates"], show["attacker"]
    target = gates["artist-out"]
    before = {
        g: (peer_rows(gate), gate.venue()["inside"], gate.scans()) for g, gate in gates.items()
    }
    genuine_topic, genuine = attacker.captured("scan")[0]
    assert b"Ann Artist" not in genuine  # no holder name on the wire
    old_heartbeat = next(m for m in attacker.captured("hb") if m[0].endswith("/artist-in"))

    stranger = generate_private_key()
    rogue = load_private_key(show["boxes"]["artist-out"].folder / "var" / "device.key")
    fresh = body_like(genuine, id="0f0f0f0f-0000-4000-8000-000000000001", seq=99, serial=7)
    scan_topic = f"backstage/{EVENT}/scan/artist-in"
    attacks = {
        # the genuine message with another serial: its signature no longer matches
        "forged": (scan_topic, genuine.replace(b'\\"serial\\":1', b'\\"serial\\":7')),
        # a well-formed scan signed by a key the roster does not list
        "unknown_gate": (scan_topic, sign_document(stranger, SCAN_KIND, fresh, at_berlin("21:00"))),
        # a genuine box (artist-out's stolen key) speaking as another
        "wrong_gate": (scan_topic, sign_document(rogue, SCAN_KIND, fresh, at_berlin("21:00"))),
        # a genuine box's own scan published on another box's topic
        "wrong_topic": (
            scan_topic,
            sign_document(
                rogue,
                SCAN_KIND,
                body_like(fresh, gate="artist-out", seq=60),
                at_berlin("21:00"),
            ),
        ),
        "wrong_event": (
            f"backstage/{EVENT}/scan/artist-out",
            sign_document(
                rogue,
                SCAN_KIND,
                body_like(genuine, gate="artist-out", event="other-fest", seq=50),
                at_berlin("21:00"),
            ),
        ),
        "oversized": (scan_topic, b"{" + b" " * 10_000 + b"}"),
        "malformed": (scan_topic, b"[" * 1000 + b"]" * 1000),
        "replayed": old_heartbeat,
    }
    for topic, payload in attacks.values():
        attacker.send(topic, payload)
    attacker.send(genuine_topic, genuine)  # a genuine scan again: applied once, at most
    attacker.send(  # a heartbeat from a stranger, retained, on a real gate's topic
        f"backstage/{EVENT}/hb/artist-in",
        sign_document(stranger, "venue-heartbeat", {"gate": "artist-in"}, at_berlin("21:00")),
        retain=False,
    )

    def refused():
        return {e["reason"] for g in gates.values() for e in g.emitted("venue_drop")}

    wait_for(lambda: refused() >= set(attacks), what="every attack to be refused")
    for name, gate in gates.items():
        peers, inside, scans = before[name]
        assert peer_rows(gate) == peers  # nothing stored
        assert gate.venue()["inside"] == inside  # nobody moved
        assert gate.scans() == scans  # the gate's own log untouched
    # refusals are kept as counts per reason and source (a flood cannot fill the disk)
    wait_for(
        lambda: {r for g in gates.values() for r, _, _ in drop_rows(g)} >= set(attacks),
        timeout=10,
    )
    # and the door still works: Ann leaves through the exit box
    show["clock"].set(at_berlin("21:10:00"))
    assert target.present(make_pass("aaa", 1, holder="Ann Artist"))["decision"] == "granted"


def test_a_flood_on_the_broker_changes_nothing_at_the_door(show, make_pass):
    gates, attacker = show["gates"], show["attacker"]
    target = gates["artist-out"]
    junk = b'{"format":"backstage-signed-v1","kind":"venue-scan","signed":"{}","signature":"AA=="}'
    stop = threading.Event()

    def flood():
        n = 0
        while not stop.is_set() and n < 20_000:
            attacker.client.publish(f"backstage/{EVENT}/scan/artist-in", junk, qos=0)
            n += 1
            if n % 500 == 0:
                time.sleep(0.01)

    flooder = threading.Thread(target=flood)
    flooder.start()
    try:
        show["clock"].set(at_berlin("21:10:00"))
        started = time.monotonic()
        row = target.present(make_pass("aaa", 1, holder="Ann Artist"))
        assert row["decision"] == "granted"
        assert time.monotonic() - started < 10  # decided as usual while the flood runs
    finally:
        stop.set()
        flooder.join(timeout=30)
    wait_for(lambda: sum(target.venue().get("link", {}).get("dropped", {}).values()) > 100)
    journal = [e for e in target.emitted("venue_drop") if e["source"] == "artist-in"]
    assert len(journal) <= 3  # one line per reason and source a minute, not thousands
    conn = sqlite3.connect(target.box.db.resolve().as_uri() + "?mode=ro", uri=True)
    summaries = conn.execute("SELECT count(*) FROM events WHERE kind = 'venue_drops'").fetchone()
    conn.close()
    assert summaries[0] <= 2  # at most one summary a minute in the gate's own events
    assert len(drop_rows(target)) < 20
    assert set(target.peer_ids()) == {r["id"] for r in gates["artist-in"].scans()}
