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
by default it listens on 127.0.0.1 only; served beyond this laptop, every
request must also carry the page's token (see :func:`page_token`). The wire
carries no holder names, so neither does the page.

However many screens watch, the page's cost stays bounded: the snapshot is
built and serialized once per change (and every few seconds, as ages move
on), and every stream and ``/state`` are handed the same bytes; streams are
capped per client address and in all, and a stream ends when its client
stops reading or when it is a few minutes old (the page's ``EventSource``
opens a new one by itself).
"""

from __future__ import annotations

import hmac
import json
import secrets
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import jinja2

from ..core.decision import Reason
from ..core.policy import OUTSIDE, Policy
from ..core.venue_view import CopyPair, Sighting, VenueView
from ..errors import VenueError
from .bus import Bus
from .link import LinkSettings, PeerHeard, VenueLink
from .messages import LIVE_REQUESTER, STOPPED_STATUS
from .store import PeerStore

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "ANY_ADDRESS",
    "LOOPBACK",
    "LiveState",
    "StreamRules",
    "SystemClock",
    "live_app",
    "page_hosts",
    "page_token",
]

ANY_ADDRESS = ("0.0.0.0", "::")  # --listen values that serve every network the laptop is on
LOOPBACK = ("127.0.0.1", "::1", "localhost")  # --listen values only this laptop can reach
TOKEN_COOKIE = "live_token"


def page_token(listen: str) -> str | None:
    """A fresh random token the page asks for when served on ``listen``, or None
    on loopback (only this laptop reaches it, as before).

    Beyond loopback the Host check stops a web page elsewhere, but not a
    person or a program on the LAN: the token, printed in the page's address
    when ``scanner live`` starts, is what lets the crew's screens in.
    """
    return None if listen in LOOPBACK else secrets.token_urlsafe(24)


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
KEEP_NEWER = 1000  # per door: scans since its last heartbeat (two seconds of them)
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
    # (seq, granted) of its scans newer than its last heartbeat's head: its
    # counters are the heartbeat's plus these, so they keep up with ``last``
    newer: deque[tuple[int, bool]] = field(default_factory=lambda: deque(maxlen=KEEP_NEWER))


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
            heard = self.doors.get(item.gate)
            if heard is not None:  # what the heartbeat counted drops out of ``newer``
                head = self.view.health[item.gate].head
                heard.newer = deque((x for x in heard.newer if x[0] > head), maxlen=KEEP_NEWER)
            return
        for pair in self.view.add(item):
            self.copies.append(pair)
            self.copies_total += 1
        door = self.doors.get(item.gate)
        if door is not None:
            door.last.appendleft(item)
            if not item.granted:
                door.denials.appendleft(item)
            health = self.view.health.get(item.gate)
            if health is not None and item.seq > health.head:
                door.newer.append((item.seq, item.granted))

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
            "words": Reason.words(s.reason),
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
            since = None if health is None else now - health.heard
            if why is not None and detail.get("status") == STOPPED_STATUS:
                why = f"stopped {since:.0f} s ago"
            granted, denied = detail.get("granted"), detail.get("denied")
            door = self.doors[gate]
            if isinstance(granted, int) and isinstance(denied, int) and health is not None:
                newer = [ok for seq, ok in door.newer if seq > health.head]
                granted += sum(newer)
                denied += len(newer) - sum(newer)
            frame_age = detail.get("last_frame_age")
            if frame_age is not None and since is not None:
                frame_age = round(frame_age + since)  # as of now, not of its last heartbeat
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
                    "last_frame_age": frame_age,
                    "granted": granted,
                    "denied": denied,
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
                        f"{self._time(p.first.ts)} ({Reason.words(p.first.reason)})",
                        "second": f"{p.second.gate} at {self.view.door(p.second) or '?'}, "
                        f"{self._time(p.second.ts)} ({Reason.words(p.second.reason)})",
                        "caught": p.second.reason == Reason.SUSPECTED_COPY.value,
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

# What the event streams may cost. A screen holds one stream per open tab, so 8
# from one address is generous, and 64 in all are a venue's worth of screens
# while the laptop's one event loop stays free for the page and /state (1,100
# idle streams from one host once made GET /state time out: issue 18).
STREAMS_PER_CLIENT = 8
STREAMS_TOTAL = 64
# A live stream takes an event at least every REFRESH_SECONDS; one whose client
# has taken nothing for STREAM_IDLE_SECONDS (a send still waiting for the
# socket to drain) has stopped reading and is closed.
STREAM_IDLE_SECONDS = 30.0
# Every stream ends at this age, so none holds its place for ever; the page's
# EventSource reconnects by itself within RECONNECT_MS.
STREAM_MAX_AGE_SECONDS = 300.0
REFRESH_SECONDS = 2.0  # ages and gate health move on even when nothing is heard
POLL_SECONDS = 0.25  # how soon a stream notices a change
RECONNECT_MS = 1000


@dataclass(frozen=True)
class StreamRules:
    """How the page's event streams are bounded: the module's defaults, which
    tests shorten."""

    per_client: int = STREAMS_PER_CLIENT
    total: int = STREAMS_TOTAL
    idle: float = STREAM_IDLE_SECONDS
    max_age: float = STREAM_MAX_AGE_SECONDS
    refresh: float = REFRESH_SECONDS
    poll: float = POLL_SECONDS


SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
NO_TOKEN = (
    "this live view needs its token: open the address scanner live printed "
    "(it ends in ?token=...)\n"
)


@dataclass(frozen=True)
class _Built:
    number: int  # counts builds: a stream sends each one once
    version: int
    at: float
    data: dict[str, Any]
    json: bytes
    event: bytes  # the same JSON as one server-sent event


class _SharedSnapshot:
    """The state's snapshot, built and serialized once per change of its version
    (or once ``refresh`` seconds old), for every stream and request to share.
    Only the event loop's thread calls it."""

    def __init__(self, state: LiveState, refresh: float) -> None:
        self._state = state
        self._refresh = refresh
        self._built: _Built | None = None

    def current(self) -> _Built:
        now = time.monotonic()
        built = self._built
        if built is None or built.version != self._state.version or now - built.at >= self._refresh:
            data = self._state.snapshot()
            text = json.dumps(data, separators=(",", ":")).encode()
            built = _Built(
                number=0 if built is None else built.number + 1,
                version=data["version"],
                at=now,
                data=data,
                json=text,
                event=b"data: " + text + b"\n\n",
            )
            self._built = built
        return built


class _StreamSlots:
    """Who holds an event stream now: at most ``per_client`` for one address and
    ``total`` in all; ``most`` is the most ever open at once, ``taken`` how many
    were ever let in."""

    def __init__(self, per_client: int, total: int) -> None:
        self.per_client = per_client
        self.total = total
        self.by_client: dict[str, int] = {}
        self.open = 0
        self.most = 0
        self.taken = 0

    def take(self, client: str) -> str | None:
        """Hold a slot for ``client``, or say why not."""
        if self.by_client.get(client, 0) >= self.per_client:
            return (
                f"too many live streams from this address ({self.per_client} at most): "
                "close a tab or two"
            )
        if self.open >= self.total:
            return f"too many live streams open ({self.total} at most): try again soon"
        self.by_client[client] = self.by_client.get(client, 0) + 1
        self.open += 1
        self.taken += 1
        self.most = max(self.most, self.open)
        return None

    def give_back(self, client: str) -> None:
        left = self.by_client.pop(client) - 1
        if left:
            self.by_client[client] = left
        self.open -= 1


class _EventStream:
    """One ``/events`` response: each new build of the shared snapshot, sent
    once, until the client goes, stops reading (a send has waited ``idle``
    seconds), or the stream is ``max_age`` old and ends cleanly for the page
    to reconnect. Over the caps it is a 429 with the reason."""

    HEADERS = SECURITY_HEADERS | {
        "Content-Type": "text/event-stream; charset=utf-8",
        "X-Accel-Buffering": "no",
    }

    def __init__(
        self, shared: _SharedSnapshot, slots: _StreamSlots, client: str, rules: StreamRules
    ) -> None:
        self.shared = shared
        self.slots = slots
        self.client = client
        self.rules = rules

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        import anyio
        from starlette.responses import PlainTextResponse

        refused = self.slots.take(self.client)
        if refused is not None:
            headers = SECURITY_HEADERS | {"Retry-After": "10"}
            await PlainTextResponse(refused + "\n", 429, headers=headers)(scope, receive, send)
            return
        try:
            async with anyio.create_task_group() as group:

                async def until_gone() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    group.cancel_scope.cancel()

                group.start_soon(until_gone)
                await self._pump(send)
                group.cancel_scope.cancel()
        finally:
            self.slots.give_back(self.client)

    async def _pump(self, send: Send) -> None:
        import anyio

        async def patient(message: Message) -> bool:
            with anyio.move_on_after(self.rules.idle):
                await send(message)
                return True
            return False  # the client has stopped reading: give up on it

        headers = [(k.lower().encode(), v.encode()) for k, v in self.HEADERS.items()]
        if not await patient({"type": "http.response.start", "status": 200, "headers": headers}):
            return
        opened, sent = time.monotonic(), -1
        first = f"retry: {RECONNECT_MS}\n".encode()
        while time.monotonic() - opened < self.rules.max_age:
            built = self.shared.current()
            if built.number != sent:
                body = first + built.event
                if not await patient(
                    {"type": "http.response.body", "body": body, "more_body": True}
                ):
                    return
                sent, first = built.number, b""
            await anyio.sleep(self.rules.poll)
        await patient({"type": "http.response.body", "body": b"", "more_body": False})


class _RequireToken:
    """Lets a request through only with the page's token: ``?token=`` (which also
    sets an HttpOnly, SameSite=Strict cookie, so the page's own requests carry
    it) or that cookie; anything else is a 401 saying so."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()
        self.cookie = f"{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict".encode()

    def _matches(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        from starlette.requests import HTTPConnection
        from starlette.responses import PlainTextResponse

        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        asked = HTTPConnection(scope)
        if self._matches(asked.query_params.get("token")):

            async def send_with_cookie(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message["headers"] = [*message["headers"], (b"set-cookie", self.cookie)]
                await send(message)

            await self.app(scope, receive, send_with_cookie)
        elif self._matches(asked.cookies.get(TOKEN_COOKIE)):
            await self.app(scope, receive, send)
        else:
            await PlainTextResponse(NO_TOKEN, 401, headers=SECURITY_HEADERS)(scope, receive, send)


def live_app(
    state: LiveState,
    *,
    hosts: Iterable[str] = ("127.0.0.1", "localhost"),
    token: str | None = None,
    streams: StreamRules | None = None,
) -> Any:
    """The Starlette app serving ``state`` (the page, /state, /events, /static).

    It answers only requests naming one of ``hosts``; with a ``token`` (see
    :func:`page_token`), only those that carry it too. ``streams`` bounds the
    event streams (:class:`StreamRules`); ``app.state.streams`` counts them.
    """
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, Response
    from starlette.routing import Route

    rules = streams or StreamRules()
    shared = _SharedSnapshot(state, rules.refresh)
    slots = _StreamSlots(rules.per_client, rules.total)
    page = _ENV.get_template("live.html")
    static = {
        "live.js": ("application/javascript", (TEMPLATES / "live.js").read_bytes()),
        "live.css": ("text/css", (TEMPLATES / "live.css").read_bytes()),
    }

    async def index(request: Request) -> Response:
        return HTMLResponse(page.render(s=shared.current().data), headers=SECURITY_HEADERS)

    async def snapshot(request: Request) -> Response:
        return Response(
            shared.current().json, media_type="application/json", headers=SECURITY_HEADERS
        )

    async def asset(request: Request) -> Response:
        found = static.get(request.path_params["name"])
        if found is None:
            return Response("not found", status_code=404, headers=SECURITY_HEADERS)
        return Response(found[1], media_type=found[0], headers=SECURITY_HEADERS)

    async def events(request: Request) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
        client = request.client.host if request.client is not None else "?"
        return _EventStream(shared, slots, client, rules)

    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=list(hosts))]
    if token is not None:
        middleware.append(Middleware(_RequireToken, token=token))
    app = Starlette(
        routes=[
            Route("/", index),
            Route("/state", snapshot),
            Route("/events", events),
            Route("/static/{name}", asset),
        ],
        middleware=middleware,
    )
    app.state.streams = slots
    return app
