"""``scripts/venue-bench``: the venue link under a festival's load (a bench, not a test).

A load generator publishes as ``--doors`` doors (200), each signing with its
own device key from the signed roster, one scan a second on average, while
``--bursting`` doors at a time (10) scan at ``--burst-rate`` (20 a second)
for a few seconds, as a queue at a door does. Everything goes through one
mosquitto on 127.0.0.1 to ``--gates`` subscribing gates (3), each its own
process running the real link (checks, peer store, catch-up) and the real
loop-side view at 10 frames a second.

Measured, per subscribing gate, over ``--seconds`` after a warm-up:

- propagation delay: from the moment a door made a scan (its time) until it
  is in the subscribing gate's view, where a decision would use it: p50, p99;
- the CPU the gate's link thread spends (checking signatures, storing), as a
  share of one core;
- the time the scan loop spends applying peers' scans, as a share of its
  loop budget (100 ms a frame at 10 frames a second), mean and worst frame;
- as a baseline in the same run: the time the gate's own QR decoder takes
  for one 640x480 camera frame on this machine.

The same load runs twice in one invocation: on an open broker (plaintext,
anonymous), and on the broker as a venue runs it (``--secure``: TLS with the
event's CA, a login per door and per gate, the ACL, all from
``scanner venue broker-config``'s files; each door its own TLS connection),
so the two can be compared on the same machine at the same time.

Every process talks only to 127.0.0.1; every loop is bounded in time.
"""

from __future__ import annotations

import argparse
import heapq
import json
import multiprocessing as mp
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ..core.keys import generate_private_key, private_key_from_seed, public_key_text
from ..core.policy import open_policy, sign_policy
from ..core.signed import format_utc

__all__ = ["main"]

ZONES = 10


def _policy(
    doors: int, gates: int, keys: dict[str, str], now: datetime, broker: str = ""
) -> str:
    def at(minutes: int) -> str:
        return (now + timedelta(minutes=minutes)).isoformat(timespec="seconds")

    zones = [f"zone-{z}" for z in range(ZONES)]
    text = (
        '[event]\nid = "bench-fest"\nname = "Bench Fest"\ntimezone = "UTC"\n'
        f"[venue]\nzones = {json.dumps(zones)}\nwalk_seconds = 60\n"
        f'[schedule]\nopens = "{at(-60)}"\ndoors = "{at(-30)}"\nshow_start = "{at(-5)}"\n'
        f'show_end = "{at(120)}"\ncurfew = "{at(240)}"\nphoto_window_minutes = 0\n'
        '[tiers.aaa]\nlabel = "AAA"\nbefore = ["*"]\nduring = ["*"]\nafter = ["*"]\n'
    )
    for d in range(doors):
        text += f'[doors.door-{d:03d}]\nfrom = "outside"\nto = "zone-{d % ZONES}"\n'
    names = [f"door-{d:03d}" for d in range(doors)] + [f"sub-{g}" for g in range(gates)]
    for n, gate in enumerate(names):
        door = gate if gate.startswith("door-") else f"door-{n % doors:03d}"
        text += f'[gates.{gate}]\ndoor = "{door}"\ndirection = "entry"\n'
        text += f'device_key = "{keys[gate]}"\n'
        if broker:
            from ..venue.broker import enrolment_hash

            login = enrolment_hash(private_key_from_seed(_seed(gate)), gate)
            text += f'broker_password_hash = "{login}"\n'
    return text + broker


def _seed(name: str) -> bytes:
    return uuid.uuid5(uuid.NAMESPACE_DNS, name).bytes * 2


def _client(name: str, port: int, ca: str | None, key: Any) -> Any:
    import paho.mqtt.client as mqtt

    from ..venue.broker import box_login, tls_context

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    if ca is not None:
        login = box_login(key, name)
        client.tls_set_context(tls_context(ca))
        client.username_pw_set(login.username, login.password)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def _generate(
    port: int, doors: int, seconds: float, rate: float, burst_rate: float, bursting: int,
    start: float, out: Any, ca: str | None = None,
) -> None:  # fmt: skip
    """The load generator's process: publishes as every door, on schedule;
    with ``ca``, each door on its own TLS connection with its own login (the
    ACL lets it write its own topics only)."""
    from ..venue.messages import scan_message, topic

    keys = {f"door-{d:03d}": private_key_from_seed(_seed(f"door-{d:03d}")) for d in range(doors)}
    if ca is None:
        shared = _client("load-generator", port, None, None)
        clients = dict.fromkeys(keys, shared)
    else:
        clients = {door: _client(door, port, ca, key) for door, key in keys.items()}
    rng = random.Random(7)
    seq = dict.fromkeys(keys, 0)
    burst_until: dict[str, float] = {}
    schedule = [(start + rng.expovariate(rate), door) for door in keys]
    heapq.heapify(schedule)
    next_burst = start
    sent = 0
    end = start + seconds
    while schedule and time.monotonic() < end + 5:
        when, door = heapq.heappop(schedule)
        if when >= end:
            break
        now = time.monotonic()
        if now >= next_burst:  # keep ``bursting`` doors in a 3 s burst at any time
            next_burst = now + 3.0 / max(bursting, 1)
            burst_until[rng.choice(list(keys))] = now + 3.0
        if when > now:
            time.sleep(when - now)
        seq[door] += 1
        row = {
            "id": str(uuid.uuid4()),
            "seq": seq[door],
            "ts": format_utc(datetime.now(UTC)),
            "gate": door,
            "event": "bench-fest",
            "door": door,
            "zone": f"zone-{int(door[5:]) % ZONES}",
            "direction": "entry",
            "serial": rng.randrange(5000),
            "tier": "aaa",
            "decision": "granted",
            "reason": "ok",
            "clock": "trusted",
            "phase": "during",
        }
        clients[door].publish(
            topic("bench-fest", "scan", door), scan_message(keys[door], row, "bench-fest"), qos=1
        )
        sent += 1
        bursting_now = burst_until.get(door, 0) > time.monotonic()
        heapq.heappush(
            schedule, (when + rng.expovariate(burst_rate if bursting_now else rate), door)
        )
    time.sleep(1)
    for client in set(clients.values()):
        client.loop_stop()
        client.disconnect()
    out.put({"sent": sent})


def _subscribe(
    gate: str, port: int, policy_bytes: bytes, trust: str, folder: str, seconds: float,
    warmup: float, start: float, out: Any, secure: bool = False,
) -> None:  # fmt: skip
    """A subscribing gate's process: the real link and view, a 10 fps loop."""
    from ..core.keys import parse_public_key
    from ..record.log import ScanLog
    from ..venue.bus import PahoBus
    from ..venue.door import GateVenue
    from ..venue.link import LinkSettings, VenueLink
    from ..venue.live import SystemClock
    from ..venue.store import OwnLog, PeerStore

    policy = open_policy(policy_bytes, [parse_public_key(trust)])
    base = Path(folder) / gate
    base.mkdir(parents=True)
    log = ScanLog(base / "scans.db", gate=gate)
    key = private_key_from_seed(_seed(gate))
    tls = login = None
    if secure:
        from ..venue.broker import box_login, tls_context

        assert policy.broker is not None
        tls, login = tls_context(policy.broker.ca_pem), box_login(key, gate)
    link = VenueLink(
        LinkSettings(gate=gate, heartbeat_seconds=2.0),
        PahoBus("127.0.0.1", port, f"bench-{gate}", tls=tls, login=login),
        PeerStore(base / "peers.db"),
        OwnLog(base / "scans.db"),
        key,
        clock=SystemClock(),
    )
    venue = GateVenue(
        link, place=policy.gates[gate], log=log, peers=base / "peers.db", device_key=key
    )
    venue.door_view(policy)  # builds the view and hands the link the policy
    link.start()
    frame = 0.1
    measure_from, end = start + warmup, start + warmup + seconds
    per_frame: list[float] = []
    cpu_at_start = applied_at_start = None
    next_frame = time.monotonic()
    while time.monotonic() < end:
        now = time.monotonic()
        if now >= measure_from and cpu_at_start is None:
            cpu_at_start, applied_at_start = link.cpu_seconds, venue.applied
            venue.delays.clear()
        before = time.perf_counter()
        venue.drain()
        spent = time.perf_counter() - before
        if cpu_at_start is not None:
            per_frame.append(spent)
        next_frame += frame
        time.sleep(max(0.0, next_frame - time.monotonic()))
    link_cpu = link.cpu_seconds - (cpu_at_start or 0.0)
    delays = sorted(venue.delays)
    handed = sorted(list(link.delays)[-len(delays) :] if delays else [])
    out.put(
        {
            "gate": gate,
            "applied": venue.applied - (applied_at_start or 0),
            "stored": link.counts["stored"],
            "dropped": dict(link.drops),
            "link_p50_ms": 1000 * handed[len(handed) // 2] if handed else None,
            "link_p99_ms": 1000 * handed[int(len(handed) * 0.99)] if handed else None,
            "p50_ms": 1000 * delays[len(delays) // 2] if delays else None,
            "p99_ms": 1000 * delays[int(len(delays) * 0.99)] if delays else None,
            "max_ms": 1000 * delays[-1] if delays else None,
            "link_cpu_share": link_cpu / seconds,
            "loop_share_mean": statistics.fmean(per_frame) / frame if per_frame else 0.0,
            "loop_ms_worst": 1000 * max(per_frame) if per_frame else 0.0,
            "frames": len(per_frame),
        }
    )
    venue.close()
    log.close()


def _decode_baseline() -> float:
    """ms the gate's own decoder takes for one 640x480 frame holding a pass."""
    from ..gate.decoders import open_decoder
    from .synthetic import Presentation, code_image, render_frame

    text = "BP1:" + "X" * 120
    image = render_frame(code_image(text), Presentation(text), 3, 0)
    with open_decoder("auto", stream=True) as decoder:  # as the gate's daemon opens it
        for _ in range(3):
            decoder.decode(image)
        start = time.perf_counter()
        for _ in range(20):
            decoder.decode(image)
        return (time.perf_counter() - start) / 20 * 1000


def _run(args: argparse.Namespace, mosquitto: Path, *, secure: bool) -> dict[str, Any]:
    """One run of the load; returns what was sent and each gate's figures."""
    import socket

    from ..venue.broker import make_ca, write_broker_config

    folder = Path(tempfile.mkdtemp(prefix="venue-bench-"))
    organizer = generate_private_key()
    names = [f"door-{d:03d}" for d in range(args.doors)] + [f"sub-{g}" for g in range(args.gates)]
    keys = {n: public_key_text(private_key_from_seed(_seed(n)).public_key()) for n in names}
    now = datetime.now(UTC)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ca = None
    table = ""
    if secure:
        ca_key, ca_cert = make_ca("bench", now)
        ca = ca_cert.decode()
        table = f'[broker]\naddress = "127.0.0.1:{port}"\nca = """\n{ca}"""\n'
    policy = sign_policy(_policy(args.doors, args.gates, keys, now, table), organizer, now)
    if secure:
        files = write_broker_config(
            open_policy(policy, None), ca_key, folder / "broker",
            listen=("127.0.0.1", port), stay_as_me=True,
        )  # fmt: skip
        conf = files.config
        conf.write_text(
            conf.read_text() + "max_queued_messages 100000\nmax_inflight_messages 0\n"
        )
    else:
        conf = folder / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "max_queued_messages 100000\nmax_inflight_messages 0\n"
        )
    broker = subprocess.Popen(
        [str(mosquitto), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    time.sleep(0.5)
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    start = time.monotonic() + (8.0 if secure else 3.0)  # 200 TLS handshakes first
    trust = public_key_text(organizer.public_key())
    procs = [
        ctx.Process(
            target=_subscribe,
            args=(f"sub-{g}", port, policy, trust, str(folder), args.seconds, args.warmup,
                  start, results, secure),
        )
        for g in range(args.gates)
    ]
    procs.append(
        ctx.Process(
            target=_generate,
            args=(port, args.doors, args.warmup + args.seconds, args.rate, args.burst_rate,
                  args.bursting, start, results, ca),
        )
    )
    for p in procs:
        p.start()
    found = [results.get(timeout=args.warmup + args.seconds + 90) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    broker.terminate()
    broker.wait(timeout=10)
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
    return {
        "sent": next(r["sent"] for r in found if "sent" in r),
        "gates": sorted((r for r in found if "gate" in r), key=lambda r: r["gate"]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/venue-bench", description=__doc__.split("\n")[0])
    parser.add_argument("--doors", type=int, default=200)
    parser.add_argument("--gates", type=int, default=3, help="subscribing gates")
    parser.add_argument("--rate", type=float, default=1.0, help="scans a second per door")
    parser.add_argument("--burst-rate", type=float, default=20.0)
    parser.add_argument("--bursting", type=int, default=10, help="doors bursting at any time")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument(
        "--only", choices=("plain", "secure"), help="one run only (default: both, plain first)"
    )
    args = parser.parse_args(argv)
    from .venue_demo import find_mosquitto

    mosquitto = find_mosquitto()
    if mosquitto is None:
        print("venue-bench: needs mosquitto (scripts/bootstrap venue)", file=sys.stderr)
        return 2
    baseline = _decode_baseline()
    runs = {}
    for name in ("plain", "secure"):
        if args.only in (None, name):
            runs[name] = _run(args, mosquitto, secure=name == "secure")
    total = args.warmup + args.seconds
    print(f"baseline: the gate's QR decoder takes {baseline:.2f} ms for one 640x480 frame")
    for name, run in runs.items():
        what = (
            "TLS with the event's CA, a login per door and gate, the ACL"
            if name == "secure"
            else "plaintext, anonymous"
        )
        print(
            f"\n{name} ({what}): {args.doors} doors at {args.rate:g} scan/s, {args.bursting} at "
            f"a time bursting at {args.burst_rate:g}/s; {run['sent']} scans in {total:g} s "
            f"({run['sent'] / total:.0f}/s) through one mosquitto on 127.0.0.1 to "
            f"{len(run['gates'])} subscribing gates"
        )
        for r in run["gates"]:
            print(
                f"  {r['gate']}: applied {r['applied']} scans in {args.seconds:g} s; from the "
                f"door to the gate's loop, checked and stored p50 {r['link_p50_ms']:.1f} ms, "
                f"p99 {r['link_p99_ms']:.1f} ms; into the view at the next frame p50 "
                f"{r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms (max {r['max_ms']:.1f}); "
                f"link thread {100 * r['link_cpu_share']:.1f}% of a core; loop spends "
                f"{100 * r['loop_share_mean']:.2f}% of its 100 ms frame budget applying them "
                f"(worst frame {r['loop_ms_worst']:.1f} ms = "
                f"{r['loop_ms_worst'] / baseline:.1f}x one frame's decode); "
                f"dropped {r['dropped'] or 0}"
            )
    if len(runs) == 2:
        def mean(run: dict[str, Any], key: str) -> float:
            return statistics.fmean(r[key] for r in run["gates"])

        print("\nsecure against plain, the same load in the same invocation (mean of the gates):")
        for key, label in (("p50_ms", "p50 into the view"), ("p99_ms", "p99 into the view"),
                           ("link_cpu_share", "link thread CPU")):  # fmt: skip
            plain, secure = mean(runs["plain"], key), mean(runs["secure"], key)
            scale = 100.0 if key == "link_cpu_share" else 1.0
            unit = "% of a core" if key == "link_cpu_share" else " ms"
            print(
                f"  {label}: {plain * scale:.1f}{unit} plain, {secure * scale:.1f}{unit} "
                f"secure ({secure / plain if plain else float('nan'):.2f}x)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
