"""The kiosk's HTTP server: the page, its live state (Server-Sent Events) and rider presses.

One HTTP listener (`edged/web`, on h11) in the daemon's loop. It has no admin or command
endpoint: the only thing a page can do is ask for a pickup, the mediator or a service, and
even that is validated, size-limited and rate-limited. Every response carries a strict
Content-Security-Policy (own files only, no inline script, no eval, no HTML sinks), so a
message from dispatch is shown as text whatever it contains.

It listens on loopback by default. A failure to listen (port taken) is logged, counted and
retried: a kiosk problem never stops the daemon. What a visitor can hold (connections,
live streams, time to send a request, descriptors) is bounded in `edged/kiosk/limits.py`
and `edged/web/server.py`.
"""

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable
from importlib import resources
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from core.counters import Counters
from core.errors import EdgedError
from core.logs import flood_key
from edged.clock import ClockSource
from edged.config.kiosk import LOOPBACK, KioskConfig, screen_origin
from edged.kiosk.limits import (
    FD_RESERVE,
    REQUEST_BURST,
    AcceptErrorFilter,
    ConnectionLimits,
    raise_fd_limit,
)
from edged.kiosk.models import Asked, RequestRefused, RiderPost
from edged.kiosk.ratelimit import RateLimiter
from edged.web import sse
from edged.web.message import HttpError, Request, Response, Send, json_response, printable
from edged.web.router import Router
from edged.web.server import HttpServer, Limits

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)

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
SSE_RETRY_MS = 1000
"""EventSource reconnects this soon after the daemon went away."""
FRAME_REUSE_S = 0.25
"""A state frame is shared by the pages woken by the same change (its clock is this fresh)."""
BIND_RETRY_S = (2.0, 60.0)


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


class KioskServer:
    name = "kiosk"
    """Prefix of its counters and log lines."""
    pages_advice = "raise [services.kiosk] max_clients or max_streams_per_peer for more screens"
    port_key = "[services.kiosk] port"
    names_peers = True
    """Whether its log lines may name a peer's address and the path it asked for (the
    portal's never do: docs/wifi.md, Privacy)."""

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
        self.types = dict(STATIC)
        self.hosts = LOOPBACK_NAMES | set(config.allowed_hosts)
        if config.host not in LOOPBACK:  # not every address of a family
            self.hosts |= {config.host.lower()}
        self.router = self._make_router()
        self.port: int | None = None
        self.listening = asyncio.Event()
        self._clients: set[asyncio.Event] = set()
        self._closing = False
        self._state_frame: tuple[object, float, bytes] | None = None
        self.limits = ConnectionLimits(
            max_connections=config.max_connections,
            per_peer=config.max_connections_per_peer,
            max_streams=config.max_clients,
            streams_per_peer=min(config.max_streams_per_peer, config.max_clients),
            screens=frozenset(config.screen_addresses),
            counters=counters,
            name=self.name,
            fd_limit=1 << 20,  # set from the process's limit when serving starts
            clock=clock,
            names_peers=self.names_peers,
            request_burst=REQUEST_BURST,
        )
        service.listen(self._on_view)

    @property
    def url(self) -> str:
        """Where the screen's browser should point (for the demo and the logs): a page on
        every address at the loopback of its family (`::` listens on IPv6 alone), the address
        install.sh's browser policy allows (tools/kiosk_policy.py)."""
        return f"{screen_origin(self.config, self.port)}/"

    # -- running ----------------------------------------------------------------------

    async def run(self) -> None:
        """Serve until cancelled (the kiosk service runs it beside its view)."""
        await self.serve()

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
                "%s: only %d file descriptors (LimitNOFILE): at most %d connections, "
                "%d descriptors kept for the node",
                self.name,
                limit,
                self.limits.max_connections,
                FD_RESERVE,
            )

    async def serve(self) -> None:
        """Listen (retrying while the address or port is not available) until cancelled."""
        self._descriptor_budget()
        accept_errors = AcceptErrorFilter(self.counters)
        logging.getLogger("asyncio").addFilter(accept_errors)
        timeout = self.config.header_timeout_s
        http = HttpServer(
            self,
            self.limits,
            Limits(head_timeout_s=timeout, write_timeout_s=timeout),
            names_peers=self.names_peers,
            counters=self.counters,
            name=self.name,
        )
        self._closing = False
        delay = BIND_RETRY_S[0]
        failures = 0
        try:
            while True:
                try:
                    self.port = await http.start(self.config.host, self.config.port)
                    break
                except OSError as exc:
                    # said once, clearly; the retries only count (a taken port stays taken
                    # for hours: a line every minute would bury the journal)
                    self.counters.inc(f"{self.name}.listen_error")
                    failures += 1
                    log.log(
                        logging.ERROR if failures == 1 else logging.DEBUG,
                        "%s: cannot listen on %s:%s (%s): the %s page is not served; "
                        "everything else runs. Free the port (`edged doctor` names who holds "
                        "it) or set another in %s; retrying every %.0f s at most, quietly",
                        self.name,
                        self.config.host,
                        self.config.port,
                        exc.strerror or exc,
                        self.name,
                        self.port_key,
                        BIND_RETRY_S[1],
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, BIND_RETRY_S[1])
            self.listening.set()
            if failures:
                log.warning("%s: the port is free at last (%d tries)", self.name, failures + 1)
            log.info("%s page at %s", self.name, self.url)
            await asyncio.Event().wait()  # until cancelled
        finally:
            self.listening.clear()
            self._close_streams()
            await http.stop()
            logging.getLogger("asyncio").removeFilter(accept_errors)

    def _make_router(self) -> Router:
        router = Router()
        self.add_rider_routes(router)
        return router

    def add_rider_routes(self, router: Router) -> None:
        """What a rider's page uses, and nothing else: the captive portal (edged/wifi/portal.py)
        serves exactly these besides its own. A path only the screen may use (an admin or
        screen-only page) goes in `_make_router`, never here."""
        router.get("/", self._index)
        router.get("/static/{name}", self._static)
        router.get("/api/state", self._state)
        router.get("/api/events", self._events)
        router.post("/api/requests", self._post_request)

    # -- every response ---------------------------------------------------------------

    def _headers(self, path: str, response: Response) -> Response:
        response.headers.update(SECURITY_HEADERS)
        if path.startswith("/api/"):
            response.headers["Cache-Control"] = "no-store"
        else:
            response.headers.setdefault("Cache-Control", "no-cache")
        return response

    async def handle(self, request: Request) -> Response:
        """Every request: refuse foreign Host names (DNS rebinding), route, and turn every
        refusal into JSON; each answer with the security headers."""
        try:
            self._check_host(request)
            handler, request.params = self.router.resolve(request.method, request.path)
            response = await handler(request)
        except HttpError as exc:
            return self.refuse(exc, request.method, request.path)
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception:
            self.counters.inc(f"{self.name}.error")
            log.exception(  # each server's own count in the flood guard: the screen's
                "%s: %s %s failed",  # failures must not hold back the portal's first line
                self.name,
                request.method,
                request.path[:100],
                extra=flood_key(f"{self.name}.failed"),
            )
            error = HttpError(500, "internal", "the kiosk failed; see logs")
            return self.refuse(error, request.method, request.path)
        return self._headers(request.path, response)

    def _check_host(self, request: Request) -> None:
        if not request.host:  # HTTP/1.0 without Host, or an empty one: no name to check
            raise HttpError(400, "no_host", "send the page's host name in a Host header")
        if request.host not in self.hosts:
            # the names it answers to are the operator's to read in the config, not any
            # visitor's (internal host names and addresses of the depot or venue)
            raise HttpError(
                421,
                "unknown_host",
                "this kiosk does not answer to that host name; "
                "add the screen's host name to [services.kiosk] allowed_hosts",
            )

    def refuse(self, error: HttpError, method: str, path: str) -> Response:
        """A refusal as JSON, counted per status and logged: a flood of one code is the log's
        flood guard's to bound (its first lines, then how many more), apart from the others."""
        self.counters.inc(f"{self.name}.http_{error.status}")
        log.warning(
            "%s: %s %s refused (%s %s): %s",
            self.name,
            method[:16],
            path[:100] if self.names_peers else "(a path)",
            error.status,
            error.code,
            printable(error.message),
            extra=flood_key(f"{self.name}.{error.code}"),
        )
        headers = {k: v for k, v in error.headers.items() if k in ("Retry-After", "Allow")}
        body = {"error": error.code, "message": error.message}
        return self._headers(path, json_response(body, status=error.status, headers=headers))

    # -- the page ---------------------------------------------------------------------

    async def _index(self, request: Request) -> Response:
        return self._file("index.html")

    async def _static(self, request: Request) -> Response:
        name = request.params["name"]
        if name == "index.html" or name not in self.files:
            raise HttpError(404, "not_found", "no such page")
        return self._file(name)

    def _file(self, name: str) -> Response:
        return Response(200, self.files[name], f"{self.types[name]}; charset=utf-8")

    # -- state, live ------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        now, source = self.service.now()
        # heartbeat_s: a page that hears nothing for longer knows its stream is dead
        beat = self.config.heartbeat_s
        return {"now_ms": now, "clock": source.value, "heartbeat_s": beat, **self.service.current}

    async def _state(self, request: Request) -> Response:
        return json_response(self.snapshot())

    def _on_view(self, view: dict[str, Any]) -> None:
        for wake in self._clients:
            wake.set()

    def _close_streams(self) -> None:
        self._closing = True
        for wake in self._clients:
            wake.set()

    async def _events(self, request: Request) -> Response:
        """Server-Sent Events: the whole state at once and on each change, a clock tick
        every `heartbeat_s` (it also finds pages that went away). A stream ends after
        `stream_max_s` (the page reconnects at once), so none is held for ever."""
        peer = request.peer
        why = self.limits.refuse_stream(peer)
        if why is not None:
            self.limits.refused("stream", peer, why)
            each = self.limits.streams_per_peer
            raise HttpError(
                503,
                "too_many_pages",
                f"{self.config.max_clients} pages in all, {each} per address, are already "
                f"connected; {self.pages_advice}",
                {"Retry-After": "5"},
            )
        wake = asyncio.Event()
        self._clients.add(wake)
        self.limits.streams[peer] += 1

        def release() -> None:
            self._clients.discard(wake)
            self.limits.streams[peer] -= 1
            if self.limits.streams[peer] <= 0:
                del self.limits.streams[peer]

        async def produce(send: Send) -> None:
            ends = self.clock() + self.config.stream_max_s
            await send(sse.retry(SSE_RETRY_MS) + self._frame("state"))
            while not self._closing and (left := ends - self.clock()) > 0:
                try:
                    async with asyncio.timeout(min(self.config.heartbeat_s, left)):
                        await wake.wait()
                except TimeoutError:
                    await send(self._frame("tick"))
                    continue
                wake.clear()
                if not self._closing:
                    await send(self._frame("state"))

        return sse.event_stream(produce, on_close=release)

    def _frame(self, event: str) -> bytes:
        if event == "state":
            # one change wakes every page: the frame is built once and sent to all (a
            # hundred phones on the portal would otherwise each cost a JSON encoding, in
            # one burst on the loop that also decides taps)
            view, now = self.service.current, self.clock()
            cached = self._state_frame
            if cached is not None and cached[0] is view and now - cached[1] < FRAME_REUSE_S:
                return cached[2]
            frame = sse.event("state", self.snapshot())
            self._state_frame = (view, now, frame)
            return frame
        now_ms, source = self.service.now()
        return sse.event("tick", {"now_ms": now_ms, "clock": source.value})

    # -- rider presses ----------------------------------------------------------------

    async def read_json(self, request: Request, model: type[M]) -> M:
        """A press's body: from the page itself, JSON, small, in time, and as `model` says."""
        self._same_origin(request)
        if request.content_type != "application/json":
            raise HttpError(415, "bad_type", "send the request as application/json")
        limit = self.config.max_body_bytes
        length = request.content_length
        if length is not None and length > limit:
            raise HttpError(413, "too_large", f"the body is over {limit} bytes")
        raw = await request.read(limit, self.config.header_timeout_s)  # 413, 408
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise HttpError(400, "bad_json", "the body is not UTF-8 JSON") from None
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            # a key is the peer's own text: quoted escaped, never as it came
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()
            )
            raise HttpError(422, "bad_request", printable(problems)[:300]) from None

    async def _post_request(self, request: Request) -> Response:
        post = await self.read_json(request, RiderPost)
        wait = self.limiter.check(self.presser(request))
        if wait > 0:
            raise HttpError(
                429,
                "rate_limited",
                "too many presses; wait a moment",
                {"Retry-After": str(max(1, math.ceil(wait)))},
            )
        try:
            asked = await self.service.ask(post)
        except RequestRefused as exc:
            raise HttpError(422, exc.code, exc.message) from None
        except EdgedError as exc:  # the outbox is closed: the daemon is stopping
            raise HttpError(503, "unavailable", f"{exc}; try again in a moment") from None
        return json_response(
            {
                "request": asked.record.model_dump(mode="json", exclude={"lang"}),
                "repeat": asked.repeat,
                "connected": self.service.current["connected"],
            },
            status=200 if asked.repeat else 202,
        )

    def presser(self, request: Request) -> str:
        """Whose presses a request counts among (`rate_burst`, `rate_per_min`): its address
        here, the phone's device on the portal."""
        return request.peer

    def _same_origin(self, request: Request) -> None:
        """Only the kiosk's own page may press: not another site open in some browser."""
        site = request.headers.get("Sec-Fetch-Site")
        origin = request.headers.get("Origin")
        own = f"{request.scheme}://{request.headers.get('Host', '')}"
        if (site is not None and site not in ("same-origin", "none")) or (
            origin is not None and origin != own
        ):
            raise HttpError(403, "cross_origin", "requests come from the kiosk page only")
