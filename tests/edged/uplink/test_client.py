"""The uplink's own publishes beside the outbox (the birth, restored retained topics, a
direct publish) on a real Mosquitto whose ACL refuses some of them (MQTT 5: PUBACK 0x87)."""

import asyncio
import contextlib
from pathlib import Path

from core.counters import Counters
from edged.config.models import BrokerConfig
from edged.outbox import Outbox
from edged.payloads import State
from edged.topics import Topics
from edged.uplink.client import Uplink
from tests.helpers.broker import Mosquitto

TOPICS = Topics("rnst/v1", "test", "n1")


async def _ignore(_: object) -> None:
    return None


async def test_a_birth_and_a_direct_publish_the_broker_refuses_are_not_taken_as_sent(
    tmp_path: Path, outbox: Outbox
) -> None:
    """aiomqtt's publish takes a PUBACK 0x87 for a delivery: the node counted its birth as
    sent while the broker's retained `state` said offline, and `republish`, `say_offline`
    and the outbox-full alarm said True for what the broker refused."""
    acl = tmp_path / "nostate.acl"
    acl.write_text("topic readwrite rnst/v1/test/n1/position\ntopic read rnst/v1/test/n1/cmd/#\n")
    broker = Mosquitto(tmp_path, extra=f"acl_file {acl}").start()
    counters = Counters()
    uplink = Uplink(
        BrokerConfig(host="127.0.0.1", port=broker.port, reconnect_min_s=0.2),
        TOPICS,
        outbox,
        client_id="edged-test-n1",
        birth=lambda since: State(state="online", since=since),
        on_command=_ignore,
        counters=counters,
    )
    task = asyncio.create_task(uplink.run())
    try:
        for _ in range(200):
            if uplink.connected:
                break
            await asyncio.sleep(0.05)
        assert uplink.connected, "the session must go on: the outbox's messages still go"
        assert counters["uplink.publish_refused"] == 1, "the refused birth was taken as sent"
        state = TOPICS.base + "/state"
        assert await uplink.publish_direct(state, b"{}", qos=1, retain=True) is False
        assert counters["uplink.publish_refused"] == 2
        position = TOPICS.base + "/position"
        assert await uplink.publish_direct(position, b"{}", qos=1, retain=False) is True
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        broker.stop()
