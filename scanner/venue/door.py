"""The venue as one gate's scan loop sees it.

:class:`GateVenue` is used by the scan loop's thread and by the gate's
writer thread (which hands over each scan once it is on disk), one at a
time under its lock. It owns the gate's
:class:`~scanner.core.venue_view.VenueView`, built from its own log and the
peers' scans stored so far, and kept up to date from what the link hands
over: between frames (:meth:`drain`, bounded in count and time) and just
before each decision. It never waits for the link: a decision is made on
what the view holds at that moment. It also says, in the gate's status,
what the venue link gives right now ("3 peers in sync: anti-passback
across doors", or "no broker since 21:03: timed anti-passback only").

:func:`open_gate_venue` is the wiring the daemon calls: nothing happens
unless the signed policy names the venue's broker (``[broker]``) or
scanner.toml's ``[venue] broker`` does (a trial on a laptop).
"""

from __future__ import annotations

import functools
import queue
import sqlite3
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from ..core.keys import Ed25519PrivateKey, public_key_text
from ..core.policy import BrokerPlan, GatePlace, Policy, parse_broker_address
from ..core.venue_view import DoorView, VenueView
from ..errors import ScannerError, VenueError
from ..record.log import ScanLog
from ..record.row import ScanRow
from .bus import Bus, PahoBus
from .link import DELAY_SAMPLES, LinkSettings, PeerHeard, VenueLink
from .store import (
    OWN_SIGHTING_COLUMNS,
    SIGHTING_COLUMNS,
    OwnLog,
    PeerStore,
    sighting_from_row,
)

_T = TypeVar("_T")

__all__ = ["GateVenue", "broker_endpoint", "open_gate_venue"]

DRAIN_MOST = 2000  # sightings applied between two frames, at most
DRAIN_BUDGET = 0.004  # seconds a drain may take before it leaves the rest for the next frame
DROPS_EVERY = 60.0  # seconds between two summaries of refused messages in the gate's events


def _locked(method: Callable[..., _T]) -> Callable[..., _T]:
    """The loop thread and the gate's writer thread (which hands over each scan
    once it is on disk) both reach the view: one at a time."""

    @functools.wraps(method)
    def inner(self: GateVenue, *args: Any, **kwargs: Any) -> _T:
        with self._lock:
            return method(self, *args, **kwargs)

    return inner


class GateVenue:
    """The loop's side of the venue link (see module doc)."""

    def __init__(
        self,
        link: VenueLink,
        *,
        place: GatePlace,
        log: ScanLog,
        peers: Path,
        device_key: Ed25519PrivateKey | None,
        margin: timedelta = timedelta(seconds=2),
        max_offset: timedelta = timedelta(seconds=5),
        stale_after: float = 10.0,
        emit: Callable[..., None] = lambda event, /, **fields: None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.RLock()
        self.link = link
        self.me = link.me
        self.place = place
        self.log = log
        self.peers = peers
        self.device_key = device_key
        self.margin, self.max_offset, self.stale_after = margin, max_offset, stale_after
        self.emit = emit
        self.monotonic = monotonic
        self.view: VenueView | None = None
        self.policy: Policy | None = None
        self.applied = 0
        self.apply_seconds = 0.0  # time the loop spent applying peers' scans (the bench)
        self.copies_seen = 0
        # scan made -> in this view (s), the last DELAY_SAMPLES: the bench's percentiles
        self.delays: deque[float] = deque(maxlen=DELAY_SAMPLES)
        self._frames = -1
        self._last_frame: float | None = None
        self._next_drops = 0.0
        self._drops_told: Counter[str] = Counter()
        self._was_connected: bool | None = None

    # -- the view ----------------------------------------------------------------

    def _ensure(self, policy: Policy | None) -> VenueView | None:
        if policy is self.policy:
            return self.view
        self.policy = policy
        self.link.set_policy(policy)
        if policy is None:
            self.view = None
            return None
        view = VenueView(
            policy.places,
            policy.gates,
            policy.event,
            me=self.me,
            margin=self.margin,
            max_offset=self.max_offset,
            stale_after=self.stale_after,
        )
        if self.view is not None:
            view.health = self.view.health
        try:
            own = self.log.db.conn.execute(
                f"SELECT {OWN_SIGHTING_COLUMNS} FROM scans WHERE event = ? ORDER BY seq",
                [policy.event],
            )
            view.add_all(sighting_from_row(row) for row in own)
            if self.peers.exists():
                conn = sqlite3.connect(self.peers.resolve().as_uri() + "?mode=ro", uri=True)
                try:
                    rows = conn.execute(
                        f"SELECT {SIGHTING_COLUMNS} FROM peer_scans WHERE event = ?",
                        [policy.event],
                    )
                    view.add_all(sighting_from_row(row) for row in rows)
                finally:
                    conn.close()
        except (sqlite3.Error, ScannerError) as err:  # the view starts from what arrives now
            self.emit("warning", message=f"venue: cannot read earlier scans: {err}")
        view.copies.clear()  # old news: only copies found from now on are told
        self.view = view
        return view

    @_locked
    def drain(self, most: int = DRAIN_MOST, budget: float = DRAIN_BUDGET) -> int:
        """Apply what the link handed over, up to ``most`` items or ``budget`` seconds."""
        view = self.view
        if view is None:
            return 0
        view.link_up = self.link.connected  # without a broker, no peer is counted on
        start = time.perf_counter()
        inbox = self.link.inbox
        n = 0
        while n < most:
            try:
                item = inbox.get_nowait()
            except queue.Empty:
                break
            n += 1
            if isinstance(item, PeerHeard):
                view.heard(
                    item.gate,
                    head=item.head,
                    offset=item.offset,
                    at=item.at,
                    clock_trusted=item.clock_trusted,
                    detail=item.body,
                )
            else:
                self.delays.append((self.link.clock.now() - item.ts).total_seconds())
                for pair in view.add(item):
                    self.copies_seen += 1
                    self.emit(
                        "suspected_copy",
                        serial=pair.second.serial,
                        first=f"{pair.first.gate} {pair.first.ts.isoformat()}",
                        second=f"{pair.second.gate} {pair.second.ts.isoformat()}",
                        gap=round(pair.gap.total_seconds(), 1),
                        walk=round(pair.walk.total_seconds(), 1),
                    )
            if n % 64 == 0 and time.perf_counter() - start > budget:
                break
        self.applied += n
        self.apply_seconds += time.perf_counter() - start
        return n

    @_locked
    def door_view(self, policy: Policy | None) -> DoorView | None:
        """The view at this gate's door now, for the decision (after a drain).
        Never raises: whatever goes wrong here, the door decides without peers."""
        try:
            view = self._ensure(policy)
            if view is None:
                return None
            self.drain()
            return view.at_door(self.place.zone, self.place.door, self.monotonic())
        except Exception as err:  # a fault of the venue view must never stop a decision
            self.emit("warning", message=f"venue: deciding without peers: {err!r}")
            return None

    @_locked
    def own(self, row: ScanRow) -> None:
        """A scan this gate just wrote: into its own view, and the link told."""
        if self.view is not None and row.seq is not None:
            self.view.add(row.sighting())
        self.link.wake()

    # -- status ------------------------------------------------------------------

    def _local(self, when: datetime | None) -> str:
        if when is None:
            return "start"
        zone = ZoneInfo(self.policy.timezone if self.policy else "UTC")
        return when.astimezone(zone).strftime("%H:%M:%S")

    def peers_state(self) -> dict[str, str]:
        """Each roster peer, and why the view cannot count on it (or "in sync")."""
        view = self.view
        if view is None:
            return {}
        now = self.monotonic()
        return {
            gate: view.lagging(gate, now) or "in sync" for gate in view.roster if gate != self.me
        }

    def summary(self) -> str:
        """One line: what the venue link gives this door right now."""
        policy, view, link = self.policy, self.view, self.link
        if policy is None or view is None:
            return "venue: waiting for a verified policy"
        mine = policy.gates.get(self.me)
        if not policy.gates:
            return "venue: the policy has no gate roster: timed anti-passback only"
        if mine is None or mine.device_key is None:
            return (
                f"venue: gate {self.me} has no device key in the policy's roster, so no peer "
                "believes its scans (scanner venue enrol): timed anti-passback only"
            )
        if self.device_key is not None and mine.device_key != public_key_text(
            self.device_key.public_key()
        ):
            return (
                f"venue: the roster's device key for {self.me} is not this box's: "
                "timed anti-passback only"
            )
        if not link.connected:
            problem = link.bus.problem
            why = f" ({problem})" if problem else ""
            if link.since is None:
                return (
                    f"venue: not connected to the broker yet{why}: timed anti-passback only"
                )
            return (
                f"venue: no broker since {self._local(link.since)}{why}: "
                "timed anti-passback only"
            )
        peers = self.peers_state()
        in_sync = sum(1 for why in peers.values() if why == "in sync")
        unknown = view.unknown_for(self.place.zone, self.monotonic())
        if unknown:
            name, why = next(iter(unknown.items()))
            return (
                f"venue: {in_sync} of {len(peers)} peers in sync; {name} {why}: "
                "timed anti-passback only"
            )
        return f"venue: {in_sync} of {len(peers)} peers in sync: anti-passback across doors"

    @_locked
    def status(self) -> dict[str, Any]:
        view = self.view
        peers = self.peers_state()
        return {
            "summary": self.summary(),
            "link": self.link.state(),
            "peers": peers,
            "inside": view.occupancy() if view is not None else {},
            "knows_who_is_inside": bool(
                view is not None and not view.unknown_for(self.place.zone, self.monotonic())
            ),
            "applied": self.applied,
            "copies": self.copies_seen,
        }

    @_locked
    def housekeeping(
        self,
        policy: Policy | None,
        status: Mapping[str, Any],
        *,
        frames: int,
        clock_trusted: bool,
        record: Callable[..., None],
    ) -> None:
        """Between frames, once a second: the heartbeat's facts for the link,
        and what the gate's own event log should hear about the link."""
        self._ensure(policy)
        now = self.monotonic()
        if frames != self._frames:
            self._frames, self._last_frame = frames, now
        peers = self.peers_state()
        behind = [g for g, why in peers.items() if why != "in sync"]
        self.link.set_status(
            {
                "clock_trusted": clock_trusted,
                "phase": status.get("phase"),
                "faults": list(status.get("faults") or ()),
                "frames": frames,
                "last_frame_age": None
                if self._last_frame is None
                else round(now - self._last_frame, 1),
                "granted": status.get("granted", 0),
                "denied": status.get("denied", 0),
                "peers": {
                    "in_sync": len(peers) - len(behind),
                    "of": len(peers),
                    "behind": behind[:16],
                },
                "summary": self.summary(),
            }
        )
        connected = self.link.connected
        if connected != self._was_connected:
            self._was_connected = connected
            record("venue", state="connected" if connected else "not connected")
        if now >= self._next_drops:
            self._next_drops = now + DROPS_EVERY
            new = Counter(self.link.drops)
            new.subtract(self._drops_told)
            fresh = {k: v for k, v in new.items() if v > 0}
            if fresh:
                self._drops_told = Counter(self.link.drops)
                record("venue_drops", **fresh)

    def close(self) -> None:
        """Stop the link; safe to call twice."""
        self.link.close()
        self.link.store.close()
        if self.link.own is not None:
            self.link.own.close()


def broker_endpoint(
    config: Any, policy: Policy | None
) -> tuple[str, int, BrokerPlan | None] | None:
    """Where this gate's broker is: the policy's ``[broker]`` (its address
    replaced by ``[venue] broker`` in scanner.toml, when set), or None: no
    venue link. The plan, when there is one, carries the CA for TLS."""
    plan = policy.broker if policy is not None else None
    override = config.venue.broker
    if override:
        host, port = parse_broker_address(override, "venue.broker")
        return host, port, plan
    if plan is None:
        return None
    return plan.host, plan.port, plan


def open_gate_venue(
    config: Any,
    place: GatePlace,
    *,
    log: ScanLog,
    device_key: Ed25519PrivateKey | None,
    clock: Any,
    emit: Callable[..., None],
    policy: Policy | None = None,
    bus: Bus | None = None,
) -> GateVenue | None:
    """The venue link of the gate ``config`` describes, started; None when
    neither the policy's ``[broker]`` nor ``[venue] broker`` names a broker.
    With the policy's broker CA the link talks TLS only, and logs in as this
    box (:func:`~scanner.venue.broker.box_login`). ``bus`` replaces the MQTT
    client (tests)."""
    settings = config.venue
    if device_key is None and (bus is not None or broker_endpoint(config, policy)):
        raise VenueError("the venue link needs the gate's device key to sign its scans")
    if bus is None:
        endpoint = broker_endpoint(config, policy)
        if endpoint is None:
            return None
        host, port, plan = endpoint
        tls = login = None
        if plan is not None:
            from .broker import box_login, tls_context

            tls = tls_context(plan.ca_pem)
            assert device_key is not None
            login = box_login(device_key, config.gate.id)
        bus = PahoBus(host, port, client_id=f"gate-{config.gate.id}", tls=tls, login=login)
    assert device_key is not None
    store = PeerStore(config.paths.peers)
    link = VenueLink(
        LinkSettings(
            gate=config.gate.id,
            heartbeat_seconds=settings.heartbeat_seconds,
            ahead_seconds=settings.max_clock_offset_seconds + settings.clock_margin_seconds,
        ),
        bus,
        store,
        OwnLog(config.paths.db),
        device_key,
        clock=clock,
        emit=emit,
    )
    venue = GateVenue(
        link,
        place=place,
        log=log,
        peers=config.paths.peers,
        device_key=device_key,
        margin=timedelta(seconds=settings.clock_margin_seconds),
        max_offset=timedelta(seconds=settings.max_clock_offset_seconds),
        stale_after=settings.stale_seconds,
        emit=emit,
    )
    link.start()
    return venue
