"""An event over several show days: each day's own phases (one running past
midnight), nobody in between days, an override that holds only on its day,
day passes, and the policy's mistakes named by the day."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from scanner.core.decision import Reason, decide
from scanner.core.policy import open_policy, policy_body_from_toml, sign_policy
from scanner.core.schedule import Phase, PhaseOverride, phase_at
from scanner.errors import PolicyError

from .conftest import EXAMPLE_POLICY
from .test_decision import BACKSTAGE

CET = timezone(timedelta(hours=1))
ONE_DAY = EXAMPLE_POLICY.read_text().split("[schedule]")[1].split("[rules]")[0]
DAYS = """
photo_window_minutes = 15

[[schedule.days]]             # Saturday, into Sunday morning
opens = 2026-12-05T08:00:00
doors = 2026-12-05T18:30:00
show_start = 2026-12-05T20:00:00
show_end = 2026-12-05T23:00:00
curfew = 2026-12-06T01:00:00

[[schedule.days]]             # Sunday: an afternoon show, its own photo window
opens = 2026-12-06T10:00:00
doors = 2026-12-06T16:00:00
show_start = 2026-12-06T17:00:00
show_end = 2026-12-06T22:00:00
curfew = 2026-12-06T23:30:00
photo_window_minutes = 30

"""


def festival_toml(days: str = DAYS) -> str:
    return EXAMPLE_POLICY.read_text().replace(ONE_DAY, days)


@pytest.fixture(scope="module")
def festival(organizer_key):
    signed = sign_policy(festival_toml(), organizer_key, datetime(2026, 12, 1, tzinfo=CET))
    return open_policy(signed, [organizer_key.public_key()])


def at(day: int, hm: str) -> datetime:
    h, m = (int(x) for x in hm.split(":"))
    return datetime(2026, 12, day, h, m, tzinfo=CET)


def test_each_day_has_its_own_phases_and_nobody_is_let_in_between_days(festival):
    assert len(festival.days) == 2
    expected = {
        at(5, "07:59"): None,
        at(5, "21:00"): Phase.DURING,
        at(6, "00:30"): Phase.AFTER,  # Saturday's show runs on past midnight
        at(6, "03:00"): None,  # between the days
        at(6, "12:00"): Phase.BEFORE,
        at(6, "17:20"): Phase.DURING,
        at(6, "22:30"): Phase.AFTER,
        at(6, "23:30"): None,  # the last curfew
    }
    for when, phase in expected.items():
        assert phase_at(festival.day_at(when), when).phase is phase, when
    # the second day's photo window is its own: 30 minutes
    assert phase_at(festival.day_at(at(6, "17:20")), at(6, "17:20")).photo_window
    assert not phase_at(festival.day_at(at(5, "20:20")), at(5, "20:20")).photo_window
    assert festival.expires == at(6, "23:30")


def test_an_override_set_on_one_day_does_not_carry_into_the_next(festival):
    show_over = PhaseOverride(Phase.AFTER, at(5, "22:10"))
    assert phase_at(festival.day_at(at(5, "22:30")), at(5, "22:30"), show_over).overridden
    sunday = phase_at(festival.day_at(at(6, "17:30")), at(6, "17:30"), show_over)
    assert sunday.phase is Phase.DURING and not sunday.overridden


def test_between_days_the_door_says_when_it_opens_again(festival, make_pass):
    decision = decide(make_pass("aaa", 3, holder="Ann"), festival, BACKSTAGE, at(6, "03:00"))
    assert decision.reason is Reason.OUTSIDE_EVENT
    assert "it opens again Sun 06 Dec 10:00, day 2" in decision.message
    after = decide(make_pass("aaa", 3, holder="Ann"), festival, BACKSTAGE, at(7, "09:00"))
    assert "its last day ended Sun 06 Dec 23:30" in after.message


def test_a_day_pass_for_sunday_opens_doors_on_sunday_only(festival, make_pass):
    sunday = festival.days[1]
    text = make_pass("vip", 4, holder="Bo", not_before=sunday.opens, not_after=sunday.curfew)
    assert decide(text, festival, BACKSTAGE, at(5, "21:00")).reason is Reason.NOT_YET_VALID
    assert decide(text, festival, BACKSTAGE, at(6, "17:30")).granted
    assert decide(text, festival, BACKSTAGE, at(6, "23:40")).reason is Reason.EXPIRED


@pytest.mark.parametrize(
    ("days", "message"),
    [
        (DAYS.replace("opens = 2026-12-06T10:00:00", "opens = 2026-12-06T00:30:00"),
         "schedule.days[1].opens (2026-12-06T00:30:00+01:00) is before the curfew of the day "
         "before"),
        (DAYS.replace("show_end = 2026-12-06T22:00:00", "show_end = 2026-12-06T16:30:00"),
         "schedule.days[1].show_end"),
        (DAYS.replace("curfew = 2026-12-06T23:30:00\n", ""), "schedule.days[1].curfew: missing"),
        (DAYS.replace("doors = 2026-12-06T16:00:00", "dors = 2026-12-06T16:00:00"),
         "schedule.days[1].dors: unknown key"),
        ("\ndays = []\n\n", "schedule.days: a list of 1 to 31 show days"),
    ],
)
def test_a_mistake_in_a_day_names_the_day_and_the_key(days, message):
    with pytest.raises(PolicyError) as err:
        policy_body_from_toml(festival_toml(days))
    assert message in str(err.value)


def test_a_one_day_policy_reads_as_before(policy):
    assert len(policy.days) == 1 and policy.curfew == policy.schedule.curfew
