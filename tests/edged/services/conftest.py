"""The kiosk service's fixtures: a real node offline and its kiosk (tests/helpers/kiosk.py)."""

from tests.helpers.kiosk import clock, kiosk, node, nodes

__all__ = ["clock", "kiosk", "node", "nodes"]
