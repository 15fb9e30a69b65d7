"""The venue's commands: the security chief's live view, and enrolling a box
in the signed roster so its peers believe what it shares."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import ScannerError
from .base import EXIT_USAGE, Failure, cli, open_policy_file, trust_option


@cli.command()
@click.option(
    "--broker",
    required=True,
    help="The venue's MQTT broker: HOST or HOST:PORT (mosquitto, port 1883 by default).",
)
@click.option(
    "--policy",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The signed event policy: its roster says which boxes to believe.",
)
@trust_option
@click.option(
    "--listen",
    default="127.0.0.1",
    show_default=True,
    help="Address the page is served on. Only this laptop by default; 0.0.0.0 "
    "shows it to the whole LAN (serials and movements, never names).",
)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--name",
    "names",
    multiple=True,
    metavar="HOST",
    help="Another name or address the crew's screens use for this laptop (repeatable). "
    "The page answers only to the names it knows (its own, and with 0.0.0.0 the "
    "laptop's host name and LAN address), so no web page elsewhere can read it.",
)
def live(
    broker: str,
    policy: Path,
    trust: tuple[Path, ...],
    listen: str,
    port: int,
    names: tuple[str, ...],
) -> None:
    """Serve the security chief's live view of the venue.

    Listens to every gate through the venue's broker, checking each message
    against the signed roster as a gate does, and serves a page on this
    laptop: people inside each zone against its capacity, the last scans and
    denials at each door, suspected copies as they happen, and each gate's
    health (heartbeat, phase, faults, clock offset, last frame). The page
    updates itself (server-sent events) and loads nothing from anywhere.
    Ctrl-C stops it.
    """
    try:
        import uvicorn
    except ImportError as err:
        raise Failure(
            "the live view needs starlette and uvicorn: pip install 'backstage-scanner[live]' "
            "(scripts/bootstrap installs them)",
            EXIT_USAGE,
        ) from err
    from ..venue.bus import PahoBus, parse_broker
    from ..venue.live import ANY_ADDRESS, LiveState, live_app, page_hosts
    from ..venue.messages import observer_id

    try:
        verified = open_policy_file(policy, trust)
        host, broker_port = parse_broker(broker)
    except ScannerError as err:
        raise Failure(str(err), EXIT_USAGE) from err
    if not verified.gates or not any(p.device_key for p in verified.gates.values()):
        click.echo(
            "note: the policy's roster names no device keys, so no gate's messages can be "
            "believed; add each box's key (scanner venue enrol) and sign the policy again.",
            err=True,
        )
    try:
        hosts = page_hosts(listen, broker=(host, broker_port), names=names)
    except ScannerError as err:
        raise Failure(str(err), EXIT_USAGE) from err
    state = LiveState(verified, PahoBus(host, broker_port, client_id=observer_id()))
    app = live_app(state, hosts=hosts)
    state.start()
    shown = "127.0.0.1" if listen in ANY_ADDRESS else listen
    click.echo(f"live view of {verified.name}: http://{shown}:{port}/ (Ctrl-C to stop)")
    if listen in ANY_ADDRESS:
        click.echo(
            f"on the LAN it answers to: {', '.join(hosts)} "
            "(another name the screens use: --name HOST)"
        )
    try:
        uvicorn.run(app, host=listen, port=port, log_level="warning")
    finally:
        state.close()


@cli.group()
def venue() -> None:
    """Gates that share what they see: enrol a box in the policy's roster.

    A gate shares its scans over the venue's MQTT broker when scanner.toml
    has [venue] broker = "HOST:PORT"; its peers believe it only when the
    signed policy's roster lists its device key.
    """


@venue.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Config file [default: /etc/scanner/scanner.toml if present].",
)
def enrol(config_path: Path | None) -> None:
    """Print this box's roster entry for the organizer's policy.

    Run on the box at set-up: prints a [gates.ID] table with its door,
    direction and device key (made now if the box has none yet), to paste
    into the event policy's TOML before it is signed. Only the public key is
    printed; the private one never leaves the box.
    """
    from ..core.keys import public_key_text
    from ..gate.config import load_config
    from ..transfer.export import load_or_create_device_key

    try:
        config = load_config(config_path, require_zone=False)
        key = load_or_create_device_key(config.paths.device_key)
    except ScannerError as err:
        raise Failure(str(err), EXIT_USAGE) from err
    except OSError as err:
        raise Failure(f"cannot make the device key: {err.strerror}") from err
    gate = config.gate
    click.echo(f"[gates.{gate.id}]")
    if gate.door:
        click.echo(f'door = "{gate.door}"')
    elif gate.zone:
        click.echo(f'zone = "{gate.zone}"')
    click.echo(f'direction = "{gate.direction.value}"')
    click.echo(f'device_key = "{public_key_text(key.public_key())}"')
