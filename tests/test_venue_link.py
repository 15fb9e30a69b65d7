"""The rule the lead checks first: a door never waits on the network. A
broker that takes the connection and never answers, and a peer store that
cannot be opened, leave the door deciding as a box alone does, and saying so."""

from __future__ import annotations

import socket
import threading
import time

from .venue_support import VenueClock, at_berlin, set_up_venue, start_gate, wait_for

BOXES = {"artist-in": ("artist-entrance", "entry"), "artist-out": ("artist-entrance", "exit")}


def test_a_broker_that_never_answers_changes_nothing_at_the_door(tmp_path, organizer_key,
                                                                   make_pass):  # fmt: skip
    tarpit = socket.socket()
    tarpit.bind(("127.0.0.1", 0))
    tarpit.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def swallow():  # accepts every connection and never says a word
        tarpit.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(tarpit.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=swallow, daemon=True)
    thread.start()
    address = f"127.0.0.1:{tarpit.getsockname()[1]}"
    boxes = set_up_venue(tmp_path / "venue", organizer_key, BOXES, broker=address)
    clock = VenueClock(at_berlin("21:00:00"))
    gate = start_gate(boxes["artist-in"], clock)
    try:
        wait_for(lambda: held, what="the gate to dial the tarpit")
        started = time.monotonic()
        row = gate.present(make_pass("aaa", 1))
        assert row["decision"] == "granted"
        assert time.monotonic() - started < 8  # a presentation's frames, nothing more
        clock.set(at_berlin("21:01:00"))
        row = gate.present(make_pass("aaa", 1))  # the timed rule of its own door decides
        assert row["reason"] == "already_inside" and "came in through this door" in row["message"]
        summary = gate.venue()["summary"]
        assert summary == "venue: not connected to the broker yet: timed anti-passback only"
        assert "not connected to the broker yet" in gate.status()["venue"]["summary"]
    finally:
        assert gate.halt() == 0
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        tarpit.close()


def test_a_peer_store_that_cannot_be_opened_leaves_the_door_deciding_alone(
    tmp_path, organizer_key, make_pass
):
    boxes = set_up_venue(tmp_path / "venue", organizer_key, BOXES, broker="127.0.0.1:1")
    box = boxes["artist-in"]
    box.peers.mkdir(parents=True)  # a folder where peers.db should be
    gate = start_gate(box, VenueClock(at_berlin("21:00:00")))
    try:
        assert gate.present(make_pass("aaa", 1))["decision"] == "granted"
        faults = [e for e in gate.emitted("fault") if e.get("fault") == "venue"]
        assert faults and "the venue link cannot start" in faults[0]["message"]
        assert "venue" not in gate.status()  # no link: the status claims none
    finally:
        assert gate.halt() == 0
