"""Dispatch's file server for the tests: HTTPS with the fleet CA's certificate, Range
requests (206 with Content-Range), and the faults a field link has: a cap on the rate,
a connection cut after some bytes (once, or every time, or each connection after a few of
its own bytes: a server that hangs up before it can be judged too slow), a file shorter than it should be,
and a server that trickles (small writes at a low rate, its head too if asked: each write
a TLS record of its own, so no read timeout of the client ever trips).
Every request is logged, so a test can see that a download resumed rather than restarted.
"""

import re
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def fleet_ca(directory: Path) -> Path:
    """A fleet CA and a server certificate for localhost and 127.0.0.1 in `directory`
    (config/mosquitto/fleet-certs.sh: dispatch serves bundles with one of the fleet CA)."""
    from tests.helpers.nodes import ROOT

    script = ROOT / "config" / "mosquitto" / "fleet-certs.sh"
    subprocess.run(["bash", str(script), str(directory), "ca"], check=True, capture_output=True)
    return directory


@dataclass
class Served:
    path: Path
    rate: int = 0  # bytes/s, 0: as fast as it goes
    cut_after: int | None = None  # close the connection after this many bytes of the file
    cuts: int = 1  # ...this many times
    truncate_to: int | None = None  # serve only the first N bytes, as if the file were short
    chunk: int = 16384  # bytes per write (each one TLS record)
    slow_head: int = 0  # 1: the status line and headers go out at `rate`, `chunk` at a time
    fast_first: int = 0  # bytes of each response sent at once, before `rate` applies
    cut_each: int | None = None  # close every connection after this many bytes of its own


@dataclass
class Request:
    path: str
    range: str | None
    status: int
    start: int = 0
    sent: int = 0


@dataclass
class FileServer:
    cert: Path
    key: Path
    files: dict[str, Served] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # http.server's name
                server._get(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.cert), str(self.key))
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def url(self, name: str, host: str = "127.0.0.1") -> str:
        return f"https://{host}:{self.port}/{name}"

    def start(self) -> "FileServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def serve(self, name: str, path: Path, **faults: int | None) -> str:
        self.files[name] = Served(path, **faults)  # type: ignore[arg-type]
        return self.url(name)

    def _get(self, h: BaseHTTPRequestHandler) -> None:
        name = h.path.lstrip("/").split("?")[0]
        served = self.files.get(name)
        wanted = h.headers.get("Range")
        if served is None:
            self.requests.append(Request(name, wanted, 404))
            h.send_error(404)
            return
        data = served.path.read_bytes()
        if served.truncate_to is not None:
            data = data[: served.truncate_to]
        start = 0
        m = re.fullmatch(r"bytes=(\d+)-", wanted or "")
        if m:
            start = int(m[1])
            if start >= len(data):
                self.requests.append(Request(name, wanted, 416, start))
                h.send_response(416)
                h.send_header("Content-Range", f"bytes */{len(data)}")
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
        status = 206 if m else 200
        body = data[start:]
        request = Request(name, wanted, status, start)
        self.requests.append(request)
        head = [f"HTTP/1.1 {status} {'Partial Content' if m else 'OK'}",
                f"Content-Length: {len(body)}"]  # fmt: skip
        if m:
            head.append(f"Content-Range: bytes {start}-{len(data) - 1}/{len(data)}")
        if served.slow_head:
            try:
                self._paced(h, "".join(f"{line}\r\n" for line in head).encode() + b"\r\n", served)
            except OSError:  # the client gave up
                h.close_connection = True
                return
        else:
            h.send_response(status)
            for line in head[1:]:
                h.send_header(*line.split(": ", 1))
            h.end_headers()
        cut = None
        if served.cut_after is not None and served.cuts > 0 and start < served.cut_after:
            served.cuts -= 1
            cut = served.cut_after - start
        if served.cut_each is not None:
            cut = served.cut_each
        paced_from, base = (0.0, 0) if served.fast_first else (time.monotonic(), 0)
        try:
            for i in range(0, len(body), served.chunk):
                chunk = body[i : i + served.chunk]
                if cut is not None and request.sent + len(chunk) > cut:
                    h.wfile.write(chunk[: cut - request.sent])
                    request.sent = cut
                    h.close_connection = True
                    h.wfile.flush()
                    h.connection.shutdown(2)
                    return
                h.wfile.write(chunk)
                request.sent += len(chunk)
                if served.rate and request.sent > served.fast_first:
                    if not paced_from:  # the fast part is out: the pace starts now
                        paced_from, base = time.monotonic(), request.sent
                    ahead = (request.sent - base) / served.rate - (time.monotonic() - paced_from)
                    if ahead > 0:
                        time.sleep(ahead)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            h.close_connection = True

    @staticmethod
    def _paced(h: BaseHTTPRequestHandler, data: bytes, served: Served) -> None:
        """`data` at `served.rate`, `served.chunk` bytes a write, each sent at once."""
        began = time.monotonic()
        for i in range(0, len(data), served.chunk):
            h.wfile.write(data[i : i + served.chunk])
            h.wfile.flush()
            ahead = (i + served.chunk) / served.rate - (time.monotonic() - began)
            if ahead > 0:
                time.sleep(ahead)
