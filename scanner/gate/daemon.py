"""``scanner run``: the wiring that chooses the real edges and runs the loop.

This is the only place that picks real implementations: the camera from the
config, gpiozero's pin factory, the SQLite file, the system clock, systemd's
notify socket, the control socket, and the door's optional extras (the
guard's screen, the override button, the door contact and tamper switch).
Everything is held in one ``ExitStack``
so that whatever happens, the LEDs go dark, the strike locks, the camera and
the log are closed. SIGTERM and SIGINT stop the loop between frames.

Exit codes: 0 stopped or recording ended; 2 configuration error; 3 the gate
cannot run (no GPIO, no decoder) or rows could not be saved before exiting.
"""

from __future__ import annotations

import os
import queue
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack, closing, suppress
from datetime import datetime, timedelta
from typing import Any

from ..core.decision import Gate
from ..core.policy import GatePlace, Policy
from ..core.signed import parse_utc
from ..errors import (
    ConfigError,
    ControlError,
    KeyFileError,
    PolicyError,
    ScanLogError,
    ScannerError,
)
from ..keyfiles import load_or_create_device_key
from ..record.log import ScanLog
from .clock import (
    FLOOR_STATE,
    RESET_STATE,
    ClockGuard,
    FloorReset,
    SystemClock,
    floor_ceiling,
    read_build_time,
    starting_floor,
)
from .config import Config, Paths
from .control import Command, ControlServer
from .decoders import open_decoder
from .door import DoorWatch
from .frames import FrameSource, open_camera
from .logfmt import Emitter
from .policy_store import LogState, PolicyStore, StateStore
from .scan_loop import LoopSettings, ScanLoop
from .screen import DEFAULT_FONTS, FontSet, GuardScreen, open_screen
from .sdnotify import Notifier, open_notifier
from .signals import DoorSignals, PinConfig, open_pin_factory

__all__ = [
    "clock_floor",
    "clock_guard",
    "config_fault_hint",
    "hold_config_fault",
    "open_policy_store",
    "place_gate",
    "run_gate",
]


def open_policy_store(
    config: Config, place: GatePlace | None = None, *, state: StateStore | None = None
) -> PolicyStore:
    """What the gate described by ``config`` trusts, loaded and verified.

    With ``place`` (where the running gate stands), a new policy that puts
    this gate somewhere else, or does not know it, is refused and the last
    verified one kept. ``state`` is where the record of accepted key updates
    lives (an open :class:`ScanLog`); by default the gate's scan log file.
    """
    p = config.paths

    def fits(policy: Policy) -> None:
        if place is not None:
            policy.place_gate(
                config.gate.id, zone=place.zone, direction=place.direction, door=place.door
            )

    return PolicyStore(
        policy=p.policy,
        trust=p.trust,
        revocations=p.revocations,
        initial_policy=p.initial_policy,
        event=config.gate.event,
        trust_update=p.trust_update,
        state=state or LogState(p.db, config.gate.id),
        check=fits,
    )


def place_gate(config: Config, policy: Policy | None) -> GatePlace:
    """Where this gate stands: its door file and config checked against the
    policy. A zone, door or gate id the policy does not know is a
    configuration fault naming the file it came from, never a gate that
    starts and denies everyone."""
    gate = config.gate
    if policy is None:
        if gate.zone is None:
            raise ConfigError(
                f"{gate.origin('zone')}: gate.zone: which zone does this door lead into? "
                "Set it in gate.toml, scanner.toml or with --zone"
            )
        return GatePlace(gate.id, gate.zone, gate.direction, gate.door)
    direction = gate.direction if "direction" in gate.origins else None
    try:
        return policy.place_gate(gate.id, zone=gate.zone, direction=direction, door=gate.door)
    except PolicyError as err:
        key = err.key or "zone"
        raise ConfigError(f"{gate.origin(key)}: gate.{key}: {err}") from err


def _last_trusted_scan(log: ScanLog) -> datetime | None:
    """When the newest scan logged on a trusted clock was made (rows written
    on an untrusted clock are evidence of nothing)."""
    row = log.db.conn.execute(
        "SELECT ts FROM scans WHERE clock = 'trusted' ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    return parse_utc(row[0]) if row else None


def _ceiling(config: Config, store: PolicyStore) -> Callable[[], datetime | None]:
    build = read_build_time(config.paths.build_time)
    # the verified policy itself: the same curfew, without merging the revocation list
    return lambda: floor_ceiling(store.base.expires if store.base is not None else None, build)


def _floor_reset(log: ScanLog) -> FloorReset | None:
    try:
        return FloorReset.from_state(log.get_state(RESET_STATE))
    except ScanLogError:
        return None


def clock_floor(config: Config, log: ScanLog, store: PolicyStore) -> datetime:
    """The newest time this gate knows has passed (see :mod:`scanner.gate.clock`):
    the image's build time, and the policy's signing time, the last scan on a
    trusted clock and the saved floor as far as they are believable."""
    sources: list[datetime | None] = []
    if store.policy is not None:
        sources.append(store.policy.signed_at)
    try:
        sources.append(_last_trusted_scan(log))
        saved = log.get_state(FLOOR_STATE)
        if isinstance(saved, str):
            sources.append(parse_utc(saved))
    except (ScanLogError, sqlite3.Error, ValueError):
        pass
    return starting_floor(
        build=read_build_time(config.paths.build_time),
        sources=sources,
        ceiling=_ceiling(config, store)(),
        reset=_floor_reset(log),
    )


def clock_guard(
    config: Config, log: ScanLog, store: PolicyStore, *, poll_seconds: float = 2.0
) -> ClockGuard:
    """The gate's clock guard: its floor, ``[clock] tolerance_seconds``, the
    ceiling from the policy in force, and signed lowerings of the floor that
    a USB update records in ``log`` while the gate runs (read at most every
    ``poll_seconds``, so a scan does not wait for it)."""
    seen: list[tuple[float, FloorReset | None]] = []

    def resets() -> FloorReset | None:
        now = time.monotonic()
        if not seen or now - seen[0][0] >= poll_seconds:
            seen[:] = [(now, _floor_reset(log))]
        return seen[0][1]

    return ClockGuard(
        clock_floor(config, log, store),
        tolerance=timedelta(seconds=config.clock.tolerance_seconds),
        ceiling=_ceiling(config, store),
        resets=resets,
    )


def run_gate(
    config: Config,
    *,
    stop: threading.Event | None = None,
    clock: Any = None,
    notifier: Notifier | None = None,
    emit: Callable[..., None] | None = None,
    open_frames: Callable[[], FrameSource] | None = None,
    factory: Any = None,
    venue_bus: Any = None,
) -> int:
    """Run the gate described by ``config`` until stopped (see module doc).
    ``venue_bus`` replaces the MQTT client of the venue link (tests)."""
    stop = stop or threading.Event()
    emit = emit or Emitter()
    clock = clock or SystemClock()
    with ExitStack() as stack:
        notifier = notifier or stack.enter_context(closing(open_notifier()))
        first_policy = open_policy_store(config).policy
        place = place_gate(config, first_policy)
        log = stack.enter_context(ScanLog(config.paths.db, gate=config.gate.id))
        store = open_policy_store(config, place, state=log)
        signals = stack.enter_context(
            DoorSignals(
                factory or open_pin_factory(config.gpio_factory),
                config.gpio,
                on_signal=lambda name, shows: emit("signal", signal=name, shows=shows),
            )
        )
        decoder = stack.enter_context(
            open_decoder(
                config.camera.decoder,
                frame_budget_ms=config.camera.frame_budget_ms,
                stream=True,  # the door's camera: a new pass is answered from its first code
            )
        )
        commands: queue.Queue[Command] = queue.Queue()
        try:
            stack.enter_context(ControlServer(config.paths.control_socket, commands))
        except ControlError as err:
            emit("warning", message=f"{err}; scanner phase will not reach this gate")
        signals.when_show_switch(
            lambda: commands.put(
                Command({"cmd": "phase", "phase": "during", "source": "key switch"})
            ),
            lambda: commands.put(
                Command({"cmd": "phase", "phase": "after", "source": "key switch"})
            ),
        )
        pins = config.gpio
        signals.when_admit(lambda: commands.put(Command({"cmd": "admit", "by": "the button"})))

        def sensor(name: str, is_open: bool) -> Callable[[], None]:
            request = {"cmd": "door_input", "sensor": name, "open": is_open}
            return lambda: commands.put(Command(dict(request)))

        signals.when_door(sensor("door", True), sensor("door", False))
        signals.when_case(sensor("case", True), sensor("case", False))
        door = None
        if pins.door_contact is not None or pins.tamper is not None:
            door = DoorWatch(
                held_open_seconds=pins.held_open_seconds,
                open_window=pins.strike_seconds + 2.0,  # time to push the door after the click
                door_open=signals.door_is_open,
                case_open=signals.case_is_open,
            )
        screen = None
        opener = open_screen(config.screen)
        if opener is not None:
            screen = stack.enter_context(
                GuardScreen(
                    opener,
                    fonts=FontSet((*config.screen.fonts, *DEFAULT_FONTS)),
                    hold_seconds=config.screen.hold_seconds,
                    every_frame=config.screen.kind == "png",  # the fake keeps every frame
                )
            )
        device_key = None
        try:  # the key that signs this gate's exports, made at its first start
            device_key = load_or_create_device_key(config.paths.device_key)
        except (KeyFileError, OSError) as err:
            emit("warning", message=f"device key {config.paths.device_key}: {err}")
        guard = clock_guard(config, log, store)
        venue = _open_venue(config, place, log, device_key, clock, emit, venue_bus, first_policy)
        if venue is not None:
            stack.callback(venue.close)
        camera = config.camera
        loop = ScanLoop(
            settings=LoopSettings(
                gate_id=config.gate.id,
                gate=Gate(
                    zone=place.zone,
                    direction=place.direction,
                    anti_passback=config.gate.anti_passback,
                    untrusted_clock=config.clock.untrusted,
                ),
                door=place.door,
                hold_off=camera.hold_off_seconds,
                override_seconds=pins.override_seconds,
            ),
            open_frames=open_frames
            or (
                lambda: open_camera(
                    camera.source,
                    realtime=camera.realtime,
                    fps=camera.fps,
                    report=lambda **fields: emit("camera", **fields),
                )
            ),
            decoder=decoder,
            log=log,
            signals=signals,
            store=store,
            clock=clock,
            guard=guard,
            notifier=notifier,
            commands=commands,
            emit=emit,
            screen=screen,
            door=door,
            venue=venue,
        )
        if log.open_error:
            loop.set_fault("storage", log.open_error)
        emit(
            "start",
            gate=config.gate.id,
            zone=place.zone,
            direction=place.direction.value,
            door=place.door,
            camera=camera.source,
            decoder=camera.decoder,
            db=str(config.paths.db),
            config=config.source,
        )
        restore = _stop_on_signals(stop)
        try:
            code = loop.run(stop)
        finally:
            restore()
        signals.wait_idle(timeout=3.0)
        if screen is not None:
            screen.wait_drawn(timeout=5.0)
        counts = loop.counts
        emit(
            "stop",
            frames=counts.frames,
            scans=counts.scans,
            granted=counts.granted,
            denied=counts.denied,
            db=str(config.paths.db),
            exit=code,
        )
        return code


def _open_venue(
    config: Config,
    place: GatePlace,
    log: ScanLog,
    device_key: Any,
    clock: Any,
    emit: Callable[..., None],
    bus: Any,
    policy: Any = None,
) -> Any:
    """The venue link, when the policy names a broker or ``[venue] broker`` is
    set (or a test gives a bus). A broker named by a policy that arrives
    later takes effect at the next start (the sandbox lets the service reach
    it only then)."""
    from ..venue.door import broker_endpoint, open_gate_venue

    try:
        if bus is None and broker_endpoint(config, policy) is None:
            return None
        return open_gate_venue(
            config,
            place,
            log=log,
            device_key=device_key,
            clock=clock,
            emit=emit,
            policy=policy,
            bus=bus,
        )
    except ScannerError as err:  # the door works without its peers: said, not fatal
        emit("fault", fault="venue", message=f"the venue link cannot start: {err}")
        return None


def hold_config_fault(
    message: str,
    *,
    stop: threading.Event | None = None,
    notifier: Notifier | None = None,
    factory: Any = None,
    emit: Callable[..., None] | None = None,
    every: float = 30.0,
    config: Config | None = None,
) -> int:
    """A gate whose configuration is wrong stays up showing the fault blink.

    Exiting would leave the door dark, or restart and reboot the box over and
    over, which cannot fix a typo. So the gate holds the fault instead, and
    says so everywhere a technician looks:

    * systemd gets READY with ``STATUS=CONFIGURATION FAULT: ...``, so the
      boot reaches its targets (nothing waits forever on a box that cannot
      fix itself) and ``systemctl status scanner`` names the file and key;
      the watchdog is fed, since the daemon is alive and doing its job;
    * the door shows the idle fault blink and never green;
    * the journal repeats the fault (``event=fault fault=config``);
    * ``scanner phase`` gets the fault as its answer, and ``scanner
      selftest`` sees a running service, as with a healthy gate.

    The pins are the configured ones when the configuration could be read
    (the fault was found later, against the policy), else gpiozero's
    defaults, as the configured ones may be what is wrong. Returns exit
    code 2 once stopped.
    """
    stop = stop or threading.Event()
    emit = emit or Emitter()
    status = f"CONFIGURATION FAULT: {config_fault_hint(message, config)}"
    with ExitStack() as stack:
        notifier = notifier or stack.enter_context(closing(open_notifier()))
        try:
            signals = stack.enter_context(
                DoorSignals(
                    factory or open_pin_factory(config.gpio_factory if config else "auto"),
                    config.gpio if config else PinConfig(),
                    on_signal=lambda name, shows: emit("signal", signal=name, shows=shows),
                )
            )
            signals.set_faults(frozenset({"config"}))
        except ScannerError as err:
            emit("fault", fault="gpio", message=str(err))
        commands: queue.Queue[Command] = queue.Queue()
        socket_path = (config.paths if config else Paths()).control_socket
        try:
            stack.enter_context(ControlServer(socket_path, commands))
        except ControlError as err:
            emit("warning", message=f"{err}; scanner phase will not reach this gate")
        restore = _stop_on_signals(stop)
        try:
            notifier.ready(status)
            next_report = 0.0
            while not stop.is_set():
                now = time.monotonic()
                if now >= next_report:
                    next_report = now + every
                    emit("fault", fault="config", message=message)
                    notifier.status(status)
                # Twice a second: alive for the watchdog, and the crew's questions answered.
                notifier.watchdog()
                _refuse_commands(commands, status)
                stop.wait(0.5)
        finally:
            restore()
    return 2


def config_fault_hint(message: str, config: Config | None) -> str:
    """The fault as a technician needs it: a door file nobody filled in says so."""
    door_file = config.gate.door_file if config else None
    if config is not None and door_file is not None and door_file.exists():
        from_door_file = [k for k, v in config.gate.origins.items() if v == str(door_file)]
        if not from_door_file:
            return (
                f"{door_file} is not filled in, so this box does not know which door it "
                "guards: set id, zone, direction and timezone in gate.toml on the SD "
                "card's boot partition, then restart"
            )
    return f"{message}; fix it, then: systemctl restart scanner"


def _refuse_commands(commands: queue.Queue[Command], status: str) -> None:
    while True:
        try:
            command = commands.get_nowait()
        except queue.Empty:
            return
        command.reply({"ok": False, "error": f"this gate is not scanning: {status}"})


def _stop_on_signals(stop: threading.Event) -> Callable[[], None]:
    """SIGTERM and SIGINT set ``stop``; returns what puts the old handlers back.

    The handler never sets the event itself: a Python signal handler runs in
    the main thread between two bytecodes, possibly while that thread is
    inside ``stop.wait()`` holding the event's lock, and ``stop.set()`` would
    then wait for that lock for ever (the gate hung on ``systemctl stop``
    until systemd killed it). The handler only writes a byte to a pipe; a
    small thread reads it and sets the event.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    read_end, write_end = os.pipe()

    def relay() -> None:
        while True:
            try:
                got = os.read(read_end, 1)
            except OSError:
                return
            if got != b"s":  # b"q" (restored) or the pipe closed
                return
            stop.set()

    def handler(signum: int, frame: Any) -> None:
        with suppress(OSError):
            os.write(write_end, b"s")

    thread = threading.Thread(target=relay, name="signal relay", daemon=True)
    thread.start()
    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for s, h in old.items():
            signal.signal(s, h)
        with suppress(OSError):
            os.write(write_end, b"q")
        thread.join(timeout=2)
        for fd in (read_end, write_end):
            with suppress(OSError):
                os.close(fd)

    return restore
