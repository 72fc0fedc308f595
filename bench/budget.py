"""`python -m bench.budget --json`: what a vehicle costs on a cellular SIM, measured.

One simulated service day compressed in time (`bench.warp`: the node's clock runs `--speed`
times faster, its config otherwise the shipped shuttle's): `gps.sim` along the Creuse route
with its stops, a CAN replay (the shipped log, each frame id at most once a log-second,
transport and DM1 frames all kept) with its door cycles, ignition and a DM1 fault, and a dead
zone every 20 minutes (`--dead-s` long): the node's side of the link ends, the broker's hears
nothing more (no FIN, no TLS goodbye) until it ends it itself, as when a shuttle drives out of
coverage (`MqttProxy.blackhole`). The node talks mutual TLS to the shipped Mosquitto
config (`hil.fleetbroker`), through a TCP proxy that counts every byte crossing the socket,
both ways: what the SIM is billed for, above IP. Dispatch (a TLS subscriber on the ops
listener) counts what arrives, per topic.

Each phase is the same day with a config: `baseline` is today's payloads carrying the same
information (JSON, no topic aliases, no TLS resumption, a full health report every 30 s,
`vehicle` every 10 s); `default` the config model's defaults with every lever (JSON, no
batching); `deflate` and `cbor` those defaults in a compact encoding; `shipped` (the
headline) the shipped shuttle config's own choices (`encoding = "deflate"`, `batch_s = 20`:
samples batched; and the handshake lines of its `[broker.tls]` block, which an operator
uncomments with the fleet's files: TLS 1.2 resumed by session id). See bench/README.md and
docs/budget.md.
"""

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import ssl
import statistics
import sys
import tempfile
import time
import tomllib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt

from bench.common import say
from bench.wire import breakdown, read_keylog
from drivers.can.candump import format_line
from edged.codec import PayloadError, messages
from edged.uplink.cancellable import CancellableClient
from hil.can.fms import DM1, EEC1, FmsBus, Frame
from hil.fleetbroker import FleetBroker
from hil.proxy import Connection, MqttProxy

ROOT = Path(__file__).resolve().parents[1]
SHUTTLE = ROOT / "config" / "shuttle.toml"
ROUTE = ROOT / "config" / "routes" / "creuse-shuttle.json"
FLEET = "bench"
PREFIX = "rnst/v1"
TLS_RECORD_OVERHEAD = 22  # TLS 1.3 AEAD record: 5 header + 16 tag + 1 content type
AIM_PER_HOUR = 120_000
STRETCH_PER_HOUR = 60_000
AIM_PER_RECONNECT = 1_000
KEEP_BYTES = 16384  # of each connection, each way: the reconnect's handshake and first packets
DRIVE_S = 1500.0  # a run of the shuttle, engine on
LAYOVER_S = 300.0  # engine off at the terminus

def shipped_broker() -> str:
    """The shipped shuttle config's payload and batching choices, as `[broker]` lines."""
    broker = tomllib.loads(SHUTTLE.read_text())["broker"]
    keys = ("encoding", "batch_s", "batch_max", "will_delay_s")
    return "\n".join(f"{k} = {json.dumps(broker[k])}" for k in keys if k in broker)


TLS_FILES = ("ca_file", "cert_file", "key_file")


def shipped_tls(text: str | None = None) -> str:
    """The handshake lines of the shipped shuttle config's `[broker.tls]` block: the block
    is commented (its files are the fleet's), an operator uncomments it whole. Its file
    lines are left out (the bench has its own fleet's files)."""
    lines = (SHUTTLE.read_text() if text is None else text).splitlines()
    try:
        start = lines.index("# [broker.tls]") + 1
    except ValueError:
        return ""
    block = []
    for line in lines[start:]:
        if not re.fullmatch(r"# [a-z_]+ = \S.*", line):
            break
        block.append(line[2:])
    table = tomllib.loads("\n".join(block))
    return "\n".join(f"{k} = {json.dumps(v)}" for k, v in table.items() if k not in TLS_FILES)


PHASES: dict[str, dict[str, str]] = {
    # what an operator gets from config/shuttle.toml as shipped (deflate, samples batched,
    # and over TLS the handshake its [broker.tls] block chooses)
    "shipped": {"broker": shipped_broker(), "tls": shipped_tls()},
    "baseline": {
        "broker": 'encoding = "json"\ntopic_aliases = false',
        "tls": "resume = false",
        "health": "beat_s = 0",
        "vehicle": "on_change = false",
    },
    "default": {},
    "deflate": {"broker": 'encoding = "deflate"'},
    "cbor": {"broker": 'encoding = "cbor"'},
    "deflate-no-aliases": {"broker": 'encoding = "deflate"\ntopic_aliases = false'},
    "deflate-no-resume": {"broker": 'encoding = "deflate"', "tls": "resume = false"},
    "parked": {"broker": 'encoding = "deflate"', "parked": "yes"},
    "parked-json": {"parked": "yes"},
    "deflate-tls12": {"broker": 'encoding = "deflate"', "tls": 'max_version = "1.2"'},
    # the reconnect's levers, one at a time then together (docs/budget.md)
    "deflate-lean-hello": {
        "broker": 'encoding = "deflate"',
        "tls": 'min_version = "1.3"\nmiddlebox_compat = false',
    },
    "deflate-will-delay": {"broker": 'encoding = "deflate"\nwill_delay_s = 300'},
    "deflate-tls12-chacha": {
        "broker": 'encoding = "deflate"',
        "tls": 'max_version = "1.2"\nciphers = "ECDHE+CHACHA20"',
    },
    "deflate-lean": {
        "broker": 'encoding = "deflate"\nwill_delay_s = 300',
        "tls": 'min_version = "1.3"\nmiddlebox_compat = false',
    },
    # TLS 1.2 resumed by session id, from the broker's session cache: no ticket both ways
    "deflate-tls12-by-id": {
        "broker": 'encoding = "deflate"',
        "tls": 'max_version = "1.2"\nciphers = "ECDHE+CHACHA20"\ntickets = false',
    },
    "deflate-tls12-by-id-will-delay": {
        "broker": 'encoding = "deflate"\nwill_delay_s = 300',
        "tls": 'max_version = "1.2"\nciphers = "ECDHE+CHACHA20"\ntickets = false',
    },
    "deflate-tls12-chacha-will-delay": {
        "broker": 'encoding = "deflate"\nwill_delay_s = 300',
        "tls": 'max_version = "1.2"\nciphers = "ECDHE+CHACHA20"',
    },
    "deflate-150m": {
        "broker": 'encoding = "deflate"',
        "moving": "[services.position.moving]\nmin_distance_m = 150",
    },
    # samples batched by the uplink ([broker] batch_s), deflated
    "deflate-batch10": {"broker": 'encoding = "deflate"\nbatch_s = 10'},
    "deflate-batch15": {"broker": 'encoding = "deflate"\nbatch_s = 15'},
    "deflate-batch20": {"broker": 'encoding = "deflate"\nbatch_s = 20'},
    "deflate-batch30": {"broker": 'encoding = "deflate"\nbatch_s = 30'},
    "deflate-batch60": {"broker": 'encoding = "deflate"\nbatch_s = 60'},
    "json-batch30": {"broker": 'encoding = "json"\nbatch_s = 30'},
    "deflate-100m": {
        "broker": 'encoding = "deflate"',
        "moving": "[services.position.moving]\nmin_distance_m = 100",
    },
}
EVENTS = ("events/", "alarm/", "trip", "reply/", "kiosk/requests")
MUST_APPEAR = ("state", "position", "health", "vehicle", "vehicle/faults", "events/door", "trip")
"""Streams every driving phase delivers (a parked one: the first three): an absent stream
has no seq gap to show, so it is counted."""
STARTUP_ALLOWANCE_S = 300.0
"""Node time the sped-up node may take to start (imports, TLS) before its bus replays."""


def node_id(phase: str) -> str:
    """The phase's node: ids of one length (the shipped `shuttle-07`'s), since the id is in
    the client id, the will's and every topic, and the certificate inside each TLS ticket."""
    return f"shuttle-{list(PHASES).index(phase):02d}"


def trips_expected(hours: float, off_after_s: float = 30.0, startup_s: float = -1.0) -> int:
    """Trips the day surely closes: one per layover begun `off_after_s` before the end, the
    node's start taking up to STARTUP_ALLOWANCE_S (or `startup_s`: 0 gives the most)."""
    loop = DRIVE_S + LAYOVER_S
    startup = STARTUP_ALLOWANCE_S if startup_s < 0 else startup_s
    usable = hours * 3600 - startup - DRIVE_S - off_after_s
    return 0 if usable < 0 else int(usable // loop) + 1


def streams(seen: "Seen", hours: float, parked: bool) -> dict[str, Any]:
    """What must have reached dispatch, counted: trips against the layovers the day had,
    and every stream of MUST_APPEAR present."""
    must = MUST_APPEAR[:3] if parked else MUST_APPEAR
    expected = 0 if parked else trips_expected(hours)
    return {
        "counts": {t: seen.per_topic[t] for t in must},
        "trips": seen.per_topic["trip"],
        "trips_expected_min": expected,
        # more: the replay stalled past ignition_off_after_s (a loaded machine), an artefact
        "trips_expected_max": 0 if parked else trips_expected(hours, startup_s=0.0),
        "missing": [t for t in must if not seen.per_topic[t] and (t != "trip" or expected)],
        "ok": seen.per_topic["trip"] >= expected
        and all(seen.per_topic[t] for t in must if t != "trip" or expected),
    }


def service_can_log(out: Path, drive_s: float = DRIVE_S, layover_s: float = LAYOVER_S) -> Path:
    """The shuttle's bus for one run and its layover, replayed in a loop: `drive_s` of the
    FMS bus profile (the shipped log's: stops with doors, a DM1 fault, lifetime totals that
    keep growing), then the engine off at the terminus for `layover_s` (the bus silent, as
    an FMS bus is with the ignition off) and a frame of another ECU as it wakes. So each loop
    closes one trip (ignition off after `ignition_off_after_s`) and opens the next: without
    the layover the engine idles all day and no trip would ever close. Each frame id at most
    once per log-second (the vehicle service samples the latest values; a 107 frames/s bus
    would cost the sped-up node its CPU), transport-protocol and DM1 frames all kept."""
    kept: list[Frame] = []
    last: dict[int, float] = {}
    for t, can_id, data in FmsBus().frames(drive_s):
        pgn = (can_id >> 8) & 0x3FFFF
        if (pgn >> 8) & 0xFF in (0xEC, 0xEB) or pgn == DM1 or t - last.get(can_id, -9.0) >= 1:
            last[can_id] = t
            kept.append((t, can_id, data))
    _, woke_id, woke_data = next(f for f in kept if (f[1] >> 8) & 0x3FFFF != EEC1)
    kept.append((kept[-1][0] + layover_s, woke_id, woke_data))
    out.write_text("".join(format_line(t, "can0", i, d) + "\n" for t, i, d in kept))
    return out


def parked_route(work: Path) -> Path:
    """The vehicle at the Guéret market all day (engine off: no CAN)."""
    path = work / "parked.json"
    here = {"lat": 46.1714, "lon": 1.8717}
    path.write_text(
        json.dumps(
            {
                "name": "parked",
                "waypoints": [
                    {**here, "stop": "Guéret – marché", "dwell_s": 86400},
                    {**here, "lat": 46.1715},
                ],
            }
        )
    )
    return path


def geofences() -> str:
    """The shipped shuttle's geofences, as they are."""
    text = SHUTTLE.read_text()
    start = text.index("[services.geofences]")
    return text[start : text.index("[[drivers]]", start)]


def node_config(
    work: Path, fleet: FleetBroker, node: str, port: int, phase: dict[str, str], speed: float
) -> Path:
    crt, key = fleet.cert(f"{FLEET}.{node}")
    parked = bool(phase.get("parked"))
    route = parked_route(work) if parked else ROUTE
    can = (
        ""
        if parked
        else f"""
[[drivers]]
name = "can"
driver = "can.replay"
[drivers.options]
log = "{work / "can.log"}"
loop = true
max_gap_s = {LAYOVER_S + 60:g}
"""
    )
    text = f"""
[node]
fleet = "{FLEET}"
id = "{node}"
profile = "shuttle"
name = "Navette Felletin – Guéret"

[broker]
host = "localhost"
port = {port}
reconnect_min_s = 1.0
reconnect_max_s = 60.0
publish_timeout_s = 300   # bench: real waits count {speed:g} times longer in the node's time
{phase.get("broker", "")}

[broker.tls]
ca_file = "{fleet.ca}"
cert_file = "{crt}"
key_file = "{key}"
{phase.get("tls", "")}

[outbox]
path = "{work / node}-outbox.sqlite"

[health]
lag_above_ms = {1000 * speed:g}   # bench: loop lag is seen {speed:g} times longer
{phase.get("health", "")}

[services.position]
qos = 0
{phase.get("moving", "")}

[services.vehicle]
{phase.get("vehicle", "")}

[services.kiosk]
enabled = false

{geofences()}

[[drivers]]
name = "gps"
driver = "gps.sim"
[drivers.options]
route = "{route}"
rate_hz = 1.0
jitter_m = 2.0
seed = 20
{can}"""
    path = work / f"{node}.toml"
    path.write_text(text)
    return path


@dataclass
class Seen:
    """What dispatch received in one phase."""

    per_topic: Counter[str] = field(default_factory=Counter)  # messages (a batch's each)
    payload_bytes: Counter[str] = field(default_factory=Counter)
    publishes: Counter[str] = field(default_factory=Counter)  # MQTT messages
    births: list[float] = field(default_factory=list)  # time.monotonic() of each
    seqs: dict[tuple[str, str], set[int]] = field(default_factory=lambda: defaultdict(set))
    undecodable: int = 0


async def watch(
    port: int, tls: ssl.SSLContext, base: str, seen: Seen, ready: asyncio.Event
) -> None:
    async with CancellableClient(
        "127.0.0.1",
        port,
        identifier=f"bench-{os.getpid()}",
        tls_context=tls,
        max_queued_incoming_messages=0,
    ) as client:
        await client.subscribe(f"{base}/#", qos=1)
        ready.set()
        async for m in client.messages:
            payload = m.payload if isinstance(m.payload, bytes) else b""
            suffix = str(m.topic)[len(base) + 1 :]
            topic = "alarm/*" if suffix.startswith("alarm/") else suffix
            topic = "reply/*" if topic.startswith("reply/") else topic
            try:
                items = messages(payload)
            except PayloadError:
                seen.undecodable += 1
                continue
            seen.publishes[topic] += 1
            seen.payload_bytes[topic] += len(payload)
            for item in items:
                seen.per_topic[topic] += 1
                if topic == "state" and item.get("state") == "online":
                    seen.births.append(time.monotonic())
                if isinstance(item, dict) and isinstance(item.get("seq"), int):
                    seen.seqs[(suffix, str(item.get("epoch")))].add(item["seq"])


def gaps(seen: Seen) -> dict[str, int]:
    """Missing seqs per event stream (what dispatch relies on: must be 0)."""
    out: dict[str, int] = {}
    for (suffix, _epoch), seqs in seen.seqs.items():
        if suffix.startswith(EVENTS):
            missing = max(seqs) - min(seqs) + 1 - len(seqs)
            out[suffix] = out.get(suffix, 0) + missing
    return out


@dataclass
class Setup:
    """A connection's setup: until its birth reached dispatch, or, where the node sent no
    birth (its will delay proved `online` still retained), until its CONNACK came."""

    conn: Connection
    end: float  # time.monotonic() the setup ended
    bytes: int
    birth: bool


def setups(
    conns: list[Connection], births: list[float], keys: dict[bytes, dict[str, bytes]]
) -> list[Setup]:
    """Each connection that went into service: the TLS handshake, CONNECT, CONNACK,
    SUBSCRIBE, SUBACK, the birth and its PUBACK, and whatever else crossed before the birth
    arrived; without a birth, what crossed until the CONNACK, for a connection that then
    carried messages (a connection lost during its setup is not one)."""
    out = []
    for conn in conns:
        end = conn.closed if conn.closed is not None else float("inf")
        birth = next((b for b in births if conn.opened <= b <= end), None)
        if birth is not None:
            out.append(Setup(conn, birth, sum(n for t, _, n in conn.chunks if t <= birth), True))
            continue
        connack = connack_at(conn, keys)
        if connack is not None:
            n = sum(n for t, _, n in conn.chunks if t <= connack)
            if conn.total > n + 1000:
                out.append(Setup(conn, connack, n, False))
    return out


def connack_at(conn: Connection, keys: dict[bytes, dict[str, bytes]]) -> float | None:
    """When the CONNACK's last byte crossed (None: not seen, or not decrypted)."""
    items = breakdown(bytes(conn.head[True]), bytes(conn.head[False]), keys).items
    end = next((i.end for i in items if not i.to_broker and i.what == "CONNACK"), None)
    if end is None:
        return None
    down = 0
    for t, to_broker, n in conn.chunks:
        if not to_broker:
            down += n
            if down >= end:
                return t
    return None


def resumed(conn: Connection, keys: dict[bytes, dict[str, bytes]]) -> bool:
    """Whether the connection's TLS handshake resumed a session (a ticket or a session id)."""
    return bool(breakdown(bytes(conn.head[True]), bytes(conn.head[False]), keys).resumed)


def until(conn: Connection, when: float) -> dict[bool, int]:
    """Bytes each way that crossed `conn` by `when`."""
    out = {True: 0, False: 0}
    for t, to_broker, n in conn.chunks:
        if t <= when:
            out[to_broker] += n
    return out


def reconnect_breakdown(
    reconnects: list[Setup], keys: dict[bytes, dict[str, bytes]]
) -> dict[str, Any] | None:
    """The reconnect of median bytes, item by item (bench.wire): what to cut."""
    if not reconnects:
        return None
    setup = sorted(reconnects, key=lambda r: r.bytes)[len(reconnects) // 2]
    conn = setup.conn
    out = breakdown(bytes(conn.head[True]), bytes(conn.head[False]), keys).json(
        until(conn, setup.end)
    )
    out["bytes_counted"] = setup.bytes  # as bytes_per_reconnect counts it: must equal `bytes`
    out["birth"] = setup.birth
    return out


async def run_phase(
    name: str, fleet: FleetBroker, work: Path, args: argparse.Namespace, quiet: bool
) -> dict[str, Any]:
    node = node_id(name)
    proxy = await MqttProxy(
        fleet.node_port, raw=True, keep_chunks=True, keep_bytes=KEEP_BYTES
    ).start()
    keylog = work / f"{node}.keys"
    config = node_config(work, fleet, node, proxy.port, PHASES[name], args.speed)
    seen = Seen()
    ready = asyncio.Event()
    watcher = asyncio.create_task(
        watch(
            fleet.ops_port, fleet.tls_context("dispatch"), f"{PREFIX}/{FLEET}/{node}", seen, ready
        )
    )
    await asyncio.wait_for(ready.wait(), 10)
    log = (work / f"{node}.log").open("ab")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.warp",
        str(args.speed),
        str(config),
        stdout=log,
        stderr=asyncio.subprocess.STDOUT,
        cwd=ROOT,
        env={**os.environ, "EDGED_BENCH_KEYLOG": str(keylog)},
    )
    real_s = args.hours * 3600 / args.speed
    started = time.monotonic()
    dead_zones = 0
    try:
        every = args.dead_every_s / args.speed
        while (left := real_s - (time.monotonic() - started)) > 0:
            await asyncio.sleep(min(every, left))
            if time.monotonic() - started >= real_s:
                break
            proxy.down = True
            proxy.blackhole()
            dead_zones += 1
            await asyncio.sleep(args.dead_s / args.speed)
            proxy.down = False
    finally:
        elapsed = time.monotonic() - started
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 20)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        log.close()
        await asyncio.sleep(0.5)
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await watcher
        await proxy.close()
    hours = elapsed * args.speed / 3600
    conns = proxy.connections
    wire = sum(c.total for c in conns)
    keys = read_keylog(keylog.read_text()) if keylog.exists() else {}
    each = setups(conns, seen.births, keys)
    first = [s.bytes for s in each if conns and s.conn is conns[0]]
    reconnects = [s for s in each if not conns or s.conn is not conns[0]]
    setup = [s.bytes for s in reconnects]
    say(quiet, f"{name}: {wire / hours / 1000:.1f} KB/h over {hours:.2f} simulated h")
    return {
        "hours": round(hours, 3),
        "bytes_per_hour": round(wire / hours),
        "bytes_up_per_hour": round(sum(c.up for c in conns) / hours),
        "bytes_down_per_hour": round(sum(c.down for c in conns) / hours),
        "messages_per_hour": round(sum(seen.per_topic.values()) / hours),
        "publishes_per_hour": round(sum(seen.publishes.values()) / hours),
        "bytes_per_reconnect": round(statistics.median(setup)) if setup else None,
        "bytes_per_reconnect_max": max(setup) if setup else None,
        "bytes_first_connection": first[0] if first else None,
        "reconnects": len(conns) - 1,
        "dead_zones": dead_zones,
        "connections_not_in_service": len(conns) - 1 - len(setup),
        "reconnects_without_birth": sum(not s.birth for s in reconnects),
        "reconnects_resumed": sum(resumed(s.conn, keys) for s in reconnects),
        # what the broker sent into the dead zones (never reached the SIM: not in the totals)
        "bytes_into_dead_zones": sum(c.holed for c in conns),
        "reconnect_breakdown": reconnect_breakdown(reconnects, keys),
        "per_topic": {
            t: {
                "messages_per_hour": round(seen.per_topic[t] / hours, 1),
                "payload_bytes_per_hour": round(seen.payload_bytes[t] / hours),
                "payload_bytes_mean": round(seen.payload_bytes[t] / seen.publishes[t], 1),
            }
            for t in sorted(seen.per_topic)
        },
        "event_seq_gaps": gaps(seen),
        "streams": streams(seen, hours, bool(PHASES[name].get("parked"))),
        "undecodable": seen.undecodable,
        "node_exit": proc.returncode,
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    quiet = args.json and not args.verbose
    phases = args.phases.split(",")
    unknown = [p for p in phases if p not in PHASES]
    if unknown:
        raise SystemExit(f"unknown phase(s) {unknown}: choose among {', '.join(PHASES)}")
    with tempfile.TemporaryDirectory(prefix="edged-budget-") as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        work.chmod(0o755)  # Mosquitto drops to its own user and must reach its files
        service_can_log(work / "can.log")
        fleet = FleetBroker([(FLEET, node_id(p)) for p in phases], ["dispatch"], workdir=work)
        fleet.start()
        loadavg = os.getloadavg()[0]
        try:
            results = {p: await run_phase(p, fleet, work, args, quiet) for p in phases}
        finally:
            fleet.stop()
    # the headline: the shipped config (the default reporting rules, its encoding and
    # batching); phases that change the rules, such as deflate-100m, are knobs under `phases`
    best = next(
        (p for p in (args.headline, "shipped", "deflate", "default") if p in results), phases[-1]
    )
    base = results.get("baseline")
    top = results[best]
    keepalive_s = 30
    return {
        "phase": best,
        "bytes_per_hour": top["bytes_per_hour"],
        "messages_per_hour": top["messages_per_hour"],
        "bytes_per_reconnect": top["bytes_per_reconnect"],
        "reconnect_breakdown": top["reconnect_breakdown"],
        "per_topic": top["per_topic"],
        "baseline_bytes_per_hour": base["bytes_per_hour"] if base else None,
        "baseline_messages_per_hour": base["messages_per_hour"] if base else None,
        "baseline_bytes_per_reconnect": base["bytes_per_reconnect"] if base else None,
        "ratio": round(top["bytes_per_hour"] / base["bytes_per_hour"], 3) if base else None,
        "aims": {
            "bytes_per_hour": AIM_PER_HOUR,
            "stretch_bytes_per_hour": STRETCH_PER_HOUR,
            "bytes_per_reconnect": AIM_PER_RECONNECT,
        },
        "per_hour_ok": top["bytes_per_hour"] <= AIM_PER_HOUR,
        "per_reconnect_ok": (top["bytes_per_reconnect"] or 1e9) <= AIM_PER_RECONNECT,
        "keepalive_bytes_per_hour_computed": round(
            3600 / keepalive_s * 2 * (2 + TLS_RECORD_OVERHEAD)
        ),
        "streams_ok": all(r["streams"]["ok"] for r in results.values()),
        "trips": {p: r["streams"]["trips"] for p, r in results.items()},
        "phases": results,
        "speed": args.speed,
        "dead_every_s": args.dead_every_s,
        "dead_s": args.dead_s,
        "loadavg_1m_before": round(loadavg, 2),
        "loadavg_1m_after": round(os.getloadavg()[0], 2),
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.budget", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--hours", type=float, default=10.0, help="simulated hours per phase")
    parser.add_argument("--speed", type=float, default=60.0, help="simulated s per real s")
    parser.add_argument("--dead-every-s", type=float, default=1200.0, help="a dead zone this often")
    parser.add_argument("--dead-s", type=float, default=120.0, help="how long each lasts")
    parser.add_argument(
        "--phases", default="baseline,default,deflate,shipped", help=", ".join(PHASES)
    )
    parser.add_argument("--headline", default="shipped", help="the phase the top keys show")
    parser.add_argument("--quick", action="store_true", help="1 simulated hour per phase")
    parser.add_argument("--keep", type=Path, help="keep the work directory (configs, node logs)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.hours = 1.0
    result = asyncio.run(main_async(args))
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
