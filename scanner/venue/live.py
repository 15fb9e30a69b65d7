"""``scanner live``: the security chief's view of the venue, as it happens.

A laptop on the production LAN listens to every gate through the venue's
broker, exactly as a gate does (the same checks against the signed roster,
the same :class:`~scanner.core.venue_view.VenueView` in observer mode), and
serves one page: people inside each zone against its capacity, the last
scans and denials at each door, suspected copies as they happen, and each
gate's health (heartbeat, phase, faults, clock offset, last frame). It never
publishes a scan; it only asks gates to send again what it missed.

The page is a Jinja2 template (autoescaped) rendered with the state at load,
then kept current by server-sent events (``/events``) that carry plain JSON,
which the page's own script writes with ``textContent`` only. Nothing is
loaded from anywhere else: a Content-Security-Policy allows only the page's
own script and style, requests must name this server (no DNS rebinding), and
by default it listens on 127.0.0.1 only. The wire carries no holder names,
so neither does the page.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2

from ..core.policy import OUTSIDE, Policy
from ..core.venue_view import CopyPair, Sighting, VenueView
from ..errors import VenueError
from .bus import Bus
from .link import LinkSettings, PeerHeard, VenueLink
from .messages import LIVE_REQUESTER
from .store import PeerStore

__all__ = ["ANY_ADDRESS", "LiveState", "SystemClock", "live_app", "page_hosts"]

ANY_ADDRESS = ("0.0.0.0", "::")  # --listen values that serve every network the laptop is on


def page_hosts(
    listen: str, *, broker: tuple[str, int] | None = None, names: Iterable[str] = ()
) -> list[str]:
    """The host names the live page answers to (any other Host header is refused,
    so a web page elsewhere cannot rebind its own name to this laptop and read
    the venue through the chief's browser).

    Always this laptop's own loopback names and ``names``; the address it
    listens on, or, listening on every address, the names the LAN knows the
    laptop by: its host name (and ``NAME.local``), the addresses that name
    resolves to, and the address it reaches the broker from, which is the one
    the crew's screens on the same network will type. A name with ``*`` (a
    pattern to Starlette, ``*`` alone being any host) is refused.
    """
    import socket

    for name in names:
        if not name or "*" in name or any(c.isspace() or c in "/:@" for c in name):
            raise VenueError(f"--name: {name!r} is not a host name or address (no patterns)")
    hosts = {"127.0.0.1", "localhost", *names}
    if listen not in ANY_ADDRESS:
        hosts.add(listen)
        return sorted(hosts)
    name = socket.gethostname()
    hosts |= {name, f"{name}.local"}
    try:
        hosts |= {str(a[4][0]) for a in socket.getaddrinfo(name, None, socket.AF_INET)}
    except OSError:
        pass  # a name that does not resolve here: the other names still do
    if broker is not None:
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.connect(broker)  # UDP: chooses the route, sends nothing
                hosts.add(str(probe.getsockname()[0]))
        except OSError:
            pass
    return sorted(hosts)

TEMPLATES = Path(__file__).parent / "templates"
KEEP_SCANS = 8  # per door
KEEP_COPIES = 50
_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass
class _Door:
    gate: str
    door: str | None
    zone: str
    direction: str
    last: deque[Sighting]
    denials: deque[Sighting]


class LiveState:
    """What the page shows, kept current from the broker on its own thread."""

    def __init__(
        self,
        policy: Policy,
        bus: Bus,
        *,
        clock: Any = None,
        store: Path | str = ":memory:",
        emit: Callable[..., None] = lambda event, /, **fields: None,
        stale_after: float = 10.0,
    ) -> None:
        self.policy = policy
        self.clock = clock or SystemClock()
        self.zone = ZoneInfo(policy.timezone)
        self.view = VenueView(
            policy.places, policy.gates, policy.event, me=None, stale_after=stale_after
        )
        self.link = VenueLink(
            LinkSettings(gate=LIVE_REQUESTER, publishes=False),
            bus,
            PeerStore(store),
            None,
            None,
            clock=self.clock,
            emit=emit,
        )
        self.link.set_policy(policy)
        self.doors = {
            gate: _Door(
                gate,
                place.door,
                place.zone,
                place.direction.value,
                deque(maxlen=KEEP_SCANS),
                deque(maxlen=KEEP_SCANS),
            )
            for gate, place in policy.gates.items()
        }
        self.copies: deque[CopyPair] = deque(maxlen=KEEP_COPIES)
        self.copies_total = 0
        self.version = 0
        self.clients = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> LiveState:
        self.link.start()
        self._thread = threading.Thread(target=self._run, name="live-view", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.link.close()
        self.link.store.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            changed = False
            try:
                item = self.link.inbox.get(timeout=0.25)
            except Exception:  # queue.Empty: nothing new, but link and peers age
                item = None
            with self._lock:
                n = 0
                while item is not None and n < 5000:
                    self._apply(item)
                    changed = True
                    n += 1
                    try:
                        item = self.link.inbox.get_nowait()
                    except Exception:
                        item = None
                self.view.link_up = self.link.connected
                if changed:
                    self.version += 1

    def _apply(self, item: Sighting | PeerHeard) -> None:
        if isinstance(item, PeerHeard):
            self.view.heard(
                item.gate,
                head=item.head,
                offset=item.offset,
                at=item.at,
                clock_trusted=item.clock_trusted,
                detail=item.body,
            )
            return
        for pair in self.view.add(item):
            self.copies.append(pair)
            self.copies_total += 1
        door = self.doors.get(item.gate)
        if door is not None:
            door.last.appendleft(item)
            if not item.granted:
                door.denials.appendleft(item)

    # -- what the page shows -----------------------------------------------------

    def _time(self, when: datetime) -> str:
        return when.astimezone(self.zone).strftime("%H:%M:%S")

    def _scan(self, s: Sighting) -> dict[str, Any]:
        return {
            "time": self._time(s.ts),
            "serial": s.serial,
            "tier": s.tier,
            "decision": "granted" if s.granted else "denied",
            "reason": s.reason,
            "direction": s.direction,
        }

    def _zones(self, now: float) -> list[dict[str, Any]]:
        venue = self.view.venue
        children: dict[str | None, list[str]] = {}
        for zone in venue.zones:
            children.setdefault(venue.within.get(zone), []).append(zone)
        out: list[dict[str, Any]] = []

        def walk(parent: str | None, depth: int) -> None:
            for zone in children.get(parent, []):
                unknown = self.view.unknown_for(zone, now)
                capacity = venue.capacity.get(zone)
                inside = self.view.inside(zone)
                out.append(
                    {
                        "zone": zone,
                        "depth": depth,
                        "inside": inside,
                        "capacity": capacity,
                        "full": capacity is not None and inside >= capacity,
                        "known": not unknown,
                        "why": "; ".join(f"{k}: {v}" for k, v in list(unknown.items())[:3]),
                    }
                )
                walk(zone, depth + 1)

        walk(None, 0)
        return out

    def _gates(self, now: float) -> list[dict[str, Any]]:
        out = []
        for gate, place in sorted(self.policy.gates.items()):
            health = self.view.health.get(gate)
            detail = dict(health.detail) if health is not None else {}
            why = self.view.lagging(gate, now)
            out.append(
                {
                    "gate": gate,
                    "door": place.door,
                    "direction": place.direction.value,
                    "state": "in sync" if why is None else why,
                    "ok": why is None and not detail.get("faults"),
                    "heard": None if health is None else round(now - health.heard, 1),
                    "phase": detail.get("phase"),
                    "faults": list(detail.get("faults") or []),
                    "clock": detail.get("clock"),
                    "offset": None if health is None else round(health.offset, 1) + 0.0,
                    "last_frame_age": detail.get("last_frame_age"),
                    "granted": detail.get("granted"),
                    "denied": detail.get("denied"),
                    "status": detail.get("status"),
                    "enrolled": place.device_key is not None,
                }
            )
        return out

    def snapshot(self) -> dict[str, Any]:
        """Plain data for the page and its events."""
        now = time.monotonic()
        with self._lock:
            people = self.view.people()
            return {
                "event": self.policy.event,
                "name": self.policy.name,
                "timezone": self.policy.timezone,
                "at": self._time(self.clock.now()),
                "version": self.version,
                "broker": {
                    "connected": self.link.connected,
                    "since": self._time(self.link.since) if self.link.since else None,
                },
                "people": len(people),
                "outside_known": sum(1 for w in people.values() if w == OUTSIDE),
                "zones": self._zones(now),
                "doors": [
                    {
                        "gate": d.gate,
                        "door": d.door,
                        "zone": d.zone,
                        "direction": d.direction,
                        "last": [self._scan(s) for s in d.last],
                        "denials": [self._scan(s) for s in d.denials],
                    }
                    for d in self.doors.values()
                ],
                "copies": [
                    {
                        "time": self._time(p.second.ts),
                        "serial": p.second.serial,
                        "tier": p.second.tier,
                        "first": f"{p.first.gate} at {self.view.door(p.first) or '?'}, "
                        f"{self._time(p.first.ts)} ({p.first.reason})",
                        "second": f"{p.second.gate} at {self.view.door(p.second) or '?'}, "
                        f"{self._time(p.second.ts)} ({p.second.reason})",
                        "gap": round(p.gap.total_seconds()),
                        "walk": round(p.walk.total_seconds()),
                    }
                    for p in reversed(self.copies)
                ],
                "copies_total": self.copies_total,
                "gates": self._gates(now),
                "dropped": dict(self.link.drops),
            }


# -- the web app ----------------------------------------------------------------------


SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def live_app(state: LiveState, *, hosts: Iterable[str] = ("127.0.0.1", "localhost")) -> Any:
    """The Starlette app serving ``state`` (the page, /state, /events, /static)."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    page = _ENV.get_template("live.html")
    static = {
        "live.js": ("application/javascript", (TEMPLATES / "live.js").read_bytes()),
        "live.css": ("text/css", (TEMPLATES / "live.css").read_bytes()),
    }

    async def index(request: Request) -> Response:
        return HTMLResponse(page.render(s=state.snapshot()), headers=SECURITY_HEADERS)

    async def snapshot(request: Request) -> Response:
        return JSONResponse(state.snapshot(), headers=SECURITY_HEADERS)

    async def asset(request: Request) -> Response:
        found = static.get(request.path_params["name"])
        if found is None:
            return Response("not found", status_code=404, headers=SECURITY_HEADERS)
        return Response(found[1], media_type=found[0], headers=SECURITY_HEADERS)

    async def events(request: Request) -> Response:
        async def stream() -> AsyncIterator[str]:
            state.clients += 1
            try:
                seen, quiet = -1, 0.0
                while not await request.is_disconnected():
                    if state.version != seen or quiet >= 2.0:  # ages and health move on too
                        snap = state.snapshot()
                        seen, quiet = snap["version"], 0.0
                        yield f"data: {json.dumps(snap, separators=(',', ':'))}\n\n"
                    await asyncio.sleep(0.25)
                    quiet += 0.25
            finally:
                state.clients -= 1

        headers = SECURITY_HEADERS | {"X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    return Starlette(
        routes=[
            Route("/", index),
            Route("/state", snapshot),
            Route("/events", events),
            Route("/static/{name}", asset),
        ],
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=list(hosts))],
    )
