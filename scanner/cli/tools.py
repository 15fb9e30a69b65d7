"""The demo and the benchmark."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..errors import ScannerError
from .base import (
    EXIT_FAULT,
    Failure,
    cli,
)


@cli.command()
@click.option("--frames", default=60, show_default=True, help="Frames per measurement.")
@click.option("--rounds", default=5, show_default=True, help="Rounds; the median is reported.")
@click.option(
    "--db-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where the benchmark's scan logs go (the disk whose fsync counts).",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write the results as JSON.",
)
def bench(frames: int, rounds: int, db_dir: Path | None, json_path: Path | None) -> None:
    """Measure decode, loop and frame-to-signal costs against the bare libraries.

    Prints a table of milliseconds per 640x480 frame and ratios to a bare
    zxing-cpp and a bare pyzbar decode of the same frames, measured in the
    same run. Not a pass/fail test: shared machines are noisy.
    """
    from ..tools.bench import run_bench, write_json

    result = run_bench(
        frames=frames,
        rounds=rounds,
        db_dir=db_dir,
        progress=lambda s: click.echo(f"measuring: {s}", err=True),
    )
    click.echo(result.table())
    if json_path:
        write_json(result, json_path)


@cli.command()
@click.option(
    "--dir",
    "folder",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("demo-run"),
    show_default=True,
    help="Folder for the demo event, its recording and the scan log.",
)
@click.option("--fast", is_flag=True, help="Process the recording as fast as possible.")
def demo(folder: Path, fast: bool) -> None:
    """Run the real gate on a simulated backstage door.

    Makes a demo event (keys, a signed policy whose show started two minutes
    ago, passes of several tiers, a forged and a revoked one), films people
    holding them up, runs the daemon on the film with mock GPIO, and prints
    every decision, every LED and buzzer change, and a summary.
    Exits 0 when every presentation got the expected decision.
    """
    from ..tools.demo import run_demo

    try:
        code = run_demo(folder, realtime=not fast, say=click.echo)
    except ScannerError as err:
        raise Failure(str(err), EXIT_FAULT) from err
    sys.exit(code)
