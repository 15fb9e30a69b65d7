"""A two-day festival, as the organizer and a door live it: the policy's days
written in local time and signed, shown back day by day; a day pass for
Sunday issued from the batch CSV with its card saying which day; then the
real gate daemon on a fake clock, from Saturday's show past midnight, through
the closed night, into Sunday's show."""

from __future__ import annotations

import html
import re
from datetime import datetime
from zoneinfo import ZoneInfo

from ..test_show_days import festival_toml
from ..venue_support import VenueClock, set_up_venue, start_gate
from .test_organizer import scanner

BERLIN = ZoneInfo("Europe/Berlin")


def at(day: int, hms: str) -> datetime:
    return datetime.fromisoformat(f"2026-12-{day:02d}T{hms}").replace(tzinfo=BERLIN)


def test_a_two_day_festival_from_the_organizers_desk_to_the_door_across_midnight(
    tmp_path, organizer_key
):
    # the artist entrance's box, set up with the organizer's key in the roster
    box = set_up_venue(tmp_path / "door", organizer_key, {"artist-in": ("artist-entrance",
                                                                        "entry")},
                       policy_text=festival_toml())["artist-in"]  # fmt: skip

    # 1. the organizer signs a policy of two show days and reads it back
    key, pub = tmp_path / "door/keys/organizer.key", tmp_path / "door/keys/organizer.pub"
    (tmp_path / "festival.toml").write_text(festival_toml())
    policy = tmp_path / "festival.policy"
    scanner("policy", "sign", tmp_path / "festival.toml", "--key", key, "-o", policy)
    shown = scanner("policy", "show", policy, "--trust", pub).output
    assert "day 1\nopens    Sat 2026-12-05 08:00" in shown
    assert "day 2\nopens    Sun 2026-12-06 10:00" in shown
    assert "curfew   Sun 2026-12-06 23:30" in shown

    # 2. a day pass for Sunday and a pass for the whole run, from a CSV
    (tmp_path / "crew.csv").write_text("holder,tier,day\nBo Sunday,vip,2\nCy Weekend,aaa,\n")
    out = tmp_path / "passes"
    scanner("issue", "--key", key, "--policy", policy, "--batch", tmp_path / "crew.csv",
            "--out", out)
    sheet = (out / "sheet.html").read_text()
    assert "day 2 only: Sun 06 Dec 10:00 to Sun 06 Dec 23:30" in sheet
    assert "Sat 05 Dec to Sun 06 Dec 2026" in sheet  # the event's days, on every card
    # a day the festival does not have is refused before anything is issued
    wrong = scanner("issue", "--key", key, "--policy", policy, "--tier", "vip", "--holder",
                    "Di", "--day", "3", ok=False)
    assert wrong.exit_code == 2 and "the event has 2 show days" in wrong.output
    # the README's single day pass, by the date that day opens
    scanner("issue", "--key", key, "--policy", policy, "--tier", "vip", "--holder", "Di",
            "--day", "2026-12-06")
    di = scanner("passes", "show", "Di", "--policy", policy).output
    assert "window    06 Dec 10:00..06 Dec 23:30" in di  # Sunday's opening to its curfew
    def text_of(name: str) -> str:
        shown = scanner("passes", "show", name, "--policy", policy).output
        return next(line[len("text      "):] for line in shown.splitlines()
                    if line.startswith("text "))  # fmt: skip

    bo, cy = text_of("Bo Sunday"), text_of("Cy Weekend")

    # 3. the artist entrance, the real daemon, on a clock the test moves
    clock = VenueClock(at(5, "21:00:00"))
    gate = start_gate(box, clock)
    try:
        assert gate.status()["phase"] == "during (day 1 of 2)"
        first = gate.present(cy)
        assert first["decision"] == "granted", (first["reason"], first["message"])
        row = gate.present(bo)
        assert row["reason"] == "not_yet_valid" and "valid from Sun 06 Dec 10:00" in row["message"]

        clock.set(at(6, "00:30:00"))  # Saturday's after-show, past midnight
        assert gate.status()["phase"] == "after (day 1 of 2)"
        assert gate.present(bo)["reason"] == "not_yet_valid"

        clock.set(at(6, "03:00:00"))  # the festival sleeps
        row = gate.present(cy)
        assert row["reason"] == "outside_event"
        assert "it opens again Sun 06 Dec 10:00, day 2" in row["message"]

        clock.set(at(6, "17:10:00"))  # Sunday's show, in its photo window
        assert gate.status()["phase"] == "during (photo window) (day 2 of 2)"
        assert gate.present(bo)["decision"] == "granted"
        assert gate.present(cy)["decision"] == "granted"

        clock.set(at(6, "23:45:00"))  # after the last curfew
        assert gate.present(cy)["reason"] == "outside_event"
    finally:
        assert gate.halt() == 0

    # 4. the manager's report of that door's log, one row per show day
    scanner("logs", "report", box.db, "--policy", policy, "--trust", pub,
            "-o", tmp_path / "report.html")  # fmt: skip
    page = (tmp_path / "report.html").read_text()
    days = page.split('<section id="days">', 1)[1].split("</section>", 1)[0]
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", tr) for tr in re.findall(r"<tr><td>.*?</tr>", days)]
    rows = [[html.unescape(cell) for cell in row] for row in cells]
    # day, opens, curfew, scans, granted, denied, let in by hand, passes let in
    assert rows == [
        ["Day 1", "Sat 05 Dec 08:00", "Sun 06 Dec 01:00", "3", "1", "2", "0", "1"],
        ["Day 2", "Sun 06 Dec 10:00", "23:30", "2", "2", "0", "0", "2"],
        ["outside the show days", "", "", "2", "0", "2", "0", "0"],
    ]
