"""The venue's broker as it is run on a shared LAN: TLS with the event's CA,
a login per box, an ACL (``scanner venue ca``, ``scanner venue enrol``,
``scanner venue broker-config``), with a real mosquitto started from the
files broker-config wrote and the real gate daemons.

Each test is a user's step or an attacker's try: the gates share their scans
with it; a stranger on the LAN can neither log in nor read; a stolen box's
login publishes on its own topics only; a broker without the event's
certificate is refused and the status says so; a box taken off the roster
loses its login at the next broker-config; the live view's login reads and
never writes a scan.
"""

from __future__ import annotations

import json
import ssl
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from click.testing import CliRunner

from scanner.cli import cli
from scanner.core.policy import open_policy, sign_policy
from scanner.keyfiles import load_private_key
from scanner.venue.broker import (
    LIVE_LOGIN,
    box_password,
    make_ca,
    password_matches,
    read_login,
    tls_context,
)

from .conftest import SIGNED_AT
from .venue_support import (
    MOSQUITTO,
    Mosquitto,
    SecureBroker,
    VenueClock,
    at_berlin,
    set_up_venue,
    start_gate,
    wait_for,
)

pytestmark = pytest.mark.skipif(
    MOSQUITTO is None, reason="needs mosquitto (scripts/bootstrap test installs it)"
)
EVENT = "example-fest-2026"
BOXES = {"artist-in": ("artist-entrance", "entry"), "artist-out": ("artist-entrance", "exit")}


class Client:
    """An MQTT client on the LAN: TLS with the event's CA (or none), a login
    (or none). Records what it is told, and every message it sees."""

    def __init__(self, port: int, *, ca: str | None, user: str | None = None,
                 password: str | None = None, name: str = "client") -> None:  # fmt: skip
        self.seen: list[tuple[str, bytes]] = []
        self.connack: list[str] = []
        self.acks: dict[int, str] = {}
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5
        )
        if ca is not None:
            self.client.tls_set_context(tls_context(ca))
        if user is not None:
            self.client.username_pw_set(user, password)
        self.client.on_connect = lambda c, u, f, rc, p=None: self.connack.append(str(rc))
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self.port = port

    def _on_message(self, client, userdata, message):
        with self._lock:
            self.seen.append((message.topic, bytes(message.payload)))

    def _on_publish(self, client, userdata, mid, reason_code=None, properties=None):
        self.acks[mid] = str(reason_code)

    def connect(self) -> str:
        try:
            self.client.connect("127.0.0.1", self.port)
        except (OSError, ssl.SSLError) as err:
            return f"refused: {err}"
        self.client.loop_start()
        deadline = time.monotonic() + 5
        while not self.connack and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.connack[0] if self.connack else "no answer"

    def subscribe(self, pattern: str) -> None:
        self.client.subscribe(pattern, qos=1)

    def publish(self, topic: str, payload: bytes) -> str:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(5)
        wait_for(lambda: info.mid in self.acks, timeout=5, what="a PUBACK")
        return self.acks[info.mid]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def secured(tmp_path, organizer_key, make_pass):
    """Two boxes of the artist entrance on a broker run from broker-config's files."""
    secure = SecureBroker.make(tmp_path / "keys")
    boxes = set_up_venue(tmp_path / "venue", organizer_key, BOXES, secure=secure)
    broker = secure.start(tmp_path, tmp_path / "venue" / "event.policy")
    clock = VenueClock(at_berlin("20:59:00"))
    gates = {g: start_gate(b, clock) for g, b in boxes.items()}
    try:
        wait_for(
            lambda: all(g.venue().get("knows_who_is_inside") for g in gates.values()),
            what="peers in sync over TLS",
        )
        yield {"gates": gates, "boxes": boxes, "broker": broker, "secure": secure,
               "clock": clock, "root": tmp_path}  # fmt: skip
    finally:
        for gate in gates.values():
            gate.halt()
        broker.stop()


def test_gates_share_their_scans_over_tls_each_logged_in_as_itself(secured, make_pass):
    gates = secured["gates"]
    assert "2 of" not in gates["artist-in"].venue()["summary"]
    assert "1 of 1 peers in sync" in gates["artist-in"].venue()["summary"]
    secured["clock"].set(at_berlin("21:00:00"))
    row = gates["artist-in"].present(make_pass("aaa", 1, holder="Ann Artist"))
    wait_for(lambda: gates["artist-out"].peer_ids() == [row["id"]], what="the scan to arrive")
    passwords = (secured["root"] / "broker" / "passwords").read_text()
    assert passwords.startswith("artist-in:$7$") and "\nartist-out:$7$" in passwords
    key = load_private_key(secured["boxes"]["artist-in"].folder / "var" / "device.key")
    hashed = passwords.splitlines()[0].split(":", 1)[1]
    assert password_matches(hashed, box_password(key, "artist-in"))


def test_a_stranger_on_the_lan_can_neither_log_in_nor_read(secured):
    port, ca = secured["broker"].port, secured["secure"].ca_cert
    plain = Client(port, ca=None, name="plain")
    assert plain.connect() == "no answer"  # no TLS: the listener speaks nothing else
    anonymous = Client(port, ca=ca, name="anonymous")
    assert anonymous.connect() == "Not authorized"
    guessing = Client(port, ca=ca, user="artist-in", password="artist-in", name="guess")
    assert guessing.connect() in ("Bad user name or password", "Not authorized")
    for c in (plain, anonymous, guessing):
        c.close()


def test_a_stolen_boxs_login_publishes_only_on_its_own_topics(secured, make_pass):
    """The thief of artist-out's box has its device key, so its login: the ACL
    lets it write only artist-out's topics, and read nobody's replays."""
    gates, boxes = secured["gates"], secured["boxes"]
    stolen = load_private_key(boxes["artist-out"].folder / "var" / "device.key")
    thief = Client(secured["broker"].port, ca=secured["secure"].ca_cert, user="artist-out",
                   password=box_password(stolen, "artist-out"), name="thief")  # fmt: skip
    assert thief.connect() == "Success"
    thief.subscribe(f"backstage/{EVENT}/replay/artist-in")
    before = gates["artist-out"].peer_ids()
    refused = thief.publish(f"backstage/{EVENT}/scan/artist-in", b'{"junk": 1}')
    assert refused == "Not authorized"
    assert thief.publish(f"backstage/{EVENT}/hb/artist-in", b"{}") == "Not authorized"
    assert thief.publish(f"backstage/{EVENT}/sync/artist-in", b"{}") == "Not authorized"
    secured["clock"].set(at_berlin("21:00:00"))
    gates["artist-out"].present(make_pass("aaa", 2, holder="Ben"))  # replays go to artist-in
    time.sleep(1)
    assert not thief.seen  # replays to artist-in are not the thief's to read
    assert gates["artist-out"].peer_ids() == before
    thief.close()


def test_a_broker_without_the_events_certificate_is_refused_and_the_status_says_so(
    tmp_path, organizer_key
):
    """A rogue broker on the LAN at the broker's address, with a certificate of
    its own CA: the box never logs in to it, and says why."""
    secure = SecureBroker.make(tmp_path / "keys")
    boxes = set_up_venue(tmp_path / "venue", organizer_key, BOXES, secure=secure)
    rogue_ca = SecureBroker.make(tmp_path / "rogue-keys", port=secure.port)
    rogue_policy = tmp_path / "rogue.policy"
    rogue_policy.write_bytes(
        sign_policy(
            (tmp_path / "venue" / "policy.toml").read_text().replace(
                secure.ca_cert, rogue_ca.ca_cert
            ),
            organizer_key,
            SIGNED_AT,
        )
    )
    rogue = rogue_ca.start(tmp_path / "rogue", rogue_policy)
    gate = start_gate(boxes["artist-in"], VenueClock(at_berlin("20:59:00")))
    try:
        summary = wait_for(
            lambda: "certificate" in gate.venue().get("summary", "")
            and gate.venue()["summary"],
            what="the status to name the refused broker",
        )
        assert "did not show a certificate from the event's CA" in summary
        assert "timed anti-passback only" in summary
        assert not gate.venue()["link"]["connected"]
        log = (tmp_path / "rogue" / "mosquitto.log").read_text()
        assert "artist-in" not in log  # the login never reached the rogue
    finally:
        gate.halt()
        rogue.stop()


def test_a_box_taken_off_the_roster_loses_its_login_at_the_next_broker_config(
    tmp_path, organizer_key
):
    secure = SecureBroker.make(tmp_path / "keys")
    boxes = set_up_venue(tmp_path / "venue", organizer_key, BOXES, secure=secure)
    toml = (tmp_path / "venue" / "policy.toml").read_text()
    without = toml[: toml.index("\n[gates.artist-out]")] + toml[toml.index("\n[broker]"):]
    new_policy = tmp_path / "without-artist-out.policy"
    new_policy.write_bytes(sign_policy(without, organizer_key, SIGNED_AT))
    keys = tmp_path / "venue" / "keys"
    result = CliRunner().invoke(cli, [
        "venue", "broker-config", "--policy", str(new_policy), "--trust",
        str(keys / "organizer.pub"), "--ca-key", str(secure.ca_key), "--out",
        str(tmp_path / "broker"), "--listen", f"127.0.0.1:{secure.port}"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "1 boxes with a login (artist-in)" in result.output
    assert "mosquitto -c" in result.output and "live.login" in result.output
    broker = Mosquitto(tmp_path, secure.port, conf=tmp_path / "broker" / "mosquitto.conf")
    broker.start()
    try:
        stolen = load_private_key(boxes["artist-out"].folder / "var" / "device.key")
        thief = Client(secure.port, ca=secure.ca_cert, user="artist-out",
                       password=box_password(stolen, "artist-out"), name="off-roster")  # fmt: skip
        assert thief.connect() in ("Bad user name or password", "Not authorized")
        thief.close()
    finally:
        broker.stop()


def test_the_live_view_reads_with_its_own_login_and_never_writes_a_scan(secured, make_pass):
    root = secured["root"]
    login = read_login(root / "broker" / "live.login")
    assert login.username == LIVE_LOGIN and login.password not in repr(login)
    assert (root / "broker" / "live.login").stat().st_mode & 0o077 == 0
    live = Client(secured["broker"].port, ca=secured["secure"].ca_cert, user=login.username,
                  password=login.password, name="live-test")  # fmt: skip
    assert live.connect() == "Success"
    live.subscribe(f"backstage/{EVENT}/#")
    secured["clock"].set(at_berlin("21:00:00"))
    secured["gates"]["artist-in"].present(make_pass("aaa", 3, holder="Cleo"))
    wait_for(lambda: any("/scan/artist-in" in t for t, _ in live.seen), what="the scan")
    scan = next(p for t, p in live.seen if "/scan/artist-in" in t)
    assert b"Cleo" not in scan  # serials on the wire, never names
    assert live.publish(f"backstage/{EVENT}/scan/artist-in", scan) == "Not authorized"
    assert json.loads(json.loads(scan)["signed"])["body"]["gate"] == "artist-in"
    live.close()


def test_broker_config_refuses_a_policy_without_a_broker_and_a_foreign_ca_key(
    tmp_path, organizer_key
):
    secure = SecureBroker.make(tmp_path / "keys")
    set_up_venue(tmp_path / "venue", organizer_key, BOXES, secure=secure)
    keys = tmp_path / "venue" / "keys"
    other = tmp_path / "other-ca.key"
    key_pem, _ = make_ca("other", SIGNED_AT)
    other.write_bytes(key_pem)
    other.chmod(0o600)
    runner = CliRunner()
    foreign = runner.invoke(cli, [
        "venue", "broker-config", "--policy", str(tmp_path / "venue" / "event.policy"),
        "--trust", str(keys / "organizer.pub"), "--ca-key", str(other), "--out",
        str(tmp_path / "out")])  # fmt: skip
    assert foreign.exit_code == 2 and "not the one whose certificate" in foreign.output
    assert not (tmp_path / "out" / "mosquitto.conf").exists()
    plain = tmp_path / "plain.policy"
    plain.write_bytes(sign_policy(
        (tmp_path / "venue" / "policy.toml").read_text().split("\n[broker]")[0],
        organizer_key, SIGNED_AT))  # fmt: skip
    no_broker = runner.invoke(cli, [
        "venue", "broker-config", "--policy", str(plain), "--trust", str(keys / "organizer.pub"),
        "--ca-key", str(secure.ca_key), "--out", str(tmp_path / "out")])  # fmt: skip
    assert no_broker.exit_code == 2 and "no [broker] table" in no_broker.output
    policy = open_policy((tmp_path / "venue" / "event.policy").read_bytes(), None)
    assert policy.broker is not None and policy.broker.port == secure.port
