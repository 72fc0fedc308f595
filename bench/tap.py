"""Tap latency: card to lock relay, locally and through libnfc, and tap to PUBACK.

    python -m bench.tap --json                     # the full run (about 31 s)
    python -m bench.tap                            # a table, then the JSON; progress on stderr
    python -m bench.tap --taps 30 --presentations 8 --baseline-n 20 --json   # smoke test

One real `edged.node.Node` runs in this process, built from TOML text by the config
loader: a private Mosquitto on a free loopback port, a temporary outbox (default
`[outbox]`, so `flush_interval_ms` = 20), access on (a fleet secret file, mode 600; lists
signed with an Ed25519 key generated here and applied with `access.update` as dispatch
would), occupancy on, kiosk off, and three drivers: `nfc.sim` ("front-reader"),
`nfc.libnfc` ("door-reader", default options, on a `Pn532Emulator` pty in this process)
and `gpio.gpiozero` with `pin_factory = "mock"` (lock relay, green, red, buzzer). Every
card used is on the lists, each one is used once, so no tap is a repeat and every tap is
granted. The relay pulse (`[services.access] pulse_s`) is shortened to `--pulse-ms` so
that the relay is released before the next card.

Figures (the relay's rising edge is read from gpiozero's own record of the mock pin,
`MockPin.states`: a list of (seconds since the previous change, level), rebuilt into
`time.monotonic()` instants from the moment the list was cleared):

- decision: `nfc.sim` `present(uid)` (the tap's `Tap.ts`) to the relay pin going high;
            `--taps` taps, each after a random gap of `--gap-ms` (min, max), called from
            the event loop. Also `decided_*`: the access service's own `last_decision_s`
            (`Tap.ts` to the instant before it emits `Unlock`).
- pn532:    `Pn532Emulator.put(uid)` (a card on the antenna) to the relay pin going high,
            through libnfc's pn532_uart on a pty, the driver's poll thread, the node;
            `--presentations` cards, each put at a random phase of the poll cycle (a
            random wait in [0, poll_interval) after the relay was released), taken off once
            the relay opened. `pn532_tap_*`: put to the driver's `Tap.ts`.
- puback:   `Tap.ts` of each `nfc.sim` tap to the moment the uplink acknowledged its
            `events/tap` message to the outbox (`outbox.ack`, called when aiomqtt's QoS 1
            publish returns, i.e. on PUBACK). The benchmark wraps `node.outbox.ack` to note
            the time and the message's `card_ref`, then calls the original: it observes,
            nothing is replaced. `stored_*`: the same from `Tap.ts` to the commit of the
            tap's event (a wrapper on `put_nowait` watching the future it returns).

Baselines, measured in the same run before the node starts:

- baseline_pin_write: a bare gpiozero `OutputDevice.on()` on its own MockFactory, from
  before the call to the pin's recorded change (the floor of the relay figure);
- baseline_puback: a bare aiomqtt 2.5 client, MQTT 5, QoS 1 publish of a tap-sized
  payload to the same broker, from the call until it returns (PUBACK);
- baseline_poll: one `nfc_initiator_select_passive_target` round trip through libnfc to a
  second emulator, the way the driver opens and polls it, with no card and with a card
  (the driver needs two reads with a card, `confirm_reads` = 2);
- baseline_journal_write / _sync: one tap-sized record written to a tap journal on the
  outbox's filesystem (`edged.outbox.journal`), without and with a sync to the disk
  (`msync`): what the decision pays to have the tap recorded before the relay moves
  (`--journal-sync` runs the node with the sync).

Nothing fails on a missed aim: each aim has an `*_ok` flag, and the exit code is 0 unless
the benchmark itself broke.
"""

import argparse
import asyncio
import bisect
import contextlib
import ctypes
import json
import logging
import os
import random
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import Mosquitto, percentile, proc_status_mb, rnd, say
from edged.uplink.cancellable import CancellableClient

AIMS_MS = {"decision_p99_ms": 5.0, "pn532_p99_ms": 150.0, "puback_p99_ms": 50.0}
FLEET, NODE_ID = "bench", "tap-1"
SIM_READER, PN532_READER = "front-reader", "door-reader"
LOCK, GREEN, RED, BUZZER = 22, 23, 24, 25
BASELINE_PIN = 5
WARMUP = 10  # taps (and presentations) before the measured ones: first-call costs
ACK_WAIT_S = 10.0


def ms(seconds: float) -> float:
    return seconds * 1000.0


def stats_ms(values: list[float], digits: int = 3) -> dict[str, float | None]:
    """p50, p99 and max of values already in ms."""
    return {
        "p50": rnd(percentile(values, 50), digits),
        "p99": rnd(percentile(values, 99), digits),
        "max": rnd(max(values), digits) if values else None,
    }


# -- the relay's own record --------------------------------------------------------------


class PinRecord:
    """Rising edges of a gpiozero MockPin, as `time.monotonic()` instants.

    `MockPin.states` holds (seconds since the previous change, level), starting from
    `clear_states()`, whose own `monotonic()` reading (gpiozero's `_last_change`, the same
    clock) is the base; where a gpiozero has no such attribute, the instant just before the
    call (a process descheduled between the two moved every edge that much earlier: a
    start then seemed to have no edge)."""

    def __init__(self, pin: Any) -> None:
        self.pin = pin
        self.t0 = 0.0
        self.clear()

    def clear(self) -> None:
        before = time.monotonic()
        self.pin.clear_states()
        base = getattr(self.pin, "_last_change", None)
        self.t0 = base if isinstance(base, float) else before

    def rising(self) -> list[float]:
        t, edges = self.t0, []
        for state in self.pin.states[1:]:
            t += state.timestamp
            if state.state:
                edges.append(t)
        return edges


def match_edges(starts: list[float], edges: list[float]) -> tuple[list[float], int]:
    """Latency (s) from each start to the first rising edge after it and before the next
    start; and how many starts had none."""
    out: list[float] = []
    missed = 0
    for i, t in enumerate(starts):
        j = bisect.bisect_left(edges, t)
        end = starts[i + 1] if i + 1 < len(starts) else float("inf")
        if j < len(edges) and edges[j] < end:
            out.append(edges[j] - t)
        else:
            missed += 1
    return out, missed


# -- baselines ---------------------------------------------------------------------------


def baseline_journal(tmp: Path, n: int, payload: bytes, *, sync: bool) -> list[float]:
    """ms of one tap-sized record written to a tap journal (`edged.outbox.journal`) on the
    outbox's filesystem: the cost the decision now carries, with and without msync."""
    from edged.outbox.journal import Journal, Record

    journal = Journal(tmp / f"baseline-{'sync' if sync else 'write'}-taps", sync=sync)
    journal.open(0)
    topic = f"rnst/v1/{FLEET}/{NODE_ID}/events/tap"
    out = []
    try:
        for i in range(n):
            rn = journal.take_rn()
            record = Record(rn, topic, "events/tap", i + 1, 1, 1, False, False, 0, payload)
            t = time.perf_counter()
            journal.write(record)
            out.append(ms(time.perf_counter() - t))
            journal.folded([rn])  # as the writer does after each commit
    finally:
        journal.close()
    return out


def baseline_pin_write(n: int) -> list[float]:
    """ms from before `OutputDevice.on()` to the mock pin's recorded change."""
    from gpiozero import OutputDevice
    from gpiozero.pins.mock import MockFactory

    device = OutputDevice(BASELINE_PIN, initial_value=False, pin_factory=MockFactory())
    try:
        record = PinRecord(device.pin)
        starts = []
        for _ in range(n):
            starts.append(time.monotonic())
            device.on()
            device.off()
        latencies, _ = match_edges(starts, record.rising())
    finally:
        device.close()
    return [ms(x) for x in latencies]


async def baseline_puback(port: int, n: int, payload: bytes, topic: str) -> list[float]:
    """ms from a bare aiomqtt QoS 1 publish call to its return (PUBACK)."""
    import aiomqtt

    rng = random.Random(2)
    out: list[float] = []
    async with CancellableClient(
        "127.0.0.1", port, identifier="bench-tap-baseline", protocol=aiomqtt.ProtocolVersion.V5
    ) as client:
        for _ in range(3):  # the first publishes of a session are slower
            await client.publish(topic, payload, qos=1)
        for _ in range(n):
            await asyncio.sleep(rng.uniform(0.002, 0.01))
            t = time.monotonic()
            await client.publish(topic, payload, qos=1)
            out.append(ms(time.monotonic() - t))
    return out


def baseline_polls(n: int) -> tuple[list[float], list[float]]:
    """ms of one libnfc poll (select passive target, ISO14443A 106 kbps) on a second
    emulator, opened the way `nfc.libnfc` opens it: with no card, then with one held."""
    import pynfc.nfc as nfc  # loads libfreefare and libnfc

    from drivers.nfc import abi
    from hil.nfc.emulator import Pn532Emulator

    with Pn532Emulator() as emu:
        context = ctypes.POINTER(nfc.struct_nfc_context)()
        nfc.nfc_init(ctypes.byref(context))
        if not context:
            raise RuntimeError("nfc_init failed")
        connstring = nfc.nfc_connstring()
        connstring.value = emu.connstring.encode()
        device = nfc.nfc_open(context, connstring)
        try:
            if not device:
                raise RuntimeError(f"libnfc could not open the emulator at {emu.connstring}")
            if nfc.nfc_initiator_init(device) < 0:
                raise RuntimeError("nfc_initiator_init failed on the emulator")
            for prop in (nfc.NP_INFINITE_SELECT, nfc.NP_AUTO_ISO14443_4):
                nfc.nfc_device_set_property_bool(device, prop, False)
            buffer = ctypes.create_string_buffer(1024)
            target = abi.NATIVE.Target.from_buffer(buffer)  # pynfc's fits x86-64 only
            modulation = abi.NATIVE.Modulation(abi.NMT_ISO14443A, abi.NBR_106)
            select = abi.select_passive_target(nfc)

            def polls(expect_card: bool) -> list[float]:
                out = []
                for _ in range(n):
                    t = time.perf_counter()
                    res = select(device, modulation, None, 0, ctypes.byref(target))
                    out.append(ms(time.perf_counter() - t))
                    if (res > 0) != expect_card:
                        raise RuntimeError(f"a baseline poll returned {res}")
                return out

            empty = polls(False)
            emu.put(bytes.fromhex("04b0a5e1"))
            card = polls(True)
        finally:
            if device:
                nfc.nfc_close(device)
            nfc.nfc_exit(context)
    return empty, card


# -- the node ----------------------------------------------------------------------------


KIOSK_OFF = "[services.kiosk]\nenabled = false"


def node_config_text(
    tmp: Path,
    port: int,
    *,
    connstring: str,
    secret: Path,
    public_key: str,
    pulse_s: float,
    poll_interval_s: float | None,
    journal_sync: bool = False,
    extra: str = "",
) -> str:
    """`extra` replaces `[services.kiosk] enabled = false` (bench.portal turns it on)."""
    poll = "" if poll_interval_s is None else f"poll_interval_s = {poll_interval_s}\n"
    return f"""
[node]
fleet = "{FLEET}"
id = "{NODE_ID}"
profile = "shuttle"

[broker]
host = "127.0.0.1"
port = {port}
protocol = "5"

[outbox]
path = "{tmp / "outbox.sqlite"}"
journal_sync = {"true" if journal_sync else "false"}

[services.access]
enabled = true
secret_file = "{secret}"
lists_public_key = "{public_key}"
unknown_card = "deny"
pulse_s = {pulse_s}
together_s = 0  # cards follow each other faster than riders: each one is measured

[services.occupancy]
enabled = true
capacity = 30
count_from = ["taps"]

{extra or KIOSK_OFF}

[[drivers]]
name = "{SIM_READER}"
driver = "nfc.sim"

[[drivers]]
name = "{PN532_READER}"
driver = "nfc.libnfc"
[drivers.options]
connstring = "{connstring}"
{poll}
[[drivers]]
name = "gpio"
driver = "gpio.gpiozero"
[drivers.options]
pin_factory = "mock"
lock = {{ pin = {LOCK} }}
green = {{ pin = {GREEN} }}
red = {{ pin = {RED} }}
buzzer = {{ pin = {BUZZER} }}
"""


def make_secret(tmp: Path) -> Path:
    path = tmp / "fleet.secret"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secrets.token_bytes(32).hex().encode())
    os.chmod(path, 0o600)  # in case the umask or an old file had it otherwise
    return path


def filesystem(path: Path) -> str | None:
    """The type of the file system holding `path` (ext4, tmpfs...): fsync costs differ."""
    best, kind = "", None
    target = str(path.resolve())
    with contextlib.suppress(OSError), open("/proc/self/mounts", encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) < 3:
                continue
            mount = parts[1].replace("\\040", " ")
            inside = target == mount or target.startswith(mount.rstrip("/") + "/")
            if inside and len(mount) >= len(best):
                best, kind = mount, parts[2]
    return kind


def uids(base: int, n: int) -> list[bytes]:
    return [(base + i).to_bytes(4, "big") for i in range(n)]


@dataclass
class Observed:
    """What the benchmark's own subscriptions and the ack wrapper saw."""

    taps: dict[bytes, float] = field(default_factory=dict)  # uid -> Tap.ts
    decided: dict[bytes, float] = field(default_factory=dict)  # uid -> last_decision_s
    stored: dict[str, float] = field(default_factory=dict)  # card_ref -> durable instant
    acked: dict[str, float] = field(default_factory=dict)  # card_ref -> ack instant
    unlocks: int = 0
    unlocked: asyncio.Event = field(default_factory=asyncio.Event)


async def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:g} s for {what}")
        await asyncio.sleep(0.01)


Around = Callable[[Any], contextlib.AbstractAsyncContextManager[Any]]
"""Held around the measured taps, given the running node (bench.portal's phones)."""


async def run_node(
    args: argparse.Namespace, quiet: bool, *, extra: str = "", around: Around | None = None
) -> dict[str, Any]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from core.events import Tap, Unlock
    from drivers.gpio.mock import mock_factory
    from drivers.nfc.libnfc import LibnfcOptions
    from drivers.nfc.sim import present
    from edged.access.lists import sign_lists
    from edged.config.loader import parse_config
    from edged.node import Node
    from edged.payloads import TapEvent
    from edged.security.signing import public_key_text
    from edged.services.access import AccessService
    from hil.nfc.emulator import Pn532Emulator

    out: dict[str, Any] = {}
    rng = random.Random(args.seed)
    gap_lo, gap_hi = (g / 1000 for g in args.gap_ms)
    pulse_s = args.pulse_ms / 1000
    sim_uids = uids(0x04100000, WARMUP + args.taps)
    pn_uids = uids(0x04200000, WARMUP + args.presentations)

    with tempfile.TemporaryDirectory(prefix="bench-tap-") as tmpdir:
        tmp = Path(tmpdir)
        broker = Mosquitto(tmp).start()
        emu = Pn532Emulator().start()
        try:
            topic = f"rnst/v1/{FLEET}/{NODE_ID}/events/tap"
            payload = json.dumps(  # the size of a real events/tap payload
                {
                    "v": 1,
                    "seq": 1,
                    "ts": int(time.time() * 1000),
                    "clock": "system",
                    "card_ref": "0" * 32,
                    "reader": SIM_READER,
                    "decision": "granted",
                    "reason": "ok",
                    "action": "board",
                    "profile": "resident",
                    "fare_cents": 150,
                    "lists_version": 1,
                },
                separators=(",", ":"),
            ).encode()
            say(quiet, f"baseline: {args.baseline_n} bare pin writes, QoS 1 publishes, polls")
            out["pin"] = baseline_pin_write(args.baseline_n)
            out["journal_write"] = baseline_journal(tmp, args.baseline_n, payload, sync=False)
            out["journal_sync"] = baseline_journal(tmp, args.baseline_n, payload, sync=True)
            out["baseline_puback"] = await baseline_puback(
                broker.port, args.baseline_n, payload, topic
            )
            out["poll_empty"], out["poll_card"] = await asyncio.to_thread(
                baseline_polls, min(args.baseline_n, 100)
            )

            key = Ed25519PrivateKey.generate()
            secret = make_secret(tmp)
            text = node_config_text(
                tmp,
                broker.port,
                connstring=emu.connstring,
                secret=secret,
                public_key=public_key_text(key.public_key()),
                pulse_s=pulse_s,
                poll_interval_s=args.poll_interval_ms / 1000 if args.poll_interval_ms else None,
                journal_sync=args.journal_sync,
                extra=extra,
            )
            config = parse_config(text, source="bench.tap", base_dir=tmp)
            node = Node(config, base_dir=tmp)
            pn532 = next(d.settings for d in config.drivers if d.name == PN532_READER)
            assert isinstance(pn532, LibnfcOptions)
            out["poll_interval_s"] = pn532.poll_interval_s
            out["flush_interval_ms"] = config.outbox.flush_interval_ms
            out["outbox_fs"] = filesystem(tmp)
            stop = asyncio.Event()
            started = time.monotonic()
            run = asyncio.create_task(node.run(stop), name="bench.node")
            held = contextlib.AsyncExitStack()
            try:
                await asyncio.wait_for(node.ready.wait(), 10)
                await wait_until(
                    lambda: (
                        node.uplink.connected
                        and all(s.state == "running" for s in node.supervisor.statuses())
                    ),
                    10,
                    "the node to connect and every driver to run",
                )
                out["startup_s"] = time.monotonic() - started
                access = node.services["access"]
                assert isinstance(access, AccessService)
                document = {
                    "kind": "full",
                    "fleet": FLEET,
                    "version": 1,
                    "cards": {
                        access.card_ref(uid): {"profile": "resident"}
                        for uid in (*sim_uids, *pn_uids)
                    },
                    "fares": {"resident": 150},
                }
                await access.command_update({"lists": document, "sig": sign_lists(key, document)})
                ref_of = {uid: access.card_ref(uid) for uid in (*sim_uids, *pn_uids)}

                seen = Observed()

                def on_tap(tap: Tap) -> None:  # after the access service's own handler
                    seen.taps[tap.uid] = tap.ts
                    seen.decided[tap.uid] = access.last_decision_s

                def on_unlock(_: Unlock) -> None:  # after the gpio board wrote the relay
                    seen.unlocks += 1
                    seen.unlocked.set()

                node.bus.subscribe(Tap, on_tap)
                node.bus.subscribe(Unlock, on_unlock)
                original_ack = node.outbox.ack

                def ack(msg: Any) -> None:  # observes, then the outbox's own ack
                    if msg.topic.endswith("/events/tap"):
                        ref = json.loads(msg.payload)["card_ref"]
                        seen.acked.setdefault(ref, time.monotonic())
                    original_ack(msg)

                original_put = node.outbox.put_nowait

                def put_nowait(pub: Any, **kw: Any) -> Any:  # sees when a tap is durable
                    future = original_put(pub, **kw)
                    if isinstance(pub.body, TapEvent):
                        ref = pub.body.card_ref
                        future.add_done_callback(
                            lambda _: seen.stored.setdefault(ref, time.monotonic())
                        )
                    return future

                node.outbox.ack = ack  # type: ignore[method-assign]
                node.outbox.put_nowait = put_nowait  # type: ignore[method-assign]
                relay = PinRecord(mock_factory().pin(LOCK))
                if around is not None:
                    out["around"] = await held.enter_async_context(around(node))

                # -- decision: nfc.sim taps ------------------------------------------
                say(quiet, f"decision: {WARMUP} + {args.taps} nfc.sim taps")
                await asyncio.sleep(0.2)  # let the lists' commit and the birth go out
                for i, uid in enumerate(sim_uids):
                    await asyncio.sleep(rng.uniform(gap_lo, gap_hi))
                    await wait_until(lambda: not relay.pin.state, 2, "the relay to release")
                    if i == WARMUP:
                        relay.clear()
                    seen.unlocked.clear()
                    if present(uid, reader=SIM_READER) != 1:
                        raise RuntimeError(f"no running nfc.sim reader named {SIM_READER}")
                    await asyncio.wait_for(seen.unlocked.wait(), 5)
                measured = sim_uids[WARMUP:]
                starts = [seen.taps[u] for u in measured]
                decision, missed = match_edges(starts, relay.rising())
                out["decision"] = [ms(x) for x in decision]
                out["decision_missed"] = missed
                out["decided"] = [ms(seen.decided[u]) for u in measured]

                # -- pn532: cards on the emulated antenna -----------------------------
                say(quiet, f"pn532: {WARMUP} + {args.presentations} cards on the emulator")
                poll_s = out["poll_interval_s"]
                puts: list[float] = []
                for i, uid in enumerate(pn_uids):
                    await wait_until(lambda: not relay.pin.state, 2, "the relay to release")
                    if i == WARMUP:
                        relay.clear()
                    await asyncio.sleep(rng.uniform(0, poll_s))  # a random poll phase
                    seen.unlocked.clear()
                    put_at = emu.put(uid)
                    await asyncio.wait_for(seen.unlocked.wait(), 5)
                    emu.remove()
                    if i >= WARMUP:
                        puts.append(put_at)
                pn532, missed = match_edges(puts, relay.rising())
                out["pn532"] = [ms(x) for x in pn532]
                out["pn532_missed"] = missed
                out["pn532_tap"] = [
                    ms(seen.taps[u] - t) for u, t in zip(pn_uids[WARMUP:], puts, strict=True)
                ]

                # -- puback -----------------------------------------------------------
                refs = [ref_of[u] for u in measured]
                pn_refs = [ref_of[u] for u in pn_uids[WARMUP:]]
                await wait_until(
                    lambda: all(r in seen.acked for r in (*refs, *pn_refs)),
                    ACK_WAIT_S,
                    "every events/tap to be acknowledged",
                )
                out["puback"] = [ms(seen.acked[r] - t) for r, t in zip(refs, starts, strict=True)]
                out["stored"] = [ms(seen.stored[r] - t) for r, t in zip(refs, starts, strict=True)]
                out["pn532_puback"] = [
                    ms(seen.acked[ref_of[u]] - seen.taps[u]) for u in pn_uids[WARMUP:]
                ]
                out["unlocks"] = seen.unlocks
                out["restarts"] = sum(s.restarts for s in node.supervisor.statuses())
                await held.aclose()  # the phones stop before the counters are read
                out["errors"] = node.counters.snapshot()
            finally:
                await held.aclose()
                stop.set()
                await asyncio.wait_for(run, 10)
        finally:
            emu.close()
            broker.stop()
    return out


# -- report ------------------------------------------------------------------------------


def report(args: argparse.Namespace, raw: dict[str, Any], load_before: float) -> dict[str, Any]:
    decision, pn532, puback = raw["decision"], raw["pn532"], raw["puback"]
    d, p, u = stats_ms(decision), stats_ms(pn532, 2), stats_ms(puback, 2)
    result: dict[str, Any] = {
        "decision_p50_ms": d["p50"],
        "decision_p99_ms": d["p99"],
        "pn532_p50_ms": p["p50"],
        "pn532_p99_ms": p["p99"],
        "puback_p99_ms": u["p99"],
        "puback_p50_ms": u["p50"],
        "decision_max_ms": d["max"],
        "pn532_max_ms": p["max"],
        "puback_max_ms": u["max"],
        "decided_p50_ms": stats_ms(raw["decided"])["p50"],
        "decided_p99_ms": stats_ms(raw["decided"])["p99"],
        "pn532_tap_p50_ms": stats_ms(raw["pn532_tap"], 2)["p50"],
        "pn532_tap_p99_ms": stats_ms(raw["pn532_tap"], 2)["p99"],
        "pn532_puback_p99_ms": stats_ms(raw["pn532_puback"], 2)["p99"],
        "stored_p50_ms": stats_ms(raw["stored"], 2)["p50"],
        "stored_p99_ms": stats_ms(raw["stored"], 2)["p99"],
        "journal_sync": args.journal_sync,
        "baseline_journal_write_p50_ms": stats_ms(raw["journal_write"], 4)["p50"],
        "baseline_journal_write_p99_ms": stats_ms(raw["journal_write"], 4)["p99"],
        "baseline_journal_sync_p50_ms": stats_ms(raw["journal_sync"], 3)["p50"],
        "baseline_journal_sync_p99_ms": stats_ms(raw["journal_sync"], 3)["p99"],
        "baseline_pin_write_p50_ms": stats_ms(raw["pin"], 4)["p50"],
        "baseline_pin_write_p99_ms": stats_ms(raw["pin"], 4)["p99"],
        "baseline_puback_p50_ms": stats_ms(raw["baseline_puback"], 2)["p50"],
        "baseline_puback_p99_ms": stats_ms(raw["baseline_puback"], 2)["p99"],
        "baseline_poll_ms": stats_ms(raw["poll_empty"], 3)["p50"],
        "baseline_poll_card_ms": stats_ms(raw["poll_card"], 3)["p50"],
        "baseline_poll_card_p99_ms": stats_ms(raw["poll_card"], 3)["p99"],
        "poll_interval_ms": rnd(raw["poll_interval_s"] * 1000, 1),
        "taps": len(decision),
        "presentations": len(pn532),
        "missed": raw["decision_missed"] + raw["pn532_missed"],
        "unlocks": raw["unlocks"],
        "warmup": WARMUP,
        "pulse_ms": args.pulse_ms,
        "gap_ms": list(args.gap_ms),
        "flush_interval_ms": raw["flush_interval_ms"],
        "outbox_fs": raw["outbox_fs"],
        "baseline_n": args.baseline_n,
        "driver_restarts": raw["restarts"],
        "counters": raw["errors"],
        "startup_s": rnd(raw["startup_s"], 2),
        "rss_mb": rnd(proc_status_mb(os.getpid(), "VmHWM"), 1),
        "aims": AIMS_MS,
    }
    for key, aim in AIMS_MS.items():
        value = result[key]
        result[f"{key.split('_')[0]}_ok"] = value is not None and value <= aim
    result.update(
        {
            "cores": os.cpu_count(),
            "loadavg_1m_before": round(load_before, 2),
            "loadavg_1m_after": round(os.getloadavg()[0], 2),
            "python": sys.version.split()[0],
        }
    )
    return result


def table(r: dict[str, Any]) -> str:
    def cell(v: Any) -> str:
        return "-" if v is None else f"{v:g}"

    rows = [
        ("tap -> relay (nfc.sim)", "decision", r["decision_p50_ms"], r["decision_p99_ms"]),
        ("card on antenna -> relay (PN532)", "pn532", r["pn532_p50_ms"], r["pn532_p99_ms"]),
        ("tap -> PUBACK", "puback", r["puback_p50_ms"], r["puback_p99_ms"]),
    ]
    lines = [f"{'figure':34} {'p50 ms':>9} {'p99 ms':>9} {'aim p99':>8}  ok"]
    for label, key, p50, p99 in rows:
        aim = r["aims"][f"{key}_p99_ms"]
        ok = "yes" if r[f"{key}_ok"] else "NO"
        lines.append(f"{label:34} {cell(p50):>9} {cell(p99):>9} {aim:>8g}  {ok}")
    lines += [
        f"{'  of which tap -> outbox durable':34} {cell(r['stored_p50_ms']):>9} "
        f"{cell(r['stored_p99_ms']):>9}",
        "",
        f"{'baseline':34} {'p50 ms':>9} {'p99 ms':>9}",
        f"{'tap journal write / with msync':34} {cell(r['baseline_journal_write_p50_ms']):>9} "
        f"{cell(r['baseline_journal_write_p99_ms']):>9}   "
        f"{cell(r['baseline_journal_sync_p50_ms'])} / {cell(r['baseline_journal_sync_p99_ms'])}",
        f"{'gpiozero MockPin on()':34} {cell(r['baseline_pin_write_p50_ms']):>9} "
        f"{cell(r['baseline_pin_write_p99_ms']):>9}",
        f"{'aiomqtt QoS 1 publish -> PUBACK':34} {cell(r['baseline_puback_p50_ms']):>9} "
        f"{cell(r['baseline_puback_p99_ms']):>9}",
        f"{'libnfc poll, no card / a card':34} {cell(r['baseline_poll_ms']):>9} "
        f"{cell(r['baseline_poll_card_ms']):>9}",
        "",
        f"{r['taps']} taps, {r['presentations']} presentations (poll every "
        f"{r['poll_interval_ms']:g} ms), {r['missed']} missed, RSS {cell(r['rss_mb'])} MB, "
        f"load {r['loadavg_1m_before']} -> {r['loadavg_1m_after']}",
    ]
    return "\n".join(lines)


def _gap(text: str) -> tuple[float, float]:
    lo, _, hi = text.partition(",")
    pair = (float(lo), float(hi or lo))
    if not 0 <= pair[0] <= pair[1]:
        raise argparse.ArgumentTypeError("give MIN,MAX in ms with 0 <= MIN <= MAX")
    return pair


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m bench.tap", description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print only the JSON object on stdout")
    ap.add_argument("--taps", type=int, default=500, help="measured nfc.sim taps (default 500)")
    ap.add_argument(
        "--presentations", type=int, default=100, help="measured PN532 cards (default 100)"
    )
    ap.add_argument("--baseline-n", type=int, default=200, help="samples of each baseline")
    ap.add_argument(
        "--gap-ms",
        type=_gap,
        default=(20.0, 60.0),
        help="random gap between nfc.sim taps, MIN,MAX ms (default 20,60)",
    )
    ap.add_argument("--pulse-ms", type=float, default=5.0, help="relay pulse (default 5 ms)")
    ap.add_argument(
        "--poll-interval-ms",
        type=float,
        default=None,
        help="nfc.libnfc poll_interval_s in ms (default: the driver's default)",
    )
    ap.add_argument(
        "--journal-sync",
        action="store_true",
        help="[outbox] journal_sync = true: msync each tap's record before the relay",
    )
    ap.add_argument("--seed", type=int, default=1)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.taps < 1 or args.presentations < 1 or args.baseline_n < 1:
        print("--taps, --presentations and --baseline-n must be at least 1", file=sys.stderr)
        return 2
    if args.gap_ms[0] <= args.pulse_ms:
        print("the smallest gap must be longer than the relay pulse", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    load_before = os.getloadavg()[0]
    raw = asyncio.run(run_node(args, args.json))
    result = report(args, raw, load_before)
    if args.json:
        print(json.dumps(result))
    else:
        print(table(result))
        print()
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
