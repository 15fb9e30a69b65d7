"""The scan loop: frames in, decisions out, every scan on disk first.

For each frame: decode the QR codes; drop a code seen again within the
hold-off (the same pass held up for a second is one scan, not thirty);
decide with the pure core; write the row (fsync) *then* show the signal, so
every scan whose LED lit is in the log. Between frames the loop answers
control commands (phase override, status), re-reads the policy when it
changes on disk, checks the clock, and retries rows the disk refused.

The write and the signal run on one writer thread (:mod:`scanner.gate.writer`):
while a slow SD card makes a row durable, the camera's next frames are
decoded (on a disk that has proven fast they run inline, which is quicker).
At most one scan is in flight; the next one is decided only after it, so
rows and signals keep scan order and every decision sees the row before it.
Whatever else touches the log, the counts or the faults first waits for the
scan in flight (``writer.settle()``).

The door's extras (:mod:`scanner.gate.door`, :mod:`scanner.gate.screen`),
all optional: the guard's override (button or ``scanner admit``) admits the
last denied person, logged as a granted row with reason ``override``, the
denied row and who, before the strike opens; the door contact and tamper
switch arrive as commands from gpiozero's thread and become gate events and
faults; the screen is told each decision and, between them, the status.

Codes that are not passes of this event (junk, forgeries, another event's
passes) must cost the door almost nothing: in each frame codes that look
like passes are decided first, at most :data:`MAX_CODES_PER_FRAME` a frame
(the rest are left unseen for the next frames, so a real pass in a screen of
junk is still read within a few frames); the first code that is not a pass
is logged and signalled as any denial, and more of them within two
seconds of the last, in frame time (:class:`~scanner.gate.door.NoiseBurst`),
are only counted (passes in between are decided, logged and signalled as ever) until
the codes stop, when one ``noise`` gate event records how many there were.
So a screen flashing 64 new codes a frame is one row, one red "forged"
signal (one buzz) and one count, while two guests who hold up last year's
passes one after the other, seconds apart, are each denied, logged and
signalled. A code that carries no pass at all never
takes the place of the last person denied: the guard's screen keeps showing
that person, and the override admits them, not the code.

Faults never kill the loop and never look like a grant: a camera that fails
is reopened, a decoder that raises skips the frame, a disk that refuses a
row turns the scan into a denial (``log_unavailable``) kept in memory until
the disk accepts it, a corrupt policy keeps the last verified one. Each
active fault shows the fault blink and is named in the status line.

The loop takes every edge as an object (frames, decoder, log, signals,
clock, notifier, policy store), so tests run it on fakes; only
:mod:`scanner.gate.daemon` chooses the real ones.

With the venue link on (``venue``, a :class:`~scanner.venue.door.GateVenue`),
the loop applies peers' scans between frames and decides on what it holds at
that moment; it never waits for the network, and publishing happens on the
link's own thread, from the log, after the row is on disk.
"""

from __future__ import annotations

import hashlib
import json
import queue
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from ..core.decision import Decision, Direction, Gate, Reason, admit_by_hand, decide
from ..core.passes import PASS_PREFIX
from ..core.policy import Policy
from ..core.schedule import Phase, PhaseOverride, phase_at
from ..core.signed import format_utc, parse_utc
from ..core.venue_view import DoorView
from ..errors import CameraError, CameraTimeoutError, ScanLogError, ScannerError
from ..record.log import ScanLog
from ..record.row import ScanRow
from .clock import ClockGuard
from .control import Command
from .door import DoorEvent, DoorWatch, NoiseBurst, OverrideDesk
from .frames import Frame, FrameSource
from .policy_store import PolicyStore
from .sdnotify import Notifier
from .status import GateStatus
from .timing import HOLD_OFF_SECONDS, OVERRIDE_SECONDS
from .writer import INLINE_BELOW, ScanWriter

__all__ = ["HoldOff", "LoopSettings", "ScanLoop"]

CHAIN_FIELDS = ("seq", "prev_hash", "hash")  # a row the disk refused has no place in the chain
USB_SIGNALS = ("usb_done", "usb_failed")  # the only patterns other programs may ask for
# Codes that are not passes of this event: a burst of them is one row, one signal and
# one count (see the module doc), and none of them is ever the person a guard lets in.
NOT_A_PASS = frozenset(
    {Reason.MALFORMED, Reason.BAD_SIGNATURE, Reason.UNKNOWN_KEY, Reason.WRONG_EVENT}
)
MAX_CODES_PER_FRAME = 16  # decided per frame, passes first; the rest wait for the next frame


class Decoder(Protocol):
    def decode(self, frame: Any) -> list[str]: ...


class Signals(Protocol):
    def show(self, name: str) -> None: ...
    def set_faults(self, faults: frozenset[str]) -> None: ...


class Clock(Protocol):
    def now(self) -> datetime: ...
    def monotonic(self) -> float: ...


class Screen(Protocol):
    """The guard's screen (:class:`~scanner.gate.screen.GuardScreen`): it draws
    on its own thread and never raises; ``fault`` says when its port failed."""

    fault: str | None

    def show(self, view: Any) -> None: ...
    def set_idle(self, view: Any) -> None: ...


class Venue(Protocol):
    """The venue link as the door sees it (:class:`~scanner.venue.door.GateVenue`):
    what the other doors saw, this door's own scans, and its heartbeat's facts."""

    def drain(self) -> int: ...
    def door_view(self, policy: Policy | None) -> DoorView | None: ...
    def own(self, row: ScanRow) -> None: ...
    def status(self) -> dict[str, Any]: ...
    def housekeeping(
        self,
        policy: Policy | None,
        status: Mapping[str, Any],
        *,
        frames: int,
        clock_trusted: bool,
        record: Callable[..., None],
    ) -> None: ...


class HoldOff:
    """Remembers codes seen recently: a code is new again only after it has
    been out of sight for ``seconds`` (in frame time)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._last: dict[str, float] = {}

    def is_new(self, text: str, t: float) -> bool:
        last = self._last.get(text)
        self._last[text] = t
        if len(self._last) > 256:
            self._last = {k: v for k, v in self._last.items() if t - v <= self.seconds}
        return last is None or t - last > self.seconds or t < last


@dataclass(frozen=True)
class LoopSettings:
    gate_id: str
    gate: Gate
    door: str | None = None
    hold_off: float = HOLD_OFF_SECONDS
    frame_timeout: float = 2.0
    reopen_every: float = 1.0
    housekeeping_every: float = 1.0
    save_floor_every: float = 600.0
    override_seconds: float = OVERRIDE_SECONDS  # the override follows a denial within this
    background_writes: bool = True  # write and signal on the writer thread (see writer.py)
    # ... unless the disk has proven this quick (seconds; None: always on the thread)
    inline_writes_below: float | None = INLINE_BELOW


@dataclass
class _Counts:
    frames: int = 0
    granted: int = 0
    denied: int = 0
    decode_errors: int = 0
    noise: int = 0  # codes that are not passes, counted in a burst and not logged each
    last: str = "none yet"

    @property
    def scans(self) -> int:
        return self.granted + self.denied


@dataclass
class _Pending:
    row: ScanRow
    decision: Decision


@dataclass
class ScanLoop:
    settings: LoopSettings
    open_frames: Callable[[], FrameSource]
    decoder: Decoder
    log: ScanLog
    signals: Signals
    store: PolicyStore
    clock: Clock
    guard: ClockGuard
    notifier: Notifier = field(default_factory=Notifier)
    commands: queue.Queue[Command] = field(default_factory=queue.Queue)
    emit: Callable[..., None] = field(default=lambda event, /, **fields: None)
    # the door's optional extras: the guard's screen, its sensors, the venue link
    screen: Screen | None = None
    door: DoorWatch | None = None
    venue: Venue | None = None

    def __post_init__(self) -> None:
        self.hold_off = HoldOff(self.settings.hold_off)
        self.writer = ScanWriter(
            background=self.settings.background_writes,
            inline_below=self.settings.inline_writes_below,
        )
        self.counts = _Counts()
        self.faults: dict[str, str] = {}
        self.pending: list[_Pending] = []
        self.ready = False
        self.override = self._load_override()
        self._frames: FrameSource | None = None
        self._next_housekeeping = 0.0
        self._next_watchdog = 0.0
        self._next_floor_save = 0.0
        self._clock_trusted = True
        interval = self.notifier.watchdog_interval
        self._watchdog_every = interval / 4 if interval else 1.0
        self.overrides = OverrideDesk(
            window=self.settings.override_seconds, hold_off=self.settings.hold_off
        )
        self.noise = NoiseBurst()
        self._noise_seen = 0.0  # monotonic time of the burst's last code

    # -- faults --------------------------------------------------------------

    def set_fault(self, name: str, message: str | None) -> None:
        """Raise (message) or clear (None) one fault; the door and the log follow."""
        self.writer.settle()
        old = self.faults.get(name)
        if message == old:
            return
        if message is None:
            del self.faults[name]
            self.emit("fault_cleared", fault=name)
        else:
            self.faults[name] = message
            self.emit("fault", fault=name, message=message)
        self.signals.set_faults(frozenset(self.faults))
        self._record_event(
            "fault" if message else "fault_cleared", fault=name, message=message or ""
        )

    def _record_event(self, kind: str, **detail: Any) -> None:
        self.writer.settle()
        try:
            self.log.record_event(self.clock.now(), kind, **detail)
        except ScanLogError:
            pass  # the storage fault is already shown; events are not worth a lost scan

    # -- frames ---------------------------------------------------------------

    def _next_frame(self, stop: threading.Event) -> Frame | None:
        """The next frame; None at the end of a recording or when stopping.

        A camera that reports an error (unplugged, cannot open) is retried
        while the loop keeps the watchdog fed: the loop is alive and shows the
        fault, and restarting would not bring the camera back. A camera that
        just stops answering (:class:`CameraTimeoutError`, a hung driver) gets no
        ping, so systemd's watchdog restarts the service.
        """
        while not stop.is_set():
            if self._frames is None:
                try:
                    self._frames = self.open_frames()
                except ScannerError as err:
                    self._camera_trouble(err, stop)
                    continue
            try:
                frame = self._frames.read(self.settings.frame_timeout)
            except CameraError as err:
                source, self._frames = self._frames, None
                source.close()
                if not source.live:
                    self.set_fault("camera", str(err))
                    return None
                self._camera_trouble(err, stop)
                continue
            if frame is None:
                return None
            if "camera" in self.faults:
                self.set_fault("camera", None)
            return frame
        return None

    def _camera_trouble(self, err: ScannerError, stop: threading.Event) -> None:
        self.set_fault("camera", str(err))
        self._housekeeping(force=True)
        if not self.commands.empty():  # the override and the door sensors need no camera
            self._answer_commands()
        if self.ready and not isinstance(err, CameraTimeoutError):
            self.notifier.watchdog()
        stop.wait(self.settings.reopen_every)

    # -- the loop -------------------------------------------------------------

    def run(self, stop: threading.Event | None = None) -> int:
        """Scan until ``stop`` is set or a recording ends. Returns the exit code:
        0, or 3 when rows could not be written before the end."""
        stop = stop or threading.Event()
        self._record_event(
            "start", zone=self.settings.gate.zone, direction=self.settings.gate.direction.value
        )
        if self.door is not None:
            self._door_events(
                self.door.start(
                    self.clock.monotonic(),
                    door_open=self.door.door_open,
                    case_open=self.door.case_open,
                )
            )
        self._housekeeping(force=True)
        try:
            while True:
                frame = self._next_frame(stop)
                if frame is None:
                    break
                self.process(frame)
        finally:
            if self._frames is not None:
                self._frames.close()
                self._frames = None
            self.writer.close()  # the scan in flight reaches the disk and the door
        self.notifier.stopping()
        self._flush_pending()
        self._end_noise()
        self._record_event("stop", scans=self.counts.scans)
        for item in self.pending:  # whole, as JSON: the journal keeps what the disk would not
            unsaved = {k: v for k, v in item.row.as_dict().items() if k not in CHAIN_FIELDS}
            self.emit("unsaved_scan", row=json.dumps(unsaved, sort_keys=True, default=str))
        return 3 if self.pending else 0

    def process(self, frame: Frame) -> list[Decision]:
        """Everything the loop does with one frame. The decisions are as decided:
        with background writes, the row and the signal follow on the writer
        thread (a disk that refuses the row turns one into ``log_unavailable``)."""
        decisions: list[Decision] = []
        self.counts.frames += 1
        try:
            codes = self.decoder.decode(frame.image)
        except Exception as err:  # a decoder must never stop the door
            self.counts.decode_errors += 1
            self.emit("decode_error", error=repr(err))
            codes = []
        # Passes first; a code left over is not marked seen, so it comes up again.
        for text in sorted(codes, key=lambda code: not code.startswith(PASS_PREFIX)):
            if len(decisions) >= MAX_CODES_PER_FRAME:
                break
            if self.hold_off.is_new(text, frame.t):
                decisions.append(self.scan(text, frame.t))
        if self.noise.active and not self.noise.lasts(frame.t):
            self._end_noise()
        if self.venue is not None:
            try:
                self.venue.drain()  # peers' scans, a bounded batch between frames
            except Exception as err:  # the venue link must never stop the door
                self.emit("warning", message=f"venue: {err!r}")
        if not self.commands.empty():
            self.writer.settle()
            self._answer_commands()
        now = self.clock.monotonic()
        if now >= self._next_housekeeping:
            self.writer.settle()
            self._housekeeping()
        if now >= self._next_watchdog:
            self.writer.settle()
            self._next_watchdog = now + self._watchdog_every
            if self.ready:
                self.notifier.watchdog()
            elif self.store.policy is not None:
                self.ready = True
                self.notifier.ready(self.status_line())
                self.emit("ready", zone=self.settings.gate.zone, camera="frames flowing")
                if not self.faults:  # a fault keeps its blink: no cheerful chirp first
                    self.signals.show("ready")
        return decisions

    # -- one scan --------------------------------------------------------------

    def scan(self, text: str, seen_at: float | None = None) -> Decision:
        """Decide on one new presentation; the writer logs it durably, then signals it.
        ``seen_at`` is the frame's time (monotonic for a camera, media time for a
        recording): a burst of codes that are not passes is timed by it, as the
        hold-off is, so a recording played fast keeps its people apart."""
        self.writer.settle()  # the scan before is on disk: decide on what it left
        now = self.clock.now()
        clock_state = self.guard.check(now)
        self._clock_fault(clock_state.trusted, clock_state.reason)
        gate = self.settings.gate
        policy = self.store.policy
        if policy is None:
            decision = Decision(
                granted=False,
                reason=Reason.NO_POLICY,
                message="Denied: the gate has no valid event policy; call a technician.",
                zone=gate.zone,
                direction=gate.direction,
                phase="unknown",
            )
        else:
            decision = decide(
                text,
                policy,
                gate,
                now,
                entered=self.log.entries(policy.event, gate.zone),
                clock_trusted=clock_state.trusted,
                override=self.override,
                venue=self.venue.door_view(policy) if self.venue is not None else None,
            )
        decided_at = self.clock.monotonic()  # the door's rules time a grant from here
        seen = decided_at if seen_at is None else seen_at
        if decision.reason in NOT_A_PASS and self.noise.lasts(seen):
            # one more of a burst: counted, no row, no signal (passes go on as ever)
            self.noise.more(decision.reason.value, seen)
            self._noise_seen = decided_at
            self.counts.noise += 1
            return decision
        row = self._row(decision, text, now, clock_state.trusted)
        if decision.reason in NOT_A_PASS:
            self._end_noise()
            self.noise.open(row.id, decision.reason.value, seen)
            self._noise_seen = decided_at
        self.writer.submit(lambda: self._store(row, decision, decided_at))
        return decision

    def _end_noise(self) -> None:
        """A burst of codes that are not passes is over: one event with its count."""
        summary = self.noise.close()
        if summary is not None:
            self._record_event("noise", **summary)
            self.emit("noise", **summary)

    def _store(
        self,
        row: ScanRow,
        decision: Decision,
        decided_at: float,
    ) -> None:
        """Log one scan durably, then signal it (the writer's job: see writer.py)."""
        try:
            self._write(row)
        except ScanLogError:
            decision = replace(
                decision,
                granted=False,
                reason=Reason.LOG_UNAVAILABLE,
                message="Denied: the gate cannot write its log; call a technician.",
            )
            row = replace(
                row, decision="denied", reason=decision.reason.value, message=decision.message
            )
            self.pending.append(_Pending(row, decision))
        self._announce(decision, row, decided_at)

    def _write(self, row: ScanRow) -> None:
        """Write one row durably, after every row the disk refused before it
        (so the log keeps scan order); into the venue view once on disk. On
        failure the storage fault is raised and :class:`ScanLogError` too."""
        self._flush_pending()
        try:
            if self.pending:
                raise ScanLogError("earlier rows are still waiting for the disk")
            self._commit(row)
        except ScanLogError as err:
            self.set_fault("storage", str(err))
            raise
        if "storage" in self.faults:
            self.set_fault("storage", None)

    def _announce(
        self, decision: Decision, row: ScanRow, decided_at: float, **extra: Any
    ) -> None:
        """A decision whose row is written (or waiting, denied): counted, told to
        the journal, signalled at the door, and heard by the door's extras."""
        self._count(decision)
        self.emit(
            "scan",
            id=row.id,
            decision="granted" if decision.granted else "denied",
            reason=decision.reason.value,
            serial=decision.serial,
            tier=decision.tier,
            holder=decision.holder,
            zone=decision.zone,
            direction=decision.direction.value,
            phase=decision.phase,
            clock=row.clock,
            message=decision.message,
            **extra,
        )
        self.signals.show(decision.signal.value)
        self._after_decision(decision, row, decided_at)

    def _row(
        self, decision: Decision, text: str, now: datetime, trusted: bool, row_id: str | None = None
    ) -> ScanRow:
        return ScanRow(
            id=row_id or str(uuid.uuid4()),
            ts=format_utc(now),
            gate=self.settings.gate_id,
            zone=decision.zone,
            direction=decision.direction.value,
            door=self.settings.door,
            event=decision.event,
            serial=decision.serial,
            tier=decision.tier,
            holder=decision.holder,
            decision="granted" if decision.granted else "denied",
            reason=decision.reason.value,
            key_id=decision.key_id,
            clock="trusted" if trusted else "untrusted",
            phase=decision.phase,
            message=decision.message,
            code_sha256=hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest(),
        )

    def _commit(self, row: ScanRow) -> None:
        """The one place a scan reaches the disk (fsync'd; a granted entry then
        counts for anti-passback) and, once there, the door's venue view (the
        link publishes it from the log). Raises :class:`ScanLogError`."""
        written = self.log.record_scan(row)
        if self.venue is None:
            return
        try:
            self.venue.own(written)
        except Exception as err:  # the row is safe on disk; the link catches up from it
            self.emit("warning", message=f"venue: {err!r}")

    def _count(self, decision: Decision) -> None:
        c = self.counts
        if decision.granted:
            c.granted += 1
        else:
            c.denied += 1
        pass_ = " ".join(
            x
            for x in (decision.tier, f"#{decision.serial}" if decision.serial is not None else "")
            if x
        )
        who = f"{decision.holder} ({pass_})" if decision.holder else pass_ or "not a pass"
        c.last = f"{'granted' if decision.granted else decision.reason.value} {who}"

    def _flush_pending(self) -> None:
        """Write the rows the disk refused earlier, oldest first."""
        while self.pending:
            try:
                self._commit(self.pending[0].row)
            except ScanLogError as err:
                self.set_fault("storage", str(err))
                return
            self.pending.pop(0)

    def _probe_storage(self, now: datetime) -> None:
        """While storage is faulty: a real write proves it is back."""
        try:
            self.log.set_state("alive", format_utc(now))
        except ScanLogError as err:
            self.set_fault("storage", str(err))
            return
        self._flush_pending()
        if not self.pending:
            self.set_fault("storage", None)

    # -- the door: override, sensors, screen ------------------------------------

    def _after_decision(self, decision: Decision, row: ScanRow, now: float) -> None:
        """What the door's extras hear of a decision that has been signalled;
        ``now`` is when it was decided (monotonic), not when its row was done."""
        if decision.granted:
            if self.door is not None:
                self.door.granted(now)
        elif decision.reason not in (Reason.LOG_UNAVAILABLE, Reason.MALFORMED):
            # a code that carries no pass at all (a friend's "HELLO") never takes
            # the place of the person just denied; a forged or foreign pass is
            # still a card a person holds up, and the guard may let them in
            self.overrides.denied(row.id, decision, row.code_sha256, now)
        if self.screen is not None and (
            decision.reason is not Reason.MALFORMED or self.overrides.take(now)[0] is None
        ):  # the screen keeps the person the button would let in
            from .screen import decision_view

            policy = self.store.policy
            tier = policy.tiers.get(decision.tier or "") if policy is not None else None
            self.screen.show(
                decision_view(decision, self.status(), tier_label=tier.label if tier else None)
            )

    def last_denied(self) -> dict[str, Any]:
        """Whom an override would let in now: the denied presentation, as the
        guard's screen shows it (``scanner admit`` shows it before asking)."""
        self.writer.settle()
        now_mono = self.clock.monotonic()
        denial, why = self.overrides.take(now_mono)
        if denial is None or why == "again":
            return {"ok": False, "error": why or "already let in"}
        decision = denial.decision
        policy = self.store.policy
        tier = policy.tiers.get(decision.tier or "") if policy is not None else None
        return {
            "ok": True,
            "row": denial.row_id,
            "holder": decision.holder,
            "serial": decision.serial,
            "tier": tier.label if tier is not None else decision.tier,
            "reason": decision.reason.value,
            "message": decision.message,
            "seconds_ago": round(now_mono - denial.at, 1),
        }

    def admit(self, by: str, row: str | None = None) -> dict[str, Any]:
        """The guard's override: let the last denied person in, logged first
        (see :class:`~scanner.gate.door.OverrideDesk` for which denial). With
        ``row``, only if that is still the denial an override would admit."""
        self.writer.settle()  # the denial being overridden is on disk and known
        now_mono = self.clock.monotonic()
        denial, why = self.overrides.take(now_mono)
        if denial is None:
            self.emit("override_refused", by=by, reason=why)
            return {"ok": False, "error": f"nobody let in: {why}"}
        if row is not None and row != denial.row_id:
            who = denial.decision.holder or "a pass without a name"
            self.emit("override_refused", by=by, reason=f"row {row} is not the last denial")
            return {
                "ok": False,
                "error": f"nobody let in: the last denial is now row {denial.row_id} "
                f"({who}), not row {row}; look again and choose",
            }
        if why == "again":  # the same press, twice: one override
            return {
                "ok": True,
                "again": True,
                "message": f"already let in by {denial.let_in_by}",
                "denied_row": denial.row_id,
            }
        now = self.clock.now()
        decision = admit_by_hand(denial.decision, by, denial.row_id)
        state = self.guard.check(now)
        written = replace(
            self._row(decision, "", now, state.trusted), code_sha256=denial.code_sha256
        )
        try:
            self._write(written)
        except ScanLogError as err:
            # not on disk, not done: the strike stays shut and the guard is told
            return {"ok": False, "error": f"nobody let in: the gate cannot log it ({err})"}
        self.overrides.admitted(denial, by, now_mono)
        self._record_event(
            "override",
            scan=written.id,
            denied=denial.row_id,
            reason=denial.decision.reason.value,
            serial=decision.serial,
            by=by,
        )
        self._announce(
            decision,
            written,
            now_mono,
            denied_row=denial.row_id,
            denied_reason=denial.decision.reason.value,
            by=by,
        )
        return {
            "ok": True,
            "message": decision.message,
            "row": written.id,
            "denied_row": denial.row_id,
            "denied_reason": denial.decision.reason.value,
            "holder": decision.holder,
            "serial": decision.serial,
            "tier": decision.tier,
            "by": by,
        }

    def door_input(self, sensor: str, is_open: bool) -> None:
        """A door contact or tamper switch changed (from gpiozero's thread, via commands)."""
        if self.door is None:
            return
        self.writer.settle()  # a grant in flight is counted before the door is judged
        now = self.clock.monotonic()
        if sensor == "door":
            self._door_events(self.door.door(is_open, now))
        elif sensor == "case":
            self._door_events(self.door.case(is_open, now))

    def _door_events(self, events: list[DoorEvent]) -> None:
        for event in events:
            self._record_event(event.kind, **event.detail)
            self.emit(event.kind, **event.detail)
            for fault, message in event.faults.items():
                self.set_fault(fault, message)

    def _door_housekeeping(self) -> None:
        if self.door is not None:
            self._door_events(self.door.tick(self.clock.monotonic()))
        if self.screen is not None:
            self.set_fault("screen", self.screen.fault)

    # -- housekeeping ------------------------------------------------------------

    def _clock_fault(self, trusted: bool, reason: str) -> None:
        if trusted != self._clock_trusted or (not trusted and "clock" not in self.faults):
            self._clock_trusted = trusted
            self.set_fault("clock", None if trusted else reason)

    def _housekeeping(self, force: bool = False) -> None:
        now_mono = self.clock.monotonic()
        self._next_housekeeping = now_mono + self.settings.housekeeping_every
        if self.noise.active and now_mono - self._noise_seen > self.noise.quiet:
            self._end_noise()  # no frames with junk for a while (or none at all)
        if self.store.refresh():
            policy = self.store.policy
            if policy is not None:
                self.emit(
                    "policy",
                    event=policy.event,
                    signed_at=policy.signed_at,
                    revoked=len(policy.revoked),
                )
                if policy.signed_at is not None:
                    self.guard.raise_floor(policy.signed_at)
        policy = self.store.policy
        now = self.clock.now()
        policy_fault = self.store.fault
        if policy_fault is None and policy is not None and now >= policy.expires:
            policy_fault = f"the policy for {policy.event} expired at {format_utc(policy.expires)}"
        self.set_fault("policy", policy_fault)
        state = self.guard.check(now)
        self._clock_fault(state.trusted, state.reason)
        if state.trusted and now_mono >= self._next_floor_save:
            self._next_floor_save = now_mono + self.settings.save_floor_every
            try:
                self.log.set_state("clock_floor", format_utc(self.guard.floor))
            except ScanLogError as err:
                self.set_fault("storage", str(err))
        if self.pending or "storage" in self.faults or self.log.open_error:
            self._probe_storage(now)
        self._door_housekeeping()
        status = self.status()  # once a round, for the screen, the link and systemd
        if self.screen is not None:
            from .screen import idle_view

            self.screen.set_idle(idle_view(status))
        if self.venue is not None:
            try:
                self.venue.housekeeping(
                    policy,
                    status.as_dict(),
                    frames=self.counts.frames,
                    clock_trusted=state.trusted,
                    record=self._record_event,
                )
            except Exception as err:  # the venue link must never stop the door
                self.emit("warning", message=f"venue: {err!r}")
        if not self.ready:
            # alive but not ready (no camera or no policy yet): systemd waits on,
            # showing the fault; a loop that hangs stops extending and is restarted
            self.notifier.extend_timeout(30)
        self.notifier.status(status.line())

    def status(self) -> GateStatus:
        """The gate as the crew asks about it: which door, the phase, counts,
        the last decision and the faults (``scanner phase`` prints it)."""
        c = self.counts
        gate = self.settings.gate
        policy = self.store.policy
        phase = "unknown (no policy)"
        let_in = None
        if policy is not None:
            if "clock" in self.faults:
                phase = "unknown (the clock cannot be trusted)"
            else:
                now = self.clock.now()
                day = policy.day_at(now)
                phase = phase_at(day, now, self.override).label
                if len(policy.days) > 1:
                    phase += f" (day {policy.day_number(day)} of {len(policy.days)})"
            if gate.direction is Direction.ENTRY:
                let_in = len(self.log.entries(policy.event, gate.zone))
        return GateStatus(
            gate=self.settings.gate_id,
            zone=gate.zone,
            direction=gate.direction.value,
            door=self.settings.door,
            event=policy.event if policy is not None else None,
            timezone=policy.timezone if policy is not None else "UTC",
            phase=phase,
            override=self.override,
            granted=c.granted,
            denied=c.denied,
            let_in=let_in,
            last=c.last,
            faults=dict(self.faults),
            sensors=self.door.state() if self.door is not None else {},
            venue=self.venue.status() if self.venue is not None else None,
        )

    def status_line(self) -> str:
        """The status as one line (systemd's STATUS, ``systemctl status``)."""
        return self.status().line()

    # -- commands --------------------------------------------------------------

    def _load_override(self) -> PhaseOverride | None:
        try:
            saved = self.log.get_state("phase_override")
        except ScanLogError:
            return None
        if not isinstance(saved, dict):
            return None
        try:
            return PhaseOverride(Phase(saved["phase"]), parse_utc(saved["since"]))
        except (KeyError, ValueError):
            return None

    def set_phase(self, phase: str, source: str = "control") -> dict[str, Any]:
        """Apply the crew's phase correction: before, during, after, or auto."""
        now = self.clock.now()
        if phase == "auto":
            self.override = None
        else:
            try:
                self.override = PhaseOverride(Phase(phase), now)
            except ValueError:
                return {"ok": False, "error": f"{phase!r} is not before, during, after or auto"}
        saved = (
            None
            if self.override is None
            else {"phase": self.override.phase.value, "since": format_utc(now)}
        )
        try:
            self.log.set_state("phase_override", saved)
        except ScanLogError as err:
            self.set_fault("storage", str(err))
        self._record_event("phase", phase=phase, source=source)
        self.emit("phase", phase=phase, source=source)
        status = self.status()
        return {"ok": True, "phase": phase, "status": status.line(), **status.as_dict()}

    def _answer_commands(self) -> None:
        while True:
            try:
                command = self.commands.get_nowait()
            except queue.Empty:
                return
            request = command.request
            what = request.get("cmd")
            if what == "phase" and isinstance(request.get("phase"), str):
                # who changed it is the kernel's word for the socket, and "key
                # switch" only from the switch's own pins, never from a request
                source = _who(command) if command.peer is not None else KEY_SWITCH
                if command.peer is None and request.get("source") != KEY_SWITCH:
                    source = "the box"
                command.reply(self.set_phase(request["phase"], source))
            elif what == "admit":
                row = request.get("row")
                command.reply(self.admit(_who(command), row if isinstance(row, str) else None))
            elif what == "denied":
                command.reply(self.last_denied())
            elif what == "door_input" and command.peer is None:  # gpiozero's thread only
                self.door_input(str(request.get("sensor")), bool(request.get("open")))
                command.reply({"ok": True})
            elif what == "status":
                status = self.status()
                command.reply({"ok": True, "status": status.line(), **status.as_dict()})
            elif what == "signal" and request.get("pattern") in USB_SIGNALS:
                self.signals.show(str(request["pattern"]))
                self._record_event("usb", result=str(request["pattern"]))
                command.reply({"ok": True})
            else:
                command.reply({"ok": False, "error": f"unknown command {what!r}"})


_USER = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")


KEY_SWITCH = "key switch"


def _who(command: Command) -> str:
    """Who asked (an override, a phase change): the shell user the control
    socket saw (``SO_PEERCRED``, never what the request claims), or the button
    on the box. For root, the request may say who ran sudo; that is kept as
    what it is, root's own claim, which nothing on the box can check."""
    if command.peer is None:
        return str(command.request.get("by") or "the button")
    sudo = command.request.get("sudo_user")
    if command.peer == "root" and isinstance(sudo, str) and _USER.fullmatch(sudo):
        return f"shell user root (says sudo by {sudo}, not checked)"
    return f"shell user {command.peer}"
