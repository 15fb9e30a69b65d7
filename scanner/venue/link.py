"""The venue link: a gate publishes its scans and takes its peers', never in
the way of the door.

One thread does all of the link's work. The bus's callbacks (on the MQTT
client's thread) only queue what happened, after a cheap flood check; the
scan loop only takes what the link hands over in :attr:`VenueLink.inbox`,
between frames. So a broker that is down, slow or hostile can delay what a
gate knows of its peers, never a decision.

Rules this module keeps:

- **The outbox is the scan log.** A scan is written to the log (fsync) in
  its own transaction before its light shows; the link reads the log after
  the last scan the broker acknowledged (QoS 1), in order, signs each row
  and publishes it, at most :attr:`LinkSettings.window` unacknowledged at a
  time. After a reconnect it starts again from the last acknowledged one,
  so nothing is lost; a scan sent twice is recognised by its gate and
  sequence number and applied once.
- **Catching up.** Each gate's heartbeat says how far its log goes. A gate
  that lacks scans a peer announced a while ago (it was off, the cable was
  out, the broker lost them) asks for them (``sync``) and that peer sends
  them again from its own log on ``replay/REQUESTER``; at connect a gate
  asks every peer. Replays are only taken from gates that were asked, and
  sent at a bounded rate.
- **Hostile input.** Every message is checked by :mod:`.messages` against
  the signed roster: a box speaks only for its own door, zone and direction,
  about scans made no later than now (plus the clock skew allowed) and not
  before the event opens. Scans, requests and replays arriving as retained
  messages are refused (only heartbeats are retained). Refusals are counted
  per reason and source, the source being the box whose signature was
  checked or "unverified" (never a name from the topic, which an attacker
  chooses), logged at most once a minute per reason and source, and stored
  as counts (:meth:`PeerStore.record_drops`), so a flood cannot fill the
  disk or the journal. One token bucket for all messages and a bounded
  queue cap the work a flood can cause before any signature is checked; a
  bucket per box, spent only on messages that box really signed, caps what
  one box may send.
- **The roster rules.** A new policy whose roster drops a box, or gives its
  gate another key, makes the link forget everything that box said
  (:meth:`PeerStore.forget`); the view is rebuilt from what is left.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar, Protocol

from ..core.keys import Ed25519PrivateKey
from ..core.policy import Policy
from ..core.signed import format_utc
from ..core.venue_view import SeqSet, Sighting
from ..errors import DroppedMessageError, ScannerError, VenueError
from .bus import Bus
from .messages import (
    STOPPED_STATUS,
    Bounds,
    RosterKeys,
    heartbeat_message,
    new_boot,
    observer_sync_message,
    open_heartbeat,
    open_scan,
    open_sync,
    peek_body,
    roster_keys,
    same_scan,
    scan_message,
    sync_message,
    topic,
)
from .store import OwnLog, PeerStore

__all__ = ["LinkSettings", "PeerHeard", "TokenBucket", "VenueLink"]

EVENT_QUEUE = 20_000  # messages waiting for the link's thread; more is a flood
LOG_EVERY = 60.0  # seconds between two log lines of one refusal reason and source
UNVERIFIED = "unverified"  # the source of a refusal made before any signature was checked
DELAY_SAMPLES = 10_000  # peer scans whose delay is kept (a float each): enough for a p99


class Clock(Protocol):
    def now(self) -> datetime: ...


class TokenBucket:
    """``rate`` per second on average, ``burst`` at once."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = burst
        self.at: float | None = None

    def refill(self, now: float) -> float:
        if self.at is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        return self.tokens

    def take(self, now: float, n: float = 1.0) -> bool:
        if self.refill(now) < n:
            return False
        self.tokens -= n
        return True


@dataclass(frozen=True)
class LinkSettings:
    gate: str  # this gate's id, or an observer's name (the live view)
    heartbeat_seconds: float = 2.0
    window: int = 200  # own scans published and not yet acknowledged
    peer_rate: float = 25.0  # scans a second one gate may send (a door scans a few)
    peer_burst: float = 300.0
    total_rate: float = 3000.0  # messages a second taken from the broker at all
    total_burst: float = 6000.0
    replay_rate: float = 500.0  # scans a second sent again to those who ask
    resync_after: float = 3.0  # a peer announced scans this long ago that are not here: ask
    asked_for: float = 60.0  # replays from a gate are taken this long after asking it
    publishes: bool = True  # False for an observer: it only listens (and asks)
    ahead_seconds: float = 7.0  # a peer's scan may be dated this far past our now (clock skew)
    sync_window: float = 60.0  # a catch-up request older (or newer) than this asks for nothing


@dataclass(frozen=True)
class PeerHeard:
    """A checked heartbeat, for the loop's view."""

    gate: str
    head: int
    offset: float  # the gate's clock minus ours, one sample (seconds)
    at: float  # monotonic, when it arrived
    clock_trusted: bool
    body: Mapping[str, Any]


# What the bus's thread hands the link's thread: one small type per kind, one handler each.


@dataclass(frozen=True, slots=True)
class _Wake:
    """Something for the link to do now (a new row, a policy, a stop)."""


@dataclass(frozen=True, slots=True)
class _Connected:
    """The broker took the connection (again)."""


@dataclass(frozen=True, slots=True)
class _Disconnected:
    why: str


@dataclass(frozen=True, slots=True)
class _Acked:
    mid: int  # the broker's message id of a scan it now holds


@dataclass(frozen=True, slots=True)
class _Arrived:
    topic: str
    payload: bytes
    at: float  # monotonic, when it arrived
    retained: bool


_LinkEvent = _Wake | _Connected | _Disconnected | _Acked | _Arrived
_WAKE = _Wake()
_CONNECTED = _Connected()


class VenueLink:
    """The link's thread and state (see module doc). Start it, feed it the
    policy and the loop's status, read :attr:`inbox`; close it at the end."""

    def __init__(
        self,
        settings: LinkSettings,
        bus: Bus,
        store: PeerStore,
        own: OwnLog | None,
        key: Ed25519PrivateKey | None,
        *,
        clock: Clock,
        emit: Callable[..., None] = lambda event, /, **fields: None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.me = settings.gate
        self.bus = bus
        self.store = store
        self.own = own
        self.key = key
        self.clock = clock
        self.emit = emit
        self.monotonic = monotonic
        self.inbox: queue.SimpleQueue[Sighting | PeerHeard] = queue.SimpleQueue()
        self._events: queue.Queue[_LinkEvent] = queue.Queue(maxsize=EVENT_QUEUE)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._flood = TokenBucket(settings.total_rate, settings.total_burst)
        self._flooded = 0  # counted on the client's thread
        self._policy: Policy | None = None
        self._new_policy: Policy | None = None
        self._roster: RosterKeys | None = None
        self._status: Mapping[str, Any] = {}
        # what arrived from each peer, and what each announced (when, head)
        self._received: dict[str, SeqSet] = {}
        self._announced: dict[str, deque[tuple[float, int]]] = {}
        self._runs: dict[str, dict[str, int]] = {}  # gate: each run's highest heartbeat
        self._asked_at: dict[str, float] = {}
        self._buckets: dict[str, TokenBucket] = {}
        # own scans on their way out
        self._acked = SeqSet()
        self._published = 0
        self._inflight: dict[int, int] = {}  # mid: seq
        self._saved_ack = 0
        self._jobs: dict[str, int] = {}  # requester: next seq to send again
        self._replays = TokenBucket(settings.replay_rate, settings.replay_rate)
        self._boot = new_boot()
        self._n = 0
        self._next_hb = 0.0
        self._next_save = 0.0
        self.connected = False
        self.since: datetime | None = None  # when the link last connected or dropped
        # what happened, for the status, the live view and the bench
        self.counts: Counter[str] = Counter()
        self.drops: Counter[str] = Counter()
        self._drop_detail: dict[tuple[str, str], tuple[int, str]] = {}
        self._drop_logged: dict[tuple[str, str], float] = {}
        # scan made -> handed to the loop (s), the last DELAY_SAMPLES: the bench's percentiles
        self.delays: deque[float] = deque(maxlen=DELAY_SAMPLES)
        self.cpu_seconds = 0.0
        self.error: str | None = None

    # -- from the scan loop (any thread) ------------------------------------------

    def set_policy(self, policy: Policy | None) -> None:
        """The verified policy in force: its event, roster and device keys."""
        self._new_policy = policy
        self.wake()

    def set_status(self, status: Mapping[str, Any]) -> None:
        """The gate's status for its heartbeats (a new mapping each time)."""
        self._status = status

    def wake(self) -> None:
        try:
            self._events.put_nowait(_WAKE)
        except queue.Full:
            pass

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"venue-{self.me}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the thread and the bus; safe to call twice."""
        self._stop.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        try:
            self.bus.close()
        except Exception as err:  # closing a broken connection must not stop a shutdown
            self.emit("warning", message=f"venue link: closing the broker connection: {err!r}")

    def __enter__(self) -> VenueLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the bus's callbacks (the client's thread): queue only ---------------------

    def on_connect(self) -> None:
        self._put(_CONNECTED)

    def on_disconnect(self, why: str) -> None:
        self._put(_Disconnected(why))

    def on_ack(self, mid: int) -> None:
        self._put(_Acked(mid))

    def on_message(self, topic_name: str, payload: bytes, retained: bool = False) -> None:
        now = self.monotonic()
        if not self._flood.take(now):
            self._flooded += 1
            return
        self._put(_Arrived(topic_name, payload, now, retained))

    def _put(self, item: _LinkEvent) -> None:
        try:
            self._events.put_nowait(item)
        except queue.Full:
            self._flooded += 1

    # -- the thread -------------------------------------------------------------

    def topics(self) -> list[str]:
        if self._policy is None:
            return []
        event = self._policy.event
        return [
            topic(event, "scan", "+"),
            topic(event, "hb", "+"),
            topic(event, "sync", "+"),
            topic(event, "replay", self.me),
        ]

    def _run(self) -> None:
        cpu0 = time.thread_time()
        self._load()
        try:
            self.bus.start(self, self.topics())
        except VenueError as err:
            self.error = str(err)
            self.emit("fault", fault="venue", message=str(err))
        while not self._stop.is_set():
            try:
                self._step()
            except ScannerError as err:  # a store that fails: said, and tried again
                self.error = str(err)
                self.emit("warning", message=f"venue link: {err}")
                self._stop.wait(1.0)
            except Exception as err:  # the link must never die silently
                self.error = repr(err)
                self.emit("warning", message=f"venue link: unexpected {err!r}")
                self._stop.wait(1.0)
            self.cpu_seconds = time.thread_time() - cpu0
        if self.connected and self._policy is not None and self.settings.publishes:
            # a last, retained heartbeat: the venue sees this gate stopped, not silent
            self._heartbeat(self.monotonic(), stopped=True)
        self._save(force=True)

    def _load(self) -> None:
        """What earlier runs stored: peers' sequence numbers, own acknowledgements."""
        for gate, seq in self.store.seqs():
            self._received.setdefault(gate, SeqSet()).add(seq)
        acked = self.store.get("acked")
        if isinstance(acked, int) and acked > 0:
            self._acked.upto = acked  # everything up to it
            self._saved_ack = self._published = acked

    def _step(self) -> None:
        try:
            items = [self._events.get(timeout=0.05)]
        except queue.Empty:
            items = []
        while len(items) < 1000:
            try:
                items.append(self._events.get_nowait())
            except queue.Empty:
                break
        if self._new_policy is not self._policy and self._new_policy is not None:
            self._take_policy(self._new_policy)
        batch: list[Sighting] = []
        for item in items:
            match item:
                case _Arrived():
                    found = self._message(item.topic, item.payload, item.at, item.retained)
                    if found is not None:
                        batch.append(found)
                case _Acked():
                    self._acked_by_broker(item.mid)
                case _Connected():
                    self._connected()
                case _Disconnected():
                    self._disconnected(item.why)
                case _Wake():
                    pass  # woken to publish, take a policy or stop: done below
        if batch:
            self._store(batch)
        mono = self.monotonic()
        if self._flooded:
            flooded, self._flooded = self._flooded, 0
            self._drop(
                "flood", UNVERIFIED, f"{flooded} messages over the rate the link takes", flooded
            )
        if self.connected and self._policy is not None:
            if self.settings.publishes:
                self._publish_own()
                self._heartbeat(mono)
            self._serve(mono)
            self._ask(mono)
        self._save()

    def _take_policy(self, policy: Policy) -> None:
        old = self._policy
        self._policy = policy
        self._roster = roster_keys(policy)
        keep = {gate: kid for kid, (gate, _) in self._roster.keys.items()}
        forgotten = self.store.forget(keep)
        if forgotten:  # a box off the roster, or a gate with another key: all it said goes
            self._received.clear()
            for gate, seq in self.store.seqs():
                self._received.setdefault(gate, SeqSet()).add(seq)
            self.emit("venue", state="forgot", scans=forgotten, why="no longer on the roster")
        for gate in [g for g in self._announced if g not in keep]:
            del self._announced[gate]
        if old is None or old.event != policy.event:
            self.bus.subscribe(self.topics())
            if self.connected:
                self._connected()

    def _acked_by_broker(self, mid: int) -> None:
        seq = self._inflight.pop(mid, None)
        if seq is not None:
            self._acked.add(seq)
            self.counts["acked"] += 1

    def _connected(self) -> None:
        self.connected = True
        self.since = self.clock.now()
        self.counts["connects"] += 1
        self._inflight.clear()
        self._published = self._acked.upto  # the outbox: all after the last acknowledged
        self._next_hb = 0.0
        self.emit("venue", state="connected")
        if self._policy is not None:
            self._ask(self.monotonic(), everyone=True)

    def _disconnected(self, why: str) -> None:
        if self.connected:
            self.since = self.clock.now()
            self.emit("venue", state="disconnected", why=why)
        self.connected = False
        self._inflight.clear()

    # -- incoming ---------------------------------------------------------------------

    def _message(
        self, topic_name: str, payload: bytes, at: float, retained: bool = False
    ) -> Sighting | None:
        """A message from the broker, checked by the handler of its topic's kind;
        anything refused is counted by reason and source, never raised."""
        parts = topic_name.split("/")
        kind = parts[2] if len(parts) == 4 else ""
        named = parts[-1][:40]  # chosen by whoever published: never a source on its own
        self.counts["messages"] += 1
        try:
            if self._policy is None or self._roster is None:
                raise DroppedMessageError("no_policy", "no verified policy to check it against yet")
            if retained and kind in ("scan", "replay", "sync"):
                raise DroppedMessageError(
                    "retained", f"a retained {kind} message on {topic_name[:80]!r}"
                )
            handler = self._handlers.get(kind)
            if handler is None:
                raise DroppedMessageError("wrong_topic", f"no such topic {topic_name[:80]!r}")
            return handler(self, kind, named, topic_name, payload, at)
        except DroppedMessageError as err:
            source = err.source or UNVERIFIED
            detail = str(err) if err.source else f"{err} (on the topic of {named!r})"
            self._drop(err.reason, source, detail)
            return None

    def _scan_message(
        self, kind: str, named: str, topic_name: str, payload: bytes, at: float
    ) -> Sighting | None:
        """A peer's scan (``scan``), or one sent again because this gate asked (``replay``)."""
        assert self._policy is not None and self._roster is not None
        event = self._policy.event
        if kind == "scan" and named == self.me:
            return None  # our own, back from the broker
        if kind == "replay" and named != self.me:
            raise DroppedMessageError("wrong_topic", "a replay for somebody else")
        body = peek_body(payload)
        gate, seq = body.get("gate"), body.get("seq")
        if isinstance(gate, str) and seq in self._received.get(gate, ()):
            held = self.store.held(gate, seq) if isinstance(seq, int) else None
            if held is not None and same_scan(body, held):
                self.counts["duplicates"] += 1  # sent again: QoS 1, a reconnect
                return None
            # not what is held: a forgery, or a genuine box contradicting itself
            open_scan(payload, topic_name, self._roster, event)
            raise DroppedMessageError(
                "conflict",
                f"gate {gate} row {seq} signed twice with other contents",
                source=gate,
            )
        if kind == "replay":
            asked = self._asked_at.get(gate) if isinstance(gate, str) else None
            if asked is None or at - asked > self.settings.asked_for:
                raise DroppedMessageError("unasked", f"a replay of {gate!s:.40} nobody asked")
        sighting = open_scan(payload, topic_name, self._roster, event, self._bounds())
        if kind == "scan" and not self._bucket(sighting.gate).take(at):
            raise DroppedMessageError(
                "flood", f"gate {sighting.gate} sends faster than a door scans",
                source=sighting.gate,
            )
        return sighting

    def _heartbeat_message(
        self, kind: str, named: str, topic_name: str, payload: bytes, at: float
    ) -> None:
        """A peer's heartbeat: how far its log goes, its clock, its health."""
        assert self._policy is not None and self._roster is not None
        if named == self.me:
            return None
        hb = open_heartbeat(payload, topic_name, self._roster, self._policy.event)
        runs = self._runs.setdefault(hb.gate, {})
        last = runs.get(hb.boot, -1)
        if hb.n == last:
            return None  # the broker's retained copy of one we have
        if hb.n < last:
            raise DroppedMessageError("replayed", f"an old heartbeat of {hb.gate}", source=hb.gate)
        if hb.boot not in runs and len(runs) >= 16:
            runs.pop(next(iter(runs)))
        runs[hb.boot] = hb.n
        self._announced.setdefault(hb.gate, deque(maxlen=8)).append((at, hb.head))
        offset = (hb.ts - self.clock.now()).total_seconds()
        self.inbox.put(PeerHeard(hb.gate, hb.head, offset, at, hb.clock_trusted, hb.body))
        self.counts["heartbeats"] += 1
        return None

    def _sync_message(
        self, kind: str, named: str, topic_name: str, payload: bytes, at: float
    ) -> None:
        """A peer (or the live view) asks for scans again, from a sequence number on."""
        assert self._policy is not None and self._roster is not None
        if named == self.me:
            return None
        request = open_sync(
            payload,
            topic_name,
            self._roster,
            self._policy.event,
            now=self.clock.now(),
            window=timedelta(seconds=self.settings.sync_window),
        )
        start = request.want.get(self.me)
        if start is not None and self.settings.publishes:
            # the earliest asked for wins: a request can add replays, never cancel one
            held = self._jobs.get(request.requester)
            self._jobs[request.requester] = start if held is None else min(held, start)
        return None

    _handlers: ClassVar[Mapping[str, Callable[..., Sighting | None]]] = {
        "scan": _scan_message,
        "replay": _scan_message,
        "hb": _heartbeat_message,
        "sync": _sync_message,
    }

    def _bounds(self) -> Bounds:
        assert self._policy is not None
        return Bounds(
            now=self.clock.now(),
            ahead=timedelta(seconds=self.settings.ahead_seconds),
            opens=self._policy.opens,
        )

    def _bucket(self, gate: str) -> TokenBucket:
        bucket = self._buckets.get(gate)
        if bucket is None:
            if len(self._buckets) > 4096:  # made-up gate names: keep the map bounded
                self._buckets.clear()
            bucket = self._buckets[gate] = TokenBucket(
                self.settings.peer_rate, self.settings.peer_burst
            )
        return bucket

    def _store(self, batch: list[Sighting]) -> None:
        now = self.clock.now()
        stored = self.store.store(batch, now)
        for sighting in stored.new:
            self._received.setdefault(sighting.gate, SeqSet()).add(sighting.seq)
            self.inbox.put(sighting)
            self.delays.append((now - sighting.ts).total_seconds())
        self.counts["stored"] += len(stored.new)
        self.counts["duplicates"] += stored.duplicates
        for sighting, why in stored.conflicts:
            self._drop("conflict", sighting.gate, why)

    def _drop(self, reason: str, source: str, detail: str, count: int = 1) -> None:
        """Count a refusal; log the first of each reason and source a minute."""
        self.drops[reason] += count
        key = (reason, source)
        held = self._drop_detail.get(key, (0, detail))
        self._drop_detail[key] = (held[0] + count, detail)
        now = self.monotonic()
        if now - self._drop_logged.get(key, -LOG_EVERY) >= LOG_EVERY:
            self._drop_logged[key] = now
            if len(self._drop_logged) > 4096:
                self._drop_logged.clear()
            self.emit("venue_drop", reason=reason, source=source, detail=detail[:200])

    # -- outgoing ---------------------------------------------------------------------

    def _publish_own(self) -> None:
        if self.own is None or self.key is None or self._policy is None:
            return
        room = self.settings.window - len(self._inflight)
        if room <= 0:
            return
        event = self._policy.event
        for row in self.own.after(self._published, min(room, 200)):
            if row["event"] not in (None, event):  # an earlier event's scan in the same log
                self._acked.add(row["seq"])
                self._published = row["seq"]
                continue
            payload = scan_message(self.key, row, event)
            mid = self.bus.publish(topic(event, "scan", self.me), payload)
            if mid is None:
                return
            self._inflight[mid] = row["seq"]
            self._published = row["seq"]
            self.counts["published"] += 1

    def _heartbeat(self, mono: float, *, stopped: bool = False) -> None:
        if self.key is None or self._policy is None or (mono < self._next_hb and not stopped):
            return
        self._next_hb = mono + self.settings.heartbeat_seconds
        status = self._status
        self._n += 1
        body = {
            "gate": self.me,
            "event": self._policy.event,
            "boot": self._boot,
            "n": self._n,
            "head": self.own.head() if self.own is not None else 0,
            "acked": self._acked.upto,
            "clock": "trusted" if status.get("clock_trusted", True) else "untrusted",
            "phase": status.get("phase"),
            "faults": sorted(status.get("faults") or ())[:16],
            "frames": int(status.get("frames", 0)),
            "last_frame_age": status.get("last_frame_age"),
            "granted": int(status.get("granted", 0)),
            "denied": int(status.get("denied", 0)),
            "peers": status.get("peers") or {"in_sync": 0, "of": 0, "behind": []},
            "status": STOPPED_STATUS if stopped else str(status.get("summary", ""))[:300],
        }
        payload = heartbeat_message(self.key, body, self.clock.now())
        if self.bus.publish(topic(self._policy.event, "hb", self.me), payload, retain=True):
            self.counts["heartbeats_sent"] += 1

    def _serve(self, mono: float) -> None:
        """Send scans again to gates that asked, within the replay rate."""
        if not self._jobs or self.own is None or self.key is None or self._policy is None:
            return
        event = self._policy.event
        for requester, start in list(self._jobs.items()):
            room = int(self._replays.refill(mono))
            if room <= 0:
                return
            rows = self.own.after(start - 1, min(room, 200))
            sent = 0
            for row in rows:
                if row["event"] not in (None, event):
                    continue
                payload = scan_message(self.key, row, event)
                if self.bus.publish(topic(event, "replay", requester), payload) is None:
                    return
                sent += 1
            self._replays.take(mono, len(rows))
            self.counts["replayed"] += sent
            if len(rows) < min(room, 200) or not rows:
                del self._jobs[requester]
            else:
                self._jobs[requester] = rows[-1]["seq"] + 1
        if len(self._jobs) > 1024:  # made-up requesters: keep the map bounded
            self._jobs.clear()

    def _ask(self, mono: float, *, everyone: bool = False) -> None:
        """Ask peers for scans they announced a while ago that are not here."""
        if self._roster is None or self._policy is None:
            return
        want = {}
        for gate in sorted(self._roster.gates - {self.me}):
            have = self._received.get(gate)
            upto = have.upto if have is not None else 0
            if everyone:
                want[gate] = upto + 1
                continue
            if mono - self._asked_at.get(gate, -1e9) < self.settings.resync_after:
                continue
            settled = [h for t, h in self._announced.get(gate, ()) if mono - t >= 1.0]
            if settled and max(settled) > upto:
                want[gate] = upto + 1
        if not want:
            return
        event = self._policy.event
        if self.key is not None and self.settings.publishes:
            request = sync_message(self.key, self.me, event, want, self.clock.now())
        else:  # the live view has no device key: its own topic, which its login alone writes
            request = observer_sync_message(self.me, want)
        if self.bus.publish(topic(event, "sync", self.me), request) is not None:
            for gate in want:
                self._asked_at[gate] = mono
            self.counts["asked"] += 1

    def _save(self, *, force: bool = False) -> None:
        mono = self.monotonic()
        if not force and mono < self._next_save:
            return
        self._next_save = mono + 1.0
        if self._acked.upto != self._saved_ack:
            self.store.set("acked", self._acked.upto)
            self._saved_ack = self._acked.upto
        if self._drop_detail:
            detail, self._drop_detail = self._drop_detail, {}
            self.store.record_drops(detail, self.clock.now())

    # -- for the status -----------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The link as a status shows it (read from other threads: plain values)."""
        return {
            "connected": self.connected,
            "problem": None if self.connected else self.bus.problem,
            "since": format_utc(self.since) if self.since else None,
            "published": self.counts["published"],
            "acked": self._acked.upto,
            "stored": self.counts["stored"],
            "dropped": dict(self.drops),
            "error": self.error,
        }
