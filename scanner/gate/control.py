"""The control socket: the crew talks to the running daemon.

``scanner phase during`` (and ``status``) send one JSON line to a Unix socket
(``/run/scanner/control.sock``) and read one JSON line back. The socket is
created mode 0660, so only root and the scanner's group may use it. The
server thread never touches the scan loop's state: it queues each request as
a :class:`Command`, the loop answers it between frames, and the server sends
the answer back. The optional show key switch, the guard's override button
and the door's sensors on GPIO pins feed the same queue.

Each command from the socket carries who sent it (``peer``), as the kernel
tells it (``SO_PEERCRED``), never as the request claims: an override is
logged with that shell user, and what only the box's own pins may say (a
door contact, a tamper switch) is refused from the socket.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import queue
import socket
import stat
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ControlError

__all__ = ["Command", "ControlServer", "send_command"]

SOCKET_MODE = 0o660  # the service user and the operators group (scanner admit, phase)
MAX_REQUEST = 4096


@dataclass
class Command:
    request: dict[str, Any]
    peer: str | None = None  # the socket's user (SO_PEERCRED); None from the box's own pins
    _done: threading.Event = field(default_factory=threading.Event)
    response: dict[str, Any] | None = None

    def reply(self, response: dict[str, Any]) -> None:
        self.response = response
        self._done.set()

    def wait(self, timeout: float) -> dict[str, Any] | None:
        return self.response if self._done.wait(timeout) else None


class ControlServer:
    """Accepts commands on a Unix socket and queues them for the loop."""

    def __init__(
        self, path: Path | None, commands: queue.Queue[Command], *, reply_timeout: float = 5.0
    ) -> None:
        self.path = path
        self.commands = commands
        self.reply_timeout = reply_timeout
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISSOCK(path.lstat().st_mode):
                    path.unlink()  # left by a daemon that was killed
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            # Its mode is set before it listens: until listen() nobody can connect
            # (connect() is refused), and the umask, which is the whole process's
            # (every thread's new files), is never touched.
            try:
                sock.bind(str(path))
                os.chmod(path, SOCKET_MODE)
            except OSError:
                sock.close()
                raise
            sock.listen(4)
            sock.settimeout(0.5)
        except OSError as err:
            raise ControlError(f"cannot listen on {path}: {err}") from err
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="control", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while self._sock is not None:
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                self._handle(conn)

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(2.0)
        try:
            data = b""
            while b"\n" not in data and len(data) < MAX_REQUEST:
                chunk = conn.recv(MAX_REQUEST)
                if not chunk:
                    break
                data += chunk
            try:
                request = json.loads(data.split(b"\n", 1)[0])
                if not isinstance(request, dict):
                    raise ValueError
            except ValueError:
                response: dict[str, Any] | None = {"ok": False, "error": "not a JSON request"}
            else:
                command = Command(request, peer=_peer(conn))
                self.commands.put(command)
                response = command.wait(self.reply_timeout) or {
                    "ok": False,
                    "error": "the scan loop did not answer (busy or stuck)",
                }
            conn.sendall(json.dumps(response).encode() + b"\n")
        except OSError:
            pass

    def close(self) -> None:
        """Stop listening and remove the socket; safe to call twice."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
            if self.path is not None:
                with contextlib.suppress(OSError):
                    self.path.unlink()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=2.0)

    def __enter__(self) -> ControlServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _peer(conn: socket.socket) -> str:
    """The user on the other end of ``conn``, as the kernel says."""
    try:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
    except OSError:
        return "unknown"
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def send_command(path: Path, request: dict[str, Any], *, timeout: float = 8.0) -> dict[str, Any]:
    """Send one request to the running daemon and return its answer."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(json.dumps(request).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except FileNotFoundError as err:
        raise ControlError(f"no scanner is running here ({path} does not exist)") from err
    except PermissionError as err:
        raise ControlError(
            f"not allowed to talk to {path}: run as root or in group scanner"
        ) from err
    except OSError as err:
        raise ControlError(f"cannot reach the scanner at {path}: {err}") from err
    try:
        answer = json.loads(data)
    except ValueError as err:
        raise ControlError("the scanner sent an answer that is not JSON") from err
    if not isinstance(answer, dict):
        raise ControlError("the scanner sent an answer that is not JSON")
    return answer
