"""The durable outbox: every publication is stored here before the uplink may send it."""

from edged.outbox.publication import Publication, Stored
from edged.outbox.store import Outbox, PutResult

__all__ = ["Outbox", "Publication", "PutResult", "Stored"]
