"""``scanner bench``: what the gate costs per frame, against the bare libraries.

Everything is measured in one run on this machine and reported as ratios to
a bare zxing-cpp decode of the same frames (and to a bare pyzbar decode), so
the numbers mean something on a shared, noisy machine and on a Pi alike:

* decode time per 640x480 frame for each decoder (bare zxing-cpp, bare
  pyzbar, and the gate's ``auto`` path), on frames with a pass and on empty
  frames;
* the loop's cost per frame (grab from an in-memory source, decode, hold-off
  bookkeeping), on a recording of people holding passes and gaps between them;
* a bare durable SQLite commit of one row (WAL, ``synchronous=FULL``, on the
  same disk as the gate's log), the floor under any scan's write;
* frame-to-signal for a new pass: from the frame to the moment the door's
  signal starts (decode, verify, decide, the row written and fsynced by the
  writer thread, the signal), one frame at a time; every frame holds a pass
  the gate has not seen. It is reported against bare zxing-cpp alone and
  against a bare decode followed by a bare commit, frame by frame (and the
  two measured apart; target: ratio 1.1). The gate's decoder stops at the
  first code it reads on such a frame (see :mod:`scanner.gate.decoders`),
  so the path is also reported against a bare zxing-cpp read stopped at the
  first code followed by a bare commit: the excess over that is what the
  gate's own code costs.
  The gate hands rows to its writer thread only while the disk is slow (see
  :mod:`scanner.gate.writer`); the same path with writes always inline and
  always on the writer thread shows what the hand-off costs; the pass check
  alone and the scan's row alone (its durable write, chain hash, id index and
  checks) show where the rest goes (a note splits the gate's own
  code into them);
* adversarial frames, made to cost a door: a poster of QR finder patterns
  (dozens of would-be corners zxing-cpp locates and cannot read) and a
  phone's screen of 27 fresh codes that are not passes, through the gate's
  decoder as the daemon opens it (a camera's stream, the frame budget),
  against bare zxing-cpp on the same frames and against an empty frame;
* frames per second sustained by the whole loop.

Measurements alternate between the contenders round by round and report the
median round, which keeps a background burst from favouring one side.
"""

from __future__ import annotations

import json
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from gpiozero.pins.mock import MockFactory

from ..core.decision import Gate
from ..core.passes import PassContent, encode_pass, read_pass
from ..gate.clock import ClockGuard, SystemClock
from ..gate.decoders import open_decoder
from ..gate.frames import FakeCamera
from ..gate.policy_store import PolicyStore
from ..gate.scan_loop import LoopSettings, ScanLoop
from ..gate.signals import DoorSignals, PinConfig
from ..gate.writer import INLINE_BELOW
from ..record.log import ScanLog
from .demo import STYLES, make_demo_event
from .synthetic import Presentation, background, code_image, presentation_frames, render_frame

__all__ = ["BenchResult", "run_bench"]

WARM_MAX = 5000  # commits at most to bring a fresh log's WAL to its working size
COMMITS = 60  # bare commits per round
TYPICAL_ROW: dict[str, Any] = {  # a granted scan as the gate logs it
    "ts": "2026-12-05T19:30:00.000000Z",
    "gate": "bench",
    "zone": "backstage",
    "direction": "entry",
    "event": "demo-night",
    "tier": "aaa",
    "holder": "Bench Person 0001",
    "decision": "granted",
    "reason": "ok",
    "key_id": "0123456789abcdef",
    "clock": "trusted",
    "phase": "during",
    "message": "Granted: Bench Person 0001 (Access All Areas) into backstage.",
    "code_sha256": "ab" * 32,
}


@dataclass
class BenchResult:
    frames: int
    rounds: int
    ms: dict[str, float] = field(default_factory=dict)  # median per-frame time of each measure
    ratios: dict[str, float] = field(default_factory=dict)
    fps: float = 0.0
    notes: list[str] = field(default_factory=list)

    def table(self) -> str:
        fps = "loop throughput (frames per second)"
        w = max(len(name) for name in [*self.ms, *self.ratios, fps]) + 2
        rows = [f"{'measure':<{w}}{'ms/frame':>10}"]
        rows += [f"{name:<{w}}{ms:>10.3f}" for name, ms in self.ms.items()]
        rows.append("")
        rows += [f"{name:<{w}}{value:>10.2f}" for name, value in self.ratios.items()]
        rows.append("")
        rows.append(f"{fps:<{w}}{self.fps:>10.1f}")
        rows += [f"note: {n}" for n in self.notes]
        return "\n".join(rows)

    def as_dict(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "rounds": self.rounds,
            "ms_per_frame": self.ms,
            "ratios": self.ratios,
            "fps": self.fps,
            "notes": self.notes,
        }



def _cost(ms: float) -> str:
    """A difference of two timings: below zero it is within the run's noise
    (a short run, a busy machine), never a negative cost."""
    if ms < 0:
        return f"within the noise ({ms:.3f} ms measured; more --frames narrows it)"
    return f"{ms:.3f} ms"

def _per_frame(fn: Callable[[np.ndarray], Any], frames: Sequence[np.ndarray]) -> float:
    start = time.perf_counter()
    for frame in frames:
        fn(frame)
    return (time.perf_counter() - start) / len(frames) * 1000


def warm_until_steady(
    commit: Callable[[], None], conn: sqlite3.Connection, db: Path
) -> tuple[int, float]:
    """Commit until the WAL of the log at ``db`` has its working size, then
    checkpoint it; returns (commits, ms per commit meanwhile).

    A fresh WAL grows with every commit until SQLite's auto-checkpoint
    (1000 pages), and each commit that grows the file costs more (the
    bench's note says how much); after that, commits write over the same
    file, as they do on a gate that has run a while. Every log the bench
    times is brought to that state first, so the whole path and the floor are
    measured alike. (A gate's log is in the growing state for its first few
    hundred scans after each start: the bench reports what that costs.)
    """
    page = int(conn.execute("PRAGMA page_size").fetchone()[0])
    pages = int(conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]) or 1000
    working = 32 + pages * (page + 24)  # WAL header, then a header and a page per frame
    wal = db.with_name(db.name + "-wal")
    commits = 0
    start = time.perf_counter()
    while commits < WARM_MAX and (not wal.exists() or wal.stat().st_size < working):
        commit()
        commits += 1
    ms = (time.perf_counter() - start) / max(commits, 1) * 1000
    conn.execute("PRAGMA wal_checkpoint(RESTART)")
    return commits, ms


class BareCommit:
    """One row committed durably, nothing else: a scan log's floor on this disk.

    The row is as large as a scan row (a UUID key and ~600 bytes of text), the
    file is in WAL mode with ``synchronous=FULL`` as the gate's log is, and its
    WAL has its working size (:func:`warm_until_steady`), as the gate's logs
    have in the bench.
    """

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(str(path), isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("CREATE TABLE rows (id TEXT PRIMARY KEY NOT NULL, body TEXT) STRICT")
        self._n = 0
        self.growing = warm_until_steady(self.commit, self.conn, path)

    def commit(self) -> None:
        self._n += 1
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.execute(
            "INSERT INTO rows (id, body) VALUES (?, ?)", [f"{self._n:036d}", "x" * 600]
        )
        self.conn.execute("COMMIT")

    def per_commit(self, commits: int = COMMITS) -> float:
        start = time.perf_counter()
        for _ in range(commits):
            self.commit()
        return (time.perf_counter() - start) / commits * 1000

    def close(self) -> None:
        self.conn.close()


def _median_rounds(contenders: dict[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for r in range(rounds):
        order = list(contenders.items())
        if r % 2:
            order.reverse()
        for name, measure in order:
            samples[name].append(measure())
    return {name: statistics.median(values) for name, values in samples.items()}


def run_bench(
    *,
    frames: int = 60,
    rounds: int = 5,
    db_dir: Path | None = None,
    progress: Callable[[str], None] = lambda s: None,
) -> BenchResult:
    """Measure everything described in the module doc; returns the numbers."""
    result = BenchResult(frames=frames, rounds=rounds)
    with tempfile.TemporaryDirectory(dir=db_dir, prefix="scanner-bench-") as tmp:
        folder = Path(tmp)
        event = make_demo_event(folder / "event", datetime.now(UTC))
        from ..keyfiles import load_private_key

        key = load_private_key(event.folder / "keys" / "organizer.key")
        progress("rendering frames")
        new_texts = [
            encode_pass(
                key, PassContent("demo-night", 1000 + i, "aaa", holder=f"Bench Person {i:04d}")
            )
            for i in range(frames)
        ]
        new_passes = [
            render_frame(
                code_image(text),
                Presentation("", **STYLES[i % len(STYLES)]),
                seed=i,
                step=i % 7,
            )
            for i, text in enumerate(new_texts)
        ]
        empty = [
            np.clip(
                background(i) + np.random.default_rng(i).normal(0, 4, (480, 640)), 0, 255
            ).astype(np.uint8)
            for i in range(frames)
        ]
        passes_texts = [p.text for p in event.passes[:4]]
        recording = list(
            presentation_frames(
                [Presentation(t, frames=15, **STYLES[i]) for i, t in enumerate(passes_texts)],
                gap_frames=15,
            )
        )

        import zxingcpp
        from pyzbar import pyzbar

        qr = zxingcpp.BarcodeFormat.QRCode

        def bare_zxing(frame: np.ndarray) -> Any:
            return zxingcpp.read_barcodes(frame, formats=qr)

        def bare_first(frame: np.ndarray) -> Any:
            return zxingcpp.read_barcode(frame, formats=qr)  # stops at the first code

        def bare_zbar(frame: np.ndarray) -> Any:
            return pyzbar.decode(frame, symbols=[pyzbar.ZBarSymbol.QRCODE])

        auto = open_decoder("auto", stream=True)  # as the gate's daemon opens it
        found = sum(1 for f in new_passes if bare_zxing(f))
        if found < frames:
            result.notes.append(f"bare zxing-cpp read {found} of {frames} pass frames")

        progress("decoders")
        dec = _median_rounds(
            {
                "decode, pass frames: bare zxing-cpp": lambda: _per_frame(bare_zxing, new_passes),
                "decode, pass frames: bare pyzbar": lambda: _per_frame(bare_zbar, new_passes),
                "decode, pass frames: gate auto path": lambda: _per_frame(auto.decode, new_passes),
                "decode, empty frames: bare zxing-cpp": lambda: _per_frame(bare_zxing, empty),
                "decode, empty frames: bare pyzbar": lambda: _per_frame(bare_zbar, empty),
                "decode, empty frames: gate auto path": lambda: _per_frame(auto.decode, empty),
            },
            rounds,
        )
        result.ms.update(dec)

        progress("adversarial frames")
        posters = [adversarial_frame("finder poster", i) for i in range(frames)]
        junk = [adversarial_frame("screen of junk codes", i) for i in range(frames)]
        stream = open_decoder("auto", stream=True, frame_budget_ms=150.0)  # as the daemon does
        adv = _median_rounds(
            {
                "adversarial frames, a poster of finder patterns: bare zxing-cpp": lambda: (
                    _per_frame(bare_zxing, posters)
                ),
                "adversarial frames, a poster of finder patterns: gate auto path": lambda: (
                    _per_frame(stream.decode, posters)
                ),
                "adversarial frames, a screen of 27 junk codes: bare zxing-cpp": lambda: (
                    _per_frame(bare_zxing, junk)
                ),
                "adversarial frames, a screen of 27 junk codes: gate auto path": lambda: (
                    _per_frame(stream.decode, junk)
                ),
            },
            rounds,
        )
        stream.close()
        result.ms.update(adv)

        signalled: list[float] = []  # when each signal started

        def make_loop(db: Path, writes: str = "auto") -> tuple[ScanLoop, DoorSignals]:
            signals = DoorSignals(
                MockFactory(),
                PinConfig(),
                on_signal=lambda name, shows: signalled.append(time.perf_counter()),
            )
            store = PolicyStore(policy=event.policy, trust=(event.trust,))
            clock = SystemClock()
            loop = ScanLoop(
                settings=LoopSettings(
                    gate_id="bench",
                    gate=Gate(zone="backstage", anti_passback=False),
                    hold_off=2.0,
                    background_writes=writes != "inline",
                    inline_writes_below=None if writes == "thread" else INLINE_BELOW,
                ),
                open_frames=lambda: FakeCamera([]),
                decoder=auto,
                log=ScanLog(db, gate="bench"),
                signals=signals,
                store=store,
                clock=clock,
                guard=ClockGuard(datetime.fromtimestamp(0, UTC)),
            )
            return loop, signals

        progress("the scan loop")
        counter = iter(range(1_000_000))

        def loop_recording() -> float:
            loop, signals = make_loop(folder / f"loop-{next(counter)}.db")
            source = FakeCamera(recording)
            start = time.perf_counter()
            while (frame := source.read()) is not None:
                loop.process(frame)
            loop.writer.close()
            ms = (time.perf_counter() - start) / len(recording) * 1000
            loop.log.close()
            signals.close()
            return ms

        writer_modes: set[str] = set()

        def signal_new_passes(writes: str = "auto") -> float:
            db = folder / f"signal-{next(counter)}.db"
            loop, signals = make_loop(db, writes)

            def warm_up() -> None:
                # a pass each time (codes that are not passes would be one row a burst)
                serial = 100_000 + next(counter)
                loop.scan(encode_pass(key, PassContent("demo-night", serial, "aaa")))
                loop.writer.settle()

            warm, _ = warm_until_steady(warm_up, loop.log.db.conn, db)  # as a gate after a while
            source = FakeCamera(new_passes)
            total = 0.0
            while True:
                # One frame at a time: from the frame to its signal (or to the end
                # of a frame that held nothing the decoder read).
                signalled.clear()
                start = time.perf_counter()
                frame = source.read()
                if frame is None:
                    break
                loop.process(frame)
                loop.writer.settle()
                total += (signalled[0] if signalled else time.perf_counter()) - start
            ms = total / len(new_passes) * 1000
            if writes == "auto":
                writer_modes.add("the writer thread" if loop.writer.threaded else "inline")
            loop.writer.close()
            scanned = loop.counts.scans
            loop.log.close()
            signals.close()
            if scanned < found + warm:
                result.notes.append(f"only {scanned - warm} of {found} new passes were scanned")
            return ms

        loop_ms = _median_rounds(
            {
                "loop per frame (recording): whole loop": loop_recording,
                "loop per frame (recording): bare zxing-cpp": lambda: _per_frame(
                    bare_zxing, recording
                ),
                "loop per frame (recording): bare pyzbar": lambda: _per_frame(bare_zbar, recording),
            },
            rounds,
        )
        result.ms.update(loop_ms)
        bare_commit = BareCommit(folder / "bare-commit.db")
        policy = PolicyStore(policy=event.policy, trust=(event.trust,)).policy
        assert policy is not None
        pass_keys = policy.pass_keys_by_tag

        def pass_check() -> float:
            start = time.perf_counter()
            for text in new_texts:
                read_pass(text, pass_keys)
            return (time.perf_counter() - start) / len(new_texts) * 1000

        row_log = ScanLog(folder / "row.db", gate="bench")
        rows_written = iter(range(1_000_000))

        def a_row() -> dict[str, Any]:
            n = next(rows_written)
            return {**TYPICAL_ROW, "id": str(uuid.uuid4()), "serial": n}

        warm_until_steady(lambda: row_log.record_scan(a_row()), row_log.db.conn, row_log.path)

        def row_write() -> float:
            start = time.perf_counter()
            for _ in range(COMMITS):
                row = a_row()
                row_log.record_scan(row)  # a granted entry: anti-passback remembers it
            return (time.perf_counter() - start) / COMMITS * 1000

        sig_ms = _median_rounds(
            {
                "frame to signal (new pass): whole path": signal_new_passes,
                "frame to signal (new pass): whole path, writes inline": lambda: signal_new_passes(
                    "inline"
                ),
                "frame to signal (new pass): whole path, writer thread": lambda: signal_new_passes(
                    "thread"
                ),
                "frame to signal (new pass): bare zxing-cpp": lambda: _per_frame(
                    bare_zxing, new_passes
                ),
                "frame to signal (new pass): bare durable commit": bare_commit.per_commit,
                "frame to signal (new pass): bare decode, then bare commit": lambda: _per_frame(
                    lambda frame: (bare_zxing(frame), bare_commit.commit()), new_passes
                ),
                "frame to signal (new pass): bare zxing-cpp, first code only": lambda: _per_frame(
                    bare_first, new_passes
                ),
                "frame to signal (new pass): bare first-code decode, then bare commit": (
                    lambda: _per_frame(
                        lambda frame: (bare_first(frame), bare_commit.commit()), new_passes
                    )
                ),
                "frame to signal (new pass): pass check alone (Base45, Ed25519)": pass_check,
                "frame to signal (new pass): the scan's row alone (durable)": row_write,
                "frame to signal (new pass): bare pyzbar": lambda: _per_frame(
                    bare_zbar, new_passes
                ),
            },
            rounds,
        )
        result.ms.update(sig_ms)
        bare_commit.close()
        row_log.close()
        auto.close()
        whole = sig_ms["frame to signal (new pass): whole path"]
        # The floor: a bare decode and a bare commit of one row, one after the other
        # for each frame, as the gate must do them (a commit right after a decode
        # finds the CPU's caches full of the frame; apart, each runs warm).
        floor = sig_ms["frame to signal (new pass): bare decode, then bare commit"]
        # The least the libraries can do: zxing-cpp stopped at the first code (as the
        # gate's decoder stops on most frames that show one), then a bare commit. The
        # gate's own code is what the whole path costs beyond it.
        least = sig_ms["frame to signal (new pass): bare first-code decode, then bare commit"]
        apart = (
            sig_ms["frame to signal (new pass): bare zxing-cpp"]
            + sig_ms["frame to signal (new pass): bare durable commit"]
        )

        result.ratios = {
            "auto decode / bare zxing (pass frames)": dec["decode, pass frames: gate auto path"]
            / dec["decode, pass frames: bare zxing-cpp"],
            "auto decode / bare zxing (empty frames)": dec["decode, empty frames: gate auto path"]
            / dec["decode, empty frames: bare zxing-cpp"],
            "loop / bare zxing (target <= 1.1)": loop_ms["loop per frame (recording): whole loop"]
            / loop_ms["loop per frame (recording): bare zxing-cpp"],
            "loop / bare pyzbar (target < 0.5)": loop_ms["loop per frame (recording): whole loop"]
            / loop_ms["loop per frame (recording): bare pyzbar"],
            "frame-to-signal / bare zxing": whole
            / sig_ms["frame to signal (new pass): bare zxing-cpp"],
            "frame-to-signal / (bare zxing + bare commit) (target <= 1.1)": whole / floor,
            "frame-to-signal / (bare zxing + bare commit, each measured apart)": whole / apart,
            "frame-to-signal / (first-code zxing + bare commit)": whole / least,
            "frame-to-signal / bare pyzbar (target < 0.5)": whole
            / sig_ms["frame to signal (new pass): bare pyzbar"],
            "adversarial frames: finder poster, auto / bare zxing": adv[
                "adversarial frames, a poster of finder patterns: gate auto path"
            ]
            / adv["adversarial frames, a poster of finder patterns: bare zxing-cpp"],
            "adversarial frames: finder poster, auto / an empty frame's auto": adv[
                "adversarial frames, a poster of finder patterns: gate auto path"
            ]
            / dec["decode, empty frames: gate auto path"],
            "adversarial frames: junk screen, auto / bare zxing": adv[
                "adversarial frames, a screen of 27 junk codes: gate auto path"
            ]
            / adv["adversarial frames, a screen of 27 junk codes: bare zxing-cpp"],
        }
        own = whole - least
        result.ms["frame to signal (new pass): the gate's own code"] = own
        check = sig_ms["frame to signal (new pass): pass check alone (Base45, Ed25519)"]
        row_extra = (
            sig_ms["frame to signal (new pass): the scan's row alone (durable)"]
            - sig_ms["frame to signal (new pass): bare durable commit"]
        )
        warm = floor - apart  # what a commit right after a decode costs more
        stops = (
            sig_ms["frame to signal (new pass): bare zxing-cpp"]
            - sig_ms["frame to signal (new pass): bare zxing-cpp, first code only"]
        )
        # What the gate's decoder costs beyond a first-code read: mostly its whole read
        # on every 4th frame in a row that shows a code (the bench's passes come back
        # to back, with no empty frame between guests).
        rule = (
            dec["decode, pass frames: gate auto path"]
            - sig_ms["frame to signal (new pass): bare zxing-cpp, first code only"]
        )
        result.notes.append(
            f"the gate's own code, {_cost(own)}: the pass check {_cost(check)}, the scan's row "
            f"beyond a bare commit (chain hash, id index, checks) {_cost(row_extra)}, "
            f"the decoder beyond a first-code read (its whole read on every 4th of these "
            f"back-to-back pass frames) "
            f"{_cost(rule)}, the rest (decision, row, hand-off to the writer, signal) "
            f"{_cost(own - check - row_extra - rule)}; a bare commit right after a bare decode "
            f"costs {_cost(warm)} more than apart"
        )
        result.notes.append(
            f"the gate's decoder stops at the first code it reads on 3 frames of 4 in a row "
            f"that show a code, which saves {_cost(stops)} against a whole bare read on such a "
            "frame here; the gate's own code is counted against a first-code read "
            "(see scanner.gate.decoders)"
        )
        result.notes.append(
            "the gate wrote rows "
            + " and ".join(sorted(writer_modes))
            + " here (the writer thread until the disk has proven fast: see scanner.gate.writer)"
        )
        grown, growing_ms = bare_commit.growing
        result.notes.append(
            f"a fresh log's WAL grows for its first {grown} bare commits (a gate's first few "
            f"hundred scans after each start); each cost {growing_ms:.3f} ms here, against "
            f"{sig_ms['frame to signal (new pass): bare durable commit']:.3f} ms once it has its "
            "working size, as every log timed above had"
        )
        result.fps = 1000 / loop_ms["loop per frame (recording): whole loop"]
    return result


def adversarial_frame(kind: str, seed: int) -> np.ndarray:
    """A 640x480 frame made to cost a door: a poster of QR finder patterns (the
    squares zxing-cpp takes for corners of codes), or a phone's screen of 27
    fresh codes that are not passes."""
    frame = np.full((480, 640), 225 + seed % 10, np.uint8)
    if kind == "finder poster":
        size = 24 + 4 * (seed % 3)  # a finder pattern is 7 modules: 1:1:3:1:1
        m = size // 7
        finder = np.zeros((7 * m, 7 * m), np.uint8)
        finder[m : 6 * m, m : 6 * m] = 255
        finder[2 * m : 5 * m, 2 * m : 5 * m] = 0
        step = 7 * m + 3 * m
        for y in range(6, 480 - 7 * m, step):
            for x in range(6, 640 - 7 * m, step):
                frame[y : y + 7 * m, x : x + 7 * m] = finder
        return frame
    for n in range(27):
        image = code_image(f"J{seed}-{n}", module_px=2)
        y, x = 10 + (n // 9) * 78, 8 + (n % 9) * 70
        frame[y : y + image.shape[0], x : x + image.shape[1]] = image
    return frame


def write_json(result: BenchResult, path: Path) -> None:
    path.write_text(json.dumps(result.as_dict(), indent=2) + "\n")
