"""How a download's response ends after the last byte of the bundle: a field link (a proxy,
a mobile network) may cut the connection before the end of a chunked body is said, or keep
it open. The bundle is whole: its SHA-256 decides, not what came after it.

Real parts: a TLS server of the fleet CA sending a raw HTTP response, `fetch` as the
manager runs it."""

import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edged.update import download
from edged.update.download import Transfer, fetch


def _serve_once(pki: Path, body: bytes, ending: str) -> Iterator[int]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(pki / "broker.crt"), str(pki / "broker.key"))
    listener = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def answer() -> None:
        raw, _ = listener.accept()
        with ctx.wrap_socket(raw, server_side=True) as conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(4096)
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            conn.sendall(f"{len(body):x}\r\n".encode() + body + b"\r\n")
            if ending == "held open":
                done.wait(5)
            # "cut": closed without the last chunk (0\r\n\r\n) that ends the body

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    done.set()
    thread.join(5)
    listener.close()


@pytest.mark.parametrize("ending", ["cut", "held open"])
def test_a_whole_bundle_whose_response_does_not_end_cleanly_is_kept(
    tmp_path: Path, server_pki: Path, monkeypatch: pytest.MonkeyPatch, ending: str
) -> None:
    """The check for bytes past `size` read once more after the last one: a connection
    cut there raised IncompleteRead, one held open a TimeoutError, neither of them a
    drop: the manager failed the update `internal` and threw the whole bundle away (17 MB
    on a metered link), to be sent again by hand."""
    monkeypatch.setattr(download, "TIMEOUT_S", 0.5)  # the read timeout, 30 s in the field
    body = os.urandom(50_000)
    for port in _serve_once(server_pki, body, ending):
        part = tmp_path / "b.part"
        t = Transfer(f"https://127.0.0.1:{port}/b", len(body), part, ca_file=server_pki / "ca.crt")
        began = time.monotonic()
        fetch(t, lambda _: None, threading.Event())
        assert part.read_bytes() == body
        assert time.monotonic() - began < 1.5
