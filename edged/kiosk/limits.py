"""How much of the node a kiosk visitor can hold: connections per peer and in total, the
screen's reserved share, and descriptors kept for the node's own work.

The kiosk's port is open to whoever is on the screen's network (on board, the riders'
hotspot). Without limits, held `/api/events` streams locked the screen out, half-sent
requests never ended, and a thousand idle connections took every file descriptor, so the
node could not reconnect to its broker. Here are the limits; every connection passes the
HTTP layer's gate (`edged/web/gate.py`) with them before a byte is read: over a limit it is
closed at once, counted and logged (a flood of refusals is bounded by the log's flood
guard, `edged/logs.py`: the first lines of each kind, then how many more). The time limits
(a request head that does not arrive in time, a body dripped in, a page that stops
reading) are the HTTP layer's (`edged/web/server.py`), set from `header_timeout_s`.

The screen's own addresses (`screen_addresses`, loopback by default) have a reserve no
visitor can take: visitors together get at most `max_connections - max_connections_per_peer`
connections and `max_clients - max_streams_per_peer` live streams.

Each visitor has a budget of requests too (`REQUEST_BURST`, then `REQUESTS_PER_S`; the
screen's addresses have none): without it one peer pipelining `GET /api/state` on its 8
connections had 2,500 answers a second and kept the node's loop 94 % busy (every other
page, press and the broker link waited their turn behind it). Past the budget a request
gets 429 and its connection is closed, and the peer's new connections are closed at once
until the budget has a request again.
"""

import errno
import logging
import math
import os
import resource
import time
from collections import Counter, OrderedDict
from collections.abc import Callable

from core.counters import Counters
from core.logs import flood_key
from core.ratelimit import TokenBucket

log = logging.getLogger(__name__)

FD_RESERVE = 256
"""Descriptors the kiosk never takes: the broker, the outbox, serial ports, CAN, GPIO."""
FD_CHECK_EVERY_S = 1.0
REQUEST_BURST = 120
"""Requests a visitor may send at once: a page's load is about ten (the portal's too), a
rider reloading it in a hurry a few dozen."""
REQUESTS_PER_S = 10.0
"""Then per second: a page's live stream, a press or a poll now and then need a few a
minute (`python -m bench.portal`'s phones, harsher than any page, poll every 2 s)."""
MAX_BUDGETS = 1024
"""Peers whose request budget is kept (the least recent forgotten: a full budget again)."""


def open_fds() -> int:
    """Descriptors open now: every one the limit allows when there is none left even to
    list them (a flood's moment: read as none, the check let connections in for a second);
    none where /proc cannot say (no check)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError as exc:
        if exc.errno not in (errno.EMFILE, errno.ENFILE):
            return 0
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        return int(soft) if soft != resource.RLIM_INFINITY else 1 << 20


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's soft descriptor limit towards `wanted` (never above the hard
    limit, no privilege needed); the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return int(soft) if soft != resource.RLIM_INFINITY else 1 << 20


class ConnectionLimits:
    """Counts the kiosk's connections and live streams per peer, and says who may have one."""

    def __init__(
        self,
        *,
        max_connections: int,
        per_peer: int,
        max_streams: int,
        streams_per_peer: int,
        screens: frozenset[str],
        counters: Counters,
        fd_limit: int,
        name: str = "kiosk",
        fd_reserve: int = FD_RESERVE,
        fds: Callable[[], int] = open_fds,
        clock: Callable[[], float] = time.monotonic,
        names_peers: bool = True,
        request_burst: int | None = None,
        requests_per_s: float = REQUESTS_PER_S,
        hint: str = "see its max_connections in the config",
    ) -> None:
        """`request_burst` None: no budget of requests (the HTTP layer's own tests, the
        feed). `screens` empty: no reserve, every peer a visitor up to `max_connections`.
        `hint`: where a refusal's log line sends the operator."""
        self.hint = hint
        self.names_peers = names_peers
        """Whether a refusal's log line names the peer's address (not a phone's: the
        portal's privacy promise, docs/wifi.md)."""
        self.max_connections = max_connections
        self.per_peer = per_peer
        self.max_streams = max_streams
        self.streams_per_peer = streams_per_peer
        self.screens = screens
        self.counters = counters
        self.name = name
        self.fd_limit = fd_limit
        self.fd_reserve = fd_reserve
        self._fds = fds
        self.clock = clock
        self.connections: Counter[str] = Counter()
        self.streams: Counter[str] = Counter()
        self._fd_checked = -math.inf
        self._fd_open = 0
        self.request_burst = request_burst
        self.requests_per_s = requests_per_s
        self._budgets: OrderedDict[str, TokenBucket] = OrderedDict()
        self.budget_key: Callable[[str], str] = lambda peer: peer
        """Whose budget a peer's requests take: its address, or on the portal the phone's MAC
        (one device taking many addresses had a full budget at each)."""

    def _visitors(self, counts: Counter[str]) -> int:
        return sum(n for peer, n in counts.items() if peer not in self.screens)

    def _fds_short(self) -> bool:
        now = self.clock()
        if now - self._fd_checked >= FD_CHECK_EVERY_S:
            self._fd_checked = now
            self._fd_open = self._fds()
        return self._fd_open + 1 > self.fd_limit - self.fd_reserve

    def refuse_connection(self, peer: str) -> str | None:
        """Why `peer` may not open another connection now, or None."""
        if self.connections[peer] >= self.per_peer:
            return "per_peer"
        total = sum(self.connections.values())
        if total >= self.max_connections:
            return "total"
        if (
            self.screens
            and peer not in self.screens
            and self._visitors(self.connections) >= (self.max_connections - self.per_peer)
        ):
            return "total"  # the rest is the screen's
        if self._out_of_requests(peer):
            return "requests"
        if self._fds_short():
            return "descriptors"
        return None

    def _budget(self, peer: str) -> TokenBucket | None:
        if self.request_burst is None or peer in self.screens:
            return None
        key = self.budget_key(peer)
        bucket = self._budgets.get(key)
        if bucket is None:
            per_min = self.requests_per_s * 60
            bucket = self._budgets[key] = TokenBucket(self.request_burst, per_min, self.clock())
            while len(self._budgets) > MAX_BUDGETS:
                self._budgets.popitem(last=False)
        self._budgets.move_to_end(key)
        return bucket

    def _out_of_requests(self, peer: str) -> bool:
        bucket = self._budget(peer)
        return bucket is not None and bucket.wait_s(self.clock()) > 0

    def refuse_request(self, peer: str) -> float:
        """Take a request from `peer`'s budget: 0.0, or the seconds until it has one again
        (nothing taken)."""
        bucket = self._budget(peer)
        if bucket is None:
            return 0.0
        wait = bucket.wait_s(self.clock())
        if wait <= 0:
            bucket.take()
        return wait

    def refuse_stream(self, peer: str) -> str | None:
        if self.streams[peer] >= self.streams_per_peer:
            return "per_peer"
        if sum(self.streams.values()) >= self.max_streams:
            return "total"
        if (
            self.screens
            and peer not in self.screens
            and self._visitors(self.streams) >= (self.max_streams - self.streams_per_peer)
        ):
            return "total"
        return None

    def refused(self, what: str, peer: str, why: str) -> None:
        """Count a refusal and log it; a flood of them is the log's flood guard's to bound
        (first lines, then a count), each kind of refusal apart from the others."""
        self.counters.inc(f"{self.name}.refused_{what}.{why}")
        if why == "requests":
            log.warning(
                "%s: %s from %s refused: over its %d requests at once, %g a second",
                self.name,
                what,
                peer if self.names_peers else "a peer",
                self.request_burst or 0,
                self.requests_per_s,
                extra=flood_key(f"{self.name}.{what}.{why}"),
            )
        elif why == "descriptors":
            log.warning(
                "%s: refusing connections: %d of %d descriptors in use, %d kept for the "
                "node (raise LimitNOFILE in the unit)",
                self.name,
                self._fd_open,
                self.fd_limit,
                self.fd_reserve,
                extra=flood_key(f"{self.name}.{why}"),
            )
        else:
            log.warning(
                "%s: %s from %s refused (%s limit: %d per peer, %d in all); %s",
                self.name,
                what,
                peer if self.names_peers else "a peer",
                why.replace("_", " "),
                self.per_peer if what == "connection" else self.streams_per_peer,
                self.max_connections if what == "connection" else self.max_streams,
                self.hint,
                extra=flood_key(f"{self.name}.{what}.{why}"),
            )


class AcceptErrorFilter(logging.Filter):
    """asyncio logs a traceback for every failed accept(); under a descriptor flood that is
    thousands a second. Each becomes a one-line warning of the kiosk's (no traceback), whose
    flood the log's guard bounds, and is counted (`kiosk.accept_error`)."""

    def __init__(self, counters: Counters) -> None:
        super().__init__()
        self.counters = counters

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "accept" not in message:
            return True
        self.counters.inc("kiosk.accept_error")
        exc = record.exc_info[1] if record.exc_info else None
        log.warning("kiosk: %s: %s", message.splitlines()[0], exc, extra=flood_key("kiosk.accept"))
        return False
