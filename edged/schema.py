"""JSON Schemas of every payload, generated from the models (`edged schema`)."""

from typing import Any

from pydantic import BaseModel

from edged.payloads import Envelope
from edged.topics import TOPICS, TopicSpec


def payload_model(spec: TopicSpec) -> type[BaseModel]:
    """The full payload of a topic: its body plus, for outgoing topics, the envelope."""
    if spec.direction == "in":
        return spec.body
    return type(
        f"{spec.body.__name__}Payload", (spec.body, Envelope), {"__doc__": spec.body.__doc__}
    )


def schemas() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, spec in TOPICS.items():
        schema = payload_model(spec).model_json_schema()
        schema["x-mqtt"] = {
            "direction": spec.direction,
            "qos": spec.qos,
            "retained": spec.retain,
            "priority": spec.priority.name.lower() if spec.priority is not None else None,
            "latest_only": spec.latest_only,
            "version": spec.version,
        }
        out[name] = schema
    return out
