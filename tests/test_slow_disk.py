"""A slow SD card: the door keeps looking while a row waits for the disk, and
still never signals a scan before its row is on disk, nor out of order."""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Any

import scanner.gate.daemon as daemon
from scanner.gate.frames import FakeCamera
from scanner.gate.scan_loop import LoopSettings, ScanLoop
from scanner.gate.signals import DoorSignals
from scanner.gate.writer import ScanWriter
from scanner.record.chain import verify_chain
from scanner.record.log import ScanLog
from scanner.tools.synthetic import Presentation, presentation_frames

from .test_gate_daemon import Run, config_for, rows

COMMIT_S = 0.15  # an SD card's fsync at its worst, and then some


def test_a_slow_disk_keeps_frames_flowing_and_signals_in_scan_order_after_their_rows(
    gate_dir, make_pass, monkeypatch
):
    db = gate_dir / "scans.db"
    commits: list[tuple[int | None, float, float]] = []  # (serial, started, on disk)
    shown: list[tuple[str, list[int]]] = []  # (signal, serials a second reader finds)
    read_at: list[float] = []

    class SlowDisk(ScanLog):
        def record_scan(self, scan: Any, **kw: Any) -> Any:
            started = time.monotonic()
            time.sleep(COMMIT_S)  # the disk takes its time before the row is durable
            row = super().record_scan(scan, **kw)
            commits.append((scan.serial, started, time.monotonic()))
            return row

    class Watching(DoorSignals):
        def show(self, name: str) -> None:
            if name != "ready":
                conn = sqlite3.connect(db)
                serials = [r[0] for r in conn.execute("SELECT serial FROM scans ORDER BY seq")]
                conn.close()
                shown.append((name, serials))
            super().show(name)

    people = [make_pass("aaa", 1), make_pass("photo", 2), make_pass("aaa", 3)]

    def camera():
        for frame in presentation_frames([Presentation(p, frames=2) for p in people], gap_frames=4):
            read_at.append(time.monotonic())
            yield frame

    monkeypatch.setattr(daemon, "ScanLog", SlowDisk)
    monkeypatch.setattr(daemon, "DoorSignals", Watching)
    run = Run(config_for(gate_dir), frames=lambda: FakeCamera(camera())).start()
    assert run.wait() == 0

    stored = rows(gate_dir)
    assert [(r["serial"], r["decision"]) for r in stored] == [
        (1, "granted"),
        (2, "denied"),
        (3, "granted"),
    ]
    assert verify_chain(stored) == []
    # each signal in scan order, and only once its own row (and every row
    # before it) was on disk for another reader
    assert shown == [("granted", [1]), ("not_here", [1, 2]), ("granted", [1, 2, 3])]
    # while each of the first two rows waited for the disk, the camera's next
    # frames were read and decoded
    for serial, started, durable in commits[:2]:
        during = [t for t in read_at if started < t < durable]
        assert len(during) >= 2, f"no frames went on while pass {serial} was written"


def test_without_the_writer_thread_the_loop_waits_for_the_disk(gate_dir, make_pass):
    """The same scans through a loop whose writes run inline: no frame is read
    while a row waits (what the writer thread is for)."""
    from datetime import timedelta

    from gpiozero.pins.mock import MockFactory

    from scanner.core.decision import Gate
    from scanner.gate.clock import ClockGuard, FakeClock
    from scanner.gate.daemon import open_policy_store

    from .test_gate_daemon import BEFORE, PINS

    commits: list[tuple[float, float]] = []
    read_at: list[float] = []

    class SlowDisk(ScanLog):
        def record_scan(self, scan: Any, **kw: Any) -> Any:
            started = time.monotonic()
            time.sleep(COMMIT_S)
            row = super().record_scan(scan, **kw)
            commits.append((started, time.monotonic()))
            return row

    def camera():
        passes = [Presentation(make_pass("aaa", n), frames=2) for n in (1, 2)]
        for frame in presentation_frames(passes, gap_frames=4):
            read_at.append(time.monotonic())
            yield frame

    config = config_for(gate_dir)
    log = SlowDisk(config.paths.db, gate="door-1")
    loop = ScanLoop(
        settings=LoopSettings(
            gate_id="door-1", gate=Gate(zone="backstage"), background_writes=False
        ),
        open_frames=lambda: FakeCamera(camera()),
        decoder=daemon.open_decoder("auto"),
        log=log,
        signals=DoorSignals(MockFactory(), PINS),
        store=open_policy_store(config, state=log),
        clock=FakeClock(BEFORE),
        guard=ClockGuard(BEFORE - timedelta(days=1)),
    )
    assert loop.run() == 0
    loop.signals.close()
    log.close()
    assert len(commits) == 2
    assert not [t for t in read_at for started, done in commits if started < t < done]


def test_the_writer_runs_jobs_in_order_one_at_a_time_and_hands_back_their_errors():
    order: list[str] = []
    writer = ScanWriter()

    def job(name: str, delay: float = 0.0):
        def run() -> None:
            time.sleep(delay)
            order.append(name)

        return run

    writer.submit(job("first", 0.05))
    assert writer.busy
    writer.submit(job("second"))  # waits for the first
    assert order[0] == "first"
    writer.settle()
    assert order == ["first", "second"] and not writer.busy

    def broken() -> None:
        raise RuntimeError("a bug in a scan's tail")

    writer.submit(broken)
    try:
        writer.settle()
    except RuntimeError as err:
        assert "a bug" in str(err)
    else:
        raise AssertionError("the job's error was swallowed")
    writer.close()
    writer.close()  # safe twice
    writer.submit(job("after close"))  # runs at once on the caller's thread
    assert order[-1] == "after close"


def test_the_writer_goes_inline_once_the_disk_has_proven_fast_and_back_at_one_slow_write():
    """The thread's wake-up is wasted on a disk that commits in a fraction of a
    millisecond, so such a disk gets inline writes; one slow write and the next
    scans go back to the thread, where the camera keeps going while they wait."""
    ran_on: list[str] = []
    writer = ScanWriter(inline_below=0.02, proven_after=3)

    def job(delay: float = 0.0):
        def run() -> None:
            time.sleep(delay)
            ran_on.append("inline" if threading.current_thread() is caller else "thread")

        return run

    caller = threading.current_thread()
    for _ in range(5):
        writer.submit(job())
        writer.settle()
    assert ran_on == ["thread", "thread", "thread", "inline", "inline"]
    writer.submit(job(0.05))  # the disk stalls (inline: the disk had proven fast)
    assert writer.threaded  # ... so the next write is the thread's again
    for _ in range(4):
        writer.submit(job())
        writer.settle()
    assert ran_on[5:] == ["inline", "thread", "thread", "thread", "inline"]
    writer.close()

    never = ScanWriter(inline_below=None)  # the thread, however fast the disk
    for _ in range(40):
        never.submit(job())
        never.settle()
    assert set(ran_on[10:]) == {"thread"} and never.threaded
    never.close()
