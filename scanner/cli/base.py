"""What every ``scanner`` command shares: the group, exit codes, errors.

The ``scanner`` command is a thin shell over the library.

Each command parses its options, calls one library function and prints the
result. A :class:`~scanner.errors.ScannerError` becomes a one-line
``Error: ...`` and a non-zero exit, never a traceback.

Exit codes (every command): 0 success, 1 failure or denial, 2 usage error
(bad option, unreadable or invalid input file), 3 the gate is not fit to run
(``scanner run`` and ``scanner selftest`` faults).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from .. import __version__
from ..errors import ScannerError
from ..files import write_atomically

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_FAULT = 0, 1, 2, 3


class Failure(click.ClickException):
    """A one-line error with a chosen exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def reports_errors(exit_code: int = EXIT_FAILED) -> Callable[[F], F]:
    """Turn a ScannerError raised by a command into ``Error: ...`` and ``exit_code``."""

    def wrap(func: F) -> F:
        @wraps(func)
        def inner(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except ScannerError as err:
                raise Failure(str(err), exit_code) from err

        return inner  # type: ignore[return-value]

    return wrap


def can_ask() -> bool:
    """Whether someone at a terminal can be asked (for a passphrase)."""
    return sys.stdin.isatty()


def ask_passphrase(path: Path, *, new: bool = False) -> Callable[[], str]:
    """The passphrase of the key at ``path``, when it is needed: from
    ``SCANNER_KEY_PASSPHRASE``, else asked at the terminal (twice for a new
    key); with neither, a usage error that says how to give it."""
    from ..keyfiles import PASSPHRASE_ENV

    def ask() -> str:
        given = os.environ.get(PASSPHRASE_ENV)
        if given is not None:
            return given
        if not can_ask():
            said = (
                f"a new key at {path} is to be kept under a passphrase"
                if new
                else f"{path} is kept under a passphrase"
            )
            raise Failure(
                f"{said} and there is no terminal to ask it in; give it in {PASSPHRASE_ENV}",
                EXIT_USAGE,
            )
        text = "new passphrase for" if new else "passphrase for"
        return str(
            click.prompt(f"{text} {path}", hide_input=True, confirmation_prompt=new, err=True)
        )

    return ask


def _existing(path: Path, what: str) -> Path:
    if not path.exists():
        raise Failure(f"{what} {path} does not exist", EXIT_USAGE)
    return path


def _read_bytes(path: Path, what: str) -> bytes:
    try:
        return _existing(path, what).read_bytes()
    except OSError as err:
        raise Failure(f"cannot read {what} {path}: {err.strerror}", EXIT_USAGE) from err


def _write_atomically(out: Path, data: bytes) -> None:
    """Write a file under a temporary name and rename it: never half a file."""
    write_atomically(out, data)


def output_file(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """A click callback for a file a command will write: its folder must exist
    and take files, checked while the options are read, so nothing is signed,
    recorded in a ledger or half-written before the mistake is found (exit 2)."""
    if value is None:
        return None
    folder = value.parent
    if not folder.is_dir():
        raise click.BadParameter(
            f"the folder {str(folder)!r} does not exist: make it first (mkdir -p {folder})"
        )
    if value.is_dir():
        raise click.BadParameter(f"{str(value)!r} is a folder: give a file name in it")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise click.BadParameter(f"cannot write files in the folder {str(folder)!r}")
    return value


def _now() -> datetime:
    return datetime.now(UTC)


def _parse_at(text: str | None, timezone: str) -> datetime:
    from ..organizer.issuing import parse_time

    return _now() if text is None else parse_time(text, timezone, "--at")


def load_trust(paths: tuple[Path, ...]) -> list[Any] | None:
    """Public keys given with --trust, or None to trust the key a file carries."""
    from ..keyfiles import load_public_key

    if not paths:
        return None
    return [load_public_key(p) for p in paths]


def open_policy_file(path: Path, trust: tuple[Path, ...], *, quiet: bool = False) -> Any:
    from ..core.policy import open_policy

    data = _read_bytes(path, "policy")
    keys = load_trust(trust)
    if keys is None and not quiet:
        click.echo(
            f"note: {path} checked against the key it carries; give --trust KEY.pub "
            "to check who signed it.",
            err=True,
        )
    return open_policy(data, keys)


trust_option = click.option(
    "--trust",
    type=click.Path(path_type=Path, dir_okay=False),
    multiple=True,
    help="Organizer public key (.pub) the policy must be signed by; repeatable.",
)


# The options several commands share, declared once (each command says in its
# own words what the file is for it).


def key_option(help: str) -> Callable[[F], F]:
    """``--key``: an organizer private key, read as ``key_path``."""
    return click.option(
        "--key", "key_path", required=True, type=click.Path(path_type=Path), help=help
    )


def policy_option(help: str) -> Callable[[F], F]:
    """``--policy``: the signed event policy, read as ``policy_path``."""
    return click.option(
        "--policy",
        "policy_path",
        required=True,
        type=click.Path(path_type=Path, dir_okay=False),
        help=help,
    )


LEDGER_HELP = "Issued-serials ledger; default EVENT.issued.db beside the policy."


def ledger_option(help: str = LEDGER_HELP) -> Callable[[F], F]:
    """``--ledger``: the issued-serials ledger (default beside the policy)."""
    return click.option("--ledger", type=click.Path(path_type=Path, dir_okay=False), help=help)


def out_option(
    help: str | None = None, *, default: Path | None = None, required: bool = False
) -> Callable[[F], F]:
    """``-o/--out``: a file to write, read as ``out_path``; its folder must exist
    before anything is written (:func:`output_file`)."""
    return click.option(
        "-o",
        "--out",
        "out_path",
        required=required,
        default=default,
        show_default=default is not None,
        type=click.Path(path_type=Path, dir_okay=False),
        callback=output_file,
        help=help,
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="scanner")
def cli() -> None:
    """Backstage gate scanner: signed passes checked offline at the door.

    Organizers make keys, sign the event policy and issue passes; gates run
    the scan loop; managers merge and report the logs. Every command has
    --help. Exit codes: 0 ok, 1 failed or denied, 2 usage error, 3 gate fault.
    """
