"""The dispatch side of the wire: one MQTT subscriber on `{prefix}/#` feeding a `FleetView`.

The demo screen and `edgectl watch` both use it, so what they show is exactly what the
broker delivers to a subscriber, never what a node believes it sent.
"""

import asyncio
import logging
import uuid
from collections.abc import Sequence
from typing import Any, Literal

import aiomqtt

from edged.errors import EdgedError
from edged.ops.fleet import FleetView
from edged.ops.urls import BrokerAddress

log = logging.getLogger(__name__)

Protocol = Literal["5", "3.1.1"]


class BrokerUnreachableError(EdgedError):
    """The broker could not be reached or refused us; the message says what to check."""


def mqtt_client(
    address: BrokerAddress,
    *,
    protocol: Protocol,
    client_id: str,
    timeout: float = 10.0,
) -> aiomqtt.Client:
    """An anonymous, clean-session client: a tool leaves no session behind on the broker."""
    v5 = protocol == "5"
    return aiomqtt.Client(
        hostname=address.host,
        port=address.port,
        identifier=client_id,
        protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
        clean_session=None if v5 else True,
        timeout=timeout,
        keepalive=30,
        max_queued_incoming_messages=50_000,
    )


def refused(granted: Sequence[Any]) -> bool:
    """Whether a SUBACK refused the subscription (3.1.1: 0x80; MQTT 5: a failure reason)."""
    for code in granted:
        if isinstance(code, int):
            if code >= 0x80:
                return True
        elif getattr(code, "is_failure", False):
            return True
    return False


def unreachable(address: BrokerAddress, exc: BaseException) -> BrokerUnreachableError:
    return BrokerUnreachableError(
        f"cannot reach the MQTT broker at {address}: {exc or type(exc).__name__}. "
        "Check that it is running and that the host and port are right "
        "(the URL looks like mqtt://host:1883)."
    )


class FleetFeed:
    """Keep `view` fed from `{prefix}/#`; reconnect with backoff once it has worked once.

    The first connection failing raises `BrokerUnreachableError` (a typo in a URL should
    say so at once); a later loss shows in `status` while it reconnects.
    """

    def __init__(
        self,
        address: BrokerAddress,
        view: FleetView,
        *,
        protocol: Protocol = "5",
        client_id: str | None = None,
    ) -> None:
        self.address = address
        self.view = view
        self.protocol = protocol
        self.client_id = client_id or f"edgectl-{uuid.uuid4().hex[:12]}"
        self.subscribed = asyncio.Event()
        self.connected = False
        self.status = "connecting"
        self.sessions = 0

    @property
    def topic_filter(self) -> str:
        return f"{self.view.prefix}/#"

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                async with mqtt_client(
                    self.address, protocol=self.protocol, client_id=self.client_id
                ) as client:
                    granted = await client.subscribe(self.topic_filter, qos=1)
                    if refused(granted):
                        raise BrokerUnreachableError(
                            f"the broker at {self.address} refused a subscription to "
                            f"{self.topic_filter}: check its ACL for this client"
                        )
                    self.connected = True
                    self.sessions += 1
                    failures = 0
                    self.status = "connected"
                    self.subscribed.set()
                    async for message in client.messages:
                        self.view.ingest(str(message.topic), message.payload)
            except aiomqtt.MqttError as exc:
                if not self.subscribed.is_set():
                    raise unreachable(self.address, exc) from None
                self.status = f"lost the broker ({exc}); reconnecting"
                log.info("lost the broker at %s: %s", self.address, exc)  # `status` shows it
            finally:
                self.connected = False
            failures += 1
            await asyncio.sleep(min(5.0, 0.25 * 2**failures))
