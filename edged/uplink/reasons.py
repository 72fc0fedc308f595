"""What a broker's refusal means and what the operator can do about it.

A CONNACK refusal or a DISCONNECT from the broker carries a reason code (MQTT 5; paho maps
the 3.1.1 return codes onto the same values). The log line names the reason and the remedy,
so "not authorised" is not mistaken for a network problem. A broker that speaks no MQTT 5
is recognised here too: the uplink then falls back to 3.1.1.
"""

from dataclasses import dataclass

UNSUPPORTED_PROTOCOL = 0x84
SESSION_TAKEN_OVER = 0x8E
SERVER_SHUTTING_DOWN = 0x8B
KEEP_ALIVE_TIMEOUT = 0x8D
RETAIN_NOT_SUPPORTED = 0x9A


@dataclass(frozen=True)
class Reason:
    key: str  # for the counter `uplink.refused.{key}` and the health `last_error`
    todo: str


_CHECK_CREDENTIALS = (
    "check [broker] username and password_file (or the TLS client certificate) against the "
    "broker's users"
)
_CHECK_ACL = (
    "the broker does not let this client connect: check [broker] username and password_file "
    "(or the TLS client certificate) against the broker's users and ACL (Mosquitto answers "
    "this to a wrong password too; a broker that ties client ids to certificates refuses "
    "another id)"
)
_RETRY = "the broker is up but not serving now; edged keeps retrying"

_REASONS: dict[int, Reason] = {
    0x80: Reason("unspecified", "see the broker's log"),
    0x81: Reason("malformed_packet", "a client/broker incompatibility: see the broker's log"),
    0x82: Reason("protocol_error", 'see the broker\'s log; try [broker] protocol = "3.1.1"'),
    0x83: Reason("implementation_specific", "see the broker's log"),
    UNSUPPORTED_PROTOCOL: Reason(
        "unsupported_protocol",
        'the broker does not speak this MQTT version: set [broker] protocol = "3.1.1" or '
        "leave [broker] protocol_fallback = true",
    ),
    0x85: Reason(
        "client_id_not_valid",
        "set [broker] client_id to an id the broker accepts (some 3.1.1 brokers take only "
        "1-23 letters and digits)",
    ),
    0x86: Reason("bad_username_or_password", _CHECK_CREDENTIALS),
    0x87: Reason("not_authorized", _CHECK_ACL),
    0x88: Reason("server_unavailable", _RETRY),
    0x89: Reason("server_busy", _RETRY),
    0x8A: Reason("banned", "the broker has banned this client: ask its operator"),
    0x8B: Reason("server_shutting_down", "the broker is stopping; edged keeps retrying"),
    0x8C: Reason("bad_authentication_method", _CHECK_CREDENTIALS),
    0x8D: Reason(
        "keep_alive_timeout", "the link lost packets for a keepalive period; edged reconnects"
    ),
    SESSION_TAKEN_OVER: Reason(
        "session_taken_over",
        "another client connected with this node's client id: a second node or process "
        "configured with the same [node] fleet/id or [broker] client_id (a copied SD card?), "
        "or someone holding its credentials; edged backs off instead of fighting for the id",
    ),
    0x90: Reason("topic_name_invalid", "the broker refused a topic: see its log and ACL"),
    0x93: Reason("receive_maximum_exceeded", "lower [broker] window"),
    0x95: Reason("packet_too_large", "the broker's maximum packet size is below a message"),
    0x97: Reason("quota_exceeded", "the broker's quota for this client is used up"),
    0x98: Reason("administrative_action", "the broker's operator disconnected this client"),
    0x99: Reason("payload_format_invalid", "see the broker's log"),
    RETAIN_NOT_SUPPORTED: Reason(
        "retain_not_supported",
        "the broker keeps no retained messages: edged goes on without the retain flag; for "
        "dispatch to get each node's last state when it subscribes, enable them on the broker "
        "(Mosquitto: retain_available true)",
    ),
    0x9B: Reason(
        "qos_not_supported",
        "the broker allows only QoS 0 (Mosquitto: max_qos): edged needs QoS 1 to know what "
        "arrived and keeps every message until then; allow QoS 1 on the broker",
    ),
    0x9C: Reason("use_another_server", "point [broker] host at the server the broker names"),
    0x9D: Reason("server_moved", "point [broker] host at the broker's new address"),
    0x9F: Reason("connection_rate_exceeded", "the broker limits connection rate; edged waits"),
}


def reason_for(code: int) -> Reason:
    return _REASONS.get(code, Reason(f"code_{code}", "see the broker's log"))


def asks_for_room(code: int) -> bool:
    """Whether a broker's DISCONNECT with `code` tells the node to stay away a while: any
    failure (0x89 server busy, 0x97 quota exceeded, 0x9F connection rate exceeded, a limit
    the node broke...) but a broker stopping (it comes back: reconnect soon) and a lost
    keepalive (the link's fault, as a cut)."""
    return code >= 0x80 and code not in (SERVER_SHUTTING_DOWN, KEEP_ALIVE_TIMEOUT)
