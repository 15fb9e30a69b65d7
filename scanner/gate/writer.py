"""The scan writer: makes a scan durable and signals it, while the camera goes on.

On a Raspberry Pi an SD card's fsync takes milliseconds to tens of
milliseconds. The loop must not light an LED before the row is on disk, but
it need not stop looking either: :class:`ScanWriter` runs the tail of a scan
(write the row, fsync, then show the signal) on one writer thread while the
loop thread decodes the next frames.

Its rules keep the log exactly as a loop without it would write it:

* **at most one scan in flight.** :meth:`ScanWriter.submit` first waits for
  the scan before it, so rows are written and signals shown in scan order,
  and a scan is decided only after the one before it is on disk (its
  anti-passback entry, a storage fault, a row kept in memory all count);
* **one owner at a time.** While a scan is in flight the writer thread owns
  the scan log and the loop's counts and faults; the loop thread calls
  :meth:`ScanWriter.settle` before it touches them (housekeeping, commands,
  a camera fault, the end of the run). ``settle`` on the writer thread itself
  returns at once, so a job may raise a fault through the loop's own code;
* **nothing is hidden.** An exception a job raises (a bug: disk errors are
  handled inside the job) is raised again in the loop thread by the next
  ``submit`` or ``settle``, as if the loop had run the job itself.

**The thread only where it pays.** Handing a scan to another thread costs a
wake-up (from a few to tens of microseconds, more on a busy machine), and on
a disk whose commit takes a tenth of a millisecond no frame waits for the
commit anyway, so the thread buys nothing there. So the writer starts with the
thread, as if the disk were slow, and runs jobs inline on the caller's thread
only once the disk has proven fast: each of the last ``proven_after`` jobs
took under ``inline_below`` seconds. One job that takes longer puts it back
on the thread at once and the disk must prove itself again. An SD card, whose
fsync takes milliseconds, keeps the thread; so does a gate whose screen takes
long to draw. Inline or threaded, the rules above hold the same.

``ScanWriter(background=False)`` runs every job at once on the caller's
thread: the plain, synchronous loop; ``inline_below=None`` keeps every job on
the thread. The thread is a daemon thread started at the first job;
:meth:`close` waits for the job in flight and stops it, and is safe to call
twice.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

__all__ = ["INLINE_BELOW", "PROVEN_AFTER", "ScanWriter"]

INLINE_BELOW = 0.001  # seconds: a write this quick is not worth a thread's wake-up
PROVEN_AFTER = 32  # writes in a row that quick before the writer trusts the disk


class _Job:
    __slots__ = ("done", "error", "fn")

    def __init__(self, fn: Callable[[], None]) -> None:
        self.fn = fn
        self.done = threading.Event()
        self.error: BaseException | None = None


class ScanWriter:
    """Runs scan tails one at a time, in order, on one writer thread."""

    def __init__(
        self,
        *,
        background: bool = True,
        inline_below: float | None = INLINE_BELOW,
        proven_after: int = PROVEN_AFTER,
        name: str = "scanner-writer",
    ) -> None:
        self.background = background
        self.inline_below = inline_below
        self.proven_after = proven_after
        self._quick = 0  # jobs in a row that took under inline_below
        self._name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._inflight: _Job | None = None
        self._closed = False

    @property
    def busy(self) -> bool:
        """Whether a scan is still being written."""
        job = self._inflight
        return job is not None and not job.done.is_set()

    @property
    def threaded(self) -> bool:
        """Whether the next job goes to the writer thread (False: it runs inline)."""
        if not self.background or self._closed:
            return False
        return self.inline_below is None or self._quick < self.proven_after

    def _timed(self, fn: Callable[[], None]) -> None:
        start = time.perf_counter()
        try:
            fn()
        finally:
            quick = self.inline_below is not None and (
                time.perf_counter() - start < self.inline_below
            )
            self._quick = self._quick + 1 if quick else 0

    def submit(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` after the scan before it is done: on the writer thread, or
        at once (no background thread, or a disk that has proven fast)."""
        self.settle()
        if not self.threaded:
            self._timed(fn)
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()
        job = _Job(fn)
        self._inflight = job
        self._jobs.put(job)

    def settle(self, timeout: float | None = None) -> bool:
        """Wait for the scan in flight (its row on disk and its signal shown).

        Returns False only when ``timeout`` ran out first. Raises again what
        the job raised. A no-op on the writer thread itself.
        """
        job = self._inflight
        if job is None or threading.current_thread() is self._thread:
            return True
        if not job.done.wait(timeout):
            return False
        self._inflight = None
        if job.error is not None:
            raise job.error
        return True

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                self._timed(job.fn)
            except BaseException as err:  # raised again on the loop thread
                job.error = err
            finally:
                job.done.set()

    def close(self) -> None:
        """Wait for the scan in flight, then stop the thread; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            self.settle()
        finally:
            if self._thread is not None:
                self._jobs.put(None)
                self._thread.join()

    def __enter__(self) -> ScanWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
