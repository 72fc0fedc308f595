"""A command as dispatch sends it, and its reply as dispatch recognises it (docs/topics.md).

Spelling: the command goes on `cmd/` with `/` for each `.` of its name (`cmd/config/get`), the
one spelling no broker rewrites (RabbitMQ turns `.` into `/`); the signature covers the dotted
topic (`cmd/config.get`), as the contract says. The reply is taken from the command's own
reply topic whatever its spelling (`reply/config/get`, an older node's `reply/config.get`),
matched by `id`; with MQTT 5 it may come first on our response topic, matched by correlation
data and taken only from the node asked (the copy names its node: `edged.topics.COPY_FROM`)
for the command asked (the reply names its command: `command`).
"""

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edged.codec import PayloadError, decode
from edged.security.signing import sign
from edged.topics import COPY_FROM

REPLIES_LEVEL = "_replies"
"""`{prefix}/{fleet}/_replies/...`: outside every node's base (a node id never starts with
`_`), so a node accepts it as a response topic when no `response_topic_prefix` is set."""


def command_topic(base: str, name: str) -> str:
    """Where the command is published: `/` for `.` survives every broker."""
    return f"{base}/cmd/{name.replace('.', '/')}"


def signed_topic(base: str, name: str) -> str:
    """The topic the signature covers: always the dotted spelling."""
    return f"{base}/cmd/{name}"


def default_response_topic(prefix: str, fleet: str, client_id: str) -> str:
    return f"{prefix}/{fleet}/{REPLIES_LEVEL}/{client_id}"


@dataclass(frozen=True)
class Request:
    base: str
    name: str
    id: str
    payload: bytes
    response_topic: str | None
    correlation: bytes

    @property
    def topic(self) -> str:
        return command_topic(self.base, self.name)

    @property
    def reply_filter(self) -> str:
        return f"{self.base}/reply/#"


def make_request(
    base: str,
    name: str,
    args: dict[str, Any],
    *,
    key: Ed25519PrivateKey | None = None,
    kid: str | None = None,
    response_topic: str | None = None,
    now_ms: int | None = None,
) -> Request:
    cmd_id = uuid.uuid4().hex
    ts = int(time.time() * 1000) if now_ms is None else now_ms
    doc: dict[str, Any] = {"id": cmd_id, "ts": ts, "args": args}
    if key is not None:
        doc["sig"] = sign(key, signed_topic(base, name), cmd_id, ts, args)
        if kid:
            doc["kid"] = kid
    return Request(
        base=base,
        name=name,
        id=cmd_id,
        # compact: `edgectl lists sign` measures a list's arguments so (a space after each
        # `:` and `,` made a list it signed near 4 MiB one every node refused `too_large`)
        payload=json.dumps(doc, separators=(",", ":")).encode(),
        response_topic=response_topic,
        correlation=cmd_id.encode(),
    )


def copy_from(properties: Any) -> str | None:
    """The node a reply's copy on a response topic says it is from (MQTT 5 user property
    `node`), None when it says none (a node of an earlier release)."""
    for key, value in getattr(properties, "UserProperty", None) or ():
        if key == COPY_FROM:
            return str(value)
    return None


def reply_of(
    request: Request, topic: str, payload: Any, correlation: Any, node: str | None = None
) -> tuple[dict[str, Any], str] | None:
    """`(reply, how it came)` when this message is the node's reply to `request`, else None.

    Anyone allowed to publish may write on these topics: the reply must carry our `id` (and,
    on the response topic, our correlation data, `node`, what `copy_from` read, naming the
    node asked, and `command`, naming our command), or it is not ours. Every node may write
    the response topics, and whoever reads a command can make a node answer another one
    there with its `id` and correlation data; a node's own `reply/` only that node may write
    (the shipped ACL), so a copy that does not name the node and the command is left for
    the reply there."""
    if not isinstance(payload, bytes | bytearray):
        return None
    if topic == request.response_topic:
        if correlation is None or bytes(correlation) != request.correlation:
            return None
        if node != request.base:
            return None
        how = f"the MQTT 5 response topic {topic}"
    elif topic.startswith(head := f"{request.base}/reply/"):
        if topic[len(head) :].replace("/", ".") != request.name:
            return None  # the node's reply to another command: one sent with our id by
            # whoever read ours (a `ping` when ours was lost), or refused as `_invalid`
        how = topic
    else:
        return None
    try:
        reply = decode(payload)
    except PayloadError:  # any encoding a node writes (edged.codec); garbage is not ours
        return None
    if not isinstance(reply, dict) or reply.get("id") != request.id:
        return None
    if reply.get("command", request.name) != request.name or (
        topic == request.response_topic and "command" not in reply
    ):
        return None  # another command's answer with our id and correlation data (a `ping`
        # sent while ours ran; ours refused `reused_id`): on the response topic the name
        # is the one thing that tells them apart, and a copy without it waits for `reply/`
    return reply, how
