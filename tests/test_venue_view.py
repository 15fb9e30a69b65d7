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
from scanner.errors import PolicyError

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
        entered={2: T0 + timedelta(seconds=400)},  # ...3 min 20 s after coming in
    )
    assert decision.granted


def test_someone_in_the_dressing_rooms_is_already_inside_at_the_artist_entrance(
    venue_policy, make_pass
):
    """A pass whose holder went on into a zone within backstage is still inside
    backstage: shown again at the artist entrance long after the timed window
    (passed back over the fence), it is refused as already inside."""
    scan, view = Scans(venue_policy), view_for(venue_policy, me="artist-in")
    view.add_all([scan("artist-in", 5, 0), scan("dressing-in", 5, 40)])
    everyone_heard(view, venue_policy)
    assert view.where(5) == "dressing-rooms"
    at = T0 + timedelta(minutes=10)
    decision = decide(make_pass("aaa", 5), venue_policy, entering(venue_policy, "artist-in"),
                      at, venue=door(view, "artist-in", venue_policy))
    assert decision.reason is Reason.ALREADY_INSIDE
    assert "already inside backstage" in decision.message


def test_an_exit_never_lowers_the_timed_re_entry_floor(venue_policy, make_pass):
    """A holder comes in, holds the pass to the exit box a few metres away
    without leaving, and hands it back over the fence: the second person is
    refused for the policy's re-entry window, as a lone box refuses."""
    scan, view = Scans(venue_policy), view_for(venue_policy, me="artist-in")
    gate = entering(venue_policy, "artist-in")
    view.add(scan("artist-in", 2, 0))
    view.add(scan("artist-out", 2, 10))  # "left" 10 s later
    everyone_heard(view, venue_policy)
    here = door(view, "artist-in", venue_policy)
    assert here.knows_who_is_inside and view.where(2) == OUTSIDE
    entered = {2: T0}
    passed_back = decide(
        make_pass("aaa", 2), venue_policy, gate, T0 + timedelta(seconds=30), venue=here,
        entered=entered,
    )
    assert passed_back.reason is Reason.ALREADY_INSIDE
    assert "cannot come in again for 3 min" in passed_back.message
    back_later = decide(
        make_pass("aaa", 2), venue_policy, gate, T0 + timedelta(minutes=3, seconds=1),
        venue=here, entered=entered,
    )
    assert back_later.granted


def test_the_policys_re_entry_window_is_the_floor_it_says(organizer_key, make_pass):
    """reentry_minutes = 10 refuses for ten minutes, not the default three."""
    text = EXAMPLE_POLICY.read_text().replace("reentry_minutes = 3", "reentry_minutes = 10")
    policy = open_policy(sign_policy(text, organizer_key, SIGNED_AT), None)
    gate = Gate(zone="backstage", direction=Direction.ENTRY)
    entered = {3: T0}
    early = decide(make_pass("aaa", 3), policy, gate, T0 + timedelta(minutes=9), entered=entered)
    assert early.reason is Reason.ALREADY_INSIDE and "for 10 min" in early.message
    assert decide(
        make_pass("aaa", 3), policy, gate, T0 + timedelta(minutes=10), entered=entered
    ).granted


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


def report_flags(policy, scans, tmp_path):
    """The ids the manager's report (its CSV) flags as suspected copies, for
    the same scans merged from the boxes' exports."""
    import csv

    from scanner.manager.report import write_csv

    from .test_report import create_merged_db, index_merged_db

    db = tmp_path / "all.db"
    conn = create_merged_db(db)
    for s in scans:
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
    write_csv(db, tmp_path / "all.csv", policy=policy)
    with (tmp_path / "all.csv").open(newline="") as f:
        return {r["id"] for r in csv.DictReader(f) if r["suspected_copy"] == "true"}


def live_flags(view):
    return set(itertools.chain.from_iterable((p.first.id, p.second.id) for p in view.copies))


def test_the_report_flags_the_same_copies_as_the_live_view(venue_policy, tmp_path):
    """The manager's report, run on the same scans, pairs the same scans."""
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
    flagged = report_flags(venue_policy, evening, tmp_path)
    assert (
        flagged
        == live_flags(view)
        == {
            "artist-in-2",
            "dressing-in-2",  # one pass at two doors 4 s apart
            "pit-in-1",
            "artist-in-4",  # round the building in 100 s
            "artist-in-5",
            "dressing-in-3",  # a denied try counts too, as in the report
        }
    )


# -- walks inside a zone and round the building ---------------------------------

TWO_DOORS = """
[event]
id = "two-doors"
name = "Two doors"
timezone = "Europe/Berlin"

[venue]
zones = ["backstage"]

[doors.stage-door]
from = "outside"
to = "backstage"

[doors.loading-bay]
from = "outside"
to = "backstage"

[[walks]]
doors = ["stage-door", "loading-bay"]
seconds = 180
{through}

[schedule]
opens = 2026-12-05T08:00:00+01:00
doors = 2026-12-05T18:30:00+01:00
show_start = 2026-12-05T20:00:00+01:00
show_end = 2026-12-05T23:00:00+01:00
curfew = 2026-12-06T01:00:00+01:00
photo_window_minutes = 15

[tiers.working]
label = "Working crew"
before = ["*"]
during = ["*"]
after = ["*"]

[gates.stage-in]
door = "stage-door"
direction = "entry"

[gates.stage-out]
door = "stage-door"
direction = "exit"

[gates.bay-in]
door = "loading-bay"
direction = "entry"

[gates.bay-out]
door = "loading-bay"
direction = "exit"
"""


@pytest.mark.parametrize("through", ['through = "outside"', ""], ids=["outside", "any path"])
def test_in_at_one_door_and_out_at_another_of_the_zone_is_a_walk_inside_not_a_copy(
    organizer_key, tmp_path, through
):
    """A crew member comes in at the stage door and leaves by the loading bay
    26 s later, through the building. The 180 s walk is round it, outside:
    no alarm, live or in the report. A pass let out at the stage door and in
    at the loading bay 30 s later went round the building faster than anyone
    walks it: that is the copy."""
    policy = open_policy(
        sign_policy(TWO_DOORS.format(through=through), organizer_key, SIGNED_AT), None
    )
    scan, view = Scans(policy), view_for(policy)
    night = [
        scan("stage-in", 1, 0),
        scan("bay-out", 1, 26),  # a walk inside: never a copy
        scan("stage-out", 2, 100),
        scan("bay-in", 2, 130),  # out one door, in the other, 30 s: passed round
        scan("stage-in", 3, 200),
        scan("bay-in", 3, 260),  # in twice, 60 s apart: one of them is not the holder
    ]
    view.add_all(night)
    assert (
        report_flags(policy, night, tmp_path)
        == live_flags(view)
        == {"stage-out-1", "bay-in-1", "stage-in-2", "bay-in-2"}
    )
    # at the door, live: the loading bay's entry box stops the pass passed round
    here = view_for(policy, me="bay-in")
    here.add(scan("stage-out", 4, 300))
    stop = here.at_door("backstage", "loading-bay", NOW).check(4, T0 + timedelta(seconds=320))
    assert stop is not None and stop[0] == "suspected_copy" and "under 3 min" in stop[1]


def test_a_walk_through_a_zone_neither_door_opens_onto_is_refused(organizer_key):
    text = TWO_DOORS.format(through='through = "backstage-office"')
    with pytest.raises(PolicyError, match=r"walks\[0\]\.through: 'backstage-office' is not a zone"):
        sign_policy(text, organizer_key, SIGNED_AT)


def test_a_walk_naming_a_misspelt_door_names_it(organizer_key):
    text = TWO_DOORS.format(through="").replace(
        'doors = ["stage-door", "loading-bay"]', 'doors = ["stage-door", "loadin-bay"]'
    )
    with pytest.raises(PolicyError, match=r"walks\[0\]\.doors: 'loadin-bay' is not a door"):
        sign_policy(text, organizer_key, SIGNED_AT)


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


def test_heartbeats_held_back_and_released_late_never_make_a_silent_peer_look_current(
    venue_policy,
):
    """A peer's heartbeats arrive on time; then someone on the LAN holds them
    back and releases each one 30 s late, every 2 s as if live. At no moment
    does the view count on that peer: it is silent (its newest news is old),
    or once the late samples are all there is, its clock looks 30 s off."""
    view = view_for(venue_policy, me="artist-in", stale_after=10)
    for t in range(0, 20, 2):
        view.heard("artist-out", head=0, offset=0.0, at=NOW + t)
    assert view.lagging("artist-out", NOW + 19) is None
    for t in range(20, 60, 2):
        at = NOW + 30 + t  # sent at NOW + t, arriving 30 s later
        view.heard("artist-out", head=0, offset=-30.0, at=at)
        why = view.lagging("artist-out", at + 0.5)
        assert why is not None and ("silent" in why or "30 s off" in why), (t, why)


def test_a_peer_whose_clock_is_set_back_is_counted_on_again_soon(venue_policy):
    """The other side of that rule: a peer whose clock is corrected by 20 s
    (every sample then 20 s lower) is not locked out for good: once the
    samples from before the correction have rolled out, it is current."""
    view = view_for(venue_policy, me="artist-in", stale_after=10, max_offset=timedelta(seconds=25))
    for t in range(0, 20, 2):
        view.heard("artist-out", head=0, offset=0.0, at=NOW + t)
    for t in range(20, 60, 2):
        view.heard("artist-out", head=0, offset=-20.0, at=NOW + t)
    assert view.lagging("artist-out", NOW + 59) is None
