"""The kiosk's HTTP server: the page, its live state (Server-Sent Events) and rider presses.

One aiohttp server in the daemon's loop. It has no admin or command endpoint: the only
thing a page can do is ask for a pickup, the mediator or a service, and even that is
validated, size-limited and rate-limited. Every response carries a strict
Content-Security-Policy (own files only, no inline script, no eval, no HTML sinks), so a
message from dispatch is shown as text whatever it contains.

It listens on loopback by default. A failure to listen (port taken) is logged, counted and
retried: a kiosk problem never stops the daemon. What a visitor can hold (connections,
live streams, time to send a request, descriptors) is bounded in `edged/kiosk/limits.py`.
"""

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any, Protocol

from aiohttp import web
from pydantic import ValidationError

from core.counters import Counters
from core.errors import EdgedError
from edged.clock import ClockSource
from edged.config.kiosk import KioskConfig
from edged.kiosk.limits import (
    FD_RESERVE,
    AcceptErrorFilter,
    ConnectionLimits,
    GatedSite,
    peer_of,
    raise_fd_limit,
)
from edged.kiosk.models import Asked, RequestRefused, RiderPost
from edged.kiosk.ratelimit import RateLimiter

log = logging.getLogger(__name__)

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",  # innerHTML and friends throw: text only
        "trusted-types 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
}
STATIC = {
    "index.html": "text/html",
    "kiosk.css": "text/css",
    "kiosk.js": "text/javascript",
    "journey.js": "text/javascript",
    "favicon.svg": "image/svg+xml",
}
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::"})
SSE_RETRY_MS = 1000
"""EventSource reconnects this soon after the daemon went away."""
BIND_RETRY_S = (2.0, 60.0)
LOG_EVERY_S = 10.0


class Screen(Protocol):
    """What the page shows and what a press asks: the kiosk service
    (`edged.services.kiosk`)."""

    @property
    def current(self) -> dict[str, Any]:
        """The view now, as JSON-ready data."""

    def listen(self, listener: Callable[[dict[str, Any]], None]) -> None:
        """`listener(view)` with each new view."""

    def now(self) -> tuple[int, ClockSource]:
        """The node's time in ms, and the clock it comes from."""

    async def ask(self, post: RiderPost) -> Asked: ...


def load_static() -> dict[str, bytes]:
    root = resources.files("edged.kiosk") / "static"
    files: dict[str, bytes] = {}
    for name in STATIC:
        try:
            files[name] = (root / name).read_bytes()
        except OSError as exc:
            raise EdgedError(
                f"kiosk page file {name} is missing ({exc}); reinstall edged: "
                "edged/kiosk/static/* must be in the package data"
            ) from exc
    return files


class ApiError(Exception):
    """A refusal with an HTTP status, a code for the page and a message for a person."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        super().__init__(message)


class KioskServer:
    def __init__(
        self,
        service: Screen,
        config: KioskConfig,
        counters: Counters,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = service
        self.config = config
        self.counters = counters
        self.clock = clock
        self.limiter = RateLimiter(
            burst=config.rate_burst,
            per_min=config.rate_per_min,
            global_burst=config.global_burst,
            global_per_min=config.global_per_min,
            clock=clock,
        )
        self.files = load_static()
        self.hosts = LOOPBACK_NAMES | set(config.allowed_hosts)
        if config.host not in WILDCARD_HOSTS:
            self.hosts |= {config.host.lower()}
        self.app = self._make_app()
        self.port: int | None = None
        self.listening = asyncio.Event()
        self._clients: set[asyncio.Event] = set()
        self._closing = False
        self._logged: dict[str, float] = {}
        self.limits = ConnectionLimits(
            max_connections=config.max_connections,
            per_peer=config.max_connections_per_peer,
            max_streams=config.max_clients,
            streams_per_peer=min(config.max_streams_per_peer, config.max_clients),
            screens=frozenset(config.screen_addresses),
            counters=counters,
            fd_limit=1 << 20,  # set from the process's limit when serving starts
            clock=clock,
        )
        service.listen(self._on_view)

    @property
    def url(self) -> str:
        """Where the screen's browser should point (for the demo and the logs)."""
        host = "127.0.0.1" if self.config.host in WILDCARD_HOSTS else self.config.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port or self.config.port}/"

    # -- running ----------------------------------------------------------------------

    async def run(self) -> None:
        """Serve until cancelled (the kiosk service runs it beside its view)."""
        await self._serve()

    def _descriptor_budget(self) -> None:
        """Raise the soft descriptor limit if it is low; if it stays too low for the kiosk's
        connections beside the node's reserve, shrink the kiosk's share, and say so."""
        wanted = self.config.max_connections + 2 * FD_RESERVE
        limit = raise_fd_limit(wanted)
        self.limits.fd_limit = limit
        room = limit - 2 * FD_RESERVE
        if room < self.limits.max_connections:
            self.limits.max_connections = max(self.config.max_connections_per_peer + 1, room)
            log.warning(
                "kiosk: only %d file descriptors (LimitNOFILE): at most %d kiosk connections, "
                "%d descriptors kept for the node",
                limit,
                self.limits.max_connections,
                FD_RESERVE,
            )

    async def _serve(self) -> None:
        self._descriptor_budget()
        accept_errors = AcceptErrorFilter(self.counters)
        logging.getLogger("asyncio").addFilter(accept_errors)
        runner = web.AppRunner(
            self.app,
            shutdown_timeout=1.0,
            access_log=None,
            # aiohttp's keep-alive timer also runs from the connection's start: a request
            # head that has not arrived in time (a half-sent request) is closed with it
            keepalive_timeout=self.config.header_timeout_s,
        )
        await runner.setup()
        delay = BIND_RETRY_S[0]
        try:
            while True:
                site = GatedSite(runner, self.config.host, self.config.port, self.limits)
                try:
                    await site.start()
                    break
                except OSError as exc:
                    self.counters.inc("kiosk.listen_error")
                    log.error(
                        "kiosk: cannot listen on %s:%s (%s); retrying in %.0f s. Free the port "
                        "or set another in [services.kiosk] port",
                        self.config.host,
                        self.config.port,
                        exc.strerror or exc,
                        delay,
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, BIND_RETRY_S[1])
            server = getattr(site, "_server", None)
            sockets = getattr(server, "sockets", None) or []
            self.port = int(sockets[0].getsockname()[1]) if sockets else self.config.port
            self.listening.set()
            log.info("kiosk page at %s", self.url)
            await asyncio.Event().wait()  # until cancelled
        finally:
            self.listening.clear()
            await runner.cleanup()
            logging.getLogger("asyncio").removeFilter(accept_errors)

    def _make_app(self) -> web.Application:
        app = web.Application(client_max_size=self.config.max_body_bytes, middlewares=[self._guard])
        app.on_response_prepare.append(self._headers)
        app.on_shutdown.append(self._close_streams)
        app.router.add_get("/", self._index)
        app.router.add_get("/static/{name}", self._static)
        app.router.add_get("/api/state", self._state)
        app.router.add_get("/api/events", self._events)
        app.router.add_post("/api/requests", self._post_request)
        return app

    # -- every response ---------------------------------------------------------------

    async def _headers(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers.update(SECURITY_HEADERS)
        if request.path.startswith("/api/"):
            response.headers["Cache-Control"] = "no-store"
        else:
            response.headers.setdefault("Cache-Control", "no-cache")

    @web.middleware
    async def _guard(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        """Refuse foreign Host names (DNS rebinding) and turn every refusal into JSON."""
        try:
            self._check_host(request)
            return await handler(request)
        except ApiError as exc:
            return self._refuse(request, exc)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
                exc.status, "bad_request"
            )
            message = {
                404: "no such page",
                405: f"{request.method} is not allowed here",
                413: f"the body is over {self.config.max_body_bytes} bytes",
            }.get(exc.status, exc.reason)
            return self._refuse(request, ApiError(exc.status, code, message, dict(exc.headers)))
        except asyncio.CancelledError:
            raise
        except Exception:
            self.counters.inc("kiosk.error")
            log.exception("kiosk: %s %s failed", request.method, request.path[:100])
            return self._refuse(request, ApiError(500, "internal", "the kiosk failed; see logs"))

    def _check_host(self, request: web.Request) -> None:
        raw = request.headers.get("Host", "")
        host = raw[1 : raw.find("]")] if raw.startswith("[") else raw.rsplit(":", 1)[0]
        if host.lower() not in self.hosts:
            raise ApiError(
                421,
                "unknown_host",
                f"this kiosk answers to {', '.join(sorted(self.hosts))}; "
                "add the screen's host name to [services.kiosk] allowed_hosts",
            )

    def _refuse(self, request: web.Request, exc: ApiError) -> web.Response:
        self.counters.inc(f"kiosk.http_{exc.status}")
        now = self.clock()
        if now - self._logged.get(exc.code, -math.inf) >= LOG_EVERY_S:  # a flood: one line
            self._logged[exc.code] = now
            log.warning(
                "kiosk: %s %s refused (%s %s): %s",
                request.method,
                request.path[:100],
                exc.status,
                exc.code,
                exc.message,
            )
        headers = {k: v for k, v in exc.headers.items() if k in ("Retry-After", "Allow")}
        return web.json_response(
            {"error": exc.code, "message": exc.message}, status=exc.status, headers=headers
        )

    # -- the page ---------------------------------------------------------------------

    async def _index(self, request: web.Request) -> web.Response:
        return self._file("index.html")

    async def _static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name == "index.html" or name not in self.files:
            raise web.HTTPNotFound()
        return self._file(name)

    def _file(self, name: str) -> web.Response:
        return web.Response(body=self.files[name], content_type=STATIC[name], charset="utf-8")

    # -- state, live ------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        now, source = self.service.now()
        return {"now_ms": now, "clock": source.value, **self.service.current}

    async def _state(self, request: web.Request) -> web.Response:
        return web.json_response(self.snapshot())

    def _on_view(self, view: dict[str, Any]) -> None:
        for wake in self._clients:
            wake.set()

    async def _close_streams(self, app: web.Application) -> None:
        self._closing = True
        for wake in self._clients:
            wake.set()

    async def _events(self, request: web.Request) -> web.StreamResponse:
        """Server-Sent Events: the whole state at once and on each change, a clock tick
        every `heartbeat_s` (it also finds pages that went away). A stream ends after
        `stream_max_s` (the page reconnects at once), so none is held for ever."""
        peer = peer_of(request.transport) if request.transport is not None else "unknown"
        why = self.limits.refuse_stream(peer)
        if why is not None:
            self.limits.refused("stream", peer, why)
            each = self.limits.streams_per_peer
            raise ApiError(
                503,
                "too_many_pages",
                f"{self.config.max_clients} pages in all, {each} per address, are already "
                "connected; raise [services.kiosk] max_clients or max_streams_per_peer for "
                "more screens",
                {"Retry-After": "5"},
            )
        response = web.StreamResponse(headers={"X-Accel-Buffering": "no"})
        response.content_type = "text/event-stream"
        response.charset = "utf-8"
        wake = asyncio.Event()
        self._clients.add(wake)
        self.limits.streams[peer] += 1
        ends = self.clock() + self.config.stream_max_s
        try:
            await response.prepare(request)
            await self._send(response, f"retry: {SSE_RETRY_MS}\n\n".encode() + self._frame("state"))
            while not self._closing and (left := ends - self.clock()) > 0:
                try:
                    async with asyncio.timeout(min(self.config.heartbeat_s, left)):
                        await wake.wait()
                except TimeoutError:
                    await self._send(response, self._frame("tick"))
                    continue
                wake.clear()
                if not self._closing:
                    await self._send(response, self._frame("state"))
        except (ConnectionError, RuntimeError, TimeoutError):
            pass  # the page went away, stopped reading, or the server is closing
        finally:
            self._clients.discard(wake)
            self.limits.streams[peer] -= 1
            if self.limits.streams[peer] <= 0:
                del self.limits.streams[peer]
        return response

    async def _send(self, response: web.StreamResponse, frame: bytes) -> None:
        """A page that stops reading fills the socket: it is dropped, not waited for."""
        async with asyncio.timeout(self.config.header_timeout_s):
            await response.write(frame)

    def _frame(self, event: str) -> bytes:
        if event == "state":
            data = self.snapshot()
        else:
            now, source = self.service.now()
            data = {"now_ms": now, "clock": source.value}
        return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()

    # -- rider presses ----------------------------------------------------------------

    async def _post_request(self, request: web.Request) -> web.Response:
        self._same_origin(request)
        if request.content_type != "application/json":
            raise ApiError(415, "bad_type", "send the request as application/json")
        length = request.content_length
        if length is not None and length > self.config.max_body_bytes:
            raise ApiError(413, "too_large", f"the body is over {self.config.max_body_bytes} bytes")
        try:
            async with asyncio.timeout(self.config.header_timeout_s):
                raw = await request.read()
        except TimeoutError:
            raise ApiError(408, "too_slow", "the body did not arrive in time") from None
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise ApiError(400, "bad_json", "the body is not UTF-8 JSON") from None
        try:
            post = RiderPost.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()
            )
            raise ApiError(422, "bad_request", problems[:300]) from None
        wait = self.limiter.check(request.remote or "unknown")
        if wait > 0:
            raise ApiError(
                429,
                "rate_limited",
                "too many presses; wait a moment",
                {"Retry-After": str(max(1, math.ceil(wait)))},
            )
        try:
            asked = await self.service.ask(post)
        except RequestRefused as exc:
            raise ApiError(422, exc.code, exc.message) from None
        except EdgedError as exc:  # the outbox is closed: the daemon is stopping
            raise ApiError(503, "unavailable", f"{exc}; try again in a moment") from None
        return web.json_response(
            {
                "request": asked.record.model_dump(mode="json", exclude={"lang"}),
                "repeat": asked.repeat,
                "connected": self.service.current["connected"],
            },
            status=200 if asked.repeat else 202,
        )

    def _same_origin(self, request: web.Request) -> None:
        """Only the kiosk's own page may press: not another site open in some browser."""
        site = request.headers.get("Sec-Fetch-Site")
        origin = request.headers.get("Origin")
        own = f"{request.scheme}://{request.headers.get('Host', '')}"
        if (site is not None and site not in ("same-origin", "none")) or (
            origin is not None and origin != own
        ):
            raise ApiError(403, "cross_origin", "requests come from the kiosk page only")
