"""The MQTT side of the node."""

from edged.uplink.client import Uplink

__all__ = ["Uplink"]
