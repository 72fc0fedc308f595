"""What the transit feed (`edgectl feed`) keeps up with, through a real Mosquitto.

    python -m bench.feed --json [--quick]

For N = 1,000 and 5,000 simulated vehicles (the fleet simulator's payloads):
- ingest_per_s: position messages per second `edgectl feed` (its own process) takes in
  from a backlog: the process is paused (SIGSTOP), M = 20,000 messages are published (QoS 1, the
  broker queues them), it is resumed and timed until its /health counts them all;
- baseline_per_s: the same for a bare subscriber (the same MQTT client, `json.loads` and
  nothing else), in the same run; ratio = ingest / baseline (aim ≥ 0.8);
- build_ms_1000, build_ms_5000: one full protobuf feed built from scratch (every entity
  encoded; median of 5), in this process; aim ≤ 20 ms at 1,000;
- rss_steady_mb: the feed process's resident memory serving 5,000 vehicles, before any
  backlog; rss_mb once the backlogs are drained (Python keeps what the MQTT client's
  queue of up to 50,000 messages took) and rss_peak_mb its peak;
- lag_p50_ms, lag_p99_ms: 1,000 vehicles at 1,000 msg/s for `lag_s` seconds, the served
  protobuf feed polled every 50 ms: from each position's publish to the poll that first
  served it (the poll interval included); aim p99 ≤ 1,000 ms;
- ingest_cpu_us_per_msg_N, baseline_cpu_us_per_msg_N, cpu_ratio_N: CPU time (user +
  system, /proc) of each process over its timed drain per message, best of two, and
  baseline / feed: the same comparison, moved less by a busy machine than the rates.
"""

import argparse
import asyncio
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from google.transit import gtfs_realtime_pb2 as rt

from bench.common import Mosquitto, free_port, percentile, proc_cpu_s, proc_status_mb, rnd, say
from edged.ops.fleet import FleetView
from edged.transit.gtfsrt import Encoder
from edged.transit.service import FeedService
from edged.uplink.cancellable import CancellableClient
from hil.fleet.sim import FleetSim

ROOT = Path(__file__).resolve().parents[1]
AIMS = {"ratio": 0.8, "build_ms_1000": 20.0, "lag_p99_ms": 1000.0}
PREFIX = "rnst/v1"


def _sim(n: int) -> FleetSim:
    return FleetSim("127.0.0.1", 0, n, period_s=1.0, offline_share=0.0, seed=1)


def _setup_messages(sim: FleetSim, now: float) -> list[tuple[str, bytes, bool]]:
    out = []
    for v in sim.vehicles:
        out.append((sim.topic(v, "state"), sim.birth(v, now), True))
        out.append((sim.topic(v, "journey"), sim.journey(v, now), True))
        out.append((sim.topic(v, "occupancy"), sim.occupancy(v, now), True))
        out.append((sim.topic(v, "position"), sim.position(v, now), False))
    return out


async def _publish(port: int, messages: list[tuple[str, bytes, bool]], qos: int = 1) -> None:
    async with CancellableClient("127.0.0.1", port, max_inflight_messages=2000,
                                 max_queued_outgoing_messages=0) as client:
        for i in range(0, len(messages), 1000):
            await asyncio.gather(*(client.publish(t, p, qos=qos, retain=r)
                                   for t, p, r in messages[i : i + 1000]))


def _positions(sim: FleetSim, count: int) -> list[tuple[str, bytes, bool]]:
    now = time.time()
    vs = sim.vehicles
    return [(sim.topic(vs[i % len(vs)], "position"), sim.position(vs[i % len(vs)], now), False)
            for i in range(count)]


# -- the two subscribers under test --------------------------------------------------------


def _start_feed(broker: Mosquitto, port: int, log: Path) -> "subprocess.Popen[bytes]":
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "edged.cli.ctl", "feed", "--broker", broker.url, "--listen",
             f"127.0.0.1:{port}", "--no-page", "--max-vehicles", "20000"],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)


def _start_baseline(broker: Mosquitto) -> "subprocess.Popen[str]":
    return subprocess.Popen(
        [sys.executable, "-m", "bench.feed", "--baseline-subscriber", str(broker.port)],
        cwd=ROOT, stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True)


async def _baseline_subscriber(port: int) -> None:
    """The bare loop: the tools' MQTT client, `json.loads`, a counter; prints on request."""
    from edged.ops.client import connect
    from edged.ops.login import Login
    from edged.ops.urls import parse_broker_url

    count = 0
    login = Login(parse_broker_url(f"mqtt://127.0.0.1:{port}"))
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    target: list[int] = []

    async def orders() -> None:
        while line := await reader.readline():
            target.append(int(line))

    async with connect(login, f"bench-baseline-{os.getpid()}") as client:
        await client.subscribe(f"{PREFIX}/#", qos=1)
        print("ready", flush=True)
        task = asyncio.create_task(orders())
        async for message in client.messages:
            payload = message.payload
            if isinstance(payload, bytes | bytearray):
                json.loads(payload)
            count += 1
            if target and count >= target[0]:
                print(f"done {time.time()}", flush=True)
                target.pop(0)
        task.cancel()


async def _received(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(f"{url}/health") as r:
        return int((await r.json())["messages"]["received"])


class Subscribers:
    """The feed and the bare subscriber on one broker; each is timed draining a backlog
    alone: both are paused while it is published, only the one measured is resumed, and
    the other catches up before the next measure (2 cores: no sharing while timed)."""

    def __init__(self, feed: "subprocess.Popen[bytes]", url: str,
                 base: "subprocess.Popen[str]", broker: Mosquitto, seen: int) -> None:
        self.feed, self.url, self.base, self.broker = feed, url, base, broker
        self.base_seen = seen  # messages the bare subscriber has been sent so far
        self.http = aiohttp.ClientSession()
        self.feed_cpu_us: list[float] = []  # CPU per message of each timed drain
        self.base_cpu_us: list[float] = []

    async def close(self) -> None:
        await self.http.close()

    async def _backlog(self, messages: list[tuple[str, bytes, bool]]) -> None:
        for p in (self.feed, self.base):
            os.kill(p.pid, signal.SIGSTOP)
        await _publish(self.broker.port, messages)
        self.base_seen += len(messages)

    async def _feed_until(self, count: int) -> float:
        while await _received(self.http, self.url) < count:
            await asyncio.sleep(0.1)
        return time.time()

    async def _base_until(self, count: int) -> float:
        assert self.base.stdin is not None and self.base.stdout is not None
        self.base.stdin.write(f"{count}\n")
        self.base.stdin.flush()
        line = await asyncio.to_thread(self.base.stdout.readline)
        assert line.startswith("done"), line
        return float(line.split()[1])

    async def time_feed(self, messages: list[tuple[str, bytes, bool]]) -> float:
        before = await _received(self.http, self.url)
        await self._backlog(messages)
        cpu0 = proc_cpu_s(self.feed.pid) or 0.0
        os.kill(self.feed.pid, signal.SIGCONT)
        started = time.time()
        rate = len(messages) / (await self._feed_until(before + len(messages)) - started)
        self.feed_cpu_us.append(((proc_cpu_s(self.feed.pid) or 0.0) - cpu0) / len(messages) * 1e6)
        os.kill(self.base.pid, signal.SIGCONT)
        await self._base_until(self.base_seen)
        return rate

    async def time_base(self, messages: list[tuple[str, bytes, bool]]) -> float:
        before = await _received(self.http, self.url)
        await self._backlog(messages)
        cpu0 = proc_cpu_s(self.base.pid) or 0.0
        os.kill(self.base.pid, signal.SIGCONT)
        started = time.time()
        rate = len(messages) / (await self._base_until(self.base_seen) - started)
        self.base_cpu_us.append(((proc_cpu_s(self.base.pid) or 0.0) - cpu0) / len(messages) * 1e6)
        os.kill(self.feed.pid, signal.SIGCONT)
        await self._feed_until(before + len(messages))
        return rate


# -- build time ------------------------------------------------------------------------------


def build_ms(n: int, rounds: int = 5) -> float:
    sim = _sim(n)
    view = FleetView(PREFIX, max_nodes=20_000)
    for topic, payload, _ in _setup_messages(sim, time.time()):
        view.ingest(topic, payload)
    service = FeedService(view)
    times = []
    for _ in range(rounds):
        service.encoder = Encoder()  # cold: every entity encoded again
        service._docs.clear()
        t0 = time.perf_counter()
        body = service.vehicle_positions().body
        times.append((time.perf_counter() - t0) * 1000)
    message = rt.FeedMessage()
    message.ParseFromString(body)
    assert len(message.entity) == n, len(message.entity)
    return statistics.median(times)


# -- lag -----------------------------------------------------------------------------------


async def lag(broker: Mosquitto, url: str, n: int, seconds: float) -> list[float]:
    sim = _sim(n)
    t0 = time.time()
    sent_at: dict[str, float] = {}
    lags: list[float] = []
    stop = asyncio.Event()

    async def publisher() -> None:
        async with CancellableClient("127.0.0.1", broker.port, max_queued_outgoing_messages=0) as c:
            i, start = 0, time.time()
            while time.time() - t0 < seconds:
                due = start + i / n  # n messages per second: one per vehicle per second
                await asyncio.sleep(max(0.0, due - time.time()))
                v = sim.vehicles[i % n]
                now = time.time()
                v.odometer_m = round((now - t0) * 1000, 3)  # the publish time, as a tracer
                v.last_t = None
                await c.publish(sim.topic(v, "position"), sim.position(v, now), qos=0)
                i += 1
        stop.set()

    async def poller() -> None:
        seen: dict[str, float] = {}
        async with aiohttp.ClientSession() as http:
            while not stop.is_set():
                async with http.get(f"{url}/gtfs-rt/vehicle-positions") as r:
                    body = await r.read()
                got = time.time()
                message = rt.FeedMessage()
                message.ParseFromString(body)
                for e in message.entity:
                    odo = e.vehicle.position.odometer
                    if seen.get(e.id) != odo and odo > 0:
                        seen[e.id] = odo
                        lags.append((got - t0) * 1000 - odo)
                await asyncio.sleep(0.05)

    await asyncio.gather(publisher(), poller())
    del sent_at
    return lags


# -- the whole run --------------------------------------------------------------------------


async def measure(quick: bool, quiet: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    backlog = 10_000 if quick else 20_000  # paused longer than 45 s, a client is dropped
    lag_s = 10.0 if quick else 30.0
    for n in (1000, 5000):
        out[f"build_ms_{n}"] = rnd(build_ms(n), 2)
        say(quiet, f"build {n}: {out[f'build_ms_{n}']} ms")
    with tempfile.TemporaryDirectory(prefix="bench-feed-") as tmp:
        broker = Mosquitto(Path(tmp)).start()
        try:
            for n in (1000, 5000):
                port = free_port()
                url = f"http://127.0.0.1:{port}"
                feed = _start_feed(broker, port, Path(tmp) / f"feed-{n}.log")
                base = _start_baseline(broker)
                try:
                    assert base.stdout is not None
                    assert (await asyncio.to_thread(base.stdout.readline)).strip() == "ready"
                    await _wait_up(url)
                    sim = _sim(n)
                    setup = _setup_messages(sim, time.time())
                    await _publish(broker.port, setup)
                    await _wait_known(url, n)
                    if n == 5000:
                        out["rss_steady_mb"] = rnd(proc_status_mb(feed.pid, "VmRSS"), 1)
                    subs = Subscribers(feed, url, base, broker, len(setup))
                    messages = _positions(sim, backlog)
                    ingest, baseline = [], []
                    try:
                        for _ in range(2):
                            ingest.append(await subs.time_feed(messages))
                            baseline.append(await subs.time_base(messages))
                    finally:
                        await subs.close()
                    out[f"ingest_per_s_{n}"] = round(max(ingest))
                    out[f"baseline_per_s_{n}"] = round(max(baseline))
                    out[f"ratio_{n}"] = round(max(ingest) / max(baseline), 3)
                    feed_cpu, base_cpu = min(subs.feed_cpu_us), min(subs.base_cpu_us)
                    out[f"ingest_cpu_us_per_msg_{n}"] = rnd(feed_cpu, 1)
                    out[f"baseline_cpu_us_per_msg_{n}"] = rnd(base_cpu, 1)
                    out[f"cpu_ratio_{n}"] = round(base_cpu / feed_cpu, 3)
                    say(quiet, f"{n} vehicles: feed {ingest}, baseline {baseline}")
                    if n == 1000:
                        base.kill()
                        lags = await lag(broker, url, n, lag_s)
                        out["lag_messages"] = len(lags)
                        out["lag_p50_ms"] = rnd(percentile(lags, 50), 1)
                        out["lag_p99_ms"] = rnd(percentile(lags, 99), 1)
                        say(quiet, f"lag p99 {out['lag_p99_ms']} ms over {len(lags)} updates")
                    else:
                        out["rss_mb"] = rnd(proc_status_mb(feed.pid, "VmRSS"), 1)
                        out["rss_peak_mb"] = rnd(proc_status_mb(feed.pid, "VmHWM"), 1)
                finally:
                    for p in (feed, base):
                        if p.poll() is None:
                            p.terminate()
                            p.wait(10)
        finally:
            broker.stop()
    out["ingest_per_s"] = out["ingest_per_s_1000"]
    out["baseline_per_s"] = out["baseline_per_s_1000"]
    out["ratio"] = min(out["ratio_1000"], out["ratio_5000"])
    out["cpu_ratio"] = min(out["cpu_ratio_1000"], out["cpu_ratio_5000"])
    out["loadavg_1m"] = rnd(os.getloadavg()[0], 2)
    out["aims"] = AIMS
    out["ratio_ok"] = out["ratio"] >= AIMS["ratio"]
    out["build_ms_1000_ok"] = out["build_ms_1000"] <= AIMS["build_ms_1000"]
    out["lag_p99_ms_ok"] = out["lag_p99_ms"] is not None and out["lag_p99_ms"] <= AIMS["lag_p99_ms"]
    return out


async def _wait_up(url: str) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(200):
            try:
                async with http.get(f"{url}/health") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError("the feed did not come up")


async def _wait_known(url: str, n: int) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(600):
            async with http.get(f"{url}/health") as r:
                if (await r.json())["vehicles"]["served"] >= n:
                    return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"the feed never served {n} vehicles")


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.feed", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print only the JSON result")
    p.add_argument("--quick", action="store_true", help="smaller backlog, shorter lag run")
    p.add_argument("--baseline-subscriber", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.baseline_subscriber:
        asyncio.run(_baseline_subscriber(args.baseline_subscriber))
        return 0
    logging.getLogger("mqtt").setLevel(logging.ERROR)  # aiomqtt's "pending publish calls"
    result = asyncio.run(measure(args.quick, args.json))
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
