"""The kiosk's fixtures: a real node offline, its kiosk service, its page served."""

from tests.helpers.kiosk import clock, kiosk, node, nodes, serve

__all__ = ["clock", "kiosk", "node", "nodes", "serve"]
