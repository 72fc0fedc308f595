"""Turn a `cmd/{name}` message into exactly one reply, whatever the message holds.

Hostile or broken input is expected: not JSON, huge, wrong types, unknown names, no id.
Each gets an error reply (where a reply topic can be named), a counter, and a log line;
nothing a sender puts in a command can stop the daemon.
"""

import json
import logging
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from edged.counters import Counters
from edged.errors import CommandError
from edged.payloads import Command, Reply, ReplyError
from edged.topics import COMMAND_NAME, INVALID_COMMAND

log = logging.getLogger(__name__)

MAX_COMMAND_BYTES = 64 * 1024
_RESPONSE_TOPIC = re.compile(r"[^#+\x00]{1,256}")

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


@dataclass(frozen=True)
class IncomingCommand:
    name: str
    payload: bytes
    response_topic: str | None = None
    correlation: bytes | None = None


@dataclass(frozen=True)
class Outcome:
    """What to publish: the reply, under which command name, and where else to send it."""

    name: str
    reply: Reply
    response_topic: str | None
    correlation: bytes | None


class CommandRouter:
    def __init__(self, counters: Counters, *, remember: int = 256) -> None:
        self.counters = counters
        self._handlers: dict[str, Handler] = {}
        self._replies: OrderedDict[str, Reply] = OrderedDict()
        self._remember = remember

    def register(self, name: str, handler: Handler) -> None:
        if not COMMAND_NAME.fullmatch(name):
            raise ValueError(f"invalid command name {name!r}")
        self._handlers[name] = handler

    @property
    def names(self) -> list[str]:
        return sorted(self._handlers)

    async def handle(self, cmd: IncomingCommand) -> Outcome:
        response_topic = cmd.response_topic
        if response_topic is not None and not _RESPONSE_TOPIC.fullmatch(response_topic):
            self.counters.inc("cmd.bad_response_topic")
            response_topic = None
        name = cmd.name if COMMAND_NAME.fullmatch(cmd.name) else INVALID_COMMAND
        reply = await self._reply(name, cmd)
        if not reply.ok and reply.error is not None:
            log.warning(
                "command %s refused: %s %s", cmd.name[:80], reply.error.code, reply.error.message
            )
        return Outcome(name, reply, response_topic, cmd.correlation)

    async def _reply(self, name: str, cmd: IncomingCommand) -> Reply:
        if len(cmd.payload) > MAX_COMMAND_BYTES:
            return self._error(
                None,
                "too_large",
                f"command is {len(cmd.payload)} bytes; the limit is {MAX_COMMAND_BYTES}",
            )
        try:
            raw = json.loads(cmd.payload)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            return self._error(None, "bad_json", f"payload is not JSON: {exc}"[:200])
        if not isinstance(raw, dict):
            return self._error(None, "bad_request", "payload must be a JSON object")
        raw_id = raw.get("id")
        cmd_id = raw_id if isinstance(raw_id, str) and len(raw_id) <= 64 else None
        try:
            command = Command.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'payload'}: {e['msg']}" for e in exc.errors()
            )
            code = "missing_id" if cmd_id is None and "id" not in raw else "bad_request"
            return self._error(cmd_id, code, problems[:500])
        if name == INVALID_COMMAND:
            return self._error(
                command.id, "unknown_command", f"{cmd.name[:64]!r} is not a valid command name"
            )
        cached = self._replies.get(command.id)
        if cached is not None:
            self.counters.inc("cmd.duplicate")
            return cached
        handler = self._handlers.get(name)
        if handler is None:
            reply = self._error(
                command.id,
                "unknown_command",
                f"unknown command {name!r}; known: {', '.join(self.names)}",
            )
        else:
            try:
                result = await handler(command.args)
                reply = Reply(id=command.id, ok=True, result=result)
                self.counters.inc("cmd.ok")
            except CommandError as exc:
                reply = self._error(command.id, exc.code, exc.message)
            except Exception as exc:
                log.exception("command %s failed", name)
                reply = self._error(command.id, "internal", f"{type(exc).__name__}: {exc}")
        self._remember_reply(command.id, reply)
        return reply

    def _remember_reply(self, cmd_id: str, reply: Reply) -> None:
        """A redelivered command (same id) gets the same reply and does nothing twice."""
        self._replies[cmd_id] = reply
        while len(self._replies) > self._remember:
            self._replies.popitem(last=False)

    def _error(self, cmd_id: str | None, code: str, message: str) -> Reply:
        self.counters.inc(f"cmd.{code}")
        return Reply(id=cmd_id, ok=False, error=ReplyError(code=code, message=message))
