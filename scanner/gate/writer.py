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

``ScanWriter(background=False)`` runs every job at once on the caller's
thread: the plain, synchronous loop. The thread is a daemon thread started
at the first job; :meth:`close` waits for the job in flight and stops it, and
is safe to call twice.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

__all__ = ["ScanWriter"]


class _Job:
    __slots__ = ("done", "error", "fn")

    def __init__(self, fn: Callable[[], None]) -> None:
        self.fn = fn
        self.done = threading.Event()
        self.error: BaseException | None = None


class ScanWriter:
    """Runs scan tails one at a time, in order, on one writer thread."""

    def __init__(self, *, background: bool = True, name: str = "scanner-writer") -> None:
        self.background = background
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

    def submit(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` after the scan before it is done: on the writer thread, or
        at once without a background thread."""
        self.settle()
        if not self.background or self._closed:
            fn()
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
                job.fn()
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
