"""SIGTERM at any moment: exit 0 within 5 s, `offline` said when connected, nothing queued
lost. test_birth_and_will.py holds the plain cases (connected, broker down, birth's PUBACK
withheld); these are the states where the stop used to wait on something or be lost."""

import asyncio
import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edged.outbox import Publication
from edged.payloads import DoorEvent
from edged.security.signing import public_key_text, sign
from edged.topics import DOOR, POSITION, TopicSpec
from hil.proxy import MqttProxy, Quirks
from tests.helpers.broker import Mosquitto, free_port
from tests.helpers.commands import BASE, births, offlines
from tests.helpers.disk import rows_on_disk
from tests.helpers.fileserver import fleet_ca
from tests.helpers.mqtt import Collector, publish
from tests.helpers.nodes import NODE_TOPICS, queue_before_start, write_config
from tests.helpers.silent import mute_port, unanswered_port

QUEUED = 20
NOTHING_TO_WAIT_FOR_S = 3.0
"""SIGTERM to exit of a node that is not connected: it has nothing to send and nothing to
say, so the budget's drain does not apply. Below the 5 s of the contract on purpose: paho's
connect waits up to 5 s, so a stop that waited for it would still pass a 5 s bound whenever
the connect had begun a little before the SIGTERM."""


def doors(n: int) -> list[Publication]:
    return [
        Publication.make(NODE_TOPICS, DOOR, DoorEvent(door=f"d{i}", open=True)) for i in range(n)
    ]


def outbox_of(config: Path) -> Path:
    return config.parent / "shuttle-07-outbox.sqlite"


def queued(config: Path, spec: TopicSpec = DOOR) -> int:
    """Messages of `spec` (door events) still in the outbox (the node queues its own health
    and state too)."""
    sql = "SELECT count(*) FROM msg WHERE topic = ?"
    return int(rows_on_disk(outbox_of(config), sql, (NODE_TOPICS.of(spec),))[0][0])


async def stopped_within(proc: Any, bound_s: float, *, twice_after_s: float | None = None) -> float:
    """SIGTERM (again after `twice_after_s`); exit 0 within `bound_s`; how long it took."""
    started = time.monotonic()
    if twice_after_s is not None:
        proc.proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(twice_after_s)
    code = await proc.stop(timeout=10)
    elapsed = time.monotonic() - started
    assert code == 0, f"exit {code}: see {proc.log}"
    assert elapsed < bound_s, f"SIGTERM to exit took {elapsed:.2f} s: see {proc.log}"
    return elapsed


async def test_sigterm_while_connecting_to_an_address_that_never_answers_exits_at_once(
    tmp_path: Path, spawn: Any
) -> None:
    """A dead cellular link: the connect's SYN gets no answer. Its thread is left to the
    process's exit (core.threads), not joined for paho's 5 s connect time-out."""
    with unanswered_port() as port:
        config = write_config(tmp_path, port, gps=False)
        await queue_before_start(config, doors(QUEUED))
        proc = await spawn(config)
        await proc.wait_containing("running as")
        await asyncio.sleep(0.3)  # the connect is under way, in its thread
        await stopped_within(proc, NOTHING_TO_WAIT_FOR_S)
    assert queued(config) == QUEUED


async def test_sigterm_during_a_tls_handshake_the_server_never_answers_exits_at_once(
    tmp_path: Path, spawn: Any
) -> None:
    """The broker's port takes the connection and sends no ServerHello (a hung server, a
    middlebox): paho's handshake waits in the connect's thread, which must not hold the exit."""
    ca = fleet_ca(tmp_path / "pki") / "ca.crt"
    with mute_port() as port:
        config = write_config(tmp_path, port, gps=False, extra=f'[broker.tls]\nca_file = "{ca}"\n')
        await queue_before_start(config, doors(QUEUED))
        proc = await spawn(config)
        await proc.wait_containing("running as")
        await asyncio.sleep(0.3)
        await stopped_within(proc, NOTHING_TO_WAIT_FOR_S)
    assert queued(config) == QUEUED


async def test_sigterm_twice_mid_drain_with_pubacks_withheld_says_offline_and_keeps_the_rest(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    """A backlog draining when the broker stops acknowledging (overloaded), and systemd's
    SIGTERM sent twice: the node says offline, exits 0 in time, and what was not
    acknowledged stays queued for the next start."""
    backlog, acked = 5000, 1000
    proxy = MqttProxy(broker.port, Quirks(withhold_pubacks=True, withhold_after=acked))
    await proxy.start()
    try:
        config = write_config(tmp_path, proxy.port, gps=False)
        await queue_before_start(config, doors(backlog))
        async with Collector(broker.port, topic=f"{BASE}/#") as c:
            proc = await spawn(config)
            await c.wait_for(lambda: proxy.withheld >= 10, 15, "PUBACKs withheld mid-drain")
            await stopped_within(proc, 5.0, twice_after_s=0.3)
            await c.wait_for(lambda: bool(offlines(c)), 3, "offline")
            delivered = len({m.payload["seq"] for m in c.on("events/door")})
    finally:
        await proxy.close()
    left = queued(config)
    assert 0 < left < backlog
    assert left >= backlog - delivered  # acked ones left the outbox; none lost on the way


KEY = Ed25519PrivateKey.generate()


async def signed_restart(port: int, cmd_id: str) -> None:
    ts = int(time.time() * 1000)
    doc = {"id": cmd_id, "ts": ts, "args": {}}
    doc["sig"] = sign(KEY, f"{BASE}/cmd/restart", cmd_id, ts, {})
    await publish(port, f"{BASE}/cmd/restart", json.dumps(doc).encode())


async def test_sigterm_while_a_restart_waits_on_the_broker_stops_the_node_for_good(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    """`restart` stops the node to start it again; a SIGTERM that comes during that stop (the
    reply's PUBACK slow to come) was taken for the restart's own stop, and the next node ran
    on: systemd waited its 10 s and killed it, with no `offline`."""
    extra = f"""
[clock]
trust_system_clock = true
[security]
[[security.keys]]
id = "ops"
public_key = "{public_key_text(KEY.public_key())}"
scopes = ["read", "operate", "config"]
"""
    proxy = await MqttProxy(broker.port, Quirks()).start()
    try:
        config = write_config(tmp_path, proxy.port, gps=False, extra=extra)
        async with Collector(broker.port, topic=f"{BASE}/#") as c:
            proc = await spawn(config)
            await c.wait_for(lambda: bool(births(c)), 10, "birth")
            proxy.quirks.withhold_pubacks = True
            await signed_restart(broker.port, "r1")
            await c.wait_for(lambda: bool(c.on("reply/restart")), 5, "the reply")
            await stopped_within(proc, 5.0)
            await c.wait_for(lambda: bool(offlines(c)), 3, "offline")
            assert len(births(c)) == 1, "a node started again after SIGTERM"
    finally:
        await proxy.close()


async def open_when_read(fifo: Path, timeout: float = 15) -> int:
    """`fifo` opened for writing once a reader waits on it (never blocks without one)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # ENXIO: no reader yet
            assert time.monotonic() < deadline, "edged run never read its config"
            await asyncio.sleep(0.01)


async def test_sigterm_while_the_config_loads_exits_0_and_starts_nothing(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    """SIGTERM during start-up, before any event loop runs: here while the config loads (the
    file is a FIFO the test writes only after the signal). It used to kill the process where
    it stood (exit -15); now it is kept, and no node starts."""
    (tmp_path / "written").mkdir()
    text = write_config(tmp_path / "written", broker.port, gps=False).read_text()
    fifo = tmp_path / "shuttle-07.toml"
    os.mkfifo(fifo)
    async with Collector(broker.port, topic=f"{BASE}/#") as c:
        proc = await spawn(fifo)
        fd = await open_when_read(fifo)  # edged run waits in the config's read
        try:
            proc.proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.2)
            with contextlib.suppress(BrokenPipeError):  # it died at the signal: said below
                os.write(fd, text.encode())  # far smaller than the pipe's buffer
        finally:
            os.close(fd)
        assert await asyncio.wait_for(proc.proc.wait(), 10) == 0
        await asyncio.sleep(0.5)
        assert not births(c)


async def test_a_stop_that_hangs_is_cut_short_within_5_seconds_with_offline_said(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    """Whatever hangs after SIGTERM (here the outbox's close, on a disk that stopped
    answering), the process exits 0 within 5 s: offline was said, what was committed stays,
    and the log says where each thread stood."""
    config = write_config(tmp_path, broker.port, gps=False)
    await queue_before_start(config, doors(QUEUED))
    async with Collector(broker.port, topic=f"{BASE}/#") as c:
        proc = await spawn(config, module="tests.helpers.stuck_close")
        await c.wait_for(lambda: bool(births(c)), 10, "birth")
        await stopped_within(proc, 5.0)
        await c.wait_for(lambda: bool(offlines(c)), 3, "offline")
        delivered = len({m.payload["seq"] for m in c.on("events/door")})
    assert any("still running" in line for line in proc.lines), f"see {proc.log}"
    assert any("Thread" in line and "most recent call first" in line for line in proc.lines)
    assert delivered + queued(config) >= QUEUED


async def test_sigterm_with_kiosk_pages_open_ends_their_streams_and_cancels_once(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    """The kiosk's stop ends each open event stream with its last chunk, within its grace;
    the node's stop does not take that clean-up for a lost cancel and cut it short."""
    port = free_port()
    extra = f'host = "127.0.0.1"\nport = {port}\n'
    proc = await spawn(write_config(tmp_path, broker.port, kiosk=True, extra=extra))
    await proc.wait_containing("page at", 15)
    streams = []
    for _ in range(2):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await writer.drain()
        assert (await reader.readline()).startswith(b"HTTP/1.1 200")
        streams.append((reader, writer))
    await stopped_within(proc, 5)
    for reader, writer in streams:
        async with asyncio.timeout(5):
            rest = await reader.read()
        writer.close()
        assert rest.endswith(b"\r\n0\r\n\r\n"), rest[-80:]  # chunked: the last chunk
    log = proc.log.read_text()
    assert "went on after it was cancelled" not in log
    assert "Traceback" not in log


async def test_sigterm_sends_the_samples_waiting_for_a_batch_at_once(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    """With `[broker] batch_s = 20` (a vehicle's config) positions wait for company. A stop
    sends them at once, before `offline`, instead of waiting its whole budget for a batch
    that will not come and leaving them for the next start."""
    config = write_config(tmp_path, broker.port, broker="batch_s = 20")
    async with Collector(broker.port) as c:
        proc = await spawn(config)
        await c.wait_for(lambda: len(births(c)) == 1, 10, "birth")
        await asyncio.sleep(2)  # positions made, waiting for a batch
        assert not c.publishes.get("position"), "no position may have gone yet"
        assert await stopped_within(proc, 5) < 1.0
        await c.wait_for(lambda: len(offlines(c)) == 1, 2, "offline")
        assert c.publishes.get("position"), "the positions waiting for a batch were sent"
        topics = [m.topic for m in c.messages]
        assert topics.index(f"{BASE}/position") < len(topics) - 1 - topics[::-1].index(
            f"{BASE}/state"
        ), "the positions came before offline"
    assert queued(config, POSITION) == 0


async def test_sigterm_offline_stores_the_positions_gathered_for_one_commit(
    tmp_path: Path, spawn: Any
) -> None:
    """Offline, positions gather up to 10 s for one commit (SD wear, docs/storage.md): a
    stop commits them for the next start, it does not leave them behind in memory."""
    every_fix = "[services.position.stopped]\nmin_period_s = 0\nmax_period_s = 0.5\n"
    config = write_config(tmp_path, free_port(), extra=every_fix)  # nothing listens: offline
    proc = await spawn(config)
    await proc.wait_containing("running as")
    await asyncio.sleep(3)  # positions made, gathering (the first start's commits may
    # take one or two: an alarm, health)
    committed = queued(config, POSITION)
    await stopped_within(proc, NOTHING_TO_WAIT_FOR_S)
    assert queued(config, POSITION) >= committed + 2


async def test_a_stop_after_a_lost_session_cancels_the_uplink_at_once(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    """Each lost session left the uplink's task a cancel request Python 3.11's TaskGroup
    never took back: at the stop the node took it for cancelled already, left it running
    and cancelled it only 1.6 s later ("went on after it was cancelled")."""
    proxy = await MqttProxy(broker.port, Quirks()).start()
    try:
        config = write_config(tmp_path, proxy.port, gps=False)
        async with Collector(broker.port, topic=f"{BASE}/#") as c:
            proc = await spawn(config)
            await c.wait_for(lambda: len(births(c)) >= 1, 10, "birth")
            proxy.cut()
            await c.wait_for(lambda: len(births(c)) >= 2, 10, "the birth again")
            await stopped_within(proc, 5)
            await c.wait_for(lambda: bool(offlines(c)), 3, "offline")
        assert not [line for line in proc.lines if "went on after it was cancelled" in line]
    finally:
        await proxy.close()
