"""How a download's response ends after the last byte of the bundle: a field link (a proxy,
a mobile network) may cut the connection before the end of a chunked body is said, or keep
it open. The bundle is whole: its SHA-256 decides, not what came after it.

Real parts: a TLS server of the fleet CA sending a raw HTTP response, `fetch` as the
manager runs it."""

import contextlib
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edged.update import download
from edged.update.download import Dropped, Transfer, fetch


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


def _serve_range(pki: Path, data: bytes, piece: int) -> Iterator[int]:
    """A server that answers each `Range: bytes=N-` with `piece` bytes of it at most, as
    its 206 says (`Content-Range: bytes N-M/size`): a cap some object stores and caches
    have, and RFC 9110 lets a client resume from."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(pki / "broker.crt"), str(pki / "broker.key"))
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)

    def answer() -> None:
        with contextlib.suppress(OSError):
            while True:
                raw, _ = listener.accept()
                with ctx.wrap_socket(raw, server_side=True) as conn:
                    head = b""
                    while b"\r\n\r\n" not in head:
                        head += conn.recv(4096)
                    start = int(head.split(b"bytes=")[1].split(b"-")[0])
                    end = min(start + piece, len(data)) - 1
                    conn.sendall(
                        f"HTTP/1.1 206 Partial Content\r\nContent-Length: {end - start + 1}\r\n"
                        f"Content-Range: bytes {start}-{end}/{len(data)}\r\n\r\n".encode()
                        + data[start : end + 1]
                    )

    threading.Thread(target=answer, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()


def test_a_server_that_answers_a_range_in_pieces_is_resumed_not_refused(
    tmp_path: Path, server_pki: Path
) -> None:
    """Its 206 says the file is `size` bytes and which piece comes: the end of the piece
    was taken for the end of the file (`size_mismatch`, the update failed and the bytes
    thrown away) though the server had said the file is whole. It is a drop: the next
    connection goes on from there."""
    data = os.urandom(40_000)
    part = tmp_path / "b.part"
    part.write_bytes(data[:5_000])  # a download resumed after a cut
    for port in _serve_range(server_pki, data, piece=15_000):
        t = Transfer(f"https://127.0.0.1:{port}/b", len(data), part, ca_file=server_pki / "ca.crt")
        for _ in range(5):
            try:
                fetch(t, lambda _: None, threading.Event())
                break
            except Dropped:
                continue
        assert part.read_bytes() == data
