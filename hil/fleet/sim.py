"""N simulated vehicles publishing the MQTT contract at realistic rates, on real routes.

Each vehicle drives one of the route files (config/routes) from its own point of the loop:
a position every `period_s` (±20 %), occupancy when it changes (riders get on and off at
stops), a birth and a health report, and the `journey` of the run it is on — half of them
a timetabled trip of the static GTFS (config/gtfs/creuse), the others an on-demand ADDED
run. Every `churn_s` a share of the fleet goes offline (its `state: offline`, as the
broker's will would say it) and comes back later with a new birth.

One MQTT connection carries the whole fleet: it is the broker and the feed under test,
not N TCP stacks. Payloads are built with the node's own payload models.
"""

import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import aiomqtt
from pydantic import BaseModel

from edged import payloads as p
from edged.uplink.cancellable import CancellableClient
from hil.fleet.gtfs import DEPARTURES, TIMEZONE, trip_id
from hil.fleet.track import Point, Track, tracks

CAPACITY = 30
THRESHOLDS = (
    (50, "MANY_SEATS_AVAILABLE"),
    (80, "FEW_SEATS_AVAILABLE"),
    (95, "STANDING_ROOM_ONLY"),
    (100, "CRUSHED_STANDING_ROOM_ONLY"),
)


def occupancy_status(count: int, capacity: int) -> str:
    if count == 0:
        return "EMPTY"
    percent = 100 * count / capacity
    for limit, name in THRESHOLDS:
        if percent < limit:
            return name
    return "FULL"


@dataclass
class Vehicle:
    node: str
    track: Track
    phase_s: float
    run: dict[str, Any]
    count: int = 0
    online: bool = True
    back_at: float = 0.0
    next_position: float = 0.0
    odometer_m: float = 0.0
    last_t: float | None = None
    at_stop: str | None = None
    seqs: dict[str, int] = field(default_factory=dict)


class FleetSim:
    def __init__(
        self,
        host: str,
        port: int,
        nodes: int,
        *,
        prefix: str = "rnst/v1",
        fleet: str = "sim",
        period_s: float = 5.0,
        health_s: float = 30.0,
        churn_s: float = 30.0,
        offline_share: float = 0.02,
        offline_s: tuple[float, float] = (10.0, 60.0),
        seed: int = 16,
        clock: Any = time.time,
    ) -> None:
        self.host, self.port = host, port
        self.prefix, self.fleet = prefix, fleet
        self.period_s, self.health_s = period_s, health_s
        self.churn_s, self.offline_share, self.offline_s = churn_s, offline_share, offline_s
        self.rng = random.Random(seed)
        self.clock = clock
        self.started = clock()
        all_tracks = tracks()
        self.vehicles = [self._vehicle(i, all_tracks[i % len(all_tracks)]) for i in range(nodes)]
        self.published = 0
        self.went_offline = 0
        self.came_back = 0

    def _vehicle(self, i: int, track: Track) -> Vehicle:
        phase = self.rng.uniform(0, track.period_s)
        if i % 2 == 0:
            dep = DEPARTURES[i // 2 % len(DEPARTURES)]
            run = {
                "route_id": track.name,
                "trip_id": trip_id(track.name, dep),
                "schedule_relationship": "SCHEDULED",
                "line": str(1 + i % 2),
            }
        else:
            now = datetime.now(ZoneInfo(TIMEZONE))  # a GTFS service day and time are local
            run = {
                "route_id": track.name,
                "schedule_relationship": "ADDED",
                "start_date": now.strftime("%Y%m%d"),
                "start_time": now.strftime("%H:%M:00"),
                "direction_id": 0,
                "line": "TAD",
                "headsign": "à la demande",
            }
        return Vehicle(
            f"sim-{i:04d}",
            track,
            phase,
            run,
            count=self.rng.randint(0, CAPACITY // 2),
            next_position=self.rng.uniform(0, self.period_s),
        )

    # -- payloads -------------------------------------------------------------------

    def topic(self, v: Vehicle, suffix: str) -> str:
        return f"{self.prefix}/{self.fleet}/{v.node}/{suffix}"

    def payload(self, v: Vehicle, stream: str, body: BaseModel, now: float) -> bytes:
        seq = v.seqs[stream] = v.seqs.get(stream, 0) + 1
        data = body.model_dump(mode="json", exclude_none=True)
        return json.dumps(
            {"v": 1, "seq": seq, "ts": int(now * 1000), "clock": "ntp", **data},
            separators=(",", ":"),
        ).encode()

    def point(self, v: Vehicle, now: float) -> Point:
        return v.track.at(now - self.started + v.phase_s)

    def position(self, v: Vehicle, now: float) -> bytes:
        pt = self.point(v, now)
        if v.last_t is not None:
            v.odometer_m += pt.speed * max(0.0, now - v.last_t)
        v.last_t = now
        body = p.Position(
            fix_time=datetime.fromtimestamp(now, UTC),
            lat=pt.lat,
            lon=pt.lon,
            speed=round(pt.speed, 2),
            course=round(pt.course, 1),
            mode="3D",
            quality=1,
            satellites=9,
            hdop=0.9,
            odometer_m=round(v.odometer_m, 1),
        )
        return self.payload(v, "position", body, now)

    def occupancy(self, v: Vehicle, now: float) -> bytes:
        percent = round(100 * v.count / CAPACITY / 10) * 10
        body = p.Occupancy(
            count=v.count,
            capacity=CAPACITY,
            percent=percent,
            status=occupancy_status(v.count, CAPACITY),
            entries=v.count,
            exits=0,
            reset_at=int(self.started * 1000),
        )
        return self.payload(v, "occupancy", body, now)

    def birth(self, v: Vehicle, now: float) -> bytes:
        body = p.State(
            state="online",
            version="sim",
            profile="shuttle",
            name=f"Véhicule {v.node[4:]}",
            config_hash="0" * 16,
            drivers=["gps:gps.sim"],
            since=int(now * 1000),
        )
        return self.payload(v, "state", body, now)

    def will(self, v: Vehicle, now: float) -> bytes:
        return self.payload(v, "state", p.State(state="offline", since=int(now * 1000)), now)

    def journey(self, v: Vehicle, now: float) -> bytes:
        return self.payload(v, "journey", p.Journey(mode="on-demand", assigned=True, **v.run), now)

    def health(self, v: Vehicle, now: float) -> bytes:
        body = p.Health(
            uptime_s=round(now - self.started, 1),
            rss_mb=42.0,
            cpu_pct=3.0,
            loop_lag_ms=1.0,
            clock="ntp",
            connected=True,
            reconnects=0,
            outbox=p.OutboxHealth(
                depth=0,
                bytes=0,
                oldest_age_s=None,
                in_flight=0,
                by_class={},
                thin_level=0,
                refused=0,
                thinned=0,
            ),
            drivers=[p.DriverStatus(name="gps", driver="gps.sim", state="running")],
            errors={},
        )
        return self.payload(v, "health", body, now)

    # -- running --------------------------------------------------------------------

    async def _send(
        self,
        client: aiomqtt.Client,
        topic: str,
        payload: bytes,
        *,
        qos: int = 0,
        retain: bool = False,
    ) -> None:
        await client.publish(topic, payload, qos=qos, retain=retain)
        self.published += 1

    async def announce(self, client: aiomqtt.Client, v: Vehicle, now: float) -> None:
        await self._send(client, self.topic(v, "state"), self.birth(v, now), qos=1, retain=True)
        await self._send(client, self.topic(v, "journey"), self.journey(v, now), qos=1, retain=True)
        await self._send(
            client, self.topic(v, "occupancy"), self.occupancy(v, now), qos=1, retain=True
        )
        await self._send(client, self.topic(v, "health"), self.health(v, now), retain=True)
        await self._send(client, self.topic(v, "position"), self.position(v, now))

    async def step(self, client: aiomqtt.Client, now: float) -> None:
        for v in self.vehicles:
            if not v.online:
                if now >= v.back_at:
                    v.online = True
                    self.came_back += 1
                    await self.announce(client, v, now)
                continue
            if now >= v.next_position:
                v.next_position = now + self.period_s * self.rng.uniform(0.8, 1.2)
                await self._send(client, self.topic(v, "position"), self.position(v, now))
                stop = self.point(v, now).stop
                if stop is not None and stop != v.at_stop:  # riders get on and off
                    v.count = max(0, min(CAPACITY, v.count + self.rng.randint(-6, 6)))
                    await self._send(
                        client,
                        self.topic(v, "occupancy"),
                        self.occupancy(v, now),
                        qos=1,
                        retain=True,
                    )
                v.at_stop = stop

    async def churn(self, client: aiomqtt.Client, now: float) -> None:
        online = [v for v in self.vehicles if v.online]
        leaving = min(len(online), round(len(self.vehicles) * self.offline_share))
        for v in self.rng.sample(online, leaving):
            v.online = False
            v.back_at = now + self.rng.uniform(*self.offline_s)
            self.went_offline += 1
            await self._send(client, self.topic(v, "state"), self.will(v, now), qos=1, retain=True)

    async def run(self, duration: float | None = None, *, clear: bool = True) -> dict[str, Any]:
        """Publish until `duration` (or forever); clears its retained topics at the end."""
        async with CancellableClient(
            self.host,
            self.port,
            identifier=f"hil-fleet-{self.fleet}",
            max_queued_outgoing_messages=0,
        ) as client:
            now = self.clock()
            for v in self.vehicles:
                await self.announce(client, v, now)
            next_health = now + self.health_s
            next_churn = now + self.churn_s
            end = None if duration is None else now + duration
            try:
                while end is None or self.clock() < end:
                    now = self.clock()
                    await self.step(client, now)
                    if now >= next_churn and self.offline_share > 0:
                        next_churn = now + self.churn_s
                        await self.churn(client, now)
                    if now >= next_health:
                        next_health = now + self.health_s
                        for v in self.vehicles:
                            if v.online:
                                await self._send(
                                    client,
                                    self.topic(v, "health"),
                                    self.health(v, now),
                                    retain=True,
                                )
                    await asyncio.sleep(0.05)
            finally:
                if clear:
                    await self.clear(client)
        return self.summary()

    async def clear(self, client: aiomqtt.Client) -> None:
        for v in self.vehicles:
            for suffix in ("state", "journey", "occupancy", "health"):
                await client.publish(self.topic(v, suffix), b"", qos=1, retain=True)

    def summary(self) -> dict[str, Any]:
        return {
            "nodes": len(self.vehicles),
            "routes": sorted({v.track.name for v in self.vehicles}),
            "published": self.published,
            "went_offline": self.went_offline,
            "came_back": self.came_back,
            "offline_now": sum(not v.online for v in self.vehicles),
        }
