"""The security chief's live view (scanner live), in a real headless Chromium,
updating while real gate daemons scan through a real mosquitto on 127.0.0.1.

The page is opened before anyone scans; what it then shows arrived only
through its server-sent events: people inside per zone against capacity,
the last scans and denials per door, a suspected copy as it happens, and
each gate's health. Then the page is attacked: markup in what a stolen box
says, a request naming another host (DNS rebinding), and its headers; one
host opening 1,100 event streams, a screen that stops reading, and, served
beyond the laptop, requests without the page's token.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import time
from contextlib import ExitStack, contextmanager

import httpx
import pytest

from scanner.core.policy import open_policy
from scanner.core.signed import sign_document
from scanner.keyfiles import load_private_key
from scanner.venue.bus import FakeBroker, FakeBus, PahoBus
from scanner.venue.live import (
    STREAMS_PER_CLIENT,
    STREAMS_TOTAL,
    LiveState,
    StreamRules,
    live_app,
    page_hosts,
    page_token,
)
from scanner.venue.messages import HEARTBEAT_FIELDS, HEARTBEAT_KIND, SCAN_KIND

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
    assert "artist-in at artist-entrance, 21:00:30 (granted)" in rows[0][2]
    assert ("dressing-in at dressing-rooms, 21:00:35 (suspected copy (just used at another "
            "door))") in rows[0][3]  # the report's words, not codes
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
        return [("zone full" in r, "granted" in r, "suspected copy" in r) for r in rows]

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


class SpareBox:
    """The live view on a broker in memory, and the spare box of the roster
    speaking to it with its own device key (as a test asks it to)."""

    def __init__(self, live, organizer_key, at):
        venue = live["tmp"] / "venue"
        self.policy = open_policy(
            (venue / "event.policy").read_bytes(), [organizer_key.public_key()]
        )
        self.broker, self.clock = FakeBroker(), VenueClock(at_berlin(at))
        bus = FakeBus(self.broker)
        self.state = LiveState(self.policy, bus, clock=self.clock).start()
        self.key = load_private_key(live["boxes"]["spare"].folder / "var" / "device.key")
        # the broker drops what nobody has subscribed to yet: wait for the view to listen
        wait_for(lambda: bus.wants(f"backstage/{EVENT}/hb/spare"), what="the live view to listen")

    def heartbeat(self, **fields):
        body = dict.fromkeys(HEARTBEAT_FIELDS) | {
            "gate": "spare", "ts": "2026-12-05T20:00:00Z", "event": EVENT, "boot": "d" * 16,
            "n": 1, "head": 0, "acked": 0, "clock": "trusted", "phase": "during",
            "faults": [], "frames": 1, "granted": 0, "denied": 0,
            "peers": {"in_sync": 0, "of": 0, "behind": []}, "status": "on the shelf",
        } | fields  # fmt: skip
        payload = sign_document(self.key, HEARTBEAT_KIND, body, self.clock.now())
        assert self.broker.deliver(f"backstage/{EVENT}/hb/spare", payload)


def test_a_gates_counters_keep_up_with_its_door_between_heartbeats(live, organizer_key):
    # The gates table counts what a gate's heartbeat said plus the scans that
    # arrived since, so it never shows fewer than the door's own list of scans.
    spare = SpareBox(live, organizer_key, "21:00:00")
    state, broker, clock, key = spare.state, spare.broker, spare.clock, spare.key
    place = spare.policy.gates["spare"]

    def heartbeat(n, head, granted, denied):
        spare.heartbeat(n=n, head=head, acked=head, frames=n, granted=granted, denied=denied,
                        status="at the door")  # fmt: skip

    def scan(seq, reason):
        body = {
            "gate": "spare", "seq": seq, "id": f"0e0e0e0e-0000-4000-8000-{seq:012d}",
            "ts": "2026-12-05T20:00:00Z", "event": EVENT, "pass_event": EVENT,
            "door": place.door, "zone": place.zone, "direction": place.direction.value,
            "serial": 40 + seq, "tier": "aaa", "reason": reason, "clock": "trusted",
            "decision": "granted" if reason == "ok" else "denied", "phase": "during",
        }  # fmt: skip
        payload = sign_document(key, SCAN_KIND, body, clock.now())
        assert broker.deliver(f"backstage/{EVENT}/scan/spare", payload)

    def seen():
        snap = state.snapshot()
        gate = next(g for g in snap["gates"] if g["gate"] == "spare")
        door = next(d for d in snap["doors"] if d["gate"] == "spare")
        return gate["granted"], gate["denied"], len(door["last"])

    try:
        heartbeat(1, head=3, granted=2, denied=1)  # its first three scans, before we listened
        wait_for(lambda: seen() == (2, 1, 0), what="the heartbeat's counts")
        scan(4, "ok")
        scan(5, "revoked")
        # at once, not a heartbeat later: the door's list and its counters agree
        wait_for(lambda: seen()[2] == 2, what="the two scans on the door")
        assert seen() == (3, 2, 2)
        heartbeat(2, head=5, granted=3, denied=2)  # the next heartbeat counts them: not twice
        wait_for(lambda: state.view.health["spare"].head == 5, what="the second heartbeat")
        assert seen() == (3, 2, 2)
    finally:
        state.close()


# -- streams that cost nothing to hold, and a token beyond the laptop --------------------


@pytest.fixture(scope="module")
def quiet(live, organizer_key):
    """The venue's live view on a broker in memory where nobody talks: it changes
    only when a test has the spare box send a heartbeat."""
    spare = SpareBox(live, organizer_key, "20:59:00")
    beats = iter(range(1, 1000))
    try:
        yield {"state": spare.state, "heartbeat": lambda: spare.heartbeat(n=next(beats))}
    finally:
        spare.state.close()


@contextmanager
def serving(app, *, send_buffer=None):
    """``app`` on a real uvicorn on 127.0.0.1; yields its port. A small
    ``send_buffer`` on the listening socket makes a client that stops reading
    fill it after a few events rather than a few megabytes."""
    import uvicorn

    listener = socket.socket()
    if send_buffer:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, what="the live view to serve")
        yield listener.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listener.close()


def ask_for_a_stream(port, *, source="127.0.0.1", receive_buffer=None):
    """A screen asks for /events and reads the status line only, never more.
    Returns the open socket and its status, or None and the refusal's text."""
    sock = socket.socket()
    if receive_buffer:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(5)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        f"GET /events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode()
    )
    answer = b""
    while b"\r\n" not in answer:
        chunk = sock.recv(4096)
        assert chunk, f"closed without an answer: {answer!r}"
        answer += chunk
    status = int(answer.split(b" ", 2)[1])
    if status == 200:
        return sock, status
    while chunk := sock.recv(4096):  # a refusal is short and closes the connection
        answer += chunk
    sock.close()
    return None, answer.decode()


def test_one_host_opening_1100_streams_gets_eight_and_the_chief_still_gets_the_state(quiet):
    app = live_app(quiet["state"])
    streams = app.state.streams
    with serving(app) as port, httpx.Client(timeout=10) as chief, ExitStack() as held:
        url = f"http://127.0.0.1:{port}/state"
        refusals = []
        for attempt in range(1100):
            sock, answer = ask_for_a_stream(port)
            if sock is not None:
                held.callback(sock.close)
            else:
                refusals.append(answer)
            if attempt % 100 == 0:
                assert chief.get(url).json()["event"] == EVENT
        assert streams.taken == STREAMS_PER_CLIENT == 8
        assert len(refusals) == 1100 - 8
        assert all(r.startswith("HTTP/1.1 429") for r in refusals)
        assert "too many live streams from this address (8 at most)" in refusals[-1]
        assert streams.most == STREAMS_PER_CLIENT  # never more open at once

        # other hosts (other loopback addresses) fill the rest, up to the cap for all
        refused_for_all = []
        for n in range(2, 12):
            for _ in range(STREAMS_PER_CLIENT):
                sock, answer = ask_for_a_stream(port, source=f"127.0.0.{n}")
                if sock is not None:
                    held.callback(sock.close)
                else:
                    refused_for_all.append(answer)
        assert streams.open == streams.most == STREAMS_TOTAL == 64
        assert len(refused_for_all) == 10 * 8 + 8 - 64
        assert "too many live streams open (64 at most)" in refused_for_all[0]
        answer = chief.get(url)
        assert answer.status_code == 200 and answer.json()["event"] == EVENT
        held.close()
        wait_for(lambda: streams.open == 0, what="the closed streams to be let go")
        assert ask_for_a_stream(port)[1] == 200  # a place again for whoever asks next


def test_a_screen_that_stops_reading_loses_its_stream_and_one_that_reads_keeps_it(quiet):
    rules = StreamRules(idle=0.5, refresh=0.01, poll=0.01)  # an event every 10 ms
    app = live_app(quiet["state"], streams=rules)
    streams = app.state.streams
    with serving(app, send_buffer=4096) as port, httpx.Client(timeout=5) as reader:
        stalled, status = ask_for_a_stream(port, receive_buffer=4096)
        assert status == 200
        with stalled, reader.stream("GET", f"http://127.0.0.1:{port}/events") as events:
            assert events.status_code == 200
            read, deadline = 0, time.monotonic() + 15
            lines = events.iter_lines()
            while streams.open == 2 or read < 10:
                assert time.monotonic() < deadline, "the stalled stream was never closed"
                read += next(lines).startswith("data: ")
            assert streams.open == 1 and streams.taken == 2  # the reader's own goes on
            assert next(line for line in lines if line.startswith("data: "))


def test_streams_share_one_snapshot_build_per_change(quiet, monkeypatch):
    state, screens = quiet["state"], 20
    builds = []
    build = state.snapshot
    monkeypatch.setattr(state, "snapshot", lambda: builds.append(1) or build())
    rules = StreamRules(per_client=screens, refresh=3600)  # only a change rebuilds
    with serving(live_app(state, streams=rules)) as port, ExitStack() as held:
        client = held.enter_context(httpx.Client(timeout=5))

        def next_event(lines):
            return next(line for line in lines if line.startswith("data: "))

        streams = [
            held.enter_context(client.stream("GET", f"http://127.0.0.1:{port}/events"))
            for _ in range(screens)
        ]
        lines = [s.iter_lines() for s in streams]
        before = {next_event(ls) for ls in lines}
        assert len(before) == 1 and len(builds) == 1
        builds.clear()
        quiet["heartbeat"]()
        after = {next_event(ls) for ls in lines}
        assert len(after) == 1 and after != before  # the same bytes to every screen
        assert '"status":"on the shelf"' in after.pop()
        assert client.get(f"http://127.0.0.1:{port}/state").status_code == 200
        assert len(builds) == 1  # one build for 20 streams and /state


def test_served_beyond_this_laptop_the_page_asks_for_its_token(quiet):
    import asyncio

    assert page_token("127.0.0.1") is None and page_token("::1") is None
    assert page_token("localhost") is None
    token = page_token("0.0.0.0")
    assert token and len(token) >= 32 and token != page_token("192.168.7.20")
    app = live_app(quiet["state"], hosts=page_hosts("192.168.7.20"), token=token)

    async def visit():
        transport = httpx.ASGITransport(app=app)
        base = "http://192.168.7.20:8080"
        async with httpx.AsyncClient(transport=transport, base_url=base) as stranger:
            for path in ("/", "/state", "/events", "/static/live.js", "/?token=guess"):
                refused = await stranger.get(path)
                assert refused.status_code == 401, path
                assert "needs its token" in refused.text and refused.text.count("\n") == 1
            stranger.cookies.set("live_token", "guess")
            assert (await stranger.get("/state")).status_code == 401
            rebound = await stranger.get(f"/?token={token}", headers={"Host": "evil.example"})
            assert rebound.status_code == 400  # the Host check still comes first
        async with httpx.AsyncClient(transport=transport, base_url=base) as screen:
            page = await screen.get(f"/?token={token}")
            assert page.status_code == 200 and "<table" in page.text
            cookie = page.headers["set-cookie"]
            assert cookie.startswith(f"live_token={token};")
            assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
            state = await screen.get("/state")  # as the page's own requests: the cookie only
            assert state.status_code == 200 and state.json()["event"] == EVENT
            assert (await screen.get("/static/live.js")).status_code == 200
        assert app.state.streams.taken == 0  # no stream was opened without the token

    asyncio.run(visit())

    async def on_this_laptop():
        transport = httpx.ASGITransport(app=live_app(quiet["state"]))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            return (await c.get("/state")).status_code

    assert asyncio.run(on_this_laptop()) == 200


def test_the_page_keeps_its_token_and_reconnects_when_its_stream_ends(live):
    """The browser's own requests carry the token in the cookie the first load
    set, and its EventSource opens a new stream each time one ends at its age."""
    browser, token = live["browser"], page_token("0.0.0.0")
    app = live_app(live["state"], token=token, streams=StreamRules(max_age=0.5))
    with serving(app) as port:
        browser.open(f"http://127.0.0.1:{port}/?token={token}")
        wait_for(lambda: int(browser.js("document.body.dataset.updates") or 0) > 0, what="events")
        browser.js("window.loadedOnce = true")
        wait_for(lambda: app.state.streams.taken >= 2, what="the page to open a new stream")
        assert browser.js("window.loadedOnce") is True  # by itself, not by reloading
        updates = int(browser.js("document.body.dataset.updates"))
        wait_for(
            lambda: int(browser.js("document.body.dataset.updates")) > updates,
            what="events on a new stream",
        )
        browser.open("about:blank")


def test_a_screen_the_caps_refuse_says_it_is_not_updating_and_comes_back_by_itself(live):
    """A browser gives up on a stream the server refused (429): the page then
    says it is stale, in red, and tries again; once a slot is free it is live
    again without anyone touching it."""
    browser = live["browser"]
    app = live_app(live["state"], streams=StreamRules(per_client=1))
    with serving(app) as port, httpx.Client(timeout=30) as other:
        with other.stream("GET", f"http://127.0.0.1:{port}/events") as taken:
            assert taken.status_code == 200  # another screen holds the only slot
            browser.open(f"http://127.0.0.1:{port}/")
            wait_for(lambda: browser.js("document.body.classList.contains('stale')"),
                     what="the page to say it is stale")
            assert "NOT UPDATING" in browser.js("document.getElementById('updated').textContent")
        wait_for(lambda: not browser.js("document.body.classList.contains('stale')"),
                 timeout=30, what="the page to reconnect once the slot is free")
        assert int(browser.js("document.body.dataset.updates")) > 0
        browser.open("about:blank")


def test_scanner_live_on_the_lan_prints_its_address_with_the_token(live, monkeypatch):
    """Served beyond the laptop, the first line printed is the page's address with
    its token, and the app ``scanner live`` serves asks for exactly that token."""
    import asyncio
    from urllib.parse import urlsplit

    import uvicorn
    from click.testing import CliRunner

    from scanner.cli import cli

    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **how: served.update(app=app, **how))
    venue = live["tmp"] / "venue"
    command = [
        "live", "--broker", live["broker"].address, "--policy", str(venue / "event.policy"),
        "--trust", str(venue / "keys" / "organizer.pub"), "--port", "8181",
    ]  # fmt: skip
    result = CliRunner().invoke(cli, [*command, "--listen", "0.0.0.0"])
    assert result.exit_code == 0, result.output
    first = result.output.splitlines()[0]
    assert "http://127.0.0.1:8181/?token=" in first and served["host"] == "0.0.0.0"
    address = urlsplit(re.search(r"http://\S+", first)[0])
    token = address.query.removeprefix("token=")

    async def status(app, path):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            return (await c.get(path)).status_code

    assert asyncio.run(status(served["app"], "/state")) == 401
    assert asyncio.run(status(served["app"], f"/state?token={token}")) == 200

    result = CliRunner().invoke(cli, command)  # on this laptop only: no token, as before
    assert result.exit_code == 0, result.output
    assert "http://127.0.0.1:8181/ (Ctrl-C to stop)" in result.output
    assert "token" not in result.output
    assert asyncio.run(status(served["app"], "/state")) == 200
