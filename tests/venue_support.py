"""What the venue tests share: a real mosquitto on 127.0.0.1, a venue of
boxes set up as technicians leave them (config, gate.toml, trusted key,
policy with the roster's device keys), and the real gate daemon running on
a door camera the test drives (nobody, until a person holds up a pass).

Every wait here is bounded in time; every broker listens on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from gpiozero.pins.mock import MockFactory

from scanner.core.keys import generate_private_key, public_key_text
from scanner.core.policy import sign_policy
from scanner.errors import ScannerError
from scanner.gate.clock import FakeClock
from scanner.gate.config import load_config
from scanner.gate.control import send_command
from scanner.gate.daemon import run_gate
from scanner.gate.frames import FakeCamera
from scanner.gate.sdnotify import RecordingNotifier
from scanner.keyfiles import write_key_pair
from scanner.tools.synthetic import code_image
from scanner.venue.broker import enrolment_hash

from .conftest import EXAMPLE_POLICY, SIGNED_AT

MOSQUITTO = next(
    (Path(p) for p in ("/usr/sbin/mosquitto", "/usr/bin/mosquitto") if Path(p).exists()), None
)


class VenueClock(FakeClock):
    """The venue's wall clock, set by the test (one for every box, as NTP would
    keep them); monotonic time is the real one, so the loops' housekeeping,
    heartbeats and staleness run as on a real box."""

    def monotonic(self) -> float:
        return time.monotonic()


def wait_for(condition: Callable[[], Any], *, timeout: float = 20.0, what: str = "") -> Any:
    """Poll ``condition`` until it is true, for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mosquitto:
    """A mosquitto of the test's own on 127.0.0.1 and a free port: open to
    anyone (the worst LAN: every gate's own checks must hold), or run from
    the files ``scanner venue broker-config`` wrote (``conf``)."""

    def __init__(self, folder: Path, port: int | None = None, *, conf: Path | None = None) -> None:
        assert MOSQUITTO is not None
        self.folder = folder
        self.port = port or free_port()
        if conf is not None:
            self.conf = conf
            if os.geteuid() == 0 and "\nuser root\n" not in conf.read_text():
                # As root, mosquitto drops to the user mosquitto, who cannot enter
                # pytest's own 0700 folders; broker-config's files are used as written.
                self.conf = folder / "mosquitto-as-root.conf"
                self.conf.write_text("user root\n" + conf.read_text())
        else:
            self.conf = folder / "mosquitto.conf"
            self.conf.write_text(
                f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                "max_packet_size 65536\n"
            )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Mosquitto:
        log = (self.folder / "mosquitto.log").open("ab")
        self.proc = subprocess.Popen(
            [str(MOSQUITTO), "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()

        def listening() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return True
            except OSError:
                assert self.proc is not None and self.proc.poll() is None, "mosquitto died"
                return False

        wait_for(listening, timeout=10, what="mosquitto to listen")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None


# -- a venue of boxes -------------------------------------------------------------


@dataclass
class Box:
    gate: str
    door: str
    direction: str
    folder: Path
    socket: Path

    @property
    def config(self) -> Path:
        return self.folder / "etc" / "scanner.toml"

    @property
    def db(self) -> Path:
        return self.folder / "var" / "scans.db"

    @property
    def peers(self) -> Path:
        return self.folder / "var" / "peers.db"


def roster_toml(
    boxes: dict[str, tuple[str, str]], keys: dict[str, str], logins: dict[str, str] | None = None
) -> str:
    out = ""
    for gate, (door, direction) in boxes.items():
        out += f'\n[gates.{gate}]\ndoor = "{door}"\ndirection = "{direction}"\n'
        if gate in keys:
            out += f'device_key = "{keys[gate]}"\n'
        if logins and gate in logins:
            out += f'broker_password_hash = "{logins[gate]}"\n'
    return out


@dataclass
class SecureBroker:
    """The event's broker CA, and the [broker] table a policy gets for it."""

    ca_key: Path
    ca_cert: str
    port: int

    @classmethod
    def make(cls, folder: Path, port: int | None = None) -> SecureBroker:
        from scanner.keyfiles import write_secret_file
        from scanner.venue.broker import make_ca

        key, cert = make_ca("test", datetime.now(UTC))
        folder.mkdir(parents=True, exist_ok=True)
        write_secret_file(folder / "broker-ca.key", key, force=True)
        return cls(folder / "broker-ca.key", cert.decode(), port or free_port())

    def table(self, address: str | None = None) -> str:
        return (
            f'\n[broker]\naddress = "{address or f"127.0.0.1:{self.port}"}"\n'
            f'ca = """\n{self.ca_cert}"""\n'
        )

    def start(self, root: Path, policy: Path, **listen: Any) -> Mosquitto:
        """mosquitto from broker-config's files for ``policy``, on 127.0.0.1."""
        from scanner.core.policy import open_policy
        from scanner.venue.broker import write_broker_config

        files = write_broker_config(
            open_policy(policy.read_bytes(), None),
            self.ca_key.read_bytes(),
            root / "broker",
            listen=("127.0.0.1", self.port),
            stay_as_me=True,
        )
        return Mosquitto(root, self.port, conf=files.config).start()


def set_up_venue(
    root: Path,
    organizer_key: Any,
    boxes: dict[str, tuple[str, str]],
    *,
    broker: str = "",
    capacity: str | None = None,
    enrolled: set[str] | None = None,
    policy_text: str | None = None,
    extra_toml: str = "",
    secure: SecureBroker | None = None,
) -> dict[str, Box]:
    """Boxes with their device keys made at set-up and registered in the
    signed roster (all, or ``enrolled``), each with the image's files.
    ``broker`` is scanner.toml's ``[venue] broker`` (an open broker); with
    ``secure``, the policy names the broker and its CA instead, and each
    enrolled box's login is on the roster, as ``scanner venue enrol`` prints."""
    root.mkdir(parents=True, exist_ok=True)
    sockets = Path(tempfile.mkdtemp(prefix="vgate-"))  # short: a Unix socket path is short
    made: dict[str, Box] = {}
    keys, logins = {}, {}
    for gate, (door, direction) in boxes.items():
        box = Box(gate, door, direction, root / gate, sockets / f"{gate}.sock")
        (box.folder / "var").mkdir(parents=True)
        device = generate_private_key()
        write_key_pair(box.folder / "var", "device", key=device)
        if enrolled is None or gate in enrolled:
            keys[gate] = public_key_text(device.public_key())
            logins[gate] = enrolment_hash(device, gate)
        made[gate] = box
    text = policy_text or EXAMPLE_POLICY.read_text()
    if capacity:
        text = text.replace("# capacity = { photo-pit = 12 }", f"capacity = {capacity}")
    if secure is not None:
        extra_toml += secure.table()
    toml_text = text + roster_toml(boxes, keys, logins if secure else None) + extra_toml
    (root / "policy.toml").write_text(toml_text)  # what the organizer signed
    policy = sign_policy(toml_text, organizer_key, SIGNED_AT)
    (root / "event.policy").write_bytes(policy)
    organizer = write_key_pair(root / "keys", "organizer", key=organizer_key, force=True)
    for box in made.values():
        etc, boot, state = box.folder / "etc", box.folder / "boot", box.folder / "var"
        (etc / "trust").mkdir(parents=True)
        boot.mkdir()
        shutil.copy(organizer.public, etc / "trust" / "organizer.pub")
        (etc / "event.policy").write_bytes(policy)
        (boot / "gate.toml").write_text(f'id = "{box.gate}"\n')
        box.config.write_text(
            f'[gate]\ndoor_file = "{boot / "gate.toml"}"\n'
            f'[gpio]\nfactory = "mock"\n'
            "[paths]\n"
            f'policy = "{state / "event.policy"}"\n'
            f'initial_policy = "{etc / "event.policy"}"\n'
            f'trust = ["{etc / "trust"}"]\n'
            f'revocations = "{state / "revocations.signed"}"\n'
            f'trust_update = "{state / "trust.signed"}"\n'
            f'db = "{state / "scans.db"}"\n'
            f'peers = "{state / "peers.db"}"\n'
            f'control_socket = "{box.socket}"\n'
            f'build_time = "{etc / "build-time"}"\n'
            f'device_key = "{state / "device.key"}"\n'
            f'[venue]\nbroker = "{broker}"\nheartbeat_seconds = 0.5\nstale_seconds = 3\n'
        )
    return made


# -- the door, driven by the test -------------------------------------------------


BLANK = np.full((120, 160), 255, np.uint8)


class DoorCamera:
    """Frames of nobody, until the test has a person hold up a pass; then the
    pass for a few frames and nobody for longer than the hold-off."""

    def __init__(self, *, timeout: float = 300.0) -> None:
        self.requests: queue.Queue[tuple[str, threading.Event] | None] = queue.Queue()
        self.deadline = time.monotonic() + timeout

    def frames(self) -> Iterator[np.ndarray]:
        while time.monotonic() < self.deadline:
            try:
                item = self.requests.get(timeout=0.01)
            except queue.Empty:
                yield BLANK
                continue
            if item is None:
                return
            text, done = item
            image = code_image(text)
            for _ in range(3):
                yield image
            for _ in range(35):  # 3.5 s of frame time: longer than the 3 s hold-off
                yield BLANK
            done.set()

    def present(self, text: str, *, timeout: float = 20.0) -> None:
        done = threading.Event()
        self.requests.put((text, done))
        assert done.wait(timeout), "the door never finished showing the pass"

    def end(self) -> None:
        self.requests.put(None)


@dataclass
class RunningGate:
    box: Box
    camera: DoorCamera
    thread: threading.Thread
    stop: threading.Event
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    code: list[int] = field(default_factory=list)

    def status(self) -> dict[str, Any]:
        return send_command(self.box.socket, {"cmd": "status"}, timeout=5)

    def venue(self) -> dict[str, Any]:
        """The venue part of the gate's status ({} while the daemon is not answering)."""
        try:
            return dict(self.status().get("venue") or {})
        except ScannerError:
            return {}

    def scans(self) -> list[dict[str, Any]]:
        conn = sqlite3.connect(self.box.db.resolve().as_uri() + "?mode=ro", uri=True)
        conn.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in conn.execute("SELECT * FROM scans ORDER BY seq")]
        finally:
            conn.close()

    def peer_ids(self) -> list[str]:
        if not self.box.peers.exists():
            return []
        conn = sqlite3.connect(self.box.peers.resolve().as_uri() + "?mode=ro", uri=True)
        try:
            return [r[0] for r in conn.execute("SELECT id FROM peer_scans")]
        finally:
            conn.close()

    def present(self, text: str) -> dict[str, Any]:
        """A person holds ``text`` up; returns the row the gate logged for it."""
        before = len(self.scans())
        self.camera.present(text)
        rows = wait_for(lambda: self.scans()[before:], timeout=10, what=f"{self.box.gate} to log")
        assert len(rows) == 1, rows
        return rows[0]

    def emitted(self, event: str) -> list[dict[str, Any]]:
        return [fields for name, fields in list(self.events) if name == event]

    def halt(self) -> int:
        self.camera.end()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), f"gate {self.box.gate} did not stop"
        return self.code[0] if self.code else -1


def start_gate(box: Box, clock: FakeClock, *, bus: Any = None) -> RunningGate:
    """The real daemon on the box's files and a door camera the test drives."""
    camera = DoorCamera()
    stop = threading.Event()
    events: list[tuple[str, dict[str, Any]]] = []
    code: list[int] = []
    config = load_config(box.config, require_zone=False)

    def run() -> None:
        code.append(
            run_gate(
                config,
                stop=stop,
                clock=clock,
                notifier=RecordingNotifier(),
                factory=MockFactory(),
                open_frames=lambda: FakeCamera(camera.frames()),
                emit=lambda event, /, **fields: events.append((event, fields)),
                venue_bus=bus,
            )
        )

    thread = threading.Thread(target=run, name=f"gate-{box.gate}", daemon=True)
    thread.start()
    gate = RunningGate(box, camera, thread, stop, events, code)
    wait_for(lambda: box.socket.exists(), timeout=20, what=f"{box.gate} to start")
    return gate


def venue_converged(gates: list[RunningGate]) -> bool:
    """Every gate holds every scan of every gate: its own and its peers', once."""
    own = {g.box.gate: [r["id"] for r in g.scans()] for g in gates}
    everything = sorted(i for ids in own.values() for i in ids)
    for g in gates:
        peers = g.peer_ids()
        if sorted(own[g.box.gate] + peers) != everything:
            return False
    return True


def copy_policy(src: Path, dst: Path) -> None:
    shutil.copy(src, dst)


def dump(value: Any) -> str:
    return json.dumps(value, indent=1, default=str)


def at_berlin(hms: str) -> datetime:
    from zoneinfo import ZoneInfo

    return datetime.fromisoformat(f"2026-12-05T{hms}").replace(tzinfo=ZoneInfo("Europe/Berlin"))


# -- a real browser, driven over Chromium's DevTools pipe ---------------------------------


CHROMIUM = Path("/usr/bin/chromium")


class Browser:
    """Headless Chromium driven through its DevTools protocol on a pipe
    (``--remote-debugging-pipe``: JSON messages ending in NUL on fds 3 and 4),
    so a test can read a live page while it updates, with no extra library."""

    def __init__(self, profile: Path, *, width: int = 1280, height: int = 1000) -> None:
        import os

        to_chrome, self._in = os.pipe()
        self._out, from_chrome = os.pipe()

        def fds() -> None:
            os.dup2(to_chrome, 3)
            os.dup2(from_chrome, 4)

        self.proc = subprocess.Popen(
            [
                str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
                "--remote-debugging-pipe", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
                f"--window-size={width},{height}", "about:blank",
            ],
            pass_fds=(3, 4),
            preexec_fn=fds,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        os.close(to_chrome)
        os.close(from_chrome)
        self._buffer = b""
        self._id = 0
        self.session: str | None = None

    def _send(self, method: str, params: dict[str, Any] | None = None, *, session: bool = True,
              timeout: float = 20.0) -> dict[str, Any]:  # fmt: skip
        import os
        import select

        self._id += 1
        message: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self._in, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self._id:
                    if "error" in reply:
                        raise AssertionError(f"{method}: {reply['error']}")
                    return dict(reply.get("result", {}))
            left = deadline - time.monotonic()
            assert left > 0, f"Chromium did not answer {method}"
            ready, _, _ = select.select([self._out], [], [], left)
            if ready:
                chunk = os.read(self._out, 1 << 16)
                assert chunk, "Chromium went away"
                self._buffer += chunk

    def open(self, url: str) -> None:
        target = self._send("Target.createTarget", {"url": url}, session=False)["targetId"]
        self.session = self._send(
            "Target.attachToTarget", {"targetId": target, "flatten": True}, session=False
        )["sessionId"]
        self._send("Runtime.enable")
        wait_for(
            lambda: (
                self.js("location.href") == url and self.js("document.readyState") == "complete"
            ),
            what=f"{url} to load",
        )

    def js(self, expression: str) -> Any:
        """Evaluate ``expression`` in the page; its value, as JSON."""
        result = self._send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path) -> None:
        import base64

        data = self._send(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}
        )
        path.write_bytes(base64.b64decode(data["data"]))

    def close(self) -> None:
        import os

        try:
            self._send("Browser.close", session=False, timeout=5)
        except (AssertionError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        os.close(self._in)
        os.close(self._out)
