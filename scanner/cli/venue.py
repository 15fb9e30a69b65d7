"""The venue's commands: the security chief's live view, and enrolling a box
in the signed roster so its peers believe what it shares."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import ScannerError
from .base import EXIT_USAGE, Failure, _now, cli, open_policy_file, trust_option


@cli.command()
@click.option(
    "--policy",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The signed event policy: its roster says which boxes to believe, its [broker] "
    "where the broker is and which CA signed its certificate.",
)
@trust_option
@click.option(
    "--login",
    "login_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The live view's read-only broker login (live.login, written by scanner venue "
    "broker-config). Needed when the policy names a broker.",
)
@click.option(
    "--broker",
    help="Reach the broker at this IP or IP:PORT instead of the policy's address (say, "
    "127.0.0.1 on the laptop that runs it). Needed when the policy names no broker.",
)
@click.option(
    "--listen",
    default="127.0.0.1",
    show_default=True,
    help="Address the page is served on. Only this laptop by default; 0.0.0.0 "
    "shows it to the whole LAN (serials and movements, never names). Beyond "
    "127.0.0.1, ::1 and localhost the page asks for a token made at start: open "
    "the address printed, which carries it.",
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
    policy: Path,
    trust: tuple[Path, ...],
    login_file: Path | None,
    broker: str | None,
    listen: str,
    port: int,
    names: tuple[str, ...],
) -> None:
    """Serve the security chief's live view of the venue.

    Listens to every gate through the venue's broker (TLS, with the event's
    CA from the signed policy, and the live view's read-only login),
    checking each message against the signed roster as a gate does, and
    serves a page on this laptop: people inside each zone against its
    capacity, the last scans and denials at each door, suspected copies as
    they happen, and each gate's health (heartbeat, phase, faults, clock
    offset, last frame). The page updates itself (server-sent events) and
    loads nothing from anywhere. Ctrl-C stops it.

    Served beyond this laptop (--listen other than 127.0.0.1, ::1 or
    localhost), every request must carry a random token made at start: the
    address printed first has it (?token=...), and the page keeps it in a
    cookie. Event streams are capped at 8 per screen's address and 64 in
    all (more get HTTP 429), and a stream ends when its screen stops
    reading or after 5 minutes (the page reconnects by itself).

    \b
    Exit codes: 0 stopped with Ctrl-C; 2 a bad policy, login or address.
    """
    try:
        import uvicorn
    except ImportError as err:
        raise Failure(
            "the live view needs starlette and uvicorn: pip install 'backstage-scanner[live]' "
            "(scripts/bootstrap installs them)",
            EXIT_USAGE,
        ) from err
    from ..core.policy import parse_broker_address
    from ..venue.broker import read_login, tls_context
    from ..venue.bus import PahoBus
    from ..venue.live import ANY_ADDRESS, LiveState, live_app, page_hosts, page_token
    from ..venue.messages import observer_id

    try:
        verified = open_policy_file(policy, trust)
        plan = verified.broker
        if broker:
            host, broker_port = parse_broker_address(broker, "--broker")
        elif plan is not None:
            host, broker_port = plan.host, plan.port
        else:
            raise Failure(
                "the policy names no broker ([broker] address and ca); give --broker IP:PORT "
                "for an open one",
                EXIT_USAGE,
            )
        tls = login = None
        if plan is not None:
            if login_file is None:
                raise Failure(
                    "the policy's broker takes logins: give --login live.login "
                    "(scanner venue broker-config writes it)",
                    EXIT_USAGE,
                )
            tls, login = tls_context(plan.ca_pem), read_login(login_file)
    except ScannerError as err:
        raise Failure(str(err).removeprefix(": "), EXIT_USAGE) from err
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
    bus = PahoBus(host, broker_port, client_id=observer_id(), tls=tls, login=login)
    state = LiveState(verified, bus)
    token = page_token(listen)
    app = live_app(state, hosts=hosts, token=token)
    state.start()
    shown = "127.0.0.1" if listen in ANY_ADDRESS else listen
    shown = f"[{shown}]" if ":" in shown else shown
    query = f"?token={token}" if token else ""
    click.echo(f"live view of {verified.name}: http://{shown}:{port}/{query} (Ctrl-C to stop)")
    if listen in ANY_ADDRESS:
        click.echo(
            f"on the LAN it answers to: {', '.join(hosts)} "
            "(another name the screens use: --name HOST)"
        )
    if token:
        click.echo(
            f"each screen opens the page once with {query} (a cookie keeps it); "
            "without the token it answers 401"
        )
    try:
        # Open streams end at once on Ctrl-C (each would otherwise hold the
        # shutdown up to its 5-minute limit).
        uvicorn.run(app, host=listen, port=port, log_level="warning",
                    timeout_graceful_shutdown=2)
    finally:
        state.close()


@cli.group()
def venue() -> None:
    """Gates that share what they see: the event's broker, and each box's
    place on the policy's roster.

    \b
    On the organizer's laptop:
      scanner venue ca --out keys --address 192.168.1.10
          the event's broker CA; paste the [broker] table it prints into the policy
      scanner venue broker-config --policy event.policy --trust keys/organizer.pub \\
          --ca-key keys/broker-ca.key --out broker
          mosquitto's files from the signed roster; then: mosquitto -c broker/mosquitto.conf
    On each box, at set-up:
      scanner venue enrol
          the box's [gates.ID] entry (door, direction, device key, broker login)

    A gate joins the venue when the signed policy names the broker ([broker]):
    it talks TLS only, to a broker whose certificate the event's CA signed, and
    logs in as itself; its peers believe it only when the roster lists its key.
    """


@venue.command()
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder for broker-ca.key (private, mode 0600) and broker-ca.pem.",
)
@click.option(
    "--address",
    help="The broker's IP (and port, 8883 by default) on the venue's LAN, for the "
    "[broker] table printed. Fill it in later if not known yet.",
)
@click.option("--name", default="event", show_default=True, help="A name for the CA.")
@click.option(
    "--force", is_flag=True, help="Replace an existing CA (every box's policy must change)."
)
@click.option(
    "--passphrase",
    is_flag=True,
    help="Keep the CA key under a passphrase (asked twice, or read from "
    "SCANNER_KEY_PASSPHRASE; at least 12 characters and hard to guess, as for "
    "keygen); broker-config asks for it.",
)
def ca(out_dir: Path, address: str | None, name: str, force: bool, passphrase: bool) -> None:
    """Make the event's broker CA, and print the policy's [broker] table.

    The CA signs the broker's TLS certificate (scanner venue broker-config);
    its certificate goes into the signed policy, so every gate learns it from
    the document it already trusts and refuses a broker without it. The CA's
    private key stays on the organizer's laptop, like the signing key.

    \b
    Exit codes: 0 made; 2 the CA exists (use --force), a bad address or passphrase.
    """
    from ..core.policy import parse_broker_address
    from ..keyfiles import write_secret_file
    from ..venue.broker import make_ca
    from .base import ask_passphrase

    key_path, cert_path = out_dir / "broker-ca.key", out_dir / "broker-ca.pem"
    try:
        shown = '"192.168.1.10:8883"  # the broker\'s IP on the venue LAN: fill in'
        if address:
            host, port = parse_broker_address(address, "--address")
            shown = f'"[{host}]:{port}"' if ":" in host else f'"{host}:{port}"'
        if cert_path.exists() and not force:
            raise Failure(f"{cert_path} already exists. Use --force to replace it.", EXIT_USAGE)
        secret = ask_passphrase(key_path, new=True)() if passphrase else None
        key_pem, cert_pem = make_ca(name, _now())
        write_secret_file(key_path, key_pem, force=force, passphrase=secret)
        cert_path.write_bytes(cert_pem)
    except ScannerError as err:
        raise Failure(str(err).removeprefix(": "), EXIT_USAGE) from err
    click.echo(
        f"wrote {key_path} (private: keep it with the organizer key) and {cert_path}", err=True
    )
    click.echo("paste this into the event policy's TOML, then sign it:", err=True)
    click.echo("")
    click.echo("[broker]")
    click.echo(f"address = {shown}")
    click.echo('ca = """')
    click.echo(cert_pem.decode("ascii").strip())
    click.echo('"""')


@venue.command("broker-config")
@click.option(
    "--policy",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The signed event policy: its roster gives the boxes and their logins.",
)
@trust_option
@click.option(
    "--ca-key",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The event's broker CA key (scanner venue ca), to sign the broker's certificate.",
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder for mosquitto.conf and its files (made if missing; mode 0700).",
)
@click.option(
    "--listen",
    help="Bind mosquitto to this IP and/or port (IP, IP:PORT or :PORT) instead of every "
    "address and the policy's port.",
)
def broker_config(
    policy: Path, trust: tuple[Path, ...], ca_key: Path, out_dir: Path, listen: str | None
) -> None:
    """Write everything the laptop's mosquitto needs, from the signed roster.

    A TLS listener with a certificate for the policy's broker address signed
    by the event's CA, a password file with each roster box's login (the
    hash its enrolment printed) and the live view's, and an ACL: each box
    writes only its own topics, the live view only reads. Run it again after
    every new policy: a box taken off the roster loses its login. Then:

    \b
        mosquitto -c OUT/mosquitto.conf
        scanner live --policy event.policy --trust keys/organizer.pub --login OUT/live.login

    \b
    Exit codes: 0 written; 2 a bad policy, CA key or listen address.
    """
    from ..keyfiles import read_secret_file
    from ..venue.broker import write_broker_config
    from .base import ask_passphrase

    try:
        verified = open_policy_file(policy, trust)
        host, port = _listen_address(listen) if listen else (None, None)
        key_pem = read_secret_file(ca_key, ask_passphrase(ca_key))
        files = write_broker_config(verified, key_pem, out_dir, listen=(host, port), now=_now())
    except ScannerError as err:
        raise Failure(str(err).removeprefix(": "), EXIT_USAGE) from err
    except OSError as err:
        raise Failure(f"cannot write {out_dir}: {err.strerror}", EXIT_USAGE) from err
    click.echo(
        f"mosquitto for {verified.event}: {len(files.boxes)} boxes with a login "
        f"({', '.join(files.boxes) or 'none'}), listening on {files.listen[0]}:{files.listen[1]}"
    )
    if files.without_login:
        click.echo(
            f"no login for: {', '.join(files.without_login)} (their roster entries have no "
            "broker_password_hash: run scanner venue enrol on each and sign the policy again)",
            err=True,
        )
    click.echo(f"start it:       mosquitto -c {files.config}")
    click.echo(
        f"the live view:  scanner live --policy {policy} --login {files.live_login}"
        + "".join(f" --trust {t}" for t in trust)
    )


def _listen_address(text: str) -> tuple[str | None, int | None]:
    """``IP``, ``IP:PORT``, ``[IPv6]:PORT`` or ``:PORT``: what was given of each."""
    from ..core.policy import parse_broker_address

    if text.startswith(":"):
        return None, parse_broker_address(f"127.0.0.1{text}", "--listen")[1]
    host, port = parse_broker_address(text, "--listen")
    if text.startswith("["):
        return host, port if text.rsplit("]", 1)[-1].startswith(":") else None
    return host, port if text.count(":") == 1 else None


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
    direction, device key (made now if the box has none yet) and the hash of
    its broker login, to paste into the event policy's TOML before it is
    signed. Only public values are printed: the private key never leaves the
    box, and the login's password is made from it when the box connects.
    """
    from ..core.keys import public_key_text
    from ..gate.config import load_config
    from ..keyfiles import load_or_create_device_key
    from ..venue.broker import enrolment_hash

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
    click.echo(f'broker_password_hash = "{enrolment_hash(key, gate.id)}"')
