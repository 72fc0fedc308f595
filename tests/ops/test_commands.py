"""Which message `edgectl cmd` takes for the reply to its request (`edged.ops.commands`)."""

import json

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edged.ops.commands import Request, copy_from, make_request, reply_of

BASE = "rnst/v1/test/shuttle-07"
RESPONSE = "rnst/v1/test/_replies/edgectl-1"


def _request() -> Request:
    return make_request(BASE, "ping", {}, response_topic=RESPONSE)


def _reply(request: Request) -> bytes:
    return json.dumps({"id": request.id, "ok": True, "result": {"pong": True}}).encode()


def test_a_copy_from_a_node_of_an_earlier_release_is_left_for_its_reply_on_reply() -> None:
    # an earlier node sends no `node` property: its copy is not taken, its reply/ is
    request = _request()
    payload = _reply(request)
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.CorrelationData = request.correlation
    assert copy_from(props) is None
    assert reply_of(request, RESPONSE, payload, request.correlation, copy_from(props)) is None
    taken = reply_of(request, f"{BASE}/reply/ping", payload, None)
    assert taken == (json.loads(payload), f"{BASE}/reply/ping")


def test_a_copy_naming_the_node_asked_is_taken_on_the_response_topic() -> None:
    request = _request()
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.UserProperty = [("node", BASE)]
    found = reply_of(request, RESPONSE, _reply(request), request.correlation, copy_from(props))
    assert found is not None and found[1] == f"the MQTT 5 response topic {RESPONSE}"
