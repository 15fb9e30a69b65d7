"""``scanner bench``: the lines it promises are there, in the table and the JSON.

No timed assertions (a shared machine is noisy): the numbers are checked for
what they must be whatever the machine (present, positive, and the ratios the
quotients of the measures they name).
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from scanner.cli import cli

WHOLE = "frame to signal (new pass): whole path"
ZXING = "frame to signal (new pass): bare zxing-cpp"
COMMIT = "frame to signal (new pass): bare durable commit"
PAIR = "frame to signal (new pass): bare decode, then bare commit"
LEAST = "frame to signal (new pass): bare first-code decode, then bare commit"
FIRST = "frame to signal (new pass): bare zxing-cpp, first code only"
AGAINST_LEAST = "frame-to-signal / (first-code zxing + bare commit)"
OWN = "frame to signal (new pass): the gate's own code"
AGAINST_FLOOR = "frame-to-signal / (bare zxing + bare commit) (target <= 1.1)"
APART = "frame-to-signal / (bare zxing + bare commit, each measured apart)"
INLINE = "frame to signal (new pass): whole path, writes inline"
THREAD = "frame to signal (new pass): whole path, writer thread"


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench")
    out = folder / "bench.json"
    disk = folder / "disk"
    disk.mkdir()
    result = CliRunner().invoke(
        cli, ["bench", "--frames", "3", "--rounds", "1", "--db-dir", str(disk), "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    return result.output, json.loads(out.read_text()), disk


def test_the_table_shows_the_bare_commit_and_frame_to_signal_against_decode_plus_commit(bench):
    output, _, _ = bench
    lines = {line.rsplit(None, 1)[0].strip(): line.rsplit(None, 1)[1] for line in
             output.splitlines() if line.strip() and not line.startswith(("measur", "note"))}
    for name in (WHOLE, INLINE, THREAD, ZXING, COMMIT, PAIR, OWN, AGAINST_FLOOR, APART,
                 FIRST, LEAST, AGAINST_LEAST):
        assert name in lines, f"{name!r} is missing from the table"
        float(lines[name])  # a number, printed


def test_the_json_holds_the_new_lines_and_the_ratio_is_what_it_says(bench):
    _, data, _ = bench
    ms = data["ms_per_frame"]
    assert ms[COMMIT] > 0 and ms[ZXING] > 0 and ms[WHOLE] > 0
    # the gate's own code is counted against the least the libraries do: a first-code
    # read and a commit, not the whole read the gate's decoder skips on a new code
    assert ms[OWN] == pytest.approx(ms[WHOLE] - ms[LEAST])
    assert data["ratios"][AGAINST_LEAST] == pytest.approx(ms[WHOLE] / ms[LEAST])
    assert data["ratios"][AGAINST_FLOOR] == pytest.approx(ms[WHOLE] / ms[PAIR])
    assert data["ratios"][APART] == pytest.approx(ms[WHOLE] / (ms[ZXING] + ms[COMMIT]))
    # every pass frame was read and signalled: the whole path was really measured
    assert not [n for n in data["notes"] if n.startswith(("bare zxing-cpp read", "only "))]
    assert any(n.startswith("the gate's own code") for n in data["notes"])
    # and it says which way the gate wrote its rows on this disk
    assert [n for n in data["notes"] if n.startswith("the gate wrote rows ")]


def test_the_bench_leaves_nothing_behind_on_the_disk_it_measured(bench):
    _, _, disk = bench
    assert list(disk.iterdir()) == []


def test_the_adversarial_frames_are_measured_against_bare_zxing_and_an_empty_frame(bench):
    output, data, _ = bench
    ms, ratios = data["ms_per_frame"], data["ratios"]
    poster = "adversarial frames, a poster of finder patterns: gate auto path"
    poster_bare = "adversarial frames, a poster of finder patterns: bare zxing-cpp"
    junk = "adversarial frames, a screen of 27 junk codes: gate auto path"
    junk_bare = "adversarial frames, a screen of 27 junk codes: bare zxing-cpp"
    assert all(ms[name] > 0 for name in (poster, poster_bare, junk, junk_bare))
    assert ratios["adversarial frames: finder poster, auto / bare zxing"] == pytest.approx(
        ms[poster] / ms[poster_bare])
    assert ratios["adversarial frames: finder poster, auto / an empty frame's auto"] == (
        pytest.approx(ms[poster] / ms["decode, empty frames: gate auto path"]))
    assert ratios["adversarial frames: junk screen, auto / bare zxing"] == pytest.approx(
        ms[junk] / ms[junk_bare])
    assert "adversarial frames: finder poster, auto / bare zxing" in output


def test_a_short_run_never_prints_a_negative_cost(bench):
    """Differences of two timings can fall below zero on a short or busy run:
    the notes say "within the noise" instead of a negative cost."""
    import re

    output, _, _ = bench
    for found in re.finditer(r"-\d+\.\d+ ms", output):
        assert output[: found.start()].endswith("within the noise ("), output[found.start() - 80:]
