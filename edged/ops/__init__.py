"""The dispatch and operations side: read the fleet from MQTT, as `edgectl` and the demo do."""

from edged.ops.client import BrokerUnreachableError, connect
from edged.ops.feed import FleetFeed
from edged.ops.fleet import FleetView, NodeView
from edged.ops.login import Login, LoginError
from edged.ops.urls import BrokerAddress, parse_broker_url

__all__ = [
    "BrokerAddress",
    "BrokerUnreachableError",
    "FleetFeed",
    "FleetView",
    "Login",
    "LoginError",
    "NodeView",
    "connect",
    "parse_broker_url",
]
