"""Commands one at a time per lane, the lanes side by side, a bounded number held.

The uplink reads a command and hands it here (`put`); its lane (its owner's: the access
service's commands one lane, the updates' another, `ping` its own; `CommandRouter.lane_of`)
runs it after the lane's earlier ones, in the order they came, while other lanes run theirs:
a `door.unlock` no longer waits for a 4 MB `access.update` being checked, nor for a release
tree being deleted by `update.cancel`.

Bounds: at most `max_held` commands taken and not yet answered, at most `max_lane` of
them in one lane, at most `max_bytes` of their payloads (but one alone whatever its size);
past any, `put` waits (the uplink reads no further: what the broker
sends meanwhile waits in the MQTT client, as every command did before). A command is
acknowledged to the broker (`IncomingCommand.ack`, QoS 1: its PUBACK) when it comes here,
before it waits for room, unless the node stops: one the node does not take then comes
again at the next connection. A `put` cancelled while it waits (the session ends) takes its
command all the same (the broker will not send it again); one waiting when the node stops
is answered `interrupted`. One task per lane
with work, never one per message, and the lanes are the router's (one for every name it
does not know), so a flood of hostile commands holds a bounded amount of memory here.

The node stops (`close`): nothing more is taken (nor acknowledged; one the broker would
never send again, QoS 0 or in a session it does not keep, is answered `interrupted`:
`IncomingCommand.sent_again`); what was taken runs to
its reply within the time given, and what is still queued or running then is answered
`interrupted` (queued: not run; running: cut short where it stood).
"""

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from core.counters import Counters
from core.logs import flood_key
from edged.commands.router import IncomingCommand

log = logging.getLogger(__name__)

MAX_HELD = 64
MAX_LANE = 16
MAX_HELD_BYTES = 16 * 1024 * 1024
"""The payloads held (the MQTT client's queue holds as much again, edged.uplink.mqtt):
a command is taken before its size is checked, and the node takes packets of 8 MiB."""


class Lanes:
    def __init__(
        self,
        run: Callable[[IncomingCommand], Awaitable[None]],
        lane_of: Callable[[IncomingCommand], str],
        interrupted: Callable[[IncomingCommand, bool], None],
        counters: Counters,
        *,
        max_held: int = MAX_HELD,
        max_lane: int = MAX_LANE,
        max_bytes: int = MAX_HELD_BYTES,
    ) -> None:
        """`run`: handle a command and store its one reply (never raises); `interrupted`:
        store an `interrupted` reply to one the node stopped before (False) or while (True)
        it ran."""
        self._run = run
        self._lane_of = lane_of
        self._interrupted = interrupted
        self.counters = counters
        self.max_held = max_held
        self.max_lane = max_lane
        self.max_bytes = max_bytes
        self._queues: dict[str, deque[IncomingCommand]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._answered: set[str] = set()  # lanes whose running command has its reply stored
        self._held = 0
        self._bytes = 0  # of the payloads held (one alone is taken whatever its size)
        self._room = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False

    @property
    def held(self) -> int:
        """Commands taken and not yet answered (queued or running)."""
        return self._held

    async def put(self, cmd: IncomingCommand) -> None:
        """Queue `cmd` in its lane; wait while the lanes hold as much as they may. Once the
        node stops, `cmd` is not taken: left unacknowledged (`IncomingCommand.ack`), for the
        broker to send again when the node is back (its session kept)."""
        if self._closed:
            self._not_taken(cmd)
            return
        # acknowledged now, not once there is room: a connection that drops while it waits
        # must not have the broker send it again, run and answered twice
        self._acknowledge(cmd)
        lane = self._lane_of(cmd)
        try:
            while not self._closed and (
                self._held >= self.max_held
                or len(self._queues.get(lane, ())) >= self.max_lane
                or (self._held and self._bytes + len(cmd.payload) > self.max_bytes)
            ):
                self._room.clear()
                await self._room.wait()
        except asyncio.CancelledError:
            # the session ends (the reader's task is cancelled): it is taken past the
            # bound (one more per session's end), or answered if the node stops
            self._take_or_answer(lane, cmd)
            raise
        self._take_or_answer(lane, cmd)

    def _take_or_answer(self, lane: str, cmd: IncomingCommand) -> None:
        """`cmd`, acknowledged, into its lane; answered `interrupted` (not run) if the node
        stopped while it waited for room."""
        if not self._closed:
            self._take(lane, cmd)
            return
        self.counters.inc("cmd.not_taken")
        self._answer_one(cmd, ran=False)

    def _not_taken(self, cmd: IncomingCommand) -> None:
        """The node stops: `cmd` is not run, nor acknowledged; in a session the broker does
        not keep (it would never send it again), acknowledged and answered `interrupted`."""
        self.counters.inc("cmd.not_taken")
        if not cmd.sent_again:
            log.warning(
                "command %r came as the node stopped: not run, answered `interrupted` (the "
                "broker would not send it again: QoS 0, or no session kept for the node)",
                cmd.name[:80],
                extra=flood_key("cmd.not_taken"),
            )
            self._acknowledge(cmd)
            self._answer_one(cmd, ran=False)
            return
        log.warning(
            "command %r came as the node stopped: not run, left unacknowledged for the broker "
            "to send again",
            cmd.name[:80],
            extra=flood_key("cmd.not_taken"),
        )

    def _acknowledge(self, cmd: IncomingCommand) -> None:
        if cmd.ack is not None:
            try:
                cmd.ack()
            except Exception:  # the client's: the broker sends it again, answered again
                log.exception("command %r could not be acknowledged", cmd.name[:80])

    def _take(self, lane: str, cmd: IncomingCommand) -> None:
        queue = self._queues.setdefault(lane, deque())
        queue.append(cmd)
        self._held += 1
        self._bytes += len(cmd.payload)
        self._idle.clear()
        if lane not in self._workers:
            self._workers[lane] = asyncio.create_task(self._work(lane), name=f"cmd.{lane}")

    async def _work(self, lane: str) -> None:
        queue = self._queues[lane]
        try:
            while queue:
                cmd = queue[0]
                try:
                    await self._run(cmd)
                except Exception:  # `run` answers everything: a bug, and the lane goes on
                    self.counters.inc("cmd.unhandled")
                    log.exception("command %r could not be handled", cmd.name[:80])
                except asyncio.CancelledError:
                    self._answer_interrupted(lane, queue, ran=True)
                    raise
                self._answered.discard(lane)
                self._done(queue.popleft())
        finally:
            del self._workers[lane]
            if not queue:
                del self._queues[lane]

    def _done(self, cmd: IncomingCommand) -> None:
        self._held -= 1
        self._bytes -= len(cmd.payload)
        self._room.set()
        if self._held == 0:
            self._idle.set()

    def answered(self, cmd: IncomingCommand) -> None:
        """`cmd`, running, has its one reply stored; what it still does after (a `restart`
        waits for its reply to leave) may be cut short by a stop without another reply."""
        lane = self._lane_of(cmd)
        queue = self._queues.get(lane)
        if queue and queue[0] is cmd:  # run by its lane's worker (not by a caller of its own)
            self._answered.add(lane)

    def _answer_one(self, cmd: IncomingCommand, *, ran: bool) -> None:
        """`cmd` answered `interrupted` (`ran`: cut short where it stood, else not run); a
        failure to answer is logged, never raised into the stop."""
        try:
            self._interrupted(cmd, ran)
        except Exception:
            log.exception("the interrupted command %r could not be answered", cmd.name[:80])

    def _answer_interrupted(self, lane: str, queue: deque[IncomingCommand], *, ran: bool) -> None:
        """The lane is cut short: its running command (`ran`) and those behind it."""
        first = ran
        if ran and lane in self._answered:  # answered already: not a second time
            self._answered.discard(lane)
            self._done(queue.popleft())
            first = False
        while queue:
            cmd = queue.popleft()
            self._answer_one(cmd, ran=first)
            first = False
            self._done(cmd)

    async def close(self, within_s: float) -> None:
        """Take nothing more; let what was taken finish within `within_s`, then answer
        what is left `interrupted`."""
        self._closed = True
        self._room.set()  # a `put` waiting for room gives up
        try:
            async with asyncio.timeout(within_s):
                await self._idle.wait()
            return
        except TimeoutError:
            pass
        workers = list(self._workers.values())
        log.warning(
            "stopping: %d command(s) still queued or running after %.1f s: answered `interrupted`",
            self._held,
            within_s,
        )
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        for lane, queue in list(self._queues.items()):  # a lane whose worker had not started
            self._answer_interrupted(lane, queue, ran=False)
        self._queues.clear()
