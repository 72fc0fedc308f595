"""Broker addresses as people type them: `mqtt://host:port` or `mqtts://host:port`, so every
tool reads them alike."""

from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_PORT = 1883
DEFAULT_TLS_PORT = 8883
_PLAIN_SCHEMES = ("mqtt", "tcp")
_TLS_SCHEMES = ("mqtts", "ssl", "tls")


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int = DEFAULT_PORT
    tls: bool = False

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self}"


def parse_broker_url(text: str) -> BrokerAddress:
    """`mqtt://host[:port]`, `mqtts://host[:port]` (TLS, port 8883 by default), `tcp://`,
    `ssl://`, or a bare `host[:port]` to a host, a port and whether to speak TLS.

    Raises ValueError with a message that says what to type instead: the tools print it as is.
    """
    raw = text.strip()
    if not raw:
        raise ValueError("the broker URL is empty; expected mqtt://host:port or mqtts://host:port")
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
    if scheme in ("ws", "wss"):
        raise ValueError(
            f"{scheme}:// (MQTT over WebSocket) is not supported by this tool; "
            "use the broker's MQTT listener: mqtt://host:1883 or mqtts://host:8883"
        )
    if scheme not in _PLAIN_SCHEMES + _TLS_SCHEMES:
        raise ValueError(
            f"unknown scheme {parts.scheme!r} in {text!r}; expected mqtt://host:port "
            "or mqtts://host:port"
        )
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            "credentials in the broker URL are not accepted (they would show in `ps` and "
            "shell history); use --username and --password-file"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"unexpected path or query in {text!r}; expected mqtt://host:port")
    if not parts.hostname:
        raise ValueError(f"no host in {text!r}; expected mqtt://host:port")
    if port == 0:
        raise ValueError(f"port 0 in {text!r} is not a port a broker listens on")
    tls = scheme in _TLS_SCHEMES
    default = DEFAULT_TLS_PORT if tls else DEFAULT_PORT
    return BrokerAddress(parts.hostname, default if port is None else port, tls)
