"""The decision beyond the access table: event, revocation, validity
windows, the clock, exits, anti-passback, and the crew's phase override."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from scanner.core.decision import (
    Decision,
    Direction,
    Gate,
    Reason,
    SignalClass,
    UntrustedClock,
    admit_by_hand,
    decide,
)
from scanner.core.policy import open_policy, sign_policy
from scanner.core.schedule import Phase, PhaseOverride

from .conftest import EXAMPLE_POLICY, SIGNED_AT
from .test_access_table import MOMENTS, SHOW_START

BACKSTAGE = Gate(zone="backstage")
BEFORE = MOMENTS["before"]


def test_a_granted_decision_names_the_holder_and_tier(policy, make_pass):
    decision = decide(make_pass("vip", 12, holder="Jane Doe"), policy, BACKSTAGE, BEFORE)
    assert decision.granted and decision.reason is Reason.OK
    assert (decision.serial, decision.tier, decision.holder) == (12, "vip", "Jane Doe")
    assert "Jane Doe" in decision.message and "VIP" in decision.message
    assert decision.signal is SignalClass.GRANTED


def test_a_pass_for_another_event_is_denied(policy, make_pass):
    decision = decide(make_pass("aaa", event="last-years-fest"), policy, BACKSTAGE, BEFORE)
    assert decision.reason is Reason.WRONG_EVENT
    assert decision.event is None


def test_a_pass_of_a_tier_the_policy_lacks_is_denied(policy, make_pass):
    assert decide(make_pass("roadie"), policy, BACKSTAGE, BEFORE).reason is Reason.UNKNOWN_TIER


def test_a_revoked_pass_is_denied_and_signals_like_a_forgery(organizer_key, make_pass):
    text = EXAMPLE_POLICY.read_text().replace("serials = []", "serials = [13]")
    policy = open_policy(sign_policy(text, organizer_key, SIGNED_AT), [organizer_key.public_key()])
    decision = decide(make_pass("aaa", 13), policy, BACKSTAGE, BEFORE)
    assert decision.reason is Reason.REVOKED
    assert decision.signal is SignalClass.FORGED
    assert decide(make_pass("aaa", 14), policy, BACKSTAGE, BEFORE).granted


def test_a_revocation_list_adds_to_the_policy(policy, make_pass):
    decision = decide(make_pass("aaa", 99), policy.with_revocations([99]), BACKSTAGE, BEFORE)
    assert decision.reason is Reason.REVOKED


def test_a_dated_pass_is_refused_before_and_after_its_window(policy, make_pass):
    start, end = BEFORE - timedelta(hours=1), BEFORE + timedelta(hours=1)
    text = make_pass("aaa", not_before=start, not_after=end)
    assert (
        decide(text, policy, BACKSTAGE, start - timedelta(seconds=1)).reason is Reason.NOT_YET_VALID
    )
    assert decide(text, policy, BACKSTAGE, start).granted
    assert decide(text, policy, BACKSTAGE, end).reason is Reason.EXPIRED


def test_a_pass_that_ends_before_the_show_starts(policy, make_pass):
    text = make_pass("working", not_after=SHOW_START)
    assert decide(text, policy, BACKSTAGE, SHOW_START - timedelta(minutes=1)).granted
    assert decide(text, policy, BACKSTAGE, SHOW_START).reason is Reason.EXPIRED


def test_on_an_untrusted_clock_nobody_is_granted_by_default(policy, make_pass):
    decision = decide(make_pass("aaa"), policy, BACKSTAGE, BEFORE, clock_trusted=False)
    assert decision.reason is Reason.CLOCK_UNTRUSTED
    assert decision.signal is SignalClass.FAULT


def test_allow_untimed_still_refuses_dated_passes_on_an_untrusted_clock(policy, make_pass):
    gate = Gate(zone="backstage", untrusted_clock=UntrustedClock.ALLOW_UNTIMED)
    assert decide(make_pass("aaa"), policy, gate, BEFORE, clock_trusted=False).granted
    dated = make_pass("aaa", not_after=BEFORE + timedelta(hours=1))
    assert decide(dated, policy, gate, BEFORE, clock_trusted=False).reason is Reason.CLOCK_UNTRUSTED


def test_leaving_is_allowed_even_when_entering_would_not_be(policy, make_pass):
    exit_gate = Gate(zone="stage", direction=Direction.EXIT)
    text = make_pass("local-crew")
    assert not decide(text, policy, Gate(zone="stage"), MOMENTS["during"]).granted
    decision = decide(text, policy, exit_gate, MOMENTS["during"])
    assert decision.granted and "leaving" in decision.message
    assert decide(text, policy, exit_gate, policy.schedule.curfew + timedelta(hours=1)).granted


def test_a_forged_pass_cannot_leave_either(policy, make_pass, other_key):
    exit_gate = Gate(zone="stage", direction=Direction.EXIT)
    assert (
        decide(make_pass("aaa", key=other_key), policy, exit_gate, BEFORE).reason
        is Reason.UNKNOWN_KEY
    )


def test_a_pass_let_in_moments_ago_is_refused_at_the_same_door(policy, make_pass):
    text = make_pass("aaa", 21)
    entered = {21: BEFORE - timedelta(seconds=30)}
    decision = decide(text, policy, BACKSTAGE, BEFORE, entered=entered)
    assert decision.reason is Reason.ALREADY_INSIDE
    assert decision.signal is SignalClass.ALREADY_INSIDE
    assert "30 s ago" in decision.message and "3 min" in decision.message
    assert decide(text, policy, BACKSTAGE, BEFORE, entered={22: BEFORE}).granted
    # under two minutes in seconds, from two minutes on in minutes
    told = {119: "119 s ago", 120: "2 min ago", 150: "2 min ago"}
    for seconds, words in told.items():
        entered = {21: BEFORE - timedelta(seconds=seconds)}
        assert words in decide(text, policy, BACKSTAGE, BEFORE, entered=entered).message


def test_re_entry_after_the_window_is_allowed(policy, make_pass):
    # a separate exit box never tells this entry box that the holder left:
    # honest re-entry must work once the window has passed
    text = make_pass("aaa", 21)
    window = policy.reentry
    assert window == timedelta(minutes=3)
    just_inside = {21: BEFORE - window + timedelta(seconds=1)}
    assert decide(text, policy, BACKSTAGE, BEFORE, entered=just_inside).reason is (
        Reason.ALREADY_INSIDE
    )
    assert decide(text, policy, BACKSTAGE, BEFORE, entered={21: BEFORE - window}).granted


def test_an_entry_logged_in_the_future_counts_as_just_now(policy, make_pass):
    # a clock that went back must not open the door to a passed-back pass
    entered = {21: BEFORE + timedelta(hours=2)}
    assert (
        decide(make_pass("aaa", 21), policy, BACKSTAGE, BEFORE, entered=entered).reason
        is Reason.ALREADY_INSIDE
    )


def test_anti_passback_can_be_switched_off_for_a_door(policy, make_pass):
    gate = Gate(zone="backstage", anti_passback=False)
    assert decide(make_pass("aaa", 21), policy, gate, BEFORE, entered={21: BEFORE}).granted


def test_an_expired_pass_may_still_leave_and_the_row_says_so(policy, make_pass):
    exit_gate = Gate(zone="backstage", direction=Direction.EXIT)
    text = make_pass("working", not_after=BEFORE - timedelta(hours=1))
    decision = decide(text, policy, exit_gate, BEFORE)
    assert decision.granted
    assert "expired" in decision.message and "leaving is always allowed" in decision.message


def test_on_an_untrusted_clock_people_may_still_leave(policy, make_pass):
    exit_gate = Gate(zone="backstage", direction=Direction.EXIT)
    decision = decide(make_pass("vip"), policy, exit_gate, BEFORE, clock_trusted=False)
    assert decision.granted and "clock cannot be trusted" in decision.message


def test_a_revoked_pass_cannot_leave_through_an_exit_gate(policy, make_pass):
    from dataclasses import replace

    exit_gate = Gate(zone="backstage", direction=Direction.EXIT)
    revoked = replace(policy, revoked=frozenset({31}))
    decision = decide(make_pass("aaa", 31), revoked, exit_gate, BEFORE)
    assert not decision.granted and decision.reason is Reason.REVOKED


def test_allow_untimed_admits_only_what_does_not_depend_on_the_phase(policy, make_pass):
    gate = Gate(zone="stage", untrusted_clock=UntrustedClock.ALLOW_UNTIMED)
    # AAA may enter the stage in every phase: the time does not matter
    assert decide(make_pass("aaa"), policy, gate, BEFORE, clock_trusted=False).granted
    # local crew only before and after the show: an untrusted clock cannot tell
    crew = decide(make_pass("local-crew"), policy, gate, BEFORE, clock_trusted=False)
    assert crew.reason is Reason.CLOCK_UNTRUSTED
    # a VIP is never allowed on stage, whatever the time
    vip = decide(make_pass("vip"), policy, gate, BEFORE, clock_trusted=False)
    assert vip.reason is Reason.ZONE_NOT_ALLOWED


def test_on_an_untrusted_clock_every_answer_still_names_the_person(policy, make_pass):
    # what the guard reads and the log keeps: the holder, serial and tier, in
    # the grant and in both denials the untimed rule gives
    gate = Gate(zone="stage", untrusted_clock=UntrustedClock.ALLOW_UNTIMED)
    for tier, reason in (("aaa", Reason.OK), ("local-crew", Reason.CLOCK_UNTRUSTED),
                         ("vip", Reason.ZONE_NOT_ALLOWED)):  # fmt: skip
        decision = decide(make_pass(tier, 40, holder="Kim Lee"), policy, gate, BEFORE,
                          clock_trusted=False)  # fmt: skip
        assert decision.reason is reason
        assert (decision.holder, decision.serial, decision.tier) == ("Kim Lee", 40, tier)


def test_on_an_untrusted_clock_the_photo_pit_stays_shut_to_photo_passes(policy, make_pass):
    # a photo pass may enter the pit only in the photo window, which an untrusted
    # clock cannot place: the untimed rule must not count it as open all night
    gate = Gate(zone="photo-pit", untrusted_clock=UntrustedClock.ALLOW_UNTIMED)
    decision = decide(make_pass("photo"), policy, gate, BEFORE, clock_trusted=False)
    assert decision.reason is Reason.CLOCK_UNTRUSTED


def test_a_pass_for_the_show_only_is_told_it_may_come_during_the_show(organizer_key, make_pass):
    text = EXAMPLE_POLICY.read_text().replace(
        "[tiers.photo]", '[tiers.band-guest]\nlabel = "Band guest"\nduring = ["backstage"]\n\n'
        "[tiers.photo]",
    )
    policy = open_policy(sign_policy(text, organizer_key, SIGNED_AT), [organizer_key.public_key()])
    decision = decide(make_pass("band-guest"), policy, BACKSTAGE, BEFORE)
    assert decision.reason is Reason.PHASE_NOT_ALLOWED
    assert decision.message.endswith("allowed during the show.")


def test_a_row_let_in_by_hand_says_whom_as_far_as_the_denial_knew(policy, make_pass):
    stage = Gate(zone="stage")
    named = decide(make_pass("vip", 5, holder="Ana Lima"), policy, stage, BEFORE)
    let_in = admit_by_hand(named, "guard-1", "row-1")
    assert let_in.granted and let_in.reason is Reason.OVERRIDE
    assert let_in.message.startswith("Granted by hand: Ana Lima (vip) let in by guard-1;")
    assert (let_in.zone, let_in.serial, let_in.holder) == ("stage", 5, "Ana Lima")
    # the row keeps what the denial believed of the pass: its event, key and phase
    assert (let_in.event, let_in.key_id, let_in.phase) == (named.event, named.key_id, named.phase)
    assert let_in.event == "example-fest-2026" and let_in.key_id and let_in.phase
    nameless = admit_by_hand(decide(make_pass("vip", 7), policy, stage, BEFORE), "guard-1", "r")
    assert nameless.message.startswith("Granted by hand: pass 7 (vip) let in by guard-1;")
    # nothing believed of a card that is no pass of ours: "the person", never a guess
    unknown = Decision(granted=False, reason=Reason.UNKNOWN_KEY, message="", zone="stage",
                       direction=Direction.ENTRY, phase="before", tier="vip")  # fmt: skip
    assert admit_by_hand(unknown, "guard-1", "r").message.startswith(
        "Granted by hand: the person let in by guard-1; the gate had denied it (unknown_key"
    )


def test_a_crew_pass_during_the_show_is_told_when_it_may_come_back(policy, make_pass):
    during = MOMENTS["during"]
    decision = decide(make_pass("local-crew"), policy, Gate(zone="stage"), during)
    assert decision.reason is Reason.PHASE_NOT_ALLOWED
    assert "during the show" in decision.message
    assert "after the show (from 23:00)" in decision.message
    photo = decide(make_pass("local-crew"), policy, Gate(zone="stage"), SHOW_START)
    assert "during the show" in photo.message and "photo window" not in photo.message


def test_explicit_zones_replace_the_tiers_zones_but_not_its_times(policy, make_pass):
    text = make_pass("local-crew", zones=("catering",))
    assert decide(text, policy, Gate(zone="catering"), BEFORE).granted
    assert decide(text, policy, Gate(zone="stage"), BEFORE).reason is Reason.ZONE_NOT_ALLOWED
    assert (
        decide(text, policy, Gate(zone="catering"), MOMENTS["during"]).reason
        is Reason.PHASE_NOT_ALLOWED
    )


@pytest.mark.parametrize(
    ("zones", "told"),
    [
        (("catering",), "catering"),
        (("merch", "catering"), "catering and merch"),  # in the policy's order
        (("stage", "catering", "merch", "backstage"), "stage, backstage, catering and merch"),
        (
            ("stage", "backstage", "green-room", "catering", "merch"),
            "stage, backstage, green-room, catering and 1 more",
        ),
        (
            ("stage", "backstage", "green-room", "catering", "merch", "loading-dock"),
            "stage, backstage, green-room, catering and 2 more",
        ),
        (("no-such-zone",), None),  # nothing of this event: nothing to send them on to
    ],
)
def test_a_pass_refused_at_the_wrong_door_says_where_it_is_for(policy, make_pass, zones, told):
    decision = decide(make_pass("staff", zones=zones), policy, Gate(zone="photo-pit"), BEFORE)
    assert decision.reason is Reason.ZONE_NOT_ALLOWED
    if told is None:
        assert decision.message.endswith("not allowed in photo-pit.")
    else:
        assert decision.message.endswith(f"not allowed in photo-pit; this pass is for {told}.")


def test_a_staff_pass_without_zones_is_refused(policy, make_pass):
    decision = decide(make_pass("staff"), policy, Gate(zone="catering"), BEFORE)
    assert decision.reason is Reason.ZONE_NOT_ALLOWED
    assert "must name its zones" in decision.message


class TestPhaseOverride:
    """Shows run late: the crew corrects the phase on site."""

    def test_a_late_show_keeps_the_before_phase(self, policy, make_pass):
        late = PhaseOverride(Phase.BEFORE, SHOW_START - timedelta(minutes=5))
        text = make_pass("meet-greet")
        at = SHOW_START + timedelta(minutes=20)
        gate = Gate(zone="meet-greet-room")
        assert not decide(text, policy, gate, at).granted
        assert decide(text, policy, gate, at, override=late).granted

    def test_the_photo_window_starts_when_the_show_really_starts(self, policy, make_pass):
        started = SHOW_START + timedelta(minutes=30)
        on = PhaseOverride(Phase.DURING, started)
        pit, text = Gate(zone="photo-pit"), make_pass("photo")
        assert decide(text, policy, pit, started + timedelta(minutes=10), override=on).granted
        assert not decide(text, policy, pit, started + timedelta(minutes=16), override=on).granted

    def test_the_show_ending_early_opens_the_after_show(self, policy, make_pass):
        ended = SHOW_START + timedelta(hours=2)
        decision = decide(
            make_pass("after-show"),
            policy,
            BACKSTAGE,
            ended + timedelta(minutes=1),
            override=PhaseOverride(Phase.AFTER, ended),
        )
        assert decision.granted

    def test_an_override_never_opens_the_doors_after_curfew(self, policy, make_pass):
        on = PhaseOverride(Phase.AFTER, SHOW_START)
        decision = decide(make_pass("aaa"), policy, BACKSTAGE, policy.schedule.curfew, override=on)
        assert decision.reason is Reason.OUTSIDE_EVENT

    def test_an_override_set_later_than_now_is_ignored(self, policy, make_pass):
        future = PhaseOverride(Phase.AFTER, SHOW_START + timedelta(hours=1))
        text = make_pass("after-show")
        assert not decide(text, policy, BACKSTAGE, SHOW_START, override=future).granted


@pytest.mark.parametrize("reason", list(Reason))
def test_every_reason_has_a_signal_and_only_ok_grants(reason):
    # (an override is a guard's grant by hand, made by the scan loop, never by decide())
    assert isinstance(reason.signal, SignalClass)
    assert (reason.signal is SignalClass.GRANTED) == (reason in (Reason.OK, Reason.OVERRIDE))


class TestWhatTheGuardIsTold:
    """The words of a decision are what a guard says to the holder: exact."""

    @pytest.mark.parametrize(
        ("tier", "zone", "moment", "told"),
        [
            ("local-crew", "stage", "during",
             "allowed before the show (until 20:00) and after the show (from 23:00)"),
            ("photo", "photo-pit", "after",
             "allowed in the photo window (the first 15 min of the show)"),
            ("after-show", "green-room", "before", "allowed after the show (from 23:00)"),
            ("meet-greet", "meet-greet-room", "during",
             "allowed before the show (until 20:00)"),
        ],
    )
    def test_a_phase_denial_says_when_the_pass_opens_this_door(
        self, policy, make_pass, tier, zone, moment, told
    ):
        decision = decide(make_pass(tier, 5, holder="Lee Chan"), policy, Gate(zone=zone),
                          MOMENTS[moment])
        assert decision.reason is Reason.PHASE_NOT_ALLOWED
        label = policy.tiers[tier].label
        phase = {"during": "during", "after": "after", "before": "before"}[moment]
        assert decision.message == (
            f"Denied: Lee Chan ({label}): not allowed in {zone} {phase} the show; {told}."
        )

    def test_zones_named_on_a_pass_keep_the_tiers_times_in_the_words(self, policy, make_pass):
        text = make_pass("local-crew", 5, zones=("catering",))
        decision = decide(text, policy, Gate(zone="catering"), MOMENTS["during"])
        assert decision.message.endswith(
            "allowed before the show (until 20:00) and after the show (from 23:00)."
        )

    def test_the_times_on_a_dated_pass_are_shown_in_the_events_zone(self, policy, make_pass):
        start = datetime.fromisoformat("2026-12-05T18:00:00+01:00")
        text = make_pass("working", 5, holder="Jo Park", not_before=start)
        decision = decide(text, policy, BACKSTAGE, start - timedelta(minutes=1))
        assert decision.message == "Denied: Jo Park (Working crew): valid from Sat 05 Dec 18:00."

    def test_re_entry_words_count_seconds_then_minutes(self, policy, make_pass):
        text = make_pass("aaa", 21)
        now = decide(text, policy, BACKSTAGE, BEFORE, entered={21: BEFORE})
        assert "came in through this door 0 s ago" in now.message
        entered = {21: BEFORE - timedelta(seconds=150)}
        later = decide(text, policy, BACKSTAGE, BEFORE, entered=entered)
        assert "came in through this door 2 min ago" in later.message

    def test_untimed_entry_on_an_untrusted_clock_says_why_it_was_allowed(self, policy, make_pass):
        gate = Gate(zone="stage", untrusted_clock=UntrustedClock.ALLOW_UNTIMED)
        ok = decide(make_pass("aaa", 5, holder="Alex"), policy, gate, BEFORE, clock_trusted=False)
        assert ok.message == (
            "Granted: Alex (Access All Areas) entering stage (the gate's clock cannot be "
            "trusted; this pass may enter here at any time of the show)."
        )
        crew = decide(make_pass("local-crew", 6, holder="Lee"), policy, gate, BEFORE,
                      clock_trusted=False)
        assert crew.message == (
            "Denied: Lee (Local crew) may enter stage only at some times of the show, and "
            "the gate's clock cannot be trusted; call a technician."
        )
        vip = decide(make_pass("vip", 7, holder="Sam"), policy, gate, BEFORE, clock_trusted=False)
        assert vip.message == (
            "Denied: Sam (VIP / Guest): not allowed in stage; this pass is for backstage and "
            "green-room."
        )


def test_a_pass_for_rooms_inside_backstage_is_refused_at_backstage_saying_where_it_is_for(
    policy, make_pass
):
    text = make_pass("staff", 8, holder="Ida", zones=["green-room", "production-office"])
    decision = decide(text, policy, BACKSTAGE, BEFORE)
    assert decision.reason is Reason.ZONE_NOT_ALLOWED
    assert decision.message.endswith(
        "not allowed in backstage; this pass is for green-room and production-office."
    )


def test_a_decision_carries_everything_the_log_and_scanner_check_print(policy, make_pass):
    from scanner.core.keys import key_id

    decision = decide(make_pass("vip", 42, holder="Sam Okafor"), policy, BACKSTAGE, BEFORE)
    assert decision.as_dict() == {
        "granted": True,
        "reason": "ok",
        "tier": "vip",
        "serial": 42,
        "holder": "Sam Okafor",
        "event": "example-fest-2026",
        "zone": "backstage",
        "direction": "entry",
        "phase": "before",
        "key_id": key_id(policy.pass_keys[next(iter(policy.pass_keys))]),
        "message": "Granted: Sam Okafor (VIP / Guest) entering backstage.",
    }
    forged = decide("BP1:NOT-A-PASS", policy, BACKSTAGE, BEFORE).as_dict()
    assert forged["granted"] is False and forged["reason"] == "malformed"
    assert forged["serial"] is None and forged["event"] is None and forged["zone"] == "backstage"
