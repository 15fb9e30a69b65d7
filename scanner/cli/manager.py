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
    reports_errors,
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
    "--walk-minutes",
    default=2.0,
    show_default=True,
    type=click.FloatRange(0),
    help="A pass seen at two gates closer in time than this is a suspected copy (0: off).",
)
@click.option("--tz", help="Show times in this time zone (e.g. Europe/Berlin); default UTC.")
@reports_errors(EXIT_USAGE)
def logs_report(
    merged: Path, out_path: Path | None, csv_path: Path | None, walk_minutes: float, tz: str | None
) -> None:
    """Turn a merged log into one self-contained HTML page (and a CSV).

    Entries per hour per zone and per gate, denials by reason, who is inside
    now per zone, passes seen at two gates closer in time than a person can
    walk (suspected copies), revoked and forged attempts, and a table of scans
    that can be filtered. Opens offline in any browser.
    """
    from ..manager.report import write_csv, write_report

    if out_path is None and csv_path is None:
        raise Failure("give -o report.html, --csv scans.csv, or both", EXIT_USAGE)
    if out_path is not None:
        write_report(merged, out_path, walk_seconds=walk_minutes * 60, tz=tz)
        click.echo(f"report: {out_path}")
    if csv_path is not None:
        rows = write_csv(merged, csv_path, walk_seconds=walk_minutes * 60)
        click.echo(f"csv: {rows} scans -> {csv_path}")
