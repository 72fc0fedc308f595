"""A fleet of simulated nodes that speak the update part of the contract over a real broker.

Each node has a retained birth (`state`: online, its version) and answers `update.apply`
as a node does: the signature is checked (the update key, the dotted command topic), the
reply carries the update's id, and the retained `update` topic goes downloading ->
verifying -> installing -> staged -> trial -> confirmed (with a new birth), or, for the
nodes told to fail, trial -> rolled_back with a reason (and the old birth again). One MQTT
connection serves them all: twenty `edged run` processes would cost the machine a minute
and test nothing more of edgectl.
"""

import asyncio
import contextlib
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edged.security.signing import signed_message, verify
from edged.uplink.cancellable import CancellableClient

STEPS = ("downloading", "verifying", "installing", "staged", "trial")


@dataclass
class SimFleet:
    port: int
    fleet: str
    names: list[str]
    key: Ed25519PublicKey
    version: str = "0.1.0"
    fail: dict[str, tuple[str, str]] = field(default_factory=dict)  # node -> (code, reason)
    step_s: float = 0.05
    prefix: str = "rnst/v1"
    commands: list[tuple[str, float]] = field(default_factory=list)  # (node, when) per apply
    refusals: list[tuple[str, str]] = field(default_factory=list)
    running: dict[str, str] = field(default_factory=dict)

    async def __aenter__(self) -> "SimFleet":
        self.client = CancellableClient(
            "127.0.0.1", self.port, identifier=f"sim-{uuid.uuid4().hex[:8]}"
        )
        await self.client.__aenter__()
        for name in self.names:
            self.running[name] = self.version
            await self._birth(name)
        await self.client.subscribe(f"{self.prefix}/{self.fleet}/+/cmd/#", qos=1)
        self._tasks: set[asyncio.Task[None]] = set()
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._reader.cancel()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await self._reader
        await self.client.__aexit__(None, None, None)

    def base(self, name: str) -> str:
        return f"{self.prefix}/{self.fleet}/{name}"

    async def _birth(self, name: str) -> None:
        body = {"state": "online", "version": self.running[name], "since": int(time.time() * 1000)}
        await self.client.publish(f"{self.base(name)}/state", json.dumps(body), qos=1, retain=True)

    async def _read(self) -> None:
        async for message in self.client.messages:
            topic = str(message.topic)
            head = f"{self.prefix}/{self.fleet}/"
            name, _, rest = topic[len(head) :].partition("/")
            if name not in self.running or rest.replace("/", ".") != "cmd.update.apply":
                continue
            task = asyncio.create_task(self._apply(name, message.payload))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _apply(self, name: str, payload: Any) -> None:
        doc = json.loads(payload)
        base = self.base(name)
        message = signed_message(f"{base}/cmd/update.apply", doc["id"], doc["ts"], doc["args"])
        if not isinstance(doc.get("sig"), str) or not verify(self.key, doc["sig"], message):
            self.refusals.append((name, "bad_signature"))
            reply = {"id": doc["id"], "ok": False,
                     "error": {"code": "bad_signature", "message": "does not verify"}}  # fmt: skip
            await self.client.publish(f"{base}/reply/update/apply", json.dumps(reply), qos=1)
            return
        self.commands.append((name, time.monotonic()))
        update_id = uuid.uuid4().hex
        version = doc["args"]["version"]
        reply = {"id": doc["id"], "ok": True,
                 "result": {"accepted": True, "id": update_id, "version": version}}  # fmt: skip
        await self.client.publish(f"{base}/reply/update/apply", json.dumps(reply), qos=1)
        old = self.running[name]
        for state in STEPS:
            await asyncio.sleep(self.step_s)
            body: dict[str, Any] = {"state": state, "running": old, "id": update_id,
                                    "version": version}  # fmt: skip
            if state == "downloading":
                body |= {"bytes": 500, "total": 1000, "percent": 50}
            if state == "trial":
                self.running[name] = version
                body["running"] = version
                await self._birth(name)
            await self._update(name, body)
        await asyncio.sleep(self.step_s)
        if name in self.fail:
            code, reason = self.fail[name]
            self.running[name] = old
            await self._birth(name)
            await self._update(name, {"state": "rolled_back", "running": old, "id": update_id,
                                      "version": version, "code": code, "reason": reason})  # fmt: skip
        else:
            await self._update(name, {"state": "confirmed", "running": version, "id": update_id,
                                      "version": version, "previous": old})  # fmt: skip

    async def _update(self, name: str, body: dict[str, Any]) -> None:
        body |= {"v": 1, "seq": 0, "ts": int(time.time() * 1000), "clock": "ntp"}
        await self.client.publish(f"{self.base(name)}/update", json.dumps(body), qos=1, retain=True)
