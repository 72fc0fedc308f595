"""The TLS context for the broker: one definition for the uplink and `edged doctor`; and the
uplink's sessions resumed from one connection to the next.

A full TLS handshake with certificates both ways costs kilobytes (measured by `bench.budget`);
a node that loses its link in every dead zone pays it at every reconnect. With TLS session
resumption (a TLS 1.3 ticket, or a TLS 1.2 session) the next handshake proves the same keys
without sending a certificate. Python's `ssl` resumes only with the `SSLContext` that made
the session, so the uplink keeps one context for all its connections (`TlsSessions`) and
builds a new one only when the certificate files change (a renewed certificate is used at
the next connection, with a full handshake).

A session is resumed either from a ticket the broker gave (the default; stateless for the
broker, but Mosquitto's tickets carry the node's certificate, so a resumption still costs
~940 bytes over TLS 1.2 and ~1.9 KB over 1.3) or, with `[broker.tls] tickets = false` over
TLS 1.2, by its 32-byte id from the broker's session cache (~360 bytes). A broker drops a
cached session when a connection ends without TLS's close_notify (OpenSSL treats the bare
end as an attack on the session), so every socket of the uplink sends one before it closes:
paho only closes the socket.

What else a handshake carries is config where it is a trade-off (`[broker.tls]`
`min_version`, `middlebox_compat`, `ciphers`; docs/budget.md has the bytes of each).
"""

import contextlib
import logging
import os
import socket
import ssl
from pathlib import Path
from typing import TypeVar

from edged.config.models import BrokerConfig

log = logging.getLogger(__name__)


def tls_context(cfg: BrokerConfig) -> ssl.SSLContext:
    """Verify the broker's certificate and host name; present ours when configured."""
    return _load(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), cfg)


C = TypeVar("C", bound=ssl.SSLContext)


def _load(context: C, cfg: BrokerConfig) -> C:
    assert cfg.tls is not None
    context.verify_mode = ssl.CERT_REQUIRED  # PROTOCOL_TLS_CLIENT checks the host name too
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cfg.tls.min_version == "1.3":  # the TLS 1.2 suites and versions leave the hello
        context.minimum_version = ssl.TLSVersion.TLSv1_3
    if cfg.tls.max_version == "1.2":
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    if not cfg.tls.tickets:  # resume by session id, from the broker's cache (TLS 1.2)
        context.options |= ssl.OP_NO_TICKET
    if not cfg.tls.middlebox_compat:  # no fake session id, no change cipher spec (TLS 1.3)
        context.options &= ~ssl.OP_ENABLE_MIDDLEBOX_COMPAT
    if cfg.tls.ciphers is not None:  # checked when the config loaded
        context.set_ciphers(cfg.tls.ciphers)
    if cfg.tls.cert_file is not None:
        context.load_cert_chain(
            str(cfg.tls.cert_file), str(cfg.tls.key_file) if cfg.tls.key_file else None
        )
    context.load_verify_locations(str(cfg.tls.ca_file))
    return context


class ClosingSocket(ssl.SSLSocket):
    """A TLS socket that says goodbye: close() sends close_notify first, without waiting for
    the broker's (a lost link must not hold the loop), so the broker keeps the session for
    the next connection to resume. Nothing is sent on a socket whose handshake never ended."""

    def close(self) -> None:
        if self.fileno() >= 0 and self.version() is not None:
            with contextlib.suppress(ssl.SSLError, OSError, ValueError):
                self.setblocking(False)
                self.unwrap()  # writes close_notify, then wants the peer's: raises, unwaited
        super().close()


class ResumingContext(ssl.SSLContext):
    """An `SSLContext` that offers the session it kept to every socket it wraps (paho wraps
    the socket itself and has no way to pass a session)."""

    kept: ssl.SSLSession | None = None
    last: ssl.SSLSocket | None = None
    sslsocket_class = ClosingSocket

    def wrap_socket(  # type: ignore[override]
        self,
        sock: socket.socket,
        server_side: bool = False,
        do_handshake_on_connect: bool = True,
        suppress_ragged_eofs: bool = True,
        server_hostname: str | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLSocket:
        wrapped = super().wrap_socket(
            sock,
            server_side=server_side,
            do_handshake_on_connect=do_handshake_on_connect,
            suppress_ragged_eofs=suppress_ragged_eofs,
            server_hostname=server_hostname,
            session=session or self.kept,
        )
        self.last = wrapped
        return wrapped


def _stamp(cfg: BrokerConfig) -> tuple[tuple[str, int, int], ...]:
    """What identifies the TLS files' contents: path, mtime, size of each."""
    assert cfg.tls is not None
    paths = [cfg.tls.ca_file, cfg.tls.cert_file, cfg.tls.key_file]
    out = []
    for path in paths:
        if path is None:
            continue
        try:
            st = os.stat(Path(path))
            out.append((str(path), st.st_mtime_ns, st.st_size))
        except OSError:
            out.append((str(path), -1, -1))
    return tuple(out)


class TlsSessions:
    """The uplink's TLS: one context across connections, resuming the last session."""

    def __init__(self, cfg: BrokerConfig) -> None:
        assert cfg.tls is not None
        self.cfg = cfg
        self.resume = cfg.tls.resume
        self._context: ResumingContext | None = None
        self._stamp: tuple[tuple[str, int, int], ...] = ()

    def context(self) -> ssl.SSLContext:
        """The context for the next connection (a new one when the files changed)."""
        stamp = _stamp(self.cfg)
        context = self._context
        if context is None or stamp != self._stamp:
            context = self._context = _load(ResumingContext(ssl.PROTOCOL_TLS_CLIENT), self.cfg)
            self._stamp = stamp
        context.last = None
        return context

    def connected(self) -> bool | None:
        """After CONNACK: keep this connection's session for the next one (the broker's
        ticket has arrived by then); whether this one was resumed (None: not known)."""
        context = self._context
        sock = context.last if context is not None else None
        if sock is None:
            return None
        try:
            reused = sock.session_reused
            session = sock.session
        except (OSError, ValueError, AttributeError):
            return None
        if self.resume and session is not None and context is not None:
            context.kept = session
        return bool(reused)
