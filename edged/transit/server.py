"""The feed's HTTP side (aiohttp, as the kiosk): the transit feeds, `/health`, and the live
fleet page with its Server-Sent Events.

    /gtfs-rt/vehicle-positions        GTFS-Realtime VehiclePositions, protobuf
    /gtfs-rt/vehicle-positions.json   the same, JSON
    /siri-lite/vehicle-monitoring.json  SIRI Lite VehicleMonitoring
    /health                           for a load balancer (503 while the broker is lost)
    /                                 the fleet page (off with --no-page), /api/events its SSE

The page follows the kiosk's rules: own files only, no inline script, Trusted Types with no
policy (no HTML sinks), so a name from the broker is shown as text whatever it holds.
"""

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from core.counters import Counters
from core.errors import EdgedError
from edged.kiosk.limits import ConnectionLimits, raise_fd_limit
from edged.kiosk.server import CSP, SECURITY_HEADERS
from edged.transit.representation import Representation
from edged.transit.service import FeedService
from edged.web.accept import Listener
from edged.web.gate import peer_text
from edged.web.tcp import bound_unacknowledged

log = logging.getLogger(__name__)

STATIC = {
    "index.html": "text/html",
    "fleet.css": "text/css",
    "fleet.js": "text/javascript",
    "favicon.svg": "image/svg+xml",
}
PUSH_EVERY_S = 0.5
TICK_EVERY_S = 5.0
SSE_RETRY_MS = 2000
MAX_PAGES = 64
STREAM_MAX_S = 600.0
"""A live page's stream ends after this; the page's EventSource reconnects after
`SSE_RETRY_MS` and gets the whole fleet again. No page holds one of the `max_pages` slots
for ever, whatever it does."""
WRITE_TIMEOUT_S = 10.0
"""A piece of the stream the page does not take in this time (a tab that stopped reading, a
laptop closed behind a balancer that passes back-pressure) ends the stream and frees its
slot. The same time bounds data the page's TCP does not acknowledge (TCP_USER_TIMEOUT): a
peer gone without a FIN is found in seconds, not after the kernel's ~15 min of retries. A
stream cut short costs little: the page's EventSource reconnects and gets the whole fleet."""
ANSWER_TIMEOUT_S = 60.0
"""Data of an answer (a feed, `/health`, the page's files) that the client's TCP leaves
unacknowledged this long, retransmitted or held by a window it keeps shut, ends the
connection (TCP_USER_TIMEOUT): a poller that asks for the feed and never reads it does not
hold its connection, its descriptor and the answer for ever; no longer, at most, than a
connection that sends nothing is held (`HEAD_TIMEOUT_S`). Not the stream's 10 s: a
consumer's download on a lossy, congested link goes 10 s without an ACK now and then, and
the kernel aborts it without a RST (the client learns it only when it next sends, or at its
own timeout) and the poll is lost. Measured (4 downloads of the 1 MB JSON feed sharing
800 kbit/s, 5 % loss, up to 3 s of queue; a netns with tbf and nft): 10 s cut 6 of 24 under
BBR and 1 of 8 under CUBIC, 60 s none of 12 and of 8, nor of 12 more with 0.5 s of queue.
A window kept nearly shut counts too, even while the client reads a little: 4 KB/s with a
4 KB receive buffer was cut 12 s in under 10 s, and held 30 s under 60 s."""
HEAD_TIMEOUT_S = 75.0
"""A request's head must be in this long after the connection opened or the previous answer
was sent, however its bytes trickle in (aiohttp's keep-alive deadline, which it sets at the
connection's start and after each answer, and which data arriving does not move): aiohttp's
own, an hour, let a client that sent nothing, or a header byte now and then (slowloris),
hold a descriptor that long. An idle keep-alive connection is closed after it too, so it
stays above the idle time balancers keep their connections to a backend (nginx's upstream
`keepalive_timeout` and AWS ALB's idle timeout: 60 s): below it, a balancer would send a
request on a connection the feed is closing and answer its client 502."""
MAX_CONNECTIONS = 4096
"""Connections open at once at most, pollers, pages and idle keep-alives together: past it
a new one is closed as soon as it is accepted. Lowered to what the descriptor limit allows
(`connection_limits`): without a cap, a few hundred connections that send nothing (each
held `HEAD_TIMEOUT_S`) took every descriptor and the feed answered no one."""
MAX_CONNECTIONS_PER_PEER = 64
"""Connections one peer (an IPv4 address, an IPv6 /64) may hold: one client alone cannot
take the whole cap. Behind a reverse proxy every connection comes from the proxy: raise
this to `MAX_CONNECTIONS` there (`--max-connections-per-peer`)."""
FD_RESERVE = 128
"""Descriptors kept for the feed's own work (broker link, log, loop) and for a burst of
accepts not yet closed: the cap leaves two of these free, refusals start at one."""
IPV6_PEER_PREFIX = 64


def connection_limits(max_connections: int, per_peer: int, counters: Counters) -> ConnectionLimits:
    """The feed's connection caps: the soft descriptor limit raised towards what
    `max_connections` needs (up to the hard one), and the cap lowered to what it allows."""
    limit = raise_fd_limit(max_connections + 2 * FD_RESERVE)
    reserve = min(FD_RESERVE, limit // 4)
    total = max(1, min(max_connections, limit - 2 * reserve))
    if total < max_connections:
        log.warning(
            "feed: only %d file descriptors (LimitNOFILE, ulimit -n): at most %d connections "
            "instead of %d",
            limit,
            total,
            max_connections,
        )
    return ConnectionLimits(
        max_connections=total,
        per_peer=min(per_peer, total),
        max_streams=0,  # the pages' streams have their own cap (`max_pages`)
        streams_per_peer=0,
        screens=frozenset(),
        counters=counters,
        fd_limit=limit,
        name="feed",
        fd_reserve=reserve,
        hint="edgectl feed --max-connections and --max-connections-per-peer set them",
    )


def feed_peer(address: object) -> str:
    return peer_text(address, IPV6_PEER_PREFIX)


class TileError(EdgedError):
    """The map tile URL cannot be used; the message says what a good one looks like."""


def tile_origin(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise TileError(f"--tile-url {url!r}: use an http(s) URL with {{z}}, {{x}} and {{y}}")
    if not all(f"{{{k}}}" in url for k in "zxy") or any(c in url for c in "'\" <>\\"):
        raise TileError(
            f"--tile-url {url!r}: needs {{z}}, {{x}} and {{y}} and no quotes or spaces, "
            "e.g. https://tile.openstreetmap.org/{z}/{x}/{y}.png"
        )
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


def load_static() -> dict[str, bytes]:
    root = resources.files("edged.transit") / "static"
    try:
        return {name: (root / name).read_bytes() for name in STATIC}
    except OSError as exc:
        raise EdgedError(
            f"fleet page file missing ({exc}); reinstall edged: edged/transit/static/* "
            "must be in the package data"
        ) from exc


class FeedServer:
    def __init__(
        self,
        service: FeedService,
        *,
        page: bool = True,
        tile_url: str | None = None,
        tile_attribution: str | None = None,
        max_pages: int = MAX_PAGES,
        stream_max_s: float = STREAM_MAX_S,
        write_timeout_s: float = WRITE_TIMEOUT_S,
        head_timeout_s: float = HEAD_TIMEOUT_S,
        answer_timeout_s: float = ANSWER_TIMEOUT_S,
        max_connections: int = MAX_CONNECTIONS,
        max_connections_per_peer: int = MAX_CONNECTIONS_PER_PEER,
        counters: Counters | None = None,
    ) -> None:
        self.service = service
        self.page = page
        self.tile_url = tile_url
        self.tile_attribution = tile_attribution
        self.max_pages = max_pages
        self.stream_max_s = stream_max_s
        self.write_timeout_s = write_timeout_s
        self.head_timeout_s = head_timeout_s
        self.answer_timeout_s = answer_timeout_s
        csp = CSP
        if tile_url is not None:
            csp = csp.replace("img-src 'self'", f"img-src 'self' {tile_origin(tile_url)}")
        self.headers = {**SECURITY_HEADERS, "Content-Security-Policy": csp}
        self.files = load_static() if page else {}
        self.pages = 0
        self.closing = asyncio.Event()
        self.app = self._make_app()
        self.counters = counters if counters is not None else Counters()
        self.max_connections = max_connections
        self.max_connections_per_peer = max_connections_per_peer
        self.limits: ConnectionLimits | None = None
        self._runner: web.AppRunner | None = None
        self._listener: Listener | None = None

    async def start(self, host: str, port: int) -> int:
        """Serve on `host`:`port` (0: a free port) within the connection caps, raising
        OSError when it cannot listen; the port bound. What `edgectl feed` serves with."""
        self.limits = connection_limits(
            self.max_connections, self.max_connections_per_peer, self.counters
        )
        runner = self._runner = self.runner()
        await runner.setup()
        assert runner.server is not None
        self._listener = Listener(
            runner.server,
            self.limits,
            counters=self.counters,
            name="feed",
            peer=feed_peer,
            advice="raise LimitNOFILE, or lower --max-connections",
        )
        try:
            return await self._listener.start(host, port)
        except OSError:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop accepting, then end the connections (a page's stream at once)."""
        self.closing.set()
        if self._listener is not None:
            await self._listener.aclose()  # the last accepted reach the runner, which ends them
            self._listener = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def connections(self) -> dict[str, Any]:
        """For `/health`: the caps, the connections open, the refusals by cause."""
        limits = self.limits
        refused = {
            key.rsplit(".", 1)[1]: n
            for key, n in sorted(self.counters.snapshot().items())
            if key.startswith("feed.refused_connection.")
        }
        return {
            "open": sum(limits.connections.values()) if limits is not None else 0,
            "max": limits.max_connections if limits is not None else self.max_connections,
            "max_per_peer": limits.per_peer if limits is not None else 0,
            "refused": refused,
            "accept_errors": self.counters["feed.accept_error"],
        }

    def runner(self) -> web.AppRunner:
        """The app's runner with the connection limits (`HEAD_TIMEOUT_S`): what `edgectl
        feed` serves with, so what the tests serve with too."""
        return web.AppRunner(
            self.app, shutdown_timeout=1.0, access_log=None, keepalive_timeout=self.head_timeout_s
        )

    def _make_app(self) -> web.Application:
        app = web.Application(client_max_size=4096, middlewares=[self._guard])
        app.on_response_prepare.append(self._on_prepare)
        app.on_shutdown.append(self._on_shutdown)
        r = app.router
        r.add_get("/gtfs-rt/vehicle-positions", self._doc(self.service.vehicle_positions))
        r.add_get("/gtfs-rt/vehicle-positions.pb", self._doc(self.service.vehicle_positions))
        r.add_get("/gtfs-rt/vehicle-positions.json", self._doc(self.service.vehicle_positions_json))
        r.add_get("/siri-lite/vehicle-monitoring.json", self._doc(self.service.vehicle_monitoring))
        r.add_get("/health", self._health)
        if self.page:
            r.add_get("/", self._index)
            r.add_get("/static/{name}", self._static)
            r.add_get("/api/events", self._events)
        return app

    async def _on_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers.update(self.headers)
        response.headers.setdefault("Cache-Control", "no-cache")
        if request.path.startswith(("/gtfs-rt/", "/siri-lite/", "/health")):
            response.headers["Access-Control-Allow-Origin"] = "*"  # open data: any site may read

    async def _on_shutdown(self, app: web.Application) -> None:
        self.closing.set()

    @web.middleware
    async def _guard(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.transport is not None:  # every answer; a page's stream, tighter, at its start
            bound_unacknowledged(request.transport.get_extra_info("socket"), self.answer_timeout_s)
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return web.json_response(
                {"error": exc.reason, "status": exc.status},
                status=exc.status,
                headers={k: v for k, v in exc.headers.items() if k == "Allow"},
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("feed: %s %s failed", request.method, request.path[:100])
            return web.json_response({"error": "internal", "status": 500}, status=500)

    def _doc(
        self, make: Callable[[], Representation]
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            return make().respond(request)

        return handler

    async def _health(self, request: web.Request) -> web.Response:
        ok, body = self.service.health()
        body["connections"] = self.connections()
        return web.json_response(body, status=200 if ok else 503)

    async def _index(self, request: web.Request) -> web.Response:
        return self._file("index.html")

    async def _static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name == "index.html" or name not in self.files:
            raise web.HTTPNotFound()
        return self._file(name)

    def _file(self, name: str) -> web.Response:
        return web.Response(body=self.files[name], content_type=STATIC[name], charset="utf-8")

    # -- the live page --------------------------------------------------------------

    def _frame(self, event: str, data: dict[str, Any]) -> bytes:
        return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()

    def _fleet(self, since: int) -> dict[str, Any]:
        view = self.service.view
        return {
            "now_ms": int(self.service.clock() * 1000),
            "version": view.version,
            "full": since == 0,
            "connected": self.service.status.connected(),
            "max_age_s": self.service.settings.max_age_s,
            "tile_url": self.tile_url,
            "tile_attribution": self.tile_attribution,
            "vehicles": self.service.page.changed_since(since),
        }

    async def _events(self, request: web.Request) -> web.StreamResponse:
        if self.pages >= self.max_pages:
            return web.json_response(
                {
                    "error": f"{self.max_pages} pages are connected already (edgectl feed "
                    "--max-pages allows more)",
                    "status": 503,
                },
                status=503,
                headers={"Retry-After": "10"},
            )
        response = web.StreamResponse(headers={"X-Accel-Buffering": "no"})
        response.content_type = "text/event-stream"
        response.charset = "utf-8"
        self.pages += 1
        try:
            await response.prepare(request)
            if request.transport is not None:
                bound_unacknowledged(
                    request.transport.get_extra_info("socket"), self.write_timeout_s
                )
            ends = time.monotonic() + self.stream_max_s
            sent = self.service.view.version
            first = self._frame("fleet", self._fleet(0))
            await self._send(response, f"retry: {SSE_RETRY_MS}\n\n".encode() + first)
            ticked = time.monotonic()
            while not self.closing.is_set() and time.monotonic() < ends:
                await asyncio.sleep(PUSH_EVERY_S)
                version = self.service.view.version
                if version != sent:
                    data = self._fleet(sent)
                    sent = version
                    await self._send(response, self._frame("fleet", data))
                    ticked = time.monotonic()
                elif time.monotonic() - ticked >= TICK_EVERY_S:
                    tick = {
                        "now_ms": int(self.service.clock() * 1000),
                        "connected": self.service.status.connected(),
                    }
                    await self._send(response, self._frame("tick", tick))
                    ticked = time.monotonic()
        except TimeoutError:
            log.info("feed: a live page that stopped reading was dropped")
            if request.transport is not None:
                request.transport.abort()  # a write was cut short: nothing more can follow
        except (ConnectionError, RuntimeError):
            pass  # the page went away
        finally:
            self.pages -= 1
        return response

    async def _send(self, response: web.StreamResponse, data: bytes) -> None:
        async with asyncio.timeout(self.write_timeout_s):
            await response.write(data)
