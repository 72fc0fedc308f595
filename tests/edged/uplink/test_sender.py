"""The outbox's sender on a real Mosquitto: a window of publishes, each row deleted on its
PUBACK and not before; a message the broker never acknowledges ends the session."""

import asyncio
import contextlib
import json
import math
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiomqtt
import pytest
from paho.mqtt.properties import Properties

from edged.clock import Clock
from edged.config.models import OutboxConfig
from edged.outbox import Outbox, Publication, Stored
from edged.payloads import Alarm, DoorEvent, Position
from edged.topics import ALARM, DOOR, POSITION, Priority, Topics
from edged.uplink.aliases import TopicAliases
from edged.uplink.mqtt import MqttClient, PublishRefused
from edged.uplink.sender import (
    READ_AHEAD,
    RESERVED,
    Outgoing,
    PubackTimeout,
    Sender,
    Unsent,
)
from hil.proxy import MqttProxy, Quirks
from tests.helpers.broker import Mosquitto
from tests.helpers.disk import rows_on_disk
from tests.helpers.mqtt import Collector
from tests.helpers.slowlink import SlowLink

TOPICS = Topics("rnst/v1", "test", "n1")


def door(i: int) -> Publication:
    return Publication.make(TOPICS, DOOR, DoorEvent(door=f"d{i}", open=i % 2 == 0))


def panic(*, active: bool) -> Publication:
    return Publication.make(TOPICS, ALARM, Alarm(kind="panic", active=active), name="panic")


async def until_refused(sender: Sender, n: int, within_s: float = 5.0) -> None:
    """Until the broker has refused `n` publishes (or the time is up: the test's assert
    says what came)."""
    deadline = time.monotonic() + within_s
    while sender.refused < n and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


def allow_all(broker: Mosquitto, acl: Path) -> None:
    """The operator's fix: the node's whole tree allowed, and Mosquitto told to reload its
    ACL (SIGHUP)."""
    acl.write_text("topic readwrite rnst/v1/test/n1/#\n")
    assert broker.proc is not None
    broker.proc.send_signal(signal.SIGHUP)


async def acl_takes(port: int, topic: str, within_s: float = 10.0) -> None:
    """Until the broker's reloaded ACL takes a publish to `topic` (MQTT 5 PUBACK)."""
    deadline = time.monotonic() + within_s
    async with MqttClient(
        "127.0.0.1", port, identifier="probe", protocol=aiomqtt.ProtocolVersion.V5
    ) as probe:
        while True:
            try:
                await probe.publish_acked(topic, b"{}", qos=1, retain=False)
                return
            except PublishRefused:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)


def position(i: int, qos: int = 0) -> Publication:
    body = Position(
        fix_time="2026-11-25T10:00:00Z",
        lat=45.0,
        lon=2.0 + i * 1e-6,
        mode="3D",
        quality=1,
        odometer_m=float(i),
    )
    return Publication.make(TOPICS, POSITION, body, qos=qos)


def rows(box: Outbox) -> int:
    """Rows in the outbox file, as a restart after a crash would find them."""
    return int(rows_on_disk(Path(box.config.path), "SELECT count(*) FROM msg")[0][0])


async def fill(box: Outbox, pubs: list[Publication]) -> None:
    await asyncio.gather(*(box.put_nowait(p) for p in pubs))


async def sending(
    port: int,
    box: Outbox,
    window: int,
    timeout_s: float = 15.0,
    *,
    batch_s: float = 0.0,
    batch_max: int = 1,
    v5: bool = True,
    outgoing: Outgoing | None = None,
    unsent: Unsent | None = None,
) -> Sender:
    protocol = aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311
    return Sender(
        MqttClient("127.0.0.1", port, identifier="n1", protocol=protocol),
        box,
        window=window,
        timeout_s=timeout_s,
        v5=v5,
        outgoing=outgoing,
        unsent=unsent,
        batch_s=batch_s,
        batch_max=batch_max,
    )


@contextlib.asynccontextmanager
async def draining(sender: Sender) -> AsyncIterator[MqttClient]:
    """The sender's client connected and its drain running for the block, then cancelled."""
    async with sender.client as client:
        task = asyncio.create_task(sender.run())
        try:
            yield client
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def run_until(sender: Sender, done: "asyncio.Future[None] | None", within_s: float) -> None:
    """Run the sender on its connected client until `done` (or the time is up)."""
    async with draining(sender):
        await asyncio.wait_for(
            asyncio.shield(done) if done else asyncio.sleep(within_s), within_s + 1
        )


async def seqs_drained(port: int, box: Outbox, sender: Sender, suffix: str, n: int) -> list[int]:
    """Run `sender` until the outbox is empty; the seqs a subscriber got on `suffix`."""
    async with Collector(port, "rnst/v1/test/n1/#") as c:
        drained = asyncio.ensure_future(until_empty(box, 30))
        await run_until(sender, drained, 30)
        await c.wait_for(lambda: len(c.on(suffix)) >= n, 10, f"{n} on {suffix}")
    return [m.payload["seq"] for m in c.on(suffix)]


async def until_empty(box: Outbox, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while box.depth:
        assert time.monotonic() < deadline, f"{box.depth} rows left after {within_s} s"
        await asyncio.sleep(0.05)
    await box.flush()


async def test_the_backlog_reaches_the_broker_in_order_and_leaves_the_outbox(
    broker: Mosquitto, outbox: Outbox
) -> None:
    await fill(outbox, [door(i) for i in range(2000)])
    async with Collector(broker.port, "rnst/v1/test/n1/#") as c:
        sender = await sending(broker.port, outbox, window=32)
        drained = asyncio.ensure_future(until_empty(outbox, 30))
        await run_until(sender, drained, 30)
        await c.wait_for(lambda: len(c.on("events/door")) >= 2000, 10, "the backlog")
    seqs = [m.payload["seq"] for m in c.on("events/door")]
    assert seqs == list(range(1, 2001))
    assert sender.sent == 2000
    assert rows(outbox) == 0


async def test_no_row_leaves_the_outbox_while_its_puback_is_withheld(
    broker: Mosquitto, outbox: Outbox
) -> None:
    proxy = await MqttProxy(broker.port, Quirks(withhold_pubacks=True)).start()
    try:
        await fill(outbox, [door(i) for i in range(200)])
        async with Collector(broker.port, "rnst/v1/test/n1/#") as c:
            sender = await sending(proxy.port, outbox, window=8)
            await run_until(sender, None, 2.0)
            # the broker has the window's messages and no more: nothing beyond the window
            # was sent without a PUBACK, and none of them was deleted
            await c.wait_for(lambda: len(c.on("events/door")) >= 8, 5, "the first window")
            await asyncio.sleep(0.3)
            assert len(c.on("events/door")) == 8
        assert proxy.withheld == 8
        await outbox.flush()
        assert rows(outbox) == 200
        assert sender.sent == 0
    finally:
        await proxy.close()


async def test_a_message_never_acknowledged_ends_the_session_after_the_time_out(
    broker: Mosquitto, outbox: Outbox
) -> None:
    proxy = await MqttProxy(broker.port, Quirks(withhold_pubacks=True)).start()
    try:
        await fill(outbox, [door(i) for i in range(5)])
        sender = await sending(proxy.port, outbox, window=8, timeout_s=0.5)
        started = time.monotonic()
        async with sender.client:
            with pytest.raises(ExceptionGroup) as raised:
                await asyncio.wait_for(sender.run(), 10)
        assert raised.group_contains(PubackTimeout)
        assert 0.5 <= time.monotonic() - started < 3.0
        assert rows(outbox) == 5
    finally:
        await proxy.close()


async def test_unacknowledged_rows_go_again_in_the_next_session(
    broker: Mosquitto, outbox: Outbox
) -> None:
    proxy = await MqttProxy(broker.port, Quirks(withhold_pubacks=True)).start()
    try:
        await fill(outbox, [door(i) for i in range(100)])
        async with Collector(broker.port, "rnst/v1/test/n1/#") as c:
            await run_until(await sending(proxy.port, outbox, window=16), None, 1.0)
            proxy.quirks.withhold_pubacks = False
            outbox.begin_session()  # what the uplink does at each new session
            drained = asyncio.ensure_future(until_empty(outbox, 20))
            await run_until(await sending(proxy.port, outbox, window=16), drained, 20)
            await c.wait_for(
                lambda: {m.payload["seq"] for m in c.on("events/door")} == set(range(1, 101)),
                10,
                "all 100",
            )
        # the first window went twice (QoS 1: at least once); dispatch de-duplicates
        assert len(c.on("events/door")) == 116
    finally:
        await proxy.close()


async def test_qos_0_samples_leave_the_outbox_once_written(
    broker: Mosquitto, outbox: Outbox
) -> None:
    await fill(outbox, [position(i) for i in range(300)])
    async with Collector(broker.port, "rnst/v1/test/n1/#") as c:
        sender = await sending(broker.port, outbox, window=32)
        drained = asyncio.ensure_future(until_empty(outbox, 20))
        await run_until(sender, drained, 20)
        await c.wait_for(lambda: len(c.on("position")) >= 300, 10, "the samples")
    assert rows(outbox) == 0


async def test_a_backlog_of_samples_goes_in_batches_in_order_and_leaves_the_outbox(
    broker: Mosquitto, outbox: Outbox
) -> None:
    await fill(outbox, [position(i) for i in range(300)] + [door(i) for i in range(10)])
    async with Collector(broker.port, "rnst/v1/test/n1/#") as c:
        sender = await sending(broker.port, outbox, window=8, batch_max=50)
        drained = asyncio.ensure_future(until_empty(outbox, 20))
        await run_until(sender, drained, 20)
        await c.wait_for(lambda: len(c.on("position")) >= 300, 10, "the samples")
        await c.wait_for(lambda: len(c.on("events/door")) >= 10, 10, "the events")
    assert [m.payload["seq"] for m in c.on("position")] == list(range(1, 301))
    assert max(c.publishes["position"]) == 50
    # a batch is cut where a read-ahead of the outbox ends: at most one short batch per fetch
    assert len(c.publishes["position"]) <= 300 // 50 + math.ceil(300 / (READ_AHEAD * 8))
    assert c.publishes["events/door"] == [1] * 10  # events never share a publish
    assert sender.sent == 310
    assert rows(outbox) == 0


async def test_live_samples_wait_batch_s_for_company_while_an_event_goes_at_once(
    broker: Mosquitto, outbox: Outbox
) -> None:
    async with Collector(broker.port, "rnst/v1/test/n1/#") as c:
        sender = await sending(broker.port, outbox, window=8, batch_s=1.0, batch_max=50)
        async with draining(sender):
            first = time.monotonic()
            for i in range(3):
                await fill(outbox, [position(i)])
                await asyncio.sleep(0.1)
            await fill(outbox, [door(0)])
            await c.wait_for(lambda: len(c.on("events/door")) == 1, 5, "the event")
            door_at = time.monotonic()
            await c.wait_for(lambda: len(c.on("position")) == 3, 5, "the batch")
            batch_at = time.monotonic()
    assert c.publishes["position"] == [3]  # one publish: the three samples
    assert door_at - first < 1.0 <= batch_at - first  # the event did not wait for them
    await until_empty(outbox, 5)
    assert rows(outbox) == 0


async def test_a_batch_never_acknowledged_stays_in_the_outbox_and_goes_again(
    broker: Mosquitto, outbox: Outbox
) -> None:
    proxy = await MqttProxy(broker.port, Quirks(withhold_pubacks=True)).start()
    try:
        await fill(outbox, [position(i, qos=1) for i in range(30)])
        async with Collector(broker.port, "rnst/v1/test/n1/#") as c:
            sender = await sending(proxy.port, outbox, window=4, batch_max=10)
            await run_until(sender, None, 1.0)
            await c.wait_for(lambda: len(c.on("position")) >= 30, 5, "the batches")
            assert c.publishes["position"] == [10, 10, 10]
            await outbox.flush()
            assert rows(outbox) == 30  # the broker has them, no PUBACK came: all kept
            assert sender.sent == 0
            proxy.quirks.withhold_pubacks = False
            outbox.begin_session()
            drained = asyncio.ensure_future(until_empty(outbox, 20))
            again = await sending(proxy.port, outbox, window=4, batch_max=10)
            await run_until(again, drained, 20)
        assert again.sent == 30
        assert {m.payload["seq"] for m in c.on("position")} == set(range(1, 31))
        assert rows(outbox) == 0
    finally:
        await proxy.close()


def stored(i: int, priority: Priority, *, live: bool) -> Stored:
    return Stored(i, f"t/{i}", b"{}", 1, False, None, 80, int(priority), live)


async def test_a_live_message_goes_before_the_backlog_already_read_ahead(outbox: Outbox) -> None:
    sender = await sending(1, outbox, window=4)
    sender._take([stored(i, Priority.EVENT, live=False) for i in (1, 2, 3)])
    sender._take([stored(9, Priority.EVENT, live=True), stored(4, Priority.EVENT, live=False)])
    assert [m.id for m in sender._ahead] == [9, 1, 2, 3, 4]


async def test_a_higher_class_goes_before_what_was_read_ahead_of_a_lower_one(
    outbox: Outbox,
) -> None:
    sender = await sending(1, outbox, window=4)
    sender._take([stored(1, Priority.SAMPLE, live=True), stored(2, Priority.SAMPLE, live=True)])
    sender._take([stored(5, Priority.ALARM, live=False), stored(6, Priority.SAMPLE, live=True)])
    assert [m.id for m in sender._ahead] == [5, 1, 2, 6]


async def test_over_mqtt_311_the_backlog_reaches_the_broker_in_order_and_leaves_the_outbox(
    broker: Mosquitto, outbox: Outbox
) -> None:
    await fill(outbox, [door(i) for i in range(500)])
    sender = await sending(broker.port, outbox, window=32, v5=False)
    seqs = await seqs_drained(broker.port, outbox, sender, "events/door", 500)
    assert seqs == list(range(1, 501))
    assert rows(outbox) == 0


async def test_a_publish_through_aiomqtt_during_a_drain_still_gets_its_puback(
    broker: Mosquitto, outbox: Outbox
) -> None:
    await fill(outbox, [door(i) for i in range(3000)])
    sender = await sending(broker.port, outbox, window=32)
    async with draining(sender) as client:
        for i in range(20):  # each waits for its own PUBACK, read by paho
            await client.publish("rnst/v1/test/n1/direct", f"{i}", qos=1, timeout=5)
        await until_empty(outbox, 30)
    assert sender.sent == 3000
    assert rows(outbox) == 0


async def test_qos_0_and_qos_1_on_one_aliased_topic_keep_their_order(
    broker: Mosquitto, outbox: Outbox
) -> None:
    # the first publish names the topic's alias and the others use it: were a QoS 1
    # message (built by the drain) and a QoS 0 one (through paho) written out of order,
    # the broker would see an alias before its name and end the session
    aliases = TopicAliases(10)  # Mosquitto's default Topic Alias Maximum

    def outgoing(
        topic: str, payload: bytes, props: Properties | None
    ) -> tuple[str, bytes, Properties | None]:
        name, props = aliases.apply(topic, props)
        return name, payload, props

    await fill(outbox, [position(i, qos=(i + 1) % 2) for i in range(400)])
    sender = await sending(broker.port, outbox, window=32, outgoing=outgoing)
    seqs = await seqs_drained(broker.port, outbox, sender, "position", 400)
    assert seqs == list(range(1, 401))
    assert rows(outbox) == 0


@pytest.fixture
def denying(tmp_path: Path) -> Iterator[Mosquitto]:
    """A broker whose ACL lets no one publish on the node's topics (MQTT 5: PUBACK 0x87)."""
    acl = tmp_path / "deny.acl"
    acl.write_text("topic readwrite nothing/#\n")
    (tmp_path / "denying").mkdir()
    broker = Mosquitto(tmp_path / "denying", extra=f"acl_file {acl}").start()
    yield broker
    broker.stop()


async def test_a_publish_the_broker_refuses_stays_in_the_outbox(
    denying: Mosquitto, outbox: Outbox
) -> None:
    await fill(outbox, [door(i) for i in range(20)])
    told: list[tuple[str, int, int]] = []
    sender = await sending(denying.port, outbox, window=8)
    sender.on_refused = lambda topic, reason, n: told.append((topic, reason, n))
    await run_until(sender, None, 1.5)
    await outbox.flush()
    assert rows(outbox) == 20, "a refused publish was deleted: lost"
    # the window went before the first refusal; the rest waits behind one probe (5 s)
    assert sender.sent == 0 and sender.refused == 8
    assert {t[1] for t in told} == {0x87} and sum(t[2] for t in told) == 8
    assert all(t[0].endswith("/events/door") for t in told)


async def test_refused_rows_go_again_in_the_next_session_and_arrive_once_allowed(
    denying: Mosquitto, broker: Mosquitto, outbox: Outbox
) -> None:
    """An ACL fixed on the broker (here: the next session is on a broker that allows it)."""
    await fill(outbox, [door(i) for i in range(20)])
    await run_until(await sending(denying.port, outbox, window=8), None, 1.0)
    outbox.begin_session()  # what the uplink does at each new session
    async with Collector(broker.port, "rnst/v1/test/n1/#") as c:
        drained = asyncio.ensure_future(until_empty(outbox, 20))
        await run_until(await sending(broker.port, outbox, window=8), drained, 20)
        await c.wait_for(lambda: len(c.on("events/door")) >= 20, 10, "all 20")
    assert sorted(m.payload["seq"] for m in c.on("events/door")) == list(range(1, 21))


async def test_while_some_publishes_are_refused_the_others_go_on(
    tmp_path: Path, outbox: Outbox
) -> None:
    """Refused rows free their place in the window: what the ACL allows is not held up."""
    acl = tmp_path / "part.acl"
    acl.write_text("topic readwrite rnst/v1/test/n1/position\n")  # doors refused
    broker = Mosquitto(tmp_path, extra=f"acl_file {acl}").start()
    try:
        pubs = [door(i) if i % 2 else position(i, qos=1) for i in range(40)]
        await fill(outbox, pubs)
        sender = await sending(broker.port, outbox, window=4)
        await run_until(sender, None, 1.5)
        await outbox.flush()
        assert sender.sent == 20 and 1 <= sender.refused <= 4  # one window of doors at most
        assert rows(outbox) == 20  # the doors, kept for the next session
    finally:
        broker.stop()


async def test_a_refused_publish_is_tried_again_in_the_same_session(
    tmp_path: Path, outbox: Outbox
) -> None:
    """A refusal may not last (MQTT 5 0x97 quota exceeded, 0x80, an ACL the operator fixes
    and reloads): a refused row is tried again, after a growing delay, in the session that
    saw it refused. Only at the next session, it waited for the link to drop: on a steady
    link, for days (a panic alarm refused once by a quota was never sent)."""
    acl = tmp_path / "part.acl"
    acl.write_text("topic readwrite rnst/v1/test/n1/position\n")  # doors refused
    broker = Mosquitto(tmp_path, extra=f"acl_file {acl}").start()
    try:
        await fill(outbox, [door(i) for i in range(10)])
        async with Collector(broker.port, "rnst/v1/test/n1/#") as c:
            sender = await sending(broker.port, outbox, window=4)
            sender.retry_s = 0.2
            async with draining(sender):
                await until_refused(sender, 6)  # the window, then the probe again
                assert sender.refused >= 6 and sender.sent == 0
                allow_all(broker, acl)
                await until_empty(outbox, 10)
            await c.wait_for(lambda: len(c.on("events/door")) >= 10, 10, "all 10")
        assert sorted(m.payload["seq"] for m in c.on("events/door")) == list(range(1, 11))
        assert sender.sent == 10 and rows(outbox) == 0
    finally:
        broker.stop()


async def test_a_newer_retained_message_waits_behind_a_refused_one_and_stays_the_value(
    tmp_path: Path, outbox: Outbox
) -> None:
    """A panic raised while the broker refuses the alarm topic (a quota, an ACL being
    fixed), then cleared once it takes it again: the clear waits behind the raise (the
    refused topic's probe), so both reach dispatch in their order and the retained value
    is the clear, not `active: true` for a panic already over."""
    acl = tmp_path / "part.acl"
    acl.write_text("topic readwrite rnst/v1/test/n1/position\n")  # the alarm topic refused
    broker = Mosquitto(tmp_path, extra=f"acl_file {acl}").start()
    alarm_topic = TOPICS.base + "/alarm/panic"
    try:
        sender = await sending(broker.port, outbox, window=4)
        sender.retry_s = 1.5
        async with Collector(broker.port, alarm_topic) as live, draining(sender):
            await fill(outbox, [panic(active=True)])
            await until_refused(sender, 1)
            assert sender.refused == 1 and sender.sent == 0
            allow_all(broker, acl)
            await acl_takes(broker.port, TOPICS.base + "/alarm/probe")
            await fill(outbox, [panic(active=False)])  # before the raise is retried
            await until_empty(outbox, 10)
            await live.wait_for(lambda: len(live.on("alarm/panic")) >= 2, 5, "both")
        assert [m.payload["active"] for m in live.on("alarm/panic")] == [True, False]
        async with Collector(broker.port, alarm_topic) as late:  # a dispatch starting now
            await late.wait_for(lambda: len(late.messages) >= 1, 5, "the retained alarm")
        assert [m.payload["active"] for m in late.messages] == [False]
        assert sender.sent == 2
        ((_topic, kept, _qos),) = await outbox.retained()
        assert json.loads(kept)["active"] is False  # what a broker's memory is restored to
    finally:
        broker.stop()


async def test_a_panic_put_during_a_backlog_drain_on_a_slow_link_arrives_within_seconds(
    broker: Mosquitto, outbox: Outbox
) -> None:
    """A panic pressed as a day's backlog drains over a slow link (32 KB/s up here): nothing
    overtakes what is written to the connection, and the drain wrote every sample the
    kernel took, some 560 KB here (17 s); now what is queued is about a second of what the
    link carries."""
    await fill(outbox, [position(i) for i in range(3000)])
    async with (
        SlowLink(broker.port, 32_000) as link,
        Collector(broker.port, "rnst/v1/test/n1/#") as c,
    ):
        sender = await sending(link.port, outbox, window=32, batch_max=50)
        async with draining(sender):
            await c.wait_for(lambda: len(c.on("position")) >= 50, 5, "the backlog drains")
            await outbox.put_nowait(panic(active=True))
            # ~1 s here; 1.8 s when the proxy (in this loop) carries half as much, as on a
            # loaded CI; 17 s before the budget
            await c.wait_for(lambda: len(c.on("alarm/panic")) == 1, 8, "the panic")


async def test_a_panic_is_sent_past_a_read_ahead_the_link_does_not_take(
    broker: Mosquitto, outbox: Outbox
) -> None:
    """The link stops carrying anything mid-drain: the read-ahead stays full of samples,
    and an alarm put then must still be written (the window has room for it): it was left
    in the outbox until the read-ahead ran low."""
    await fill(outbox, [position(i) for i in range(3000)])
    async with (
        SlowLink(broker.port, 32_000) as link,
        Collector(broker.port, "rnst/v1/test/n1/#") as c,
    ):
        sender = await sending(link.port, outbox, window=32, batch_max=50)
        async with draining(sender):
            await c.wait_for(lambda: len(c.on("position")) >= 50, 5, "the backlog drains")
            link.rate = 0
            await outbox.put_nowait(panic(active=True))
            deadline = time.monotonic() + 5.0  # generous: a loaded CI; ~0.05 s here
            # the one QoS 1 publish in flight (a QoS 0 sample paho has not written yet is
            # in flight too: `in_flight` alone could pass without the panic)
            while (sent := sender.largest_unacked()) is None:
                assert time.monotonic() < deadline, "the panic was not sent"
                await asyncio.sleep(0.01)
            assert sent.topic == TOPICS.base + "/alarm/panic", sent


def counting_pumps(sender: Sender) -> list[int]:
    """Turns of the drain (`Sender._pump`) from now on: one for each time the node's loop
    wakes it up, counted in the list's one item."""
    turns = [0]
    pump = sender._pump

    def counted() -> None:
        turns[0] += 1
        pump()

    sender._pump = counted  # type: ignore[method-assign]
    return turns


async def test_a_drain_held_back_by_a_link_that_carries_nothing_wakes_seldom_not_every_20_ms(
    broker: Mosquitto, outbox: Outbox
) -> None:
    """Out of coverage, the session's TCP connection is not given up for a while: the drain,
    held back by the budget, looked at the queue every 20 ms (50 wake-ups a second, a Pi
    Zero's CPU and a parked vehicle's battery) for what the link did not carry. Now a few
    in the first second, as the rate it carried fades, then one a second."""
    await fill(outbox, [position(i) for i in range(3000)])
    async with (
        SlowLink(broker.port, 32_000) as link,
        Collector(broker.port, "rnst/v1/test/n1/#") as c,
    ):
        sender = await sending(link.port, outbox, window=32, batch_max=50)
        async with draining(sender):
            await c.wait_for(lambda: len(c.on("position")) >= 50, 5, "the backlog drains")
            link.rate = 0
            await asyncio.sleep(0.1)  # the proxy's buffers full: nothing leaves the socket
            turns = counting_pumps(sender)
            await asyncio.sleep(1.0)
            # ~4 now (at the rate it carried before, fading); 49 before
            assert turns[0] <= 8, turns


async def test_a_drain_held_back_on_a_slow_link_keeps_it_busy_with_a_few_wake_ups_a_second(
    broker: Mosquitto, outbox: Outbox
) -> None:
    """The drain looks at the queue again about when the link, at the rate it carried,
    has it down to three quarters of the budget: four or so wake-ups a second (and the
    writes they make) instead of 50 keep the link as busy."""
    await fill(outbox, [position(i) for i in range(3000)])
    async with (
        SlowLink(broker.port, 32_000) as link,
        Collector(broker.port, "rnst/v1/test/n1/#") as c,
    ):
        sender = await sending(link.port, outbox, window=32, batch_max=50)
        async with draining(sender):
            await c.wait_for(lambda: len(c.on("position")) >= 50, 5, "the backlog drains")
            turns, starved = counting_pumps(sender), link.starved
            await asyncio.sleep(1.0)
            # ~10 now (a look, and paho's write it makes, each a turn); ~100 before
            assert turns[0] <= 25, turns
            # the link never waits for the drain (what it carries, the proxy in this loop
            # sets: 70 % of its rate on a loaded CI)
            assert link.starved - starved < 0.1, link.starved - starved


async def until_a_look(turns: list[int], within_s: float = 2.0) -> None:
    """Until the drain's next turn (`counting_pumps`): held back on a quiet link, its look
    at the queue."""
    seen, deadline = turns[0], time.monotonic() + within_s
    while turns[0] == seen:
        assert time.monotonic() < deadline, "the drain never looked again"
        await asyncio.sleep(0.005)


async def test_an_event_put_while_the_link_carries_nothing_goes_soon_after_it_comes_back(
    broker: Mosquitto, outbox: Outbox
) -> None:
    """A command's reply, a tap (an event, here a door's) put while the link carries nothing:
    no event says when it comes back, only the drain's next look at the queue. Looks once a
    second, the event arrived ~1 s after the link came back (0.25 s with a 20 ms look); the
    outbox keeps it behind the full read-ahead of samples until a look lets them go."""
    await fill(outbox, [position(i) for i in range(3000)])
    async with (
        SlowLink(broker.port, 32_000) as link,
        Collector(broker.port, "rnst/v1/test/n1/#") as c,
    ):
        sender = await sending(link.port, outbox, window=32, batch_max=50)
        async with draining(sender):
            await c.wait_for(lambda: len(c.on("position")) >= 50, 5, "the backlog drains")
            link.rate = 0
            await outbox.put_nowait(door(1))
            await asyncio.sleep(1.1)  # nothing carried for QUEUE_S: the link looks gone
            await until_a_look(counting_pumps(sender))  # the worst moment: right after one
            link.rate, back = 300_000, time.monotonic()
            await c.wait_for(lambda: len(c.on("events/door")) == 1, 5, "the door event")
            # ~0.35 s now, 32 KB queued behind it; 0.96-1.21 s looking once a second
            assert time.monotonic() - back < 0.75


async def test_a_link_that_speeds_up_is_not_left_idle_until_the_drains_next_look(
    broker: Mosquitto, outbox: Outbox
) -> None:
    """On a slow link the drain looks again when it has the queue down to three quarters
    of the budget at the rate it carried; when it speeds up (a handover to a faster cell)
    the queue is gone long before that look: the link idled until it, and each look then
    only doubled the budget measured over the last second."""
    await fill(outbox, [position(i) for i in range(3000)])
    async with (
        SlowLink(broker.port, 8_000) as link,
        Collector(broker.port, "rnst/v1/test/n1/#") as c,
    ):
        sender = await sending(link.port, outbox, window=32, batch_max=50)
        async with draining(sender):
            await c.wait_for(lambda: len(c.on("position")) >= 50, 5, "the backlog drains")
            await asyncio.sleep(0.5)  # its rate measured: looks ~0.5 s apart
            await until_a_look(counting_pumps(sender))
            link.rate, starved = 300_000, link.starved
            await asyncio.sleep(1.0)
            # waiting for the node's bytes: ~0.1 s now (~0 looking every 20 ms); 0.85 s
            # looking at the pace of the rate it had
            assert link.starved - starved < 0.35, link.starved - starved


async def test_the_brokers_receive_maximum_bounds_the_window(
    tmp_path: Path, outbox: Outbox
) -> None:
    """Mosquitto sends its max_inflight_messages as Receive Maximum (MQTT 5); a broker that
    enforces it (HiveMQ) ends the session of a client with more in flight (0x93)."""
    broker = Mosquitto(tmp_path, extra="max_inflight_messages 5").start()
    proxy = await MqttProxy(broker.port, Quirks(withhold_pubacks=True)).start()
    try:
        await fill(outbox, [door(i) for i in range(100)])
        sender = await sending(proxy.port, outbox, window=32)
        await run_until(sender, None, 1.5)
        assert sender.client.receive_max == 5
        assert sender.window == 5 - RESERVED
        assert proxy.withheld == 5 - RESERVED  # in flight at most: the broker's figure
    finally:
        await proxy.close()
        broker.stop()


@pytest.mark.parametrize("receive_max", [1, 2, 3])
async def test_the_drain_takes_a_receive_maximum_of_three_or_less_whole(
    tmp_path: Path, outbox: Outbox, receive_max: int
) -> None:
    """Leaving two of it to the publishes made beside the drain, which wait for room under
    such a broker (`Sender.beside`), ran a backlog at one message a round trip where the
    broker takes two or three: a half or a third of its rate."""
    broker = Mosquitto(tmp_path, extra=f"max_inflight_messages {receive_max}").start()
    proxy = await MqttProxy(broker.port, Quirks(withhold_pubacks=True)).start()
    try:
        await fill(outbox, [door(i) for i in range(100)])
        sender = await sending(proxy.port, outbox, window=32)
        await run_until(sender, None, 1.0)
        assert sender.window == receive_max
        assert proxy.withheld == receive_max
    finally:
        await proxy.close()
        broker.stop()


async def test_publishes_made_beside_a_full_drain_stay_within_the_receive_maximum(
    tmp_path: Path, outbox: Outbox
) -> None:
    """A republish or the outbox-full alarm goes through paho while the drain's window is
    full: the drain leaves them room, so the broker never sees more than it allows."""
    broker = Mosquitto(tmp_path, extra="max_inflight_messages 5").start()
    proxy = await MqttProxy(broker.port, Quirks(withhold_pubacks=True)).start()
    try:
        await fill(outbox, [door(i) for i in range(100)])
        sender = await sending(proxy.port, outbox, window=32)
        async with draining(sender):
            for _ in range(150):
                if sender.in_flight and proxy.withheld >= sender.in_flight:
                    break
                await asyncio.sleep(0.02)
            assert sender.in_flight == sender.window  # the drain's window is full
            for what in ("republish", "alarm"):  # at once, through paho: at most two
                sender.client.publish_nowait(f"rnst/v1/t/n/{what}", b"{}", 1, False)
            await asyncio.sleep(0.5)
            assert proxy.withheld <= 5  # the drain's and paho's: the broker's allowance
    finally:
        await proxy.close()
        broker.stop()


SMALL = 2048
"""The small broker's max_packet_size: Mosquitto announces it in its CONNACK (MQTT 5) and
ends the session of a client that sends a bigger packet (0x95, packet too large)."""


@pytest.fixture
def small(tmp_path: Path) -> Iterator[Mosquitto]:
    (tmp_path / "small").mkdir()
    broker = Mosquitto(tmp_path / "small", extra=f"max_packet_size {SMALL}").start()
    yield broker
    broker.stop()


def big_door(size: int = 3 * SMALL, qos: int | None = None) -> Publication:
    """A door event larger than the small broker takes (a config's door name could be)."""
    return Publication.make(TOPICS, DOOR, DoorEvent(door="d" * size, open=True), qos=qos)


def wildcard_door(qos: int) -> Publication:
    """A row whose publish cannot be built (a wildcard in its topic), written as is."""
    good = door(0)
    return Publication(good.spec, "rnst/v1/test/n1/events/+", good.stream, good.body, qos)


HeldBackCall = tuple[str, int, "int | None", str]


def telling(sender: Sender) -> list[HeldBackCall]:
    told: list[HeldBackCall] = []
    sender.on_held_back = lambda topic, n, size, why: told.append((topic, n, size, why))
    return told


def ended_for_size(broker: Mosquitto) -> bool:
    """Whether Mosquitto threw a client off for a packet over its max_packet_size."""
    return "oversize packet" in broker.log.read_text()


async def delivered(
    port: int, box: Outbox, sender: Sender, suffix: str, n: int, left: int
) -> list[int]:
    """Run `sender` until `n` messages on `suffix` arrived and `left` rows are left."""
    async with Collector(port, "rnst/v1/test/n1/#") as c:

        async def until() -> None:
            await c.wait_for(lambda: len(c.on(suffix)) >= n, 10, f"{n} on {suffix}")
            while box.depth > left:
                await asyncio.sleep(0.02)

        await run_until(sender, asyncio.ensure_future(until()), 10)
    await box.flush()
    return [m.payload["seq"] for m in c.on(suffix)]


@pytest.mark.parametrize("qos", [0, 1])
async def test_a_publish_over_the_brokers_maximum_packet_size_is_held_back_and_the_rest_goes(
    small: Mosquitto, outbox: Outbox, qos: int
) -> None:
    """Not sent, so the session goes on and the rows behind it go; not deleted."""
    await fill(outbox, [big_door(qos=qos), *(door(i) for i in range(1, 21))])
    sender = await sending(small.port, outbox, window=8)
    told = telling(sender)
    seqs = await delivered(small.port, outbox, sender, "events/door", 20, left=1)
    assert sender.client.max_packet == SMALL
    assert sorted(seqs) == list(range(2, 22))
    assert rows(outbox) == 1 and sender.held_back == 1 and sender.sent == 20
    ((topic, n, size, why),) = told
    assert topic == TOPICS.of(DOOR) and n == 1 and size is not None and size > SMALL
    assert why == ""
    assert not ended_for_size(small)


async def test_a_publish_held_back_goes_in_a_session_on_a_broker_that_takes_it(
    small: Mosquitto, broker: Mosquitto, outbox: Outbox
) -> None:
    """The broker's limit raised meanwhile (here: the next session is on a broker without
    one): the row kept in the outbox goes, and leaves it."""
    await fill(outbox, [big_door(), door(1)])
    await delivered(small.port, outbox, await sending(small.port, outbox, 8), "events/door", 1, 1)
    outbox.begin_session()  # what the uplink does at each new session
    seqs = await delivered(
        broker.port, outbox, await sending(broker.port, outbox, 8), "events/door", 1, 0
    )
    assert seqs == [1]
    assert rows(outbox) == 0


@pytest.mark.parametrize("qos", [0, 1])
async def test_a_row_whose_publish_cannot_be_built_is_held_back_and_the_rest_goes(
    broker: Mosquitto, outbox: Outbox, qos: int
) -> None:
    await fill(outbox, [wildcard_door(qos), *(door(i) for i in range(1, 21))])
    sender = await sending(broker.port, outbox, window=8)
    told = telling(sender)
    seqs = await delivered(broker.port, outbox, sender, "events/door", 20, left=1)
    assert sorted(seqs) == list(range(2, 22))
    assert rows(outbox) == 1 and sender.held_back == 1
    ((topic, n, size, why),) = told
    assert topic.endswith("/events/+") and n == 1 and size is None and "wildcard" in why


def indented(
    topic: str, payload: bytes, props: Properties | None
) -> tuple[str, bytes, Properties | None]:
    """An encoding larger than the stored JSON (CBOR can be: 0.1 is 3 bytes in JSON, 9 in
    CBOR), still JSON so the subscriber reads it."""
    return topic, json.dumps(json.loads(payload), indent=4).encode(), props


@pytest.mark.parametrize(
    ("qos", "outgoing"),
    [(0, None), (1, None), (1, indented)],
    ids=["qos0", "qos1", "qos1-larger-encoding"],
)
async def test_samples_batched_under_a_small_maximum_packet_size_all_go_in_batches(
    small: Mosquitto, outbox: Outbox, qos: int, outgoing: Outgoing | None
) -> None:
    """Without the cap, a batch of 100 positions (about 20 kB) would go over the broker's
    2 kB: no sample is held back, Mosquitto throws no one off, each publish holds several."""
    await fill(outbox, [position(i, qos=qos) for i in range(400)])
    sender = await sending(small.port, outbox, 8, batch_max=100, outgoing=outgoing)
    async with Collector(small.port, "rnst/v1/test/n1/#") as c:
        drained = asyncio.ensure_future(until_empty(outbox, 10))
        await run_until(sender, drained, 10)
        await c.wait_for(lambda: len(c.on("position")) >= 400, 10, "400 positions")
    assert sorted(m.payload["seq"] for m in c.on("position")) == list(range(1, 401))
    assert sender.held_back == 0 and not ended_for_size(small)
    assert max(c.publishes["position"]) > 1, "no batches: the test proves nothing"
    assert rows(outbox) == 0


async def test_a_broker_announcing_a_one_byte_maximum_packet_size_costs_no_row_nor_the_session(
    broker: Mosquitto, outbox: Outbox
) -> None:
    """Hostile or broken: no publish fits. Nothing is sent, nothing deleted, the drain
    runs on (it does not spin: the rows wait for the next session), each is counted."""
    proxy = await MqttProxy(broker.port, Quirks(max_packet_size=1)).start()
    try:
        pubs = [door(i) if i % 3 else position(i, qos=i % 2) for i in range(60)]
        await fill(outbox, pubs)
        sender = await sending(proxy.port, outbox, 8, batch_max=50)
        told = telling(sender)
        await run_until(sender, None, 1.0)  # raises if the session ended
        await outbox.flush()
        assert sender.client.max_packet == 1
        assert rows(outbox) == 60 and sender.sent == 0
        assert sender.held_back == 60 == sum(t[1] for t in told)
        assert all(size is not None and size > 1 for _, _, size, _ in told)
    finally:
        await proxy.close()


async def test_a_publish_held_back_does_not_leave_a_topic_alias_the_broker_never_saw(
    small: Mosquitto, outbox: Outbox
) -> None:
    """The held-back publish was the first on its topic, so it was to name the topic and
    set up its alias; the next one must name it again, or the broker ends the session
    (topic alias invalid)."""
    aliases = TopicAliases(10)

    def outgoing(
        topic: str, payload: bytes, props: Properties | None
    ) -> tuple[str, bytes, Properties | None]:
        name, props = aliases.apply(topic, props)
        return name, payload, props

    await fill(outbox, [big_door(), *(door(i) for i in range(1, 21))])
    sender = await sending(small.port, outbox, 8, outgoing=outgoing, unsent=aliases.unsent)
    seqs = await delivered(small.port, outbox, sender, "events/door", 20, left=1)
    assert sorted(seqs) == list(range(2, 22))
    assert sender.held_back == 1


async def test_a_message_acknowledged_just_before_the_link_dropped_goes_once_and_the_next_goes(
    broker: Mosquitto, tmp_path: Path
) -> None:
    """The panic's PUBACK came, then the link dropped before the outbox's next commit (20 ms
    of `flush_interval_ms`, a slow SD card's sync, or a full disk that refuses the delete for
    as long as it is full) and a new session began: the acknowledged row was handed out and
    sent again, acknowledged twice, and counted out of its class twice, so the class looked
    empty and the next panic was never sent."""
    box = Outbox(OutboxConfig(path=tmp_path / "outbox.sqlite"), Clock())
    await box.open()  # no writer: the deletion waits for a commit the test makes
    try:
        box.put_nowait(panic(active=True))
        await box.flush()
        async with Collector(broker.port, "rnst/v1/test/n1/#") as c:
            first = await sending(broker.port, box, window=8)
            async with draining(first):
                await c.wait_for(lambda: first.sent == 1, 5, "the raise's PUBACK")
            box.begin_session()  # the link dropped; the next session
            second = await sending(broker.port, box, window=8)
            async with draining(second):
                await asyncio.sleep(0.5)
                box.put_nowait(panic(active=False))
                await box.flush()
                await c.wait_for(lambda: len(c.on("alarm/panic")) >= 2, 5, "the clear")
                await asyncio.sleep(0.3)
        await box.flush()
        assert [m.payload["seq"] for m in c.on("alarm/panic")] == [1, 2]
        assert box.depth == 0
        assert rows(box) == 0
    finally:
        await box.close()


async def test_a_message_delivered_without_the_flag_by_a_broker_without_retain_is_what_is_restored(
    broker: Mosquitto, tmp_path: Path, outbox: Outbox
) -> None:
    """The panic was raised while the broker kept retained messages, and cleared while it
    kept none (`retain_available false`: the node sends without the flag). The clear is the
    topic's last delivered message: it, not the raise, is what the node restores, retained,
    to a broker that lost its retained store (a session not present: another broker behind
    a balancer, a restart without persistence). Restoring the raise would show dispatch an
    open panic that was cleared."""
    await fill(outbox, [panic(active=True)])
    await until_sent(await sending(broker.port, outbox, window=8), 1)
    (tmp_path / "noretain").mkdir()
    plain = Mosquitto(tmp_path / "noretain", extra="retain_available false").start()
    try:
        await fill(outbox, [panic(active=False)])
        outbox.begin_session()
        sender = Sender(
            MqttClient(
                "127.0.0.1", plain.port, identifier="n1", protocol=aiomqtt.ProtocolVersion.V5
            ),
            outbox,
            window=8,
            timeout_s=15.0,
            v5=True,
            retains=False,
        )
        await until_sent(sender, 1)
    finally:
        plain.stop()
    await outbox.flush()
    (restored,) = await outbox.retained()
    assert json.loads(restored[1])["active"] is False


async def until_sent(sender: Sender, n: int, within_s: float = 5.0) -> None:
    """Run `sender` on its connected client until the broker acknowledged `n` messages."""
    async with draining(sender):
        deadline = time.monotonic() + within_s
        while sender.sent < n:
            assert time.monotonic() < deadline, f"{sender.sent} of {n} acknowledged"
            await asyncio.sleep(0.02)


async def test_a_topic_the_acl_refuses_is_tried_with_one_message_not_all_of_them(
    denying: Mosquitto, outbox: Outbox
) -> None:
    """Each refused row was tried again on its own timer: an ACL refusing a topic for good
    had every message of it sent again every 5 minutes for as long as the node ran (at
    10,000 doors, 33 refused publishes a second on a vehicle's mobile data). One message of
    the topic goes again; the others wait for the broker to take it."""
    await fill(outbox, [door(i) for i in range(40)])
    sender = await sending(denying.port, outbox, window=8)
    sender.retry_s = sender.retry_max_s = 0.1
    await run_until(sender, None, 2.0)
    await outbox.flush()
    assert rows(outbox) == 40, "a refused publish was deleted: lost"
    # the window that went before the first refusal, then one probe each 0.1 s at most
    assert 8 <= sender.refused <= 8 + 2.0 / 0.1, sender.refused


async def test_the_messages_kept_of_a_refused_topic_are_bounded_oldest_dropped(
    denying: Mosquitto, outbox: Outbox
) -> None:
    """An ACL refusing a topic refuses every message of it until an operator fixes it: kept
    without a bound they filled the outbox to its hard cap, where the node's other events
    were refused too. Over the bound the oldest go, counted and told."""
    await fill(outbox, [door(i) for i in range(40)])
    told: list[tuple[str, int]] = []
    sender = await sending(denying.port, outbox, window=4)
    sender.refused_kept = 10
    sender.on_dropped = lambda topic, n: told.append((topic, n))
    await run_until(sender, None, 1.5)
    await outbox.flush()
    assert sender.dropped == sum(n for _, n in told) > 0
    assert rows(outbox) == 40 - sender.dropped <= 10 + 4  # held, and the probe
    kept = sorted(json.loads(r[0])["seq"] for r in rows_on_disk(
        Path(outbox.config.path), "SELECT payload FROM msg"
    ))
    assert kept[-10:] == list(range(31, 41)), "the newest are kept"


async def test_a_refused_topic_whose_first_message_is_held_back_probes_with_the_next(
    small: Mosquitto, outbox: Outbox
) -> None:
    """A topic refused in an earlier session is probed with its first message; when that
    one is held back (over the broker's Maximum Packet Size), the next one is the probe, or
    the whole topic waited for the session's end, in every session while it came first."""
    await fill(outbox, [big_door(), *(door(i) for i in range(1, 6))])
    sender = Sender(
        MqttClient("127.0.0.1", small.port, identifier="n1", protocol=aiomqtt.ProtocolVersion.V5),
        outbox,
        window=8,
        timeout_s=15.0,
        v5=True,
        parked=[TOPICS.of(DOOR)],
    )
    seqs = await delivered(small.port, outbox, sender, "events/door", 5, left=1)
    assert sorted(seqs) == list(range(2, 7)) and sender.held_back == 1
