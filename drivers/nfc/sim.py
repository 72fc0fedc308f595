"""`nfc.sim`: a reader that plays scripted taps, for the demo, the tests and the benchmarks.

Two sources of taps, both optional, both timed from the start of `run`:

- `taps`: a script of `{at_s, uid}`; with `repeat_every_s` it plays again every that many
  seconds (a shuttle's boarding pattern at each stop);
- `cards` with `every_s`: one of the cards every `every_s` seconds, in turn (`pick =
  "rotate"`) or at random (`"random"`, repeatable with `seed`).

And taps on demand, for in-process tests and benchmarks: `reader.present(uid)` on the
instance, or `drivers.nfc.sim.present(uid, reader="front-reader")` when only the reader's
name is known (the node builds the driver itself). Both are safe from any thread and emit
on the event loop at once, with `Tap.ts` taken when `present` was called, so a benchmark
measures from that instant.

Like a real reader it emits only 4-, 7- or 10-byte UIDs: the options reject others, and so
does `present`. It is ready at once and never fails.
"""

import asyncio
import heapq
import itertools
import random
import threading
import time
from collections.abc import Iterator
from typing import ClassVar, Literal, Self

from pydantic import ConfigDict, Field, model_validator

from core.confignumbers import NumbersNotBools
from core.driver import DriverContext, DriverOptions, Opens
from core.events import Tap
from drivers.nfc.uid import HexUid, valid_uid


class ScriptedTap(NumbersNotBools):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    at_s: float = Field(ge=0, le=86_400, description="seconds after the reader starts")
    uid: HexUid = Field(description="the card's UID in hex: 4, 7 or 10 bytes")


class SimReaderOptions(DriverOptions):
    taps: tuple[ScriptedTap, ...] = Field(default=(), description="scripted taps, each {at_s, uid}")
    repeat_every_s: float | None = Field(
        default=None, gt=0, le=86_400, description="play the script again every this long"
    )
    cards: tuple[HexUid, ...] = Field(
        default=(), description="cards (hex UIDs) tapped one every `every_s`"
    )
    every_s: float | None = Field(
        default=None, gt=0, le=86_400, description="seconds between taps from `cards`"
    )
    pick: Literal["rotate", "random"] = Field(
        default="rotate", description="which card taps next: in turn, or at random"
    )
    seed: int | None = Field(default=None, description="makes `random` picks repeatable")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.repeat_every_s is not None:
            if not self.taps:
                raise ValueError("repeat_every_s repeats the `taps` script, which is empty")
            last = max(t.at_s for t in self.taps)
            if self.repeat_every_s <= last:
                raise ValueError(
                    f"repeat_every_s ({self.repeat_every_s:g}) must be longer than the "
                    f"script, whose last tap is at {last:g} s"
                )
        if bool(self.cards) != (self.every_s is not None):
            raise ValueError("`cards` and `every_s` go together: the cards, and how often")
        return self


_RUNNING: dict[str, "SimReader"] = {}
_RUNNING_LOCK = threading.Lock()


def present(uid: bytes, reader: str | None = None) -> int:
    """A tap now on the running sim reader named `reader` (all of them if None).

    Returns how many readers got it: 0 when none is running under that name.
    """
    if not valid_uid(uid):
        raise ValueError(f"a UID is 4, 7 or 10 bytes, not {len(uid)}")
    with _RUNNING_LOCK:
        targets = [r for name, r in _RUNNING.items() if reader in (None, name)]
    return sum(r.present(uid) for r in targets)


class SimReader:
    Options: ClassVar[type[DriverOptions]] = SimReaderOptions

    @classmethod
    def opens(cls, options: SimReaderOptions) -> Opens:
        return Opens(simulated="simulated NFC reader")

    def __init__(self, options: SimReaderOptions) -> None:
        self.options = options
        self.rng = random.Random(options.seed)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[tuple[bytes, float]] | None = None

    def present(self, uid: bytes) -> bool:
        """A tap now (any thread); False if the reader is not running."""
        if not valid_uid(uid):
            raise ValueError(f"a UID is 4, 7 or 10 bytes, not {len(uid)}")
        loop, queue = self._loop, self._queue
        if loop is None or queue is None:
            return False
        try:
            loop.call_soon_threadsafe(queue.put_nowait, (bytes(uid), time.monotonic()))
        except RuntimeError:  # the loop has closed
            return False
        return True

    def schedule(self) -> Iterator[tuple[float, bytes]]:
        """(seconds from start, uid) of every scripted and periodic tap, in time order."""
        o = self.options
        streams: list[Iterator[tuple[float, bytes]]] = []
        script = sorted(((t.at_s, t.uid) for t in o.taps), key=lambda t: t[0])
        if script:
            if o.repeat_every_s is None:
                streams.append(iter(script))
            else:
                period = o.repeat_every_s
                streams.append(
                    (at + n * period, uid) for n in itertools.count() for at, uid in script
                )
        if o.cards and o.every_s is not None:
            every, cards = o.every_s, o.cards
            if o.pick == "rotate":
                picks: Iterator[bytes] = itertools.cycle(cards)
            else:
                picks = (self.rng.choice(cards) for _ in itertools.count())
            streams.append(((n + 1) * every, uid) for n, uid in enumerate(picks))
        return heapq.merge(*streams, key=lambda t: t[0])

    async def run(self, ctx: DriverContext) -> None:
        loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._loop = loop
        with _RUNNING_LOCK:
            _RUNNING[ctx.name] = self
        try:
            ctx.ready()
            start = loop.time()
            schedule = self.schedule()
            upcoming = next(schedule, None)
            while True:
                wait = None if upcoming is None else max(0.0, start + upcoming[0] - loop.time())
                try:
                    async with asyncio.timeout(wait):
                        uid, ts = await self._queue.get()
                except TimeoutError:  # only with a tap upcoming: its time has come
                    if upcoming is None:
                        continue
                    uid, ts = upcoming[1], time.monotonic()
                    upcoming = next(schedule, None)
                ctx.count("taps")
                ctx.emit(Tap(uid=uid, reader=ctx.name, ts=ts))
        finally:
            with _RUNNING_LOCK:
                if _RUNNING.get(ctx.name) is self:
                    del _RUNNING[ctx.name]
            self._loop = self._queue = None
