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
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..core.decision import Direction, UntrustedClock
from ..core.policy import GATE_ID_PATTERN, ID_PATTERN, parse_broker_address
from ..core.reading import above, at_least, blank_is_none, one_of, read, read_given, rule
from ..core.untrusted import parse_toml, time_zone
from ..errors import ConfigError, MalformedError, PolicyError
from .frames import parse_camera_spec
from .signals import BCM_PIN, PinConfig
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
DECODERS = ("auto", "zxing", "zbar")


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


def _camera(value: str) -> str:
    parse_camera_spec(value)
    return value


_decoder = one_of(DECODERS, "a decoder")
_positive = above(0)


def _broker(value: str) -> str:
    if value:
        try:
            parse_broker_address(value, "")
        except PolicyError as err:
            raise ValueError(str(err).removeprefix(": ")) from err
    return value


def _screen_size(value: int) -> int:
    if not 16 <= value <= 4096:
        raise ValueError(f"{value} pixels is not a screen size (16 to 4096)")
    return value


def _quarter_turns(value: int) -> int:
    if value not in (0, 1, 2, 3):
        raise ValueError(f"{value} is not 0, 1, 2 or 3 quarter turns")
    return value


@dataclass(frozen=True)
class GateConfig:
    id: str = field(default="gate", metadata=rule(_gate_id))
    zone: str | None = field(default=None, metadata=rule(_zone))
    direction: Direction = Direction.ENTRY
    door: str | None = field(default=None, metadata=rule(_door))  # a door id from the event policy
    timezone: str | None = field(default=None, metadata=rule(_timezone))
    anti_passback: bool = True
    # serve only this event's policy, when set
    event: str | None = field(default=None, metadata=rule(blank_is_none))
    door_file: Path | None = Path("/boot/firmware/gate.toml")
    # The wired network (gate.toml only): a static address with its prefix
    # ("192.168.1.21/24") and a gateway on it; DHCP when not set.
    address: str | None = field(
        default=None, metadata=rule(_interface, expect="an address with its prefix")
    )
    gateway: str | None = field(default=None, metadata=rule(_ip_address, expect="an IP address"))
    # where id, zone, direction and door were set (a file or "command line"),
    # so that a mistake found later, against the policy, names its file
    origins: Mapping[str, str] = field(
        default_factory=dict, compare=False, metadata=rule(key=False)
    )

    def origin(self, key: str) -> str:
        return self.origins.get(key, "defaults")


@dataclass(frozen=True)
class CameraConfig:
    source: str = field(default="v4l2:/dev/video0", metadata=rule(_camera))
    decoder: str = field(default="auto", metadata=rule(_decoder))
    hold_off_seconds: float = field(
        default=HOLD_OFF_SECONDS, metadata=rule(_positive, expect="seconds")
    )
    frame_budget_ms: float = field(
        default=FRAME_BUDGET_MS, metadata=rule(_positive, expect="milliseconds")
    )
    realtime: bool = False
    fps: float = field(default=10.0, metadata=rule(_positive))  # image folders only


@dataclass(frozen=True)
class Paths:
    policy: Path = Path("/var/lib/scanner/event.policy")
    initial_policy: Path | None = Path("/etc/scanner/event.policy")
    revocations: Path = Path("/var/lib/scanner/revocations.signed")
    trust: tuple[Path, ...] = field(
        default=(Path("/etc/scanner/trust"),), metadata=rule(expect="a list of folder paths")
    )
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
    # a clock this far below the floor is still believed
    tolerance_seconds: float = field(default=5.0, metadata=rule(_positive))
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

    # none, luma (SPI/I2C), framebuffer (HDMI console), png (frames)
    kind: str = field(default="none", metadata=rule(one_of(SCREEN_KINDS)))
    # a luma device, for kind = "luma"
    driver: str = field(default="st7789", metadata=rule(one_of(sorted(LUMA_DRIVERS))))
    # spi or i2c, for kind = "luma"
    interface: str = field(default="spi", metadata=rule(one_of(("spi", "i2c"))))
    port: int = 0  # SPI port, or I2C bus (1 on a Pi)
    spi_device: int = 0
    address: int = 0x3C  # I2C address
    # SPI displays: data/command and reset pins
    gpio_dc: int = field(default=24, metadata=rule(BCM_PIN))
    gpio_rst: int = field(default=25, metadata=rule(BCM_PIN))
    width: int = field(default=320, metadata=rule(_screen_size))
    height: int = field(default=240, metadata=rule(_screen_size))
    rotate: int = field(default=0, metadata=rule(_quarter_turns))
    framebuffer: Path = Path("/dev/fb0")
    folder: Path | None = None  # kind = "png": where the frames go
    # tried before the fonts the image ships
    fonts: tuple[Path, ...] = field(default=(), metadata=rule(expect="a list of font file paths"))
    # a decision stays up this long, then the idle screen
    hold_seconds: float = field(default=5.0, metadata=rule(_positive, expect="seconds"))


@dataclass(frozen=True)
class VenueConfig:
    """[venue]: the link between gates over an MQTT broker (off without a broker)."""

    # The venue's broker is the signed policy's [broker]; this replaces its
    # address (IP or IP:PORT), for a trial on a laptop. "" = the policy's.
    broker: str = field(default="", metadata=rule(_broker, expect="IP or IP:PORT"))
    heartbeat_seconds: float = field(default=2.0, metadata=rule(_positive, expect="seconds"))
    # clock skew allowed between two boxes in copy checks
    clock_margin_seconds: float = field(
        default=2.0, metadata=rule(at_least(0), expect="seconds")
    )
    # a peer further off is not counted on
    max_clock_offset_seconds: float = field(
        default=5.0, metadata=rule(_positive, expect="seconds")
    )
    # a peer silent this long is not counted on
    stale_seconds: float = field(default=10.0, metadata=rule(_positive, expect="seconds"))


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


@dataclass(frozen=True)
class _GpioTable(PinConfig):
    """``[gpio]``: the pins, and which pin factory drives them."""

    factory: str = Config.gpio_factory


# scanner.toml's sections: each one is read as its dataclass
SECTIONS: dict[str, type[Any]] = {
    "gate": GateConfig,
    "camera": CameraConfig,
    "gpio": _GpioTable,
    "paths": Paths,
    "clock": ClockConfig,
    "screen": ScreenConfig,
    "venue": VenueConfig,
}
GATE_SECTION_KEYS = tuple(  # the door's network is set in the door file only
    f.name for f in fields(GateConfig) if f.name not in NETWORK_KEYS
)


def _read_toml(path: Path, what: str, *, max_bytes: int = MAX_CONFIG_FILE) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read {what} {path}: {err.strerror}") from err
    try:
        return parse_toml(raw, max_bytes=max_bytes)
    except MalformedError as err:
        raise ConfigError(f"{path}: {err}") from err


def parse_config(data: Mapping[str, Any], where: str) -> Config:
    """Build a :class:`Config` from parsed ``scanner.toml`` data."""
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise ConfigError(
            f"{where}: [{unknown[0]}] is not a section (sections: {', '.join(SECTIONS)})"
        )
    tables = {name: data.get(name, {}) for name in SECTIONS}
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: [{name}] must be a table")
    try:
        gate = read(GateConfig, tables["gate"], "gate", keys=GATE_SECTION_KEYS)
        camera = read(CameraConfig, tables["camera"], "camera")
        gpio = read(_GpioTable, tables["gpio"], "gpio")
        pins = PinConfig(**{f.name: getattr(gpio, f.name) for f in fields(PinConfig)})
        chosen = pins.used()
        if len(set(chosen)) != len(chosen):
            raise ConfigError(f"gpio: two devices share a pin ({chosen})")
        screen = read(ScreenConfig, tables["screen"], "screen")
        _check_screen(screen, chosen)
        paths = read(Paths, tables["paths"], "paths")
        clock = read(ClockConfig, tables["clock"], "clock")
        venue = read(VenueConfig, tables["venue"], "venue")
        if venue.stale_seconds <= venue.heartbeat_seconds:
            raise ConfigError(
                f"venue.stale_seconds: must be longer than heartbeat_seconds "
                f"({venue.heartbeat_seconds}), or every peer looks silent"
            )
    except (MalformedError, ConfigError) as err:
        raise ConfigError(f"{where}: {err}") from err
    return Config(
        gate=replace(gate, origins={k: where for k in DOOR_KEYS if k in tables["gate"]}),
        camera=camera,
        gpio=pins,
        gpio_factory=gpio.factory,
        paths=paths,
        clock=clock,
        screen=screen,
        venue=venue,
        source=where,
    )


def _check_screen(config: ScreenConfig, pins: list[int]) -> None:
    """What one key of ``[screen]`` cannot say alone: kind against folder and pins."""
    if config.kind == "png" and config.folder is None:
        raise ConfigError('screen.folder: kind = "png" needs a folder for the frames')
    if config.kind == "luma" and config.interface == "spi":
        shared = sorted({config.gpio_dc, config.gpio_rst} & set(pins))
        if shared or config.gpio_dc == config.gpio_rst:
            raise ConfigError(
                f"screen.gpio_dc/gpio_rst: pin {shared or [config.gpio_dc]} is "
                "already used by [gpio]"
            )


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
    try:
        given = read_given(GateConfig, data, keys=DOOR_KEYS + NETWORK_KEYS)
    except MalformedError as err:
        raise ConfigError(f"{where}: {err}") from err
    if "gateway" in given:
        if "address" not in given:
            raise ConfigError(
                f"{where}: gateway: a gateway needs a static address "
                "(address = \"192.168.1.21/24\"); without one the box takes both from DHCP"
            )
        network = ipaddress.ip_interface(given["address"]).network
        if ipaddress.ip_address(given["gateway"]) not in network:
            raise ConfigError(
                f"{where}: gateway: {given['gateway']} is not on {network} "
                f"(address = {given['address']})"
            )
    return given


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
