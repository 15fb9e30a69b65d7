"""Configuration: the shipped files load, the door file wins over the config,
flags win over both, and every mistake names its file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from scanner.core.decision import Direction
from scanner.errors import ConfigError
from scanner.gate.config import load_config, parse_config, read_door_file

from .conftest import ROOT

SHIPPED = ROOT / "config" / "scanner.toml"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def config_with(tmp_path, text: str, door: str | None = None) -> Path:
    door_path = tmp_path / "gate.toml"
    if door is not None:
        door_path.write_text(door)
    return write(tmp_path, "scanner.toml", f'[gate]\ndoor_file = "{door_path}"\n' + text)


def test_the_shipped_config_loads_with_a_zone(tmp_path):
    config = load_config(SHIPPED, zone="backstage")
    assert config.camera.source == "v4l2:/dev/video0"
    assert config.gpio.green == 17
    assert config.paths.db == Path("/var/lib/scanner/scans.db")


def test_the_shipped_door_file_is_a_template_every_line_of_which_is_valid(tmp_path):
    template = (ROOT / "config" / "gate.toml").read_text()
    assert read_door_file(ROOT / "config" / "gate.toml") == {}  # nothing set: no door yet
    filled = tmp_path / "gate.toml"
    filled.write_text(
        template.replace("\n# id", "\nid")
        .replace("\n# zone", "\nzone")
        .replace("\n# direction", "\ndirection")
        .replace("\n# timezone", "\ntimezone")
    )
    assert set(read_door_file(filled)) == {"id", "zone", "direction", "timezone"}


def test_an_unedited_door_file_leaves_the_gate_without_a_zone(tmp_path):
    path = config_with(tmp_path, "", door=(ROOT / "config" / "gate.toml").read_text())
    with pytest.raises(ConfigError, match="which zone does this door lead into"):
        load_config(path)


def test_the_door_file_overrides_the_config_and_flags_override_both(tmp_path):
    path = config_with(
        tmp_path,
        'id = "from-config"\nzone = "stage"\n',
        door='id = "stage-left"\nzone = "backstage"\ndirection = "exit"\n',
    )
    config = load_config(path)
    assert (config.gate.id, config.gate.zone, config.gate.direction) == (
        "stage-left",
        "backstage",
        Direction.EXIT,
    )
    config = load_config(path, zone="green-room", gate="spare")
    assert (config.gate.id, config.gate.zone) == ("spare", "green-room")


def test_flags_alone_need_no_config_file(tmp_path, monkeypatch):
    monkeypatch.setattr("scanner.gate.config.DEFAULT_CONFIG", tmp_path / "absent.toml")
    config = load_config(
        None,
        zone="backstage",
        policy=tmp_path / "p",
        db=tmp_path / "d.db",
        camera="file:/x",
        gpio="mock",
        trust=[tmp_path / "k.pub"],
    )
    assert config.camera.source == "file:/x" and config.gpio_factory == "mock"
    assert config.paths.trust == (tmp_path / "k.pub",)
    assert config.paths.initial_policy is None


def test_no_zone_anywhere_is_an_error_that_says_where_to_set_it(tmp_path, monkeypatch):
    monkeypatch.setattr("scanner.gate.config.DEFAULT_CONFIG", tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match=r"gate\.zone.*--zone"):
        load_config(None)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[gpio]\ngreen = 40\n", "gpio.green: 40 is not a BCM pin number"),
        ('[gpio]\ngreen = "seventeen"\n', "gpio.green: expected int"),
        ("[gpio]\ngreen = 17\nred = 17\n", "two devices share a pin"),
        ('[camera]\nsource = "usb0"\n', "camera.source:"),
        ('[camera]\ndecoder = "opencv"\n', "camera.decoder: 'opencv' is not a decoder"),
        ("[camera]\nhold_off_seconds = 0\n", "camera.hold_off_seconds: 0.0 must be more than 0"),
        ('[clock]\nuntrusted = "allow"\n', "clock.untrusted: 'allow' is not deny"),
        ("[camera]\nholdoff = 2\n", "camera.holdoff: unknown key"),
        ("[gate]\nzone = 'Back Stage'\n", "gate.zone: 'Back Stage' is not a zone id"),
        ("[cameras]\n", "[cameras] is not a section"),
        ("[gpio\n", "not valid TOML"),
    ],
)
def test_a_bad_config_names_the_key_and_the_problem(tmp_path, text, message):
    path = write(tmp_path, "scanner.toml", text)
    with pytest.raises(ConfigError) as err:
        load_config(path, zone="backstage")
    assert message in str(err.value)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('zone = "backstage"\ncommand = "rm -rf /"\n', "command: unknown key"),
        ('direction = "sideways"\n', "direction: 'sideways' is not entry or exit"),
        ('timezone = "Mars/Olympus"\n', "unknown time zone"),
        ('id = "../../etc"\n', "is not a gate id"),
        ("x" * 5000, "at most 4096"),
    ],
)
def test_the_door_file_is_strict(tmp_path, text, message):
    path = config_with(tmp_path, "", door=text)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_config(path)


def test_a_door_file_that_is_a_symlink_is_refused(tmp_path):
    target = write(tmp_path, "elsewhere.toml", 'zone = "stage"\n')
    link = tmp_path / "gate.toml"
    link.symlink_to(target)
    with pytest.raises(ConfigError, match="not a regular file"):
        read_door_file(link)


def test_parse_config_defaults_are_complete():
    config = parse_config({}, "empty")
    assert config.gate.anti_passback is True
    assert config.clock.untrusted.value == "deny"
