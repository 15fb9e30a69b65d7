"""The service manager port: systemd's notify protocol, and fakes.

``Type=notify`` services tell systemd when they are ready, that they are
alive (the watchdog), and a one-line status, by sending datagrams such as
``READY=1`` to the Unix socket named in ``$NOTIFY_SOCKET``. That is a few
lines of socket code, so no library is needed. The gate sends READY only
once the camera delivers frames and the policy is loaded, and WATCHDOG only
while frames are really processed, so a hung camera trips the watchdog.
"""

from __future__ import annotations

import os
import socket
import threading

__all__ = ["Notifier", "RecordingNotifier", "SystemdNotifier", "open_notifier"]


class Notifier:
    """Does nothing: for runs outside systemd."""

    watchdog_interval: float | None = None

    def send(self, message: str) -> None:
        """Send one notify message (``KEY=value`` lines)."""

    def ready(self, status: str = "") -> None:
        self.send("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def status(self, text: str) -> None:
        self.send(f"STATUS={text}")

    def extend_timeout(self, seconds: float) -> None:
        """Still starting and alive (waiting for a camera or a policy): don't time out."""
        self.send(f"EXTEND_TIMEOUT_USEC={int(seconds * 1e6)}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def close(self) -> None:
        """Safe to call twice."""


class SystemdNotifier(Notifier):
    """Sends to ``$NOTIFY_SOCKET`` (a path, or ``@name`` for an abstract socket)."""

    def __init__(self, address: str, watchdog_usec: str | None = None) -> None:
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.sock: socket.socket | None = socket.socket(
            socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
        )
        self.watchdog_interval = int(watchdog_usec) / 1e6 if watchdog_usec else None

    def send(self, message: str) -> None:
        if self.sock is None:
            return
        try:
            self.sock.sendto(message.encode("utf-8"), self.address)
        except OSError:
            pass  # systemd gone (shutdown) or not listening: nothing to do

    def close(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            sock.close()


class RecordingNotifier(Notifier):
    """Keeps every message, for tests."""

    def __init__(self, watchdog_interval: float | None = None) -> None:
        self.messages: list[str] = []
        self.watchdog_interval = watchdog_interval
        self._lock = threading.Lock()

    def send(self, message: str) -> None:
        with self._lock:
            self.messages.append(message)

    def count(self, prefix: str) -> int:
        with self._lock:
            return sum(1 for m in self.messages if m.startswith(prefix))


def open_notifier(environ: dict[str, str] | None = None) -> Notifier:
    """The systemd notifier when run by systemd, else one that does nothing."""
    env = os.environ if environ is None else environ
    address = env.get("NOTIFY_SOCKET")
    if not address:
        return Notifier()
    pid = env.get("WATCHDOG_PID")
    usec = env.get("WATCHDOG_USEC") if not pid or pid == str(os.getpid()) else None
    return SystemdNotifier(address, usec)
