"""A connection's unacknowledged data, bounded: for every server of the node's that streams."""

import contextlib
import socket


def bound_unacknowledged(sock: socket.socket | None, seconds: float) -> None:
    """Let the kernel end `sock`'s connection when what was sent stays unacknowledged for
    `seconds` (TCP_USER_TIMEOUT, Linux). A peer that vanished (a phone off the hotspot, a
    laptop closed: no FIN, no ACK) is otherwise only found once the socket's buffer is full,
    which a live page's small ticks take its whole life to fill, the kernel retransmitting
    meanwhile for ~15 min: its place and its descriptor held. Nothing on another socket
    family, nor where the option does not exist."""
    option = getattr(socket, "TCP_USER_TIMEOUT", None)
    if option is None or sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, option, max(1, int(seconds * 1000)))
