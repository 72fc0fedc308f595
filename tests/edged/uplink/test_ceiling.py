"""What the node learns of a Maximum Packet Size the broker does not announce, from the
sessions the broker ended by closing the connection (`edged.uplink.ceiling`)."""

from edged.uplink.ceiling import (
    FORGET_S,
    LEARN_AFTER,
    SMALLEST_SUSPECT,
    PacketCeiling,
    Suspect,
)

ALARM = Suspect(row=7, topic="rnst/v1/t/n/alarm/lone_worker", size=5000, batch=False)
BATCH = Suspect(row=9, topic="rnst/v1/t/n/position", size=9000, batch=True)


def taught(ceiling: PacketCeiling, suspect: Suspect, now: float = 0.0) -> int:
    """Sessions ended with `suspect` in flight until it teaches a limit (0: never, of 5)."""
    for n in range(1, 6):
        if ceiling.ended(suspect, now):
            return n
    return 0


def test_the_same_publish_in_flight_at_two_closes_in_a_row_teaches_a_limit_under_it() -> None:
    ceiling = PacketCeiling()
    assert taught(ceiling, ALARM) == LEARN_AFTER == 2
    assert ceiling.limit(0.0) == ALARM.size - 1
    assert ceiling.batch_limit(0.0) is None


def test_a_close_with_another_publish_in_flight_between_teaches_nothing() -> None:
    """Two link drops with different large publishes in flight are no pattern."""
    ceiling = PacketCeiling()
    other = Suspect(row=8, topic=ALARM.topic, size=6000, batch=False)
    for suspect in (ALARM, other, ALARM, other):
        assert not ceiling.ended(suspect, 0.0)
    assert not ceiling.ended(None, 0.0)
    assert not ceiling.ended(ALARM, 0.0)  # after a close with nothing in flight: first again
    assert ceiling.limit(0.0) is None


def test_a_publish_no_larger_than_one_the_broker_took_is_never_suspected() -> None:
    ceiling = PacketCeiling()
    ceiling.acknowledged(ALARM.size)
    assert taught(ceiling, ALARM) == 0
    assert ceiling.limit(0.0) is None


def test_a_learned_limit_is_forgotten_after_an_hour_and_taught_again_at_the_first_close() -> None:
    ceiling = PacketCeiling()
    taught(ceiling, ALARM)
    assert ceiling.limit(FORGET_S - 1) == ALARM.size - 1
    assert ceiling.limit(FORGET_S) is None  # what it held back goes again
    assert ceiling.ended(ALARM, FORGET_S)  # the broker still closes at it: at once
    assert ceiling.limit(FORGET_S) == ALARM.size - 1


def test_a_batch_taken_for_too_large_keeps_batches_to_the_largest_publish_taken() -> None:
    """A batch's size says nothing of single messages: they are not held back."""
    ceiling = PacketCeiling()
    ceiling.acknowledged(800)
    assert taught(ceiling, BATCH) == LEARN_AFTER
    assert ceiling.limit(0.0) is None
    assert ceiling.batch_limit(0.0) == 800
    ceiling.acknowledged(1200)  # a larger single message went: so may a batch
    assert ceiling.batch_limit(0.0) == 1200
    assert ceiling.batch_limit(FORGET_S) is None


def test_a_small_publish_in_flight_at_closes_in_a_row_teaches_nothing() -> None:
    """Over MQTT 3.1.1 a flaky link lost twice with the panic alarm (~330 bytes) in flight,
    right after a start (nothing acknowledged yet), held the alarm back for an hour."""
    ceiling = PacketCeiling()
    panic = Suspect(row=3, topic="rnst/v1/t/n/alarm/panic", size=330, batch=False)
    small_batch = Suspect(row=4, topic="rnst/v1/t/n/position", size=SMALLEST_SUSPECT, batch=True)
    assert taught(ceiling, panic) == 0
    assert taught(ceiling, small_batch) == 0
    assert ceiling.limit(0.0) is None and ceiling.batch_limit(0.0) is None
