"""The venue view: who is where, copies and capacity from every gate's scans,
and what a door decides with it (scanner.core.venue_view, decide(venue=...)).

The venue is the example policy's: the artist entrance (outside to
backstage) with an entry and an exit box, the dressing rooms inside
backstage with their own entry box, a 20 s walk between those two doors,
and the photo pit round the building (240 s)."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.core.decision import Direction, Gate, Reason, SignalClass, decide
from scanner.core.policy import OUTSIDE, open_policy, sign_policy
from scanner.core.venue_view import SeqSet, Sighting, VenueView

from .conftest import EXAMPLE_POLICY, SIGNED_AT

BERLIN = ZoneInfo("Europe/Berlin")
T0 = datetime(2026, 12, 5, 21, 0, tzinfo=BERLIN)
ROSTER = """
[gates.artist-in]
door = "artist-entrance"
direction = "entry"

[gates.artist-out]
door = "artist-entrance"
direction = "exit"

[gates.dressing-in]
door = "dressing-rooms"
direction = "entry"

[gates.dressing-out]
door = "dressing-rooms"
direction = "exit"

[gates.pit-in]
door = "pit-gate"
direction = "entry"
"""
NOW = 1000.0  # the callers' monotonic clock


@pytest.fixture(scope="module")
def venue_policy(organizer_key):
    text = EXAMPLE_POLICY.read_text().replace(
        "# capacity = { photo-pit = 12 }", "capacity = { dressing-rooms = 2, photo-pit = 1 }"
    )
    return open_policy(
        sign_policy(text + ROSTER, organizer_key, SIGNED_AT), [organizer_key.public_key()]
    )


class Scans:
    """Numbered scans at the roster's gates, as the gates would log them."""

    def __init__(self, policy):
        self.policy = policy
        self.seq = dict.fromkeys(policy.gates, 0)

    def __call__(self, gate, serial, seconds, *, granted=True, reason="ok", clock=True):
        place = self.policy.gates[gate]
        self.seq[gate] += 1
        return Sighting(
            id=f"{gate}-{self.seq[gate]}",
            gate=gate,
            seq=self.seq[gate],
            ts=T0 + timedelta(seconds=seconds),
            event=self.policy.event,
            serial=serial,
            tier="aaa",
            zone=place.zone,
            door=place.door,
            direction=place.direction.value,
            granted=granted,
            reason=reason,
            clock_trusted=clock,
        )


def view_for(policy, me=None, **kw):
    return VenueView(policy.places, policy.gates, policy.event, me=me, **kw)


def everyone_heard(view, policy, *, now=NOW, offset=0.0):
    """Every gate of the roster has just sent a heartbeat announcing what it logged."""
    for gate in policy.gates:
        applied = view.applied.get(gate)
        view.heard(gate, head=applied.upto if applied else 0, offset=offset, at=now)


def test_a_person_in_the_dressing_rooms_is_inside_backstage_too(venue_policy):
    scan, view = Scans(venue_policy), view_for(venue_policy)
    view.add(scan("artist-in", 1, 0))
    view.add(scan("dressing-in", 1, 35))
    view.add(scan("artist-in", 2, 60))
    assert view.where(1) == "dressing-rooms"
    assert view.inside("dressing-rooms") == 1
    assert view.inside("backstage") == 2  # people, each once: not 3
    assert view.people() == {1: "dressing-rooms", 2: "backstage"}


def test_leaving_an_inner_zone_is_being_in_the_outer_one(venue_policy):
    scan, view = Scans(venue_policy), view_for(venue_policy)
    view.add_all([scan("artist-in", 1, 0), scan("dressing-in", 1, 35)])
    view.add(scan("dressing-out", 1, 600))
    assert view.where(1) == "backstage"
    view.add(scan("artist-out", 1, 700))
    assert view.where(1) == OUTSIDE
    assert view.inside("backstage") == 0


def test_the_entry_and_exit_box_of_one_doorway_never_look_like_a_copy(venue_policy):
    scan, view = Scans(venue_policy), view_for(venue_policy)
    found = view.add_all([scan("artist-in", 7, 0), scan("artist-out", 7, 8)])
    assert found == [] and view.copies == []
    assert view.where(7) == OUTSIDE


def test_one_pass_at_two_doors_faster_than_anyone_walks_is_a_copy(venue_policy):
    scan, view = Scans(venue_policy), view_for(venue_policy)
    view.add(scan("artist-in", 4, 0))
    found = view.add(scan("dressing-in", 4, 5))
    assert [(p.first.gate, p.second.gate, p.gap.seconds) for p in found] == [
        ("artist-in", "dressing-in", 5)
    ]
    assert view.add(scan("pit-in", 5, 0)) == []
    assert view.add(scan("artist-in", 5, 300)) == []  # round the building in 5 minutes


def test_a_denied_try_at_the_next_door_after_a_walk_is_no_copy(venue_policy):
    scan, view = Scans(venue_policy), view_for(venue_policy)
    view.add(scan("artist-in", 2, 0))
    assert view.add(scan("dressing-in", 2, 40, granted=False, reason="zone_not_allowed")) == []


def test_a_sighting_applied_twice_changes_nothing(venue_policy):
    scan, view = Scans(venue_policy), view_for(venue_policy)
    first = scan("artist-in", 1, 0)
    view.add(first)
    assert view.add(first) == []
    assert view.sightings == 1 and view.inside("backstage") == 1


def test_seq_sets_track_what_arrived_out_of_order():
    seqs = SeqSet()
    assert [seqs.add(s) for s in (1, 2, 5, 4, 2)] == [True, True, True, True, False]
    assert seqs.upto == 2 and seqs.missing == 3
    seqs.add(3)
    assert seqs.upto == 5 and not seqs.beyond


@settings(max_examples=60, deadline=None)
@given(st.randoms(use_true_random=False))
def test_every_order_of_arrival_gives_the_same_view(venue_policy, rnd):
    scan = Scans(venue_policy)
    evening = [
        scan("artist-in", 1, 0),
        scan("dressing-in", 1, 35),
        scan("artist-in", 2, 60),
        scan("artist-out", 2, 90),
        scan("artist-in", 2, 200),
        scan("artist-in", 3, 220),
        scan("dressing-in", 3, 224),  # a copy
        scan("dressing-out", 1, 400),
        scan("pit-in", 4, 500),
    ]
    shuffled = list(evening)
    rnd.shuffle(shuffled)
    ordered, mixed = view_for(venue_policy), view_for(venue_policy)
    ordered.add_all(evening)
    mixed.add_all(shuffled)
    assert (
        mixed.people()
        == ordered.people()
        == {1: "backstage", 2: "backstage", 3: "dressing-rooms", 4: "photo-pit"}
    )
    assert mixed.occupancy() == ordered.occupancy()
    assert {(p.first.id, p.second.id) for p in mixed.copies} >= {("artist-in-4", "dressing-in-2")}


# -- at the door ---------------------------------------------------------------


def door(view, gate, policy, now=NOW):
    place = policy.gates[gate]
    return view.at_door(place.zone, place.door, now)


def entering(policy, gate):
    return Gate(zone=policy.gates[gate].zone, direction=Direction.ENTRY)


def test_a_copy_is_denied_at_the_second_door_with_its_own_signal(venue_policy, make_pass):
    scan, view = Scans(venue_policy), view_for(venue_policy, me="dressing-in")
    view.add(scan("artist-in", 4, 0))
    at = T0 + timedelta(seconds=5)
    decision = decide(
        make_pass("aaa", 4),
        venue_policy,
        entering(venue_policy, "dressing-in"),
        at,
        venue=door(view, "dressing-in", venue_policy),
    )
    assert decision.reason is Reason.SUSPECTED_COPY
    assert decision.signal is SignalClass.SUSPECTED_COPY
    assert "artist-entrance" in decision.message and "5 s ago" in decision.message
    later = decide(
        make_pass("aaa", 4),
        venue_policy,
        entering(venue_policy, "dressing-in"),
        T0 + timedelta(seconds=25),
        venue=door(view, "dressing-in", venue_policy),
    )
    assert later.granted


def test_a_copy_check_allows_for_the_boxes_clocks(venue_policy):
    scan = Scans(venue_policy)
    view = view_for(venue_policy, me="dressing-in", margin=timedelta(seconds=2))
    view.add(scan("artist-in", 4, 0))
    here = door(view, "dressing-in", venue_policy)
    assert here.check(4, T0 + timedelta(seconds=17)) is not None  # 17 + 2 < 20
    assert here.check(4, T0 + timedelta(seconds=18)) is None  # 18 + 2: within the skew allowed
    view.heard("artist-in", head=1, offset=-3.0, at=NOW)  # its clock runs 3 s behind ours
    assert here.check(4, T0 + timedelta(seconds=14)) is not None
    assert here.check(4, T0 + timedelta(seconds=15)) is None


def test_a_scan_made_on_an_untrusted_clock_never_makes_a_copy(venue_policy):
    scan, view = Scans(venue_policy), view_for(venue_policy, me="dressing-in")
    view.add(scan("artist-in", 4, 0, clock=False))
    assert door(view, "dressing-in", venue_policy).check(4, T0 + timedelta(seconds=5)) is None


def test_inside_until_it_left_through_any_door(venue_policy, make_pass):
    scan, view = Scans(venue_policy), view_for(venue_policy, me="artist-in")
    gate = entering(venue_policy, "artist-in")
    view.add(scan("artist-in", 2, 0))
    everyone_heard(view, venue_policy)
    at = T0 + timedelta(minutes=10)  # long after the timed window of 3 minutes
    decision = decide(
        make_pass("aaa", 2), venue_policy, gate, at, venue=door(view, "artist-in", venue_policy)
    )
    assert decision.reason is Reason.ALREADY_INSIDE and "has not left" in decision.message
    view.add(scan("artist-out", 2, 590))  # left through the exit box...
    everyone_heard(view, venue_policy)
    decision = decide(
        make_pass("aaa", 2),
        venue_policy,
        gate,
        at,
        venue=door(view, "artist-in", venue_policy),
        entered={2: T0 + timedelta(seconds=500)},  # ...so the timed rule no longer applies
    )
    assert decision.granted


def test_without_every_gate_of_the_zone_the_timed_rule_decides(venue_policy, make_pass):
    scan, view = Scans(venue_policy), view_for(venue_policy, me="artist-in", stale_after=10)
    gate = entering(venue_policy, "artist-in")
    view.add(scan("artist-in", 2, 0))
    everyone_heard(view, venue_policy, now=NOW - 30)  # then the exit box fell silent
    here = door(view, "artist-in", venue_policy)
    assert not here.knows_who_is_inside
    assert "silent for 30 s" in view.unknown_for("backstage", NOW)["artist-out"]
    at = T0 + timedelta(minutes=10)
    assert decide(make_pass("aaa", 2), venue_policy, gate, at, venue=here).granted
    recent = {2: at - timedelta(minutes=1)}
    decision = decide(make_pass("aaa", 2), venue_policy, gate, at, venue=here, entered=recent)
    assert decision.reason is Reason.ALREADY_INSIDE and "came in through this door" in (
        decision.message
    )


@pytest.mark.parametrize(
    ("problem", "why"),
    [
        ({"offset": 12.0}, "clock is 12 s off"),
        ({"clock_trusted": False}, "clock is untrusted"),
        ({"head": 9}, "scans not here yet"),
    ],
)
def test_a_peer_that_cannot_be_counted_on_is_named(venue_policy, problem, why):
    view = view_for(venue_policy, me="artist-in")
    everyone_heard(view, venue_policy)
    fields = {"head": 0, "offset": 0.0, "at": NOW} | problem
    view.heard("dressing-out", **fields)
    assert why in view.unknown_for("backstage", NOW)["dressing-out"]
    assert "dressing-out" not in view.unknown_for("photo-pit", NOW)  # the pit does not need it


def test_a_full_zone_refuses_the_next_person_until_someone_leaves(venue_policy, make_pass):
    scan, view = Scans(venue_policy), view_for(venue_policy, me="dressing-in")
    gate = entering(venue_policy, "dressing-in")
    for serial, second in ((1, 0), (2, 10), (3, 20)):
        view.add(scan("artist-in", serial, second))
    view.add(scan("dressing-in", 1, 100))
    view.add(scan("dressing-in", 2, 110))
    everyone_heard(view, venue_policy)
    at = T0 + timedelta(seconds=200)
    here = door(view, "dressing-in", venue_policy)
    decision = decide(make_pass("aaa", 3), venue_policy, gate, at, venue=here)
    assert decision.reason is Reason.ZONE_FULL and "2 of 2 inside" in decision.message
    assert decision.signal is SignalClass.NOT_HERE
    view.add(scan("dressing-out", 1, 150))
    everyone_heard(view, venue_policy)
    assert decide(make_pass("aaa", 3), venue_policy, gate, at, venue=here).granted


def test_capacity_is_not_enforced_on_a_count_nobody_can_know(venue_policy, make_pass):
    scan, view = Scans(venue_policy), view_for(venue_policy, me="pit-in")
    view.add(scan("pit-in", 1, 0))  # the pit holds 1, but people leave it unscanned
    here = door(view, "pit-in", venue_policy)
    assert not here.knows_who_is_inside
    assert view.unknown_for("photo-pit", NOW) == {"door pit-gate": "no exit box on the roster"}
    assert here.check(2, T0 + timedelta(seconds=60)) is None


def test_entering_an_inner_zone_does_not_count_twice_against_the_outer(organizer_key):
    text = EXAMPLE_POLICY.read_text().replace(
        "# capacity = { photo-pit = 12 }", "capacity = { backstage = 2 }"
    )
    policy = open_policy(
        sign_policy(text + ROSTER, organizer_key, SIGNED_AT), [organizer_key.public_key()]
    )
    scan, view = Scans(policy), view_for(policy, me="dressing-in")
    view.add_all([scan("artist-in", 1, 0), scan("artist-in", 2, 10)])
    everyone_heard(view, policy)
    here = door(view, "dressing-in", policy)
    assert here.check(1, T0 + timedelta(seconds=100)) is None  # backstage is full, 1 is in it
    artist = door(view, "artist-in", policy)
    reason, why = artist.check(3, T0 + timedelta(seconds=100))
    assert reason == "zone_full" and "backstage is full (2 of 2 inside)" in why


def test_an_exit_is_never_stopped_by_the_venue(venue_policy, make_pass):
    scan, view = Scans(venue_policy), view_for(venue_policy, me="artist-out")
    view.add(scan("pit-in", 4, 0))
    decision = decide(
        make_pass("aaa", 4),
        venue_policy,
        Gate(zone="backstage", direction=Direction.EXIT),
        T0 + timedelta(seconds=3),
        venue=door(view, "artist-out", venue_policy),
    )
    assert decision.granted


def test_the_report_flags_the_same_copies_as_the_live_view(venue_policy, tmp_path):
    """The manager's report, run on the same scans, pairs the same scans."""
    import sqlite3

    from scanner.manager.report import write_csv

    from .test_report import create_merged_db, index_merged_db

    scan, view = Scans(venue_policy), view_for(venue_policy)
    evening = [
        scan("artist-in", 1, 0),
        scan("dressing-in", 1, 35),
        scan("artist-in", 3, 220),
        scan("dressing-in", 3, 224),
        scan("artist-in", 5, 300),
        scan("artist-out", 5, 308),
        scan("pit-in", 6, 400),
        scan("artist-in", 6, 500),
        scan("artist-in", 7, 600),
        scan("dressing-in", 7, 610, granted=False, reason="zone_not_allowed"),
    ]
    view.add_all(evening)
    db = tmp_path / "all.db"
    conn = create_merged_db(db)
    for s in evening:
        conn.execute(
            "INSERT INTO scans (id, seq, ts, gate, zone, direction, door, event, serial, tier, "
            "decision, reason, clock) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                s.id,
                s.seq,
                s.ts.astimezone(ZoneInfo("UTC")).isoformat().replace("+00:00", "Z"),
                s.gate,
                s.zone,
                s.direction,
                s.door,
                s.event,
                s.serial,
                s.tier,
                "granted" if s.granted else "denied",
                s.reason,
                "trusted",
            ],
        )
    index_merged_db(conn)
    conn.close()
    write_csv(db, tmp_path / "all.csv", policy=venue_policy)
    import csv

    with (tmp_path / "all.csv").open(newline="") as f:
        flagged = {r["id"] for r in csv.DictReader(f) if r["suspected_copy"] == "true"}
    live = set(itertools.chain.from_iterable((p.first.id, p.second.id) for p in view.copies))
    assert (
        flagged
        == live
        == {
            "artist-in-2",
            "dressing-in-2",  # one pass at two doors 4 s apart
            "pit-in-1",
            "artist-in-4",  # round the building in 100 s
            "artist-in-5",
            "dressing-in-3",  # a denied try counts too, as in the report
        }
    )
    assert sqlite3.connect(db).execute("SELECT count(*) FROM scans").fetchone()[0] == 10


# -- the roster's device keys ----------------------------------------------------


def roster_with_keys(*keys):
    out = ""
    for gate, key in zip(("artist-in", "artist-out"), keys, strict=False):
        direction = "entry" if gate.endswith("in") else "exit"
        out += (
            f'\n[gates.{gate}]\ndoor = "artist-entrance"\ndirection = "{direction}"\n'
            f'device_key = "{key}"\n'
        )
    return out


def test_the_roster_names_each_boxs_device_key(organizer_key, other_key):
    from scanner.core.keys import public_key_text

    a, b = public_key_text(organizer_key.public_key()), public_key_text(other_key.public_key())
    text = EXAMPLE_POLICY.read_text() + roster_with_keys(" " + a + " ", b)
    policy = open_policy(sign_policy(text, organizer_key, SIGNED_AT), None)
    assert policy.gates["artist-in"].device_key == a  # one text form, however it was written
    assert policy.gates["artist-out"].device_key == b


@pytest.mark.parametrize(
    ("keys", "says"),
    [
        (("ed25519:AAAA",), "artist-in.device_key"),
        (("age1qqqq",), "starts with 'ed25519:'"),
        (("same", "same"), "the same key as gates.artist-in"),
    ],
)
def test_a_roster_with_a_bad_or_shared_device_key_is_refused(organizer_key, keys, says):
    from scanner.core.keys import public_key_text
    from scanner.errors import PolicyError

    real = public_key_text(organizer_key.public_key())
    keys = tuple(real if k == "same" else k for k in keys)
    with pytest.raises(PolicyError, match=says):
        sign_policy(EXAMPLE_POLICY.read_text() + roster_with_keys(*keys), organizer_key, SIGNED_AT)


def test_a_box_cut_off_from_its_peers_does_not_count_on_them(venue_policy):
    view = view_for(venue_policy, me="artist-in")
    everyone_heard(view, venue_policy)
    assert view.unknown_for("backstage", NOW) == {}
    view.link_up = False  # the broker went away a moment ago: heartbeats are still fresh
    assert view.unknown_for("backstage", NOW)["artist-out"] == "out of reach (no broker)"
