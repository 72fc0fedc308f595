"""One served document with its validators: conditional requests and gzip for pollers.

A consumer polling every few seconds should pay for a feed only when it changed: each
document carries a weak ETag computed from its content (the same on every replica that
received the same messages) and a Last-Modified time; `If-None-Match` (which wins) or
`If-Modified-Since` gets a 304, and a client that accepts gzip gets the body compressed
once per document, not once per request.
"""

import gzip
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime

from aiohttp import web

GZIP_ABOVE = 512


def fingerprint(*parts: bytes) -> str:
    digest = hashlib.blake2b(digest_size=12)
    for part in parts:
        digest.update(part)
    return digest.hexdigest()


@dataclass
class Representation:
    body: bytes
    content_type: str
    modified_s: int
    tag: str
    _gzipped: bytes | None = field(default=None, repr=False)

    @property
    def etag(self) -> str:
        return f'W/"{self.tag}"'

    @property
    def gzipped(self) -> bytes:
        if self._gzipped is None:
            self._gzipped = gzip.compress(self.body, compresslevel=6, mtime=0)
        return self._gzipped

    def not_modified(self, request: web.Request) -> bool:
        match = request.headers.get("If-None-Match")
        if match is not None:
            tags = {t.strip().removeprefix("W/") for t in match.split(",")}
            return "*" in tags or f'"{self.tag}"' in tags
        since = request.headers.get("If-Modified-Since")
        if since is None:
            return False
        try:
            moment = parsedate_to_datetime(since)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            since_s = int(moment.timestamp())
        except (TypeError, ValueError, IndexError, OverflowError, OSError):
            # not an HTTP-date (RFC 9110 13.1.3: ignored); a year past a C long raised
            # OverflowError, a 500 and a traceback in the log at every such request
            return False
        return self.modified_s <= since_s

    def respond(self, request: web.Request) -> web.Response:
        headers = {
            "ETag": self.etag,
            "Last-Modified": format_datetime(datetime.fromtimestamp(self.modified_s, UTC), True),
            "Cache-Control": "no-cache",
            "Vary": "Accept-Encoding",
        }
        if self.not_modified(request):
            return web.Response(status=304, headers=headers)
        body = self.body
        if len(body) > GZIP_ABOVE and accepts_gzip(request.headers.get("Accept-Encoding", "")):
            body = self.gzipped
            headers["Content-Encoding"] = "gzip"
        response = web.Response(body=body, headers=headers)
        response.content_type = self.content_type
        return response


def accepts_gzip(header: str) -> bool:
    for item in header.split(","):
        name, _, params = item.strip().partition(";")
        if name.strip().lower() in ("gzip", "*"):
            q = params.strip()
            return not (q.startswith("q=") and _q(q[2:]) == 0)
    return False


def _q(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 1.0
