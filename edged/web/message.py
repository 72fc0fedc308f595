"""A request as a handler sees it, and what it answers."""

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from core.errors import EdgedError

Send = Callable[[bytes], Awaitable[None]]
"""Writes one piece of a streamed body; raises TimeoutError or ConnectionError when the peer
does not take it in time or went away."""


class HttpError(EdgedError):
    """A refusal the server turns into a response: `status`, a `code` for the page, a
    `message` for a person, and the headers it needs (Allow, Retry-After)."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        super().__init__(message)


ALLOWED = bytes([9, *range(0x20, 0x7F), *range(0x80, 0x100)])
"""Bytes a header value may hold: tab, visible ASCII and space, and obs-text."""


class Headers:
    """A request's headers: names without case, each value text (Latin-1, as HTTP's
    bytes are); a repeated header reads as its values joined by ", " (RFC 9110 5.3)."""

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self._raw = raw
        self._values: dict[str, list[str]] = {}
        for name, value in raw:
            self._values.setdefault(name.decode("ascii").lower(), []).append(
                value.decode("latin-1")
            )

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self._values.get(name.lower())
        return ", ".join(values) if values is not None else default

    def has_controls(self) -> bool:
        """A value holds a control character other than tab (RFC 9110 5.5)."""
        return any(value.translate(None, ALLOWED) for _, value in self._raw)

    def with_host(self, authority: str) -> "Headers":
        """These headers with Host replaced: an absolute-form target's authority wins over
        the Host header (RFC 9112 3.2.2)."""
        kept = [(n, v) for n, v in self._raw if n.lower() != b"host"]
        return Headers([*kept, (b"host", authority.encode("latin-1"))])

    def count(self, name: str) -> int:
        return len(self._values.get(name.lower(), ()))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._values

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value


def printable(text: str) -> str:
    """`text` with every character that is not printable (line breaks, escapes, controls,
    lone surrogates) written as its Python escape: what a peer sent can be quoted in an
    answer or a log line without starting a line of its own or moving a terminal's cursor."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]*)(?::[0-9]*)?")
"""A Host value (RFC 9110 7.2): uri-host, an IP literal in brackets or a reg-name (RFC 3986
3.2.2: letters, digits, `-._~`, sub-delims, %-escapes), then an optional `:port`."""


def host_of(value: str) -> str | None:
    """The host name of a Host value, lower case, without port or brackets; None when the
    value is not a host and port (a loose reading found a name of ours in one naming
    another: "localhost:80@evil.example" read up to its last ':' was "localhost")."""
    m = _HOST.fullmatch(value)
    if m is None:
        return None
    host = m.group(1)
    return (host[1:-1] if host.startswith("[") else host).lower()


_ABSOLUTE = re.compile(r"(?i:https?)://([^/?#]*)([^?#]*)(?:\?([^#]*))?", re.S)


def split_target(target: str) -> tuple[str, str, str | None]:
    """(path, query, authority) of a request target. The origin form (`/path?query`) as
    sent, authority None. The absolute form (`http://host:port/path?query`), which RFC 9112
    3.2.2 says a server MUST accept (a client set up with a proxy sends it), as its path
    ("/" when empty) and query, with its authority to use instead of the Host header.
    Anything else, and an absolute target without a host or with user info (a way to hide
    the real host from a reader), comes back whole as the path, which the server refuses
    for not being one."""
    m = _ABSOLUTE.fullmatch(target)
    if m is None:
        path, _, query = target.partition("?")
        return path, query, None
    authority, path, query = m.group(1), m.group(2), m.group(3) or ""
    if not authority or "@" in authority:
        return target, "", None
    return path or "/", query, authority


BodyReader = Callable[[int, float], Awaitable[bytes]]


@dataclass
class Request:
    """One request: its head parsed, its body read on demand (`read`), never before."""

    method: str
    path: str
    """The target's path as sent (not percent-decoded: nothing here is named with %)."""
    query: str
    headers: Headers
    peer: str
    """The client's address (`gate.peer_of`)."""
    http_version: str
    reader: BodyReader
    scheme: str = "http"
    params: dict[str, str] = field(default_factory=dict)
    """What the route's `{name}` matched."""

    @property
    def host(self) -> str:
        """The Host header's name, lower case, without its port ('' when none was sent, or
        when it is not a host and port, which the server refuses first)."""
        return host_of(self.headers.get("host") or "") or ""

    @property
    def content_type(self) -> str:
        """The media type, lower case, without its parameters ('' when none was sent)."""
        return (self.headers.get("content-type") or "").split(";", 1)[0].strip().lower()

    @property
    def content_length(self) -> int | None:
        """The declared length (h11 has checked it is one decimal number), or None."""
        value = self.headers.get("content-length")
        return int(value) if value is not None else None

    async def read(self, limit: int, within_s: float) -> bytes:
        """The whole body, at most `limit` bytes (413 past it, even chunked) within
        `within_s` seconds (408 past it)."""
        return await self.reader(limit, within_s)


@dataclass
class Response:
    """A whole response. `content_type` goes in the Content-Type header; `headers` are
    more (names as they are to be sent; the server adds Content-Length)."""

    status: int = 200
    body: bytes = b""
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class StreamResponse(Response):
    """A response whose body is written as it comes (chunked): `produce(send)` writes it and
    returns when it is over. `on_close` is called once when the connection is done with it,
    whether `produce` ran, finished, failed or was cancelled (for a HEAD, it never runs)."""

    produce: Callable[[Send], Awaitable[None]] | None = None
    on_close: Callable[[], None] | None = None


def json_response(
    data: Any,
    status: int = 200,
    headers: dict[str, str] | None = None,
    content_type: str = "application/json",
) -> Response:
    """`data` as compact UTF-8 JSON."""
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return Response(status, body, f"{content_type}; charset=utf-8", dict(headers or {}))
