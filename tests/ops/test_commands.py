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
    reply = {"id": request.id, "command": request.name, "ok": True, "result": {"pong": True}}
    return json.dumps(reply).encode()


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


def test_a_reply_with_our_id_to_another_command_of_the_node_asked_is_not_taken() -> None:
    # whoever read our door.unlock (lost on its way) sends the node a ping with its id:
    # the pong on reply/ping is not the door's answer, nor an `_invalid` refusal
    request = make_request(BASE, "door.unlock", {})
    payload = json.dumps({"id": request.id, "ok": True, "result": {"pong": True}}).encode()
    for other in ("ping", "_invalid", "door", "door/unlock/x"):
        assert reply_of(request, f"{BASE}/reply/{other}", payload, None) is None, other


def test_the_reply_is_taken_on_either_spelling_of_its_commands_reply_topic() -> None:
    request = make_request(BASE, "door.unlock", {})
    payload = json.dumps({"id": request.id, "ok": True, "result": {}}).encode()
    for topic in (f"{BASE}/reply/door/unlock", f"{BASE}/reply/door.unlock"):
        assert reply_of(request, topic, payload, None) == (json.loads(payload), topic)


def test_a_copy_naming_the_node_but_answering_another_command_is_not_taken() -> None:
    # our door.unlock was lost; whoever read it sent the node a ping with our id, response
    # topic and correlation data: the copy names the node asked, but answers a ping
    request = make_request(BASE, "door.unlock", {}, response_topic=RESPONSE)
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.UserProperty = [("node", BASE)]
    for command in ("ping", "_invalid", "door"):
        reply = {"id": request.id, "command": command, "ok": True, "result": {"pong": True}}
        payload = json.dumps(reply).encode()
        assert reply_of(request, RESPONSE, payload, request.correlation, BASE) is None, command


def test_a_copy_that_names_no_command_is_left_for_the_reply_on_reply() -> None:
    # a node of the release before names its node but not the command: its copy cannot
    # tell a ping with our id from our answer
    request = make_request(BASE, "door.unlock", {}, response_topic=RESPONSE)
    payload = json.dumps({"id": request.id, "ok": True, "result": {}}).encode()
    assert reply_of(request, RESPONSE, payload, request.correlation, BASE) is None
    topic = f"{BASE}/reply/door/unlock"
    assert reply_of(request, topic, payload, None) == (json.loads(payload), topic)


def test_a_reply_on_reply_naming_another_command_is_not_taken() -> None:
    request = make_request(BASE, "door.unlock", {})
    reply = {"id": request.id, "command": "ping", "ok": True, "result": {}}
    assert reply_of(request, f"{BASE}/reply/door/unlock", json.dumps(reply).encode(), None) is None
