"""Which messages share a publish, when a batch is due, and what its payload is."""

import json

from hypothesis import given
from hypothesis import strategies as st

from edged.codec import messages
from edged.outbox import Stored
from edged.topics import Priority
from edged.uplink.batching import Batcher


def sample(
    i: int,
    topic: str = "n/position",
    *,
    live: bool = True,
    qos: int = 0,
    size: int = 0,
    priority: Priority = Priority.SAMPLE,
    retain: bool = False,
    correlation: bytes | None = None,
) -> Stored:
    payload = json.dumps({"seq": i, "pad": "x" * size}).encode()
    return Stored(i, topic, payload, qos, retain, correlation, len(payload), int(priority), live)


def test_only_samples_without_retain_or_correlation_are_batched() -> None:
    b = Batcher(10.0, 50)
    assert b.takes(sample(1))
    for p in (Priority.ALARM, Priority.EVENT, Priority.STATE, Priority.TRIP, Priority.HEALTH):
        assert not b.takes(sample(1, priority=p))
    assert not b.takes(sample(1, retain=True))
    assert not b.takes(sample(1, correlation=b"c"))


def test_batch_max_of_one_batches_nothing() -> None:
    assert not Batcher(10.0, 1).takes(sample(1))


def test_a_live_sample_waits_batch_s_for_company() -> None:
    b = Batcher(10.0, 50)
    b.add(sample(1), now=100.0)
    b.add(sample(2), now=104.0)
    assert b.next_due() == 110.0
    assert b.take(109.9, most=10) == []
    (batch,) = b.take(110.0, most=10)
    assert [m.id for m in batch.messages] == [1, 2]
    assert b.held == 0 and b.next_due() is None


def test_a_backlog_is_due_at_once() -> None:
    b = Batcher(30.0, 50)
    for i in range(5):
        b.add(sample(i, live=False), now=100.0)
    (batch,) = b.take(100.0, most=10)
    assert len(batch.messages) == 5 and not batch.live


def test_topics_qos_and_lanes_never_share_a_batch() -> None:
    b = Batcher(0.0, 50)
    b.add(sample(1, "n/position"), 0.0)
    b.add(sample(2, "n/vehicle"), 0.0)
    b.add(sample(3, "n/position", qos=1), 0.0)
    b.add(sample(4, "n/position", live=False), 0.0)
    b.add(sample(5, "n/position"), 0.0)
    batches = b.take(0.0, most=10)
    assert sorted([m.id for m in x.messages] for x in batches) == [[1, 5], [2], [3], [4]]


def test_a_full_batch_goes_without_waiting_and_the_next_one_starts() -> None:
    b = Batcher(60.0, 3)
    for i in range(7):
        b.add(sample(i), now=0.0)
    assert b.ready == 2
    first, second = b.take(0.0, most=10)
    assert [m.id for m in first.messages] == [0, 1, 2]
    assert [m.id for m in second.messages] == [3, 4, 5]
    assert b.held == 1 and b.next_due() == 60.0


def test_take_hands_out_at_most_what_the_window_has_room_for() -> None:
    b = Batcher(0.0, 2)
    for i in range(6):
        b.add(sample(i), now=0.0)
    assert len(b.take(0.0, most=2)) == 2
    assert b.held == 2
    assert b.take(0.0, most=0) == []
    assert len(b.take(0.0, most=5)) == 1


def test_a_lone_message_goes_as_itself_not_as_a_list_of_one() -> None:
    b = Batcher(0.0, 50)
    msg = sample(1)
    b.add(msg, 0.0)
    (batch,) = b.take(0.0, most=1)
    assert batch.payload() == msg.payload


@given(
    sizes=st.lists(st.integers(0, 3000), min_size=1, max_size=80),
    batch_max=st.integers(1, 40),
    max_bytes=st.integers(3100, 20_000),
)
def test_batches_keep_every_message_once_in_order_within_their_bounds(
    sizes: list[int], batch_max: int, max_bytes: int
) -> None:
    b = Batcher(5.0, batch_max, max_bytes)
    sent = [sample(i, size=n, live=i % 3 != 0) for i, n in enumerate(sizes)]
    for msg in sent:
        b.add(msg, now=0.0)
    batches = b.take(5.0, most=len(sent))
    assert b.held == 0
    got = [m for x in batches for m in x.messages]
    assert sorted(m.id for m in got) == [m.id for m in sent]
    for x in batches:
        assert len(x.messages) <= batch_max
        assert len(x.payload()) <= max_bytes
        assert [m["seq"] for m in messages(x.payload())] == [m.id for m in x.messages]
        assert [m.id for m in x.messages] == sorted(m.id for m in x.messages)


def test_a_batch_holds_no_more_than_the_room_the_brokers_packet_size_leaves() -> None:
    b = Batcher(0.0, 100)
    b.room = lambda topic, qos: 600 if topic == "n/position" else 10_000
    for i in range(40):
        b.add(sample(i, size=80), now=0.0)
        b.add(sample(100 + i, "n/vehicle", size=80), now=0.0)
    batches = b.take(0.0, most=100)
    small = [x for x in batches if x.topic == "n/position"]
    assert all(len(x.payload()) <= 600 for x in small) and len(small) > 1
    assert sum(len(x.messages) for x in small) == 40
    assert max(len(x.payload()) for x in batches if x.topic == "n/vehicle") > 600


def test_a_batch_put_back_goes_first_and_is_held_again() -> None:
    b = Batcher(0.0, 2)
    for i in range(4):
        b.add(sample(i), now=0.0)
    _, second = b.take(0.0, most=2)
    b.put_back(second)
    assert b.held == 2
    assert b.take(0.0, most=1) == [second]


def test_a_hurried_batcher_hands_out_what_waits_and_lets_nothing_wait_after() -> None:
    b = Batcher(20.0, 50)
    b.add(sample(1), now=100.0)
    b.add(sample(2, "n/vehicle"), now=100.5)
    b.hurry()  # the node stops
    assert sorted(m.id for batch in b.take(100.6, most=10) for m in batch.messages) == [1, 2]
    b.add(sample(3), now=101.0)
    assert b.next_due() == 101.0
    assert [m.id for m in b.take(101.0, most=10)[0].messages] == [3]
    assert b.held == 0
