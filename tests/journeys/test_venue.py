"""The security chief's journey: a venue of real gate processes sharing what
they see, and the live view, as ``scripts/demo --venue`` runs them.

Three boxes (an entry and an exit box at the artist entrance, an entry box
at the dressing rooms inside backstage) run the real daemon (``scanner run``,
each its own process) on recordings of their doors, in real time, sharing
their scans through a mosquitto on 127.0.0.1; the live view listens. Asserted
where a head of security looks: every door decided as the evening's script
says (a copied pass stopped live at the inner door, the guest who left by the
exit box let back in, a pass handed back out stopped), every gate in sync,
every gate holding every scan once, and the live view counting who is inside
as the gates do. The broker runs as a venue runs it: TLS with the event's CA,
a login per box and an ACL, from ``scanner venue broker-config``'s files.
"""

from __future__ import annotations

import sqlite3

import pytest

from scanner.tools.venue_demo import (
    PEOPLE,
    TIMELINE,
    VENUE_BOXES,
    evening_went_as_planned,
    find_mosquitto,
    run_venue_demo,
)

pytestmark = pytest.mark.skipif(
    find_mosquitto() is None, reason="needs mosquitto (scripts/bootstrap test installs it)"
)


@pytest.fixture(scope="module")
def evening(tmp_path_factory):
    folder = tmp_path_factory.mktemp("venue-demo")
    said: list[str] = []
    shown = run_venue_demo(folder, say=said.append, screenshot=False)
    return {"folder": folder, "shown": shown, "said": said}


def test_every_door_decides_as_the_evening_goes(evening):
    shown = evening["shown"]
    assert shown["exit_codes"] == dict.fromkeys(VENUE_BOXES, 0)
    for gate in VENUE_BOXES:
        expected = [(PEOPLE[s][0], r) for _, g, s, r, _ in TIMELINE if g == gate]
        got = [(row["holder"], row["reason"]) for row in shown["decisions"][gate]]
        assert got == expected, gate


def test_the_copy_is_caught_live_and_shown_as_it_happens(evening):
    shown, said = evening["shown"], evening["said"]
    [copy] = shown["copies"]
    assert copy["serial"] == 3
    assert copy["first"].startswith("artist-in at artist-entrance")
    assert copy["second"].startswith("dressing-in at dressing-rooms")
    assert copy["second"].endswith("(suspected copy (just used at another door))")
    assert copy["caught"] and copy["walk"] == 20
    assert any("SUSPECTED COPY #3 (caught live, denied)" in line for line in said)
    assert evening_went_as_planned(shown)  # scripts/demo --venue exits 0


def test_the_live_view_counts_people_once_and_every_gate_is_in_sync(evening):
    shown = evening["shown"]
    inside = {z["zone"]: z["inside"] for z in shown["zones"]}
    # Ann in the dressing rooms (inside backstage too), Dora, Ben and Eli backstage:
    # backstage holds its 4, so Fay was turned away
    assert inside["backstage"] == 4 and inside["dressing-rooms"] == 1
    assert shown["people"] == 4
    fay = shown["decisions"]["artist-in"][-1]
    assert fay["reason"] == "zone_full" and "4 of 4 inside" in fay["message"]
    assert {g["gate"]: g["state"] for g in shown["gates"]} == dict.fromkeys(VENUE_BOXES, "in sync")
    assert all(g["clock"] == "trusted" for g in shown["gates"])


def test_every_gate_holds_every_scan_once(evening):
    folder = evening["folder"]
    own, peers = {}, {}
    for gate in VENUE_BOXES:
        with sqlite3.connect(folder / gate / "scans.db") as conn:
            own[gate] = [r[0] for r in conn.execute("SELECT id FROM scans")]
        with sqlite3.connect(folder / gate / "peers.db") as conn:
            peers[gate] = [r[0] for r in conn.execute("SELECT id FROM peer_scans")]
    everything = sorted(i for ids in own.values() for i in ids)
    assert len(everything) == len(TIMELINE)
    for gate in VENUE_BOXES:
        assert sorted(own[gate] + peers[gate]) == everything, gate


def test_the_broker_was_secured_as_a_venue_runs_it(evening):
    folder = evening["folder"]
    conf = (folder / "broker" / "mosquitto.conf").read_text()
    assert "allow_anonymous false" in conf and "certfile" in conf and "acl_file" in conf
    logins = [line.split(":")[0] for line in (folder / "broker" / "passwords").read_text().split()]
    assert sorted(logins) == sorted([*VENUE_BOXES, "live"])
    log = (folder / "mosquitto.log").read_text()
    for gate in VENUE_BOXES:
        assert f"u'{gate}'" in log  # each box logged in as itself
    assert "u'live'" in log


def test_no_holder_name_crossed_the_wire(evening):
    folder = evening["folder"]
    for gate in VENUE_BOXES:
        data = b"".join(p.read_bytes() for p in (folder / gate).glob("peers.db*"))
        assert not any(holder.encode() in data for holder, _ in PEOPLE.values())
