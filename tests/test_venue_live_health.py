"""The chief's gate table tells a gate switched off at the end of the night
from one that went silent, and says how long ago a gate last saw a frame as
of now, not as of its last heartbeat (a silent gate's camera is no '0 s ago')."""

from __future__ import annotations

import time

from scanner.core.policy import open_policy
from scanner.venue.bus import FakeBroker, FakeBus
from scanner.venue.live import LiveState

from .venue_support import VenueClock, at_berlin, set_up_venue, start_gate, wait_for

BOXES = {"artist-in": ("artist-entrance", "entry"), "artist-out": ("artist-entrance", "exit")}


def gates_table(state: LiveState) -> dict[str, dict]:
    return {g["gate"]: g for g in state.snapshot()["gates"]}


def test_a_stopped_gate_shows_as_stopped_and_a_silent_ones_last_frame_ages(
    tmp_path, organizer_key
):
    boxes = set_up_venue(tmp_path / "venue", organizer_key, BOXES)
    policy = open_policy((tmp_path / "venue" / "event.policy").read_bytes(),
                         [organizer_key.public_key()])
    broker, clock = FakeBroker(), VenueClock(at_berlin("20:59:00"))
    state = LiveState(policy, FakeBus(broker), clock=clock, stale_after=1.5).start()
    buses = {g: FakeBus(broker) for g in boxes}
    gates = {g: start_gate(b, clock, bus=buses[g]) for g, b in boxes.items()}
    try:
        wait_for(lambda: all(g["state"] == "in sync" for g in gates_table(state).values()),
                 what="both gates in sync on the chief's view")
        # the first heartbeat may come before the first frame: wait for one that saw frames
        wait_for(lambda: gates_table(state)["artist-in"]["last_frame_age"] is not None,
                 what="a heartbeat from a gate that sees frames")  # fmt: skip
        seen = gates_table(state)["artist-in"]["last_frame_age"]
        assert seen is not None and seen <= 2  # frames flowing now

        # artist-out's service is stopped: its last word says so
        assert gates["artist-out"].halt() == 0
        # artist-in's cable is pulled: it runs on, and nothing it sends arrives
        buses["artist-in"].publish = lambda *args, **kwargs: None  # type: ignore[method-assign]
        time.sleep(3)
        table = gates_table(state)
        assert table["artist-in"]["state"].startswith("silent for"), table["artist-in"]
        assert table["artist-in"]["last_frame_age"] >= 2, table["artist-in"]
        assert table["artist-out"]["state"].startswith("stopped "), table["artist-out"]
        assert table["artist-out"]["state"].endswith(" s ago")
        assert not table["artist-out"]["ok"]
    finally:
        for gate in gates.values():
            if gate.thread.is_alive():
                gate.halt()
        state.close()
