"""The tests' broker is the rig's: one Mosquitto helper for tests, benchmarks and HIL."""

from hil.broker import Mosquitto, free_port

__all__ = ["Mosquitto", "free_port"]
