"""What a valid config may still get wrong: said by `edged check-config` and `edged doctor`
as a warning, never a refusal (the demo and a broker on the node itself use plain MQTT).

A broker reached over the network without `[broker.tls]`: the username and password go in
clear, and whoever is on the path (the venue's LAN, a hotspot, the mobile operator) reads
the node's traffic and can write its `cmd/` topics, so every command not signed is theirs
to send. Local means on this machine: a loopback address (127.0.0.0/8, ::1) or `localhost`
(and names under `.localhost`, RFC 6761); the node reaches its broker over TCP only.

A venue whose door takes bookings without `[services.access] rooms`: the lists are the
fleet's and carry every venue's bookings, so a booking of any room anywhere opens it.

Counting beams whose `door` names neither a contact of their GPIO driver nor a door of
`[services.vehicle.doors]` (with a CAN driver to report it), when there is either: the
contact, or else the door's status on the CAN bus (DC2), gates them (a walk while it was
shut all along is not counted, docs/drivers.md), and a door named otherwise leaves them
ungated, silently.
"""

import ipaddress
from typing import Any

from edged.config.models import BrokerConfig, EdgedConfig


def is_local_host(host: str) -> bool:
    """Whether `host` names this machine (no network between the node and the broker)."""
    name = host.strip().strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def broker_in_clear(broker: BrokerConfig) -> tuple[str, str] | None:
    """(what is wrong, what to do) when the broker is reached over the network without
    TLS; None when it is local or TLS is set."""
    if broker.tls is not None or is_local_host(broker.host):
        return None
    secret = (
        "the password of [broker] password_file crosses the network in clear, "
        if broker.password_file is not None
        else "the [broker] username crosses the network in clear, "
        if broker.username is not None
        else ""
    )
    what = (
        f"[broker] host {broker.host!r} is not on this machine and [broker.tls] is not set: "
        f"{secret}anyone on the path can read the node's messages and send it unsigned "
        "commands"
    )
    todo = (
        "add [broker.tls] with ca_file (the fleet CA) and the broker's TLS port (8883 on the "
        "shipped broker, config/mosquitto/), with cert_file and key_file for a client "
        "certificate; or use a broker on this machine (localhost, 127.0.0.1, ::1)"
    )
    return what, todo


def venue_without_rooms(config: EdgedConfig) -> tuple[str, str] | None:
    """(what is wrong, what to do) when a venue's door opens for every booking in the
    fleet's lists, because no room is named; None otherwise."""
    access = config.services.access
    if config.node.profile.value != "venue" or not access.enabled or access.rooms:
        return None
    what = (
        "[services.access] rooms is not set at a venue: the access lists are the fleet's, so "
        "a booking of any room, at any venue of the fleet, opens this door"
    )
    todo = 'name the rooms this door opens, e.g. rooms = ["ahun-salle-1"]'
    return what, todo


def beams_without_their_door(config: EdgedConfig) -> tuple[str, str] | None:
    """(what is wrong, what to do) when a GPIO driver has beams whose `door` is none of its
    contacts nor a door the vehicle's bus reports, where there is one of either: not gated
    by a door, maybe a typo; None otherwise."""
    can = [d for d in config.drivers if d.enabled and d.driver.startswith("can.")]
    on_the_bus = list(config.services.vehicle.doors) if can else []
    deaf = _doors_no_can_driver_decodes(config, can)
    for driver in config.drivers:
        if not driver.enabled:
            continue
        try:
            settings = driver.settings
        except Exception:  # not validated (a config built by hand): nothing to say
            continue
        doors = [d.name for d in getattr(settings, "doors", ())]
        beams = [b.door for b in getattr(settings, "beams", ())]
        loose = [door for door in beams if door not in doors and door not in on_the_bus]
        if (doors or on_the_bus) and loose:
            named = []
            if doors:
                named.append(f"contacts: {', '.join(map(repr, doors))}")
            if on_the_bus:
                named.append(f"doors on the CAN bus: {', '.join(map(repr, on_the_bus))}")
            what = (
                f"drivers {driver.name}: the counting beams of door {loose[0]!r} name neither "
                f"a door contact nor a door of [services.vehicle.doors] ({'; '.join(named)}): "
                "they count whatever the door does, shut or open"
            )
            todo = (
                "name the beams' door as its contact's name, or as the vehicle's door in "
                "[services.vehicle.doors], so nothing counts while it is shut"
            )
            return what, todo
        gated_deaf = [door for door in beams if door not in doors and door in deaf]
        if gated_deaf:
            door = gated_deaf[0]
            what = (
                f"drivers {driver.name}: the counting beams of door {door!r} are gated by its "
                f"status on the CAN bus ({config.services.vehicle.doors[door]}), but no CAN "
                f"driver decodes PGN {deaf[door]} (their `pgns` leave it out): the gate never "
                "hears the door and every walk counts ungated, reported "
                f"`driver.{driver.name}.beam_door_never_heard` once the bus talks a while"
            )
            todo = f"add {deaf[door]} to the CAN driver's `pgns` (or remove `pgns`)"
            return what, todo
    return None


def _doors_no_can_driver_decodes(config: EdgedConfig, can: list[Any]) -> dict[str, int]:
    """Doors of `[services.vehicle.doors]` whose message no enabled CAN driver decodes
    (each with a `pgns` that leaves its PGN out), with that PGN."""
    deaf: dict[str, int] = {}
    for door, signal in config.services.vehicle.doors.items():
        message = str(signal).split(".", 1)[0]
        left_out: int | None = None
        for driver in can:
            try:
                settings = driver.settings
                pgn = _pgn_of(settings, message)
            except Exception:  # not validated, or no such message: said elsewhere
                break
            if settings.pgns is None or pgn in settings.pgns:
                break  # this driver decodes it
            left_out = pgn
        else:
            if left_out is not None:
                deaf[door] = left_out
    return deaf


def _pgn_of(settings: Any, message: str) -> int:
    from drivers.can.j1939 import pgn_of
    from drivers.can.table import SHIPPED_DBC, load_table

    table = load_table(settings.dbc or SHIPPED_DBC)
    frame = next(m["frame_id"] for m in table["messages"] if m["name"] == message)
    return pgn_of(int(frame))
