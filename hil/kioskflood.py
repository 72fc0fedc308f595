"""A kiosk visitor who wants the node's descriptors: held live streams, half-sent requests
and thousands of idle connections against the kiosk's port, and what the kiosk did to each.

`python -m hil.kioskflood http://127.0.0.1:8080/ --streams 8 --half 300 --idle 3000 --hold 30`
prints JSON: how many of each the kiosk accepted, how many it closed (and how soon), how
many it refused, and whether a page could still load its state meanwhile. The tests and the
`attacks` scenario use `flood()` directly.
"""

import argparse
import asyncio
import contextlib
import json
import re
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

HALF_REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "  # never ends its head
UNIT = Path(__file__).resolve().parents[1] / "systemd" / "edged.service"


def unit_nofile() -> int:
    """LimitNOFILE of systemd/edged.service: the descriptors the daemon has on a Pi."""
    match = re.search(r"^LimitNOFILE=(\d+)$", UNIT.read_text(), re.M)
    if match is None:
        raise ValueError(f"{UNIT} sets no LimitNOFILE")
    return int(match.group(1))


@dataclass
class Kind:
    """One kind of hostile connection: how it fared."""

    opened: int = 0  # TCP connection made (the kernel accepted it)
    refused: int = 0  # could not connect at all, or refused with an HTTP status at once
    answered: int = 0  # streams: got the first frame (then held)
    closed: int = 0  # the kiosk closed it while held
    closed_after_s: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        out = asdict(self)
        times = sorted(out.pop("closed_after_s"))
        out["closed_after_s_p50"] = round(times[len(times) // 2], 2) if times else None
        out["closed_after_s_max"] = round(times[-1], 2) if times else None
        return out


@dataclass
class FloodReport:
    streams: Kind = field(default_factory=Kind)
    half: Kind = field(default_factory=Kind)
    idle: Kind = field(default_factory=Kind)
    page_ok: int = 0  # GET /api/state answered 200 during the flood (a screen's request)
    page_failed: int = 0
    screen_stream: str = ""  # the status line the screen's live page got, 1 s into the flood
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "streams": self.streams.summary(),
            "half": self.half.summary(),
            "idle": self.idle.summary(),
            "page_ok": self.page_ok,
            "page_failed": self.page_failed,
            "screen_stream": self.screen_stream,
            "seconds": round(self.seconds, 1),
        }


def raise_own_fd_limit(needed: int) -> None:
    """The flooder itself needs a descriptor per connection."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, needed + 256))
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


async def _held(
    kind: Kind,
    host: str,
    port: int,
    first: bytes,
    hold_s: float,
    *,
    expect_frame: bool,
    source: str | None,
) -> None:
    t0 = time.monotonic()
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, local_addr=(source, 0) if source else None), 10
        )
    except (OSError, TimeoutError):
        kind.refused += 1
        return
    kind.opened += 1
    try:
        if first:
            writer.write(first)
            await writer.drain()
        if expect_frame:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            if not head.startswith(b"HTTP/1.1 200"):
                kind.refused += 1
                return
            kind.answered += 1
        deadline = t0 + hold_s
        while (left := deadline - time.monotonic()) > 0:
            chunk = await asyncio.wait_for(reader.read(4096), left)
            if not chunk:  # the kiosk closed it
                kind.closed += 1
                kind.closed_after_s.append(time.monotonic() - t0)
                return
    except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, OSError):
        if time.monotonic() - t0 < hold_s - 0.5:
            kind.closed += 1
            kind.closed_after_s.append(time.monotonic() - t0)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _screen_stream(host: str, port: int, report: FloodReport, until: float) -> None:
    """The screen opens its live page once the flood is on, and keeps it."""
    await asyncio.sleep(1.0)
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
    except (OSError, TimeoutError):
        report.screen_stream = "no connection"
        return
    try:
        writer.write(f"GET /api/events HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        line = await asyncio.wait_for(reader.readline(), 5)
        report.screen_stream = line.decode(errors="replace").strip() or "closed"
        with contextlib.suppress(TimeoutError, ConnectionError, OSError):
            await asyncio.wait_for(reader.read(1 << 20), max(0.0, until - time.monotonic()))
    except (TimeoutError, ConnectionError, OSError) as exc:
        report.screen_stream = f"failed: {type(exc).__name__}"
    finally:
        writer.close()


async def _page(url: str, report: FloodReport, until: float) -> None:
    """A screen's page polling its state once a second through the flood."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = f"GET /api/state HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    while time.monotonic() < until:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 3)
            writer.write(request)
            status = await asyncio.wait_for(reader.readline(), 3)
            writer.close()
            ok = status.startswith(b"HTTP/1.1 200")
        except (OSError, TimeoutError, ConnectionError):
            ok = False
        if ok:
            report.page_ok += 1
        else:
            report.page_failed += 1
        await asyncio.sleep(1.0)


async def flood(
    url: str,
    *,
    streams: int = 8,
    half: int = 300,
    idle: int = 1100,
    hold_s: float = 30.0,
    sources: list[str] | None = None,
    page: bool = True,
) -> FloodReport:
    """Open them all at once, hold them `hold_s`, and report. `sources`: local addresses to
    spread the connections over (127.0.0.2, … act as other visitors on loopback)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    raise_own_fd_limit(streams + half + idle)
    report = FloodReport()
    t0 = time.monotonic()
    addrs = sources or [None]  # type: ignore[list-item]
    stream_req = f"GET /api/events HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    kinds = [
        (report.streams, stream_req, streams, True),
        (report.half, HALF_REQUEST, half, False),
        (report.idle, b"", idle, False),
    ]
    jobs = [
        _held(kind, host, port, first, hold_s, expect_frame=frame, source=addrs[i % len(addrs)])
        for kind, first, n, frame in kinds
        for i in range(n)
    ]
    if page:
        jobs.append(_page(url, report, t0 + hold_s))
        jobs.append(_screen_stream(host, port, report, t0 + hold_s))
    await asyncio.gather(*jobs)
    report.seconds = time.monotonic() - t0
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hil.kioskflood", description=__doc__)
    ap.add_argument("url", help="the kiosk, e.g. http://127.0.0.1:8080/")
    ap.add_argument("--streams", type=int, default=8, help="held /api/events streams")
    ap.add_argument("--half", type=int, default=300, help="requests whose head never ends")
    ap.add_argument("--idle", type=int, default=1100, help="connections that send nothing")
    ap.add_argument("--hold", type=float, default=30.0, help="seconds to hold them")
    ap.add_argument(
        "--sources", default="", help="comma-separated local addresses (other visitors)"
    )
    args = ap.parse_args(argv)
    sources = [s for s in args.sources.split(",") if s] or None
    report = asyncio.run(
        flood(
            args.url,
            streams=args.streams,
            half=args.half,
            idle=args.idle,
            hold_s=args.hold,
            sources=sources,
        )
    )
    print(json.dumps(report.as_dict(), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
