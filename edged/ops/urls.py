"""Broker addresses as people type them: `mqtt://host:port`, so every tool reads them alike."""

from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_PORT = 1883
_PLAIN_SCHEMES = ("mqtt", "tcp")


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int = DEFAULT_PORT

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"mqtt://{self}"


def parse_broker_url(text: str) -> BrokerAddress:
    """`mqtt://host[:port]` (or `tcp://`, or a bare `host[:port]`) to a host and a port.

    Raises ValueError with a message that says what to type instead: the tools print it as is.
    """
    raw = text.strip()
    if not raw:
        raise ValueError("the broker URL is empty; expected mqtt://host:port")
    if "://" not in raw:
        raw = f"mqtt://{raw}"
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError as exc:
        raise ValueError(
            f"cannot read the broker URL {text!r}: {exc}; expected mqtt://host:port"
        ) from None
    scheme = parts.scheme.lower()
    if scheme in ("mqtts", "ssl", "tls", "ws", "wss"):
        raise ValueError(
            f"{scheme}:// brokers are not supported by this tool yet; "
            "use a plain mqtt://host:port listener"
        )
    if scheme not in _PLAIN_SCHEMES:
        raise ValueError(f"unknown scheme {parts.scheme!r} in {text!r}; expected mqtt://host:port")
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            "credentials in the broker URL are not supported; "
            "use an anonymous listener on a trusted network"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"unexpected path or query in {text!r}; expected mqtt://host:port")
    if not parts.hostname:
        raise ValueError(f"no host in {text!r}; expected mqtt://host:port")
    if port == 0:
        raise ValueError(f"port 0 in {text!r} is not a port a broker listens on")
    return BrokerAddress(parts.hostname, DEFAULT_PORT if port is None else port)
