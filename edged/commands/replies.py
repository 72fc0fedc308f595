"""What the node answered, by command id, kept across restarts.

A command that arrives again (a QoS 1 resend after the node restarted, the broker's
persistent session handing over what it queued, dispatch sending again) gets its first reply
again and does not run a second time: an old `mode.set` redelivered after a newer one must
not undo it, an old `alarm.ack` must not clear a newer panic alarm. The same id with other
content is refused `reused_id`. Refusals before a command runs (authorisation, bad request)
are not remembered: they changed nothing.

Only the very bytes answered get the remembered reply, so a command signed once cannot be
answered for anything else. What the bytes do not hold, the MQTT 5 response topic and
correlation data, is kept in memory only (`Answer.via`): a copy of a remembered reply goes
only back where the first delivery asked for it (edged.commands.router).

The memory is one value of the node's state store (`STATE_KEY`), a list, oldest first, of
`[id, digest, answered_ms, reply]`: `digest` is 128 bits of the SHA-256 of the command's
topic and bytes, `answered_ms` the trusted UTC time of the reply (null when the clock was
not trusted: such an entry leaves by count, never by age), `reply` the reply as sent. The
router remembers a reply before the node hands it to the outbox, so both go to disk in the
same commit: a reply that was kept is never one the node has forgotten. The value is read at
the first command (the store opens after the router is built).

Bounds, so the value stays small (the state store writes it at each change):

- `MAX_IDS` ids;
- `keep_s`: the broker's session expiry (`[broker] session_expiry_s`): the longest a broker
  keeps a command for the node while it is away, so the longest after its first delivery
  that a QoS 1 resend can come; at least `MIN_KEEP_S`, for dispatch's own resends;
- `MAX_BYTES` of JSON for the whole list, oldest first out;
- a reply over `MAX_REPLY_BYTES` (`config.get`, `diag.dump`: reads) is kept on disk as a
  stand-in that says so: after a restart the command is still not run again.
"""

import json
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from edged.clock import ClockSource
from edged.payloads import Reply, ReplyError

log = logging.getLogger(__name__)

STATE_KEY = "commands.replies"
MAX_IDS = 256
MAX_BYTES = 64 * 1024
MAX_REPLY_BYTES = 1024
MIN_KEEP_S = 3600
DIGEST_HEX = 32  # 128 bits of SHA-256
NOT_KEPT = "reply_not_kept"


@dataclass(frozen=True)
class Answer:
    digest: str
    reply: Reply
    via: str | None = None
    """Where the first delivery asked for a copy of the reply: a digest of its MQTT 5
    response topic and correlation data, None without one. Neither is in `digest` nor in
    the signature, so a copy of this reply goes only back there (edged.commands.router).
    In memory only (an entry read from the state store has None): the copy made at the
    first delivery went to the outbox in the commit that kept this entry."""


@dataclass(frozen=True)
class _Entry:
    answer: Answer
    at: int | None  # trusted UTC ms of the reply, None when the clock was not trusted
    stored: list[Any]  # as written to the state store
    size: int  # bytes of `stored` as JSON


class ReplyMemory:
    """Replies by command id; on disk when given the state store's `get_state`/`set_state`,
    in memory only otherwise (a test, a tool). `now`: the node's clock (`Clock.now`); without
    it nothing leaves by age."""

    def __init__(
        self,
        *,
        get_state: Callable[[str, Any], Any] | None = None,
        set_state: Callable[[str, Any], None] | None = None,
        now: Callable[[], tuple[int, ClockSource]] | None = None,
        keep_s: float = 86400,
        max_ids: int = MAX_IDS,
        max_bytes: int = MAX_BYTES,
        max_reply_bytes: int = MAX_REPLY_BYTES,
    ) -> None:
        self._get_state = get_state
        self._set_state = set_state
        self._now = now
        self.keep_s = max(keep_s, MIN_KEEP_S)
        self.max_ids = max_ids
        self.max_bytes = max_bytes
        self.max_reply_bytes = max_reply_bytes
        self._entries: OrderedDict[str, _Entry] | None = None  # read lazily
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._memory)

    def get(self, cmd_id: str) -> Answer | None:
        entry = self._memory.get(cmd_id)
        return None if entry is None else entry.answer

    def remember(self, cmd_id: str, digest: str, reply: Reply, via: str | None = None) -> None:
        """Keep `reply` as the answer to `cmd_id` (`via`: `Answer.via`), and write the memory
        to the state store (with the next commit, the one that takes the reply)."""
        entries = self._memory
        at = self._trusted_now()
        stored = [cmd_id, digest, at, self._kept(reply)]
        old = entries.pop(cmd_id, None)
        if old is not None:
            self._bytes -= old.size
        entry = _Entry(Answer(digest, reply, via), at, stored, _size(stored) + 2)  # and ", "
        entries[cmd_id] = entry
        self._bytes += entry.size
        self._prune()
        if self._set_state is not None:
            self._set_state(STATE_KEY, [e.stored for e in entries.values()])

    @property
    def _memory(self) -> "OrderedDict[str, _Entry]":
        if self._entries is None:
            self._entries = OrderedDict()
            self._bytes = 0
            self._load(self._get_state(STATE_KEY, None) if self._get_state else None)
            self._prune()
        return self._entries

    def _load(self, value: Any) -> None:
        assert self._entries is not None
        if value is None:
            return
        rows = value if isinstance(value, list) else []
        skipped = 0 if isinstance(value, list) else 1
        for row in rows:
            entry = _entry_from(row)
            if entry is None:
                skipped += 1
                continue
            cmd_id = row[0]
            if (old := self._entries.pop(cmd_id, None)) is not None:
                self._bytes -= old.size
            self._entries[cmd_id] = entry
            self._bytes += entry.size
        if skipped:
            log.warning(
                "%d remembered command repl%s in the state store could not be read: skipped",
                skipped,
                "y" if skipped == 1 else "ies",
            )

    def _prune(self) -> None:
        entries = self._entries
        assert entries is not None
        now = self._trusted_now()
        if now is not None:
            horizon = now - int(self.keep_s * 1000)
            for cmd_id in [i for i, e in entries.items() if e.at is not None and e.at < horizon]:
                self._bytes -= entries.pop(cmd_id).size
        while entries and (len(entries) > self.max_ids or self._bytes > self.max_bytes):
            self._bytes -= entries.popitem(last=False)[1].size

    def _trusted_now(self) -> int | None:
        if self._now is None:
            return None
        now, source = self._now()
        return None if source is ClockSource.UNSYNCED else now

    def _kept(self, reply: Reply) -> dict[str, Any]:
        """The reply as written to disk: itself, or a stand-in when it is too large."""
        data = reply.to_json_dict()
        size = _size(data)
        if size <= self.max_reply_bytes:
            return data
        return Reply(
            id=reply.id,
            ok=False,
            error=ReplyError(
                code=NOT_KEPT,
                message=f"this command already ran before the node restarted; its reply "
                f"({size} bytes) was too large to keep, and it is not run again: send it "
                "with a new id to run it again",
            ),
        ).to_json_dict()


def _size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False).encode())


def _entry_from(row: Any) -> _Entry | None:
    """An entry as the state store holds it, or None when it is not one."""
    if not (isinstance(row, list) and len(row) == 4):
        return None
    cmd_id, digest, at, data = row
    if not (isinstance(cmd_id, str) and isinstance(digest, str) and isinstance(data, dict)):
        return None
    if len(digest) != DIGEST_HEX or not (at is None or type(at) is int):
        return None
    try:
        reply = Reply.model_validate(data)
    except ValidationError:
        return None
    return _Entry(Answer(digest, reply), at, row, _size(row) + 2)
