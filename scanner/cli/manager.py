"""The manager's commands: verify, merge and report gate exports."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .base import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Failure,
    cli,
    open_policy_file,
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
    help="Folder (or file) of gate device.pub files: exports must be signed by these.",
)


@logs.command("verify")
@click.argument("exports", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True))
@known_gates_option
@reports_errors(EXIT_USAGE)
def logs_verify(exports: tuple[Path, ...], known_gates: Path | None) -> None:
    """Say whether each export is intact and signed by a known gate.

    Checks the manifest's signature, each file's SHA-256, the hash chain from
    its first row, and that the log ends where the manifest says. Exits 1 if
    any export is broken or signed by an unknown gate.
    """
    from ..manager.merge import find_exports, load_known_gates
    from ..transfer.export import verify_export

    known = load_known_gates(known_gates) if known_gates else None
    folders = find_exports(exports)
    if not folders:
        raise Failure("no exports found (folders holding manifest.json)", EXIT_USAGE)
    bad = 0
    for folder in folders:
        check = verify_export(folder, known)
        click.echo(f"{folder}: {check.describe()}")
        bad += (not check.intact) or check.known_gate is False
    sys.exit(EXIT_FAILED if bad else EXIT_OK)


@logs.command("merge")
@click.argument("exports", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True))
@click.option(
    "-o",
    "--out",
    "out_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Merged SQLite file.",
)
@known_gates_option
@reports_errors(EXIT_USAGE)
def logs_merge(exports: tuple[Path, ...], out_path: Path, known_gates: Path | None) -> None:
    """Merge gate exports into one SQLite file; broken ones are reported, not merged.

    EXPORTS are export folders or folders holding them (a stick's
    scanner-logs). Running it again, or with overlapping exports, changes
    nothing. The result opens as-is in Datasette and sqlite-utils. Exits 1
    if any export was broken.
    """
    from ..manager.merge import find_exports, load_known_gates, merge_exports

    known = load_known_gates(known_gates) if known_gates else None
    folders = find_exports(exports)
    if not folders:
        raise Failure("no exports found (folders holding manifest.json)", EXIT_USAGE)
    with click.progressbar(
        length=len(folders), label="Checking and merging", file=sys.stderr
    ) as bar:
        report = merge_exports(
            folders, out_path, known_gates=known, progress=lambda check: bar.update(1)
        )
    for check in report.broken:
        click.echo(f"NOT MERGED {check.folder}: {check.describe()}")
    click.echo(
        f"merged {len(report.merged)} exports ({report.new_rows} new scans) into "
        f"{out_path}; {len(report.broken)} broken"
    )
    sys.exit(EXIT_OK if report.ok else EXIT_FAILED)


@logs.command("report")
@click.argument("merged", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option(
    "-o",
    "--out",
    "out_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The HTML report to write.",
)
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(path_type=Path, dir_okay=False),
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
