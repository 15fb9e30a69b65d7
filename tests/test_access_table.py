"""Every tier against every zone in every phase of the example policy, as
../shared/PRODUCT.md describes them. The expected table is written out here
by hand from the product description, independently of the policy file, and
each cell is checked through the real decision."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from scanner.core.decision import Gate, Reason, decide

ZONES = (
    "stage",
    "backstage",
    "green-room",
    "dressing-rooms",
    "production-office",
    "photo-pit",
    "meet-greet-room",
    "catering",
    "loading-dock",
    "merch",
)
ALL = frozenset(ZONES)
NONE: frozenset[str] = frozenset()

# The moments we test, in the example event (Europe/Berlin, 5 Dec 2026).
SHOW_START = datetime.fromisoformat("2026-12-05T20:00:00+01:00")
MOMENTS = {
    "before": SHOW_START - timedelta(hours=3),
    "photo": SHOW_START + timedelta(minutes=5),  # first three songs
    "during": SHOW_START + timedelta(minutes=40),  # after the photo window
    "after": SHOW_START + timedelta(hours=3, minutes=30),
}

# tier -> moment -> zones it may enter (PRODUCT.md, "Pass tiers").
EXPECTED: dict[str, dict[str, frozenset[str]]] = {
    "aaa": {m: ALL for m in MOMENTS},
    "vip": {m: frozenset({"green-room", "backstage"}) for m in MOMENTS},
    "after-show": {
        "before": NONE,
        "photo": NONE,
        "during": NONE,
        "after": frozenset({"green-room", "backstage"}),
    },
    "working": {m: ALL - {"dressing-rooms"} for m in MOMENTS},
    "local-crew": {
        "before": frozenset({"stage", "backstage", "loading-dock"}),
        "photo": NONE,
        "during": NONE,
        "after": frozenset({"stage", "backstage", "loading-dock"}),
    },
    "photo": {"before": NONE, "photo": frozenset({"photo-pit"}), "during": NONE, "after": NONE},
    "meet-greet": {
        "before": frozenset({"meet-greet-room"}),
        "photo": NONE,
        "during": NONE,
        "after": NONE,
    },
    # staff: the zones named on the pass, at any time of the event
    "staff": {m: frozenset({"catering", "merch"}) for m in MOMENTS},
}

CELLS = [(tier, moment, zone) for tier in EXPECTED for moment in MOMENTS for zone in ZONES]


@pytest.mark.parametrize(("tier", "moment", "zone"), CELLS)
def test_every_tier_zone_and_phase_follows_the_product_table(policy, make_pass, tier, moment, zone):
    fields = {"zones": ("catering", "merch")} if tier == "staff" else {}
    text = make_pass(tier, 7, **fields)
    decision = decide(text, policy, Gate(zone=zone), MOMENTS[moment])
    allowed = zone in EXPECTED[tier][moment]
    assert decision.granted is allowed, decision.message
    if not allowed:
        assert decision.reason in {Reason.ZONE_NOT_ALLOWED, Reason.PHASE_NOT_ALLOWED}


def test_the_table_covers_every_tier_and_zone_of_the_policy(policy):
    assert set(policy.tiers) == set(EXPECTED)
    assert set(policy.zones) == set(ZONES)


@pytest.mark.parametrize("tier", sorted(EXPECTED))
def test_nobody_gets_in_before_load_in_or_after_curfew(policy, make_pass, tier):
    fields = {"zones": ("catering", "merch")} if tier == "staff" else {}
    text = make_pass(tier, 8, **fields)
    for at in (policy.schedule.opens - timedelta(seconds=1), policy.schedule.curfew):
        decision = decide(text, policy, Gate(zone="backstage"), at)
        assert not decision.granted
        assert decision.reason is Reason.OUTSIDE_EVENT


def test_local_crew_is_refused_on_stage_during_the_show_as_a_phase_problem(policy, make_pass):
    decision = decide(make_pass("local-crew"), policy, Gate(zone="stage"), MOMENTS["during"])
    assert decision.reason is Reason.PHASE_NOT_ALLOWED
    assert "during the show" in decision.message


def test_working_crew_is_refused_in_the_dressing_rooms_as_a_zone_problem(policy, make_pass):
    decision = decide(make_pass("working"), policy, Gate(zone="dressing-rooms"), MOMENTS["before"])
    assert decision.reason is Reason.ZONE_NOT_ALLOWED


def test_photo_pass_works_only_in_the_first_minutes_of_the_show(policy, make_pass):
    text = make_pass("photo")
    window = policy.schedule.photo_window
    pit = Gate(zone="photo-pit")
    assert decide(text, policy, pit, SHOW_START).granted
    assert decide(text, policy, pit, SHOW_START + window - timedelta(seconds=1)).granted
    assert not decide(text, policy, pit, SHOW_START + window).granted
    assert not decide(text, policy, pit, SHOW_START - timedelta(seconds=1)).granted
