"""Fetch a bundle over HTTPS: resumable, bandwidth-capped, never more than it was told.

The bytes go to `<sha256>.part` and are resumed with an HTTP Range request after a drop or
a restart; a server that ignores Range starts the file over. A file whose length differs
from the size `update.apply` gave is refused at once (`size_mismatch`): it is not the
bundle asked for, and a node on a metered link must not fetch gigabytes of something
else. A connection that ends early is a drop, not a refusal: it is retried with growing
pauses (the vehicle is in a dead zone), for as long as the job lasts.

A connection that brings too little is ended too (`TooSlow`, a drop): the socket's read
timeout only trips when nothing comes, and a server that trickles a byte every few seconds
(into its TLS handshake, its head or the file) would otherwise hold the download for days.
A watcher beside the transfer wants `min_bytes_per_s` × `slow_s` bytes of the file in each
`slow_s` window (`[update]`; by default 1 kB/s over 2 min, which a link of tens of kB/s
at a bad spot passes many times over) and shuts the socket down when a window falls
short; the read blocked in the transfer's thread then returns. The manager fails the job
`download_failed` after a few such connections in a row.

The whole download has a deadline too (`[update] download_max_s`, counted by the manager
across connections, pauses and restarts): a drop is retried, and a drop resets that count,
so a server that hangs up (or stalls past the read timeout) before a window is judged
would otherwise keep the job `downloading` for as long as it liked. The same watcher ends a
connection still under way at the deadline (`PastDeadline`). The time without any
connection to the server (`Unreachable`: a truck out of coverage) does not count.

http.client in a worker thread, not aiohttp: one request at a time, a few kilobytes of
code already loaded, and no event loop time spent on the bytes.
"""

import contextlib
import errno
import fcntl
import http.client
import logging
import os
import re
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.errors import EdgedError
from edged import __version__
from edged.errors import CommandError

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
SYNC_EVERY = 1 << 20
TIMEOUT_S = 30.0
CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class Dropped(EdgedError):
    """The transfer stopped early for a reason that a retry may cure."""


class TooSlow(Dropped):
    """The connection brought less than the minimum rate over a window (module doc)."""


class Unreachable(Dropped):
    """No connection to the file server at all (no network, no route, no name, nothing
    listening): out of coverage, whose time is not the download's (`download_max_s`)."""


class PastDeadline(Dropped):
    """The download's time (`[update] download_max_s`) ran out during the transfer."""


class Cancelled(EdgedError):
    """The job was cancelled or replaced."""


@dataclass
class Transfer:
    url: str
    size: int
    part: Path
    max_bytes_per_s: int = 0
    ca_file: Path | None = None
    min_bytes_per_s: int = 0
    """0: no minimum (a stall still ends at the read timeout)."""
    slow_s: float = 120.0
    deadline: float | None = None
    """`time.monotonic()` at which the download's time is up (None: no deadline)."""


class Pace:
    """Watches one connection from a thread beside it (module doc): each `window_s` from
    the first byte of the TLS handshake must bring `min_rate` × `window_s` bytes of the
    file, or what is left of it, and the connection must not outlast `deadline`; else the
    socket is shut down and `verdict` says why (`late`: the deadline)."""

    def __init__(self, min_rate: int, window_s: float, deadline: float | None = None) -> None:
        self.min_rate, self.window_s, self.deadline = min_rate, window_s, deadline
        self.got = 0  # bytes of the file so far (set by the transfer's thread)
        self.left: int | None = None  # of the file, once the head said where it starts
        self.verdict: str | None = None
        self.late = False
        self._done = threading.Event()

    def watch(self, sock: socket.socket) -> None:
        if self.min_rate > 0 or self.deadline is not None:
            threading.Thread(target=self._watch, args=(sock,), name="update.pace",
                             daemon=True).start()  # fmt: skip

    def stop(self) -> None:
        self._done.set()

    def _cut(self, sock: socket.socket, verdict: str) -> None:
        self.verdict = verdict
        with contextlib.suppress(OSError):  # the socket's, not the TLS layer's
            socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def _watch(self, sock: socket.socket) -> None:
        counted = 0
        quota = int(self.min_rate * self.window_s)
        judge_at = time.monotonic() + self.window_s
        while True:
            wake = [judge_at] if self.min_rate > 0 else []
            if self.deadline is not None:
                wake.append(self.deadline)
            if self._done.wait(max(min(wake) - time.monotonic(), 0.0)):
                return
            now = time.monotonic()
            if self.deadline is not None and now >= self.deadline:
                self.late = True
                self._cut(sock, "the download's time ran out ([update] download_max_s)")
                return
            if now < judge_at:
                continue
            judge_at += self.window_s
            got, left = self.got, self.left
            need = quota if left is None else min(quota, left - counted)
            if got - counted < need:
                where = "before the file began" if left is None else "of the file"
                self._cut(
                    sock,
                    f"the server sent {got - counted} bytes {where} in {self.window_s:g} s, "
                    f"under [update] min_bytes_per_s = {self.min_rate}",
                )
                return
            counted = got


def _open(host: str, port: int, ctx: ssl.SSLContext, pace: Pace) -> ssl.SSLSocket:
    """TCP, then TLS under the pace's watch from its first byte (a trickled handshake is as
    slow as a trickled file)."""
    try:
        raw = socket.create_connection((host, port), timeout=TIMEOUT_S)
    except OSError as exc:
        raise Unreachable(f"cannot reach {host}:{port}: {exc}") from exc
    try:
        tls = ctx.wrap_socket(raw, server_hostname=host, do_handshake_on_connect=False)
    except BaseException:
        raw.close()
        raise
    pace.watch(tls)
    try:
        tls.do_handshake()
    except BaseException:
        tls.close()
        raise
    return tls


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """The fleet CA when given (the file server's certificate comes from it), else the
    system's; host names checked either way."""
    ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def check_url(url: str) -> urllib.parse.SplitResult:
    try:
        parts = urllib.parse.urlsplit(url)
        _ = parts.port  # read only when asked: a port that is no port raises here
    except ValueError:
        parts = None
    if parts is None or parts.scheme != "https" or not parts.hostname:
        raise CommandError("bad_args", f"url must be https://host/…, got {url[:200]!r}")
    if parts.username or parts.password:
        raise CommandError("bad_args", "url must not carry a user name or password")
    return parts


def fetch(
    transfer: Transfer,
    progress: Callable[[int], None],
    cancelled: threading.Event,
) -> None:
    """One attempt: continue `transfer.part` up to `transfer.size` bytes. Raises Dropped
    (retry), Cancelled, or CommandError (a refusal: size_mismatch, download_failed)."""
    parts = check_url(transfer.url)
    have = transfer.part.stat().st_size if transfer.part.exists() else 0
    if have > transfer.size:
        transfer.part.unlink()
        have = 0
    if have == transfer.size:
        return
    if transfer.deadline is not None and time.monotonic() >= transfer.deadline:
        raise PastDeadline("the download's time ran out ([update] download_max_s)")
    host, port = parts.hostname or "", parts.port or 443
    ctx = tls_context(transfer.ca_file)
    conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=TIMEOUT_S)
    path = parts.path or "/"
    if parts.query:
        path += f"?{parts.query}"
    headers = {"User-Agent": f"edged/{__version__}", "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    pace = Pace(transfer.min_bytes_per_s, transfer.slow_s, transfer.deadline)
    try:
        try:
            conn.sock = _open(host, port, ctx, pace)
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
        except ssl.SSLCertVerificationError as exc:
            raise CommandError(
                "download_failed",
                f"the file server's certificate is not trusted ({exc.verify_message}): check "
                "[update] ca_file (the fleet CA)",
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            raise Dropped(f"cannot reach {host}:{port}: {exc}") from exc
        start = _start_of(resp, have, transfer.size)
        pace.left = transfer.size - start

        def seen(at: int) -> None:
            pace.got = at - start
            progress(at)

        _receive(resp, transfer, start, seen, cancelled)
    except (Dropped, CommandError, OSError, http.client.HTTPException) as exc:
        if pace.verdict is not None:  # whatever the shut socket made of it: the watcher's
            raise (PastDeadline if pace.late else TooSlow)(pace.verdict) from exc
        raise
    finally:
        pace.stop()
        conn.close()


def _start_of(resp: http.client.HTTPResponse, have: int, size: int) -> int:
    """Where the body goes in the file, after checking the server means the same file."""
    status = resp.status
    if status == 206:
        m = CONTENT_RANGE.fullmatch(resp.getheader("Content-Range", ""))
        if m is None or int(m[1]) != have:
            raise Dropped(f"the server sent an unasked range ({resp.getheader('Content-Range')})")
        if m[3] != "*" and int(m[3]) != size:
            raise CommandError(
                "size_mismatch",
                f"the file on the server is {m[3]} bytes, update.apply said {size}",
            )
        return have
    if status == 200:
        length = resp.getheader("Content-Length")
        if length is not None and length.isdigit() and int(length) != size:
            raise CommandError(
                "size_mismatch",
                f"the file on the server is {length} bytes, update.apply said {size}",
            )
        return 0
    if status == 416:  # the server's file is no longer than what we have: not our file
        raise CommandError(
            "size_mismatch",
            f"the server has no bytes past {have} of a file update.apply said is {size} bytes",
        )
    if status in (408, 425, 429) or status >= 500:
        raise Dropped(f"the server answered {status} {resp.reason}")
    raise CommandError("download_failed", f"the server answered {status} {resp.reason}")


def _receive(
    resp: http.client.HTTPResponse,
    transfer: Transfer,
    start: int,
    progress: Callable[[int], None],
    cancelled: threading.Event,
) -> None:
    have = start
    rate = transfer.max_bytes_per_s
    began, sent_since = time.monotonic(), 0
    unsynced = 0
    try:  # every OSError here is the disk's: the network's are Dropped where they happen
        fd = os.open(transfer.part, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "wb") as f:
            _own(fd, cancelled)
            f.seek(start)
            f.truncate(start)
            try:
                while have < transfer.size:
                    if cancelled.is_set():
                        raise Cancelled
                    want = min(CHUNK, transfer.size - have)
                    try:
                        chunk = resp.read1(want)  # what came: the pace counts it
                    except (OSError, http.client.HTTPException) as exc:
                        raise Dropped(f"the connection broke after {have} bytes: {exc}") from exc
                    if not chunk:
                        raise _ended_early(resp, have, transfer.size)
                    f.write(chunk)
                    have += len(chunk)
                    unsynced += len(chunk)
                    sent_since += len(chunk)
                    if unsynced >= SYNC_EVERY:  # what a power cut may keep, to resume from
                        f.flush()
                        os.fsync(f.fileno())
                        unsynced = 0
                    progress(have)
                    if rate:
                        ahead = sent_since / rate - (time.monotonic() - began)
                        if ahead > 0:
                            cancelled.wait(ahead)
            finally:
                f.flush()
                with contextlib.suppress(OSError):
                    os.fsync(f.fileno())
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # the outbox or the logs grew since the space was checked: the job's files go
        # (the job fails), so the node gets its room back
        raise CommandError(
            "no_space",
            f"the disk filled up after {have} bytes of the bundle were written to "
            f"{transfer.part.parent}: free some space and send update.apply again",
        ) from exc
    if have == transfer.size and _more_after_the_end(resp):
        raise CommandError(
            "size_mismatch",
            f"the server sends more than the {transfer.size} bytes update.apply said",
        )


def _own(fd: int, cancelled: threading.Event) -> None:
    """Take the `.part` for this transfer before cutting it to where the response starts.
    The thread of a download cancelled or replaced may still be waiting for its server's
    head (the manager does not wait for it): once the head came it cut the file of the
    download begun after it, whose bytes were then lost under it (`hash_mismatch`). A
    lock held while writing keeps it out; a cancelled transfer writes nothing."""
    if cancelled.is_set():
        raise Cancelled
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise Dropped("another download is writing this bundle's file") from None
    if cancelled.is_set():  # between the look and the lock
        raise Cancelled


def _more_after_the_end(resp: http.client.HTTPResponse) -> bool:
    """Whether the server sends bytes past the whole file. A response that ends otherwise
    than cleanly there (cut before a chunked body's last chunk, or held open until the read
    timeout) sent the file whole all the same: its SHA-256 decides, as for any file."""
    try:
        return bool(resp.read(1))
    except (OSError, http.client.HTTPException):
        return False


def _ended_early(resp: http.client.HTTPResponse, have: int, size: int) -> Exception:
    """EOF before `size`: a drop when the server promised more, or sent a range of a file
    it said is `size` bytes (a 206 may bring a piece: the next request goes on from it; a
    file shorter than that answers the next one 416), else the file is short."""
    promised = resp.length  # bytes http.client still expected (None: no Content-Length)
    if promised:
        return Dropped(f"the connection closed after {have} of {size} bytes")
    if resp.status == 206:
        return Dropped(f"the server sent the file up to byte {have} of {size}: the rest next")
    return CommandError(
        "size_mismatch", f"the file on the server ended at {have} bytes, update.apply said {size}"
    )
