"""The MQTT edge: a small port with a real client and an in-memory fake.

:class:`Bus` is all the venue link needs from a broker connection: publish
(QoS 1, acknowledged), subscribe, and four callbacks (connected,
disconnected, a message with its retained flag, an acknowledgement), and
:attr:`Bus.problem`, why the last attempt to connect failed. :class:`PahoBus`
is the real one, on paho-mqtt (MQTT 5, so the gate tells the broker the
largest packet it will take and the broker drops bigger ones before they
reach the box); with a TLS context it talks TLS only and checks the broker's
certificate before sending its login, and it reconnects by itself, 1 to 5 s
apart. :class:`FakeBroker` and :class:`FakeBus` ship in the package for
tests, the way gpiozero ships its ``MockFactory``: a broker in memory that
can be taken down and brought back.

Callbacks run on the client's own thread; a handler must only queue work.
"""

from __future__ import annotations

import itertools
import ssl
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from ..errors import VenueError

if TYPE_CHECKING:
    from .broker import BrokerLogin

__all__ = ["Bus", "BusHandler", "FakeBroker", "FakeBus", "PahoBus"]

MAX_PACKET = 32 * 1024  # the largest packet a gate accepts (a message is a few KiB at most)


class BusHandler(Protocol):
    def on_connect(self) -> None: ...
    def on_disconnect(self, why: str) -> None: ...
    def on_message(self, topic: str, payload: bytes, retained: bool = False) -> None: ...
    def on_ack(self, mid: int) -> None: ...


class Bus(Protocol):
    @property
    def connected(self) -> bool: ...
    @property
    def problem(self) -> str | None: ...
    def start(self, handler: BusHandler, topics: Iterable[str]) -> None: ...
    def subscribe(self, topics: Iterable[str]) -> None: ...
    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> int | None: ...
    def close(self) -> None: ...


class PahoBus:
    """A paho-mqtt client: QoS 1, MQTT 5, reconnecting in the background;
    TLS and a login when given (see module doc)."""

    def __init__(
        self,
        host: str,
        port: int,
        client_id: str,
        *,
        keepalive: int = 10,
        tls: ssl.SSLContext | None = None,
        login: BrokerLogin | None = None,
    ) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        self.host, self.port = host, port
        self._client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=True,
        )
        self._client.max_inflight_messages_set(256)
        self._client.max_queued_messages_set(2048)
        self._client.reconnect_delay_set(min_delay=1, max_delay=5)
        if tls is not None:
            self._client.tls_set_context(tls)
        if login is not None:
            self._client.username_pw_set(login.username, login.password)
        self.tls = tls is not None
        self._problem: str | None = None
        self._properties = Properties(PacketTypes.CONNECT)
        self._properties.MaximumPacketSize = MAX_PACKET
        self._keepalive = keepalive
        self._topics: list[str] = []
        self._connected = False
        self._handler: BusHandler | None = None
        self._mqtt = mqtt

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def problem(self) -> str | None:
        return self._problem

    def start(self, handler: BusHandler, topics: Iterable[str]) -> None:
        self._handler = handler
        self._topics = list(topics)
        c = self._client
        c.on_connect = self._on_connect
        c.on_connect_fail = self._on_connect_fail
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        c.on_log = self._on_log
        try:
            c.connect_async(
                self.host,
                self.port,
                keepalive=self._keepalive,
                clean_start=True,
                properties=self._properties,
            )
        except (OSError, ValueError) as err:
            raise VenueError(f"cannot reach the broker {self.host}:{self.port}: {err}") from err
        c.loop_start()

    def subscribe(self, topics: Iterable[str]) -> None:
        self._topics = list(topics)
        if self._connected and self._topics:
            self._client.subscribe([(t, 1) for t in self._topics])

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> int | None:
        if not self._connected:
            return None
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        if info.rc != self._mqtt.MQTT_ERR_SUCCESS:
            return None
        return int(info.mid)

    def close(self) -> None:
        try:
            self._client.disconnect()
        finally:
            self._client.loop_stop()

    # paho's callbacks, on its network thread
    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:  # type: ignore[no-untyped-def]
        if reason_code.is_failure:
            self._problem = f"the broker refused this box's login ({reason_code})"
            return
        self._problem = None
        self._connected = True
        if self._topics:
            client.subscribe([(t, 1) for t in self._topics])
        if self._handler is not None:
            self._handler.on_connect()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None) -> None:  # type: ignore[no-untyped-def]
        was, self._connected = self._connected, False
        if self._handler is not None and was:
            self._handler.on_disconnect(str(reason_code))

    def _on_connect_fail(self, client, userdata) -> None:  # type: ignore[no-untyped-def]
        # paho calls this inside its ``except OSError``: the error is still at hand
        err = sys.exc_info()[1]
        if isinstance(err, ssl.SSLCertVerificationError):
            self._problem = (
                f"the broker at {self.host}:{self.port} did not show a certificate from the "
                f"event's CA ({err.verify_message}): refused"
            )
        elif isinstance(err, ssl.SSLEOFError | ConnectionResetError | BrokenPipeError):
            self._problem = (
                f"the broker at {self.host}:{self.port} hung up before TLS was set up"
            )
        elif isinstance(err, ssl.SSLError):
            self._problem = f"no TLS with the broker at {self.host}:{self.port} ({err.reason})"
        elif err is not None:
            self._problem = f"cannot reach the broker at {self.host}:{self.port}: {err}"

    def _on_log(self, client, userdata, level, text) -> None:  # type: ignore[no-untyped-def]
        # paho's own words for a failure nothing else reports (before a connection)
        if level in (self._mqtt.MQTT_LOG_ERR, self._mqtt.MQTT_LOG_WARNING) and not self._connected:
            self._problem = self._problem or f"the broker connection: {str(text)[:200]}"

    def _on_message(self, client, userdata, message) -> None:  # type: ignore[no-untyped-def]
        if self._handler is not None:
            self._handler.on_message(message.topic, bytes(message.payload), bool(message.retain))

    def _on_publish(self, client, userdata, mid, reason_code=None, properties=None) -> None:  # type: ignore[no-untyped-def]
        if self._handler is not None:
            self._handler.on_ack(int(mid))


# -- the fake ------------------------------------------------------------------------


def topic_matches(pattern: str, topic: str) -> bool:
    """MQTT topic filter matching: ``+`` one level, ``#`` the rest."""
    p, t = pattern.split("/"), topic.split("/")
    for i, part in enumerate(p):
        if part == "#":
            return True
        if i >= len(t) or (part != "+" and part != t[i]):
            return False
    return len(p) == len(t)


@dataclass
class FakeBroker:
    """A broker in memory for tests: delivers at once, keeps retained
    messages, and can be taken down (every client disconnected) and up."""

    up: bool = True
    clients: list[FakeBus] = field(default_factory=list)
    retained: dict[str, bytes] = field(default_factory=dict)
    published: list[tuple[str, bytes]] = field(default_factory=list)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def connect(self, bus: FakeBus) -> None:
        with self._lock:
            if bus not in self.clients:
                self.clients.append(bus)
        if self.up:
            bus._connected_now()

    def deliver(self, topic: str, payload: bytes, *, retain: bool = False) -> bool:
        with self._lock:
            if not self.up:
                return False
            self.published.append((topic, payload))
            if retain:
                self.retained[topic] = payload
            targets = [c for c in self.clients if c.wants(topic)]
        for client in targets:
            client._deliver(topic, payload)
        return True

    def take_down(self) -> None:
        with self._lock:
            self.up = False
            clients = list(self.clients)
        for client in clients:
            client._disconnected_now("broker down")

    def bring_up(self) -> None:
        with self._lock:
            self.up = True
            clients = list(self.clients)
        for client in clients:
            client._connected_now()


class FakeBus:
    """One client of a :class:`FakeBroker`."""

    _mids = itertools.count(1)

    def __init__(self, broker: FakeBroker) -> None:
        self.broker = broker
        self._handler: BusHandler | None = None
        self._topics: list[str] = []
        self._connected = False
        self.closed = False

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def problem(self) -> str | None:
        return None if self.broker.up else "broker down"

    def start(self, handler: BusHandler, topics: Iterable[str]) -> None:
        self._handler = handler
        self._topics = list(topics)
        self.broker.connect(self)

    def subscribe(self, topics: Iterable[str]) -> None:
        self._topics = list(topics)
        if self._connected:
            self._send_retained()

    def wants(self, topic: str) -> bool:
        return self._connected and any(topic_matches(p, topic) for p in self._topics)

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> int | None:
        if not self._connected or not self.broker.deliver(topic, payload, retain=retain):
            return None
        mid = next(self._mids)
        if self._handler is not None:
            self._handler.on_ack(mid)
        return mid

    def close(self) -> None:
        self.closed = True
        self._connected = False
        with self.broker._lock:
            if self in self.broker.clients:
                self.broker.clients.remove(self)

    def _connected_now(self) -> None:
        if self.closed:
            return
        self._connected = True
        if self._handler is not None:
            self._handler.on_connect()
        self._send_retained()

    def _send_retained(self) -> None:
        for topic, payload in list(self.broker.retained.items()):
            if self.wants(topic):
                self._deliver(topic, payload, retained=True)

    def _disconnected_now(self, why: str) -> None:
        if self._connected:
            self._connected = False
            if self._handler is not None:
                self._handler.on_disconnect(why)

    def _deliver(self, topic: str, payload: bytes, *, retained: bool = False) -> None:
        if self._handler is not None:
            self._handler.on_message(topic, payload, retained)
