"""The venue's commands and settings through the real CLI: a box enrolled in
the roster at set-up, and a [venue] section that is wrong stopping start-up
with the file and key named."""

from __future__ import annotations

from click.testing import CliRunner

from scanner.cli import cli
from scanner.core.policy import open_policy, sign_policy

from .conftest import EXAMPLE_POLICY, SIGNED_AT


def scanner(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def box_config(tmp_path, venue=""):
    config = tmp_path / "scanner.toml"
    config.write_text(
        f'[gate]\nid = "artist-out"\ndoor = "artist-entrance"\ndirection = "exit"\n'
        f'door_file = ""\n[paths]\ndevice_key = "{tmp_path / "var" / "device.key"}"\n' + venue
    )
    return config


def test_a_box_enrolled_at_set_up_is_on_the_signed_roster(tmp_path, organizer_key):
    result = scanner("venue", "enrol", "--config", box_config(tmp_path))
    assert result.exit_code == 0, result.output
    assert result.output.startswith("[gates.artist-out]\n")
    assert 'door = "artist-entrance"\ndirection = "exit"\n' in result.output
    device_pub = (tmp_path / "var" / "device.pub").read_text().split()[0]
    assert f'device_key = "{device_pub}"' in result.output  # the key the box made, public half
    assert "PRIVATE" not in result.output
    again = scanner("venue", "enrol", "--config", box_config(tmp_path))
    assert again.output == result.output  # the same key every time: never a new one
    policy = open_policy(
        sign_policy(EXAMPLE_POLICY.read_text() + "\n" + result.output, organizer_key, SIGNED_AT),
        [organizer_key.public_key()],
    )
    assert policy.gates["artist-out"].device_key == device_pub


def test_a_wrong_venue_setting_names_its_file_and_key(tmp_path):
    for venue, says in (
        ('[venue]\nbroker = "host/evil:1883"\n', "venue.broker"),
        ('[venue]\nbroker = "broker:99999"\n', "venue.broker"),
        ('[venue]\nheartbeat_seconds = 5\nstale_seconds = 5\n', "venue.stale_seconds"),
        ('[venue]\nbrokers = "x"\n', "venue.brokers: unknown key"),
    ):
        result = scanner("venue", "enrol", "--config", box_config(tmp_path, venue))
        assert result.exit_code == 2, result.output
        assert result.output.startswith("Error: ") and says in result.output
        assert str(tmp_path / "scanner.toml") in result.output
