"""The security chief's live view (scanner live), in a real headless Chromium,
updating while real gate daemons scan through a real mosquitto on 127.0.0.1.

The page is opened before anyone scans; what it then shows arrived only
through its server-sent events: people inside per zone against capacity,
the last scans and denials per door, a suspected copy as it happens, and
each gate's health. Then the page is attacked: markup in what a stolen box
says, a request naming another host (DNS rebinding), and its headers.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import httpx
import pytest

from scanner.core.policy import open_policy
from scanner.core.signed import sign_document
from scanner.keyfiles import load_private_key
from scanner.venue.bus import PahoBus
from scanner.venue.live import LiveState, live_app, page_hosts
from scanner.venue.messages import HEARTBEAT_FIELDS, HEARTBEAT_KIND

from .venue_support import (
    CHROMIUM,
    MOSQUITTO,
    Browser,
    Mosquitto,
    VenueClock,
    at_berlin,
    free_port,
    set_up_venue,
    start_gate,
    wait_for,
)

pytestmark = pytest.mark.skipif(
    MOSQUITTO is None or not CHROMIUM.exists(),
    reason="needs mosquitto and chromium (scripts/bootstrap test installs them)",
)
BOXES = {
    "artist-in": ("artist-entrance", "entry"),
    "artist-out": ("artist-entrance", "exit"),
    "dressing-in": ("dressing-rooms", "entry"),
    "dressing-out": ("dressing-rooms", "exit"),
}
SPARE = {"spare": ("loading-dock", "entry")}  # enrolled, on the shelf: its key can be stolen
EVENT = "example-fest-2026"

TABLE = """(id => Array.from(document.querySelectorAll('#' + id + ' tbody tr'))
  .map(r => Array.from(r.cells).map(c => c.textContent.trim())))"""


@pytest.fixture(scope="module")
def live(tmp_path_factory, organizer_key):
    tmp = tmp_path_factory.mktemp("live")
    broker = Mosquitto(tmp).start()
    boxes = set_up_venue(
        tmp / "venue", organizer_key, BOXES | SPARE, broker=broker.address,
        capacity="{ dressing-rooms = 1 }",
    )  # fmt: skip
    clock = VenueClock(at_berlin("20:59:00"))
    gates = {g: start_gate(b, clock) for g, b in boxes.items() if g in BOXES}
    policy = open_policy(
        (tmp / "venue" / "event.policy").read_bytes(), [organizer_key.public_key()]
    )
    state = LiveState(
        policy, PahoBus("127.0.0.1", broker.port, "live-test"), clock=clock, stale_after=3
    ).start()
    port = free_port()
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(live_app(state), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, what="the live view to serve")
    browser = Browser(tmp / "chromium")
    try:
        yield {
            "gates": gates, "state": state, "browser": browser, "clock": clock,
            "url": f"http://127.0.0.1:{port}/", "port": port, "tmp": tmp, "boxes": boxes,
            "broker": broker,
        }  # fmt: skip
    finally:
        browser.close()
        server.should_exit = True
        thread.join(timeout=10)
        for gate in gates.values():
            gate.halt()
        state.close()
        broker.stop()


def test_the_page_follows_the_doors_as_people_scan(live, make_pass):
    browser, gates, clock = live["browser"], live["gates"], live["clock"]
    browser.open(live["url"])
    wait_for(lambda: int(browser.js("document.body.dataset.updates") or 0) > 0, what="events")
    browser.js("window.loadedOnce = true")  # gone if the page were ever reloaded
    wait_for(
        lambda: all(r[2] == "in sync" for r in browser.js(TABLE + "('gates')") if r[0] in BOXES),
        what="every gate in sync on the page",
    )
    ann, ben = make_pass("aaa", 1, holder="Ann Artist"), make_pass("aaa", 2, holder="Ben Guest")
    clock.set(at_berlin("21:00:00"))
    gates["artist-in"].present(ann)
    clock.set(at_berlin("21:00:30"))
    gates["artist-in"].present(ben)
    wait_for(lambda: len(gates["dressing-in"].peer_ids()) == 2, what="the scans to spread")
    clock.set(at_berlin("21:00:35"))  # Ben's pass, 5 s after its use 20 s' walk away
    assert gates["dressing-in"].present(ben)["reason"] == "suspected_copy"
    clock.set(at_berlin("21:02:00"))
    assert gates["dressing-in"].present(ann)["decision"] == "granted"
    clock.set(at_berlin("21:03:00"))
    assert gates["dressing-in"].present(ben)["reason"] == "zone_full"

    def copies():
        return browser.js(TABLE + "('copies')")

    rows = wait_for(
        lambda: [r for r in copies() if len(r) > 1 and "#2" in r[1]], what="the copy on the page"
    )
    assert "artist-in at artist-entrance, 21:00:30 (ok)" in rows[0][2]
    assert "dressing-in at dressing-rooms, 21:00:35 (suspected_copy)" in rows[0][3]
    assert rows[0][4:] == ["5 s", "20 s"]

    def zones():
        rows = {r[0]: r for r in browser.js(TABLE + "('zones')")}
        return rows if rows["dressing-rooms"][1] == "1" else None

    zones = wait_for(zones, what="the counts on the page")
    assert zones["backstage"][1] == "2"  # Ann in the dressing rooms is backstage too
    assert zones["dressing-rooms"][1:3] == ["1", "1"] and "FULL" in zones["dressing-rooms"][3]

    def dressing_door():
        doors = browser.js(
            "Array.from(document.querySelectorAll('#doors .door')).map(d => "
            "[d.querySelector('h3').textContent, Array.from(d.querySelectorAll('tbody tr'))"
            ".map(r => r.textContent)])"
        )
        rows = dict(doors)["dressing-in: dressing-rooms entry"]
        return [("zone_full" in r, "granted" in r, "suspected_copy" in r) for r in rows]

    wait_for(
        lambda: (
            dressing_door() == [(True, False, False), (False, True, False), (False, False, True)]
        ),
        what="the door's last scans, newest first",
    )
    assert browser.js("window.loadedOnce") is True  # all of it arrived by events
    text = browser.js("document.body.innerText")
    assert "Ann" not in text and "Ben" not in text  # no holder names on the wire or the page
    health = {r[0]: r for r in browser.js(TABLE + "('gates')")}
    assert health["artist-in"][2] == "in sync" and health["artist-in"][4] == "during"
    assert health["artist-in"][6].startswith("trusted")
    browser.screenshot(live["tmp"] / "live.png")


def test_markup_from_a_stolen_box_stays_text(live):
    """Someone with a box's device key sends a heartbeat whose words are markup."""
    browser, tmp = live["browser"], live["tmp"]
    browser.open(live["url"])
    wait_for(lambda: int(browser.js("document.body.dataset.updates") or 0) > 0, what="events")
    key = load_private_key(live["boxes"]["spare"].folder / "var" / "device.key")
    body = dict.fromkeys(HEARTBEAT_FIELDS) | {
        "gate": "spare", "ts": "2026-12-05T20:00:00Z", "event": EVENT, "boot": "f" * 16,
        "n": 1, "head": 0, "acked": 0,
        "clock": "trusted", "phase": "<img src=x onerror=alert(1)>", "faults": [],
        "frames": 1, "granted": 0, "denied": 0, "peers": {"in_sync": 0, "of": 0, "behind": []},
        "status": "<script>alert(1)</script>",
    }  # fmt: skip
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="thief")
    client.connect("127.0.0.1", live["broker"].port)
    client.loop_start()
    try:
        for n in range(1, 4):
            payload = sign_document(
                key, HEARTBEAT_KIND, body | {"n": n, "boot": "e" * 16}, live["clock"].now()
            )
            client.publish(f"backstage/{EVENT}/hb/spare", payload, qos=1).wait_for_publish(5)
            time.sleep(0.3)
    finally:
        client.loop_stop()
        client.disconnect()
    wait_for(
        lambda: any("<img src=x" in r[4] for r in browser.js(TABLE + "('gates')")),
        what="the heartbeat on the page",
    )
    assert browser.js("document.querySelectorAll('#gates img, #gates script').length") == 0
    page = httpx.get(live["url"], timeout=5).text
    assert "<img src=x" not in page and "&lt;img src=x" in page  # escaped when rendered too
    browser.screenshot(tmp / "live-markup.png")


def test_the_page_loads_nothing_else_and_answers_only_its_own_name(live):
    answer = httpx.get(live["url"], timeout=5)
    csp = answer.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert "http://" not in answer.text.replace(live["url"], "") and "https://" not in answer.text
    rebound = httpx.get(live["url"], headers={"Host": "evil.example"}, timeout=5)
    assert rebound.status_code == 400  # a page on another site cannot read this one
    state = httpx.get(live["url"] + "state", timeout=5).json()
    assert state["event"] == EVENT


def test_served_to_the_whole_lan_the_page_still_answers_only_to_the_laptops_names():
    """--listen 0.0.0.0 lets the crew's screens in; it must not let in a web page
    that rebinds its own domain to this laptop's address."""
    import asyncio
    import socket

    hosts = page_hosts("0.0.0.0", broker=("127.0.0.1", 1883), names=["chief.venue"])
    assert "*" not in hosts
    assert {"127.0.0.1", "localhost", "chief.venue", socket.gethostname()} <= set(hosts)
    app = live_app(object(), hosts=hosts)  # type: ignore[arg-type]  # the asset route reads no state

    async def status(host: str) -> int:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{host}:8080") as c:
            return (await c.get("/static/live.css")).status_code

    for host in ("chief.venue", socket.gethostname(), "127.0.0.1"):
        assert asyncio.run(status(host)) == 200, host
    for host in ("evil.example", "chief.venue.evil.example", "localhost.evil.example"):
        assert asyncio.run(status(host)) == 400, host
    assert page_hosts("192.168.7.20") == ["127.0.0.1", "192.168.7.20", "localhost"]


def test_scanner_live_serves_the_view_from_the_command_line(live, organizer_key):
    tmp = live["tmp"]
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "scanner.cli", "live", "--broker", live["broker"].address,
            "--policy", str(tmp / "venue" / "event.policy"),
            "--trust", str(tmp / "venue" / "keys" / "organizer.pub"), "--port", str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:

        def gates_heard():
            try:
                state = httpx.get(f"http://127.0.0.1:{port}/state", timeout=2).json()
            except httpx.HTTPError:
                return None
            return (
                all(g["heard"] is not None for g in state["gates"] if g["gate"] in BOXES) and state
            )

        state = wait_for(gates_heard, timeout=30, what="scanner live to hear every gate")
        assert state["broker"]["connected"]
        assert {g["gate"] for g in state["gates"]} == set(BOXES) | set(SPARE)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert f"http://127.0.0.1:{port}/" in out


def test_scanner_live_refuses_a_policy_it_cannot_trust(tmp_path, other_key, live):
    from click.testing import CliRunner

    from scanner.cli import cli
    from scanner.keyfiles import write_key_pair

    stranger = write_key_pair(tmp_path, "stranger", key=other_key)
    result = CliRunner().invoke(
        cli,
        [
            "live", "--broker", "127.0.0.1:1", "--policy",
            str(live["tmp"] / "venue" / "event.policy"), "--trust", str(stranger.public),
        ],
    )  # fmt: skip
    assert result.exit_code == 2
    assert result.output.startswith("Error: ") and "not trusted" in result.output


def test_a_name_that_is_a_pattern_cannot_open_the_page_to_any_host(live):
    """Starlette reads ``*`` as any host and ``*.x`` as a pattern: --name takes
    neither, so a typo or a bad how-to cannot undo the Host check."""
    from click.testing import CliRunner

    from scanner.cli import cli

    venue = live["tmp"] / "venue"
    for name in ("*", "*.example", ""):
        result = CliRunner().invoke(
            cli,
            [
                "live", "--broker", "127.0.0.1:1", "--policy", str(venue / "event.policy"),
                "--trust", str(venue / "keys" / "organizer.pub"), "--listen", "0.0.0.0",
                "--name", name,
            ],
        )  # fmt: skip
        assert result.exit_code == 2, result.output
        assert "no patterns" in result.output and "Traceback" not in result.output
