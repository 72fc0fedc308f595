"""What a service hands to the outbox, and what the uplink reads back from it."""

from dataclasses import dataclass

from pydantic import BaseModel

from edged.topics import TOPICS, Priority, Topics, TopicSpec


@dataclass(frozen=True, slots=True)
class Publication:
    """A message body on one of the node's topics, not yet stamped with its envelope."""

    spec: TopicSpec
    topic: str
    stream: str
    body: BaseModel
    qos: int
    response_topic: str | None = None  # MQTT 5: a second copy goes here
    correlation: bytes | None = None

    @classmethod
    def make(
        cls,
        topics: Topics,
        spec: TopicSpec,
        body: BaseModel,
        *,
        name: str | None = None,
        qos: int | None = None,
        response_topic: str | None = None,
        correlation: bytes | None = None,
        stream: str | None = None,
    ) -> "Publication":
        """`stream`: the `seq` counter, when not the topic's own (`UNKNOWN_COMMANDS_STREAM`)."""
        if TOPICS.get(spec.name) is not spec:
            raise ValueError(
                f"{spec.name} is not in edged.topics.TOPICS: add it there and to docs/topics.md"
            )
        if spec.priority is None:
            raise ValueError(f"{spec.name} is not published through the outbox")
        if not isinstance(body, spec.body):
            raise TypeError(f"{spec.name} carries {spec.body.__name__}, not {type(body).__name__}")
        return cls(
            spec=spec,
            topic=topics.of(spec, name),
            stream=spec.suffix(name) if stream is None else stream,
            body=body,
            qos=spec.qos if qos is None else qos,
            response_topic=response_topic,
            correlation=correlation,
        )

    @property
    def priority(self) -> Priority:
        assert self.spec.priority is not None
        return self.spec.priority


@dataclass(frozen=True, slots=True)
class Stored:
    """A row of the outbox as the uplink sends it."""

    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    correlation: bytes | None
    size: int
    priority: int
    live: bool = False  # from the live lane (or the memory lane): before its class's backlog

    @property
    def rank(self) -> tuple[int, bool]:
        """Sending order across batches: priority class, then live before backlog."""
        return (self.priority, not self.live)
