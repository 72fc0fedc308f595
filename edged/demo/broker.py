"""An MQTT broker inside the demo process, so `edged demo` needs no Mosquitto, root or network.

amqtt is pure Python and speaks MQTT 3.1.1 only: whoever connects to it (the node, the
demo's subscriber) must use protocol 3.1.1. It listens on loopback only, on a free port,
with anonymous access and without the `$SYS` and packet-logging plugins.
"""

import asyncio
import logging
import socket
import warnings
from types import TracebackType
from typing import Any, Literal

from core.errors import EdgedError
from edged.ops.urls import BrokerAddress

log = logging.getLogger(__name__)

PROTOCOL: Literal["3.1.1"] = "3.1.1"
"""The only MQTT version amqtt speaks."""

_START_ATTEMPTS = 3
_STOP_BUDGET_S = 6.0


class EmbeddedBrokerError(EdgedError):
    """The embedded broker cannot start; the message says what to do instead."""


def quiet_amqtt() -> None:
    """amqtt logs every connection at INFO and warns about its own deprecations: the demo
    screen is for the node's messages, so keep only amqtt's errors."""
    for name in ("amqtt", "transitions"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"amqtt(\.|$)")
    for text in (
        "Loading plugins from EntryPoints",
        "`BrokerSysPlugin`",
        "sys_interval",
        "'auth' and 'topic-check'",
    ):
        warnings.filterwarnings("ignore", message=text, category=DeprecationWarning)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def broker_config(host: str, port: int) -> dict[str, Any]:
    """Loopback listener, anonymous clients, and no plugin but authentication (which amqtt
    needs to accept anyone at all): no `$SYS` topics, no per-packet logging."""
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}", "max_connections": 64}},
        "plugins": {
            "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
        },
    }


class EmbeddedBroker:
    """`async with EmbeddedBroker() as broker:` then connect to `broker.address`."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port: int | None = None
        self._broker: Any = None

    @property
    def address(self) -> BrokerAddress:
        if self.port is None:
            raise RuntimeError("the embedded broker is not started")
        return BrokerAddress(self.host, self.port)

    async def start(self) -> None:
        quiet_amqtt()
        try:
            from amqtt.broker import Broker
            from amqtt.errors import BrokerError
        except ImportError as exc:
            raise EmbeddedBrokerError(
                f"the embedded demo broker needs amqtt, which is not installed ({exc.name}): "
                "install it with `pip install 'edged[demo]'`, or use a broker you run with "
                "`edged demo --broker mqtt://host:1883`"
            ) from exc
        last: Exception | None = None
        for _ in range(_START_ATTEMPTS):  # a free port can be taken between probe and bind
            port = free_port(self.host)
            broker = Broker(broker_config(self.host, port))
            try:
                await broker.start()
            except (BrokerError, OSError) as exc:
                last = exc
                continue
            self._broker, self.port = broker, port
            log.info("embedded broker listening on %s", self.address)
            return
        raise EmbeddedBrokerError(
            f"the embedded demo broker could not start on {self.host}: {last}; "
            "use a broker you run with `edged demo --broker mqtt://host:1883`"
        )

    async def stop(self) -> None:
        broker, self._broker = self._broker, None
        if broker is None:
            return
        try:
            async with asyncio.timeout(_STOP_BUDGET_S):
                await broker.shutdown()
        except TimeoutError:
            log.warning("the embedded broker did not stop within %.0f s", _STOP_BUDGET_S)
        except Exception as exc:  # amqtt's shutdown races with closing sessions: not our news
            log.debug("embedded broker shutdown: %s", exc)

    async def __aenter__(self) -> "EmbeddedBroker":
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
