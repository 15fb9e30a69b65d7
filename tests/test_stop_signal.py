"""SIGTERM stops the gate whatever its main thread is doing: ``systemctl stop``
must never hang on the daemon. A handler that set the stop event itself
deadlocked now and then (about one stop in eight here): the main thread came
back from its wait on that event holding the event's lock, ran the handler,
and waited for that lock for ever. Reproduced as CI met it: ``scanner run``
holding a configuration fault under systemd, stopped again and again."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

from .conftest import ROOT
from .journeys.test_guard import SCANNER, box_with_a_zone_typo

ROUNDS = 25


def test_a_gate_holding_a_configuration_fault_stops_on_every_sigterm(tmp_path):
    config, _ = box_with_a_zone_typo(tmp_path)
    slow = []
    for n in range(ROUNDS):
        notify = tmp_path / f"notify-{n}"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        listener.bind(str(notify))
        listener.settimeout(30)
        proc = subprocess.Popen(
            [*SCANNER, "run", "--config", str(config)], cwd=ROOT,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "NOTIFY_SOCKET": str(notify)},
        )  # fmt: skip
        try:
            said = ""
            while "CONFIGURATION FAULT" not in said:
                said += listener.recv(4096).decode()
            time.sleep(0.1 + 0.5 * (n % 5) / 5)  # at different points of its half-second wait
            proc.send_signal(signal.SIGTERM)
            try:
                assert proc.wait(timeout=15) == 2
            except subprocess.TimeoutExpired:
                slow.append(n)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            listener.close()
    assert slow == [], f"SIGTERM did not stop the gate in rounds {slow}"
