"""Decide whether a command may run: signature, scope, freshness, no replay.

Unsigned commands that are not in `signed_commands` rely on the broker's ACL (only dispatch
and ops may write `cmd/#`). A signed command is always checked, whatever its name. Every
refusal names its reason, so ops can tell a skewed clock from an attack.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from edged.clock import Clock, ClockSource
from edged.config.security import ALWAYS_SIGNED, Scope, SecurityConfig
from edged.errors import CommandError
from edged.payloads import Command
from edged.security.signing import PublicKey, public_key_from_text, signed_message, verify

log = logging.getLogger(__name__)

SEEN_KEY = "security.seen_ids"
FLOOR_KEY = "security.seen_floor"
"""The oldest `ts` the seen ids still cover (UTC ms): the ids of older commands have been
forgotten, so such a command is refused, whatever the clock says now (it may have gone back:
a GPS spoofer, an NTP step)."""
MAX_SEEN = 4096
"""Spent ids kept at most. With a trusted clock only those of the last `2 * max_skew_s`
are (a few dozen); without one (no NTP, no GPS fix: a venue whose firewall drops NTP) none
left by age, and each signed command dispatch sent, refused `clock_unsynced`, stayed for
as long as the clock did not sync, the whole map written to the state store at each. Past
the bound the oldest id (by its `ts`) is forgotten and the floor moves above it: a command
as old is refused `stale` from then on, whatever the clock says (as the floor does)."""
SYNC_TIMEOUT_S = 2.0
"""The longest a signed command waits for its spent id to reach the card (`spent_on_disk`):
a card that takes longer (failing) delays no door further; the id is then kept in memory."""


class Authorizer:
    def __init__(
        self,
        config: SecurityConfig,
        clock: Clock,
        *,
        get_state: Callable[[str, Any], Any],
        set_state: Callable[[str, Any], None],
        sync_state: Callable[..., Awaitable[bool]] | None = None,
    ) -> None:
        """`sync_state(*keys)`: the state set so far on the card (`Outbox.sync_state`)."""
        self.config = config
        self.clock = clock
        self._set_state = set_state
        self.keys: dict[str, tuple[PublicKey, frozenset[str]]] = {
            k.id: (public_key_from_text(k.public_key), frozenset(k.scopes)) for k in config.keys
        }
        self._get_state = get_state
        self._seen_ids: dict[str, int] | None = None  # read lazily: the store opens later
        self._floor_ms: int | None = None
        self._sync_state = sync_state
        self._spent = 0  # ids spent so far (`_spend`)
        self._on_disk = 0  # of which known on the card (`spent_on_disk`)

    @property
    def _seen(self) -> dict[str, int]:
        if self._seen_ids is None:
            seen = self._get_state(SEEN_KEY, {})
            self._seen_ids = seen if isinstance(seen, dict) else {}
        return self._seen_ids

    @_seen.setter
    def _seen(self, value: dict[str, int]) -> None:
        self._seen_ids = value

    @property
    def _floor(self) -> int:
        if self._floor_ms is None:
            floor = self._get_state(FLOOR_KEY, 0)
            self._floor_ms = floor if type(floor) is int else 0
        return self._floor_ms

    def check(
        self,
        topic: str,
        name: str,
        scope: Scope,
        command: Command,
        message: bytes | CommandError | None = None,
    ) -> frozenset[str] | None:
        """Raise CommandError with the reason when the command must not run; else the scopes
        of the key that signed it (None: unsigned). `message`: what
        the signature covers, when the caller made it already (`signed_text`, in a worker
        thread for a large command), or why it could not be made (refused in this order,
        never made again here: on the event loop); made here when None."""
        if command.sig is None:
            if name in self.config.signed_commands or scope in ALWAYS_SIGNED:
                raise CommandError(
                    "unsigned",
                    f"{name} must be signed by a key with scope {scope!r} (edgectl cmd --key)",
                )
            return None
        if command.ts is None:
            raise CommandError("missing_ts", "a signed command needs `ts` (UTC milliseconds)")
        now, source = self.clock.now()
        if source is ClockSource.UNSYNCED:
            # its id is spent all the same: dispatch is told it did not run, so whoever saw
            # it must not run it, within its window, once the clock is synced
            self._verify(topic, name, scope, command, command.sig, command.ts, message)
            self._spend(command.id, command.ts)
            raise CommandError(
                "clock_unsynced",
                "the node's clock is not synced (no NTP, no GPS fix): it cannot tell a fresh "
                "signed command from a replayed one; send a new command (new id and ts) once "
                "it is synced",
            )
        skew_ms = abs(now - command.ts)  # integers: no float overflow (Command bounds ts)
        if skew_ms > self.config.max_skew_s * 1000:
            raise CommandError(
                "stale",
                f"ts is {skew_ms // 1000} s from the node's clock "
                f"(limit {self.config.max_skew_s:.0f} s)",
            )
        scopes = self._verify(topic, name, scope, command, command.sig, command.ts, message)
        self._remember(command.id, command.ts, now)
        return scopes

    def _verify(
        self,
        topic: str,
        name: str,
        scope: Scope,
        command: Command,
        sig: str,
        ts: int,
        message: bytes | CommandError | None,
    ) -> frozenset[str]:
        """Raise unless `sig` (the command's, over `ts`) verifies with a key holding `scope`;
        that key's scopes."""
        if message is None:
            message = signed_text(topic, command.id, ts, command.args)
        if isinstance(message, CommandError):
            raise message
        candidates = [command.kid] if command.kid is not None else list(self.keys)
        verified = [
            kid
            for kid in candidates
            if kid in self.keys and verify(self.keys[kid][0], sig, message)
        ]
        if not verified:
            raise CommandError("bad_signature", "the signature does not verify with any known key")
        holding = [self.keys[kid][1] for kid in verified if scope in self.keys[kid][1]]
        if not holding:
            raise CommandError(
                "forbidden", f"key {verified[0]!r} lacks the scope {scope!r} needed for {name}"
            )
        return holding[0]

    def _spend(self, cmd_id: str, ts: int) -> None:
        """Remember the id of a verified command as used. Alone for a command the node could
        not judge (no trusted clock): the seen ids' floor moves by time only with a trusted
        clock (`_remember`, which ends here), and here only past `MAX_SEEN`."""
        if cmd_id in self._seen:
            raise CommandError("replayed", f"command id {cmd_id!r} was already used")
        self._seen[cmd_id] = ts
        if len(self._seen) > MAX_SEEN:
            self._forget_oldest()
        self._set_state(SEEN_KEY, self._seen)
        self._spent += 1

    def _forget_oldest(self) -> None:
        """Past `MAX_SEEN`: the oldest spent ids go, and the floor moves above them."""
        seen = self._seen
        while len(seen) > MAX_SEEN:
            oldest = min(seen.values())
            self._seen = seen = {i: t for i, t in seen.items() if t > oldest}
            if oldest + 1 > self._floor:
                self._floor_ms = oldest + 1
                self._set_state(FLOOR_KEY, self._floor_ms)

    async def spent_on_disk(self) -> None:
        """The ids spent so far on the card, before the command one let through acts: a
        power cut as the door opens must not leave a node that forgot the id, and runs the
        command again when it is replayed (a state commit alone does not wait for the card).
        A card that refuses or takes over SYNC_TIMEOUT_S: the command runs, the id is kept
        in memory (the disk degrades the node, never stops it)."""
        spent = self._spent  # each command waits for its own: the commit after its id
        if spent == self._on_disk or self._sync_state is None:
            return
        try:
            async with asyncio.timeout(SYNC_TIMEOUT_S):
                stored = await self._sync_state(SEEN_KEY, FLOOR_KEY)
        except TimeoutError:
            stored = False
        if stored:
            self._on_disk = max(self._on_disk, spent)
        else:
            log.error(
                "the spent command ids could not be written to the card: they are kept in "
                "memory, and a power cut before the next commit would forget them"
            )

    def _remember(self, cmd_id: str, ts: int, now: int) -> None:
        if cmd_id in self._seen:
            raise CommandError("replayed", f"command id {cmd_id!r} was already used")
        if ts < self._floor:
            raise CommandError(
                "stale",
                "ts is older than the command ids the node still remembers: the node's "
                "clock has gone back since it took newer commands (spoofed GPS, an NTP step), "
                "and this may be a replay",
            )
        horizon = int(now - 2 * self.config.max_skew_s * 1000)
        if horizon > self._floor:  # the ids older than the horizon are forgotten for good
            self._floor_ms = horizon
            self._set_state(FLOOR_KEY, horizon)
        self._seen = {i: t for i, t in self._seen.items() if t >= self._floor}
        self._spend(cmd_id, ts)


def signed_text(topic: str, cmd_id: str, ts: int, args: dict[str, Any]) -> bytes | CommandError:
    """What a command's signature covers (`signed_message`), or the refusal of args it
    cannot be made of, returned (not raised): a worker thread makes it for a large command,
    and the authoriser refuses it only where it would verify the signature, after `stale`
    and the others (`Authorizer.check`)."""
    try:
        return signed_message(topic, cmd_id, ts, args)
    except UnicodeEncodeError:  # a lone surrogate ("\\ud800" in the command's JSON)
        return CommandError(
            "bad_request",
            "args hold text that is not Unicode (a lone UTF-16 surrogate such as "
            "\\ud800): no signature can cover it",
        )
    except RecursionError:  # args nested deeper than the text is made (in pieces, in Python)
        return CommandError(
            "bad_request",
            "args nest too deep for the node to make the text a signature covers: nest them less",
        )
