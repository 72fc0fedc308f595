"""Outbox and uplink throughput, against a bare aiomqtt loop measured in the same run.

    python -m bench.outbox --json          # the full run: 100,000-message backlog
    python -m bench.outbox --quick --json  # a smoke test with small sizes
    python -m bench.outbox --n 20000       # another backlog size, progress on stderr
    python -m bench.outbox --rounds 3      # medians of 3 rounds, for a busy machine
    python -m bench.outbox --gc-freeze     # the drained node calls gc.freeze() once built
    python -m bench.outbox --no-topic-aliases  # the drained node sends every topic by name

Phases, all against one private Mosquitto started here:

1. enqueue  - in this process: a real `Outbox` on a file in a temp dir (default
              `OutboxConfig`, so `flush_interval_ms` = 20) with its writer task running;
              N `events/door` publications are made with `Publication.make` and
              `put_nowait`, then every future is awaited (= durable). The file this leaves
              behind is the pre-filled backlog of phase 3.
2. baseline - a child process: a bare aiomqtt QoS 1 publish loop, MQTT 5, no
              persistence, `window` publishes outstanding at once (the uplink's
              `BrokerConfig.window`), the same topic and the same payload bytes.
3. drain    - a child process: a real `edged.node.Node` (no drivers, the default services,
              so the kiosk and its HTTP server too) on a copy of that pre-filled outbox;
              while it drains, the child also publishes a live `events/door` event every
              `--live-ms` through `Node.publish`.
4. drain without the kiosk - the same on another copy of the backlog, the node with
              `[services.kiosk] enabled = false`: the outbox and the uplink without the
              kiosk's HTTP server, keyed `*_no_kiosk_*`.

What differs between the baseline and the drain, on purpose: the drain is the node's (its
topic aliases, as `[broker] topic_aliases` has them by default: `--no-topic-aliases` sends
every topic by name, as the baseline does), its live events (~0.3 % of the messages) and
its services run beside it, and its QoS 1 publishes and PUBACKs skip paho's per-message
objects (`edged.uplink.packets`), where the baseline's go through aiomqtt and paho. The
window, QoS, MQTT version, topic, payload bytes, broker and subscriber are the same.

In phases 2 and 3 a subscriber in this process (QoS 1, MQTT 5) counts distinct `seq`s;
rates are (count - 1) / (last arrival - first arrival), so both sides are measured the
same way. Peak RSS is the child's VmHWM, so it is the daemon's memory, not the harness's;
the drain also reports the garbage collector's pauses while the backlog drains
(`drain_gc_ms`, and the collections of each generation) and the objects it tracks once the
node is built, and the node's RSS once built (imports and config: what any node costs
before its first message), at the backlog's first PUBACK (the services, the kiosk among
them, have started by then) and at its last, and SQLite's own memory then. Every child gets
the Environment= of systemd/edged.service, as a node's daemon does.
"""

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    Arrivals,
    Mosquitto,
    field_int,
    percentile,
    proc_cpu_s,
    proc_status_mb,
    rnd,
    say,
    subscribe_and_count,
)
from bench.memory import resident_split, sqlite_memory_used
from bench.unit import unit_environment
from hil.proc import thread_cpu_s

PREFIX, FLEET, NODE = "rnst/v1", "bench", "node-1"
OUTBOX_FILE = "outbox.sqlite"
LIVE_DOOR = "live"
LIVE_MARKER = b'"door":"live"'
BACKLOG_DOOR = "front"
QUICK_N = 3000


def door_topic() -> str:
    from edged.topics import DOOR, Topics

    return Topics(PREFIX, FLEET, NODE).of(DOOR)


# -- phase 1: enqueue (in this process) ------------------------------------------------


async def measure_enqueue(path: Path, n: int) -> dict[str, Any]:
    """Durable enqueue rate; leaves `n` door events in the outbox at `path`."""
    from edged.clock import Clock
    from edged.config.models import OutboxConfig
    from edged.outbox import Outbox, Publication, PutResult
    from edged.payloads import DoorEvent
    from edged.topics import DOOR, Topics

    config = OutboxConfig(path=path)  # defaults otherwise: flush_interval_ms, caps
    outbox = Outbox(config, Clock())
    await outbox.open()
    writer = asyncio.create_task(outbox.run_writer(), name="outbox.writer")
    topics = Topics(PREFIX, FLEET, NODE)
    try:
        t0 = time.perf_counter()
        futures = [
            outbox.put_nowait(
                Publication.make(topics, DOOR, DoorEvent(door=BACKLOG_DOOR, open=i % 2 == 0))
            )
            for i in range(n)
        ]
        t_put = time.perf_counter()
        results = await asyncio.gather(*futures)
        t1 = time.perf_counter()
    finally:
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
        await outbox.close()
    stored = sum(r is PutResult.STORED for r in results)
    if stored != n:
        raise RuntimeError(f"enqueue: only {stored} of {n} messages were stored")
    return {
        "enqueue_per_s": rnd(n / (t1 - t0)),
        "enqueue_s": rnd(t1 - t0, 3),
        "enqueue_put_loop_us": rnd((t_put - t0) / n * 1e6, 2),
        "enqueue_flush_interval_ms": config.flush_interval_ms,
    }


# -- phases 2 and 3: a child publishes, this process counts -----------------------------


def _child_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "bench.outbox", "--child", *args]


async def _run_child(
    port: int,
    cmd: list[str],
    target: int,
    log: Path,
    limit_s: float,
    label: str,
    tail_s: float = 0.0,
    terminate: bool = True,
) -> tuple[Arrivals, dict[str, Any]]:
    """Start the subscriber, then the child; wait for `target` distinct seqs; then SIGTERM
    the child (`terminate`) or let it finish on its own.

    Returns the arrivals and what was read from /proc while the child was alive."""
    arrivals = Arrivals(target=target, live_marker=LIVE_MARKER)
    ready = asyncio.Event()
    sub = asyncio.create_task(
        subscribe_and_count(port, door_topic(), arrivals, ready, f"bench-sub-{label}")
    )
    await asyncio.wait_for(ready.wait(), 10)
    own0 = resource.getrusage(resource.RUSAGE_SELF)
    with log.open("ab") as out:
        t_spawn = time.time()
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            cwd=_root(),
            env={**os.environ, **unit_environment()},  # the daemon's, from the unit
        )
    info: dict[str, Any] = {"t_spawn": t_spawn}
    try:
        deadline = time.monotonic() + limit_s
        while not arrivals.done.is_set():
            if proc.returncode is not None:
                await asyncio.sleep(1.0)  # the last messages may still be on their way
                if arrivals.done.is_set():
                    break
                raise RuntimeError(
                    f"{label}: child exited ({proc.returncode}) after {len(arrivals.seqs)} of "
                    f"{target} messages; see {log}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{label}: only {len(arrivals.seqs)} of {target} after {limit_s:.0f} s"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(arrivals.done.wait(), 0.25)
        info["t_done"] = time.time()
        if tail_s:
            await asyncio.sleep(tail_s)  # live messages put before t_done still arriving
        if proc.returncode is None:
            info["peak_rss_mb"] = proc_status_mb(proc.pid, "VmHWM")
            info["cpu_s"] = proc_cpu_s(proc.pid)
            info["t_cpu"] = time.time()
            if terminate:
                proc.send_signal(signal.SIGTERM)
        own1 = resource.getrusage(resource.RUSAGE_SELF)
        info["harness_cpu_s"] = (own1.ru_utime + own1.ru_stime) - (own0.ru_utime + own0.ru_stime)
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except TimeoutError:
            proc.kill()
            await asyncio.wait_for(proc.wait(), 5)
        info["returncode"] = proc.returncode
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        sub.cancel()
        await asyncio.gather(sub, return_exceptions=True)
    return arrivals, info


def _root() -> Path:
    return Path(__file__).resolve().parents[1]


def _read_stats(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data


async def measure_baseline(
    port: int, n: int, window: int, tmp: Path, limit_s: float, kind: str = "aiomqtt"
) -> dict[str, Any]:
    """One bare publisher's figures, keyed `baseline_*` (aiomqtt) or `baseline_paho_*`."""
    stats = tmp / f"baseline-{kind}-stats.json"
    cmd = _child_cmd(
        "baseline" if kind == "aiomqtt" else "baseline-paho",
        "--port",
        str(port),
        "--n",
        str(n),
        "--window",
        str(window),
        "--stats",
        str(stats),
    )
    arrivals, info = await _run_child(
        port, cmd, n, tmp / f"baseline-{kind}.log", limit_s, f"baseline-{kind}", terminate=False
    )
    child = _read_stats(stats)
    wall = (arrivals.last or 0) - (arrivals.first or 0)
    key = "baseline" if kind == "aiomqtt" else "baseline_paho"
    return {
        f"{key}_per_s": rnd(arrivals.rate()),
        f"{key}_s": rnd(wall, 3),
        f"{key}_acked_per_s": child.get("acked_per_s"),
        f"{key}_rss_mb": child.get("self_peak_rss_mb"),
        f"{key}_cpu_pct": child.get("cpu_pct"),
        f"{key}_cpu_us_per_msg": child.get("cpu_us_per_msg"),
        f"{key}_harness_cpu_s": rnd(info.get("harness_cpu_s"), 2),
        f"{key}_duplicates": arrivals.duplicates,
    }


def write_node_config(
    tmp: Path, port: int, outbox: Path, *, kiosk: bool = True, aliases: bool = True
) -> Path:
    """The drained node's config: the defaults (the kiosk on), or with the kiosk off; topic
    aliases as by default, or off."""
    path = tmp / "node.toml"
    no_kiosk = "" if kiosk else "\n[services.kiosk]\nenabled = false\n"
    no_aliases = "" if aliases else "topic_aliases = false\n"
    path.write_text(
        f"""
[node]
fleet = "{FLEET}"
id = "{NODE}"
profile = "shuttle"

[broker]
host = "127.0.0.1"
port = {port}
prefix = "{PREFIX}"
{no_aliases}
[outbox]
path = "{outbox}"
{no_kiosk}"""
    )
    return path


async def measure_drain(
    port: int,
    n: int,
    backlog: Path,
    live_ms: float,
    tmp: Path,
    limit_s: float,
    *,
    kiosk: bool,
    knobs: "Knobs",
) -> dict[str, Any]:
    """Drain a copy of the `backlog` directory (the outbox and the files beside it)."""
    work = tmp / ("drain" if kiosk else "drain-no-kiosk")
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(backlog, work)
    outbox = work / OUTBOX_FILE
    stats = work / "node-stats.json"
    config = write_node_config(work, port, outbox, kiosk=kiosk, aliases=knobs.topic_aliases)
    cmd = _child_cmd(
        "node",
        "--config",
        str(config),
        "--n",
        str(n),
        "--live-ms",
        str(live_ms),
        "--stats",
        str(stats),
        *(["--gc-freeze"] if knobs.gc_freeze else []),
    )
    arrivals, info = await _run_child(port, cmd, n, work / "node.log", limit_s, "drain", tail_s=1.0)
    child = _read_stats(stats)
    t_done_ms = info["t_done"] * 1000
    live = [(now * 1000 - ts) for ts, now in arrivals.live if ts <= t_done_ms]
    wall = (arrivals.last or 0) - (arrivals.first or 0)
    return {
        "drain_per_s": rnd(arrivals.rate()),
        "drain_s": rnd(wall, 3),
        "backlog_s": rnd((arrivals.last or 0) - info["t_spawn"], 3),
        "drain_startup_s": rnd((arrivals.first or 0) - info["t_spawn"], 3),
        "drain_acked_per_s": child.get("acked_per_s"),
        "live_p50_ms": rnd(percentile(live, 50)),
        "live_p99_ms": rnd(percentile(live, 99)),
        "live_max_ms": rnd(max(live) if live else None),
        "live_n": len(live),
        "live_puback_p50_ms": child.get("live_puback_p50_ms"),
        "live_puback_p99_ms": child.get("live_puback_p99_ms"),
        "rss_mb": rnd(info.get("peak_rss_mb")),
        # the node's RSS once built (imports, config), at the first and last PUBACK of the
        # backlog: what the import set costs and what the drain adds to it
        "drain_rss_built_mb": child.get("rss_built_mb"),
        "drain_rss_first_ack_mb": child.get("rss_first_ack_mb"),
        "drain_rss_all_acked_mb": child.get("rss_all_acked_mb"),
        "drain_rss_anon_mb": child.get("rss_anon_mb"),  # of it: heaps
        "drain_rss_file_mb": child.get("rss_file_mb"),  # code, mapped files
        "drain_sqlite_mb": child.get("sqlite_mb"),  # of the heaps: SQLite's own, at the last
        "drain_gc_ms": child.get("gc_ms"),  # the collector's pauses while the backlog drained
        "drain_gc_gen0": child.get("gc_gen0"),  # ... its collections of each generation
        "drain_gc_gen1": child.get("gc_gen1"),
        "drain_gc_gen2": child.get("gc_gen2"),
        "gc_objects_built": child.get("gc_objects_built"),  # tracked once the node is built
        "drain_cpu_pct": child.get("cpu_pct"),
        "drain_cpu_us_per_msg": child.get("cpu_us_per_msg"),
        "drain_outbox_cpu_us_per_msg": child.get("outbox_cpu_us_per_msg"),
        "drain_harness_cpu_s": rnd(info.get("harness_cpu_s"), 2),
        "drain_duplicates": arrivals.duplicates,
        "drain_node_exit": info.get("returncode"),
        "outbox_rows_after": _rows_left(outbox),
    }


def _rows_left(path: Path) -> int | None:
    import sqlite3

    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return int(db.execute("SELECT count(*) FROM msg").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:
        return None


# -- the children -----------------------------------------------------------------------


def _door_payloads(n: int) -> list[bytes]:
    """The bytes the outbox would store for n door events (seq 1..n), built up front."""
    from edged.clock import Clock
    from edged.payloads import DoorEvent, encode
    from edged.topics import DOOR

    ts, source = Clock().now()
    epoch = "b" * 16  # the benchmark's own: its rows are not the node's
    bodies = [
        DoorEvent(door=BACKLOG_DOOR, open=b).model_dump(mode="json", exclude_none=True)
        for b in (True, False)
    ]
    return [
        encode(bodies[i % 2], v=DOOR.version, epoch=epoch, seq=i + 1, ts=ts, clock=source.value)
        for i in range(n)
    ]


async def baseline_child(port: int, n: int, window: int) -> dict[str, Any]:
    """A bare aiomqtt QoS 1 publish loop: `window` publishes outstanding, no persistence."""
    import aiomqtt

    t_start = time.time()
    payloads = _door_payloads(n)
    topic = door_topic()
    async with aiomqtt.Client(
        "127.0.0.1",
        port,
        identifier="bench-baseline",
        protocol=aiomqtt.ProtocolVersion.V5,
        max_inflight_messages=window,
        timeout=15,
    ) as client:
        client.pending_calls_threshold = window + 16
        it = iter(payloads)

        async def worker() -> None:
            for payload in it:  # shared iterator: each payload is taken by one worker
                await client.publish(topic, payload, qos=1)

        t0, cpu0 = time.perf_counter(), time.process_time()
        async with asyncio.TaskGroup() as tg:
            for _ in range(window):
                tg.create_task(worker())
        t1, cpu1 = time.perf_counter(), time.process_time()
    return {
        "acked_per_s": rnd(n / (t1 - t0)),
        "cpu_pct": rnd(100 * (cpu1 - cpu0) / (t1 - t0)),
        "cpu_us_per_msg": rnd((cpu1 - cpu0) / n * 1e6),
        "t_start": t_start,
        "self_peak_rss_mb": rnd(proc_status_mb(os.getpid(), "VmHWM")),
    }


async def baseline_paho_child(port: int, n: int, window: int) -> dict[str, Any]:
    """A bare paho QoS 1 loop on the event loop: paho's `publish` with no future, PUBACKs
    told by `on_publish` to a dict of message ids, the freed slots filled once per loop
    turn, `window` outstanding. aiomqtt only connects and runs paho's socket on the loop.
    What the node's sender (`edged.uplink.sender`) does, without the outbox."""
    import aiomqtt

    ours: set[int] = set()  # message ids in flight

    class Client(aiomqtt.Client):
        def _on_publish(self, client: Any, userdata: Any, mid: int, *rest: Any) -> None:
            if mid not in ours:
                super()._on_publish(client, userdata, mid, *rest)
                return
            ours.discard(mid)
            state["outstanding"] -= 1
            state["done"] += 1
            if not state["scheduled"]:
                state["scheduled"] = True
                asyncio.get_running_loop().call_soon(pump)

    t_start = time.time()
    payloads = _door_payloads(n)
    topic = door_topic()
    state = {"outstanding": 0, "done": 0, "next": 0, "scheduled": False}
    finished = asyncio.Event()
    async with Client(
        "127.0.0.1",
        port,
        identifier="bench-baseline-paho",
        protocol=aiomqtt.ProtocolVersion.V5,
        max_inflight_messages=window,
        timeout=15,
    ) as client:
        paho = client._client

        def pump() -> None:
            state["scheduled"] = False
            while state["outstanding"] < window and state["next"] < n:
                info = paho.publish(topic, payloads[state["next"]], 1, False)
                ours.add(info.mid)
                state["outstanding"] += 1
                state["next"] += 1
            if state["done"] >= n:
                finished.set()

        t0, cpu0 = time.perf_counter(), time.process_time()
        pump()
        await asyncio.wait_for(finished.wait(), max(60.0, n / 500))
        t1, cpu1 = time.perf_counter(), time.process_time()
    return {
        "acked_per_s": rnd(n / (t1 - t0)),
        "cpu_pct": rnd(100 * (cpu1 - cpu0) / (t1 - t0)),
        "cpu_us_per_msg": rnd((cpu1 - cpu0) / n * 1e6),
        "t_start": t_start,
        "self_peak_rss_mb": rnd(proc_status_mb(os.getpid(), "VmHWM")),
    }


def _outbox_thread_cpu_s() -> float:
    """CPU seconds of the outbox's worker thread (its SQLite work), 0 before it exists."""
    import threading

    for thread in threading.enumerate():
        if thread.name.startswith("outbox") and thread.native_id is not None:
            return thread_cpu_s(os.getpid(), thread.native_id) or 0.0
    return 0.0


async def node_child(
    config_file: Path, n: int, live_ms: float, gc_freeze: bool = False
) -> dict[str, Any]:
    """A real Node on the pre-filled outbox, plus a live door event every `live_ms`;
    `gc_freeze`: gc.freeze() once the Node is built (what a daemon could do at start-up)."""
    import gc

    from edged.config import load_config
    from edged.logs import setup_logging
    from edged.node import Node
    from edged.outbox import Stored
    from edged.payloads import DoorEvent
    from edged.topics import DOOR

    t_start = time.time()
    setup_logging(False)
    config = load_config(config_file)
    node = Node(config, base_dir=config_file.parent)
    memory = {"rss_built_mb": _rss_mb()}  # imports, config and the Node: before any drain
    gc_objects_built = len(gc.get_objects())
    if gc_freeze:
        gc.freeze()
    collector = _GcPauses()
    gc.callbacks.append(collector.on_gc)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    acked = 0
    t_first_ack: float | None = None
    t_all_acked: float | None = None
    cpu_first = cpu_all = 0.0
    outbox_first = outbox_all = 0.0  # the outbox thread's CPU (SQLite)
    puback_ms: list[float] = []
    real_ack = node.outbox.ack

    def ack(msg: Stored) -> None:  # observe PUBACKs; the real ack does the work
        nonlocal acked, t_first_ack, t_all_acked, cpu_first, cpu_all, outbox_first, outbox_all
        if msg.topic.endswith("/events/door"):
            if LIVE_MARKER in msg.payload:
                puback_ms.append(time.time() * 1000 - field_int(msg.payload, b"ts"))
            else:
                acked += 1
                if t_first_ack is None:
                    collector.on = True
                    t_first_ack, cpu_first = time.perf_counter(), time.process_time()
                    outbox_first = _outbox_thread_cpu_s()
                    memory["rss_first_ack_mb"] = _rss_mb()
                if acked == n:
                    collector.on = False
                    t_all_acked, cpu_all = time.perf_counter(), time.process_time()
                    outbox_all = _outbox_thread_cpu_s()
                    memory["rss_all_acked_mb"] = _rss_mb()
                    memory.update(resident_split("self") or {})
                    memory["sqlite_mb"] = sqlite_memory_used() / 2**20
        real_ack(msg)

    node.outbox.ack = ack  # type: ignore[method-assign]

    async def live() -> None:
        while not node.uplink.connected:
            if stop.is_set():
                return
            await asyncio.sleep(0.005)
        period = live_ms / 1000
        next_at = loop.time()
        while not stop.is_set():
            node.host.publish(DOOR, DoorEvent(door=LIVE_DOOR, open=True, source="bench"))
            next_at += period
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    async with asyncio.TaskGroup() as tg:
        tg.create_task(node.run(stop), name="node")
        tg.create_task(live(), name="live")

    out: dict[str, Any] = {"t_start": t_start, "backlog_acked": acked}
    if t_first_ack is not None and t_all_acked is not None and t_all_acked > t_first_ack:
        out["acked_per_s"] = rnd((n - 1) / (t_all_acked - t_first_ack))
        out["cpu_pct"] = rnd(100 * (cpu_all - cpu_first) / (t_all_acked - t_first_ack))
        out["cpu_us_per_msg"] = rnd((cpu_all - cpu_first) / (n - 1) * 1e6)
        out["outbox_cpu_us_per_msg"] = rnd((outbox_all - outbox_first) / (n - 1) * 1e6)
    out["live_puback_p50_ms"] = rnd(percentile(puback_ms, 50))
    out["live_puback_p99_ms"] = rnd(percentile(puback_ms, 99))
    out["self_peak_rss_mb"] = rnd(proc_status_mb(os.getpid(), "VmHWM"))
    out.update({k: rnd(v) for k, v in memory.items()})
    out["gc_ms"] = rnd(collector.ms)
    out.update({f"gc_gen{g}": collector.collections[g] for g in range(3)})
    out["gc_objects_built"] = gc_objects_built
    return out


class _GcPauses:
    """The garbage collector's pauses (gc.callbacks), counted while `on`."""

    def __init__(self) -> None:
        self.on = False
        self.ms = 0.0
        self.collections = [0, 0, 0]
        self._t0 = 0.0

    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        elif self.on:
            self.ms += (time.perf_counter() - self._t0) * 1000
            self.collections[info["generation"]] += 1


def _rss_mb() -> float | None:
    """This process's resident memory now (VmRSS), to tell the import set from the drain."""
    return proc_status_mb(os.getpid(), "VmRSS")


# -- main -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Knobs:
    """How the drained node differs from a default node, for one run (default: not)."""

    gc_freeze: bool = False
    topic_aliases: bool = True


async def one_round(
    n: int, live_ms: float, window: int, tmp: Path, broker: Mosquitto, quiet: bool, knobs: Knobs
) -> dict[str, Any]:
    """Enqueue (which pre-fills a fresh outbox), baseline, then drain (with and without the
    kiosk, each on its own copy of the backlog): one set of figures."""
    assert broker.pid is not None
    limit_s = max(120.0, n / 500)
    result: dict[str, Any] = {}
    backlog = tmp / "backlog"  # the outbox and its state store, journal and marks
    shutil.rmtree(backlog, ignore_errors=True)
    backlog.mkdir()
    outbox = backlog / OUTBOX_FILE
    say(quiet, f"enqueue: {n} door events into {outbox}")
    result.update(await measure_enqueue(outbox, n))
    result["outbox_file_mb"] = rnd(outbox.stat().st_size / 1e6, 2)
    say(quiet, f"  {result['enqueue_per_s']} msg/s durable")

    say(quiet, f"baseline: bare aiomqtt QoS 1, window {window}, {n} messages")
    m0 = proc_cpu_s(broker.pid)
    result.update(await measure_baseline(broker.port, n, window, tmp, limit_s))
    result["baseline_broker_cpu_s"] = rnd(_delta(m0, proc_cpu_s(broker.pid)), 2)
    say(quiet, f"  {result['baseline_per_s']} msg/s")

    say(quiet, f"baseline: bare paho QoS 1 on the loop, window {window}, {n} messages")
    m0 = proc_cpu_s(broker.pid)
    result.update(await measure_baseline(broker.port, n, window, tmp, limit_s, kind="paho"))
    result["baseline_paho_broker_cpu_s"] = rnd(_delta(m0, proc_cpu_s(broker.pid)), 2)
    say(quiet, f"  {result['baseline_paho_per_s']} msg/s")

    say(quiet, f"drain: edged Node, {n} backlog + a live event every {live_ms:g} ms")
    m0 = proc_cpu_s(broker.pid)
    result.update(
        await measure_drain(broker.port, n, backlog, live_ms, tmp, limit_s, kiosk=True, knobs=knobs)
    )
    result["drain_broker_cpu_s"] = rnd(_delta(m0, proc_cpu_s(broker.pid)), 2)
    say(quiet, f"  {result['drain_per_s']} msg/s, backlog drained in {result['backlog_s']} s")

    say(quiet, "drain again, on a copy of the same backlog, the node without the kiosk")
    bare = await measure_drain(
        broker.port, n, backlog, live_ms, tmp, limit_s, kiosk=False, knobs=knobs
    )
    result.update({key: bare[of] for key, of in NO_KIOSK.items()})
    say(quiet, f"  RSS {result['rss_no_kiosk_mb']} MB (with the kiosk {result['rss_mb']} MB)")
    base_rate, drain_rate = result["baseline_per_s"], result["drain_per_s"]
    result["ratio"] = rnd(drain_rate / base_rate, 3) if base_rate and drain_rate else None
    paho_rate = result["baseline_paho_per_s"]
    result["ratio_paho"] = rnd(drain_rate / paho_rate, 3) if paho_rate and drain_rate else None
    base_cpu, drain_cpu = result["baseline_cpu_us_per_msg"], result["drain_cpu_us_per_msg"]
    result["cpu_ratio"] = rnd(base_cpu / drain_cpu, 3) if base_cpu and drain_cpu else None
    return result


NO_KIOSK = {
    "rss_no_kiosk_mb": "rss_mb",
    "drain_no_kiosk_per_s": "drain_per_s",
    "backlog_no_kiosk_s": "backlog_s",
    "live_p99_no_kiosk_ms": "live_p99_ms",
    "drain_no_kiosk_rss_built_mb": "drain_rss_built_mb",
    "drain_no_kiosk_rss_first_ack_mb": "drain_rss_first_ack_mb",
    "drain_no_kiosk_rss_all_acked_mb": "drain_rss_all_acked_mb",
    "drain_no_kiosk_sqlite_mb": "drain_sqlite_mb",
    "drain_no_kiosk_duplicates": "drain_duplicates",
    "outbox_rows_after_no_kiosk": "outbox_rows_after",
}
"""The figures of the drain without the kiosk, by the key of the same figure of the drain."""


def _median(values: list[Any]) -> Any:
    """Median of the numbers (the lower middle one: a value that was measured); else the
    first value, for what is not a number."""
    numbers = sorted(v for v in values if isinstance(v, int | float) and not isinstance(v, bool))
    if len(numbers) != len(values) or not numbers:
        return values[0]
    return numbers[(len(numbers) - 1) // 2]


FIRST = (
    "enqueue_per_s",
    "baseline_per_s",
    "drain_per_s",
    "ratio",
    "cpu_ratio",
    "baseline_paho_per_s",
    "ratio_paho",
    "backlog_100k_s",
    "live_p50_ms",
    "live_p99_ms",
    "rss_mb",
    "rss_no_kiosk_mb",
)
PER_ROUND = (
    "baseline_per_s",
    "baseline_paho_per_s",
    "drain_per_s",
    "ratio",
    "cpu_ratio",
    "backlog_s",
    "live_p99_ms",
    "rss_mb",
    "rss_no_kiosk_mb",
)


async def run_all(
    n: int, live_ms: float, rounds: int, quiet: bool, knobs: Knobs = Knobs()
) -> dict[str, Any]:
    from edged.config.models import BrokerConfig
    from hil.rig.daemon import compile_bytecode

    window = BrokerConfig().window
    load_before = os.getloadavg()[0]
    compiled = compile_bytecode()  # as a node's install has it (see hil.rig.daemon)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="edged-bench-") as tmpdir:
        tmp = Path(tmpdir)
        broker = Mosquitto(tmp, max_queued=10_000_000).start()
        try:
            for r in range(rounds):
                if rounds > 1:
                    say(quiet, f"round {r + 1} of {rounds}")
                results.append(await one_round(n, live_ms, window, tmp, broker, quiet, knobs))
        finally:
            broker.stop()
    # each figure is the median over the rounds; the ratio is the median of each round's
    # own ratio (its baseline and drain ran back to back)
    result = {k: _median([res[k] for res in results]) for k in results[0]}
    key = "backlog_100k_s" if n == 100_000 else f"backlog_{n}_s"
    result[key] = result.pop("backlog_s")
    if key != "backlog_100k_s":
        result["backlog_100k_s"] = None  # only measured with --n 100000 (the default)
    result.update(
        n=n,
        backlog_kind="events",
        message="rnst/v1/bench/node-1/events/door, QoS 1, MQTT 5",
        window=window,
        live_period_ms=live_ms,
        gc_frozen=knobs.gc_freeze,
        topic_aliases=knobs.topic_aliases,
        rounds=rounds,
        bytecode_compiled=compiled,
        cores=os.cpu_count(),
        loadavg_1m_before=round(load_before, 2),
        loadavg_1m_after=round(os.getloadavg()[0], 2),
        python=sys.version.split()[0],
    )
    if rounds > 1:
        result["per_round"] = [{k: res[k] for k in PER_ROUND} for res in results]
    return {**{k: result[k] for k in FIRST}, **{k: v for k, v in result.items() if k not in FIRST}}


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else b - a


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.outbox",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--json", action="store_true", help="print only the JSON object")
    p.add_argument("--n", type=int, default=None, help="backlog size (default 100000)")
    p.add_argument("--quick", action="store_true", help=f"smoke test: n={QUICK_N}")
    p.add_argument("--live-ms", type=float, default=20.0, help="live event period (ms)")
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat enqueue+baseline+drain and report medians (for a busy machine)",
    )
    p.add_argument(
        "--gc-freeze", action="store_true", help="the drained node calls gc.freeze() once built"
    )
    p.add_argument(
        "--no-topic-aliases",
        action="store_true",
        help="the drained node sends every topic by name, as the baseline does",
    )
    # the children (internal)
    p.add_argument(
        "--child", choices=["baseline", "baseline-paho", "node"], help=argparse.SUPPRESS
    )
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--window", type=int, help=argparse.SUPPRESS)
    p.add_argument("--config", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--stats", type=Path, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.child in ("baseline", "baseline-paho"):
        child = baseline_child if args.child == "baseline" else baseline_paho_child
        stats = asyncio.run(child(args.port, args.n, args.window))
        args.stats.write_text(json.dumps(stats))
        return 0
    if args.child == "node":
        config = args.config.resolve()
        stats = asyncio.run(node_child(config, args.n, args.live_ms, args.gc_freeze))
        args.stats.write_text(json.dumps(stats))
        return 0
    n = args.n if args.n is not None else (QUICK_N if args.quick else 100_000)
    if n < 2:
        print("--n must be at least 2", file=sys.stderr)
        return 2
    if args.rounds < 1:
        print("--rounds must be at least 1", file=sys.stderr)
        return 2
    knobs = Knobs(gc_freeze=args.gc_freeze, topic_aliases=not args.no_topic_aliases)
    result = asyncio.run(run_all(n, args.live_ms, args.rounds, args.json, knobs))
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
