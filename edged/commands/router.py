"""Turn a `cmd/{name}` message into exactly one reply, whatever the message holds.

Hostile or broken input is expected: not JSON, huge, wrong types, unknown names, no id,
a response topic on the node's own topics. Each gets an error reply, a counter, and a log
line; nothing a sender puts in a command can stop the daemon or end its MQTT session:
`handle` never raises, and the reply it returns can always be encoded and published.
"""

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from core.counters import Counters
from core.logs import flood_key
from edged.commands.authorize import Authorizer, signed_text
from edged.commands.replies import DIGEST_HEX, ReplyMemory
from edged.commands.response import ResponseTopics
from edged.commands.spec import (
    MAX_COMMAND_BYTES,
    SENT_AT,
    SIGNED_SCOPES,
    CommandSpec,
    Handler,
)
from edged.config.security import Scope
from edged.errors import CommandError
from edged.payloads import TS_RANGE, Command, Reply, ReplyError
from edged.topics import COMMAND_NAME, INVALID_COMMAND, name_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IncomingCommand:
    name: str  # as the topic spelled it: `config.get` or `config/get` (or anything at all)
    payload: bytes
    response_topic: str | None = None
    correlation: bytes | None = None
    topic: str = ""  # the full topic, name dotted: signatures and de-duplication cover it
    ack: Callable[[], None] | None = field(default=None, compare=False, repr=False)
    """Acknowledges its MQTT message (QoS 1: PUBACK), once the node took it to be answered
    (edged.commands.lanes); never called: the broker sends it again at the next connection
    (a kept session)."""
    sent_again: bool = field(default=True, compare=False, repr=False)
    """Whether the broker sends it again at the next connection if it is not acknowledged:
    False at QoS 0, and in a session the broker does not keep (edged.uplink: `[broker]
    session_expiry_s` 0), where one the node does not take is answered instead
    (edged.commands.lanes)."""


@dataclass(frozen=True)
class Outcome:
    """What to publish: the reply, under which command name, and where else to send it."""

    name: str
    reply: Reply
    response_topic: str | None
    correlation: bytes | None


UNKNOWN_LANE = "_unknown"
"""The lane of every name the router does not know (answered `unknown_command` at once):
however many names a peer makes up, they make one lane."""


@dataclass
class _Route:
    handler: Handler
    scope: Scope
    max_bytes: int = MAX_COMMAND_BYTES
    lane: str = ""
    kinds: dict[str, Handler] = field(default_factory=dict)
    """A command several owners share, by its `kind` argument (the first is the default)."""

    async def run(self, args: dict[str, Any]) -> Any:
        if not self.kinds:
            return await self.handler(args)
        default = next(iter(self.kinds))
        kind = args.get("kind", default)
        handler = self.kinds.get(kind) if isinstance(kind, str) else None
        if handler is None:
            raise CommandError("bad_args", f"kind must be {' or '.join(self.kinds)}")
        return await handler({k: v for k, v in args.items() if k != "kind"})


class CommandRouter:
    def __init__(
        self,
        counters: Counters,
        *,
        authorizer: Authorizer | None = None,
        response_topics: ResponseTopics | None = None,
        replies: ReplyMemory | None = None,
    ) -> None:
        """`replies`: what was answered, by id (edged.commands.replies); in memory only
        unless given one on the node's state store."""
        self.counters = counters
        self.authorizer = authorizer
        self.response_topics = response_topics or ResponseTopics()
        self._routes: dict[str, _Route] = {}
        self.replies = ReplyMemory() if replies is None else replies
        self._running: dict[str, str] = {}
        """Ids of the commands running now (past their checks, not yet remembered), with
        their digest: commands of other lanes run meanwhile (edged.commands.lanes)."""
        self._read: dict[int, tuple[IncomingCommand, str]] = {}
        """The id of each command in hand (by `id()` of the IncomingCommand), once read: a
        stop cuts it short (`handle` cancelled), and `refuse` answers it with its id without
        reading a 4 MB payload again on the loop."""

    def add(self, spec: CommandSpec, *, lane: str | None = None) -> None:
        """Add a command; its `scope` is what a signing key must hold to run it, and its
        `max_bytes` raises the size limit for the few commands that carry data (a full
        access list) without raising it for every other command. `lane`: its owner's
        (`spec.lane` wins; neither: the command's own), see `lane_of`; the kinds of a
        shared command share the first one's."""
        name = spec.name
        if not COMMAND_NAME.fullmatch(name):
            raise ValueError(f"invalid command name {name!r}")
        route = self._routes.get(name)
        if route is None:
            route = self._routes[name] = _Route(
                spec.handler, spec.scope, spec.max_bytes, spec.lane or lane or name
            )
            if spec.kind is not None:
                route.kinds[spec.kind] = spec.handler
            return
        if spec.kind is None or not route.kinds or spec.kind in route.kinds:
            raise ValueError(f"command {name!r} is declared twice")
        if (spec.scope, spec.max_bytes) != (route.scope, route.max_bytes):
            raise ValueError(f"the kinds of command {name!r} must share a scope and a size")
        route.kinds[spec.kind] = spec.handler

    @property
    def names(self) -> list[str]:
        return sorted(self._routes)

    def scope_of(self, name: str) -> Scope | None:
        route = self._routes.get(name)
        return route.scope if route else None

    def lane_of(self, cmd: IncomingCommand) -> str:
        """The lane `cmd` runs in, one command at a time (edged.commands.lanes): its
        owner's, `UNKNOWN_LANE` for a name the router does not know. Read from the topic
        alone: a command is queued in its lane before its payload is read."""
        route = self._routes.get(name_of(cmd.name) or INVALID_COMMAND)
        return route.lane if route is not None else UNKNOWN_LANE

    def refuse(self, cmd: IncomingCommand, code: str, message: str) -> Outcome:
        """An error reply to `cmd` without running it (the node stops), with its id when a
        small payload names one; not remembered: sent again, it runs."""
        name = name_of(cmd.name) or INVALID_COMMAND
        read = self._read.pop(id(cmd), None)
        cmd_id = read[1] if read is not None and read[0] is cmd else None
        if cmd_id is None and len(cmd.payload) <= MAX_COMMAND_BYTES:
            with contextlib.suppress(ValueError, RecursionError):
                raw = _loads(cmd.payload, [])
                raw_id = raw.get("id") if isinstance(raw, dict) else None
                cmd_id = raw_id if isinstance(raw_id, str) and len(raw_id) <= 64 else None
        elif cmd_id is None:  # a big one never read (queued behind another at a stop)
            cmd_id = _leading_id(cmd.payload)
        reply = self._error(cmd_id, code, message).model_copy(update={"command": name})
        topic = cmd.response_topic
        if topic is not None and self.response_topics.refusal(topic) is not None:
            topic = None
        return Outcome(name, reply, topic, cmd.correlation if topic else None)

    async def handle(self, cmd: IncomingCommand) -> Outcome:
        """Exactly one reply for `cmd`; never raises (a bug becomes an `internal` reply)."""
        name = name_of(cmd.name) or INVALID_COMMAND
        refusal = None
        if cmd.response_topic is not None:
            refusal = self.response_topics.refusal(cmd.response_topic)
        withheld: list[str] = []
        try:
            reply = self._encodable(await self._reply(name, cmd, refusal, withheld))
            self._read.pop(id(cmd), None)  # not when cancelled: `refuse` takes it then
        except Exception as exc:  # a bug, or the reply not kept: with its id when read
            read = self._read.pop(id(cmd), None)
            log.exception("command %r failed", cmd.name[:80])
            cmd_id = read[1] if read is not None and read[0] is cmd else None
            reply = self._error(cmd_id, "internal", f"{type(exc).__name__}: {exc}"[:300])
        if not reply.ok and reply.error is not None:
            log.warning(
                "command %r refused: %s %s",
                cmd.name[:80],
                reply.error.code,
                reply.error.message[:300],
                extra=flood_key(reply.error.code),  # unauthorized, stale... each seen first
            )
        # the name travels in the reply: a copy on a response topic has no other way to say
        # which command it answers (a `ping` sent with the `id` of a command still running)
        reply = reply.model_copy(update={"command": name})
        response_topic = cmd.response_topic if refusal is None and not withheld else None
        return Outcome(name, reply, response_topic, cmd.correlation if response_topic else None)

    async def _reply(
        self, name: str, cmd: IncomingCommand, refusal: str | None, withheld: list[str]
    ) -> Reply:
        """The reply to `cmd`; why its copy must not go to the response topic, if so, is
        appended to `withheld`."""
        route = self._routes.get(name)
        limit = route.max_bytes if route is not None else MAX_COMMAND_BYTES
        if len(cmd.payload) > limit:  # not read: its id from its head (not remembered)
            return self._error(
                _leading_id(cmd.payload),
                "too_large",
                f"command is {len(cmd.payload)} bytes; the limit for {name} is {limit}",
            )
        # one call into C holds the loop ~50 ms for 4 MiB (x5 on a Pi Zero 2 W): a command
        # over the usual limit (an access list) is read and its signed text made in a worker
        # thread, in pieces between which the loop decides taps; forged ones too
        big = len(cmd.payload) > MAX_COMMAND_BYTES
        not_numbers: list[str] = []
        try:
            if big:
                raw = await asyncio.to_thread(_loads, cmd.payload, not_numbers, in_pieces=True)
            else:
                raw = _loads(cmd.payload, not_numbers)
        except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, too deep, an
            # integer of more than 4,300 digits (Python's limit on int from text)
            return self._error(None, "bad_json", f"payload is not JSON: {exc}"[:200])
        raw_id = raw.get("id") if isinstance(raw, dict) else None
        cmd_id = raw_id if isinstance(raw_id, str) and len(raw_id) <= 64 else None
        if cmd_id is not None:
            self._read[id(cmd)] = (cmd, cmd_id)
        if not_numbers:
            return self._error(
                cmd_id,
                "bad_json",
                f"{not_numbers[0][:24]} is not a JSON number: NaN, Infinity and numbers "
                "beyond ±1.8e308 are refused",
            )
        if not isinstance(raw, dict):
            return self._error(None, "bad_request", "payload must be a JSON object")
        try:
            command = Command.model_validate(raw)
        except ValidationError as exc:
            errors = exc.errors()
            if cmd_id is not None and [e["type"] for e in errors] == [TS_RANGE]:
                # a ts that is no time is stale whatever the node's clock says
                return self._error(cmd_id, "stale", errors[0]["msg"])
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'payload'}: {e['msg']}" for e in errors
            )
            code = "missing_id" if cmd_id is None and "id" not in raw else "bad_request"
            return self._error(cmd_id, code, problems[:500])
        if name == INVALID_COMMAND:
            return self._error(
                command.id,
                "unknown_command",
                f"{cmd.name[:64]!r} is not a valid command name: lower-case words separated "
                "by dots, such as config.get",
            )
        digest = hashlib.sha256(cmd.topic.encode() + b"\0" + cmd.payload).hexdigest()
        digest = digest[:DIGEST_HEX]
        via = _via(cmd)
        answered = self.replies.get(command.id)
        if answered is not None:
            if answered.digest != digest:
                return self._error(
                    command.id, "reused_id", "this id was used for another command; use a new id"
                )
            self.counters.inc("cmd.duplicate")
            if via is not None and via != answered.via:
                # the same bytes from anyone who saw them, with a response topic of their
                # choosing: neither the digest nor the signature covers it
                self.counters.inc("cmd.duplicate_elsewhere")
                log.warning(
                    "command %s came again with another response topic (%r): its remembered "
                    "reply goes on reply/%s only",
                    command.id,
                    (cmd.response_topic or "")[:80],
                    name.replace(".", "/"),
                    extra=flood_key("duplicate_elsewhere"),
                )
                withheld.append("another response topic")
            return answered.reply
        route = self._routes.get(name)
        if route is None:
            return self._error(
                command.id,
                "unknown_command",
                f"unknown command {name!r}; known: {', '.join(self.names)}",
            )
        signer: frozenset[str] | None = None  # no authoriser: nothing is signed
        try:
            if self.authorizer is not None:
                message = await asyncio.to_thread(_signed, cmd.topic, command) if big else None
                signer = self.authorizer.check(cmd.topic, name, route.scope, command, message)
        except CommandError as exc:
            return self._error(command.id, exc.code, exc.message)  # refusals are not cached
        if refusal is not None:
            # after the authoriser: a signed command's id is spent, so whoever saw it cannot
            # run it within its window with a response topic the node takes (not signed)
            return self._error(command.id, "bad_response_topic", refusal)
        if (other := self._claimed(command.id, digest)) is not None:
            return other
        self._running[command.id] = digest
        try:
            return await self._run(name, route, command, digest, via, signer)
        finally:
            del self._running[command.id]

    def _claimed(self, cmd_id: str, digest: str) -> Reply | None:
        """Why `cmd_id` cannot run now: another command took it while this one was read and
        checked, or is running with it (in another lane: edged.commands.lanes), `reused_id`;
        the same bytes, answered or running meanwhile (never through the lanes, where the
        same bytes come in the same lane, after it), their reply or `in_progress`."""
        answered = self.replies.get(cmd_id)
        running = self._running.get(cmd_id)
        if answered is not None and answered.digest == digest:
            return answered.reply
        if answered is not None or (running is not None and running != digest):
            return self._error(
                cmd_id, "reused_id", "this id was used for another command; use a new id"
            )
        if running is not None:
            return self._error(cmd_id, "in_progress", "this command is running: its reply follows")
        return None

    async def _run(
        self,
        name: str,
        route: _Route,
        command: Command,
        digest: str,
        via: str | None,
        signer: frozenset[str] | None,
    ) -> Reply:
        if self.authorizer is not None:  # its spent id on the card before it acts
            await self.authorizer.spent_on_disk()
        sent_at, scopes = SENT_AT.set(command.ts), SIGNED_SCOPES.set(signer)
        try:
            result = await route.run(command.args)
            reply = Reply(id=command.id, ok=True, result=result)
            self.counters.inc("cmd.ok")
        except CommandError as exc:
            reply = self._error(command.id, exc.code, exc.message)
        except Exception as exc:
            log.exception("command %s failed", name)
            reply = self._error(command.id, "internal", f"{type(exc).__name__}: {exc}")
        finally:
            SENT_AT.reset(sent_at)
            SIGNED_SCOPES.reset(scopes)
        # a redelivered command (same id, same bytes) gets the same reply, runs once, even
        # after a restart: remembered before the node hands the reply to the outbox
        reply = self._encodable(reply)
        self.replies.remember(command.id, digest, reply, via)
        return reply

    def _error(self, cmd_id: str | None, code: str, message: str) -> Reply:
        self.counters.inc(f"cmd.{code}")
        return Reply(id=cmd_id, ok=False, error=ReplyError(code=code, message=message))

    def _encodable(self, reply: Reply) -> Reply:
        """The reply as the outbox will encode it, or an `internal` error saying why it
        cannot be (NaN, an integer too long for text, a cycle...): such a reply must not
        reach the outbox, where it would fail after its `seq` was taken."""
        try:
            json.dumps(reply.to_json_dict(), allow_nan=False, ensure_ascii=False).encode()
        except (ValueError, TypeError, RecursionError, UnicodeError) as exc:
            log.error("the reply to command %s cannot be encoded: %s", reply.id, exc)
            return self._error(reply.id, "internal", f"the result is not JSON: {exc}"[:300])
        return reply


def _via(cmd: IncomingCommand) -> str | None:
    """`Answer.via` for `cmd`: a digest of its response topic and correlation data."""
    if cmd.response_topic is None:
        return None
    correlation = b"" if cmd.correlation is None else b"\1" + cmd.correlation
    digest = hashlib.sha256(
        cmd.response_topic.encode("utf-8", "surrogatepass") + b"\0" + correlation
    )
    return digest.hexdigest()[:DIGEST_HEX]


def _loads(payload: bytes, not_numbers: list[str], *, in_pieces: bool = False) -> Any:
    """`payload` as JSON; what Python's reader takes but JSON has no number for (NaN,
    Infinity, -Infinity, a literal beyond the largest double such as 1e999) is appended
    to `not_numbers` (and read as null) so that no handler ever computes with it.
    `in_pieces`: the reader calls back into Python after each object and each integer,
    where a worker thread lets the event loop run (the same result): an array of two
    million integers is no object, and was one call into C (90 ms here)."""

    def constant(text: str) -> None:
        not_numbers.append(text)

    def number(text: str) -> float | None:
        value = float(text)
        if math.isfinite(value):
            return value
        not_numbers.append(text)
        return None

    if in_pieces:
        return json.loads(
            payload,
            parse_constant=constant,
            parse_float=number,
            parse_int=_integer,
            object_hook=_same,
        )
    return json.loads(payload, parse_constant=constant, parse_float=number)


_SPACE = re.compile(r"[ \t\n\r]*")  # JSON's white space (matches everywhere, maybe empty)
HEAD_BYTES = 4096
"""What `_leading_id` reads of a big payload: `id`, `ts` and `sig` fit many times over; the
first 64 KiB, a commander's 13,000 tiny members before its id cost 26-45 ms of the loop
each (a Pi Zero several times that), for each of the 64 commands a stop may answer."""


def _leading_id(payload: bytes) -> str | None:
    """The `id` of a big command's payload, read from its head only (not a 4 MB parse on
    the event loop): its members in order up to the first object or array (`args`, which
    edgectl and dispatch write after `id`), within its first `HEAD_BYTES`; None when it is
    not among them."""
    head = payload[:HEAD_BYTES]
    for cut in range(4):  # the head may end inside a character
        try:
            text = head[: len(head) - cut].decode()
            break
        except UnicodeDecodeError:
            continue
    else:
        return None
    decoder = json.JSONDecoder()
    found: str | None = None
    try:
        i = _skip(text, 0)
        if text[i] != "{":
            return None
        i = _skip(text, i + 1)
        while text[i] == '"':
            key, i = decoder.raw_decode(text, i)
            i = _skip(text, i)
            if text[i] != ":":
                return found
            i = _skip(text, i + 1)
            if text[i] in "{[":
                return found
            value, i = decoder.raw_decode(text, i)
            if key == "id":
                found = value if isinstance(value, str) and len(value) <= 64 else None
            i = _skip(text, i)
            if text[i] != ",":
                return found
            i = _skip(text, i + 1)
    except (ValueError, IndexError, RecursionError):  # the head ends, or no JSON
        pass
    return found


def _skip(text: str, i: int) -> int:
    """Past the white space at `i`."""
    space = _SPACE.match(text, i)
    return space.end() if space is not None else i


def _same(obj: dict[str, Any]) -> dict[str, Any]:
    return obj


def _integer(text: str) -> int:
    """`int` itself the reader calls in C; a function of ours is Python, where it yields."""
    return int(text)


def _signed(topic: str, command: Command) -> bytes | CommandError | None:
    """What `command`'s signature covers, or why it cannot be made (refused by the
    authoriser in its own order, never made again on the event loop); None: unsigned."""
    if command.sig is None or command.ts is None:
        return None
    return signed_text(topic, command.id, command.ts, command.args)
