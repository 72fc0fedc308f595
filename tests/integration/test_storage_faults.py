"""A node whose disk fills up or whose outbox is damaged stays on the broker and says so.

Real parts: Mosquitto, `edged run` as a process, a tmpfs filled to its last block for the
full disk, the outbox file damaged between two runs as a bad SD card would leave it. What
dispatch sees is judged as docs/topics.md tells dispatch to: de-duplicated on (topic,
epoch, seq)."""

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from edged.uplink.cancellable import CancellableClient
from hil.dispatch import Received, dedup_key, unique_by_seq
from tests.helpers.broker import Mosquitto
from tests.helpers.disk import fill, mounted_tmpfs, power_back, power_cut, sd_card
from tests.helpers.journal import FEW
from tests.helpers.mqtt import Collector
from tests.helpers.nodes import write_config

BASE = "rnst/v1/test/shuttle-07"


def node_config(tmp: Path, port: int, outbox_dir: Path, **kw: Any) -> Path:
    outbox = f'path = "{outbox_dir / "outbox.sqlite"}"\n' + kw.pop("outbox", "")
    config = write_config(tmp, port, health_s=1, **kw)
    text = config.read_text().replace(f'path = "{tmp / "shuttle-07-outbox.sqlite"}"\n', outbox)
    config.write_text(text)
    return config


def active(m: Received) -> bool:
    return m.payload.get("active") is True


def direct_alarms(c: Collector) -> list[Received]:
    return [m for m in c.on("alarm/outbox_full") if active(m)]


async def test_a_full_disk_never_keeps_the_node_off_the_broker(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    """#13.2 and #13.3: the alarm goes out at each connection, after a broker blip and
    after a restart on the full disk; its clearing is never mistaken for a duplicate."""
    with mounted_tmpfs(tmp_path / "disk", "2m") as disk:
        config = node_config(tmp_path, broker.port, disk)
        async with Collector(broker.port, topic=f"{BASE}/#") as c:
            node = await spawn(config)
            await c.wait_for(lambda: bool(c.on("state")), 10, "the node online")
            filler = fill(disk)
            await c.wait_for(lambda: len(direct_alarms(c)) >= 1, 15, "the alarm")
            assert "cannot write the outbox" in direct_alarms(c)[0].payload["reason"]

            births = len([m for m in c.on("state") if m.payload["state"] == "online"])
            broker.stop()
            await asyncio.sleep(0.5)
            broker.start()
            await c.wait_for(
                lambda: len([m for m in c.on("state") if m.payload["state"] == "online"]) > births,
                15,
                "the node back online after the broker blip",
            )
            await c.wait_for(lambda: len(direct_alarms(c)) >= 2, 10, "the alarm again")

            node.kill9()
            await node.stop()
            before = len(direct_alarms(c))
            await spawn(config)  # restarted on the still full disk
            await c.wait_for(
                lambda: len(direct_alarms(c)) > before, 20, "the alarm from the restarted node"
            )
            filler.unlink()
            await c.wait_for(
                lambda: any(not active(m) for m in c.on("alarm/outbox_full")), 20, "the clear"
            )
        alarms = unique_by_seq(c.on("alarm/outbox_full"))
        assert not active(alarms[-1]), "de-duplicated on (topic, epoch, seq), the clear is seen"
        assert len({dedup_key(m) for m in c.on("alarm/outbox_full")}) == len(
            {m.payload["ts"] for m in c.on("alarm/outbox_full")}
        ), "two different messages share a (topic, epoch, seq)"


async def test_events_made_on_a_full_disk_still_reach_dispatch(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    """The disk refuses them; they go out from memory while the link holds."""
    with mounted_tmpfs(tmp_path / "disk", "2m") as disk:
        config = node_config(tmp_path, broker.port, disk, gps=False)
        async with Collector(broker.port, topic=f"{BASE}/#") as c:
            fill(disk)
            node = await spawn(config, "--count", "40", "--interval", "0.05", burst=True)
            await node.wait_line("sent", timeout=20)
            await c.wait_for(lambda: len(c.on("events/door")) >= 40, 10, "every door event")
            assert node.durable() == set(), "none of them could be made durable"
        doors = sorted(int(m.payload["door"][1:]) for m in unique_by_seq(c.on("events/door")))
        assert doors == list(range(40))


async def test_sigterm_on_a_full_disk_exits_0_and_says_offline(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    """#13.6"""
    with mounted_tmpfs(tmp_path / "disk", "2m") as disk:
        config = node_config(tmp_path, broker.port, disk)
        async with Collector(broker.port, topic=f"{BASE}/state") as c:
            node = await spawn(config)
            await c.wait_for(lambda: bool(c.on("state")), 10, "the node online")
            fill(disk)
            await asyncio.sleep(2.5)  # health and positions fail to commit meanwhile
            assert await node.stop(timeout=10) == 0
            await c.wait_for(
                lambda: c.on("state")[-1].payload["state"] == "offline", 5, "state offline"
            )
        assert not any("Traceback" in line for line in node.lines), "\n".join(node.lines[-30:])


async def test_a_full_disk_refusing_every_message_leaves_a_few_lines_in_the_journal(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    """Each message the disk refused was a line: 100 command replies, 100 lines (positions,
    vehicle data and health add theirs, for as long as the disk stays full). The first ones
    at once, the rest counted (outbox.error); the alarm's line is always there."""
    with mounted_tmpfs(tmp_path / "disk", "2m") as disk:
        config = node_config(tmp_path, broker.port, disk, gps=False)
        async with Collector(broker.port, topic=f"{BASE}/#") as c:
            node = await spawn(config)
            await c.wait_for(lambda: bool(c.on("state")), 10, "the node online")
            fill(disk)
            async with CancellableClient(
                "127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5
            ) as dispatch:
                for n in range(100):
                    ping = json.dumps({"id": f"p{n}"}).encode()
                    await dispatch.publish(f"{BASE}/cmd/ping", ping, qos=1)
            await c.wait_for(lambda: len(c.on("reply/ping")) >= 100, 15, "every reply")
    refused = [line for line in node.lines if "could not store a message" in line]
    assert 1 <= len(refused) <= FEW, f"{len(refused)} lines"
    assert len([line for line in node.lines if "the outbox cannot be written" in line]) == 1


def garble(path: Path) -> None:
    """Noise over the b-tree header of page 3, as a bad SD card block leaves it."""
    with path.open("r+b") as f:
        f.seek(2 * 4096)
        f.write(os.urandom(128))


@pytest.mark.parametrize("damage", ["garbled page", "WAL lost"])
async def test_a_damaged_outbox_never_stops_the_node(
    broker: Mosquitto, tmp_path: Path, spawn: Any, damage: str
) -> None:
    """#13.4, #13.5: the node starts, raises alarm/outbox_lost, keeps its state, and seq
    goes on above everything it wrote before (a visible gap, never a reused seq)."""
    store = tmp_path / "store"
    store.mkdir()
    config = node_config(tmp_path, broker.port, store, gps=False)
    async with Collector(broker.port, topic=f"{BASE}/#") as c:
        node = await spawn(config, "--count", "300", burst=True)
        await node.wait_line("sent", timeout=20)
        await c.wait_for(lambda: len(c.on("events/door")) >= 300, 15, "the doors")
        assert await node.stop() == 0  # a clean stop: the WAL is folded into the file
        broker.stop()  # what comes next stays queued in the outbox
        node = await spawn(config, "--count", "200", burst=True)
        await node.wait_line("sent", timeout=20)
        async with asyncio.timeout(10):
            while len(node.durable()) < 200:
                await asyncio.sleep(0.05)
        if damage == "garbled page":  # a block of the SD card goes bad while it is off
            assert await node.stop() == 0
            garble(store / "outbox.sqlite")
        else:  # a power cut with 200 doors queued, and the WAL file lost with it
            node.kill9()
            await node.stop()
            (store / "outbox.sqlite-wal").unlink()
        broker.start()
        await spawn(config)
        await c.wait_for(lambda: bool(c.on("alarm/outbox_lost")), 20, "alarm/outbox_lost")
        await c.wait_for(lambda: len(c.on("health")) >= 2, 10, "the node running")
    alarm = c.on("alarm/outbox_lost")[0].payload
    assert alarm["active"] is True
    causes = [loss["cause"] for loss in alarm["details"]["losses"]]
    if damage == "garbled page":
        assert causes == ["corrupt"]
        moved = Path(alarm["details"]["losses"][0]["moved_to"])
        assert moved.exists(), "the corrupt file is kept for forensics"
    else:
        assert causes == ["rolled_back"]
        (first, last) = alarm["details"]["losses"][0]["gaps"]["events/door"]
        assert first > 300 and last == 500
    doors = unique_by_seq(c.on("events/door"))
    by_seq: dict[int, set[str]] = {}
    for m in doors:
        by_seq.setdefault(m.payload["seq"], set()).add(m.payload["door"])
    assert all(len(v) == 1 for v in by_seq.values()), "a seq carried two different events"


async def test_taps_acted_on_just_before_a_kill_9_are_recorded(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    """The tap journal: a door that opened always has its record. The outbox commits every
    5 s here (the most the config allows), so without the journal the taps not yet
    committed would be lost. With a 1 s interval, 150 taps 5 ms apart took longer than the
    first commit on a loaded machine, whose commits then ran back to back behind the taps:
    the kill found 5 or fewer taps uncommitted and the test could not tell."""
    config = write_config(tmp_path, broker.port, gps=False, outbox="flush_interval_ms = 5000")
    async with Collector(broker.port, topic=f"{BASE}/events/tap") as c:
        node = await spawn(config, "--count", "400", "--interval", "0.005", "--taps", burst=True)
        async with asyncio.timeout(20):
            while len(node.acted()) < 150:
                await asyncio.sleep(0.001)
        node.kill9()
        await node.stop()
        acted = node.acted()
        assert len(acted) - len(node.durable()) >= 10, "the kill must land inside the window"
        await spawn(config)
        await c.wait_for(
            lambda: {int(m.payload["card_ref"], 16) for m in c.on("events/tap")} >= acted,
            20,
            "every tap the node acted on",
        )


@pytest.mark.parametrize("after", [300, 1500, 4000])
async def test_a_power_cut_mid_burst_and_mid_drain_loses_no_event_reported_durable(
    broker: Mosquitto, tmp_path: Path, spawn: Any, after: int
) -> None:
    """The ignition cuts the power while door events are written and the link drains them
    (PUBACKs in flight, acknowledged rows being deleted): only what was fsync'd is on the
    card at the next boot. Every event the outbox called durable reaches dispatch."""
    with sd_card(tmp_path / "sd") as card:
        config = node_config(tmp_path, broker.port, card, gps=False)
        async with Collector(broker.port, topic=f"{BASE}/events/door") as c:
            node = await spawn(config, "--count", "20000", "--chunk", "20", burst=True)
            await node.wait_line("ready")
            async with asyncio.timeout(30):
                while len(node.durable()) < after:
                    await asyncio.sleep(0.001)
            cut = time.monotonic()
            power_cut(card)
            node.kill9()
            await node.stop()
            durable = node.durable(before=cut)  # said later: no process could, after a cut
            assert len(durable) < 20000, "the cut must land mid-burst"
            power_back(card)
            node = await spawn(config)
            await c.wait_for(
                lambda: {int(m.payload["door"][1:]) for m in c.on("events/door")} >= durable,
                30,
                "every durable event",
            )
            await node.stop()  # before the card is unmounted


async def test_events_a_full_disk_refused_offline_survive_a_restart_once_space_returned(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    """A day without network: the disk fills, door events wait in memory; the logs are
    rotated and space returns; the ignition goes off before the link comes back. The
    events were stored once the disk took writes again: dispatch gets every one."""
    with mounted_tmpfs(tmp_path / "disk", "2m") as disk:
        config = node_config(tmp_path, broker.port, disk, gps=False)
        broker.stop()
        node = await spawn(config, "--count", "60", "--interval", "0.1", burst=True)
        await node.wait_line("ready")
        filler = fill(disk)
        await node.wait_line("sent", timeout=20)
        assert len(node.durable()) < 50, "most of them waited in memory"
        filler.unlink()
        await asyncio.sleep(3)  # health (every 1 s) commits again
        assert await node.stop(timeout=10) == 0
        broker.start()
        async with Collector(broker.port, topic=f"{BASE}/events/door") as c:
            await spawn(config)
            await c.wait_for(lambda: len(unique_by_seq(c.on("events/door"))) >= 60, 20, "all")
        doors = sorted(int(m.payload["door"][1:]) for m in unique_by_seq(c.on("events/door")))
        assert doors == list(range(60))
