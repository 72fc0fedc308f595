"""Server-Sent Events (the WHATWG `text/event-stream` format): one event per frame, its
data one line of JSON, so nothing a payload holds can start a field or end a frame."""

import json
from collections.abc import Awaitable, Callable
from typing import Any

from edged.web.message import Send, StreamResponse

HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


def event(name: str, data: Any) -> bytes:
    """One frame: `event: name` and `data: <json>` (JSON escapes every line break)."""
    if not name.isidentifier():
        raise ValueError(f"an event name is one word: {name!r}")
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def retry(ms: int) -> bytes:
    """Tells the browser's EventSource how soon to reconnect once the stream ends."""
    return f"retry: {int(ms)}\n\n".encode()


def event_stream(
    produce: Callable[[Send], Awaitable[None]], on_close: Callable[[], None] | None = None
) -> StreamResponse:
    """A 200 `text/event-stream` response written by `produce` (see StreamResponse)."""
    return StreamResponse(
        200,
        content_type="text/event-stream; charset=utf-8",
        headers=dict(HEADERS),
        produce=produce,
        on_close=on_close,
    )
