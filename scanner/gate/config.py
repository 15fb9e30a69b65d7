"""The gate's configuration: ``scanner.toml``, the door file, and flags.

Three layers, each overriding the one before:

1. ``/etc/scanner/scanner.toml`` (``--config``): pins (and the door's
   override button, door contact and tamper switch), the guard's screen,
   camera, decoder, hold-off, paths, clock behaviour. Read-only in the image. See the
   commented ``config/scanner.toml``.
2. The door file, ``gate.toml`` on the SD card's FAT boot partition
   (``/boot/firmware/gate.toml``): which door this box is (gate id, zone,
   direction, door, time zone) and, on a LAN without DHCP, its wired
   address and gateway, so one image serves every door. It is strictly
   validated data: those seven keys, small, never code. Keys and policy
   never come from there.
3. Command-line flags (``--zone``, ``--gate``, ``--policy``...). With them,
   ``scanner run`` needs no config file at all.

Every mistake stops start-up with a message naming the file and the key.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from ..core.decision import Direction, UntrustedClock
from ..core.policy import GATE_ID_PATTERN, ID_PATTERN, parse_broker_address
from ..core.untrusted import parse_toml, time_zone
from ..errors import ConfigError, MalformedError, PolicyError
from .frames import parse_camera_spec
from .signals import PinConfig
from .timing import FRAME_BUDGET_MS, HOLD_OFF_SECONDS

__all__ = [
    "DEFAULT_CONFIG",
    "CameraConfig",
    "Config",
    "GateConfig",
    "Paths",
    "ScreenConfig",
    "load_config",
    "read_door_file",
]

DEFAULT_CONFIG = Path("/etc/scanner/scanner.toml")
GATE_ID = GATE_ID_PATTERN  # one definition each, in the policy's core
ZONE_ID = ID_PATTERN
MAX_DOOR_FILE = 4096
MAX_CONFIG_FILE = 64 * 1024
DOOR_KEYS = ("id", "zone", "direction", "door", "timezone")
NETWORK_KEYS = ("address", "gateway")  # the box's wired network, when not by DHCP
T = TypeVar("T")


@dataclass(frozen=True)
class GateConfig:
    id: str = "gate"
    zone: str | None = None
    direction: Direction = Direction.ENTRY
    door: str | None = None  # a door id from the event policy
    timezone: str | None = None
    anti_passback: bool = True
    event: str | None = None  # serve only this event's policy, when set
    door_file: Path | None = Path("/boot/firmware/gate.toml")
    # The wired network (gate.toml only): a static address with its prefix
    # ("192.168.1.21/24") and a gateway on it; DHCP when not set.
    address: str | None = None
    gateway: str | None = None
    # where id, zone, direction and door were set (a file or "command line"),
    # so that a mistake found later, against the policy, names its file
    origins: Mapping[str, str] = field(default_factory=dict, compare=False)

    def origin(self, key: str) -> str:
        return self.origins.get(key, "defaults")


@dataclass(frozen=True)
class CameraConfig:
    source: str = "v4l2:/dev/video0"
    decoder: str = "auto"
    hold_off_seconds: float = HOLD_OFF_SECONDS
    frame_budget_ms: float = FRAME_BUDGET_MS
    realtime: bool = False
    fps: float = 10.0  # image folders only


@dataclass(frozen=True)
class Paths:
    policy: Path = Path("/var/lib/scanner/event.policy")
    initial_policy: Path | None = Path("/etc/scanner/event.policy")
    revocations: Path = Path("/var/lib/scanner/revocations.signed")
    trust: tuple[Path, ...] = (Path("/etc/scanner/trust"),)
    trust_update: Path = Path("/var/lib/scanner/trust.signed")
    db: Path = Path("/var/lib/scanner/scans.db")
    control_socket: Path | None = Path("/run/scanner/control.sock")
    build_time: Path = Path("/usr/lib/scanner/build-time")
    device_key: Path = Path("/var/lib/scanner/device.key")
    peers: Path = Path("/var/lib/scanner/peers.db")  # peers' scans, with [venue] broker

    @classmethod
    def in_folder(cls, folder: Path, *, policy: Path, trust: tuple[Path, ...]) -> Paths:
        """Every file the gate writes inside ``folder`` (demos, tests, trials)."""
        return cls(
            policy=policy,
            initial_policy=None,
            trust=trust,
            trust_update=folder / "trust.signed",
            revocations=folder / "revocations.signed",
            db=folder / "scans.db",
            control_socket=folder / "control.sock",
            build_time=folder / "build-time",
            device_key=folder / "device.key",
            peers=folder / "peers.db",
        )


@dataclass(frozen=True)
class ClockConfig:
    untrusted: UntrustedClock = UntrustedClock.DENY
    tolerance_seconds: float = 5.0  # a clock this far below the floor is still believed
    # a signed time setting may move this machine's clock: only on a gate, and only
    # ``scanner usb`` (the gate's USB service) honours it, never ``scanner import``
    set_system_clock: bool = False


SCREEN_KINDS = ("none", "luma", "framebuffer", "png")
LUMA_DRIVERS = {  # luma device name: the luma package it lives in
    **dict.fromkeys(("st7735", "st7789", "ili9341", "ili9486", "ili9488", "hx8357d"), "lcd"),
    **dict.fromkeys(("ssd1306", "ssd1309", "ssd1322", "ssd1325", "ssd1327", "ssd1351", "sh1106"),
                    "oled"),
}


@dataclass(frozen=True)
class ScreenConfig:
    """The guard's optional screen (``[screen]``): which kind, and its wiring."""

    kind: str = "none"  # none, luma (SPI/I2C), framebuffer (HDMI console), png (frames)
    driver: str = "st7789"  # a luma device, for kind = "luma"
    interface: str = "spi"  # spi or i2c, for kind = "luma"
    port: int = 0  # SPI port, or I2C bus (1 on a Pi)
    spi_device: int = 0
    address: int = 0x3C  # I2C address
    gpio_dc: int = 24  # SPI displays: data/command and reset pins
    gpio_rst: int = 25
    width: int = 320
    height: int = 240
    rotate: int = 0  # quarter turns
    framebuffer: Path = Path("/dev/fb0")
    folder: Path | None = None  # kind = "png": where the frames go
    fonts: tuple[Path, ...] = ()  # tried before the fonts the image ships
    hold_seconds: float = 5.0  # a decision stays up this long, then the idle screen


@dataclass(frozen=True)
class VenueConfig:
    """[venue]: the link between gates over an MQTT broker (off without a broker)."""

    # The venue's broker is the signed policy's [broker]; this replaces its
    # address (IP or IP:PORT), for a trial on a laptop. "" = the policy's.
    broker: str = ""
    heartbeat_seconds: float = 2.0
    clock_margin_seconds: float = 2.0  # clock skew allowed between two boxes in copy checks
    max_clock_offset_seconds: float = 5.0  # a peer further off is not counted on
    stale_seconds: float = 10.0  # a peer silent this long is not counted on


@dataclass(frozen=True)
class Config:
    gate: GateConfig = field(default_factory=GateConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    gpio: PinConfig = field(default_factory=PinConfig)
    gpio_factory: str = "auto"
    paths: Paths = field(default_factory=Paths)
    clock: ClockConfig = field(default_factory=ClockConfig)
    screen: ScreenConfig = field(default_factory=ScreenConfig)
    venue: VenueConfig = field(default_factory=VenueConfig)
    source: str = "defaults"  # where it came from, for messages


class _Table:
    """Reads one TOML table, naming ``file: section.key`` in every error."""

    def __init__(self, data: Mapping[str, Any], where: str, section: str) -> None:
        self.data = data
        self.where = where
        self.section = section
        self.used: set[str] = set()

    def name(self, key: str) -> str:
        return f"{self.where}: {self.section}.{key}" if self.section else f"{self.where}: {key}"

    def get(
        self,
        key: str,
        kind: type[T] | tuple[type, ...],
        default: T,
        check: Callable[[Any], Any] | None = None,
        hint: str = "",
    ) -> T:
        self.used.add(key)
        if key not in self.data:
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            wanted = hint or " or ".join(k.__name__ for k in kinds)
            raise ConfigError(f"{self.name(key)}: expected {wanted}, got {value!r}")
        if check is not None:
            try:
                value = check(value)
            except (ValueError, ConfigError) as err:
                raise ConfigError(f"{self.name(key)}: {err}") from err
        return value  # type: ignore[return-value]

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise ConfigError(
                f"{self.name(unknown[0])}: unknown key (known: {', '.join(sorted(self.used))})"
            )


def _gate_id(value: str) -> str:
    if not GATE_ID.fullmatch(value):
        raise ValueError(f"{value!r} is not a gate id (letters, digits, '.', '_', '-'; 40 max)")
    return value


def _zone(value: str) -> str:
    if not ZONE_ID.fullmatch(value):
        raise ValueError(f"{value!r} is not a zone id")
    return value


def _door(value: str) -> str:
    if not ZONE_ID.fullmatch(value):
        raise ValueError(f"{value!r} is not a door id")
    return value


def _direction(value: str) -> Direction:
    try:
        return Direction(value)
    except ValueError as err:
        raise ValueError(f"{value!r} is not entry or exit") from err


def _timezone(value: str) -> str:
    try:
        time_zone(value)
    except MalformedError as err:
        raise ValueError(str(err)) from err
    return value


def _pin(value: int) -> int:
    if not 0 <= value <= 27:
        raise ValueError(f"{value} is not a BCM pin number (0 to 27)")
    return value


def _positive(value: float) -> float:
    if value <= 0:
        raise ValueError(f"{value} must be more than 0")
    return value


def _camera(value: str) -> str:
    parse_camera_spec(value)
    return value


def _decoder(value: str) -> str:
    if value not in ("auto", "zxing", "zbar"):
        raise ValueError(f"{value!r} is not a decoder (auto, zxing, zbar)")
    return value


def _untrusted(value: str) -> UntrustedClock:
    try:
        return UntrustedClock(value)
    except ValueError as err:
        raise ValueError(f"{value!r} is not deny or allow_untimed") from err


def _read_toml(path: Path, what: str, *, max_bytes: int = MAX_CONFIG_FILE) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read {what} {path}: {err.strerror}") from err
    try:
        return parse_toml(raw, max_bytes=max_bytes)
    except MalformedError as err:
        raise ConfigError(f"{path}: {err}") from err


def _section(data: Mapping[str, Any], name: str, where: str) -> Mapping[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: [{name}] must be a table")
    return value


def _path(value: str) -> Path:
    if not value:
        raise ValueError("empty path")
    return Path(value)


def parse_config(data: Mapping[str, Any], where: str) -> Config:
    """Build a :class:`Config` from parsed ``scanner.toml`` data."""
    unknown = sorted(set(data) - {"gate", "camera", "gpio", "paths", "clock", "screen", "venue"})
    if unknown:
        raise ConfigError(
            f"{where}: [{unknown[0]}] is not a section "
            "(sections: gate, camera, gpio, paths, clock, screen, venue)"
        )
    g = _Table(_section(data, "gate", where), where, "gate")
    d = GateConfig()
    door = g.get("door_file", str, str(d.door_file))
    gate = GateConfig(
        id=g.get("id", str, d.id, _gate_id),
        zone=g.get("zone", str, None, _zone),  # type: ignore[arg-type]
        direction=g.get("direction", str, d.direction, _direction),
        door=g.get("door", str, None, _door),  # type: ignore[arg-type]
        timezone=g.get("timezone", str, None, _timezone),  # type: ignore[arg-type]
        anti_passback=g.get("anti_passback", bool, d.anti_passback),
        event=g.get("event", str, None) or None,  # type: ignore[arg-type]
        door_file=Path(door) if door else None,
        origins={k: where for k in DOOR_KEYS if k in g.data},
    )
    g.done()

    c = _Table(_section(data, "camera", where), where, "camera")
    dc = CameraConfig()
    camera = CameraConfig(
        source=c.get("source", str, dc.source, _camera),
        decoder=c.get("decoder", str, dc.decoder, _decoder),
        hold_off_seconds=c.get(
            "hold_off_seconds", float, dc.hold_off_seconds, _positive, "seconds"
        ),
        frame_budget_ms=c.get(
            "frame_budget_ms", float, dc.frame_budget_ms, _positive, "milliseconds"
        ),
        realtime=c.get("realtime", bool, dc.realtime),
        fps=c.get("fps", float, dc.fps, _positive),
    )
    c.done()

    p = _Table(_section(data, "gpio", where), where, "gpio")
    dp = PinConfig()
    factory = p.get("factory", str, "auto")
    pins = PinConfig(
        green=p.get("green", int, dp.green, _pin),
        red=p.get("red", int, dp.red, _pin),
        buzzer=p.get("buzzer", int, dp.buzzer, _pin),
        strike=p.get("strike", int, None, _pin),  # type: ignore[arg-type]
        strike_seconds=p.get("strike_seconds", float, dp.strike_seconds, _positive),
        strike_active_high=p.get("strike_active_high", bool, dp.strike_active_high),
        show_switch=p.get("show_switch", int, None, _pin),  # type: ignore[arg-type]
        admit_button=p.get("admit_button", int, None, _pin),  # type: ignore[arg-type]
        door_contact=p.get("door_contact", int, None, _pin),  # type: ignore[arg-type]
        tamper=p.get("tamper", int, None, _pin),  # type: ignore[arg-type]
        held_open_seconds=p.get(
            "held_open_seconds", float, dp.held_open_seconds, _positive, "seconds"
        ),
        override_seconds=p.get(
            "override_seconds", float, dp.override_seconds, _override_window, "seconds"
        ),
    )
    p.done()
    chosen = pins.used()
    if len(set(chosen)) != len(chosen):
        raise ConfigError(f"{where}: gpio: two devices share a pin ({chosen})")
    screen = _screen_config(_section(data, "screen", where), where, chosen)

    t = _Table(_section(data, "paths", where), where, "paths")
    dt = Paths()
    trust = t.get("trust", list, [str(x) for x in dt.trust])
    if not all(isinstance(x, str) and x for x in trust):
        raise ConfigError(f"{t.name('trust')}: expected a list of folder paths")
    initial = t.get("initial_policy", str, str(dt.initial_policy))
    socket = t.get("control_socket", str, str(dt.control_socket))
    paths = Paths(
        policy=t.get("policy", str, dt.policy, _path),
        initial_policy=Path(initial) if initial else None,
        revocations=t.get("revocations", str, dt.revocations, _path),
        trust=tuple(Path(x) for x in trust),
        trust_update=t.get("trust_update", str, dt.trust_update, _path),
        db=t.get("db", str, dt.db, _path),
        control_socket=Path(socket) if socket else None,
        build_time=t.get("build_time", str, dt.build_time, _path),
        device_key=t.get("device_key", str, dt.device_key, _path),
        peers=t.get("peers", str, dt.peers, _path),
    )
    t.done()

    k = _Table(_section(data, "clock", where), where, "clock")
    dk = ClockConfig()
    clock = ClockConfig(
        untrusted=k.get("untrusted", str, dk.untrusted, _untrusted),
        tolerance_seconds=k.get("tolerance_seconds", float, dk.tolerance_seconds, _positive),
        set_system_clock=k.get("set_system_clock", bool, dk.set_system_clock),
    )
    k.done()
    venue = _venue_section(_Table(_section(data, "venue", where), where, "venue"))
    return Config(
        gate=gate,
        camera=camera,
        gpio=pins,
        gpio_factory=factory,
        paths=paths,
        clock=clock,
        screen=screen,
        venue=venue,
        source=where,
    )


def _override_window(value: float) -> float:
    # long enough to look at a face and hear the tour manager; short enough that
    # the button cannot admit somebody who walked away minutes ago
    if not 5 <= value <= 120:
        raise ValueError(f"{value} is not between 5 and 120 seconds")
    return value


def _screen_config(data: Mapping[str, Any], where: str, pins: list[int]) -> ScreenConfig:
    s = _Table(data, where, "screen")
    ds = ScreenConfig()

    def one_of(choices: Iterable[str]) -> Callable[[str], str]:
        names = tuple(choices)

        def check(value: str) -> str:
            if value not in names:
                raise ValueError(f"{value!r} is not one of {', '.join(names)}")
            return value

        return check

    def size(value: int) -> int:
        if not 16 <= value <= 4096:
            raise ValueError(f"{value} pixels is not a screen size (16 to 4096)")
        return value

    def quarter(value: int) -> int:
        if value not in (0, 1, 2, 3):
            raise ValueError(f"{value} is not 0, 1, 2 or 3 quarter turns")
        return value

    folder = s.get("folder", str, "")
    fonts = s.get("fonts", list, [])
    if not all(isinstance(x, str) and x for x in fonts):
        raise ConfigError(f"{s.name('fonts')}: expected a list of font file paths")
    config = ScreenConfig(
        kind=s.get("kind", str, ds.kind, one_of(SCREEN_KINDS)),
        driver=s.get("driver", str, ds.driver, one_of(sorted(LUMA_DRIVERS))),
        interface=s.get("interface", str, ds.interface, one_of(("spi", "i2c"))),
        port=s.get("port", int, ds.port),
        spi_device=s.get("spi_device", int, ds.spi_device),
        address=s.get("address", int, ds.address),
        gpio_dc=s.get("gpio_dc", int, ds.gpio_dc, _pin),
        gpio_rst=s.get("gpio_rst", int, ds.gpio_rst, _pin),
        width=s.get("width", int, ds.width, size),
        height=s.get("height", int, ds.height, size),
        rotate=s.get("rotate", int, ds.rotate, quarter),
        framebuffer=s.get("framebuffer", str, ds.framebuffer, _path),
        folder=Path(folder) if folder else None,
        fonts=tuple(Path(x) for x in fonts),
        hold_seconds=s.get("hold_seconds", float, ds.hold_seconds, _positive, "seconds"),
    )
    s.done()
    if config.kind == "png" and config.folder is None:
        raise ConfigError(f"{s.name('folder')}: kind = \"png\" needs a folder for the frames")
    if config.kind == "luma" and config.interface == "spi":
        shared = sorted({config.gpio_dc, config.gpio_rst} & set(pins))
        if shared or config.gpio_dc == config.gpio_rst:
            raise ConfigError(
                f"{where}: screen.gpio_dc/gpio_rst: pin {shared or [config.gpio_dc]} is "
                "already used by [gpio]"
            )
    return config


def _broker(value: str) -> str:
    if value:
        try:
            parse_broker_address(value, "")
        except PolicyError as err:
            raise ValueError(str(err).removeprefix(": ")) from err
    return value


def _venue_section(v: _Table) -> VenueConfig:
    dv = VenueConfig()
    venue = VenueConfig(
        broker=v.get("broker", str, dv.broker, _broker, "IP or IP:PORT"),
        heartbeat_seconds=v.get(
            "heartbeat_seconds", float, dv.heartbeat_seconds, _positive, "seconds"
        ),
        clock_margin_seconds=v.get(
            "clock_margin_seconds", float, dv.clock_margin_seconds, _not_negative, "seconds"
        ),
        max_clock_offset_seconds=v.get(
            "max_clock_offset_seconds", float, dv.max_clock_offset_seconds, _positive, "seconds"
        ),
        stale_seconds=v.get("stale_seconds", float, dv.stale_seconds, _positive, "seconds"),
    )
    v.done()
    if venue.stale_seconds <= venue.heartbeat_seconds:
        raise ConfigError(
            f"{v.name('stale_seconds')}: must be longer than heartbeat_seconds "
            f"({venue.heartbeat_seconds}), or every peer looks silent"
        )
    return venue


def _not_negative(value: float) -> float:
    if value < 0:
        raise ValueError(f"{value} must be 0 or more")
    return value


def read_door_file(path: Path) -> dict[str, Any]:
    """Read the door file (``gate.toml`` on the boot partition), strictly.

    Only ``id``, ``zone``, ``direction``, ``door``, ``timezone``, ``address``
    and ``gateway``; at most 4 KiB; a regular file. Returns the settings
    given, validated.
    """
    where = str(path)
    try:
        if not path.is_file() or path.is_symlink():
            raise ConfigError(f"{where}: not a regular file")
    except OSError as err:
        raise ConfigError(f"cannot read door file {where}: {err}") from err
    data = _read_toml(path, "door file", max_bytes=MAX_DOOR_FILE)
    table = _Table(data, where, "")
    out = {
        "id": table.get("id", str, None, _gate_id),
        "zone": table.get("zone", str, None, _zone),
        "direction": table.get("direction", str, None, _direction),
        "door": table.get("door", str, None, _door),
        "timezone": table.get("timezone", str, None, _timezone),
        "address": table.get("address", str, None, _interface, "an address with its prefix"),
        "gateway": table.get("gateway", str, None, _ip_address, "an IP address"),
    }
    table.done()
    if out["gateway"] is not None:
        if out["address"] is None:
            raise ConfigError(
                f"{table.name('gateway')}: a gateway needs a static address "
                "(address = \"192.168.1.21/24\"); without one the box takes both from DHCP"
            )
        network = ipaddress.ip_interface(out["address"]).network
        if ipaddress.ip_address(out["gateway"]) not in network:
            raise ConfigError(
                f"{table.name('gateway')}: {out['gateway']} is not on {network} "
                f"(address = {out['address']})"
            )
    return {k: v for k, v in out.items() if v is not None}


def _interface(value: str) -> str:
    """A static address with its prefix length, e.g. 192.168.1.21/24."""
    if "/" not in value:
        raise ValueError(f"{value!r} needs its prefix length, e.g. \"{value}/24\"")
    try:
        interface = ipaddress.ip_interface(value)
    except ValueError as err:
        raise ValueError(f"{value!r} is not an address with its prefix (192.168.1.21/24)") from err
    if interface.ip == interface.network.network_address and interface.network.prefixlen < (
        interface.max_prefixlen - 1
    ):
        raise ValueError(f"{value!r} is the network itself, not an address on it")
    if interface.ip.is_loopback or interface.ip.is_multicast or interface.ip.is_unspecified:
        raise ValueError(f"{value!r} is not an address a box can have on a LAN")
    return str(interface)


def _ip_address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError as err:
        raise ValueError(f"{value!r} is not an IP address") from err


def load_config(
    path: Path | None, *, require_zone: bool = True, door_file: bool = True, **flags: Any
) -> Config:
    """Read ``path`` (or the default file if it exists), the door file (unless
    ``door_file`` is False), then ``flags``.

    Flags: ``zone``, ``gate``, ``direction``, ``policy``, ``db``, ``camera``,
    ``gpio``, ``trust`` (list of paths), ``decoder``, ``control_socket``; a
    flag that is None is not given.
    """
    if path is not None:
        config = parse_config(_read_toml(path, "config file"), str(path))
    elif DEFAULT_CONFIG.exists():
        config = parse_config(_read_toml(DEFAULT_CONFIG, "config file"), str(DEFAULT_CONFIG))
    else:
        config = Config()
    gate = config.gate
    origins = dict(gate.origins)
    if door_file and gate.door_file is not None and gate.door_file.exists():
        door = read_door_file(gate.door_file)
        origins.update({k: str(gate.door_file) for k in door})
        gate = replace(gate, **door)
    given = {k: v for k, v in flags.items() if v is not None}
    origins.update({k: "command line" for k in ("zone", "direction", "door") if k in given})
    if "gate" in given:
        origins["id"] = "command line"
    try:
        if "gate" in given:
            gate = replace(gate, id=_gate_id(given["gate"]))
        if "zone" in given:
            gate = replace(gate, zone=_zone(given["zone"]))
        if "direction" in given:
            gate = replace(gate, direction=_direction(given["direction"]))
        if "door" in given:
            gate = replace(gate, door=_door(given["door"]))
        camera = config.camera
        if "camera" in given:
            camera = replace(camera, source=_camera(given["camera"]))
        if "decoder" in given:
            camera = replace(camera, decoder=_decoder(given["decoder"]))
    except ValueError as err:
        raise ConfigError(f"command line: {err}") from err
    paths = config.paths
    if "policy" in given:
        paths = replace(paths, policy=Path(given["policy"]), initial_policy=None)
    if "db" in given:
        paths = replace(paths, db=Path(given["db"]))
    if given.get("trust"):
        paths = replace(paths, trust=tuple(Path(p) for p in given["trust"]))
    if "control_socket" in given:
        paths = replace(paths, control_socket=Path(given["control_socket"]))
    factory = given.get("gpio", config.gpio_factory)
    if gate.zone is None and require_zone:
        raise ConfigError(
            f"{config.source}: gate.zone: which zone does this door lead into? "
            "Set it in gate.toml, scanner.toml or with --zone"
        )
    gate = replace(gate, origins=origins)
    return replace(config, gate=gate, camera=camera, paths=paths, gpio_factory=factory)
