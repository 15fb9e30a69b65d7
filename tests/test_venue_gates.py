"""Gates that share what they see: the real gate daemon, several at once, on
their own files, talking through a real mosquitto on 127.0.0.1 that the
test starts, stops and starts again.

Each box is set up as a technician leaves it (its device key made at set-up
and registered by the organizer in the signed roster); the test is the
people at the doors (each step sets the venue's clock and has one person
hold a pass up to one gate) and, at the end, reads each gate's log, its
peer store and its status over the control socket, as a technician would.
"""

from __future__ import annotations

import pytest

from scanner.gate.control import send_command

from .venue_support import (
    MOSQUITTO,
    Mosquitto,
    RunningGate,
    VenueClock,
    at_berlin,
    set_up_venue,
    start_gate,
    venue_converged,
    wait_for,
)

pytestmark = pytest.mark.skipif(
    MOSQUITTO is None, reason="needs mosquitto (scripts/bootstrap test installs it)"
)

ARTIST = {
    "artist-in": ("artist-entrance", "entry"),
    "artist-out": ("artist-entrance", "exit"),
}
DRESSING = {
    "dressing-in": ("dressing-rooms", "entry"),
    "dressing-out": ("dressing-rooms", "exit"),
}
CREW_DOOR = """
[doors.crew-door]
from = "outside"
to = "backstage"
"""


@pytest.fixture
def broker(tmp_path):
    mq = Mosquitto(tmp_path).start()
    yield mq
    mq.stop()


@pytest.fixture
def venue(tmp_path, organizer_key, broker):
    """Start the boxes a test asks for; stop them all at the end."""
    running: list[RunningGate] = []
    clock = VenueClock(at_berlin("20:59:00"))

    def start(boxes, **kw):
        made = set_up_venue(tmp_path / "venue", organizer_key, boxes, broker=broker.address, **kw)
        gates = {gate: start_gate(box, clock) for gate, box in made.items()}
        running.extend(gates.values())
        wait_for(
            lambda: all(g.venue().get("link", {}).get("connected") for g in gates.values()),
            what="every gate to reach the broker",
        )
        return gates

    start.clock = clock
    yield start
    for gate in running:
        gate.stop.set()
        gate.camera.end()
    for gate in running:
        gate.thread.join(timeout=30)


def in_sync(gates):
    """Every gate knows who is inside its zone (every peer heard and caught up)."""
    return all(g.venue().get("knows_who_is_inside") for g in gates)


def people_inside(gate):
    return {zone: n for zone, n in gate.venue()["inside"].items() if n}


def test_a_pass_used_at_two_doors_faster_than_anyone_walks_is_stopped_live(venue, make_pass):
    gates = venue(ARTIST | DRESSING)
    wait_for(lambda: in_sync(gates.values()), what="peers in sync")
    ann = make_pass("aaa", 1, holder="Ann Artist")
    venue.clock.set(at_berlin("21:20:00"))
    assert gates["artist-in"].present(ann)["decision"] == "granted"
    wait_for(lambda: len(gates["dressing-in"].peer_ids()) == 1, what="the scan to arrive")
    venue.clock.set(at_berlin("21:20:05"))  # the artist entrance is a 20 s walk away
    row = gates["dressing-in"].present(ann)
    assert (row["decision"], row["reason"]) == ("denied", "suspected_copy")
    assert "let in at artist-entrance (artist-in) 5 s ago" in row["message"]
    shown = [e["signal"] for e in gates["dressing-in"].emitted("signal")]
    assert "suspected_copy" in shown  # its own pattern, not the forged buzz
    # the holder who walked is let in: 30 s later at the same door
    venue.clock.set(at_berlin("21:20:30"))
    assert gates["dressing-in"].present(ann)["decision"] == "granted"


def test_separate_entry_and_exit_boxes_never_lock_anyone_out(venue, make_pass):
    gates = venue(ARTIST)
    wait_for(lambda: in_sync(gates.values()), what="peers in sync")
    eli = make_pass("aaa", 5, holder="Eli Encore")
    venue.clock.set(at_berlin("21:30:00"))
    assert gates["artist-in"].present(eli)["decision"] == "granted"
    venue.clock.set(at_berlin("21:30:40"))
    assert gates["artist-out"].present(eli)["decision"] == "granted"  # leaves...
    wait_for(lambda: len(gates["artist-in"].peer_ids()) == 1, what="the exit to arrive")
    # back 90 s after coming in: the door's own 3 minute floor still holds (an
    # exit box only saw the pass, not the holder going out)
    venue.clock.set(at_berlin("21:31:30"))
    row = gates["artist-in"].present(eli)
    assert (row["reason"], row["decision"]) == ("already_inside", "denied"), row["message"]
    venue.clock.set(at_berlin("21:33:10"))  # ...and let in once it has passed
    row = gates["artist-in"].present(eli)
    assert row["decision"] == "granted", row["message"]
    # the same pass handed back out over the fence is stopped: its holder is inside
    venue.clock.set(at_berlin("21:40:00"))  # long after the timed window
    row = gates["artist-in"].present(eli)
    assert (row["reason"], row["decision"]) == ("already_inside", "denied")
    assert "has not left" in row["message"]


def test_inside_through_one_door_is_inside_at_every_other(venue, make_pass):
    gates = venue(
        ARTIST | {"crew-in": ("crew-door", "entry"), "crew-out": ("crew-door", "exit")},
        policy_text=None,
        extra_toml=CREW_DOOR,
    )
    wait_for(lambda: in_sync(gates.values()), what="peers in sync")
    fay = make_pass("aaa", 6, holder="Fay Friend")
    venue.clock.set(at_berlin("21:50:00"))
    assert gates["artist-in"].present(fay)["decision"] == "granted"
    wait_for(lambda: len(gates["crew-in"].peer_ids()) == 1, what="the entry to arrive")
    venue.clock.set(at_berlin("22:10:00"))  # no copy (20 minutes later), not the same door
    row = gates["crew-in"].present(fay)
    assert (row["decision"], row["reason"]) == ("denied", "already_inside")
    venue.clock.set(at_berlin("22:12:00"))
    assert gates["artist-out"].present(fay)["decision"] == "granted"
    wait_for(lambda: len(gates["crew-in"].peer_ids()) == 2, what="the exit to arrive")
    venue.clock.set(at_berlin("22:20:00"))
    assert gates["crew-in"].present(fay)["decision"] == "granted"


def test_a_full_zone_turns_the_next_person_away_until_someone_leaves(venue, make_pass):
    gates = venue(ARTIST | DRESSING, capacity="{ dressing-rooms = 1 }")
    wait_for(lambda: in_sync(gates.values()), what="peers in sync")
    ann, ben = make_pass("aaa", 1, holder="Ann"), make_pass("aaa", 2, holder="Ben")
    venue.clock.set(at_berlin("21:00:00"))
    gates["artist-in"].present(ann)
    venue.clock.set(at_berlin("21:00:30"))
    gates["artist-in"].present(ben)
    venue.clock.set(at_berlin("21:02:00"))
    assert gates["dressing-in"].present(ann)["decision"] == "granted"
    venue.clock.set(at_berlin("21:03:00"))
    row = gates["dressing-in"].present(ben)
    assert (row["decision"], row["reason"]) == ("denied", "zone_full")
    assert "dressing-rooms is full (1 of 1 inside)" in row["message"]
    venue.clock.set(at_berlin("21:04:00"))
    gates["dressing-out"].present(ann)
    wait_for(
        lambda: people_inside(gates["dressing-in"]).get("dressing-rooms", 0) == 0,
        what="the count to fall",
    )
    venue.clock.set(at_berlin("21:05:00"))
    assert gates["dressing-in"].present(ben)["decision"] == "granted"
    for gate in gates.values():  # every box counts the same people
        wait_for(lambda gate=gate: people_inside(gate) == {"backstage": 2, "dressing-rooms": 1},
                 what=f"{gate.box.gate}'s count")  # fmt: skip


def test_someone_a_guard_lets_in_by_hand_counts_at_once_toward_a_full_zone(venue, make_pass):
    gates = venue(ARTIST | DRESSING, capacity="{ dressing-rooms = 1 }")
    wait_for(lambda: in_sync(gates.values()), what="peers in sync")
    cleo, ann = make_pass("working", 3, holder="Cleo"), make_pass("aaa", 1, holder="Ann")
    venue.clock.set(at_berlin("21:00:00"))
    gates["artist-in"].present(cleo)
    gates["artist-in"].present(ann)
    venue.clock.set(at_berlin("21:02:00"))
    # working crew may not go into the dressing rooms; the guard lets Cleo in anyway
    assert gates["dressing-in"].present(cleo)["reason"] == "zone_not_allowed"
    admitted = send_command(gates["dressing-in"].box.socket, {"cmd": "admit"}, timeout=5)
    assert admitted["ok"], admitted
    venue.clock.set(at_berlin("21:02:30"))
    row = gates["dressing-in"].present(ann)  # the room is full: Cleo is in it
    assert (row["decision"], row["reason"]) == ("denied", "zone_full"), row["message"]


def test_broker_down_mid_show_gates_keep_deciding_and_converge_after(venue, broker, make_pass):
    gates = venue(ARTIST | DRESSING)
    wait_for(lambda: in_sync(gates.values()), what="peers in sync")
    passes = {n: make_pass("aaa", n, holder=f"Person {n}") for n in range(1, 7)}
    venue.clock.set(at_berlin("21:00:00"))
    gates["artist-in"].present(passes[1])
    venue.clock.set(at_berlin("21:01:00"))
    gates["artist-in"].present(passes[2])
    wait_for(lambda: venue_converged(list(gates.values())), what="the first scans to spread")

    broker.stop()  # the cable is out, mid-show
    wait_for(
        lambda: all("no broker since" in g.venue()["summary"] for g in gates.values()),
        what="every gate to say it has no broker",
    )
    assert "timed anti-passback only" in gates["artist-in"].status()["venue"]["summary"]
    venue.clock.set(at_berlin("21:02:00"))
    assert gates["artist-out"].present(passes[2])["decision"] == "granted"  # exits still open
    venue.clock.set(at_berlin("21:03:00"))
    assert gates["artist-in"].present(passes[3])["decision"] == "granted"
    venue.clock.set(at_berlin("21:03:30"))
    # the entry box cannot know person 2 left: its own door's timed rule decides
    row = gates["artist-in"].present(passes[2])
    assert (row["decision"], row["reason"]) == ("denied", "already_inside")
    assert "came in through this door" in row["message"]
    venue.clock.set(at_berlin("21:04:00"))
    assert gates["dressing-in"].present(passes[1])["decision"] == "granted"
    venue.clock.set(at_berlin("21:05:00"))
    assert gates["artist-in"].present(passes[4])["decision"] == "granted"

    broker.start()  # the cable is back
    wait_for(lambda: venue_converged(list(gates.values())), timeout=40, what="convergence")
    wait_for(lambda: in_sync(gates.values()), timeout=20, what="peers in sync again")
    views = [people_inside(g) for g in gates.values()]
    assert all(v == views[0] for v in views), views
    # person 1 in the dressing rooms, 3 and 4 backstage, 2 outside (left at 21:02)
    assert views[0] == {"backstage": 3, "dressing-rooms": 1}
    for gate in gates.values():  # no scan lost, none doubled
        ids = gate.peer_ids()
        assert len(ids) == len(set(ids))
        assert not set(ids) & {r["id"] for r in gate.scans()}
    total = sum(len(g.scans()) for g in gates.values())
    assert total == 7 and all(len(g.peer_ids()) == total - len(g.scans()) for g in gates.values())


def test_a_gate_that_was_off_catches_up_when_it_starts_again(venue, make_pass):
    gates = venue(ARTIST)
    wait_for(lambda: in_sync(gates.values()), what="peers in sync")
    off = gates["artist-out"]
    assert off.halt() == 0  # powered down
    for n, hms in ((1, "21:00:00"), (2, "21:01:00"), (3, "21:02:00")):
        venue.clock.set(at_berlin(hms))
        gates["artist-in"].present(make_pass("aaa", n))
    again = start_gate(off.box, venue.clock)  # the same box, its files as it left them
    try:
        wait_for(lambda: len(again.peer_ids()) == 3, timeout=30, what="the catch-up")
        wait_for(lambda: people_inside(again) == {"backstage": 3}, what="its view")
    finally:
        again.halt()
