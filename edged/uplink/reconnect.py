"""How long to wait before the next MQTT session.

A session that worked (subscribed, birth acknowledged) resets the backoff: on a link that
drops every minute, each new session starts after the shortest delay, not after a delay
grown to the cap by sessions that were fine. A session the broker gave to another client
with our id is not one that worked: the delays grow, so two clients with one id do not
throw each other off in a tight loop. Nor is one the broker ended with a DISCONNECT that
asks for room (server busy, quota exceeded, connection rate exceeded...: `asks_for_room`):
a fleet thrown off an overloaded broker must not come back all at once, at the shortest
delay, session after session. An MQTT 5 broker may say so (reason 0x8E); Mosquitto
2.0 and every 3.1.1 broker just close the connection, so several sessions in a row lost
within a second of their start, with no word from the broker, are taken for the same thing.
"""

import random
from dataclasses import dataclass

from edged.backoff import jittered_backoff

SHORT_SESSION_S = 1.0
"""A session lost sooner than this after its birth was acknowledged is suspicious: another
client looping on our id throws us off within milliseconds."""
SHORT_IN_A_ROW = 3
"""This many short sessions in a row, with no reason from the broker, look like another
client with our id."""


@dataclass(frozen=True)
class SessionEnd:
    worked: bool  # subscribed and the birth acknowledged
    lasted_s: float  # from the birth's acknowledgement to the end (0 if it never worked)
    taken_over: bool  # the broker said so (MQTT 5 reason 0x8E)
    closed_under_us: bool  # the connection was lost without a DISCONNECT from the broker
    pushed_back: bool = False  # the broker's DISCONNECT asked for room (`asks_for_room`)
    refused: bool = False  # the broker answered the attempt with a no (CONNACK, TLS, a close)


class Reconnect:
    def __init__(self, min_s: float, max_s: float, rng: random.Random) -> None:
        self.min_s = min_s
        self.max_s = max_s
        self.rng = rng
        self.failures = 0
        self.short_in_a_row = 0

    def probable_takeover(self, end: SessionEnd) -> bool:
        """The third short session lost in a row without a word (and each one after)."""
        short = end.worked and end.closed_under_us and end.lasted_s < SHORT_SESSION_S
        self.short_in_a_row = self.short_in_a_row + 1 if short else 0
        return self.short_in_a_row >= SHORT_IN_A_ROW

    def delay(self, end: SessionEnd, *, takeover: bool) -> float:
        """Seconds to wait after `end`; `takeover` when the id is in dispute."""
        if end.worked and not takeover and not end.pushed_back:
            self.failures = 0
        self.failures += 1
        return jittered_backoff(self.failures, self.min_s, self.max_s, self.rng)
