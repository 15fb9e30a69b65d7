"""The manager's commands: verify, merge and report gate exports."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from .base import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Failure,
    ask_passphrase,
    cli,
    open_policy_file,
    output_file,
    reports_errors,
    trust_option,
)

# -- the manager's laptop -----------------------------------------------------


@cli.group()
def logs() -> None:
    """Check, merge and report gate exports on the manager's laptop."""


known_gates_option = click.option(
    "--known-gates",
    type=click.Path(path_type=Path, exists=True),
    help="Folder (or file) of the gates' device.pub files, as collected from the boxes "
    "(/var/lib/scanner/device.pub): exports must be signed by one of these keys. Name each "
    "file after its gate (artist-in.pub): that binds the key to that gate id; several lines "
    "in one file are several boxes of that gate (a spare). Matched by key, never by a "
    "label inside a file.",
)


def roster_options(func: Any) -> Any:
    """--policy and --trust: the signed roster names each gate and its keys."""
    func = click.option(
        "--trust",
        "roster_trust",
        type=click.Path(path_type=Path, dir_okay=False),
        multiple=True,
        help="Organizer public key (.pub) the --policy must be signed by; repeatable.",
    )(func)
    return click.option(
        "--policy",
        "roster_policy",
        type=click.Path(path_type=Path, dir_okay=False, exists=True),
        help="The signed event policy: its roster ([gates.ID] device_key and "
        "former_device_keys) says which key may sign for which gate. The best source of "
        "gate identity: signed by the organizer, not collected from boxes.",
    )(func)
identity_option = click.option(
    "--identity",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="The manager's age key (from scanner keygen --manager) that decrypts encrypted "
    "exports, in memory.",
)


def _plural(n: int, word: str) -> str:
    from ..words import plural

    return plural(n, word)


def _inputs(
    exports: tuple[Path, ...],
    known_gates: Path | None,
    identity: Path | None,
    policy: Path | None = None,
    trust: tuple[Path, ...] = (),
) -> tuple[list[Path], Any, tuple[str, ...]]:
    from ..keyfiles import load_age_identities
    from ..manager.merge import combine_known, find_exports, load_known_gates
    from ..transfer.export import known_gates_from_policy
    from .base import open_policy_file

    known = load_known_gates(known_gates) if known_gates else None
    if policy is not None:
        roster = known_gates_from_policy(open_policy_file(policy, trust))
        if not roster.keys:
            raise Failure(
                f"{policy}: its roster names no device keys ([gates.ID] device_key); give "
                "--known-gates, or add the boxes' keys (scanner venue enrol) and sign it again",
                EXIT_USAGE,
            )
        known = roster if known is None else combine_known(roster, known)
    identities = load_age_identities(identity, ask_passphrase(identity)) if identity else ()
    folders = find_exports(exports)
    if not folders:
        raise Failure("no exports found (folders holding manifest.json)", EXIT_USAGE)
    if known is None:
        click.echo(
            "note: no --policy or --known-gates given: each export is checked only against "
            "the key it carries, which anybody can make",
            err=True,
        )
    return folders, known, identities


@logs.command("verify")
@click.argument("exports", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True))
@roster_options
@known_gates_option
@identity_option
@reports_errors(EXIT_USAGE)
def logs_verify(
    exports: tuple[Path, ...],
    roster_policy: Path | None,
    roster_trust: tuple[Path, ...],
    known_gates: Path | None,
    identity: Path | None,
) -> None:
    """Say whether each export is intact and signed by a known gate.

    Checks the manifest's signature, each file's size and SHA-256, the
    database's exact schema, every row (its gate, its event, its types), both
    hash chains from their first row, and that they end where the gate's
    signed summary says, with its counts and time range. An encrypted export
    needs --identity for its rows to be checked: its summary is sealed too,
    so without it no count or time is shown.
    Exits 1 if any export is broken, signed by a gate not in --known-gates,
    or could not be checked completely.
    """
    from ..transfer.export import verify_export
    from ..transfer.untrusted import shown

    folders, known, identities = _inputs(
        exports, known_gates, identity, roster_policy, roster_trust
    )
    counts = {"intact": 0, "broken": 0, "unknown": 0, "unchecked": 0}
    for folder in folders:
        check = verify_export(folder, known, identities)
        click.echo(f"{shown(folder, 300)}: {check.describe()}")
        if not check.intact:
            counts["broken"] += 1
        elif check.known_gate is False:
            counts["unknown"] += 1
        elif not check.rows_checked:
            counts["unchecked"] += 1
        else:
            counts["intact"] += 1
    click.echo(
        f"{_plural(len(folders), 'export')}: {counts['intact']} intact, "
        f"{counts['broken']} broken, {counts['unknown']} from unknown gates, "
        f"{counts['unchecked']} not checked (encrypted)"
    )
    sys.exit(EXIT_OK if counts["intact"] == len(folders) else EXIT_FAILED)


@logs.command("merge")
@click.argument("exports", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True))
@click.option(
    "-o",
    "--out",
    "out_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    callback=output_file,
    help="Merged SQLite file.",
)
@roster_options
@known_gates_option
@click.option(
    "--allow-unknown-gates",
    is_flag=True,
    help="Also merge exports signed by keys not in --known-gates, marked as such "
    "(gates.known = 0).",
)
@identity_option
@reports_errors(EXIT_USAGE)
def logs_merge(
    exports: tuple[Path, ...],
    out_path: Path,
    roster_policy: Path | None,
    roster_trust: tuple[Path, ...],
    known_gates: Path | None,
    allow_unknown_gates: bool,
    identity: Path | None,
) -> None:
    """Merge gate exports into one SQLite file; what fails a check is reported, not merged.

    EXPORTS are export folders or folders holding them (a stick's
    scanner-logs). Each is checked as scanner logs verify does; only the
    bytes that were checked are merged (copied once, as a stream, into a
    private folder beside the output). Which key may sign for which gate
    comes from --policy (the signed roster: a gate's device_key and the keys
    of boxes it had before, former_device_keys) and/or --known-gates (files
    named after their gate). Not merged: a broken export, one signed by a key
    the manager does not know (refused before anything but its manifest is
    read, unless --allow-unknown-gates), one naming a gate its key is not
    bound to, an encrypted one without --identity, and one holding a row
    whose id is already merged with other contents (a conflict, recorded in
    the conflicts table). Every row says which box signed it (the box column;
    the boxes table lists each gate's boxes). Running it again, or with
    overlapping exports, changes nothing; a merge that merges nothing leaves
    no file. The result opens as-is in Datasette and sqlite-utils.

    \b
    Exit codes: 0 everything merged; 1 something was not merged (said why);
    2 bad input (no exports, a bad key file or policy).
    """
    from ..manager.merge import merge_exports
    from ..transfer.untrusted import shown

    if allow_unknown_gates and known_gates is None and roster_policy is None:
        raise Failure("--allow-unknown-gates needs --policy or --known-gates", EXIT_USAGE)
    folders, known, identities = _inputs(
        exports, known_gates, identity, roster_policy, roster_trust
    )
    with click.progressbar(
        length=len(folders), label="Checking and merging", file=sys.stderr
    ) as bar:
        report = merge_exports(
            folders,
            out_path,
            known_gates=known,
            allow_unknown_gates=allow_unknown_gates,
            identities=identities,
            progress=lambda check: bar.update(1),
        )
    for check in report.merged:
        if check.known_gate is False:
            click.echo(
                f"merged, MARKED as from an unknown gate: {shown(check.folder, 300)}: "
                f"{check.describe()}"
            )
    for check in report.not_merged:
        click.echo(f"NOT MERGED {shown(check.folder, 300)}: {check.describe()}")
    conflicts = f"; {_plural(report.conflicts, 'conflict')} recorded" if report.conflicts else ""
    click.echo(
        f"merged {_plural(len(report.merged), 'export')} ({_plural(report.new_rows, 'new scan')}, "
        f"{_plural(report.new_events, 'new gate event')}) into {out_path}; "
        f"{len(report.not_merged)} not merged{conflicts}"
    )
    sys.exit(EXIT_OK if report.ok else EXIT_FAILED)


@logs.command("report")
@click.argument("merged", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option(
    "-o",
    "--out",
    "out_path",
    type=click.Path(path_type=Path, dir_okay=False),
    callback=output_file,
    help="The HTML report to write.",
)
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(path_type=Path, dir_okay=False),
    callback=output_file,
    help="Also write every scan as CSV, with a suspected_copy column.",
)
@click.option(
    "--policy",
    "policy_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The signed event policy: its venue (which zone sits inside which, the doors, "
    "the walks between them) places people and judges copies; its time zone is the page's.",
)
@trust_option
@click.option(
    "--walk-minutes",
    type=click.FloatRange(0),
    help="Minutes a person needs between two doors the policy gives no walk for "
    "(without --policy: between any two gates; default 2). 0 turns the copy check off.",
)
@click.option(
    "--tz",
    help="Show times in this time zone (e.g. Europe/Berlin); default the event's "
    "(from --policy), else UTC.",
)
@reports_errors(EXIT_USAGE)
def logs_report(
    merged: Path,
    out_path: Path | None,
    csv_path: Path | None,
    policy_path: Path | None,
    trust: tuple[Path, ...],
    walk_minutes: float | None,
    tz: str | None,
) -> None:
    """Turn a merged log into one self-contained HTML page (and a CSV).

    The page answers: who was inside a zone at any time (a time control and
    a zone chooser; a zone counts the zones within it), who is inside now
    (people, counted once), one pass's whole path across doors, passes seen
    at two doors closer in time than a person can walk (suspected copies),
    entries per hour per zone and per gate, denials by reason, revoked and
    forged attempts, and a table of scans that can be filtered. It opens
    offline in any browser. Give --policy so nested zones, doors and walks
    are known; without it, gates at different doors are --walk-minutes apart.
    """
    from ..manager.report import REPORT_STEPS, write_csv, write_report

    if out_path is None and csv_path is None:
        raise Failure("give -o report.html, --csv scans.csv, or both", EXIT_USAGE)
    if trust and policy_path is None:
        raise Failure("--trust checks the policy: give --policy event.policy too", EXIT_USAGE)
    policy = open_policy_file(policy_path, trust) if policy_path is not None else None
    walk_seconds = None if walk_minutes is None else walk_minutes * 60
    if out_path is not None:
        with click.progressbar(
            length=len(REPORT_STEPS), label="Reading the log", file=sys.stderr
        ) as bar:
            write_report(
                merged,
                out_path,
                policy=policy,
                walk_seconds=walk_seconds,
                tz=tz,
                progress=lambda _step: bar.update(1),
            )
        click.echo(f"report: {out_path}")
    if csv_path is not None:
        rows = write_csv(merged, csv_path, policy=policy, walk_seconds=walk_seconds)
        click.echo(f"csv: {'1 scan' if rows == 1 else f'{rows:,} scans'} -> {csv_path}")
