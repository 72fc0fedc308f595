"""The `kiosk/requests` payload: what a rider asked for at the screen, and where.

Imports only `edged.payloads`: `edged.topics` imports this module for its table.
"""

from datetime import datetime
from typing import Literal

from pydantic import ConfigDict, Field

from edged.payloads import Body


class KioskRequest(Body):
    """A rider pressed a button. No personal data: who pressed is not known to the node."""

    model_config = ConfigDict(defer_build=True)  # built on the first rider request (#19)

    request_id: str = Field(description="node-made id; dispatch answers with `kiosk.ack`")
    kind: Literal["pickup", "mediator", "service"] = Field(
        description="pickup: a ride from here; mediator: call the mediator; "
        "service: a question about a service"
    )
    service_id: str | None = Field(
        default=None, description="kind service: the schedule entry asked about, if one was"
    )
    service: str | None = Field(default=None, description="that entry's provider name")
    lang: Literal["fr", "en"] = Field(description="the language the rider used on the screen")
    mode: str = Field(description="the node's operating mode when asked")
    stop: str | None = Field(default=None, description="id of the geofence the node is in")
    stop_name: str | None = Field(default=None, description="its name")
    lat: float | None = Field(default=None, description="last valid position, 5 decimals")
    lon: float | None = None
    fix_time: datetime | None = Field(default=None, description="that fix's receiver time, UTC")
    fix_lost: bool = Field(description="no valid fix for a while: the position is old")
