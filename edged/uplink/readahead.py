"""paho's socket, read in chunks.

paho reads each incoming packet with three `recv` calls at least (the type byte, the
length bytes one by one, then the rest), so a PUBACK of 4 bytes costs three system calls;
during a drain that was ~10 % of the node's event loop. This wrapper reads what the kernel
has in one `recv` and hands paho its small reads from memory. `pending()` counts what it
holds, so aiomqtt's reader (which calls paho's `loop_read` again while the socket says bytes
are pending, as an `ssl.SSLSocket` does) empties it within the same wake-up.

With a `PubackFilter` (`edged.uplink.packets`), the drain's own PUBACKs are taken out of
what is read before paho sees it: a read that brings nothing else says "would block", as
an empty socket does.
"""

import socket
import ssl
import time
from typing import Any

from edged.uplink.packets import PubackFilter

CHUNK = 65536
NOT_A_REFUSAL = (
    ssl.SSLWantReadError,  # nothing to read yet
    ssl.SSLWantWriteError,
    ssl.SSLZeroReturnError,  # a clean TLS close: the broker's answer, if any, is MQTT's
    ssl.SSLEOFError,  # the connection cut
    ssl.SSLSyscallError,
)
"""TLS errors that say nothing about certificates: not reported as a refusal (here, not in
`edged.uplink.tlsfail`, which loads on a failure: a TLS read meets the first one often)."""


class ReadAhead:
    """Wraps a connected (TLS or plain) socket; everything but `recv` passes through."""

    def __init__(
        self, sock: socket.socket | ssl.SSLSocket, pubacks: PubackFilter | None = None
    ) -> None:
        self.sock = sock
        self.pubacks = pubacks
        self._buf = b""
        self._at = 0
        self.heard_at: float | None = None  # time.monotonic() of the last bytes read
        self.tls_error: ssl.SSLError | None = None
        """The TLS error a read met: the broker's alert refusing the node's certificate
        comes here over TLS 1.3, after the handshake (`edged.uplink.tlsfail`)."""

    def recv(self, bufsize: int) -> bytes:
        if self._at >= len(self._buf):
            data = self._read(max(bufsize, CHUNK))
            if len(data) <= bufsize:
                return data
            self._buf, self._at = data, 0
        end = self._at + bufsize
        out = self._buf[self._at : end]
        self._at = min(end, len(self._buf))
        if self._at >= len(self._buf):
            self._buf, self._at = b"", 0
        return out

    def _read(self, size: int) -> bytes:
        """The next bytes for paho; b"" at the end of the stream."""
        while True:
            try:
                data = self.sock.recv(size)  # BlockingIOError (or SSLWantRead) when empty
            except ssl.SSLError as exc:  # paho only logs it, and reports a lost connection
                if not isinstance(exc, NOT_A_REFUSAL):
                    self.tls_error = exc
                raise
            if not data:
                return data
            self.heard_at = time.monotonic()
            if self.pubacks is None:
                return data
            data = self.pubacks.feed(data)
            if data:
                return data
            # all of it was the drain's PUBACKs (or the start of a packet): read on

    def pending(self) -> int:
        """Bytes readable without waiting: ours, and those TLS has decrypted."""
        inner = getattr(self.sock, "pending", None)
        return len(self._buf) - self._at + (inner() if inner is not None else 0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)
