"""The dispatch and operations side: read the fleet from MQTT, as `edgectl` and the demo do."""

from edged.ops.feed import BrokerUnreachableError, FleetFeed, mqtt_client
from edged.ops.fleet import FleetView, NodeView
from edged.ops.urls import BrokerAddress, parse_broker_url

__all__ = [
    "BrokerAddress",
    "BrokerUnreachableError",
    "FleetFeed",
    "FleetView",
    "NodeView",
    "mqtt_client",
    "parse_broker_url",
]
